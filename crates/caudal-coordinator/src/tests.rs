//! State-machine tests: requests, timers and replay driven with an explicit clock.

use std::collections::BTreeMap;

use bytes::Bytes;
use caudal_model::{LeaderEpoch, Offset, PartitionIndex, TimestampMs};
use proptest::prelude::*;

use crate::*;

const GROUP: &str = "g";
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

/// Drives a shard like the runtime would: keeps its timers, collects records and responses, and
/// checks that every request is answered at most once.
struct Harness {
    shard: GroupCoordinatorShard,
    now: i64,
    next_request: u64,
    timers: BTreeMap<TimerKey, TimestampMs>,
    log: Vec<Record>,
    responses: BTreeMap<RequestId, ResponseBody>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(CoordinatorConfig::default())
    }

    fn with_config(config: CoordinatorConfig) -> Self {
        let mut shard = GroupCoordinatorShard::new(config, 42);
        let result = shard.on_loaded(TimestampMs(0));
        let mut harness = Harness {
            shard,
            now: 0,
            next_request: 0,
            timers: BTreeMap::new(),
            log: Vec::new(),
            responses: BTreeMap::new(),
        };
        harness.apply(result);
        harness
    }

    fn now(&self) -> TimestampMs {
        TimestampMs(self.now)
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn apply(&mut self, result: CoordinatorResult) {
        for record in result.records {
            // Every record survives the wire format.
            let decoded = Record::decode(&record.encode_key(), record.encode_value().as_deref())
                .expect("own records decode");
            assert_eq!(decoded, record);
            self.log.push(record);
        }
        for effect in result.effects {
            match effect {
                Effect::Respond(response) => {
                    let previous = self.responses.insert(response.request, response.body);
                    assert!(
                        previous.is_none(),
                        "request {:?} answered twice",
                        response.request
                    );
                }
                Effect::ScheduleTimer { key, deadline } => {
                    self.timers.insert(key, deadline);
                }
                Effect::CancelTimer { key } => {
                    self.timers.remove(&key);
                }
            }
        }
        let shard_timers: BTreeMap<TimerKey, TimestampMs> =
            self.shard.timers().map(|(k, d)| (k.clone(), d)).collect();
        assert_eq!(shard_timers, self.timers, "effects and shard timers agree");
    }

    /// Moves the clock forward, firing due timers in deadline order.
    fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, d)| d.value() <= target)
                .min_by_key(|(_, d)| **d)
                .map(|(k, d)| (k.clone(), *d));
            let Some((key, deadline)) = due else { break };
            self.now = self.now.max(deadline.value());
            self.timers.remove(&key);
            let result = self.shard.on_timer(&key, self.now());
            // The runtime forgets a fired timer; the shard has too.
            self.apply(result);
        }
        self.now = target;
    }

    fn join(&mut self, join: JoinGroupRequest) -> RequestId {
        let id = self.request_id();
        let result = self.shard.join_group(id, join, self.now());
        self.apply(result);
        id
    }

    fn join_response(&mut self, id: RequestId) -> Option<JoinGroupResponse> {
        match self.responses.remove(&id) {
            Some(ResponseBody::JoinGroup(r)) => Some(r),
            None => None,
            Some(other) => panic!("expected a JoinGroup response, got {other:?}"),
        }
    }

    fn sync(&mut self, sync: SyncGroupRequest) -> RequestId {
        let id = self.request_id();
        let result = self.shard.sync_group(id, sync, self.now());
        self.apply(result);
        id
    }

    fn sync_response(&mut self, id: RequestId) -> Option<SyncGroupResponse> {
        match self.responses.remove(&id) {
            Some(ResponseBody::SyncGroup(r)) => Some(r),
            None => None,
            Some(other) => panic!("expected a SyncGroup response, got {other:?}"),
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> ErrorCode {
        self.heartbeat_static(member_id, None, generation)
    }

    fn heartbeat_static(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        let id = self.request_id();
        let result = self.shard.heartbeat(
            id,
            HeartbeatRequest {
                group_id: GROUP.into(),
                generation_id: GenerationId(generation),
                member_id: member_id.into(),
                group_instance_id: instance.map(Into::into),
            },
            self.now(),
        );
        self.apply(result);
        match self.responses.remove(&id) {
            Some(ResponseBody::Heartbeat(error)) => error,
            other => panic!("expected a heartbeat response, got {other:?}"),
        }
    }

    fn leave(&mut self, members: Vec<LeaveMember>) -> LeaveGroupResponse {
        let id = self.request_id();
        let result = self.shard.leave_group(
            id,
            LeaveGroupRequest {
                group_id: GROUP.into(),
                members,
            },
            self.now(),
        );
        self.apply(result);
        match self.responses.remove(&id) {
            Some(ResponseBody::LeaveGroup(r)) => r,
            other => panic!("expected a leave response, got {other:?}"),
        }
    }

    fn commit(&mut self, commit: OffsetCommitRequest) -> Vec<ErrorCode> {
        let id = self.request_id();
        let result = self.shard.offset_commit(id, commit, self.now());
        self.apply(result);
        match self.responses.remove(&id) {
            Some(ResponseBody::OffsetCommit(r)) => r
                .topics
                .into_iter()
                .flat_map(|(_, partitions)| partitions.into_iter().map(|(_, e)| e))
                .collect(),
            other => panic!("expected a commit response, got {other:?}"),
        }
    }

    fn fetch(&self, topic: &str, partition: i32) -> Offset {
        let response = self.shard.offset_fetch(&OffsetFetchRequest {
            group_id: GROUP.into(),
            topics: Some(vec![(topic.into(), vec![PartitionIndex(partition)])]),
            require_stable: true,
        });
        assert_eq!(response.error, ErrorCode::None);
        response.topics[0].1[0].committed_offset
    }

    fn state(&self) -> Option<GroupState> {
        self.shard.group_state(GROUP)
    }

    /// Joins a new dynamic member with the two-step (v5) join and returns its member id; the
    /// JoinGroup itself is parked (its request id is returned too).
    fn join_new(&mut self, protocols: &[(&str, &[u8])]) -> (String, RequestId) {
        let first = self.join(join_request("", None, protocols));
        let response = self.join_response(first).expect("answered at once");
        assert_eq!(response.error, ErrorCode::MemberIdRequired);
        let member_id = response.member_id;
        let second = self.join(join_request(&member_id, None, protocols));
        (member_id, second)
    }

    /// One member, Stable at generation 1, with assignment "a1".
    fn stable_single(&mut self) -> String {
        let (member, join) = self.join_new(&[("range", b"m")]);
        self.advance(3_000);
        let response = self
            .join_response(join)
            .expect("join completes after the delay");
        assert_eq!(response.error, ErrorCode::None);
        let sync = self.sync(sync_request(&member, 1, &[(&member, b"a1")]));
        assert_eq!(self.sync_response(sync).unwrap().error, ErrorCode::None);
        assert_eq!(self.state(), Some(GroupState::Stable));
        member
    }

    /// Two members (leader first), Stable at generation 1.
    fn stable_pair(&mut self) -> (String, String) {
        let (a, join_a) = self.join_new(&[("range", b"ma")]);
        let (b, join_b) = self.join_new(&[("range", b"mb")]);
        self.advance(6_000);
        let ra = self.join_response(join_a).unwrap();
        let rb = self.join_response(join_b).unwrap();
        assert_eq!(ra.leader, a);
        assert_eq!(rb.leader, a);
        let sync_b = self.sync(sync_request(&b, 1, &[]));
        let sync_a = self.sync(sync_request(&a, 1, &[(&a, b"xa"), (&b, b"xb")]));
        assert_eq!(
            self.sync_response(sync_a).unwrap().assignment,
            Bytes::from_static(b"xa")
        );
        assert_eq!(
            self.sync_response(sync_b).unwrap().assignment,
            Bytes::from_static(b"xb")
        );
        (a, b)
    }
}

fn join_request(
    member_id: &str,
    instance: Option<&str>,
    protocols: &[(&str, &[u8])],
) -> JoinGroupRequest {
    JoinGroupRequest {
        version: 5,
        group_id: GROUP.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member_id.into(),
        group_instance_id: instance.map(Into::into),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(name, metadata)| JoinProtocol {
                name: (*name).into(),
                metadata: Bytes::copy_from_slice(metadata),
            })
            .collect(),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn sync_request(
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: GROUP.into(),
        generation_id: GenerationId(generation),
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).into(), Bytes::copy_from_slice(a)))
            .collect(),
    }
}

