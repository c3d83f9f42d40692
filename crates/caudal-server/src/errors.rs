//! The one place where Caudal's typed errors become Kafka error codes. Each `match` lists every
//! variant (no `_` arm), so a new variant forces a decision here.

use caudal_controller::ControllerError;

use crate::metadata::MetadataError;
use caudal_model::BatchError;
use caudal_protocol::ErrorCode;
use caudal_storage::StorageError;

/// The Kafka error code for a batch that failed validation.
pub fn batch_error_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::Truncated { .. }
        | BatchError::InvalidLength { .. }
        | BatchError::CrcMismatch { .. } => ErrorCode::CorruptMessage,
        BatchError::UnsupportedMagic { .. }
        | BatchError::RecordCountMismatch { .. }
        | BatchError::UnknownCompression { .. } => ErrorCode::InvalidRecord,
    }
}

/// The Kafka error code for a storage error.
pub fn storage_error_code(error: &StorageError) -> ErrorCode {
    match error {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::CorruptBatch { source, .. } => batch_error_code(source),
        StorageError::InvalidRecord { .. } => ErrorCode::InvalidRecord,
        StorageError::RecordBatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        StorageError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        StorageError::InvalidTxnState { .. } => ErrorCode::InvalidTxnState,
        StorageError::StaleLeaderEpoch { .. } | StorageError::LogClosed { .. } => {
            ErrorCode::NotLeaderOrFollower
        }
        StorageError::InvalidTopicPartition { .. } => ErrorCode::InvalidTopicException,
        StorageError::Io { .. }
        | StorageError::LogDirFailed { .. }
        | StorageError::CorruptFile { .. } => ErrorCode::KafkaStorageError,
        // Follower appends and log creation: never the answer to a client's request.
        StorageError::LogExists { .. } | StorageError::UnexpectedAppendOffset { .. } => {
            ErrorCode::UnknownServerError
        }
    }
}

/// The Kafka error code for a controller error.
pub fn controller_error_code(error: &ControllerError) -> ErrorCode {
    match error {
        ControllerError::TopicAlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        ControllerError::InvalidTopic { .. } => ErrorCode::InvalidTopicException,
        ControllerError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
        ControllerError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment { .. } => ErrorCode::InvalidReplicaAssignment,
        ControllerError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        ControllerError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
        ControllerError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        ControllerError::UnknownTopicId { .. } => ErrorCode::UnknownTopicId,
        ControllerError::TopicDeletionDisabled => ErrorCode::TopicDeletionDisabled,
        ControllerError::MetadataLog(_) => ErrorCode::KafkaStorageError,
        ControllerError::BrokerIdNotRegistered { .. } => ErrorCode::BrokerIdNotRegistered,
    }
}

/// The Kafka error code for a metadata write that failed: the controller's refusal, or
/// REQUEST_TIMED_OUT when no controller answered (the write may still happen).
pub fn metadata_error_code(error: &MetadataError) -> ErrorCode {
    match error {
        MetadataError::Rejected(error) => controller_error_code(error),
        MetadataError::Unavailable(_) => ErrorCode::RequestTimedOut,
    }
}
