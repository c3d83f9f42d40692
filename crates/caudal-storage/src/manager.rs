//! [`LogManager`]: every partition log of one data directory — loading and recovery at startup,
//! creation and deletion, the data directory's checkpoint files, background flushing of rolled
//! segments, and clean shutdown.
//!
//! Data-directory files:
//! - `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//!   `cleaner-offset-checkpoint`: Kafka's text format (see [`crate::files`]), written tmp → fsync
//!   → rename → fsync dir;
//! - `.caudal_cleanshutdown`: present only between a clean shutdown and the next open;
//! - `<topic>-<partition>/`: one directory per log; `<topic>-<partition>.<uuid>-delete/` while a
//!   deleted log's directory is being removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak, mpsc};
use std::thread::JoinHandle;

use caudal_model::{Offset, TimestampMs, TopicPartition};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::LogConfig;
use crate::epoch::{LEADER_EPOCH_CHECKPOINT_FILE, LeaderEpochCache};
use crate::error::{StorageError, io_error};
use crate::files::{
    PARTITION_METADATA_FILE, TMP_SUFFIX, encode_offset_checkpoint, encode_partition_metadata,
    parse_partition_dir_name, partition_dir_name, read_offset_checkpoint, remove_file_if_exists,
    sync_dir, validate_topic_partition, write_atomic,
};
use crate::load::{LoadParams, RecoveryReport, load_log};
use crate::log::{DirFailure, LogContext, LogParts, PartitionLog};
use crate::producer::ProducerStates;
use crate::segment::Segment;

/// File name of the recovery-point checkpoint in a data directory.
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// File name of the log-start-offset checkpoint in a data directory.
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// File name of the log cleaner's checkpoint (first uncleaned offset per compacted log).
pub const CLEANER_OFFSET_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// The clean-shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = ".caudal_cleanshutdown";
/// Suffix of a deleted log's directory while it is removed.
const DELETE_DIR_SUFFIX: &str = "-delete";

/// Work for the background flusher thread.
pub(crate) enum FlusherMessage {
    /// Flush `log` up to `offset` (sent when a segment is rolled).
    Flush {
        log: Weak<PartitionLog>,
        offset: Offset,
    },
    /// Reply once every earlier message is handled.
    Barrier(mpsc::SyncSender<()>),
    Stop,
}

/// State shared by the manager and (weakly) its logs.
pub(crate) struct ManagerShared {
    data_dir: PathBuf,
    failure: Arc<DirFailure>,
    logs: RwLock<BTreeMap<TopicPartition, Arc<PartitionLog>>>,
    /// Serialises log creation and deletion, so the map's lock is never held across file I/O.
    create_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
}

impl ManagerShared {
    fn logs_snapshot(&self) -> Vec<Arc<PartitionLog>> {
        self.logs.read().values().cloned().collect()
    }

    /// Writes the cleaner checkpoint file from the logs' cleaner checkpoints (logs never cleaned
    /// have no entry). Reads only atomics of the logs.
    pub(crate) fn write_cleaner_checkpoint(&self) -> Result<(), StorageError> {
        self.failure.check()?;
        let _serialized = self.checkpoint_lock.lock();
        self.write_cleaner_checkpoint_locked()
    }

    fn write_cleaner_checkpoint_locked(&self) -> Result<(), StorageError> {
        let cleaned: BTreeMap<TopicPartition, Offset> = self
            .logs_snapshot()
            .iter()
            .filter_map(|log| {
                log.cleaner_checkpoint()
                    .map(|offset| (log.topic_partition().clone(), offset))
            })
            .collect();
        let result = write_atomic(
            &self.data_dir.join(CLEANER_OFFSET_CHECKPOINT_FILE),
            encode_offset_checkpoint(&cleaned).as_bytes(),
            true,
        );
        if let Err(error) = &result {
            self.failure.fail(error);
        }
        result
    }

