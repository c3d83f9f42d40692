//! [`PartitionLog`]: one partition's log — append as leader, read, flush (group commit), roll,
//! truncate, timestamp and epoch lookups, producer state.
//!
//! Locking (acquire in this order; never the other way round):
//! 0. `maintenance` — serialises the log cleaner and retention on this log (they never hold it
//!    while waiting for anything but the locks below);
//! 1. `flush_lock` — serialises fsyncs (group commit) and excludes them from truncation;
//! 2. `append` — the append lock: segment list, producer state, roll decisions;
//! 3. `truncation` — readers hold it shared for the whole read (including I/O); truncation holds it
//!    exclusively, so a reader never sees a file shrink or be rewritten under it;
//! 4. short leaf locks: `epochs`, `published`, each segment's index, `config`.
//!
//! Appends never wait for an fsync, readers never take the append lock, and `flush_to` holds the
//! append lock only to snapshot what to sync.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};

use bytes::Bytes;
use caudal_model::batch::{BatchIter, HEADER_BYTES, stamp_offset_and_epoch};
use caudal_model::{
    LeaderEpoch, Offset, ProducerEpoch, ProducerId, RecordBatchHeader, Sequence, TimestampMs,
    TopicPartition,
};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::{LogConfig, TimestampType};
use crate::epoch::{LEADER_EPOCH_CHECKPOINT_FILE, LeaderEpochCache};
use crate::error::{StorageError, io_error};
use crate::files::{sync_dir, write_atomic};
use crate::index::{batch_fits_segment, fits_relative};
use crate::manager::{FlusherMessage, ManagerShared};
use crate::producer::{self, LeaderCheck, ProducerBatch, ProducerStates};
use crate::segment::Segment;

// Byte offsets inside the v2 header that `LogAppendTime` rewrites (see `caudal_model::batch`).
const HEADER_CRC: std::ops::Range<usize> = 17..21;
const HEADER_ATTRIBUTES: std::ops::Range<usize> = 21..23;
const HEADER_MAX_TIMESTAMP: std::ops::Range<usize> = 35..43;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;

/// The result of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record written (for a duplicate: of the original batch).
    pub first_offset: Offset,
    /// Offset of the last record written (for a duplicate: of the original batch).
    pub last_offset: Offset,
    /// The append time stamped into the batches when the topic uses `LogAppendTime`.
    pub log_append_time: Option<TimestampMs>,
    pub log_start_offset: Offset,
    /// The batch repeated one of its producer's last five; nothing was written.
    pub duplicate: bool,
    /// Records written (0 for a duplicate).
    pub record_count: u64,
    /// Bytes written (0 for a duplicate).
    pub bytes: u64,
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Whole batches, verbatim from the log.
    pub records: Bytes,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// What the log knows about one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateSummary {
    pub producer_epoch: ProducerEpoch,
    /// Sequence of the last record of its last batch in the current epoch.
    pub last_sequence: Option<Sequence>,
    /// Offset of the last record of that batch.
    pub last_offset: Option<Offset>,
    pub last_timestamp: TimestampMs,
    /// First offset of its open transaction, if one is open.
    pub current_txn_first_offset: Option<Offset>,
}

/// Why the active segment was rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RollReason {
    SegmentBytes,
    SegmentMs,
    IndexFull,
    OffsetOverflow,
    LeaderEpochChange,
    Requested,
    /// Retention is about to delete every segment, the active one included.
    Retention,
}

/// A data directory's failure flag, shared by its logs: the first I/O error takes the whole
/// directory offline.
#[derive(Debug)]
pub(crate) struct DirFailure {
    dir: PathBuf,
    failed: AtomicBool,
}

impl DirFailure {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            failed: AtomicBool::new(false),
        }
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn check(&self) -> Result<(), StorageError> {
        if self.is_failed() {
            return Err(StorageError::LogDirFailed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    pub fn fail(&self, error: &StorageError) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(dir = %self.dir.display(), %error, "I/O error: taking the log directory offline");
        }
    }
}

/// Links from a log to its data directory.
pub(crate) struct LogContext {
    pub failure: Arc<DirFailure>,
    pub flusher: Option<mpsc::Sender<FlusherMessage>>,
    pub manager: Weak<ManagerShared>,
}

/// Everything guarded by the append lock.
pub(crate) struct AppendState {
    /// All segments, ascending by base offset; the last is the active segment.
    pub segments: Vec<Arc<Segment>>,
    pub producers: ProducerStates,
    /// Snapshot files written without fsync, synced by the next flush.
    pub unsynced_snapshots: Vec<PathBuf>,
    /// Rolled segments whose index files are not yet synced.
    pub unsynced_rolled: Vec<Arc<Segment>>,
    /// A segment file was created or removed since the last directory fsync.
    pub dir_needs_sync: bool,
}

impl AppendState {
    pub(crate) fn active(&self) -> &Arc<Segment> {
        self.segments
            .last()
            .expect("a partition log always has an active segment")
    }
}

/// What one fsync round syncs, snapshotted under the append lock.
struct FlushWork {
    target: Offset,
    active_base: Offset,
    /// Segments holding offsets in `[recovery point, target)`.
    segments: Vec<Arc<Segment>>,
    /// Rolled segments whose index files (final time entry) are not yet synced.
    rolled: Vec<Arc<Segment>>,
    snapshots: Vec<PathBuf>,
    dir_needs_sync: bool,
    epochs: Option<String>,
}

impl FlushWork {
    fn is_empty(&self) -> bool {
        self.segments.is_empty()
            && self.rolled.is_empty()
            && self.snapshots.is_empty()
            && !self.dir_needs_sync
            && self.epochs.is_none()
    }
}

/// The pieces [`PartitionLog::new`] assembles (from `create_log` or a load).
pub(crate) struct LogParts {
    pub topic_partition: TopicPartition,
    pub topic_id: Uuid,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub segments: Vec<Arc<Segment>>,
    pub producers: ProducerStates,
    pub epochs: LeaderEpochCache,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    pub recovery_point: Offset,
    /// How far the log cleaner got (`cleaner-offset-checkpoint`), if it ever cleaned this log.
    pub cleaner_checkpoint: Option<Offset>,
    pub context: LogContext,
}

/// Files renamed `.deleted`, to be removed once `due`.
pub(crate) struct PendingDeletion {
    pub due: TimestampMs,
    pub paths: Vec<PathBuf>,
}