fn commit_request(
    member_id: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: GROUP.into(),
        generation_id: GenerationId(generation),
        member_id: member_id.into(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: vec![OffsetCommitTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitPartition {
                partition: PartitionIndex(partition),
                committed_offset: Offset(offset),
                committed_leader_epoch: LeaderEpoch(3),
                committed_metadata: Some("meta".into()),
            }],
        }],
    }
}

/// A `consumer` protocol subscription (v0) to `topics`.
fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
    }
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    bytes
}

/// The durable projection of a shard: per group, its metadata record and its offsets.
type Durable = BTreeMap<
    String,
    (
        Option<GroupMetadataValue>,
        BTreeMap<(String, PartitionIndex), OffsetCommitValue>,
    ),
>;

/// What a shard's records must rebuild: groups that are Stable or Empty exactly as they are,
/// groups mid-rebalance as their last record left them.
fn durable(shard: &GroupCoordinatorShard) -> Durable {
    shard
        .groups()
        .iter()
        .filter(|(_, g)| !g.is_blank())
        .filter_map(|(id, g)| {
            let metadata = match g.state {
                GroupState::Stable | GroupState::Empty
                    if g.persisted.is_some() || !g.members.is_empty() =>
                {
                    Some(g.metadata_value())
                }
                _ => g.persisted.clone(),
            };
            if metadata.is_none() && g.offsets.is_empty() {
                return None;
            }
            Some((id.clone(), (metadata, g.offsets.clone())))
        })
        .collect()
}

fn replayed(log: &[Record]) -> GroupCoordinatorShard {
    let mut shard = GroupCoordinatorShard::new(CoordinatorConfig::default(), 7);
    for record in log {
        shard.replay(record.clone());
    }
    let _ = shard.on_loaded(TimestampMs(0));
    shard
}

// ---------------------------------------------------------------------------------------------
// Join and the initial rebalance.

#[test]
fn two_step_join_then_initial_delay_then_sync_makes_group_stable() {
    let mut h = Harness::new();
    let first = h.join(join_request("", None, &[("range", b"m")]));
    let response = h.join_response(first).unwrap();
    assert_eq!(response.error, ErrorCode::MemberIdRequired);
    assert!(response.member_id.starts_with("client-"));
    assert_eq!(response.generation_id, GenerationId::NONE);
    assert!(h.log.is_empty(), "a pending member writes nothing");

    let member = response.member_id;
    let join = h.join(join_request(&member, None, &[("range", b"m")]));
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    assert!(
        h.join_response(join).is_none(),
        "parked during the initial delay"
    );
    h.advance(2_999);
    assert!(h.join_response(join).is_none());
    h.advance(1);
    let response = h.join_response(join).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(response.generation_id, GenerationId(1));
    assert_eq!(response.leader, member);
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1);
    assert_eq!(response.members[0].metadata, Bytes::from_static(b"m"));
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
    assert_eq!(h.heartbeat(&member, 1), ErrorCode::None);

    let sync = h.sync(sync_request(&member, 1, &[(&member, b"assignment")]));
    let response = h.sync_response(sync).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(response.assignment, Bytes::from_static(b"assignment"));
    assert_eq!(h.state(), Some(GroupState::Stable));
    let Some(Record::GroupMetadata {
        value: Some(value), ..
    }) = h.log.last()
    else {
        panic!("the leader's assignment is written");
    };
    assert_eq!(value.generation, GenerationId(1));
    assert_eq!(
        value.members[0].assignment,
        Bytes::from_static(b"assignment")
    );
    assert_eq!(value.members[0].subscription, Bytes::from_static(b"m"));
}

#[test]
fn joins_during_the_initial_delay_extend_it_up_to_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(&[("range", b"a")]);
    h.advance(2_000);
    let (b, join_b) = h.join_new(&[("range", b"b")]);
    h.advance(1_000); // First delay ends: a member joined, so it waits another delay.
    assert!(h.join_response(join_a).is_none());
    h.advance(3_000);
    let ra = h.join_response(join_a).unwrap();
    let rb = h.join_response(join_b).unwrap();
    assert_eq!(
        (ra.generation_id, rb.generation_id),
        (GenerationId(1), GenerationId(1))
    );
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers see none");
    assert_eq!(rb.member_id, b);
}