    /// Writes the three checkpoint files from the logs' current recovery points, log start
    /// offsets and cleaner checkpoints. Reads only atomics of the logs, so it may be called while
    /// a log holds its own locks.
    pub(crate) fn write_checkpoints(&self) -> Result<(), StorageError> {
        self.failure.check()?;
        let _serialized = self.checkpoint_lock.lock();
        let logs = self.logs_snapshot();
        let recovery_points: BTreeMap<TopicPartition, Offset> = logs
            .iter()
            .map(|log| (log.topic_partition().clone(), log.recovery_point()))
            .collect();
        let log_start_offsets: BTreeMap<TopicPartition, Offset> = logs
            .iter()
            .map(|log| (log.topic_partition().clone(), log.log_start_offset()))
            .collect();
        let result = write_atomic(
            &self.data_dir.join(RECOVERY_POINT_CHECKPOINT_FILE),
            encode_offset_checkpoint(&recovery_points).as_bytes(),
            true,
        )
        .and_then(|()| {
            write_atomic(
                &self.data_dir.join(LOG_START_OFFSET_CHECKPOINT_FILE),
                encode_offset_checkpoint(&log_start_offsets).as_bytes(),
                true,
            )
        });
        if let Err(error) = &result {
            self.failure.fail(error);
        }
        result?;
        self.write_cleaner_checkpoint_locked()
    }
}

/// All partition logs of one data directory. `Send + Sync`.
pub struct LogManager {
    shared: Arc<ManagerShared>,
    recovery_report: Vec<RecoveryReport>,
    flusher_tx: mpsc::Sender<FlusherMessage>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

fn read_checkpoint_or_warn(path: &Path) -> Result<BTreeMap<TopicPartition, Offset>, StorageError> {
    match read_offset_checkpoint(path) {
        Ok(entries) => Ok(entries),
        Err(error @ StorageError::CorruptFile { .. }) => {
            tracing::warn!(%error, "ignoring a corrupt checkpoint file; recovering from offset 0");
            Ok(BTreeMap::new())
        }
        Err(error) => Err(error),
    }
}

fn spawn_flusher(rx: mpsc::Receiver<FlusherMessage>) -> Result<JoinHandle<()>, std::io::Error> {
    std::thread::Builder::new()
        .name("caudal-log-flusher".into())
        .spawn(move || {
            while let Ok(message) = rx.recv() {
                match message {
                    FlusherMessage::Flush { log, offset } => {
                        if let Some(log) = log.upgrade()
                            && let Err(error) = log.flush_rolled(offset)
                            && !matches!(error, StorageError::LogClosed { .. })
                        {
                            tracing::error!(
                                topic_partition = %log.topic_partition(),
                                offset = offset.0,
                                %error,
                                "background flush of a rolled segment failed"
                            );
                        }
                    }
                    FlusherMessage::Barrier(reply) => {
                        let _ = reply.send(());
                    }
                    FlusherMessage::Stop => break,
                }
            }
        })
}

impl LogManager {
    /// Opens (creating if needed) `data_dir` and loads every partition log in it; see the crate
    /// docs for clean and unclean starts.
    pub fn open(data_dir: &Path, now: TimestampMs) -> Result<LogManager, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let clean_marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = clean_marker.exists();
        let recovery_points =
            read_checkpoint_or_warn(&data_dir.join(RECOVERY_POINT_CHECKPOINT_FILE))?;
        let log_start_offsets =
            read_checkpoint_or_warn(&data_dir.join(LOG_START_OFFSET_CHECKPOINT_FILE))?;
        let cleaner_checkpoints =
            read_checkpoint_or_warn(&data_dir.join(CLEANER_OFFSET_CHECKPOINT_FILE))?;

        let failure = Arc::new(DirFailure::new(data_dir.to_path_buf()));
        let shared = Arc::new(ManagerShared {
            data_dir: data_dir.to_path_buf(),
            failure: Arc::clone(&failure),
            logs: RwLock::new(BTreeMap::new()),
            create_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
        });
        let (flusher_tx, flusher_rx) = mpsc::channel();

