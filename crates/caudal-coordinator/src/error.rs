//! The Kafka error codes the group coordinator answers with.
//!
//! The coordinator's outcomes are Kafka's own vocabulary, so they are kept as Kafka error codes
//! (with their numeric values); the server copies [`ErrorCode::code`] into the response.

/// A Kafka error code returned by a coordinator operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    None,
    UnknownServerError,
    UnknownTopicOrPartition,
    OffsetMetadataTooLarge,
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    UnknownMemberId,
    InvalidSessionTimeout,
    RebalanceInProgress,
    NonEmptyGroup,
    GroupIdNotFound,
    MemberIdRequired,
    GroupMaxSizeReached,
    FencedInstanceId,
    GroupSubscribedToTopic,
}

impl ErrorCode {
    /// The numeric code Kafka puts on the wire.
    pub const fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::UnknownServerError => -1,
            ErrorCode::UnknownTopicOrPartition => 3,
            ErrorCode::OffsetMetadataTooLarge => 12,
            ErrorCode::CoordinatorLoadInProgress => 14,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::NotCoordinator => 16,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::InvalidGroupId => 24,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::NonEmptyGroup => 68,
            ErrorCode::GroupIdNotFound => 69,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::GroupMaxSizeReached => 81,
            ErrorCode::FencedInstanceId => 82,
            ErrorCode::GroupSubscribedToTopic => 86,
        }
    }

    /// Kafka's name for the code, as its clients log it.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::FencedInstanceId => "FENCED_INSTANCE_ID",
            ErrorCode::GroupSubscribedToTopic => "GROUP_SUBSCRIBED_TO_TOPIC",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_match_kafka() {
        let expected = [
            (ErrorCode::None, 0),
            (ErrorCode::UnknownServerError, -1),
            (ErrorCode::UnknownTopicOrPartition, 3),
            (ErrorCode::OffsetMetadataTooLarge, 12),
            (ErrorCode::CoordinatorLoadInProgress, 14),
            (ErrorCode::CoordinatorNotAvailable, 15),
            (ErrorCode::NotCoordinator, 16),
            (ErrorCode::IllegalGeneration, 22),
            (ErrorCode::InconsistentGroupProtocol, 23),
            (ErrorCode::InvalidGroupId, 24),
            (ErrorCode::UnknownMemberId, 25),
            (ErrorCode::InvalidSessionTimeout, 26),
            (ErrorCode::RebalanceInProgress, 27),
            (ErrorCode::NonEmptyGroup, 68),
            (ErrorCode::GroupIdNotFound, 69),
            (ErrorCode::MemberIdRequired, 79),
            (ErrorCode::GroupMaxSizeReached, 81),
            (ErrorCode::FencedInstanceId, 82),
            (ErrorCode::GroupSubscribedToTopic, 86),
        ];
        for (error, code) in expected {
            assert_eq!(error.code(), code, "{}", error.name());
        }
    }
}
