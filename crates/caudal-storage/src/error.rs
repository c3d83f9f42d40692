//! The one error type of the storage layer.
//!
//! Every variant carries the structured facts a caller needs to decide what to do; the server maps
//! each variant to a Kafka error code in a single exhaustive `match`. I/O errors are fatal for their
//! data directory: once one is returned, the directory is marked failed and every later append,
//! read or flush on its logs returns [`StorageError::LogDirFailed`] (a failed fsync is never
//! retried).

use std::path::PathBuf;

use caudal_model::{
    BatchError, LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, TopicPartition,
};
use uuid::Uuid;

/// Everything that can go wrong in `caudal-storage`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O error. The data directory holding `path` is now offline.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A read or truncation asked for an offset outside `[log_start_offset, log_end_offset]`.
    #[error(
        "offset {requested} is out of range (log start offset {log_start_offset}, log end offset {log_end_offset})"
    )]
    OffsetOutOfRange {
        requested: Offset,
        log_start_offset: Offset,
        log_end_offset: Offset,
    },
    /// A batch handed to an append is not a whole, valid v2 batch (Kafka: CORRUPT_MESSAGE, or
    /// INVALID_RECORD for a record count that disagrees with the offset delta).
    #[error("corrupt record batch at byte {position} of the request: {source}")]
    CorruptBatch {
        /// Byte position of the offending batch within the appended buffer.
        position: usize,
        #[source]
        source: BatchError,
    },
    /// The append is well-formed but breaks a rule Kafka enforces on producers (Kafka:
    /// INVALID_RECORD).
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: &'static str },
    /// One batch is larger than `max.message.bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordBatchTooLarge { size: usize, max: u32 },
    /// An idempotent producer's batch does not follow its last sequence (Kafka:
    /// OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        producer_id: ProducerId,
        expected: Sequence,
        received: Sequence,
    },
    /// A producer epoch older than the one the log has seen (Kafka: INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: ProducerId,
        current: ProducerEpoch,
        received: ProducerEpoch,
    },
    /// A non-transactional batch from a producer with an open transaction (Kafka:
    /// INVALID_TXN_STATE).
    #[error(
        "producer {producer_id} sent a non-transactional batch while its transaction starting at {transaction_first_offset} is open"
    )]
    InvalidTxnState {
        producer_id: ProducerId,
        transaction_first_offset: Offset,
    },
    /// An append as leader with an epoch older than the log's latest leader epoch (Kafka:
    /// FENCED_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER).
    #[error("leader epoch {received} is older than the log's latest leader epoch {latest}")]
    StaleLeaderEpoch {
        latest: LeaderEpoch,
        received: LeaderEpoch,
    },
    /// A follower append whose offsets do not continue the log (Kafka's
    /// UnexpectedAppendOffsetException / OffsetsOutOfOrderException).
    #[error(
        "append with base offset {base_offset} does not continue the log at {expected_at_least}"
    )]
    UnexpectedAppendOffset {
        expected_at_least: Offset,
        base_offset: Offset,
    },
    /// `create_log` for a partition that already exists with another topic id.
    #[error(
        "log {topic_partition} already exists with topic id {existing_topic_id}, not {requested_topic_id}"
    )]
    LogExists {
        topic_partition: TopicPartition,
        existing_topic_id: Uuid,
        requested_topic_id: Uuid,
    },
    /// The topic name or partition index cannot name a log directory.
    #[error("invalid topic partition {topic_partition}: {reason}")]
    InvalidTopicPartition {
        topic_partition: TopicPartition,
        reason: &'static str,
    },
    /// An earlier I/O error took this data directory offline (Kafka: KAFKA_STORAGE_ERROR).
    #[error("log directory {dir} is offline after an I/O error")]
    LogDirFailed { dir: PathBuf },
    /// The log was deleted or the log manager shut down (Kafka: NOT_LEADER_OR_FOLLOWER).
    #[error("log {topic_partition} is closed")]
    LogClosed { topic_partition: TopicPartition },
    /// A file the storage layer wrote does not hold what it must (a batch below the recovery point
    /// that does not parse, an unreadable leader-epoch entry, ...).
    #[error("corrupt file {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },
}

impl StorageError {
    /// True for errors after which the data directory is offline.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. } | StorageError::LogDirFailed { .. }
        )
    }
}

/// Maps an `io::Error` on `path` to [`StorageError::Io`]; for `map_err`.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}
