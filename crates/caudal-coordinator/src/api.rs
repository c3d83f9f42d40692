//! The coordinator's inputs and outputs: request data (mirroring the Kafka request fields the
//! coordinator needs, independent of any wire codec), responses, effects and configuration.

use bytes::Bytes;
use caudal_model::{LeaderEpoch, Offset, PartitionIndex, TimestampMs};

use crate::{ErrorCode, Record};

/// A group's generation: bumped every time a rebalance completes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenerationId(pub i32);

impl GenerationId {
    /// "No generation": JoinGroup errors and simple (non-member) offset commits.
    pub const NONE: GenerationId = GenerationId(-1);

    pub const fn value(self) -> i32 {
        self.0
    }
}

/// Identifies one request the runtime handed to the coordinator, so a response produced later
/// (a parked JoinGroup or SyncGroup) can be routed back to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Group coordinator settings, named after Kafka's broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub group_max_size: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

/// Kafka's default `offsets.retention.minutes` (7 days), in milliseconds.
pub const OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1_000;

/// The member id a client sends before it has one.
pub const UNKNOWN_MEMBER_ID: &str = "";

/// One protocol a joining member supports, with its opaque metadata (its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinProtocol {
    pub name: String,
    pub metadata: Bytes,
}

/// JoinGroup (all versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// The request's API version: v4+ gets MEMBER_ID_REQUIRED on a first join, v9+ supports
    /// `skip_assignment`.
    pub version: i16,
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// v1+; v0 requests pass the session timeout (Kafka's default for v0).
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<JoinProtocol>,
    pub client_id: String,
    pub client_host: String,
}

/// One member in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponseMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub error: ErrorCode,
    pub generation_id: GenerationId,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// KIP-814: the leader must not compute a new assignment (a static leader was replaced).
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinGroupResponseMember>,
}

impl JoinGroupResponse {
    /// A JoinGroup answered with `error` alone.
    pub fn error(error: ErrorCode, member_id: &str) -> Self {
        JoinGroupResponse {
            error,
            generation_id: GenerationId::NONE,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// SyncGroup (all versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: GenerationId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+; checked against the group's when present.
    pub protocol_type: Option<String>,
    /// v5+; checked against the group's when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment, per member id; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncGroupResponse {
    pub(crate) fn error(error: ErrorCode) -> Self {
        SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Heartbeat (all versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: GenerationId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ batches them; v0–v2 send one member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// LeaveGroup (all versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub members: Vec<LeaveMember>,
}

/// LeaveGroup response: a top-level error and one error per member (v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    pub error: ErrorCode,
    pub members: Vec<(LeaveMember, ErrorCode)>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: PartitionIndex,
    pub committed_offset: Offset,
    pub committed_leader_epoch: LeaderEpoch,
    /// Null commits store "" (Kafka does the same).
    pub committed_metadata: Option<String>,
}

/// One topic of an OffsetCommit or OffsetDelete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

/// OffsetCommit (all versions). Topics and partitions that do not exist must be answered by the
/// server (UNKNOWN_TOPIC_OR_PARTITION) and left out of this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 for a simple commit from a consumer that does not use group management.
    pub generation_id: GenerationId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v2–v4 `retention_time_ms`; -1 = the broker's `offsets.retention.minutes`.
    pub retention_time_ms: i64,
    pub topics: Vec<OffsetCommitTopic>,
}

/// OffsetCommit response, per topic and partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    pub topics: Vec<(String, Vec<(PartitionIndex, ErrorCode)>)>,
}

/// OffsetFetch for one group: all partitions (`topics: None`) or the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    pub topics: Option<Vec<(String, Vec<PartitionIndex>)>>,
    /// Ignored: without transactions there are never pending offsets.
    pub require_stable: bool,
}

/// One partition's committed offset; offset -1, epoch -1 and metadata "" when none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartition {
    pub partition: PartitionIndex,
    pub committed_offset: Offset,
    pub committed_leader_epoch: LeaderEpoch,
    pub metadata: String,
    pub error: ErrorCode,
}

/// OffsetFetch response for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    pub error: ErrorCode,
    pub topics: Vec<(String, Vec<OffsetFetchPartition>)>,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the selected protocol (Stable groups only, else empty).
    pub metadata: Bytes,
    /// The member's assignment (Stable groups only, else empty).
    pub assignment: Bytes,
}

/// One group in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorCode,
    /// Kafka's state name: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead".
    pub state: &'static str,
    pub protocol_type: String,
    /// The selected protocol when Stable, else "".
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

/// One group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// Always "classic" here (ListGroups v5 `GroupType`).
    pub group_type: &'static str,
}

/// A partition in OffsetDelete's response.
pub type PartitionErrors = Vec<(PartitionIndex, ErrorCode)>;

/// OffsetDelete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    pub error: ErrorCode,
    pub topics: Vec<(String, PartitionErrors)>,
}

/// A response for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(ErrorCode),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    DeleteGroups(Vec<(String, ErrorCode)>),
    OffsetDelete(OffsetDeleteResponse),
}

/// A response routed to the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub request: RequestId,
    pub body: ResponseBody,
}

/// A timer the coordinator asks the runtime to keep. Scheduling a key that is already scheduled
/// replaces its deadline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A member's session: it expires unless a heartbeat (or join/sync/commit) renews it.
    Heartbeat { group: String, member_id: String },
    /// A member id handed out with MEMBER_ID_REQUIRED that has not joined yet.
    PendingMember { group: String, member_id: String },
    /// The join phase of a rebalance: the initial delay of a new group, then the rebalance timeout.
    Join { group: String },
    /// The sync phase: members that did not send SyncGroup in time are removed.
    Sync { group: String },
}

/// Something the runtime must do, in order, after appending the result's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Respond(Response),
    ScheduleTimer {
        key: TimerKey,
        deadline: TimestampMs,
    },
    CancelTimer {
        key: TimerKey,
    },
}

/// What one coordinator call produced: records to append to the shard's `__consumer_offsets`
/// partition (in order, atomically) and effects to carry out once they are durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoordinatorResult {
    pub records: Vec<Record>,
    pub effects: Vec<Effect>,
}

impl CoordinatorResult {
    /// The responses in this result, in order.
    pub fn responses(&self) -> impl Iterator<Item = &Response> {
        self.effects.iter().filter_map(|effect| match effect {
            Effect::Respond(response) => Some(response),
            _ => None,
        })
    }
}