#[test]
fn v3_join_gets_a_member_id_without_the_extra_round_trip() {
    let mut h = Harness::new();
    let mut request = join_request("", None, &[("range", b"m")]);
    request.version = 3;
    let join = h.join(request);
    assert!(h.join_response(join).is_none());
    h.advance(3_000);
    let response = h.join_response(join).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(response.leader, response.member_id);
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::new();
    let mut request = join_request("", None, &[("range", b"m")]);
    request.group_id = String::new();
    let id = h.join(request);
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::InvalidGroupId
    );

    for timeout in [5_999, 1_800_001] {
        let mut request = join_request("", None, &[("range", b"m")]);
        request.session_timeout_ms = timeout;
        let id = h.join(request);
        assert_eq!(
            h.join_response(id).unwrap().error,
            ErrorCode::InvalidSessionTimeout
        );
    }

    let id = h.join(join_request("someone", None, &[("range", b"m")]));
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::UnknownMemberId
    );

    let mut request = join_request("", None, &[]);
    request.version = 3;
    let id = h.join(request);
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::InconsistentGroupProtocol
    );
    assert_eq!(
        h.state(),
        None,
        "a failed first join leaves no group behind"
    );

    let mut loading = GroupCoordinatorShard::new(CoordinatorConfig::default(), 1);
    let result = loading.join_group(
        RequestId(1),
        join_request("", None, &[("range", b"m")]),
        TimestampMs(0),
    );
    let Some(Effect::Respond(Response {
        body: ResponseBody::JoinGroup(r),
        ..
    })) = result.effects.first()
    else {
        panic!("answered");
    };
    assert_eq!(r.error, ErrorCode::CoordinatorLoadInProgress);
}

#[test]
fn inconsistent_protocols_are_rejected_once_the_group_has_members() {
    let mut h = Harness::new();
    h.stable_single();
    let id = h.join(join_request("", None, &[("roundrobin", b"x")]));
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut request = join_request("", None, &[("range", b"x")]);
    request.protocol_type = "connect".into();
    let id = h.join(request);
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::InconsistentGroupProtocol
    );
}

#[test]
fn protocol_selection_takes_the_common_protocol_with_most_votes() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(&[("sticky", b"1"), ("range", b"1")]);
    let (_b, join_b) = h.join_new(&[("range", b"2"), ("sticky", b"2")]);
    let (_c, join_c) = h.join_new(&[("range", b"3"), ("sticky", b"3"), ("other", b"3")]);
    h.advance(10_000);
    let ra = h.join_response(join_a).unwrap();
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(ra.leader, a);
    let metadata: Vec<&[u8]> = ra.members.iter().map(|m| m.metadata.as_ref()).collect();
    assert_eq!(metadata.len(), 3);
    assert!(
        metadata.contains(&b"1".as_slice()),
        "each member's range metadata is passed through"
    );
    for join in [join_b, join_c] {
        assert_eq!(
            h.join_response(join).unwrap().protocol_name.as_deref(),
            Some("range")
        );
    }
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::with_config(CoordinatorConfig {
        group_max_size: 1,
        ..CoordinatorConfig::default()
    });
    h.stable_single();
    let id = h.join(join_request("", None, &[("range", b"m")]));
    // The pending member id is handed out only when the group accepts the member.
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::GroupMaxSizeReached
    );
}

// ---------------------------------------------------------------------------------------------
// Rebalances of a running group.

#[test]
fn a_new_member_rebalances_a_stable_group() {
    let mut h = Harness::new();
    let a = h.stable_single();
    let (b, join_b) = h.join_new(&[("range", b"mb")]);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat(&a, 1), ErrorCode::RebalanceInProgress);
    // Commits are still accepted while preparing the rebalance.
    assert_eq!(
        h.commit(commit_request(&a, 1, "t", 0, 5)),
        vec![ErrorCode::None]
    );
    let join_a = h.join(join_request(&a, None, &[("range", b"m")]));
    // Everyone has joined: the join phase completes without waiting.
    let ra = h.join_response(join_a).unwrap();
    let rb = h.join_response(join_b).unwrap();
    assert_eq!(ra.generation_id, GenerationId(2));
    assert_eq!(rb.generation_id, GenerationId(2));
    assert_eq!(rb.leader, a);
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
    assert_eq!(
        h.commit(commit_request(&a, 2, "t", 0, 6)),
        vec![ErrorCode::RebalanceInProgress]
    );
    assert_eq!(h.heartbeat(&b, 1), ErrorCode::IllegalGeneration);

    // The follower syncs first and is parked until the leader's assignment arrives.
    let sync_b = h.sync(sync_request(&b, 2, &[]));
    assert!(h.sync_response(sync_b).is_none());
    let sync_a = h.sync(sync_request(&a, 2, &[(&a, b"xa"), (&b, b"xb")]));
    assert_eq!(
        h.sync_response(sync_b).unwrap().assignment,
        Bytes::from_static(b"xb")
    );
    assert_eq!(
        h.sync_response(sync_a).unwrap().assignment,
        Bytes::from_static(b"xa")
    );
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn rebalance_timeout_removes_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    // b keeps heartbeating but never rejoins; a rejoins with new metadata.
    let join_a = h.join(join_request(&a, None, &[("range", b"new")]));
    assert!(h.join_response(join_a).is_none());
    for _ in 0..5 {
        h.advance(5_000);
        assert_eq!(h.heartbeat(&b, 1), ErrorCode::RebalanceInProgress);
    }
    h.advance(5_000);
    let ra = h.join_response(join_a).unwrap();
    assert_eq!(ra.generation_id, GenerationId(2));
    assert_eq!(ra.members.len(), 1);
    assert_eq!(h.heartbeat(&b, 1), ErrorCode::UnknownMemberId);
    assert_eq!(h.shard.group_members(GROUP), vec![a]);
}

#[test]
fn session_expiry_while_stable_rebalances_without_the_member() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    // The sync at t=6000 started both 10 s sessions; only a heartbeats.
    for _ in 0..2 {
        h.advance(4_000);
        assert_eq!(h.heartbeat(&a, 1), ErrorCode::None);
    }
    h.advance(1_999);
    assert_eq!(h.state(), Some(GroupState::Stable));
    h.advance(1);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat(&b, 1), ErrorCode::UnknownMemberId);
    let join_a = h.join(join_request(&a, None, &[("range", b"ma")]));
    let ra = h.join_response(join_a).unwrap();
    assert_eq!(ra.generation_id, GenerationId(2));
    assert_eq!(ra.members.len(), 1);
}

