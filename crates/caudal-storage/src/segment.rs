//! One log segment: `<base>.log` (batches verbatim), `<base>.index`, `<base>.timeindex`, and the
//! in-memory [`SegmentIndex`] derived from them.
//!
//! Concurrency: only the appender (holding the log's append lock) writes; readers use positional
//! reads on the shared file and never look past [`Segment::size`], which the appender publishes
//! (release) only after the bytes are written. Truncation excludes readers with the log's
//! truncation lock.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use caudal_model::batch::HEADER_BYTES;
use caudal_model::{BatchError, Offset, RecordBatchHeader, TimestampMs};
use parking_lot::RwLock;

use crate::error::{StorageError, io_error};
use crate::files::remove_file_if_exists;
use crate::index::{
    NewIndexEntries, OFFSET_INDEX_ENTRY_BYTES, SegmentIndex, TIME_INDEX_ENTRY_BYTES,
    batch_fits_segment, decode_offset_index, decode_time_index, encode_offset_entry,
    encode_time_entry,
};

/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Appended to a segment's file names once retention or compaction removed it from the log;
/// the files are removed `file.delete.delay.ms` later (or at the next startup).
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Appended to the file names of a segment the log cleaner is still writing.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Appended to the file names of a complete cleaned segment about to replace live segments.
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// Chunk size for sequential scans (recovery, replay, searches).
const SCAN_CHUNK_BYTES: usize = 64 * 1024;
/// Chunk size for the short header walk from an index entry to the batch a read starts at.
const SEARCH_CHUNK_BYTES: usize = 8 * 1024;

/// The file name of a segment file: its base offset as 20 zero-padded digits, then the suffix.
pub(crate) fn segment_file_name(base_offset: Offset, suffix: &str) -> String {
    format!("{:020}{suffix}", base_offset.0)
}

/// The largest base offset a segment (or snapshot) file name may carry. Far beyond any real log,
/// and low enough that offset arithmetic on it can never overflow.
pub(crate) const BASE_OFFSET_MAX: i64 = i64::MAX / 2;

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Parses `<20 digits><suffix>`.
pub(crate) fn parse_segment_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<i64>()
        .ok()
        .filter(|base| *base <= BASE_OFFSET_MAX)
        .map(Offset)
}

/// Where and why a scan stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corruption {
    pub position: u64,
    pub reason: String,
}

/// What [`Segment::recover`] found.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRecovery {
    pub batches: u64,
    pub bytes_truncated: u64,
    pub next_offset: Offset,
    pub corruption: Option<Corruption>,
}

/// The result of checking the batch at one position.
pub(crate) enum BatchAt {
    /// The position is the end of the scanned range.
    End,
    Batch(RecordBatchHeader),
    /// Why the bytes at the position are not a valid batch of this segment.
    Invalid(String),
}

