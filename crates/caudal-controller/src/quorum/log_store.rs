//! The Raft log store on disk: `raft.log` (CRC-framed entries, fsynced on append), `raft-vote.json`
//! and `raft-purged.json` (both replaced atomically and fsynced before they count).
//!
//! `raft-committed.json` records the commit point as a restart hint, so a restarted controller
//! re-applies its committed entries before any leader is elected.
//!
//! Entries are kept in memory too (metadata is small); the file is the durable copy. Opening the
//! store replays the file: a torn or corrupt tail (bad length, CRC or body, or an index that does
//! not follow its predecessor) is truncated away and reported, never a panic.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TypeConfig;

/// The Raft log file inside the metadata directory.
pub const RAFT_LOG_FILE: &str = "raft.log";
/// The persisted vote (term, candidate, committed flag).
pub const VOTE_FILE: &str = "raft-vote.json";
/// The last entry known committed: a startup hint, written without fsync (see `read_committed`).
pub const COMMITTED_FILE: &str = "raft-committed.json";
/// The id of the last entry purged from the head of the log (covered by a snapshot).
pub const PURGED_FILE: &str = "raft-purged.json";

const FRAME_HEADER_BYTES: usize = 8;
/// The largest framed entry accepted from disk; a larger length is corruption.
pub const ENTRY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why the Raft log store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("Raft log store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Raft log store file {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What opening the log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogReplayReport {
    pub entries: usize,
    pub truncated_bytes: u64,
}

struct Inner {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Entry and the byte offset of its frame in the file.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    file_len: u64,
    vote: Option<Vote<u64>>,
    last_purged: Option<LogId<u64>>,
}

/// The durable Raft log. Cloning shares the same store (the clone is the log reader openraft hands
/// to replication tasks).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LogStoreError + use<> {
    let path = path.to_path_buf();
    move |source| LogStoreError::Io { path, source }
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, fsync, rename, directory fsync.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Reads and parses a small JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LogStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| LogStoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: error.to_string(),
                })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LogStoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn to_json<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(std::io::Error::other)
}

/// Frames one entry: `[length u32][crc32c u32][JSON body]`, big-endian.
fn encode_entry(entry: &Entry<TypeConfig>) -> std::io::Result<Vec<u8>> {
    let body = to_json(entry)?;
    if body.len() > ENTRY_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "log entry of {} bytes exceeds {ENTRY_BYTES_MAX}",
            body.len()
        )));
    }
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Decodes the frame at the start of `buf`: the entry and its framed size, or why not.
fn decode_entry(buf: &[u8]) -> Result<(Entry<TypeConfig>, usize), String> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(format!("torn frame header ({} bytes)", buf.len()));
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if length > ENTRY_BYTES_MAX {
        return Err(format!("frame length {length} exceeds {ENTRY_BYTES_MAX}"));
    }
    let needed = FRAME_HEADER_BYTES + length;
    if buf.len() < needed {
        return Err(format!("torn frame: {} of {needed} bytes", buf.len()));
    }
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER_BYTES..needed];
    if crc32c::crc32c(body) != crc {
        return Err("frame CRC mismatch".into());
    }
    let entry = serde_json::from_slice(body).map_err(|error| format!("frame body: {error}"))?;
    Ok((entry, needed))
}

impl LogStore {
    /// Opens (creating) the store in `dir`, replaying the log file and truncating a torn or
    /// corrupt tail.
    pub fn open(dir: &Path) -> Result<(Self, LogReplayReport), LogStoreError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let vote = read_json::<Vote<u64>>(&dir.join(VOTE_FILE))?;
        let last_purged = read_json::<Option<LogId<u64>>>(&dir.join(PURGED_FILE))?.flatten();
        let path = dir.join(RAFT_LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(io_error(&path))?;
        let mut entries = BTreeMap::new();
        let mut position = 0usize;
        let mut expected = last_purged.map(|purged| purged.index + 1);
        let mut damage = None;
        while position < contents.len() {
            match decode_entry(&contents[position..]) {
                Ok((entry, size)) => {
                    let index = entry.get_log_id().index;
                    if last_purged.is_some_and(|purged| index <= purged.index) {
                        position += size;
                        continue;
                    }
                    if expected.is_some_and(|expected| index != expected) {
                        damage = Some(format!(
                            "entry index {index} where {} was expected",
                            expected.unwrap_or_default()
                        ));
                        break;
                    }
                    expected = Some(index + 1);
                    entries.insert(index, (entry, position as u64));
                    position += size;
                }
                Err(reason) => {
                    damage = Some(reason);
                    break;
                }
            }
        }
        let mut report = LogReplayReport {
            entries: entries.len(),
            truncated_bytes: 0,
        };
        if let Some(reason) = damage {
            report.truncated_bytes = (contents.len() - position) as u64;
            tracing::warn!(
                path = %path.display(), valid_bytes = position,
                truncated_bytes = report.truncated_bytes, %reason,
                "Raft log ends in a torn or corrupt entry; truncating it"
            );
            file.set_len(position as u64).map_err(io_error(&path))?;
            file.sync_all().map_err(io_error(&path))?;
        } else if contents.is_empty() {
            File::open(dir)
                .and_then(|directory| directory.sync_all())
                .map_err(io_error(dir))?;
        }
        let inner = Inner {
            dir: dir.to_path_buf(),
            path,
            file,
            entries,
            file_len: position as u64,
            vote,
            last_purged,
        };
        Ok((
            Self {
                inner: Arc::new(Mutex::new(inner)),
            },
            report,
        ))
    }