/// One partition's log. `Send + Sync`; share it as `Arc<PartitionLog>`.
pub struct PartitionLog {
    pub(crate) topic_partition: TopicPartition,
    topic_id: RwLock<Uuid>,
    pub(crate) dir: PathBuf,
    config: RwLock<LogConfig>,
    /// Held by a cleaning pass and by retention, never by appends, reads or flushes.
    pub(crate) maintenance: Mutex<()>,
    /// Set when the log is closing: a cleaning pass gives up at its next check.
    pub(crate) maintenance_abort: AtomicBool,
    flush_lock: Mutex<()>,
    pub(crate) append: Mutex<AppendState>,
    pub(crate) truncation: RwLock<()>,
    /// Bumped by every truncation (under the append lock): a cleaning pass that started before
    /// gives up rather than swap in segments cleaned from data that is gone.
    pub(crate) truncation_generation: AtomicU64,
    /// A copy of the segment list for readers, replaced on roll, truncation, retention and
    /// compaction.
    pub(crate) published: RwLock<Arc<[Arc<Segment>]>>,
    pub(crate) epochs: Mutex<LeaderEpochCache>,
    log_end_offset: AtomicI64,
    pub(crate) log_start_offset: AtomicI64,
    pub(crate) recovery_point: AtomicI64,
    /// The first offset the log cleaner has not cleaned; -1 before the first cleaning.
    pub(crate) cleaner_checkpoint: AtomicI64,
    /// Deleted segments' files waiting for `file.delete.delay.ms`.
    pub(crate) pending_deletions: Mutex<Vec<PendingDeletion>>,
    /// fsync rounds performed by `flush_to` (a metric; Kafka's LogFlushRate).
    flush_count: AtomicU64,
    closed: AtomicBool,
    pub(crate) failure: Arc<DirFailure>,
    flusher: Option<mpsc::Sender<FlusherMessage>>,
    pub(crate) manager: Weak<ManagerShared>,
    self_ref: Weak<PartitionLog>,
    /// Test-only failpoint: a maintenance step at which to stop as a crash would, or to run
    /// something (a truncation) in between.
    #[cfg(test)]
    pub(crate) failpoint: Mutex<Option<crate::Failpoint>>,
}

/// One batch of an append, validated.
struct ParsedBatch {
    start: usize,
    end: usize,
    header: RecordBatchHeader,
}

/// Validates a producer's buffer: one or more whole v2 batches, each with a good CRC, dense
/// offsets, at most `max_message_bytes`, and a sequence when it carries a producer id.
fn parse_leader_batches(
    batches: &[u8],
    max_message_bytes: u32,
) -> Result<Vec<ParsedBatch>, StorageError> {
    if batches.is_empty() {
        return Err(StorageError::InvalidRecord {
            reason: "the append holds no record batch",
        });
    }
    if batches.len() > i32::MAX as usize {
        return Err(StorageError::RecordBatchTooLarge {
            size: batches.len(),
            max: max_message_bytes,
        });
    }
    let mut parsed = Vec::with_capacity(1);
    let mut position = 0usize;
    for item in BatchIter::new(batches) {
        let (range, header) =
            item.map_err(|source| StorageError::CorruptBatch { position, source })?;
        if header.size_bytes() > max_message_bytes as usize {
            return Err(StorageError::RecordBatchTooLarge {
                size: header.size_bytes(),
                max: max_message_bytes,
            });
        }
        header
            .validate_producer_counts()
            .map_err(|source| StorageError::CorruptBatch { position, source })?;
        if header.has_producer_id() && !header.is_control() && header.base_sequence.0 < 0 {
            return Err(StorageError::InvalidRecord {
                reason: "a batch with a producer id has no base sequence",
            });
        }
        position = range.end;
        parsed.push(ParsedBatch {
            start: range.start,
            end: range.end,
            header,
        });
    }
    debug_assert_eq!(position, batches.len());
    Ok(parsed)
}

/// Kafka's rule for compacted topics: every record needs a key (a keyless record could never be
/// compacted away). Looks inside each batch, decompressing with a bounded output size.
fn check_keys(batches: &[u8], parsed: &[ParsedBatch]) -> Result<(), StorageError> {
    for batch in parsed {
        match crate::records::has_keyless_record(&batches[batch.start..batch.end], &batch.header) {
            Ok(false) => {}
            Ok(true) => {
                return Err(StorageError::InvalidRecord {
                    reason: "Compacted topic cannot accept message without key",
                });
            }
            Err(error) => {
                tracing::debug!(%error, "refusing a batch whose records cannot be decoded on a compacted topic");
                return Err(StorageError::InvalidRecord {
                    reason: "the records of a batch for a compacted topic cannot be decoded",
                });
            }
        }
    }
    Ok(())
}

/// Validates a buffer replicated from the leader: one or more whole v2 batches with good CRCs.
fn parse_follower_batches(batches: &[u8]) -> Result<Vec<ParsedBatch>, StorageError> {
    if batches.is_empty() {
        return Err(StorageError::InvalidRecord {
            reason: "the append holds no record batch",
        });
    }
    if batches.len() > i32::MAX as usize {
        return Err(StorageError::RecordBatchTooLarge {
            size: batches.len(),
            max: i32::MAX as u32,
        });
    }
    let mut parsed = Vec::new();
    let mut position = 0usize;
    for item in BatchIter::new(batches) {
        let (range, header) =
            item.map_err(|source| StorageError::CorruptBatch { position, source })?;
        if header.base_offset.0 < 0 || header.base_offset.0 > crate::segment::BASE_OFFSET_MAX {
            return Err(StorageError::InvalidRecord {
                reason: "a replicated batch has an impossible base offset",
            });
        }
        position = range.end;
        parsed.push(ParsedBatch {
            start: range.start,
            end: range.end,
            header,
        });
    }
    Ok(parsed)
}