#[test]
fn the_last_member_leaving_empties_the_group_with_a_record() {
    let mut h = Harness::new();
    let a = h.stable_single();
    let response = h.leave(vec![LeaveMember {
        member_id: a.clone(),
        group_instance_id: None,
    }]);
    assert_eq!(response.members[0].1, ErrorCode::None);
    assert_eq!(h.state(), Some(GroupState::Empty));
    assert_eq!(h.shard.group_generation(GROUP), Some(GenerationId(2)));
    let Some(Record::GroupMetadata {
        value: Some(value), ..
    }) = h.log.last()
    else {
        panic!("the empty generation is written");
    };
    assert!(value.members.is_empty());
    assert_eq!(value.protocol, None);
    assert_eq!(h.heartbeat(&a, 2), ErrorCode::UnknownMemberId);
}

#[test]
fn leader_leaving_mid_rebalance_hands_leadership_to_a_joined_member() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let join_b = h.join(join_request(&b, None, &[("range", b"mb2")]));
    assert_eq!(h.shard.group_leader(GROUP), Some(a.as_str()));
    h.leave(vec![LeaveMember {
        member_id: a.clone(),
        group_instance_id: None,
    }]);
    let rb = h.join_response(join_b).unwrap();
    assert_eq!(rb.leader, b);
    assert_eq!(rb.members.len(), 1);
    assert_eq!(rb.generation_id, GenerationId(2));
}

#[test]
fn leaving_during_completing_rebalance_fails_parked_syncs() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let join_a = h.join(join_request(&a, None, &[("range", b"ma")]));
    let join_b = h.join(join_request(&b, None, &[("range", b"mb")]));
    assert!(h.join_response(join_a).is_some() && h.join_response(join_b).is_some());
    let sync_b = h.sync(sync_request(&b, 2, &[]));
    h.leave(vec![LeaveMember {
        member_id: a.clone(),
        group_instance_id: None,
    }]);
    assert_eq!(
        h.sync_response(sync_b).unwrap().error,
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn batched_leave_reports_each_member() {
    let mut h = Harness::new();
    let (a, _b) = h.stable_pair();
    let response = h.leave(vec![
        LeaveMember {
            member_id: "ghost".into(),
            group_instance_id: None,
        },
        LeaveMember {
            member_id: a.clone(),
            group_instance_id: None,
        },
        LeaveMember {
            member_id: String::new(),
            group_instance_id: Some("nobody".into()),
        },
    ]);
    let errors: Vec<ErrorCode> = response.members.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        errors,
        vec![
            ErrorCode::UnknownMemberId,
            ErrorCode::None,
            ErrorCode::UnknownMemberId
        ]
    );
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn sync_timeout_removes_members_that_never_sync() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let join_a = h.join(join_request(&a, None, &[("range", b"ma")]));
    let join_b = h.join(join_request(&b, None, &[("range", b"mb")]));
    assert!(h.join_response(join_a).is_some() && h.join_response(join_b).is_some());
    let sync_a = h.sync(sync_request(&a, 2, &[(&a, b"xa"), (&b, b"xb")]));
    assert_eq!(h.sync_response(sync_a).unwrap().error, ErrorCode::None);
    // b never syncs; a keeps heartbeating.
    for _ in 0..7 {
        h.advance(4_500);
        let _ = h.heartbeat(&a, 2);
    }
    assert!(!h.shard.group_members(GROUP).contains(&b));
    assert_eq!(h.heartbeat(&a, 2), ErrorCode::RebalanceInProgress);
}

#[test]
fn sync_errors() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let cases = [
        (sync_request("ghost", 1, &[]), ErrorCode::UnknownMemberId),
        (sync_request(&b, 7, &[]), ErrorCode::IllegalGeneration),
        (
            SyncGroupRequest {
                protocol_name: Some("roundrobin".into()),
                ..sync_request(&b, 1, &[])
            },
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            SyncGroupRequest {
                protocol_type: Some("connect".into()),
                ..sync_request(&b, 1, &[])
            },
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            SyncGroupRequest {
                group_id: String::new(),
                ..sync_request(&b, 1, &[])
            },
            ErrorCode::InvalidGroupId,
        ),
    ];
    for (request, expected) in cases {
        let id = h.sync(request);
        assert_eq!(h.sync_response(id).unwrap().error, expected);
    }
    // A Stable group answers a repeated sync with the member's assignment at once.
    let id = h.sync(sync_request(&b, 1, &[]));
    assert_eq!(
        h.sync_response(id).unwrap().assignment,
        Bytes::from_static(b"xb")
    );
    let _ = h.join(join_request(&a, None, &[("range", b"changed")]));
    let id = h.sync(sync_request(&b, 1, &[]));
    assert_eq!(
        h.sync_response(id).unwrap().error,
        ErrorCode::RebalanceInProgress
    );
}

#[test]
fn heartbeat_errors_per_state() {
    let mut h = Harness::new();
    assert_eq!(
        h.heartbeat("m", 0),
        ErrorCode::UnknownMemberId,
        "unknown group"
    );
    let a = h.stable_single();
    assert_eq!(h.heartbeat(&a, 1), ErrorCode::None);
    assert_eq!(h.heartbeat("ghost", 1), ErrorCode::UnknownMemberId);
    assert_eq!(h.heartbeat(&a, 0), ErrorCode::IllegalGeneration);
    assert_eq!(
        h.heartbeat_static(&a, Some("unknown-instance"), 1),
        ErrorCode::UnknownMemberId
    );
    let (_b, _) = h.join_new(&[("range", b"b")]);
    assert_eq!(h.heartbeat(&a, 1), ErrorCode::RebalanceInProgress);
}