/// Buffered positional reads over `[0, end)` of a file; never moves the file cursor, so it is
/// safe on a file other threads read and append to.
pub(crate) struct ChunkReader<'a> {
    file: &'a File,
    path: &'a Path,
    segment_base: Offset,
    end: u64,
    chunk: usize,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> ChunkReader<'a> {
    pub fn new(
        file: &'a File,
        path: &'a Path,
        segment_base: Offset,
        end: u64,
        chunk: usize,
    ) -> Self {
        Self {
            file,
            path,
            segment_base,
            end,
            chunk,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The bytes `[position, position + len)`; the caller guarantees they are below `end`.
    pub fn bytes(&mut self, position: u64, len: usize) -> Result<&[u8], StorageError> {
        debug_assert!(position + len as u64 <= self.end);
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buffered_end {
            let read_len = (len.max(self.chunk) as u64).min(self.end - position) as usize;
            self.buf.resize(read_len, 0);
            self.file
                .read_exact_at(&mut self.buf, position)
                .map_err(io_error(self.path))?;
            self.buf_start = position;
        }
        let start = (position - self.buf_start) as usize;
        Ok(&self.buf[start..start + len])
    }

    /// Reads the batch starting at `position`: its header always (which must be whole, magic 2,
    /// and with offsets that fit the segment), and with `validate` its CRC (streamed, so a batch
    /// never needs a buffer of its own size) and field sanity too.
    pub fn batch_at(&mut self, position: u64, validate: bool) -> Result<BatchAt, StorageError> {
        if position >= self.end {
            return Ok(BatchAt::End);
        }
        let available = self.end - position;
        if available < HEADER_BYTES as u64 {
            return Ok(BatchAt::Invalid(
                BatchError::Truncated {
                    available: available as usize,
                    needed: HEADER_BYTES,
                }
                .to_string(),
            ));
        }
        let header = match RecordBatchHeader::parse(self.bytes(position, HEADER_BYTES)?) {
            Ok(header) => header,
            Err(error) => return Ok(BatchAt::Invalid(error.to_string())),
        };
        let size = header.size_bytes() as u64;
        if size > available {
            return Ok(BatchAt::Invalid(
                BatchError::Truncated {
                    available: available as usize,
                    needed: size as usize,
                }
                .to_string(),
            ));
        }
        if !batch_fits_segment(self.segment_base, &header) {
            return Ok(BatchAt::Invalid(format!(
                "batch offsets {} + {} do not fit segment {}",
                header.base_offset, header.last_offset_delta, self.segment_base
            )));
        }
        if validate {
            // The CRC covers everything from the attributes (byte 21) to the end of the batch.
            let mut crc = 0u32;
            let mut at = position + 21;
            let end = position + size;
            while at < end {
                let len = ((end - at) as usize).min(SCAN_CHUNK_BYTES);
                crc = crc32c::crc32c_append(crc, self.bytes(at, len)?);
                at += len as u64;
            }
            if crc != header.crc {
                return Ok(BatchAt::Invalid(
                    BatchError::CrcMismatch {
                        stored: header.crc,
                        computed: crc,
                    }
                    .to_string(),
                ));
            }
            if header.record_count < 0 || header.last_offset_delta < 0 {
                return Ok(BatchAt::Invalid(
                    BatchError::RecordCountMismatch {
                        record_count: header.record_count,
                        last_offset_delta: header.last_offset_delta,
                    }
                    .to_string(),
                ));
            }
            if let Err(error) = header.compression() {
                return Ok(BatchAt::Invalid(error.to_string()));
            }
        }
        Ok(BatchAt::Batch(header))
    }
}

/// One segment of a partition log.
pub(crate) struct Segment {
    pub base_offset: Offset,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    log: File,
    index_file: File,
    time_index_file: File,
    /// Bytes of `.log` visible to readers: everything below was completely written.
    size: AtomicU64,
    /// Indexes and timestamps derived from the batches below `size`. Appends publish `size`
    /// first and update this after, so everything it points at is visible to readers.
    pub index: RwLock<SegmentIndex>,
}

fn open_append(path: &Path, create: bool) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
        .map_err(io_error(path))
}