/// The stamped 61-byte header of `batch` (base offset, leader epoch, and for `LogAppendTime` the
/// attributes, max timestamp and CRC, computed over the new header bytes plus the untouched
/// records).
fn stamped_header(
    whole_batch: &[u8],
    base_offset: Offset,
    leader_epoch: LeaderEpoch,
    log_append_time: Option<TimestampMs>,
) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&whole_batch[..HEADER_BYTES]);
    stamp_offset_and_epoch(&mut header, base_offset, leader_epoch);
    if let Some(now) = log_append_time {
        let attributes = i16::from_be_bytes([
            header[HEADER_ATTRIBUTES.start],
            header[HEADER_ATTRIBUTES.start + 1],
        ]) | ATTRIBUTE_LOG_APPEND_TIME;
        header[HEADER_ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
        header[HEADER_MAX_TIMESTAMP].copy_from_slice(&now.0.to_be_bytes());
        let crc = crc32c::crc32c(&header[HEADER_ATTRIBUTES.start..]);
        let crc = crc32c::crc32c_append(crc, &whole_batch[HEADER_BYTES..]);
        header[HEADER_CRC].copy_from_slice(&crc.to_be_bytes());
    }
    header
}

impl PartitionLog {
    pub(crate) fn new(parts: LogParts) -> Arc<PartitionLog> {
        debug_assert!(!parts.segments.is_empty());
        debug_assert!(parts.log_start_offset <= parts.log_end_offset);
        debug_assert!(parts.recovery_point <= parts.log_end_offset);
        let published: Arc<[Arc<Segment>]> = parts.segments.clone().into();
        Arc::new_cyclic(|self_ref| PartitionLog {
            topic_partition: parts.topic_partition,
            topic_id: RwLock::new(parts.topic_id),
            dir: parts.dir,
            config: RwLock::new(parts.config),
            maintenance: Mutex::new(()),
            maintenance_abort: AtomicBool::new(false),
            flush_lock: Mutex::new(()),
            append: Mutex::new(AppendState {
                segments: parts.segments,
                producers: parts.producers,
                unsynced_snapshots: Vec::new(),
                unsynced_rolled: Vec::new(),
                dir_needs_sync: false,
            }),
            truncation: RwLock::new(()),
            truncation_generation: AtomicU64::new(0),
            published: RwLock::new(published),
            epochs: Mutex::new(parts.epochs),
            log_end_offset: AtomicI64::new(parts.log_end_offset.0),
            log_start_offset: AtomicI64::new(parts.log_start_offset.0),
            recovery_point: AtomicI64::new(parts.recovery_point.0),
            cleaner_checkpoint: AtomicI64::new(
                parts.cleaner_checkpoint.map_or(-1, |offset| offset.0),
            ),
            pending_deletions: Mutex::new(Vec::new()),
            flush_count: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            failure: parts.context.failure,
            flusher: parts.context.flusher,
            manager: parts.context.manager,
            self_ref: self_ref.clone(),
            #[cfg(test)]
            failpoint: Mutex::new(None),
        })
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }

    pub fn topic_id(&self) -> Uuid {
        *self.topic_id.read()
    }