#[test]
fn member_rejoining_a_stable_group_unchanged_gets_the_current_generation() {
    let mut h = Harness::new();
    let (_a, b) = h.stable_pair();
    let id = h.join(join_request(&b, None, &[("range", b"mb")]));
    let response = h.join_response(id).unwrap();
    assert_eq!(response.generation_id, GenerationId(1));
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn a_superseded_parked_join_is_answered() {
    let mut h = Harness::new();
    let (member, first) = h.join_new(&[("range", b"m")]);
    let second = h.join(join_request(&member, None, &[("range", b"m")]));
    assert_eq!(
        h.join_response(first).unwrap().error,
        ErrorCode::RebalanceInProgress
    );
    h.advance(3_000);
    assert_eq!(h.join_response(second).unwrap().error, ErrorCode::None);
}

#[test]
fn members_left_out_of_the_leaders_assignment_get_empty_bytes() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(&[("range", b"a")]);
    let (b, join_b) = h.join_new(&[("range", b"b")]);
    h.advance(6_000);
    assert!(h.join_response(join_a).is_some() && h.join_response(join_b).is_some());
    let sync_a = h.sync(sync_request(&a, 1, &[(&a, b"xa"), ("stranger", b"zz")]));
    assert_eq!(
        h.sync_response(sync_a).unwrap().assignment,
        Bytes::from_static(b"xa")
    );
    let sync_b = h.sync(sync_request(&b, 1, &[]));
    assert_eq!(h.sync_response(sync_b).unwrap().assignment, Bytes::new());
}

#[test]
fn pending_member_that_never_joins_expires() {
    let mut h = Harness::new();
    let first = h.join(join_request("", None, &[("range", b"m")]));
    let member = h.join_response(first).unwrap().member_id;
    assert_eq!(h.state(), Some(GroupState::Empty));
    h.advance(i64::from(SESSION_MS));
    assert_eq!(h.state(), None, "the blank group is forgotten");
    let id = h.join(join_request(&member, None, &[("range", b"m")]));
    assert_eq!(
        h.join_response(id).unwrap().error,
        ErrorCode::UnknownMemberId
    );
}

// ---------------------------------------------------------------------------------------------
// Static membership (KIP-345).

fn stable_static(h: &mut Harness) -> String {
    let join = h.join(join_request("", Some("instance-1"), &[("range", b"m")]));
    h.advance(3_000);
    let response = h.join_response(join).unwrap();
    assert!(response.member_id.starts_with("instance-1-"));
    let member = response.member_id;
    let generation = response.generation_id.value();
    let sync = h.sync(SyncGroupRequest {
        group_instance_id: Some("instance-1".into()),
        ..sync_request(&member, generation, &[(&member, b"a")])
    });
    assert_eq!(h.sync_response(sync).unwrap().error, ErrorCode::None);
    member
}

#[test]
fn static_member_rejoin_replaces_and_fences_the_old_id_without_rebalance() {
    let mut h = Harness::new();
    let old = stable_static(&mut h);
    let id = h.join(join_request("", Some("instance-1"), &[("range", b"m")]));
    let response = h.join_response(id).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_ne!(response.member_id, old);
    assert_eq!(response.generation_id, GenerationId(1));
    // Below v9 there is no skip_assignment: the old leader id keeps the new member from
    // reassigning, and it gets no members.
    assert_eq!(response.leader, old);
    assert!(!response.skip_assignment);
    assert!(response.members.is_empty());
    assert_eq!(h.state(), Some(GroupState::Stable));
    let Some(Record::GroupMetadata {
        value: Some(value), ..
    }) = h.log.last()
    else {
        panic!("the replacement is written");
    };
    assert_eq!(value.members[0].member_id, response.member_id);
    assert_eq!(value.members[0].assignment, Bytes::from_static(b"a"));

    assert_eq!(
        h.heartbeat_static(&old, Some("instance-1"), 1),
        ErrorCode::FencedInstanceId
    );
    assert_eq!(
        h.heartbeat_static(&response.member_id, Some("instance-1"), 1),
        ErrorCode::None
    );
    let leave = h.leave(vec![LeaveMember {
        member_id: old,
        group_instance_id: Some("instance-1".into()),
    }]);
    assert_eq!(leave.members[0].1, ErrorCode::FencedInstanceId);
}