        let mut partition_dirs = Vec::new();
        for entry in std::fs::read_dir(data_dir).map_err(io_error(data_dir))? {
            let entry = entry.map_err(io_error(data_dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_dir = entry.file_type().map_err(io_error(&path))?.is_dir();
            if is_dir && name.ends_with(DELETE_DIR_SUFFIX) {
                tracing::info!(dir = %path.display(), "removing the directory of a deleted log");
                std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
            } else if !is_dir && name.ends_with(TMP_SUFFIX) {
                remove_file_if_exists(&path)?;
            } else if is_dir {
                match parse_partition_dir_name(&name) {
                    Some(tp) => partition_dirs.push((tp, path)),
                    // Names without a '-' are other owners' directories (the broker's
                    // `__cluster_metadata`); a partition-shaped name we cannot parse is worth a
                    // warning.
                    None if !name.contains('-') => {
                        tracing::debug!(dir = %path.display(), "skipping a directory that is not a partition log")
                    }
                    None => {
                        tracing::warn!(dir = %path.display(), "ignoring a directory that is not a partition log")
                    }
                }
            }
        }
        partition_dirs.sort();

        let mut recovery_report = Vec::with_capacity(partition_dirs.len());
        for (tp, path) in partition_dirs {
            let (log, report) = load_log(LoadParams {
                dir: &path,
                topic_partition: tp.clone(),
                clean_shutdown,
                recovery_point: recovery_points.get(&tp).copied(),
                log_start_offset: log_start_offsets.get(&tp).copied(),
                cleaner_checkpoint: cleaner_checkpoints.get(&tp).copied(),
                now,
                context: LogContext {
                    failure: Arc::clone(&failure),
                    flusher: Some(flusher_tx.clone()),
                    manager: Arc::downgrade(&shared),
                },
            })?;
            shared.logs.write().insert(tp, log);
            recovery_report.push(report);
        }
        shared.write_checkpoints()?;
        if clean_shutdown {
            remove_file_if_exists(&clean_marker)?;
            sync_dir(data_dir)?;
        }
        let flusher = spawn_flusher(flusher_rx).map_err(io_error(data_dir))?;
        tracing::info!(
            data_dir = %data_dir.display(),
            logs = recovery_report.len(),
            clean_shutdown,
            "opened log directory"
        );
        Ok(LogManager {
            shared,
            recovery_report,
            flusher_tx,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// What loading found, one report per log, in directory-name order.
    pub fn recovery_report(&self) -> &[RecoveryReport] {
        &self.recovery_report
    }

    /// True once an I/O error took this data directory offline.
    pub fn is_failed(&self) -> bool {
        self.shared.failure.is_failed()
    }

    /// Creates the log for `tp` (or returns the existing one if it has the same topic id, or had
    /// none recorded). Blocks on fsyncs.
    pub fn create_log(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
        now: TimestampMs,
    ) -> Result<Arc<PartitionLog>, StorageError> {
        validate_topic_partition(tp)?;
        self.shared.failure.check()?;
        let _creating = self.shared.create_lock.lock();
        if let Some(existing) = self.get(tp) {
            let existing_id = existing.topic_id();
            if existing_id == topic_id {
                return Ok(existing);
            }
            if existing_id.is_nil() {
                let path = existing.dir().join(PARTITION_METADATA_FILE);
                let written =
                    write_atomic(&path, encode_partition_metadata(topic_id).as_bytes(), true);
                self.note_fatal(written)?;
                existing.set_topic_id(topic_id);
                return Ok(existing);
            }
            return Err(StorageError::LogExists {
                topic_partition: tp.clone(),
                existing_topic_id: existing_id,
                requested_topic_id: topic_id,
            });
        }
        let dir = self.shared.data_dir.join(partition_dir_name(tp));
        if dir.exists() {
            return Err(StorageError::CorruptFile {
                path: dir,
                reason: "a directory for this log exists but was not loaded".into(),
            });
        }
        let created = (|| {
            std::fs::create_dir(&dir).map_err(io_error(&dir))?;
            write_atomic(
                &dir.join(PARTITION_METADATA_FILE),
                encode_partition_metadata(topic_id).as_bytes(),
                true,
            )?;
            write_atomic(
                &dir.join(LEADER_EPOCH_CHECKPOINT_FILE),
                LeaderEpochCache::default().encode().as_bytes(),
                true,
            )?;
            let segment = Segment::create(&dir, Offset(0), now)?;
            segment.sync_log()?;
            sync_dir(&dir)?;
            sync_dir(&self.shared.data_dir)?;
            Ok(segment)
        })();
        let segment = self.note_fatal(created)?;
        let log = PartitionLog::new(LogParts {
            topic_partition: tp.clone(),
            topic_id,
            dir,
            config,
            segments: vec![Arc::new(segment)],
            producers: ProducerStates::default(),
            epochs: LeaderEpochCache::default(),
            log_start_offset: Offset(0),
            log_end_offset: Offset(0),
            recovery_point: Offset(0),
            cleaner_checkpoint: None,
            context: self.context(),
        });
        self.shared
            .logs
            .write()
            .insert(tp.clone(), Arc::clone(&log));
        tracing::info!(topic_partition = %tp, %topic_id, "created log");
        Ok(log)
    }

    fn context(&self) -> LogContext {
        LogContext {
            failure: Arc::clone(&self.shared.failure),
            flusher: Some(self.flusher_tx.clone()),
            manager: Arc::downgrade(&self.shared),
        }
    }

    fn note_fatal<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(error) = &result
            && matches!(error, StorageError::Io { .. })
        {
            self.shared.failure.fail(error);
        }
        result
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionLog>> {
        self.shared.logs.read().get(tp).cloned()
    }

    /// Every log, ordered by topic partition.
    pub fn logs(&self) -> Vec<Arc<PartitionLog>> {
        self.shared.logs_snapshot()
    }

    /// Deletes the log of `tp`: closes it (waiting for in-flight operations; later calls on it
    /// return `LogClosed`), renames its directory to `<tp>.<uuid>-delete`, then removes it. Returns
    /// `Ok` if there is no such log.
    pub fn delete_log(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        self.shared.failure.check()?;
        let _deleting = self.shared.create_lock.lock();
        let Some(log) = self.shared.logs.write().remove(tp) else {
            return Ok(());
        };
        log.close();
        let renamed = self.shared.data_dir.join(format!(
            "{}.{}{DELETE_DIR_SUFFIX}",
            partition_dir_name(tp),
            Uuid::new_v4().simple()
        ));
        let deleted = (|| {
            std::fs::rename(log.dir(), &renamed).map_err(io_error(log.dir()))?;
            sync_dir(&self.shared.data_dir)?;
            std::fs::remove_dir_all(&renamed).map_err(io_error(&renamed))?;
            Ok(())
        })();
        self.note_fatal(deleted)?;
        tracing::info!(topic_partition = %tp, "deleted log");
        // So a recreated log of the same name never inherits this one's recovery point.
        self.shared.write_checkpoints()
    }

    /// Writes the recovery-point, log-start-offset and cleaner-offset checkpoint files.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.shared.write_checkpoints()
    }

    /// Removes the files of every log's deleted segments whose `file.delete.delay.ms` has passed
    /// by `now` (see [`PartitionLog::delete_pending_files`]); returns how many files went. The
    /// server calls this periodically, e.g. with each retention check.
    pub fn delete_pending_files(&self, now: TimestampMs) -> Result<usize, StorageError> {
        let mut removed = 0;
        for log in self.logs() {
            match log.delete_pending_files(now) {
                Ok(count) => removed += count,
                Err(StorageError::LogClosed { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// Waits until the background flusher has handled every roll flush requested so far. For
    /// tests and orderly shutdown.
    pub fn sync_background_flushes(&self) {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        if self
            .flusher_tx
            .send(FlusherMessage::Barrier(reply_tx))
            .is_ok()
        {
            let _ = reply_rx.recv();
        }
    }

    fn stop_flusher(&self) {
        if let Some(handle) = self.flusher.lock().take() {
            let _ = self.flusher_tx.send(FlusherMessage::Stop);
            if handle.join().is_err() {
                tracing::error!("the log flusher thread panicked");
            }
        }
    }

    /// Clean shutdown: flush every log, write producer snapshots and leader-epoch checkpoints,
    /// write the checkpoint files, then the clean-shutdown marker. Logs are closed afterwards. If
    /// anything fails the marker is not written, so the next open recovers.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        self.stop_flusher();
        self.shared.failure.check()?;
        let mut first_error = None;
        for log in self.logs() {
            match log.shutdown() {
                Ok(()) | Err(StorageError::LogClosed { .. }) => {}
                Err(error) => {
                    tracing::error!(topic_partition = %log.topic_partition(), %error, "log shutdown failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        self.shared.write_checkpoints()?;
        let marker = self.shared.data_dir.join(CLEAN_SHUTDOWN_FILE);
        let written = write_atomic(&marker, b"", true);
        self.note_fatal(written)?;
        tracing::info!(data_dir = %self.shared.data_dir.display(), "log directory shut down cleanly");
        Ok(())
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}
