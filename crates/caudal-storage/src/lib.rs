//! # caudal-storage
//!
//! The partition log: what a Kafka broker keeps on disk for each partition, and the
//! [`LogManager`] that owns every log of one data directory.
//!
//! ## What it owns
//! - **Segments** (`<base offset>.log`, batches verbatim as producers sent them, with base offset
//!   and partition leader epoch stamped in), their sparse **offset index** and **time index**
//!   (`.index`, `.timeindex`), rolled on `segment.bytes`, `segment.ms`, a full index and a leader
//!   epoch change.
//! - The **leader-epoch cache** (`leader-epoch-checkpoint`) behind OffsetForLeaderEpoch.
//! - **Idempotent-producer state** (epoch, last five batches, open transaction) with Kafka's
//!   duplicate / out-of-order / fencing rules, persisted as `<offset>.snapshot` files.
//! - **Durability**: group-commit `flush_to`, the recovery point, checkpoint files, the
//!   clean-shutdown marker, and **recovery** of unflushed data after a crash.
//! - **Log lifecycle**: retention by time, size and log start offset (segments renamed
//!   `.deleted`, removed after `file.delete.delay.ms`), DeleteRecords (the log start offset and
//!   its checkpoint), and the **log cleaner** for compacted topics (bounded key map, tombstone
//!   delete horizons, crash-safe `.cleaned` → `.swap` → live swap, `cleaner-offset-checkpoint`).
//!
//! ## Main types
//! - [`LogManager`]: open (load / recover) a data directory, create, get, delete logs, checkpoint,
//!   shut down.
//! - [`PartitionLog`]: `append_as_leader`, `append_as_follower`, `read`, `flush_to`, `roll`,
//!   `truncate_to`, timestamp and epoch lookups, producer state; `delete_old_segments`,
//!   `delete_records_before`, `delete_pending_files`, `cleanable`, `clean`, `size_bytes`.
//!   `Send + Sync`, shared as `Arc<PartitionLog>`.
//! - [`LogCleaner`] (one per cleaner thread: picks the filthiest log, owns the [`OffsetMap`]).
//! - [`LogConfig`], [`CleanupPolicy`], [`CleanerConfig`], [`AppendOutcome`], [`ReadOutcome`],
//!   [`RetentionOutcome`], [`CleanableInfo`], [`CleanOutcome`], [`RecoveryReport`],
//!   [`StorageError`].
//!
//! ## Modules
//! - `manager`: [`LogManager`], data-directory checkpoints, the background flusher of rolled
//!   segments.
//! - `log`: [`PartitionLog`] — append, read, flush, roll, truncate, lookups.
//! - `retention`: retention, DeleteRecords, delayed removal of `.deleted` files.
//! - `cleaner`: the log cleaner — cleanable range, key map, segment rewriting, the swap.
//! - `records`: looking inside batches (decompression, records, rewriting) for the cleaner and
//!   the keyless-record check; never on the append path of non-compacted topics.
//! - `load`: loading and crash recovery of one partition directory, finishing interrupted swaps.
//! - `segment`: one segment's files, positional reads, scans, recovery and truncation.
//! - `index`: in-memory offset/time indexes, their file formats, the shared indexing rule.
//! - `epoch`: the leader-epoch cache and its checkpoint file.
//! - `producer`: producer state, Kafka's sequence rules, snapshot files.
//! - `files`: atomic file replacement, offset checkpoints, `partition.metadata`.
//! - `config`, `error`.
//!
//! ## Invariants (see `docs/storage.md` for the full list)
//! - Never depends on protocol, network or async code: bytes in are `&[u8]`, bytes out are
//!   [`bytes::Bytes`] and `caudal-model` types; all I/O is synchronous `std::fs`. Only `flush*`,
//!   `truncate*`, log creation/deletion and shutdown wait for fsync; appends and reads never do.
//! - An append is all-or-nothing: every batch is validated before a byte is written.
//! - Readers see only whole, completely written batches below the log end offset; they never take
//!   the append lock, and truncation excludes them while it rewrites files.
//! - Everything below the recovery point is fsynced, and the recovery-point checkpoint on disk is
//!   never above the durable data.
//! - Retention and the cleaner never block appends or reads: the cleaner holds the append lock
//!   only for the final swap, and a crash at any step leaves the old or the new segments, never
//!   a mix and never a loss.
//! - Bytes read from disk never cause a panic: corrupt segments, indexes, checkpoints and
//!   snapshots are recovered from (truncated, rebuilt, or treated as absent) or reported as
//!   [`StorageError::CorruptFile`].
//! - After an I/O error the data directory is offline: later operations return
//!   [`StorageError::LogDirFailed`]; a failed fsync is never retried.

mod cleaner;
mod config;
mod epoch;
mod error;
mod files;
mod index;
mod load;
mod log;
mod manager;
mod producer;
mod records;
mod retention;
mod segment;

pub use cleaner::{
    CleanOutcome, CleanReport, CleanableInfo, LogCleaner, OFFSET_MAP_SLOT_BYTES, OffsetMap,
};
pub use config::{CleanerConfig, CleanupPolicy, LogConfig, TimestampType};
pub use error::StorageError;
pub use load::{CorruptionSite, RecoveryReport};
pub use log::{AppendOutcome, PartitionLog, ProducerStateSummary, ReadOutcome};
pub use manager::{
    CLEAN_SHUTDOWN_FILE, CLEANER_OFFSET_CHECKPOINT_FILE, LOG_START_OFFSET_CHECKPOINT_FILE,
    LogManager, RECOVERY_POINT_CHECKPOINT_FILE,
};
pub use retention::{DeletedSegment, DeletionReason, RetentionOutcome};

/// Maintenance steps a test can stop at, leaving the files as a crash there would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// The cleaned segment is written and fsynced as `.cleaned`.
    CleanedWritten,
    /// The cleaned segment was renamed `.swap`.
    SwapRenamed,
    /// The replaced segments were renamed `.deleted`.
    OldSegmentsDeleted,
    /// The `.swap` files were renamed into place, before the directory fsync.
    SwapInstalled,
    /// Retention renamed segments `.deleted`, before the directory fsync and the checkpoint.
    RetentionRenamed,
}

/// What a test failpoint does when reached.
#[cfg(test)]
pub(crate) enum FailAction {
    /// Stop there with an error, leaving the files as they are.
    Crash,
    /// Run this, then carry on.
    Run(Box<dyn FnOnce() + Send>),
}

/// A one-shot test failpoint: fires at the `skip + 1`-th time `point` is reached.
#[cfg(test)]
pub(crate) struct Failpoint {
    pub point: CrashPoint,
    pub skip: usize,
    pub action: FailAction,
}

#[cfg(test)]
mod lifecycle_tests;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::PartitionLog>();
        assert_send_sync::<super::LogManager>();
        assert_send_sync::<super::StorageError>();
    }
}