    pub(crate) fn set_topic_id(&self, topic_id: Uuid) {
        *self.topic_id.write() = topic_id;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset.load(Ordering::Acquire))
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end_offset.load(Ordering::Acquire))
    }

    /// Every offset below the recovery point is on disk (fsynced).
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point.load(Ordering::Acquire))
    }

    /// How many fsync rounds `flush_to` has performed (callers covered by a concurrent round do
    /// not add one).
    pub fn flush_count(&self) -> u64 {
        self.flush_count.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> LogConfig {
        *self.config.read()
    }

    /// Replaces the configuration; it applies from the next append.
    pub fn update_config(&self, config: LogConfig) {
        *self.config.write() = config;
    }

    /// Total bytes of all segments (DescribeLogDirs' partition size).
    pub fn size_bytes(&self) -> u64 {
        self.published
            .read()
            .iter()
            .map(|segment| segment.size())
            .sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.published.read().len()
    }

    /// Base offsets of the segments, ascending.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.published
            .read()
            .iter()
            .map(|segment| segment.base_offset)
            .collect()
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.lock().latest_epoch()
    }

    /// Kafka's `OffsetForLeaderEpoch`: `(epoch, end offset)`; `None` for an undefined answer.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let epochs = self.epochs.lock();
        epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader-epoch cache: `(epoch, start offset)` pairs, ascending.
    pub fn leader_epoch_entries(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.epochs
            .lock()
            .entries()
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect()
    }

    pub fn producer_state(&self, producer_id: ProducerId) -> Option<ProducerStateSummary> {
        let state = self.append.lock();
        let entry = state.producers.get(producer_id)?;
        Some(ProducerStateSummary {
            producer_epoch: entry.epoch,
            last_sequence: entry.last_sequence(),
            last_offset: entry.batches.back().map(|batch| batch.last_offset),
            last_timestamp: entry.last_timestamp,
            current_txn_first_offset: entry.current_txn_first_offset,
        })
    }

    /// Number of producer ids with state.
    pub fn producer_count(&self) -> usize {
        self.append.lock().producers.len()
    }

    pub(crate) fn check_open(&self) -> Result<(), StorageError> {
        self.failure.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::LogClosed {
                topic_partition: self.topic_partition.clone(),
            });
        }
        Ok(())
    }

    /// Passes `result` through, taking the data directory offline on an I/O error.
    pub(crate) fn note_fatal<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(error) = &result
            && matches!(error, StorageError::Io { .. })
        {
            self.failure.fail(error);
        }
        result
    }

    pub(crate) fn publish_segments(&self, state: &AppendState) {
        *self.published.write() = state.segments.clone().into();
    }

    pub(crate) fn out_of_range(&self, requested: Offset) -> StorageError {
        StorageError::OffsetOutOfRange {
            requested,
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Appends batches exactly as a producer sent them; see the crate docs for the contract.
    pub fn append_as_leader(
        &self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now: TimestampMs,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_open()?;
        let config = self.config();
        // CPU work (CRC over the whole payload, and on compacted topics decoding the records to
        // find keyless ones) happens before taking the append lock.
        let parsed = parse_leader_batches(batches, config.max_message_bytes)?;
        if config.cleanup_policy.compact() {
            check_keys(batches, &parsed)?;
        }
        let mut state = self.append.lock();
        self.check_open()?;
        let result = self.append_locked(&mut state, batches, &parsed, leader_epoch, now, &config);
        self.note_fatal(result)
    }

    fn append_locked(
        &self,
        state: &mut AppendState,
        batches: &[u8],
        parsed: &[ParsedBatch],
        leader_epoch: LeaderEpoch,
        now: TimestampMs,
        config: &LogConfig,
    ) -> Result<AppendOutcome, StorageError> {
        let latest_epoch = self.epochs.lock().latest_epoch();
        if leader_epoch.0 >= 0
            && let Some(latest) = latest_epoch
            && leader_epoch < latest
        {
            return Err(StorageError::StaleLeaderEpoch {
                latest,
                received: leader_epoch,
            });
        }
        let log_append_time =
            (config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let first_offset = self.log_end_offset();
        let mut next_offset = first_offset;
        let mut base_offsets = Vec::with_capacity(parsed.len());
        let mut producer_batches = Vec::new();
        let mut max_timestamp = TimestampMs(i64::MIN);
        let mut record_count = 0u64;
        for batch in parsed {
            let batch_max_timestamp = log_append_time.unwrap_or(batch.header.max_timestamp);
            max_timestamp = max_timestamp.max(batch_max_timestamp);
            if let Some(producer_batch) =
                ProducerBatch::from_header(&batch.header, next_offset, batch_max_timestamp)
            {
                producer_batches.push(producer_batch);
            }
            base_offsets.push(next_offset);
            next_offset = Offset(next_offset.0 + batch.header.last_offset_delta as i64 + 1);
            record_count += batch.header.record_count as u64;
        }
        let last_offset = Offset(next_offset.0 - 1);
        let updated = match state.producers.check_leader_append(producer_batches)? {
            LeaderCheck::Duplicate(original) => {
                return Ok(AppendOutcome {
                    first_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_append_time: log_append_time.map(|_| original.timestamp),
                    log_start_offset: self.log_start_offset(),
                    duplicate: true,
                    record_count: 0,
                    bytes: 0,
                });
            }
            LeaderCheck::Accepted(updated) => updated,
        };

        let append_bytes = batches.len() as u64;
        if let Some(reason) = self.roll_reason(
            state.active(),
            config,
            append_bytes,
            max_timestamp,
            last_offset,
            leader_epoch,
            latest_epoch,
            now,
        ) {
            self.roll_locked(state, first_offset, now, reason)?;
        }
        let segment = Arc::clone(state.active());
        let start_position = segment.size();
        debug_assert!(fits_relative(segment.base_offset, last_offset));

        let headers: Vec<[u8; HEADER_BYTES]> = parsed
            .iter()
            .zip(&base_offsets)
            .map(|(batch, base)| {
                stamped_header(
                    &batches[batch.start..batch.end],
                    *base,
                    leader_epoch,
                    log_append_time,
                )
            })
            .collect();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parsed.len() * 2);
        for (batch, header) in parsed.iter().zip(&headers) {
            slices.push(IoSlice::new(header));
            if batch.end > batch.start + HEADER_BYTES {
                slices.push(IoSlice::new(
                    &batches[batch.start + HEADER_BYTES..batch.end],
                ));
            }
        }
        segment.append(&mut slices)?;
        // Data first, then what points at it: a reader that sees an index entry or a max
        // timestamp always finds the batch below the published size.
        segment.publish_size(start_position + append_bytes);

        let mut new_entries = Vec::new();
        {
            let mut index = segment.index.write();
            let mut position = start_position;
            for (batch, header) in parsed.iter().zip(&headers) {
                let stamped = RecordBatchHeader::parse(header)
                    .expect("a stamped header of a validated batch parses");
                let added = index.on_batch(&stamped, position, config.index_interval_bytes);
                if added.offset.is_some() || added.time.is_some() {
                    new_entries.push(added);
                }
                position += (batch.end - batch.start) as u64;
            }
        }
        segment.append_index_entries(&new_entries)?;
        state.producers.apply(updated);
        if leader_epoch.0 >= 0 {
            self.epochs.lock().assign(leader_epoch, first_offset);
        }
        self.log_end_offset.store(next_offset.0, Ordering::Release);
        Ok(AppendOutcome {
            first_offset,
            last_offset,
            log_append_time,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            record_count,
            bytes: append_bytes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn roll_reason(
        &self,
        active: &Segment,
        config: &LogConfig,
        append_bytes: u64,
        max_timestamp: TimestampMs,
        last_offset: Offset,
        leader_epoch: LeaderEpoch,
        latest_epoch: Option<LeaderEpoch>,
        now: TimestampMs,
    ) -> Option<RollReason> {
        let size = active.size();
        if size == 0 {
            return None;
        }
        let index = active.index.read();
        if size + append_bytes > config.segment_bytes_max() {
            return Some(RollReason::SegmentBytes);
        }
        let waited_ms = match index.first_batch_max_timestamp {
            Some(first) if first.0 >= 0 => max_timestamp.0.saturating_sub(first.0),
            _ => now.0.saturating_sub(index.created.0),
        };
        if waited_ms > config.segment_ms {
            return Some(RollReason::SegmentMs);
        }
        if index.offset_index.len() >= config.offset_index_entries_max()
            || index.time_index.len() >= config.time_index_entries_max()
        {
            return Some(RollReason::IndexFull);
        }
        if !fits_relative(active.base_offset, last_offset) {
            return Some(RollReason::OffsetOverflow);
        }
        if leader_epoch.0 >= 0 && latest_epoch != Some(leader_epoch) {
            return Some(RollReason::LeaderEpochChange);
        }
        None
    }

    /// Appends batches replicated from the leader, verbatim: offsets, leader epochs and
    /// timestamps are already assigned. Validates each batch (whole, CRC, magic 2) and that
    /// offsets continue the log (a gap is allowed, as after compaction); producer state is
    /// replayed without sequence checks and the leader-epoch cache learns each new epoch, as
    /// Kafka's `appendAsFollower`. All-or-nothing like [`Self::append_as_leader`].
    pub fn append_as_follower(
        &self,
        batches: &[u8],
        now: TimestampMs,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_open()?;
        let config = self.config();
        let parsed = parse_follower_batches(batches)?;
        let mut state = self.append.lock();
        self.check_open()?;
        let result = self.append_follower_locked(&mut state, batches, &parsed, now, &config);
        self.note_fatal(result)
    }

    fn append_follower_locked(
        &self,
        state: &mut AppendState,
        batches: &[u8],
        parsed: &[ParsedBatch],
        now: TimestampMs,
        config: &LogConfig,
    ) -> Result<AppendOutcome, StorageError> {
        let mut expected = self.log_end_offset();
        let mut max_timestamp = TimestampMs(i64::MIN);
        let mut record_count = 0u64;
        for batch in parsed {
            if batch.header.base_offset < expected {
                return Err(StorageError::UnexpectedAppendOffset {
                    expected_at_least: expected,
                    base_offset: batch.header.base_offset,
                });
            }
            expected = batch.header.next_offset();
            max_timestamp = max_timestamp.max(batch.header.max_timestamp);
            record_count += batch.header.record_count as u64;
        }
        let first = &parsed[0].header;
        let first_offset = first.base_offset;
        let last_offset = parsed[parsed.len() - 1].header.last_offset();
        let latest_epoch = self.epochs.lock().latest_epoch();
        let append_bytes = batches.len() as u64;
        let active = Arc::clone(state.active());
        let reason = self.roll_reason(
            &active,
            config,
            append_bytes,
            max_timestamp,
            last_offset,
            first.partition_leader_epoch,
            latest_epoch,
            now,
        );
        let needs_new_base = !fits_relative(active.base_offset, first_offset)
            || !fits_relative(active.base_offset, last_offset);
        if let Some(reason) = reason.or(needs_new_base.then_some(RollReason::OffsetOverflow)) {
            self.roll_locked(state, first_offset, now, reason)?;
        }
        let segment = Arc::clone(state.active());
        if !fits_relative(segment.base_offset, last_offset) {
            // One append spanning more than 2^31 offsets cannot live in one segment.
            return Err(StorageError::UnexpectedAppendOffset {
                expected_at_least: segment.base_offset,
                base_offset: last_offset,
            });
        }
        let start_position = segment.size();
        segment.append(&mut [IoSlice::new(batches)])?;
        segment.publish_size(start_position + append_bytes);
        let mut new_entries = Vec::new();
        {
            let mut index = segment.index.write();
            let mut position = start_position;
            for batch in parsed {
                let added = index.on_batch(&batch.header, position, config.index_interval_bytes);
                if added.offset.is_some() || added.time.is_some() {
                    new_entries.push(added);
                }
                position += (batch.end - batch.start) as u64;
            }
        }
        segment.append_index_entries(&new_entries)?;
        {
            let mut epochs = self.epochs.lock();
            for batch in parsed {
                let epoch = batch.header.partition_leader_epoch;
                if epoch.0 >= 0 && epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
                    epochs.assign(epoch, batch.header.base_offset);
                }
            }
        }
        for batch in parsed {
            state.producers.replay_header(&batch.header);
        }
        self.log_end_offset.store(expected.0, Ordering::Release);
        Ok(AppendOutcome {
            first_offset,
            last_offset,
            log_append_time: None,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            record_count,
            bytes: append_bytes,
        })
    }

    /// Rolls the active segment now (if it holds any batch). Kafka's `log.roll()`.
    pub fn roll(&self, now: TimestampMs) -> Result<(), StorageError> {
        self.check_open()?;
        let mut state = self.append.lock();
        self.check_open()?;
        let result = self.roll_locked(
            &mut state,
            self.log_end_offset(),
            now,
            RollReason::Requested,
        );
        self.note_fatal(result)
    }

    /// Starts a new active segment at `new_base` (≥ the log end offset). An empty active segment
    /// is not rolled: it is kept, or re-created at `new_base` if that differs (a follower append
    /// after a gap in offsets).
    pub(crate) fn roll_locked(
        &self,
        state: &mut AppendState,
        new_base: Offset,
        now: TimestampMs,
        reason: RollReason,
    ) -> Result<(), StorageError> {
        debug_assert!(new_base >= self.log_end_offset());
        let active = Arc::clone(state.active());
        if active.size() == 0 {
            if active.base_offset != new_base {
                active.delete_files()?;
                let replacement = Arc::new(Segment::create(&self.dir, new_base, now)?);
                *state.segments.last_mut().expect("an active segment") = replacement;
                state.dir_needs_sync = true;
                self.publish_segments(state);
            }
            return Ok(());
        }
        active.append_final_time_entry()?;
        state.unsynced_rolled.push(Arc::clone(&active));
        let snapshot = producer::write_snapshot(&self.dir, &state.producers, new_base, false)?;
        state.unsynced_snapshots.push(snapshot);
        state
            .segments
            .push(Arc::new(Segment::create(&self.dir, new_base, now)?));
        state.dir_needs_sync = true;
        self.publish_segments(state);
        tracing::debug!(
            topic_partition = %self.topic_partition,
            base_offset = new_base.0,
            ?reason,
            "rolled a new segment"
        );
        if let Some(flusher) = &self.flusher {
            // A rolled segment is fsynced in the background (Kafka's "flush-log" task).
            let _ = flusher.send(FlusherMessage::Flush {
                log: self.self_ref.clone(),
                offset: new_base,
            });
        }
        Ok(())
    }

    /// Makes every offset below `offset` durable (group commit; see the crate docs). Returns the
    /// new recovery point, which may exceed `offset` (one fsync covers everything written so far)
    /// or fall short of it when `offset` is past the log end offset.
    pub fn flush_to(&self, offset: Offset) -> Result<Offset, StorageError> {
        self.flush_inner(offset, false)
    }

    /// The background flush after a roll: like `flush_to`, and also syncs what the roll left
    /// pending (the rolled segment's indexes, the snapshot, the new directory entry) even when
    /// the recovery point is already past `offset`.
    pub(crate) fn flush_rolled(&self, offset: Offset) -> Result<Offset, StorageError> {
        self.flush_inner(offset, true)
    }

    fn flush_inner(&self, offset: Offset, sync_pending: bool) -> Result<Offset, StorageError> {
        self.check_open()?;
        let recovery_point = self.recovery_point();
        if offset <= recovery_point && !sync_pending {
            return Ok(recovery_point);
        }
        let _flush = self.flush_lock.lock();
        self.check_open()?;
        let recovery_point = self.recovery_point();
        if offset <= recovery_point && !sync_pending {
            return Ok(recovery_point);
        }
        let work = {
            let mut state = self.append.lock();
            let target = self.log_end_offset();
            let segments: Vec<Arc<Segment>> = if target > recovery_point {
                let first = state
                    .segments
                    .partition_point(|segment| segment.base_offset <= recovery_point)
                    .saturating_sub(1);
                state.segments[first..].to_vec()
            } else {
                Vec::new()
            };
            let epochs = {
                let mut epochs = self.epochs.lock();
                epochs.is_dirty().then(|| {
                    epochs.mark_clean();
                    epochs.encode()
                })
            };
            FlushWork {
                target,
                active_base: state.active().base_offset,
                segments,
                rolled: std::mem::take(&mut state.unsynced_rolled),
                snapshots: std::mem::take(&mut state.unsynced_snapshots),
                dir_needs_sync: std::mem::take(&mut state.dir_needs_sync),
                epochs,
            }
        };
        if work.is_empty() {
            return Ok(recovery_point);
        }
        let synced = (|| {
            for segment in &work.segments {
                segment.sync_log()?;
                if segment.base_offset != work.active_base {
                    segment.sync_indexes()?;
                }
            }
            for segment in &work.rolled {
                segment.sync_indexes()?;
            }
            if work.dir_needs_sync {
                sync_dir(&self.dir)?;
            }
            for path in &work.snapshots {
                sync_file_if_exists(path)?;
            }
            if let Some(epochs) = &work.epochs {
                write_atomic(
                    &self.dir.join(LEADER_EPOCH_CHECKPOINT_FILE),
                    epochs.as_bytes(),
                    true,
                )?;
            }
            Ok(())
        })();
        self.note_fatal(synced)?;
        self.flush_count.fetch_add(1, Ordering::Relaxed);
        self.recovery_point
            .fetch_max(work.target.0, Ordering::AcqRel);
        Ok(self.recovery_point())
    }

    /// `flush_to(log_end_offset)`.
    pub fn flush(&self) -> Result<Offset, StorageError> {
        self.flush_to(self.log_end_offset())
    }

    /// Reads whole batches from the one containing `start`; see the crate docs for the contract.
    pub fn read(
        &self,
        start: Offset,
        max_bytes: usize,
        upper_bound: Offset,
        min_one_batch: bool,
    ) -> Result<ReadOutcome, StorageError> {
        self.check_open()?;
        let _shared = self.truncation.read();
        let log_end_offset = self.log_end_offset();
        let log_start_offset = self.log_start_offset();
        if start < log_start_offset || start > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                requested: start,
                log_start_offset,
                log_end_offset,
            });
        }
        let outcome = |records: Bytes| ReadOutcome {
            records,
            log_start_offset,
            log_end_offset,
        };
        let upper_bound = upper_bound.min(log_end_offset);
        if start >= upper_bound {
            return Ok(outcome(Bytes::new()));
        }
        let segments = self.published.read().clone();
        let first = segments
            .partition_point(|segment| segment.base_offset <= start)
            .saturating_sub(1);
        for segment in &segments[first..] {
            let size = segment.size();
            let from = segment.index.read().floor_position(start, size);
            let found = self.note_fatal(segment.find_batch(from, size, start))?;
            let Some((position, header)) = found else {
                continue;
            };
            if header.last_offset() >= upper_bound {
                return Ok(outcome(Bytes::new()));
            }
            let first_size = header.size_bytes();
            let budget = if min_one_batch {
                max_bytes.max(first_size)
            } else {
                max_bytes
            };
            if first_size > budget {
                return Ok(outcome(Bytes::new()));
            }
            let read_len = (budget as u64).min(size - position) as usize;
            let mut bytes = self.note_fatal(segment.read_bytes(position, read_len))?;
            let mut whole = 0usize;
            while whole < bytes.len() {
                let Ok(batch) = RecordBatchHeader::parse(&bytes[whole..]) else {
                    break;
                };
                if whole + batch.size_bytes() > bytes.len()
                    || !batch_fits_segment(segment.base_offset, &batch)
                    || batch.last_offset() >= upper_bound
                {
                    break;
                }
                whole += batch.size_bytes();
            }
            if whole == 0 {
                return Err(StorageError::CorruptFile {
                    path: segment.log_path.clone(),
                    reason: format!("batch at byte {position} changed while being read"),
                });
            }
            bytes.truncate(whole);
            return Ok(outcome(Bytes::from(bytes)));
        }
        Ok(outcome(Bytes::new()))
    }

    /// Reads the whole batch that contains `offset` in `segment`, if any.
    fn read_batch_containing(
        &self,
        segment: &Segment,
        offset: Offset,
    ) -> Result<Option<Bytes>, StorageError> {
        let size = segment.size();
        let from = segment.index.read().floor_position(offset, size);
        let Some((position, header)) = segment.find_batch(from, size, offset)? else {
            return Ok(None);
        };
        let bytes = segment.read_bytes(position, header.size_bytes())?;
        Ok(Some(Bytes::from(bytes)))
    }

    /// For ListOffsets by timestamp: the first batch whose max timestamp is ≥ `timestamp` (at or
    /// after the log start offset), found through the time index.
    pub fn find_batch_by_timestamp(
        &self,
        timestamp: TimestampMs,
    ) -> Result<Option<Bytes>, StorageError> {
        self.check_open()?;
        let _shared = self.truncation.read();
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        let segments = self.published.read().clone();
        for segment in segments.iter() {
            let size = segment.size();
            let from = {
                let index = segment.index.read();
                match index.max_timestamp {
                    Some(max) if max.timestamp >= timestamp => {}
                    _ => continue,
                }
                let hint = index
                    .time_floor(timestamp)
                    .map_or(segment.base_offset, |entry| entry.offset);
                index.floor_position(hint.max(log_start_offset), size)
            };
            let mut found = None;
            let scanned = segment.scan_headers(from, size, |position, header| {
                if header.base_offset >= log_end_offset {
                    return std::ops::ControlFlow::Break(());
                }
                if header.max_timestamp >= timestamp && header.last_offset() >= log_start_offset {
                    found = Some((position, header.size_bytes()));
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
            self.note_fatal(scanned)?;
            if let Some((position, len)) = found {
                let bytes = self.note_fatal(segment.read_bytes(position, len))?;
                return Ok(Some(Bytes::from(bytes)));
            }
        }
        Ok(None)
    }

    /// For ListOffsets MAX_TIMESTAMP: the batch with the largest max timestamp (the earliest on
    /// ties), or `None` for an empty log.
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, StorageError> {
        self.check_open()?;
        let _shared = self.truncation.read();
        let segments = self.published.read().clone();
        let mut best: Option<(usize, crate::index::TimeIndexEntry)> = None;
        for (position, segment) in segments.iter().enumerate() {
            if segment.size() == 0 {
                continue;
            }
            if let Some(max) = segment.index.read().max_timestamp
                && best.is_none_or(|(_, best)| max.timestamp > best.timestamp)
            {
                best = Some((position, max));
            }
        }
        let Some((segment, max)) = best else {
            return Ok(None);
        };
        let result = self.read_batch_containing(&segments[segment], max.offset);
        self.note_fatal(result)
    }

    /// Removes everything at or after `offset` (batch granularity: a batch containing `offset`
    /// goes whole, so the log end offset becomes ≤ `offset`). Rebuilds indexes, the leader-epoch
    /// cache and producer state; fsyncs the truncation and rewrites the data directory's
    /// checkpoints. Blocks (fsync); call it from a blocking context.
    pub fn truncate_to(&self, offset: Offset) -> Result<(), StorageError> {
        if offset.0 < 0 {
            return Err(self.out_of_range(offset));
        }
        self.check_open()?;
        let _flush = self.flush_lock.lock();
        let mut state = self.append.lock();
        self.check_open()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let exclusive = self.truncation.write();
        self.truncation_generation.fetch_add(1, Ordering::AcqRel);
        let result = if offset < state.segments[0].base_offset {
            self.truncate_fully_locked(&mut state, offset)
        } else {
            self.truncate_locked(&mut state, offset)
        };
        drop(exclusive);
        self.note_fatal(result)?;
        // While still holding the append lock, so no append lands beyond a stale recovery point.
        let checkpointed = self.write_dir_checkpoints();
        self.note_fatal(checkpointed)
    }

    /// Deletes every segment and restarts the log, empty, at `offset` (which becomes the log start
    /// offset). Kafka's `truncateFullyAndStartAt`, for a follower far behind or ahead of its
    /// leader.
    pub fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), StorageError> {
        if !(0..=crate::segment::BASE_OFFSET_MAX).contains(&offset.0) {
            return Err(self.out_of_range(offset));
        }
        self.check_open()?;
        let _flush = self.flush_lock.lock();
        let mut state = self.append.lock();
        self.check_open()?;
        let exclusive = self.truncation.write();
        self.truncation_generation.fetch_add(1, Ordering::AcqRel);
        let result = self.truncate_fully_locked(&mut state, offset);
        drop(exclusive);
        self.note_fatal(result)?;
        let checkpointed = self.write_dir_checkpoints();
        self.note_fatal(checkpointed)
    }

    pub(crate) fn write_dir_checkpoints(&self) -> Result<(), StorageError> {
        match self.manager.upgrade() {
            Some(manager) => manager.write_checkpoints(),
            None => Ok(()),
        }
    }

    fn truncate_locked(&self, state: &mut AppendState, offset: Offset) -> Result<(), StorageError> {
        let old_end = self.log_end_offset();
        let keep = state
            .segments
            .partition_point(|segment| segment.base_offset <= offset);
        debug_assert!(keep >= 1);
        let removed: Vec<Arc<Segment>> = state.segments.drain(keep..).collect();
        for segment in &removed {
            segment.delete_files()?;
        }
        let last = Arc::clone(state.active());
        let new_end = last.truncate_to(offset, self.config().index_interval_bytes)?;
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        self.publish_segments(state);
        self.log_end_offset.store(new_end.0, Ordering::Release);
        self.recovery_point.fetch_min(new_end.0, Ordering::AcqRel);
        self.log_start_offset.fetch_min(new_end.0, Ordering::AcqRel);
        self.lower_cleaner_checkpoint(new_end);
        {
            let mut epochs = self.epochs.lock();
            if epochs.truncate_from_end(new_end) {
                write_epoch_checkpoint(&self.dir, &mut epochs)?;
            }
        }
        // Rebuilding reads segments that were never rescanned; if one is corrupt the in-memory
        // state can no longer be trusted, so the directory goes offline and the next open
        // recovers it.
        let (producers, _) = rebuild_producer_state(&self.dir, &state.segments, new_end)
            .inspect_err(|error| self.failure.fail(error))?;
        state.producers = producers;
        state.unsynced_snapshots.clear();
        tracing::info!(
            topic_partition = %self.topic_partition,
            requested = offset.0,
            old_log_end_offset = old_end.0,
            new_log_end_offset = new_end.0,
            segments_deleted = removed.len(),
            "truncated log"
        );
        Ok(())
    }

    fn truncate_fully_locked(
        &self,
        state: &mut AppendState,
        offset: Offset,
    ) -> Result<(), StorageError> {
        let old_end = self.log_end_offset();
        for segment in &state.segments {
            segment.delete_files()?;
        }
        state.segments.clear();
        // Segment::create empties any leftover file of the same name.
        let now = state_created_time(&self.published.read());
        state
            .segments
            .push(Arc::new(Segment::create(&self.dir, offset, now)?));
        producer::delete_snapshots_after(&self.dir, Offset(-1))?;
        state.producers.clear();
        state.unsynced_snapshots.clear();
        state.unsynced_rolled.clear();
        sync_dir(&self.dir)?;
        self.publish_segments(state);
        self.log_end_offset.store(offset.0, Ordering::Release);
        self.log_start_offset.store(offset.0, Ordering::Release);
        self.recovery_point.store(offset.0, Ordering::Release);
        self.lower_cleaner_checkpoint(offset);
        {
            let mut epochs = self.epochs.lock();
            epochs.clear();
            write_epoch_checkpoint(&self.dir, &mut epochs)?;
        }
        tracing::info!(
            topic_partition = %self.topic_partition,
            old_log_end_offset = old_end.0,
            new_log_start_offset = offset.0,
            "truncated log fully"
        );
        Ok(())
    }

    /// Closes the log for good: stops a cleaning pass (at its next check) and waits for in-flight
    /// retention, appends, reads and fsyncs; later calls return `LogClosed`.
    pub(crate) fn close(&self) {
        self.maintenance_abort.store(true, Ordering::Release);
        let _maintenance = self.maintenance.lock();
        let _flush = self.flush_lock.lock();
        let _state = self.append.lock();
        let _exclusive = self.truncation.write();
        self.closed.store(true, Ordering::Release);
    }

    /// Clean shutdown of this log: flush everything, write a durable producer snapshot at the log
    /// end offset and the leader-epoch checkpoint, fsync the active segment's indexes, close.
    pub(crate) fn shutdown(&self) -> Result<(), StorageError> {
        self.maintenance_abort.store(true, Ordering::Release);
        let _maintenance = self.maintenance.lock();
        self.flush_inner(self.log_end_offset(), true)?;
        let _flush = self.flush_lock.lock();
        let state = self.append.lock();
        self.check_open()?;
        let result = (|| {
            let log_end_offset = self.log_end_offset();
            // An append may have landed between the flush above and taking the append lock; with
            // appends now excluded, sync it before a snapshot or the clean-shutdown marker covers it.
            let recovery_point = self.recovery_point();
            if log_end_offset > recovery_point {
                let first = state
                    .segments
                    .partition_point(|segment| segment.base_offset <= recovery_point)
                    .saturating_sub(1);
                for segment in &state.segments[first..] {
                    segment.sync_log()?;
                }
                self.recovery_point
                    .store(log_end_offset.0, Ordering::Release);
            }
            producer::write_snapshot(&self.dir, &state.producers, log_end_offset, true)?;
            state.active().sync_indexes()?;
            let mut epochs = self.epochs.lock();
            write_epoch_checkpoint(&self.dir, &mut epochs)?;
            Ok(())
        })();
        self.note_fatal(result)?;
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

/// The creation time to give a segment created outside an append (no `now` is passed in): the
/// newest creation time among the current segments, so `segment.ms` is never shortened.
fn state_created_time(segments: &[Arc<Segment>]) -> TimestampMs {
    segments
        .iter()
        .map(|segment| segment.index.read().created)
        .max()
        .unwrap_or(TimestampMs(0))
}

fn sync_file_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_all().map_err(io_error(path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Writes the leader-epoch checkpoint durably and marks the cache clean.
pub(crate) fn write_epoch_checkpoint(
    dir: &Path,
    epochs: &mut LeaderEpochCache,
) -> Result<(), StorageError> {
    write_atomic(
        &dir.join(LEADER_EPOCH_CHECKPOINT_FILE),
        epochs.encode().as_bytes(),
        true,
    )?;
    epochs.mark_clean();
    Ok(())
}

/// Visits the headers of every batch with `from ≤ base offset < to`, in order.
pub(crate) fn replay_segments(
    segments: &[Arc<Segment>],
    from: Offset,
    to: Offset,
    mut visit: impl FnMut(&RecordBatchHeader),
) -> Result<u64, StorageError> {
    let mut visited = 0u64;
    for (position, segment) in segments.iter().enumerate() {
        if segments
            .get(position + 1)
            .is_some_and(|next| next.base_offset <= from)
        {
            continue;
        }
        if segment.base_offset >= to {
            break;
        }
        let size = segment.size();
        let start = segment.index.read().floor_position(from, size);
        segment.scan_headers(start, size, |_, header| {
            if header.base_offset >= to {
                return std::ops::ControlFlow::Break(());
            }
            if header.base_offset >= from {
                visit(header);
                visited += 1;
            }
            std::ops::ControlFlow::Continue(())
        })?;
    }
    Ok(visited)
}

/// Rebuilds producer state for a log ending at `log_end_offset`: drops snapshots above it, loads
/// the newest valid one at or below it and replays the batches after it. Returns the state, the
/// snapshot used and the number of batches replayed.
pub(crate) fn rebuild_producer_state(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_end_offset: Offset,
) -> Result<(ProducerStates, (Option<Offset>, u64)), StorageError> {
    producer::delete_snapshots_after(dir, log_end_offset)?;
    let (from, mut states, snapshot) = match producer::load_latest_snapshot(dir, log_end_offset)? {
        Some((offset, states)) => (offset, states, Some(offset)),
        None => (Offset(0), ProducerStates::default(), None),
    };
    let replayed = replay_segments(segments, from, log_end_offset, |header| {
        states.replay_header(header)
    })?;
    Ok((states, (snapshot, replayed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::batch::{build_batch, set_log_append_time};

    #[test]
    fn zero_copy_log_append_time_matches_the_model_crate() {
        let batch = build_batch(
            Offset(0),
            0,
            2,
            TimestampMs(10),
            TimestampMs(12),
            ProducerId(3),
            ProducerEpoch(0),
            Sequence(0),
            3,
            &[7u8; 300],
        );
        let header = stamped_header(&batch, Offset(500), LeaderEpoch(4), Some(TimestampMs(99)));
        let mut ours = header.to_vec();
        ours.extend_from_slice(&batch[HEADER_BYTES..]);

        let mut expected = batch.clone();
        stamp_offset_and_epoch(&mut expected, Offset(500), LeaderEpoch(4));
        set_log_append_time(&mut expected, TimestampMs(99));
        assert_eq!(ours, expected);
        let parsed = RecordBatchHeader::parse_and_validate(&ours).unwrap();
        assert!(parsed.is_log_append_time());
        assert_eq!(parsed.max_timestamp, TimestampMs(99));
        assert_eq!(parsed.base_timestamp, TimestampMs(10));
    }

    #[test]
    fn leader_input_is_validated_before_anything_is_written() {
        assert!(matches!(
            parse_leader_batches(&[], 1000),
            Err(StorageError::InvalidRecord { .. })
        ));
        let good = build_batch(
            Offset(0),
            0,
            0,
            TimestampMs(0),
            TimestampMs(0),
            ProducerId::NONE,
            ProducerEpoch::NONE,
            Sequence::NONE,
            1,
            &[1; 10],
        );
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert_eq!(parse_leader_batches(&two, 1000).unwrap().len(), 2);
        let mut torn = two.clone();
        torn.pop();
        assert!(matches!(
            parse_leader_batches(&torn, 1000),
            Err(StorageError::CorruptBatch { position, .. }) if position == good.len()
        ));
        assert!(matches!(
            parse_leader_batches(&good, 10),
            Err(StorageError::RecordBatchTooLarge { max: 10, .. })
        ));
        let no_sequence = build_batch(
            Offset(0),
            0,
            0,
            TimestampMs(0),
            TimestampMs(0),
            ProducerId(5),
            ProducerEpoch(0),
            Sequence::NONE,
            1,
            &[],
        );
        assert!(matches!(
            parse_leader_batches(&no_sequence, 1000),
            Err(StorageError::InvalidRecord { .. })
        ));
    }
}