impl Segment {
    /// Opens the segment's files; with a non-empty `opened_suffix` the files opened are
    /// `<name><suffix>` (a cleaned segment being written) while the segment keeps its live paths,
    /// which its files get once renamed into place (open handles survive renames).
    fn open_files(
        dir: &Path,
        base_offset: Offset,
        now: TimestampMs,
        create: bool,
        opened_suffix: &str,
    ) -> Result<Segment, StorageError> {
        let log_path = dir.join(segment_file_name(base_offset, LOG_SUFFIX));
        let index_path = dir.join(segment_file_name(base_offset, INDEX_SUFFIX));
        let time_index_path = dir.join(segment_file_name(base_offset, TIME_INDEX_SUFFIX));
        let log = open_append(&with_suffix(&log_path, opened_suffix), create)?;
        let index_file = open_append(&with_suffix(&index_path, opened_suffix), true)?;
        let time_index_file = open_append(&with_suffix(&time_index_path, opened_suffix), true)?;
        let size = log.metadata().map_err(io_error(&log_path))?.len();
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            log,
            index_file,
            time_index_file,
            size: AtomicU64::new(size),
            index: RwLock::new(SegmentIndex::new(base_offset, now)),
        })
    }

    /// Creates a new, empty segment (emptying any leftover files of the same name).
    pub fn create(
        dir: &Path,
        base_offset: Offset,
        now: TimestampMs,
    ) -> Result<Segment, StorageError> {
        let segment = Self::open_files(dir, base_offset, now, true, "")?;
        if segment.size() > 0 {
            segment.truncate_log(0)?;
        }
        segment.truncate_index_files(0, 0)?;
        Ok(segment)
    }

    /// Creates the empty `.cleaned` files of a segment the log cleaner writes. The segment's paths
    /// are the live ones: [`Self::rename_files`] moves the files there.
    pub fn create_cleaned(
        dir: &Path,
        base_offset: Offset,
        now: TimestampMs,
    ) -> Result<Segment, StorageError> {
        let segment = Self::open_files(dir, base_offset, now, true, CLEANED_SUFFIX)?;
        if segment.size() > 0 {
            segment.truncate_log(0)?;
        }
        segment.truncate_index_files(0, 0)?;
        Ok(segment)
    }

    /// The segment's three file paths (log, offset index, time index).
    pub fn paths(&self) -> [&Path; 3] {
        [&self.log_path, &self.index_path, &self.time_index_path]
    }

    /// Renames the segment's files from `<path><from>` to `<path><to>` — the indexes first, the
    /// `.log` last, so a `.log` with the new suffix means its indexes have it too. Returns the
    /// new paths. Open handles keep working.
    pub fn rename_files(&self, from: &str, to: &str) -> Result<Vec<PathBuf>, StorageError> {
        let mut renamed = Vec::with_capacity(3);
        for path in [&self.index_path, &self.time_index_path, &self.log_path] {
            let source = with_suffix(path, from);
            let target = with_suffix(path, to);
            std::fs::rename(&source, &target).map_err(io_error(&source))?;
            renamed.push(target);
        }
        Ok(renamed)
    }

    /// Removes the segment's files that carry `suffix` (a cleaned segment given up on).
    pub fn delete_files_with_suffix(&self, suffix: &str) -> Result<(), StorageError> {
        for path in self.paths() {
            remove_file_if_exists(&with_suffix(path, suffix))?;
        }
        Ok(())
    }

    /// The `.log` file's modification time.
    pub fn last_modified(&self) -> Result<TimestampMs, StorageError> {
        let modified = self
            .log
            .metadata()
            .and_then(|metadata| metadata.modified())
            .map_err(io_error(&self.log_path))?;
        let millis = match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Ok(TimestampMs(millis))
    }

    /// Sets the `.log` file's modification time (a cleaned segment keeps its sources').
    pub fn set_last_modified(&self, at: TimestampMs) -> Result<(), StorageError> {
        let Ok(millis) = u64::try_from(at.0) else {
            return Ok(());
        };
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        self.log
            .set_modified(time)
            .map_err(io_error(&self.log_path))
    }

    /// Kafka's `largestTimestamp`: the largest batch max timestamp, or the file's modification
    /// time when the segment holds no timestamps.
    pub fn largest_timestamp(&self) -> Result<TimestampMs, StorageError> {
        match self.index.read().max_timestamp {
            Some(max) if max.timestamp.0 >= 0 => Ok(max.timestamp),
            _ => self.last_modified(),
        }
    }

    /// A buffered positional reader over `[0, end)` of the `.log` file.
    pub fn chunk_reader(&self, end: u64) -> ChunkReader<'_> {
        ChunkReader::new(
            &self.log,
            &self.log_path,
            self.base_offset,
            end,
            SCAN_CHUNK_BYTES,
        )
    }

    /// Opens an existing segment's files; the in-memory index is empty until loaded or rebuilt.
    pub fn open(
        dir: &Path,
        base_offset: Offset,
        now: TimestampMs,
    ) -> Result<Segment, StorageError> {
        Self::open_files(dir, base_offset, now, false, "")
    }

    /// Bytes readers may see.
    #[inline]
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Publishes a new size after the bytes below it are written.
    #[inline]
    pub fn publish_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    /// Appends `slices` to the `.log` file (the file is in append mode, so the write lands at the
    /// end whatever the cursor). Does not publish the new size.
    pub fn append(&self, slices: &mut [IoSlice<'_>]) -> Result<(), StorageError> {
        let mut file = &self.log;
        let mut slices = slices;
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => {
                    return Err(io_error(&self.log_path)(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "segment write returned 0 bytes",
                    )));
                }
                Ok(written) => IoSlice::advance_slices(&mut slices, written),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(&self.log_path)(error)),
            }
        }
        Ok(())
    }

    /// Mirrors new index entries to the index files.
    pub fn append_index_entries(&self, entries: &[NewIndexEntries]) -> Result<(), StorageError> {
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        for entry in entries {
            if let Some(offset) = entry.offset {
                offsets.extend_from_slice(&encode_offset_entry(self.base_offset, offset));
            }
            if let Some(time) = entry.time {
                times.extend_from_slice(&encode_time_entry(self.base_offset, time));
            }
        }
        if !offsets.is_empty() {
            (&self.index_file)
                .write_all(&offsets)
                .map_err(io_error(&self.index_path))?;
        }
        if !times.is_empty() {
            (&self.time_index_file)
                .write_all(&times)
                .map_err(io_error(&self.time_index_path))?;
        }
        Ok(())
    }

    /// Cuts the index files to `offset_entries` and `time_entries` entries.
    pub fn truncate_index_files(
        &self,
        offset_entries: usize,
        time_entries: usize,
    ) -> Result<(), StorageError> {
        self.index_file
            .set_len((offset_entries * OFFSET_INDEX_ENTRY_BYTES) as u64)
            .map_err(io_error(&self.index_path))?;
        self.time_index_file
            .set_len((time_entries * TIME_INDEX_ENTRY_BYTES) as u64)
            .map_err(io_error(&self.time_index_path))
    }

    /// Replaces both index files with the entries of `index`.
    pub fn rewrite_index_files(&self, index: &SegmentIndex) -> Result<(), StorageError> {
        self.truncate_index_files(0, 0)?;
        let offsets: Vec<u8> = index
            .offset_index
            .iter()
            .flat_map(|entry| encode_offset_entry(self.base_offset, *entry))
            .collect();
        let times: Vec<u8> = index
            .time_index
            .iter()
            .flat_map(|entry| encode_time_entry(self.base_offset, *entry))
            .collect();
        (&self.index_file)
            .write_all(&offsets)
            .map_err(io_error(&self.index_path))?;
        (&self.time_index_file)
            .write_all(&times)
            .map_err(io_error(&self.time_index_path))
    }

    /// Appends the segment's max timestamp to the time index if it grew past the last entry, as
    /// Kafka does when a segment stops being active, so that the max timestamp of an inactive
    /// segment is the last entry of its time index.
    pub fn append_final_time_entry(&self) -> Result<(), StorageError> {
        let added = self.index.write().maybe_append_time_entry();
        if let Some(time) = added {
            self.append_index_entries(&[NewIndexEntries {
                offset: None,
                time: Some(time),
            }])?;
        }
        Ok(())
    }

    /// Reads the index files and validates them against the segment size. The outer error is an
    /// I/O error; the inner one says why the files cannot be trusted.
    pub fn read_index_files(&self) -> Result<Result<SegmentIndexFiles, String>, StorageError> {
        let size = self.size();
        let offsets = std::fs::read(&self.index_path).map_err(io_error(&self.index_path))?;
        let times =
            std::fs::read(&self.time_index_path).map_err(io_error(&self.time_index_path))?;
        let offset_index = match decode_offset_index(&offsets, self.base_offset, size) {
            Ok(entries) => entries,
            Err(reason) => return Ok(Err(format!("offset index: {reason}"))),
        };
        let time_index = match decode_time_index(&times, self.base_offset) {
            Ok(entries) => entries,
            Err(reason) => return Ok(Err(format!("time index: {reason}"))),
        };
        Ok(Ok(SegmentIndexFiles {
            offset_index,
            time_index,
        }))
    }

    pub fn sync_log(&self) -> Result<(), StorageError> {
        self.log.sync_data().map_err(io_error(&self.log_path))
    }

    pub fn sync_indexes(&self) -> Result<(), StorageError> {
        self.index_file
            .sync_data()
            .map_err(io_error(&self.index_path))?;
        self.time_index_file
            .sync_data()
            .map_err(io_error(&self.time_index_path))
    }

    /// Cuts the `.log` file to `size` bytes and publishes the size.
    pub fn truncate_log(&self, size: u64) -> Result<(), StorageError> {
        self.log.set_len(size).map_err(io_error(&self.log_path))?;
        self.publish_size(size);
        Ok(())
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> Result<(), StorageError> {
        remove_file_if_exists(&self.log_path)?;
        remove_file_if_exists(&self.index_path)?;
        remove_file_if_exists(&self.time_index_path)
    }

    /// Reads `[position, position + len)` of the `.log` file.
    pub fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        self.log
            .read_exact_at(&mut buf, position)
            .map_err(io_error(&self.log_path))?;
        Ok(buf)
    }

    fn corrupt_at(&self, position: u64, error: impl std::fmt::Display) -> StorageError {
        StorageError::CorruptFile {
            path: self.log_path.clone(),
            reason: format!("invalid batch at byte {position}: {error}"),
        }
    }

    /// Walks batch headers from `from` (a batch start) below `end` and returns the first batch
    /// whose last offset is ≥ `target`, with its position. A header that does not parse is
    /// corruption in data the log already acknowledged: an error, never a panic.
    pub fn find_batch(
        &self,
        from: u64,
        end: u64,
        target: Offset,
    ) -> Result<Option<(u64, RecordBatchHeader)>, StorageError> {
        let mut reader = ChunkReader::new(
            &self.log,
            &self.log_path,
            self.base_offset,
            end,
            SEARCH_CHUNK_BYTES,
        );
        let mut position = from;
        loop {
            match reader.batch_at(position, false)? {
                BatchAt::End => return Ok(None),
                BatchAt::Invalid(error) => return Err(self.corrupt_at(position, error)),
                BatchAt::Batch(header) => {
                    if header.last_offset() >= target {
                        return Ok(Some((position, header)));
                    }
                    position += header.size_bytes() as u64;
                }
            }
        }
    }

    /// Visits every batch header from `from` below `end` (no CRC check) until `visit` says stop.
    pub fn scan_headers(
        &self,
        from: u64,
        end: u64,
        mut visit: impl FnMut(u64, &RecordBatchHeader) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let mut reader = ChunkReader::new(
            &self.log,
            &self.log_path,
            self.base_offset,
            end,
            SCAN_CHUNK_BYTES,
        );
        let mut position = from;
        loop {
            match reader.batch_at(position, false)? {
                BatchAt::End => return Ok(()),
                BatchAt::Invalid(error) => return Err(self.corrupt_at(position, error)),
                BatchAt::Batch(header) => {
                    if visit(position, &header).is_break() {
                        return Ok(());
                    }
                    position += header.size_bytes() as u64;
                }
            }
        }
    }

    /// Recovery: validates every batch from the start (whole, CRC, magic, counts, offsets
    /// increasing from `next_offset_min` and storable relative to the base), rebuilds both indexes
    /// and rewrites their files, and truncates the `.log` at the first invalid byte. `visit` sees
    /// every valid batch in order (for the leader-epoch cache and producer state).
    pub fn recover(
        &self,
        index_interval_bytes: u32,
        next_offset_min: Offset,
        now: TimestampMs,
        mut visit: impl FnMut(&RecordBatchHeader),
    ) -> Result<SegmentRecovery, StorageError> {
        let file_size = self.log.metadata().map_err(io_error(&self.log_path))?.len();
        let mut index = SegmentIndex::new(self.base_offset, now);
        let mut reader = ChunkReader::new(
            &self.log,
            &self.log_path,
            self.base_offset,
            file_size,
            SCAN_CHUNK_BYTES,
        );
        let mut position = 0u64;
        let mut next_offset = self.base_offset.max(next_offset_min);
        let mut batches = 0u64;
        let corruption = loop {
            match reader.batch_at(position, true)? {
                BatchAt::End => break None,
                BatchAt::Invalid(reason) => break Some(Corruption { position, reason }),
                BatchAt::Batch(header) => {
                    if header.base_offset < next_offset {
                        break Some(Corruption {
                            position,
                            reason: format!(
                                "batch base offset {} is below the expected next offset {next_offset}",
                                header.base_offset
                            ),
                        });
                    }
                    if position > u32::MAX as u64 {
                        break Some(Corruption {
                            position,
                            reason: "the segment is larger than 4 GiB".into(),
                        });
                    }
                    index.on_batch(&header, position, index_interval_bytes);
                    visit(&header);
                    batches += 1;
                    next_offset = header.next_offset();
                    position += header.size_bytes() as u64;
                }
            }
        };
        let bytes_truncated = file_size - position;
        if bytes_truncated > 0 {
            self.log
                .set_len(position)
                .map_err(io_error(&self.log_path))?;
        }
        self.publish_size(position);
        self.rewrite_index_files(&index)?;
        *self.index.write() = index;
        Ok(SegmentRecovery {
            batches,
            bytes_truncated,
            next_offset,
            corruption,
        })
    }

    /// Loading after a clean shutdown (or a trusted segment below the recovery point): adopts the
    /// validated index files. For the active segment (`offset_limit == None`) it then scans from
    /// the last offset-index entry to the end, validating those batches, indexing them as appends
    /// would have (so a missing or short index file is completed) and learning the next offset and
    /// the max timestamp. An inactive segment's index entries must stay below `offset_limit` (the
    /// next segment's base offset). Returns the next offset of the active segment, or why the
    /// segment must be recovered instead.
    pub fn load_with_index(
        &self,
        files: SegmentIndexFiles,
        now: TimestampMs,
        offset_limit: Option<Offset>,
        index_interval_bytes: u32,
    ) -> Result<Result<Option<Offset>, String>, StorageError> {
        let size = self.size();
        let mut index = SegmentIndex::new(self.base_offset, now);
        index.offset_index = files.offset_index;
        index.time_index = files.time_index;
        index.max_timestamp = index.time_index.last().copied();
        if size > 0 {
            let mut reader = ChunkReader::new(
                &self.log,
                &self.log_path,
                self.base_offset,
                size,
                SEARCH_CHUNK_BYTES,
            );
            match reader.batch_at(0, false)? {
                BatchAt::Batch(header) if header.base_offset >= self.base_offset => {
                    index.first_batch_max_timestamp = Some(header.max_timestamp);
                }
                BatchAt::Batch(header) => {
                    return Ok(Err(format!(
                        "first batch base offset {} is below the segment base offset",
                        header.base_offset
                    )));
                }
                BatchAt::Invalid(error) => return Ok(Err(format!("first batch: {error}"))),
                BatchAt::End => {}
            }
        }
        let beyond = |index: &SegmentIndex, limit: Offset| {
            index
                .offset_index
                .last()
                .is_some_and(|entry| entry.last_offset >= limit)
                || index
                    .time_index
                    .last()
                    .is_some_and(|entry| entry.offset >= limit)
        };
        if let Some(limit) = offset_limit {
            if size > 0 && index.max_timestamp.is_none() {
                return Ok(Err(
                    "time index of a non-empty inactive segment is empty".into()
                ));
            }
            if beyond(&index, limit) {
                return Ok(Err(format!(
                    "index entries reach the next segment's base offset {limit}"
                )));
            }
            *self.index.write() = index;
            return Ok(Ok(None));
        }
        let start = index.offset_index.last().copied();
        let mut position = start.map_or(0, |entry| entry.position as u64);
        let mut next_offset = self.base_offset;
        let mut new_entries = Vec::new();
        let mut reader = ChunkReader::new(
            &self.log,
            &self.log_path,
            self.base_offset,
            size,
            SCAN_CHUNK_BYTES,
        );
        loop {
            match reader.batch_at(position, true)? {
                BatchAt::End => break,
                BatchAt::Invalid(error) => {
                    return Ok(Err(format!("batch at byte {position}: {error}")));
                }
                BatchAt::Batch(header) => {
                    if let Some(entry) = start
                        && entry.position as u64 == position
                        && entry.last_offset != header.last_offset()
                    {
                        return Ok(Err(format!(
                            "offset index says the batch at byte {position} ends at {}, it ends at {}",
                            entry.last_offset,
                            header.last_offset()
                        )));
                    }
                    if header.base_offset < next_offset {
                        return Ok(Err(format!(
                            "batch at byte {position} has offsets out of order"
                        )));
                    }
                    let added = index.on_batch(&header, position, index_interval_bytes);
                    if added.offset.is_some() || added.time.is_some() {
                        new_entries.push(added);
                    }
                    next_offset = header.next_offset();
                    position += header.size_bytes() as u64;
                }
            }
        }
        if beyond(&index, next_offset) {
            return Ok(Err(format!(
                "index entries reach past the last offset {next_offset}"
            )));
        }
        self.append_index_entries(&new_entries)?;
        *self.index.write() = index;
        Ok(Ok(Some(next_offset)))
    }

    /// Removes every batch whose last offset is ≥ `target` (a batch containing `target` goes
    /// whole, as in Kafka), trims the indexes to match (or rebuilds them if they disagree with the
    /// data), fsyncs the file and returns the segment's new next offset.
    pub fn truncate_to(
        &self,
        target: Offset,
        index_interval_bytes: u32,
    ) -> Result<Offset, StorageError> {
        let size = self.size();
        let mut index = self.index.write();
        let resume = index.truncate_entries(target);
        let resume_entry = index.offset_index.last().copied();
        let (cut, observed) = self.batches_before(resume, size, target)?;
        // The batch at the last kept index entry must be the one the entry describes; if the
        // index disagrees with the data, rebuild it from the start of the segment instead.
        let consistent = match resume_entry {
            None => true,
            Some(entry) => observed.first().is_some_and(|(position, header)| {
                *position == resume && header.last_offset() == entry.last_offset
            }),
        };
        let (cut, observed, rebuilt) = if consistent {
            (cut, observed, false)
        } else {
            *index = SegmentIndex::new(self.base_offset, index.created);
            let (cut, observed) = self.batches_before(0, size, target)?;
            (cut, observed, true)
        };
        let mut next_offset = self.base_offset;
        for (position, header) in &observed {
            if rebuilt {
                index.on_batch(header, *position, index_interval_bytes);
            } else {
                index.observe_batch(header, *position);
            }
            next_offset = header.next_offset();
        }
        if cut == 0 {
            index.first_batch_max_timestamp = None;
        }
        if rebuilt {
            self.rewrite_index_files(&index)?;
        } else {
            self.truncate_index_files(index.offset_index.len(), index.time_index.len())?;
        }
        drop(index);
        if cut < size {
            self.truncate_log(cut)?;
            self.sync_log()?;
        }
        Ok(next_offset)
    }

    /// The batches from `from` whose last offset is below `target`, and the position of the
    /// first one that is not (or `end`).
    fn batches_before(
        &self,
        from: u64,
        end: u64,
        target: Offset,
    ) -> Result<(u64, Vec<(u64, RecordBatchHeader)>), StorageError> {
        let mut cut = end;
        let mut observed = Vec::new();
        self.scan_headers(from, end, |position, header| {
            if header.last_offset() >= target {
                cut = position;
                return std::ops::ControlFlow::Break(());
            }
            observed.push((position, *header));
            std::ops::ControlFlow::Continue(())
        })?;
        Ok((cut, observed))
    }
}

/// Index entries read from a segment's files.
#[derive(Debug)]
pub(crate) struct SegmentIndexFiles {
    pub offset_index: Vec<crate::index::OffsetIndexEntry>,
    pub time_index: Vec<crate::index::TimeIndexEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names_round_trip() {
        let name = segment_file_name(Offset(1234), LOG_SUFFIX);
        assert_eq!(name, "00000000000000001234.log");
        assert_eq!(
            parse_segment_file_name(&name, LOG_SUFFIX),
            Some(Offset(1234))
        );
        assert_eq!(parse_segment_file_name(&name, INDEX_SUFFIX), None);
        assert_eq!(parse_segment_file_name("1234.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_segment_file_name("0000000000000000123x.log", LOG_SUFFIX),
            None
        );
        assert_eq!(
            parse_segment_file_name("99999999999999999999.log", LOG_SUFFIX),
            None
        );
    }
}