    /// Appends entries and fsyncs them before returning (what [`RaftLogStorage::append`] does
    /// before it reports the flush). Indexes must follow the last entry; openraft truncates first.
    pub fn append_entries(&self, entries: Vec<Entry<TypeConfig>>) -> std::io::Result<()> {
        self.inner.lock().append(entries)
    }

    /// Whether anything (a vote or an entry) was ever stored: a node with nothing may form the
    /// cluster.
    pub fn is_pristine(&self) -> bool {
        let inner = self.inner.lock();
        inner.vote.is_none() && inner.entries.is_empty() && inner.last_purged.is_none()
    }
}

impl Inner {
    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut framed = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = self.file_len + buf.len() as u64;
            buf.extend_from_slice(&encode_entry(&entry)?);
            framed.push((entry, offset));
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Leave the file as it was before this append; the caller sees the failure.
            let _ = self.file.set_len(self.file_len);
            return Err(error);
        }
        self.file_len += buf.len() as u64;
        for (entry, offset) in framed {
            self.entries
                .insert(entry.get_log_id().index, (entry, offset));
        }
        Ok(())
    }

    /// Removes every entry at or after `index`.
    fn truncate(&mut self, index: u64) -> std::io::Result<()> {
        let Some(offset) = self
            .entries
            .range(index..)
            .next()
            .map(|(_, (_, offset))| *offset)
        else {
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.file_len = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Forgets every entry up to and including `log_id`: records the purge point durably, then
    /// rewrites the log file with what remains.
    fn purge(&mut self, log_id: LogId<u64>) -> std::io::Result<()> {
        write_atomically(&self.dir, PURGED_FILE, &to_json(&Some(log_id))?)?;
        self.last_purged = Some(log_id);
        let kept = self.entries.split_off(&(log_id.index + 1));
        let mut buf = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, (entry, _)) in kept {
            let offset = buf.len() as u64;
            buf.extend_from_slice(&encode_entry(&entry)?);
            entries.insert(index, (entry, offset));
        }
        write_atomically(&self.dir, RAFT_LOG_FILE, &buf)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.file_len = buf.len() as u64;
        self.entries = entries;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| *entry.get_log_id());
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.inner.lock();
        to_json(vote)
            .and_then(|bytes| write_atomically(&inner.dir, VOTE_FILE, &bytes))
            .map_err(|error| StorageIOError::write_vote(&error))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // A hint only: replaced atomically but not fsynced, since losing it merely delays the
        // first image after a restart until the leader reports the commit point again.
        let dir = self.inner.lock().dir.clone();
        let temp = dir.join(format!("{COMMITTED_FILE}.tmp"));
        to_json(&committed)
            .and_then(|bytes| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, dir.join(COMMITTED_FILE)))
            .map_err(|error| StorageIOError::write(&error).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let inner = self.inner.lock();
        // An unreadable hint (lost in a crash) is no hint. A hint is trusted only if this log
        // still holds that very entry (a truncated tail may have lost it); Raft's log matching
        // then makes every entry up to it committed too.
        let Ok(Some(Some(committed))) =
            read_json::<Option<LogId<u64>>>(&inner.dir.join(COMMITTED_FILE))
        else {
            return Ok(None);
        };
        let held = inner
            .entries
            .get(&committed.index)
            .is_some_and(|(entry, _)| *entry.get_log_id() == committed)
            || inner.last_purged == Some(committed);
        Ok(held.then_some(committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.append_entries(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let storage_error = StorageIOError::write_logs(&error).into();
                callback.log_io_completed(Err(error));
                Err(storage_error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.inner
            .lock()
            .truncate(log_id.index)
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.inner
            .lock()
            .purge(log_id)
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }
}