#[test]
fn static_leader_rejoin_at_v9_is_told_to_skip_the_assignment() {
    let mut h = Harness::new();
    let old = stable_static(&mut h);
    let id = h.join(JoinGroupRequest {
        version: 9,
        ..join_request("", Some("instance-1"), &[("range", b"m")])
    });
    let response = h.join_response(id).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_ne!(response.member_id, old);
    assert_eq!(response.leader, response.member_id);
    assert!(
        response.skip_assignment,
        "KIP-814: the replaced leader must not reassign"
    );
    assert_eq!(response.members.len(), 1);
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn static_member_with_new_protocol_rebalances() {
    let mut h = Harness::new();
    stable_static(&mut h);
    let id = h.join(join_request(
        "",
        Some("instance-1"),
        &[("roundrobin", b"m"), ("range", b"m")],
    ));
    // Only one member: its join completes the rebalance at once, with the new protocol.
    let response = h.join_response(id).unwrap();
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(response.generation_id, GenerationId(2));
    assert_eq!(response.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn static_member_survives_a_rebalance_it_misses_until_its_session_expires() {
    let mut h = Harness::new();
    let member = stable_static(&mut h);
    let (other, join_other) = h.join_new(&[("range", b"o")]);
    // The static member heartbeats (a rebalance is on) but does not rejoin.
    for _ in 0..5 {
        h.advance(5_000);
        assert_eq!(
            h.heartbeat_static(&member, Some("instance-1"), 1),
            ErrorCode::RebalanceInProgress
        );
    }
    h.advance(4_999);
    let early = h.join_response(join_other);
    assert!(early.is_none(), "{early:?}");
    h.advance(1);
    let response = h.join_response(join_other).unwrap();
    assert_eq!(response.leader, other, "a member that rejoined leads");
    assert_eq!(
        response.members.len(),
        2,
        "the static member is kept in the generation"
    );
    assert_eq!(
        h.heartbeat_static(&member, Some("instance-1"), 1),
        ErrorCode::IllegalGeneration
    );
}

#[test]
fn static_leave_removes_the_member() {
    let mut h = Harness::new();
    stable_static(&mut h);
    let leave = h.leave(vec![LeaveMember {
        member_id: String::new(),
        group_instance_id: Some("instance-1".into()),
    }]);
    assert_eq!(leave.members[0].1, ErrorCode::None);
    assert_eq!(h.state(), Some(GroupState::Empty));
}

// ---------------------------------------------------------------------------------------------
// Offsets.

#[test]
fn simple_commit_and_fetch() {
    let mut h = Harness::new();
    assert_eq!(
        h.commit(commit_request("", -1, "t", 0, 10)),
        vec![ErrorCode::None]
    );
    assert_eq!(h.state(), Some(GroupState::Empty));
    assert_eq!(h.fetch("t", 0), Offset(10));
    assert_eq!(h.fetch("t", 1), Offset(-1));
    assert_eq!(h.fetch("other", 0), Offset(-1));
    let all = h.shard.offset_fetch(&OffsetFetchRequest {
        group_id: GROUP.into(),
        topics: None,
        require_stable: false,
    });
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].1[0].metadata, "meta");
    assert_eq!(all.topics[0].1[0].committed_leader_epoch, LeaderEpoch(3));
    let unknown = h.shard.offset_fetch(&OffsetFetchRequest {
        group_id: "nobody".into(),
        topics: None,
        require_stable: false,
    });
    assert!(unknown.topics.is_empty());
}

#[test]
fn commit_rules_and_errors() {
    let mut h = Harness::new();
    assert_eq!(
        h.commit(commit_request("m", 3, "t", 0, 1)),
        vec![ErrorCode::IllegalGeneration],
        "a generation for a group that does not exist"
    );
    let a = h.stable_single();
    assert_eq!(
        h.commit(commit_request(&a, 1, "t", 0, 1)),
        vec![ErrorCode::None]
    );
    assert_eq!(
        h.commit(commit_request(&a, 0, "t", 0, 1)),
        vec![ErrorCode::IllegalGeneration]
    );
    assert_eq!(
        h.commit(commit_request("ghost", 1, "t", 0, 1)),
        vec![ErrorCode::UnknownMemberId]
    );
    assert_eq!(
        h.commit(commit_request("", -1, "t", 0, 1)),
        vec![ErrorCode::UnknownMemberId],
        "simple commits only for empty groups"
    );
    let mut big = commit_request(&a, 1, "t", 1, 1);
    big.topics[0].partitions[0].committed_metadata = Some("x".repeat(4_097));
    big.topics[0].partitions.push(OffsetCommitPartition {
        partition: PartitionIndex(2),
        committed_offset: Offset(9),
        committed_leader_epoch: LeaderEpoch::UNKNOWN,
        committed_metadata: None,
    });
    assert_eq!(
        h.commit(big),
        vec![ErrorCode::OffsetMetadataTooLarge, ErrorCode::None]
    );
    assert_eq!(h.fetch("t", 1), Offset(-1));
    assert_eq!(h.fetch("t", 2), Offset(9));
}

#[test]
fn commit_with_retention_sets_an_expire_timestamp() {
    let mut h = Harness::new();
    h.advance(1_000);
    let mut request = commit_request("", -1, "t", 0, 1);
    request.retention_time_ms = 60_000;
    assert_eq!(h.commit(request), vec![ErrorCode::None]);
    let Some(Record::OffsetCommit {
        value: Some(value), ..
    }) = h.log.last()
    else {
        panic!("written");
    };
    assert_eq!(value.expire_timestamp, Some(TimestampMs(61_000)));
    let result = h
        .shard
        .expire_offsets(TimestampMs(60_999), OFFSETS_RETENTION_MS_DEFAULT);
    assert!(result.records.is_empty());
    let result = h
        .shard
        .expire_offsets(TimestampMs(61_000), OFFSETS_RETENTION_MS_DEFAULT);
    assert_eq!(
        result.records.len(),
        2,
        "offset tombstone, then the empty group's"
    );
    assert_eq!(h.state(), None);
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention_counted_from_emptiness() {
    let mut h = Harness::new();
    let a = h.stable_single();
    assert_eq!(
        h.commit(commit_request(&a, 1, "t", 0, 5)),
        vec![ErrorCode::None]
    );
    h.advance(1_000);
    assert!(
        h.shard.expire_offsets(h.now(), 500).records.is_empty(),
        "a Stable group keeps its offsets"
    );
    h.leave(vec![LeaveMember {
        member_id: a,
        group_instance_id: None,
    }]);
    let emptied = h.now;
    let result = h.shard.expire_offsets(TimestampMs(emptied + 499), 500);
    assert!(result.records.is_empty());
    let result = h.shard.expire_offsets(TimestampMs(emptied + 500), 500);
    assert_eq!(
        result.records,
        vec![
            Record::OffsetCommit {
                key: OffsetCommitKey {
                    group: GROUP.into(),
                    topic: "t".into(),
                    partition: PartitionIndex(0),
                },
                value: None,
            },
            Record::GroupMetadata {
                key: GroupMetadataKey {
                    group: GROUP.into()
                },
                value: None,
            },
        ]
    );
}

#[test]
fn stable_consumer_group_expires_offsets_of_topics_it_no_longer_consumes() {
    let mut h = Harness::new();
    let sub = subscription(&["kept"]);
    let (a, join) = h.join_new(&[("range", &sub)]);
    h.advance(3_000);
    assert!(h.join_response(join).is_some());
    let sync = h.sync(sync_request(&a, 1, &[]));
    assert!(h.sync_response(sync).is_some());
    assert_eq!(
        h.commit(commit_request(&a, 1, "kept", 0, 1)),
        vec![ErrorCode::None]
    );
    assert_eq!(
        h.commit(commit_request(&a, 1, "gone", 0, 1)),
        vec![ErrorCode::None]
    );
    let result = h.shard.expire_offsets(TimestampMs(h.now + 1_000), 1_000);
    assert_eq!(result.records.len(), 1);
    assert_eq!(h.fetch("kept", 0), Offset(1));
    assert_eq!(h.fetch("gone", 0), Offset(-1));
}

#[test]
fn offset_delete_rules() {
    let mut h = Harness::new();
    let id = h.request_id();
    let result = h.shard.offset_delete(id, "nobody", vec![], h.now());
    h.apply(result);
    let Some(ResponseBody::OffsetDelete(r)) = h.responses.remove(&id) else {
        panic!()
    };
    assert_eq!(r.error, ErrorCode::GroupIdNotFound);

    let sub = subscription(&["subscribed"]);
    let (a, join) = h.join_new(&[("range", &sub)]);
    h.advance(3_000);
    assert!(h.join_response(join).is_some());
    let sync = h.sync(sync_request(&a, 1, &[]));
    assert!(h.sync_response(sync).is_some());
    for topic in ["subscribed", "other"] {
        assert_eq!(
            h.commit(commit_request(&a, 1, topic, 0, 1)),
            vec![ErrorCode::None]
        );
    }
    let id = h.request_id();
    let result = h.shard.offset_delete(
        id,
        GROUP,
        vec![
            ("subscribed".into(), vec![PartitionIndex(0)]),
            ("other".into(), vec![PartitionIndex(0), PartitionIndex(1)]),
        ],
        h.now(),
    );
    assert_eq!(
        result.records.len(),
        1,
        "only the existing unsubscribed offset"
    );
    h.apply(result);
    let Some(ResponseBody::OffsetDelete(r)) = h.responses.remove(&id) else {
        panic!()
    };
    assert_eq!(r.error, ErrorCode::None);
    assert_eq!(
        r.topics[0].1,
        vec![(PartitionIndex(0), ErrorCode::GroupSubscribedToTopic)]
    );
    assert_eq!(
        r.topics[1].1,
        vec![
            (PartitionIndex(0), ErrorCode::None),
            (PartitionIndex(1), ErrorCode::None)
        ]
    );
    assert_eq!(h.fetch("other", 0), Offset(-1));
    assert_eq!(h.fetch("subscribed", 0), Offset(1));
}

#[test]
fn offset_delete_on_a_non_consumer_group_with_members_is_refused() {
    let mut h = Harness::new();
    let mut request = join_request("", None, &[("range", b"m")]);
    request.protocol_type = "connect".into();
    request.version = 3;
    h.join(request);
    let id = h.request_id();
    let result = h.shard.offset_delete(
        id,
        GROUP,
        vec![("t".into(), vec![PartitionIndex(0)])],
        h.now(),
    );
    h.apply(result);
    let Some(ResponseBody::OffsetDelete(r)) = h.responses.remove(&id) else {
        panic!()
    };
    assert_eq!(r.error, ErrorCode::NonEmptyGroup);
}

// ---------------------------------------------------------------------------------------------
// Admin.

#[test]
fn delete_groups_rules() {
    let mut h = Harness::new();
    let a = h.stable_single();
    assert_eq!(
        h.commit(commit_request(&a, 1, "t", 0, 1)),
        vec![ErrorCode::None]
    );
    let id = h.request_id();
    let result = h
        .shard
        .delete_groups(id, vec![GROUP.into(), "nobody".into()], h.now());
    assert!(result.records.is_empty());
    h.apply(result);
    let Some(ResponseBody::DeleteGroups(r)) = h.responses.remove(&id) else {
        panic!()
    };
    assert_eq!(r[0].1, ErrorCode::NonEmptyGroup);
    assert_eq!(r[1].1, ErrorCode::GroupIdNotFound);

    h.leave(vec![LeaveMember {
        member_id: a,
        group_instance_id: None,
    }]);
    let id = h.request_id();
    let result = h.shard.delete_groups(id, vec![GROUP.into()], h.now());
    assert_eq!(result.records.len(), 2, "offset and group tombstones");
    h.apply(result);
    assert_eq!(h.state(), None);
    assert_eq!(h.fetch("t", 0), Offset(-1));
    let replayed = replayed(&h.log);
    assert!(replayed.group_state(GROUP).is_none());
}

#[test]
fn describe_and_list_groups() {
    let mut h = Harness::new();
    let a = h.stable_single();
    let described = h.shard.describe_groups(5, &[GROUP.into(), "nobody".into()]);
    assert_eq!(described[0].state, "Stable");
    assert_eq!(described[0].protocol_data, "range");
    assert_eq!(described[0].members[0].member_id, a);
    assert_eq!(
        described[0].members[0].assignment,
        Bytes::from_static(b"a1")
    );
    assert_eq!(described[1].state, "Dead");
    assert_eq!(described[1].error, ErrorCode::None);
    assert_eq!(
        h.shard.describe_groups(6, &["nobody".into()])[0].error,
        ErrorCode::GroupIdNotFound
    );

    assert_eq!(h.commit(commit_request("", -1, "t", 0, 1)).len(), 1);
    let all = h.shard.list_groups(&[], &[]).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].protocol_type, "consumer");
    assert_eq!(
        h.shard.list_groups(&["stable".into()], &[]).unwrap().len(),
        1
    );
    assert!(
        h.shard
            .list_groups(&["Empty".into()], &[])
            .unwrap()
            .is_empty()
    );
    assert!(
        h.shard
            .list_groups(&[], &["consumer".into()])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.shard.list_groups(&[], &["Classic".into()]).unwrap().len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Timers, unloading, replay.

#[test]
fn stale_and_early_timers_are_ignored() {
    let mut h = Harness::new();
    let a = h.stable_single();
    let key = TimerKey::Heartbeat {
        group: GROUP.into(),
        member_id: a.clone(),
    };
    assert!(
        h.shard.on_timer(&key, h.now()).effects.is_empty(),
        "before the deadline"
    );
    let unknown = TimerKey::Sync {
        group: "nobody".into(),
    };
    assert!(
        h.shard
            .on_timer(&unknown, TimestampMs(i64::MAX))
            .effects
            .is_empty()
    );
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn unload_answers_every_parked_request() {
    let mut h = Harness::new();
    let (_a, join) = h.join_new(&[("range", b"m")]);
    let result = h.shard.unload();
    h.apply(result);
    assert_eq!(
        h.join_response(join).unwrap().error,
        ErrorCode::NotCoordinator
    );
    assert!(h.timers.is_empty());
    assert!(!h.shard.is_loaded());
}

#[test]
fn loaded_group_members_get_sessions_and_can_heartbeat() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    assert_eq!(
        h.commit(commit_request(&a, 1, "t", 3, 77)),
        vec![ErrorCode::None]
    );
    let mut shard = GroupCoordinatorShard::new(CoordinatorConfig::default(), 9);
    for record in &h.log {
        shard.replay(record.clone());
    }
    let during_load = shard.heartbeat(
        RequestId(1),
        HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: GenerationId(1),
            member_id: a.clone(),
            group_instance_id: None,
        },
        TimestampMs(0),
    );
    assert_eq!(
        during_load.responses().next().unwrap().body,
        ResponseBody::Heartbeat(ErrorCode::CoordinatorLoadInProgress)
    );
    let loaded = shard.on_loaded(TimestampMs(100));
    let sessions = loaded
        .effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::ScheduleTimer {
                    key: TimerKey::Heartbeat { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(sessions, 2);
    assert_eq!(shard.group_state(GROUP), Some(GroupState::Stable));
    assert_eq!(shard.group_leader(GROUP), Some(a.as_str()));
    let mut h2 = Harness {
        shard,
        now: 100,
        next_request: 100,
        timers: BTreeMap::new(),
        log: Vec::new(),
        responses: BTreeMap::new(),
    };
    h2.apply(loaded);
    assert_eq!(h2.heartbeat(&b, 1), ErrorCode::None);
    assert_eq!(h2.fetch("t", 3), Offset(77));
    let sync = h2.sync(sync_request(&b, 1, &[]));
    assert_eq!(
        h2.sync_response(sync).unwrap().assignment,
        Bytes::from_static(b"xb")
    );
}

#[test]
fn replay_rebuilds_a_scripted_history() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    h.commit(commit_request(&a, 1, "t", 0, 1));
    h.advance(11_000); // both sessions expire
    h.commit(commit_request("", -1, "t", 1, 2));
    stable_static(&mut h);
    let _ = b;
    assert_eq!(durable(&replayed(&h.log)), durable(&h.shard));
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    JoinNew {
        static_instance: Option<u8>,
        protocol: u8,
    },
    Rejoin {
        member: u8,
        protocol: u8,
    },
    Sync {
        member: u8,
    },
    Heartbeat {
        member: u8,
    },
    Leave {
        member: u8,
    },
    Commit {
        member: u8,
        partition: u8,
        simple: bool,
    },
    Advance {
        ms: u16,
    },
    DeleteGroup,
    Expire,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (proptest::option::of(0u8..3), 0u8..2)
            .prop_map(|(static_instance, protocol)| Op::JoinNew { static_instance, protocol }),
        1 => (any::<u8>(), 0u8..2).prop_map(|(member, protocol)| Op::Rejoin { member, protocol }),
        5 => any::<u8>().prop_map(|member| Op::Sync { member }),
        2 => any::<u8>().prop_map(|member| Op::Heartbeat { member }),
        1 => any::<u8>().prop_map(|member| Op::Leave { member }),
        2 => (any::<u8>(), 0u8..3, any::<bool>())
            .prop_map(|(member, partition, simple)| Op::Commit { member, partition, simple }),
        3 => (0u16..4_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::DeleteGroup),
        1 => Just(Op::Expire),
    ]
}

fn protocols(choice: u8) -> Vec<(&'static str, &'static [u8])> {
    if choice == 0 {
        vec![("range", b"r"), ("sticky", b"s")]
    } else {
        vec![("sticky", b"s2"), ("range", b"r2")]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any history's records rebuild the same durable state, and every parked request is
    /// answered once (checked by the harness) or still parked.
    #[test]
    fn replaying_the_records_of_any_history_rebuilds_the_durable_state(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let mut h = Harness::new();
        let mut known: Vec<(String, Option<String>)> = Vec::new();
        for op in ops {
            let pick = |known: &Vec<(String, Option<String>)>, i: u8| known.get(i as usize % known.len().max(1)).cloned();
            match op {
                Op::JoinNew { static_instance, protocol } => {
                    let instance = static_instance.map(|i| format!("instance-{i}"));
                    let p = protocols(protocol);
                    let id = h.join(join_request("", instance.as_deref(), &p));
                    if let Some(r) = h.join_response(id) {
                        if r.error == ErrorCode::MemberIdRequired {
                            known.push((r.member_id.clone(), None));
                            h.join(join_request(&r.member_id, None, &p));
                        } else if !r.member_id.is_empty() {
                            known.push((r.member_id, instance));
                        }
                    } else if let Some(instance) = instance {
                        // Parked: learn the id from the shard once it shows up.
                        for member in h.shard.group_members(GROUP) {
                            if member.starts_with(&instance) && !known.iter().any(|(m, _)| *m == member) {
                                known.push((member, Some(instance.clone())));
                            }
                        }
                    }
                }
                Op::Rejoin { member, protocol } => {
                    if let Some((member, instance)) = pick(&known, member) {
                        let _ = h.join(join_request(&member, instance.as_deref(), &protocols(protocol)));
                    }
                }
                Op::Sync { member } => {
                    // Half the syncs come from the leader, so generations get stored.
                    let leader = h.shard.group_leader(GROUP).map(str::to_owned);
                    let chosen = match leader {
                        Some(leader) if member % 2 == 0 => known
                            .iter()
                            .find(|(m, _)| *m == leader)
                            .cloned()
                            .or(Some((leader, None))),
                        _ => pick(&known, member),
                    };
                    if let Some((member, instance)) = chosen {
                        let generation = h.shard.group_generation(GROUP).map_or(0, |g| g.value());
                        let members = h.shard.group_members(GROUP);
                        let assignments: Vec<(String, Bytes)> = members.iter().map(|m| (m.clone(), Bytes::from(format!("{m}@{generation}")))).collect();
                        let _ = h.sync(SyncGroupRequest {
                            group_instance_id: instance,
                            protocol_type: None,
                            protocol_name: None,
                            assignments,
                            ..sync_request(&member, generation, &[])
                        });
                    }
                }
                Op::Heartbeat { member } => {
                    if let Some((member, instance)) = pick(&known, member) {
                        let generation = h.shard.group_generation(GROUP).map_or(0, |g| g.value());
                        let _ = h.heartbeat_static(&member, instance.as_deref(), generation);
                    }
                }
                Op::Leave { member } => {
                    if let Some((member, instance)) = pick(&known, member) {
                        let _ = h.leave(vec![LeaveMember { member_id: member, group_instance_id: instance }]);
                    }
                }
                Op::Commit { member, partition, simple } => {
                    let offset = h.now;
                    if simple {
                        let _ = h.commit(commit_request("", -1, "t", i32::from(partition), offset));
                    } else if let Some((member, _)) = pick(&known, member) {
                        let generation = h.shard.group_generation(GROUP).map_or(0, |g| g.value());
                        let _ = h.commit(commit_request(&member, generation, "t", i32::from(partition), offset));
                    }
                }
                Op::Advance { ms } => h.advance(i64::from(ms)),
                Op::DeleteGroup => {
                    let id = h.request_id();
                    let result = h.shard.delete_groups(id, vec![GROUP.into()], h.now());
                    h.apply(result);
                    h.responses.remove(&id);
                }
                Op::Expire => {
                    let result = h.shard.expire_offsets(h.now(), 15_000);
                    h.apply(result);
                }
            }
            prop_assert_eq!(durable(&replayed(&h.log)), durable(&h.shard));
        }
    }
}
