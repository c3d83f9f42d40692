//! [`GroupCoordinatorShard`]: the classic groups and committed offsets of one `__consumer_offsets`
//! partition, driven by requests, timers and replayed records.

use std::collections::BTreeMap;

use bytes::Bytes;
use caudal_model::{LeaderEpoch, Offset, PartitionIndex, TimestampMs};

use crate::ErrorCode;
use crate::api::*;
use crate::group::{Group, GroupState, Member};
use crate::records::{GroupMetadataKey, OffsetCommitKey, OffsetCommitValue, Record};

/// The group coordinator for one `__consumer_offsets` partition.
///
/// Every call applies its decision to the in-memory state at once and returns the records that
/// make it durable plus the effects (responses, timers) the runtime carries out after appending
/// them. See `docs/coordinator.md` for the contract.
#[derive(Debug)]
pub struct GroupCoordinatorShard {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    /// Timers the shard has asked for and not cancelled; a fired key not in here is stale.
    timers: BTreeMap<TimerKey, TimestampMs>,
    loaded: bool,
    member_id_seed: u64,
    member_id_counter: u64,
}

/// Accumulates one call's output and keeps the shard's view of its timers.
struct Ctx<'a> {
    config: &'a CoordinatorConfig,
    timers: &'a mut BTreeMap<TimerKey, TimestampMs>,
    out: &'a mut CoordinatorResult,
    now: TimestampMs,
}

impl Ctx<'_> {
    fn respond(&mut self, request: RequestId, body: ResponseBody) {
        self.out
            .effects
            .push(Effect::Respond(Response { request, body }));
    }

    fn schedule(&mut self, key: TimerKey, delay_ms: i64) {
        let deadline = TimestampMs(self.now.value().saturating_add(delay_ms.max(0)));
        self.timers.insert(key.clone(), deadline);
        self.out
            .effects
            .push(Effect::ScheduleTimer { key, deadline });
    }

    fn cancel(&mut self, key: TimerKey) {
        if self.timers.remove(&key).is_some() {
            self.out.effects.push(Effect::CancelTimer { key });
        }
    }

    fn record(&mut self, record: Record) {
        self.out.records.push(record);
    }
}

fn heartbeat_key(group: &str, member_id: &str) -> TimerKey {
    TimerKey::Heartbeat {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
    }
}

fn pending_key(group: &str, member_id: &str) -> TimerKey {
    TimerKey::PendingMember {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
    }
}

fn join_key(group: &str) -> TimerKey {
    TimerKey::Join {
        group: group.to_owned(),
    }
}

fn sync_key(group: &str) -> TimerKey {
    TimerKey::Sync {
        group: group.to_owned(),
    }
}

impl GroupCoordinatorShard {
    /// A shard in the loading state: replay the partition's records with [`Self::replay`], then
    /// call [`Self::on_loaded`]. `member_id_seed` should be fresh randomness on every load so that
    /// generated member ids never repeat across coordinator moves.
    pub fn new(config: CoordinatorConfig, member_id_seed: u64) -> Self {
        GroupCoordinatorShard {
            config,
            groups: BTreeMap::new(),
            timers: BTreeMap::new(),
            loaded: false,
            member_id_seed,
            member_id_counter: 0,
        }
    }

    /// Whether loading has finished (until then requests get COORDINATOR_LOAD_IN_PROGRESS).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The timers the shard currently expects, with their deadlines.
    pub fn timers(&self) -> impl Iterator<Item = (&TimerKey, TimestampMs)> {
        self.timers.iter().map(|(key, deadline)| (key, *deadline))
    }

    /// The state of `group_id`, if the shard knows the group.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// The current generation of `group_id`.
    pub fn group_generation(&self, group_id: &str) -> Option<GenerationId> {
        self.groups.get(group_id).map(|g| g.generation)
    }

    /// The leader of `group_id`'s current generation.
    pub fn group_leader(&self, group_id: &str) -> Option<&str> {
        self.groups.get(group_id).and_then(|g| g.leader.as_deref())
    }

    /// The member ids of `group_id`.
    pub fn group_members(&self, group_id: &str) -> Vec<String> {
        self.groups
            .get(group_id)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The ids of the groups the shard knows.
    pub fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    // -----------------------------------------------------------------------------------------
    // Loading.

    /// Applies one record read from the partition while loading. Records are replayed in log
    /// order; a tombstone deletes its key's state.
    pub fn replay(&mut self, record: Record) {
        debug_assert!(!self.loaded, "records are replayed only while loading");
        match record {
            Record::OffsetCommit { key, value } => match value {
                Some(value) => {
                    self.groups
                        .entry(key.group.clone())
                        .or_insert_with(|| Group::new(&key.group))
                        .offsets
                        .insert((key.topic, key.partition), value);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&key.group) {
                        group.offsets.remove(&(key.topic, key.partition));
                        if group.is_blank() {
                            self.groups.remove(&key.group);
                        }
                    }
                }
            },
            Record::GroupMetadata { key, value } => match value {
                Some(value) => {
                    self.groups
                        .entry(key.group.clone())
                        .or_insert_with(|| Group::new(&key.group))
                        .load(value);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&key.group) {
                        group.reset_to_blank();
                        if group.is_blank() {
                            self.groups.remove(&key.group);
                        }
                    }
                }
            },
        }
    }

    /// Ends loading: members of loaded groups get session timers, and groups over `group.max.size`
    /// rebalance (as Kafka does).
    pub fn on_loaded(&mut self, now: TimestampMs) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        self.loaded = true;
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        for group in self.groups.values_mut() {
            for member in group.members.values() {
                ctx.schedule(
                    heartbeat_key(&group.group_id, &member.member_id),
                    i64::from(member.session_timeout_ms),
                );
            }
            if group.members.len() > ctx.config.group_max_size && group.state == GroupState::Stable
            {
                prepare_rebalance(group, &mut ctx);
            }
        }
        out
    }

    /// Gives the partition up (leadership moved or an append failed): every parked request is
    /// answered NOT_COORDINATOR and every timer cancelled. The shard is empty and loading again.
    pub fn unload(&mut self) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        for group in self.groups.values_mut() {
            for member in group.members.values_mut() {
                if let Some(request) = member.awaiting_join.take() {
                    out.effects.push(Effect::Respond(Response {
                        request,
                        body: ResponseBody::JoinGroup(JoinGroupResponse::error(
                            ErrorCode::NotCoordinator,
                            &member.member_id,
                        )),
                    }));
                }
                if let Some(request) = member.awaiting_sync.take() {
                    out.effects.push(Effect::Respond(Response {
                        request,
                        body: ResponseBody::SyncGroup(SyncGroupResponse::error(
                            ErrorCode::NotCoordinator,
                        )),
                    }));
                }
            }
        }
        for key in std::mem::take(&mut self.timers).into_keys() {
            out.effects.push(Effect::CancelTimer { key });
        }
        self.groups.clear();
        self.loaded = false;
        out
    }

    fn generate_member_id(&mut self, prefix: &str) -> String {
        // SplitMix64 over (seed, counter): unique per shard instance, formatted like a UUID as
        // Kafka's `clientId-UUID` member ids are.
        let mut next = || {
            self.member_id_counter = self.member_id_counter.wrapping_add(1);
            let mut z = self
                .member_id_seed
                .wrapping_add(self.member_id_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let high = next();
        let low = next();
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }

    fn fresh_member_id(&mut self, group_id: &str, prefix: &str) -> String {
        loop {
            let id = self.generate_member_id(prefix);
            let taken = self
                .groups
                .get(group_id)
                .is_some_and(|g| g.members.contains_key(&id) || g.pending_members.contains(&id));
            if !taken {
                return id;
            }
        }
    }

    fn drop_if_blank(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(Group::is_blank) {
            self.groups.remove(group_id);
        }
    }

    // -----------------------------------------------------------------------------------------
    // JoinGroup.

    /// JoinGroup. The response may be parked until the rebalance's join phase completes.
    pub fn join_group(
        &mut self,
        request: RequestId,
        join: JoinGroupRequest,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let fail = |out: &mut CoordinatorResult, error: ErrorCode, member_id: &str| {
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::JoinGroup(JoinGroupResponse::error(error, member_id)),
            }));
        };
        if !self.loaded {
            fail(
                &mut out,
                ErrorCode::CoordinatorLoadInProgress,
                &join.member_id,
            );
            return out;
        }
        if join.group_id.is_empty() {
            fail(&mut out, ErrorCode::InvalidGroupId, &join.member_id);
            return out;
        }
        if join.session_timeout_ms < self.config.group_min_session_timeout_ms
            || join.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            fail(&mut out, ErrorCode::InvalidSessionTimeout, &join.member_id);
            return out;
        }
        let unknown_member = join.member_id == UNKNOWN_MEMBER_ID;
        if !self.groups.contains_key(&join.group_id) {
            if !unknown_member {
                fail(&mut out, ErrorCode::UnknownMemberId, &join.member_id);
                return out;
            }
            self.groups
                .insert(join.group_id.clone(), Group::new(&join.group_id));
        }

        // Member ids are generated before borrowing the group for the decision.
        let new_member_id = if unknown_member {
            let prefix = join
                .group_instance_id
                .clone()
                .unwrap_or_else(|| join.client_id.clone());
            Some(self.fresh_member_id(&join.group_id, &prefix))
        } else {
            None
        };

        let group_id = join.group_id.clone();
        let group = self.groups.get_mut(&group_id).expect("group exists");
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        let error = if group.state == GroupState::Dead {
            Some(ErrorCode::CoordinatorNotAvailable)
        } else if !accept_joining_member(group, &join.member_id, ctx.config.group_max_size) {
            Some(ErrorCode::GroupMaxSizeReached)
        } else if !group.supports_protocols(&join.protocol_type, &join.protocols) {
            Some(ErrorCode::InconsistentGroupProtocol)
        } else {
            None
        };
        match (error, new_member_id) {
            (Some(error), _) => fail(ctx.out, error, &join.member_id),
            (None, Some(member_id)) => join_new_member(group, request, join, member_id, &mut ctx),
            (None, None) => join_existing_member(group, request, join, &mut ctx),
        }
        self.drop_if_blank(&group_id);
        out
    }

    // -----------------------------------------------------------------------------------------
    // SyncGroup.

    /// SyncGroup. Followers' responses are parked until the leader's assignment arrives.
    pub fn sync_group(
        &mut self,
        request: RequestId,
        sync: SyncGroupRequest,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let error = if !self.loaded {
            Some(ErrorCode::CoordinatorLoadInProgress)
        } else if sync.group_id.is_empty() {
            Some(ErrorCode::InvalidGroupId)
        } else {
            match self.groups.get(&sync.group_id) {
                None => Some(ErrorCode::UnknownMemberId),
                Some(group) => validate_sync(group, &sync),
            }
        };
        if let Some(error) = error {
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::SyncGroup(SyncGroupResponse::error(error)),
            }));
            return out;
        }
        let group = self.groups.get_mut(&sync.group_id).expect("validated");
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => ctx.respond(
                request,
                ResponseBody::SyncGroup(SyncGroupResponse::error(ErrorCode::UnknownMemberId)),
            ),
            GroupState::PreparingRebalance => ctx.respond(
                request,
                ResponseBody::SyncGroup(SyncGroupResponse::error(ErrorCode::RebalanceInProgress)),
            ),
            GroupState::CompletingRebalance => {
                let member = group.members.get_mut(&sync.member_id).expect("validated");
                if let Some(previous) = member.awaiting_sync.replace(request) {
                    ctx.respond(
                        previous,
                        ResponseBody::SyncGroup(SyncGroupResponse::error(
                            ErrorCode::RebalanceInProgress,
                        )),
                    );
                }
                remove_pending_sync(group, &sync.member_id, &mut ctx);
                if group.is_leader(&sync.member_id) {
                    let mut assignments: BTreeMap<String, Bytes> =
                        sync.assignments.into_iter().collect();
                    for member in group.members.values_mut() {
                        member.assignment =
                            assignments.remove(&member.member_id).unwrap_or_default();
                    }
                    group.transition(GroupState::Stable, now);
                    store_group(group, &mut ctx);
                    propagate_assignment(group, &mut ctx);
                }
            }
            GroupState::Stable => {
                remove_pending_sync(group, &sync.member_id, &mut ctx);
                let member = &group.members[&sync.member_id];
                let body = SyncGroupResponse {
                    error: ErrorCode::None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: member.assignment.clone(),
                };
                let session = member.session_timeout_ms;
                ctx.respond(request, ResponseBody::SyncGroup(body));
                ctx.schedule(
                    heartbeat_key(&group.group_id, &sync.member_id),
                    i64::from(session),
                );
            }
        }
        out
    }

    // -----------------------------------------------------------------------------------------
    // Heartbeat.

    /// Heartbeat: renews the member's session and tells it whether a rebalance is under way.
    pub fn heartbeat(
        &mut self,
        request: RequestId,
        heartbeat: HeartbeatRequest,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        let error = if !self.loaded {
            ErrorCode::CoordinatorLoadInProgress
        } else if heartbeat.group_id.is_empty() {
            ErrorCode::InvalidGroupId
        } else {
            match self.groups.get(&heartbeat.group_id) {
                None => ErrorCode::UnknownMemberId,
                Some(group) if group.state == GroupState::Dead => {
                    ErrorCode::CoordinatorNotAvailable
                }
                Some(group) => match validate_existing_member(
                    group,
                    &heartbeat.member_id,
                    heartbeat.group_instance_id.as_deref(),
                ) {
                    Some(error) => error,
                    None if heartbeat.generation_id != group.generation => {
                        ErrorCode::IllegalGeneration
                    }
                    None => {
                        let session = group.members[&heartbeat.member_id].session_timeout_ms;
                        let error = match group.state {
                            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
                            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
                            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
                        };
                        if error != ErrorCode::UnknownMemberId {
                            ctx.schedule(
                                heartbeat_key(&group.group_id, &heartbeat.member_id),
                                i64::from(session),
                            );
                        }
                        error
                    }
                },
            }
        };
        ctx.respond(request, ResponseBody::Heartbeat(error));
        out
    }

    // -----------------------------------------------------------------------------------------
    // LeaveGroup.

    /// LeaveGroup (v3+ batches members). For v0–v2 the server uses the one member's error as
    /// the top-level error.
    pub fn leave_group(
        &mut self,
        request: RequestId,
        leave: LeaveGroupRequest,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let top_level = if !self.loaded {
            Some(ErrorCode::CoordinatorLoadInProgress)
        } else if leave.group_id.is_empty() {
            Some(ErrorCode::InvalidGroupId)
        } else {
            match self.groups.get(&leave.group_id) {
                Some(group) if group.state == GroupState::Dead => {
                    Some(ErrorCode::CoordinatorNotAvailable)
                }
                _ => None,
            }
        };
        if let Some(error) = top_level {
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::LeaveGroup(LeaveGroupResponse {
                    error,
                    members: Vec::new(),
                }),
            }));
            return out;
        }
        let Some(group) = self.groups.get_mut(&leave.group_id) else {
            let members = leave
                .members
                .into_iter()
                .map(|m| (m, ErrorCode::UnknownMemberId))
                .collect();
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::LeaveGroup(LeaveGroupResponse {
                    error: ErrorCode::None,
                    members,
                }),
            }));
            return out;
        };
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        let mut results = Vec::with_capacity(leave.members.len());
        let mut removed_member = false;
        let mut removed_pending = false;
        for leaving in leave.members {
            let error = if let Some(instance) = &leaving.group_instance_id {
                match group.static_members.get(instance).cloned() {
                    None => ErrorCode::UnknownMemberId,
                    Some(existing)
                        if leaving.member_id != UNKNOWN_MEMBER_ID
                            && existing != leaving.member_id =>
                    {
                        ErrorCode::FencedInstanceId
                    }
                    Some(existing) => {
                        remove_member(group, &existing, &mut ctx);
                        removed_member = true;
                        ErrorCode::None
                    }
                }
            } else if group.pending_members.remove(&leaving.member_id) {
                ctx.cancel(pending_key(&group.group_id, &leaving.member_id));
                removed_pending = true;
                ErrorCode::None
            } else if group.members.contains_key(&leaving.member_id) {
                remove_member(group, &leaving.member_id, &mut ctx);
                removed_member = true;
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            };
            results.push((leaving, error));
        }
        if removed_member {
            after_member_removal(group, &mut ctx);
        } else if removed_pending {
            maybe_complete_join(group, &mut ctx);
        }
        ctx.respond(
            request,
            ResponseBody::LeaveGroup(LeaveGroupResponse {
                error: ErrorCode::None,
                members: results,
            }),
        );
        self.drop_if_blank(&leave.group_id);
        out
    }

    // -----------------------------------------------------------------------------------------
    // Offsets.

    /// OffsetCommit. Writes one record per accepted partition.
    pub fn offset_commit(
        &mut self,
        request: RequestId,
        commit: OffsetCommitRequest,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let all = |error: ErrorCode| OffsetCommitResponse {
            topics: commit
                .topics
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.partitions.iter().map(|p| (p.partition, error)).collect(),
                    )
                })
                .collect(),
        };
        let error = if !self.loaded {
            Some(ErrorCode::CoordinatorLoadInProgress)
        } else {
            match self.groups.get(&commit.group_id) {
                None if commit.generation_id.value() < 0 => None,
                None => Some(ErrorCode::IllegalGeneration),
                Some(group) => validate_offset_commit(group, &commit),
            }
        };
        if let Some(error) = error {
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::OffsetCommit(all(error)),
            }));
            return out;
        }
        let group = self
            .groups
            .entry(commit.group_id.clone())
            .or_insert_with(|| Group::new(&commit.group_id));
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        if let Some(member) = group.members.get(&commit.member_id) {
            let session = member.session_timeout_ms;
            if member.awaiting_join.is_none() && group.state == GroupState::Stable {
                ctx.schedule(
                    heartbeat_key(&group.group_id, &commit.member_id),
                    i64::from(session),
                );
            }
        }
        let expire_timestamp = (commit.retention_time_ms >= 0)
            .then(|| TimestampMs(now.value().saturating_add(commit.retention_time_ms)));
        let mut topics = Vec::with_capacity(commit.topics.len());
        for topic in commit.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for partition in topic.partitions {
                let metadata = partition.committed_metadata.unwrap_or_default();
                if metadata.len() > ctx.config.offset_metadata_max_bytes {
                    partitions.push((partition.partition, ErrorCode::OffsetMetadataTooLarge));
                    continue;
                }
                // Kafka stores an explicit expiry in value v1, which has no leader epoch; keep
                // in memory exactly what the record keeps.
                let leader_epoch = if expire_timestamp.is_some() {
                    LeaderEpoch::UNKNOWN
                } else {
                    partition.committed_leader_epoch
                };
                let value = OffsetCommitValue {
                    offset: partition.committed_offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp: now,
                    expire_timestamp,
                };
                ctx.record(Record::OffsetCommit {
                    key: OffsetCommitKey {
                        group: group.group_id.clone(),
                        topic: topic.name.clone(),
                        partition: partition.partition,
                    },
                    value: Some(value.clone()),
                });
                group
                    .offsets
                    .insert((topic.name.clone(), partition.partition), value);
                partitions.push((partition.partition, ErrorCode::None));
            }
            topics.push((topic.name, partitions));
        }
        ctx.respond(
            request,
            ResponseBody::OffsetCommit(OffsetCommitResponse { topics }),
        );
        self.drop_if_blank(&commit.group_id);
        out
    }

    /// OffsetFetch for one group: committed offsets, -1 for partitions without one.
    pub fn offset_fetch(&self, fetch: &OffsetFetchRequest) -> OffsetFetchResponse {
        if !self.loaded {
            return OffsetFetchResponse {
                error: ErrorCode::CoordinatorLoadInProgress,
                topics: Vec::new(),
            };
        }
        let group = self.groups.get(&fetch.group_id);
        let entry = |topic: &str, partition: PartitionIndex| match group
            .and_then(|g| g.offsets.get(&(topic.to_owned(), partition)))
        {
            Some(value) => OffsetFetchPartition {
                partition,
                committed_offset: value.offset,
                committed_leader_epoch: value.leader_epoch,
                metadata: value.metadata.clone(),
                error: ErrorCode::None,
            },
            None => OffsetFetchPartition {
                partition,
                committed_offset: Offset(-1),
                committed_leader_epoch: LeaderEpoch::UNKNOWN,
                metadata: String::new(),
                error: ErrorCode::None,
            },
        };
        let topics = match &fetch.topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    (
                        topic.clone(),
                        partitions.iter().map(|p| entry(topic, *p)).collect(),
                    )
                })
                .collect(),
            None => {
                let mut topics: Vec<(String, Vec<OffsetFetchPartition>)> = Vec::new();
                for (topic, partition) in group.map(|g| g.offsets.keys()).into_iter().flatten() {
                    let item = entry(topic, *partition);
                    match topics.last_mut() {
                        Some((last, partitions)) if last == topic => partitions.push(item),
                        _ => topics.push((topic.clone(), vec![item])),
                    }
                }
                topics
            }
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            topics,
        }
    }

    /// OffsetDelete: removes committed offsets of topics the group does not consume.
    pub fn offset_delete(
        &mut self,
        request: RequestId,
        group_id: &str,
        topics: Vec<(String, Vec<PartitionIndex>)>,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let top_level = if !self.loaded {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            match self.groups.get(group_id) {
                None => ErrorCode::GroupIdNotFound,
                Some(group) if group.state == GroupState::Dead => ErrorCode::GroupIdNotFound,
                Some(group)
                    if group.state != GroupState::Empty
                        && group.protocol_type.as_deref() != Some("consumer") =>
                {
                    ErrorCode::NonEmptyGroup
                }
                Some(_) => ErrorCode::None,
            }
        };
        if top_level != ErrorCode::None {
            out.effects.push(Effect::Respond(Response {
                request,
                body: ResponseBody::OffsetDelete(OffsetDeleteResponse {
                    error: top_level,
                    topics: Vec::new(),
                }),
            }));
            return out;
        }
        let group = self.groups.get_mut(group_id).expect("validated");
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        let mut results = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            let subscribed = group.is_subscribed_to_topic(&topic);
            let mut errors = Vec::with_capacity(partitions.len());
            for partition in partitions {
                if subscribed {
                    errors.push((partition, ErrorCode::GroupSubscribedToTopic));
                    continue;
                }
                if group.offsets.remove(&(topic.clone(), partition)).is_some() {
                    ctx.record(offset_tombstone(group_id, &topic, partition));
                }
                errors.push((partition, ErrorCode::None));
            }
            results.push((topic, errors));
        }
        ctx.respond(
            request,
            ResponseBody::OffsetDelete(OffsetDeleteResponse {
                error: ErrorCode::None,
                topics: results,
            }),
        );
        out
    }

    /// Removes offsets older than `offsets_retention_ms` (`offsets.retention.minutes`) as Kafka
    /// does: for an Empty group relative to when it became empty, for a simple group relative to
    /// the commit, for a Stable `consumer` group only for topics it no longer consumes; an
    /// explicit expire timestamp wins. Empty groups left without offsets are deleted.
    pub fn expire_offsets(
        &mut self,
        now: TimestampMs,
        offsets_retention_ms: i64,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        if !self.loaded {
            return out;
        }
        let mut deleted = Vec::new();
        for group in self.groups.values_mut() {
            let base: Option<fn(&Group, &OffsetCommitValue) -> TimestampMs> =
                match (&group.protocol_type, group.state) {
                    (None, _) => Some(|_, v| v.commit_timestamp),
                    (Some(_), GroupState::Empty) => {
                        Some(|g, v| g.state_timestamp.unwrap_or(v.commit_timestamp))
                    }
                    (Some(kind), GroupState::Stable)
                        if kind == "consumer" && group.subscribed_topics.is_some() =>
                    {
                        Some(|_, v| v.commit_timestamp)
                    }
                    _ => None,
                };
            let Some(base) = base else { continue };
            let expired: Vec<(String, PartitionIndex)> = group
                .offsets
                .iter()
                .filter(|((topic, _), value)| {
                    if group.is_subscribed_to_topic(topic) {
                        return false;
                    }
                    match value.expire_timestamp {
                        Some(expire) => now >= expire,
                        None => {
                            now.value().saturating_sub(base(group, value).value())
                                >= offsets_retention_ms
                        }
                    }
                })
                .map(|(key, _)| key.clone())
                .collect();
            for (topic, partition) in expired {
                group.offsets.remove(&(topic.clone(), partition));
                out.records
                    .push(offset_tombstone(&group.group_id, &topic, partition));
            }
            if group.offsets.is_empty()
                && group.state == GroupState::Empty
                && group.members.is_empty()
                && group.pending_members.is_empty()
            {
                deleted.push(group.group_id.clone());
            }
        }
        for group_id in deleted {
            self.groups.remove(&group_id);
            out.records.push(group_tombstone(&group_id));
        }
        out
    }

    // -----------------------------------------------------------------------------------------
    // Admin.

    /// DescribeGroups. Unknown groups are "Dead" (and GROUP_ID_NOT_FOUND from v6).
    pub fn describe_groups(&self, version: i16, group_ids: &[String]) -> Vec<DescribedGroup> {
        group_ids
            .iter()
            .map(|group_id| {
                let dead = |error| DescribedGroup {
                    group_id: group_id.clone(),
                    error,
                    state: GroupState::Dead.name(),
                    protocol_type: String::new(),
                    protocol_data: String::new(),
                    members: Vec::new(),
                };
                if !self.loaded {
                    return dead(ErrorCode::CoordinatorLoadInProgress);
                }
                let Some(group) = self.groups.get(group_id) else {
                    return dead(if version >= 6 {
                        ErrorCode::GroupIdNotFound
                    } else {
                        ErrorCode::None
                    });
                };
                let stable = group.state == GroupState::Stable;
                DescribedGroup {
                    group_id: group_id.clone(),
                    error: ErrorCode::None,
                    state: group.state.name(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol_data: if stable {
                        group.protocol.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                    members: group
                        .members
                        .values()
                        .map(|m| DescribedMember {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: if stable {
                                m.metadata(group.protocol.as_deref())
                            } else {
                                Bytes::new()
                            },
                            assignment: if stable {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            },
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// ListGroups with optional state and type filters (case-insensitive, empty = all).
    pub fn list_groups(
        &self,
        states_filter: &[String],
        types_filter: &[String],
    ) -> Result<Vec<ListedGroup>, ErrorCode> {
        if !self.loaded {
            return Err(ErrorCode::CoordinatorLoadInProgress);
        }
        if !types_filter.is_empty()
            && !types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case("classic"))
        {
            return Ok(Vec::new());
        }
        Ok(self
            .groups
            .values()
            .filter(|g| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: "classic",
            })
            .collect())
    }

    /// DeleteGroups: Empty groups are deleted with their offsets (tombstones for both).
    pub fn delete_groups(
        &mut self,
        request: RequestId,
        group_ids: Vec<String>,
        now: TimestampMs,
    ) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        let mut results = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let error = if !self.loaded {
                ErrorCode::CoordinatorLoadInProgress
            } else {
                match self.groups.get(&group_id) {
                    None => ErrorCode::GroupIdNotFound,
                    Some(group) => match group.state {
                        GroupState::Dead => ErrorCode::GroupIdNotFound,
                        GroupState::Empty if group.pending_members.is_empty() => ErrorCode::None,
                        _ => ErrorCode::NonEmptyGroup,
                    },
                }
            };
            if error == ErrorCode::None {
                let mut group = self.groups.remove(&group_id).expect("validated");
                for (topic, partition) in std::mem::take(&mut group.offsets).into_keys() {
                    out.records
                        .push(offset_tombstone(&group_id, &topic, partition));
                }
                group.transition(GroupState::Dead, now);
                out.records.push(group_tombstone(&group_id));
            }
            results.push((group_id, error));
        }
        out.effects.push(Effect::Respond(Response {
            request,
            body: ResponseBody::DeleteGroups(results),
        }));
        out
    }

    // -----------------------------------------------------------------------------------------
    // Timers.

    /// A timer the shard scheduled has reached its deadline. Stale keys (cancelled or
    /// rescheduled later) are ignored.
    pub fn on_timer(&mut self, key: &TimerKey, now: TimestampMs) -> CoordinatorResult {
        let mut out = CoordinatorResult::default();
        match self.timers.get(key) {
            Some(deadline) if *deadline <= now => {
                self.timers.remove(key);
            }
            _ => return out,
        }
        let group_id = match key {
            TimerKey::Heartbeat { group, .. }
            | TimerKey::PendingMember { group, .. }
            | TimerKey::Join { group }
            | TimerKey::Sync { group } => group.clone(),
        };
        let Some(group) = self.groups.get_mut(&group_id) else {
            return out;
        };
        let mut ctx = Ctx {
            config: &self.config,
            timers: &mut self.timers,
            out: &mut out,
            now,
        };
        match key {
            TimerKey::Heartbeat { member_id, .. } => {
                let Some(member) = group.members.get(member_id) else {
                    return out;
                };
                // A member parked in JoinGroup or SyncGroup is alive; the rebalance's own timers
                // bound the wait and reschedule its session afterwards.
                if member.awaiting_join.is_none() && member.awaiting_sync.is_none() {
                    tracing::info!(group = %group_id, member = %member_id, "member session expired");
                    remove_member(group, member_id, &mut ctx);
                    after_member_removal(group, &mut ctx);
                }
            }
            TimerKey::PendingMember { member_id, .. } => {
                if group.pending_members.remove(member_id) {
                    maybe_complete_join(group, &mut ctx);
                }
            }
            TimerKey::Join { .. } => on_join_timer(group, &mut ctx),
            TimerKey::Sync { .. } => on_sync_timer(group, &mut ctx),
        }
        self.drop_if_blank(&group_id);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Group transitions (free functions so the shard's fields can be borrowed separately).

fn offset_tombstone(group: &str, topic: &str, partition: PartitionIndex) -> Record {
    Record::OffsetCommit {
        key: OffsetCommitKey {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
        },
        value: None,
    }
}

fn group_tombstone(group: &str) -> Record {
    Record::GroupMetadata {
        key: GroupMetadataKey {
            group: group.to_owned(),
        },
        value: None,
    }
}

fn store_group(group: &mut Group, ctx: &mut Ctx<'_>) {
    let value = group.metadata_value();
    ctx.record(Record::GroupMetadata {
        key: GroupMetadataKey {
            group: group.group_id.clone(),
        },
        value: Some(value.clone()),
    });
    group.persisted = Some(value);
}

fn accept_joining_member(group: &Group, member_id: &str, max_size: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group
                .members
                .get(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || group.awaiting_join_count() < max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.members.contains_key(member_id) || group.members.len() < max_size
        }
    }
}

fn validate_existing_member(
    group: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> Option<ErrorCode> {
    match group_instance_id {
        Some(instance) => match group.static_members.get(instance) {
            None => Some(ErrorCode::UnknownMemberId),
            Some(existing) if existing != member_id => Some(ErrorCode::FencedInstanceId),
            Some(_) => None,
        },
        None if !group.members.contains_key(member_id) => Some(ErrorCode::UnknownMemberId),
        None => None,
    }
}

fn validate_sync(group: &Group, sync: &SyncGroupRequest) -> Option<ErrorCode> {
    if group.state == GroupState::Dead {
        return Some(ErrorCode::CoordinatorNotAvailable);
    }
    if let Some(error) =
        validate_existing_member(group, &sync.member_id, sync.group_instance_id.as_deref())
    {
        return Some(error);
    }
    if sync.generation_id != group.generation {
        return Some(ErrorCode::IllegalGeneration);
    }
    let type_mismatch = sync
        .protocol_type
        .as_ref()
        .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
    let name_mismatch = sync
        .protocol_name
        .as_ref()
        .is_some_and(|n| group.protocol.as_ref() != Some(n));
    if type_mismatch || name_mismatch {
        return Some(ErrorCode::InconsistentGroupProtocol);
    }
    None
}

fn validate_offset_commit(group: &Group, commit: &OffsetCommitRequest) -> Option<ErrorCode> {
    if group.state == GroupState::Dead {
        return Some(ErrorCode::CoordinatorNotAvailable);
    }
    if commit.generation_id.value() < 0 && group.state == GroupState::Empty {
        // A simple consumer (assign()) or an admin tool committing for an empty group.
        return None;
    }
    if let Some(error) = validate_existing_member(
        group,
        &commit.member_id,
        commit.group_instance_id.as_deref(),
    ) {
        return Some(error);
    }
    if commit.generation_id != group.generation {
        return Some(ErrorCode::IllegalGeneration);
    }
    if group.state == GroupState::CompletingRebalance {
        return Some(ErrorCode::RebalanceInProgress);
    }
    None
}

fn join_response(group: &Group, member_id: &str, with_members: bool) -> JoinGroupResponse {
    JoinGroupResponse {
        error: ErrorCode::None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        skip_assignment: false,
        member_id: member_id.to_owned(),
        members: if with_members {
            group
                .members
                .values()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(group.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn join_new_member(
    group: &mut Group,
    request: RequestId,
    join: JoinGroupRequest,
    member_id: String,
    ctx: &mut Ctx<'_>,
) {
    if let Some(instance) = join.group_instance_id.clone() {
        match group.static_members.get(&instance).cloned() {
            Some(old_member_id) => {
                replace_static_member(group, request, join, old_member_id, member_id, ctx)
            }
            None => add_member_and_rebalance(group, request, join, member_id, ctx),
        }
    } else if join.version >= 4 {
        // KIP-394: hand out the member id first, so a retried join does not leave a ghost member.
        group.pending_members.insert(member_id.clone());
        ctx.schedule(
            pending_key(&group.group_id, &member_id),
            i64::from(join.session_timeout_ms),
        );
        ctx.respond(
            request,
            ResponseBody::JoinGroup(JoinGroupResponse::error(
                ErrorCode::MemberIdRequired,
                &member_id,
            )),
        );
    } else {
        add_member_and_rebalance(group, request, join, member_id, ctx);
    }
}

fn join_existing_member(
    group: &mut Group,
    request: RequestId,
    join: JoinGroupRequest,
    ctx: &mut Ctx<'_>,
) {
    if group.pending_members.contains(&join.member_id) {
        let member_id = join.member_id.clone();
        add_member_and_rebalance(group, request, join, member_id, ctx);
        return;
    }
    if let Some(error) =
        validate_existing_member(group, &join.member_id, join.group_instance_id.as_deref())
    {
        ctx.respond(
            request,
            ResponseBody::JoinGroup(JoinGroupResponse::error(error, &join.member_id)),
        );
        return;
    }
    let member = &group.members[&join.member_id];
    let unchanged = member.protocols == join.protocols;
    match group.state {
        GroupState::PreparingRebalance => update_member_and_rebalance(group, request, join, ctx),
        GroupState::CompletingRebalance if unchanged => {
            // The member lost its JoinGroup response: answer with the current generation.
            let leader = group.is_leader(&join.member_id);
            let response = join_response(group, &join.member_id, leader);
            ctx.respond(request, ResponseBody::JoinGroup(response));
        }
        GroupState::Stable if unchanged && !group.is_leader(&join.member_id) => {
            let response = join_response(group, &join.member_id, false);
            ctx.respond(request, ResponseBody::JoinGroup(response));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            update_member_and_rebalance(group, request, join, ctx)
        }
        GroupState::Empty | GroupState::Dead => ctx.respond(
            request,
            ResponseBody::JoinGroup(JoinGroupResponse::error(
                ErrorCode::UnknownMemberId,
                &join.member_id,
            )),
        ),
    }
}

fn add_member_and_rebalance(
    group: &mut Group,
    request: RequestId,
    join: JoinGroupRequest,
    member_id: String,
    ctx: &mut Ctx<'_>,
) {
    if group.pending_members.remove(&member_id) {
        ctx.cancel(pending_key(&group.group_id, &member_id));
    }
    if group.state == GroupState::PreparingRebalance && group.generation == GenerationId(0) {
        group.new_member_added = true;
    }
    if group.members.is_empty() {
        group.protocol_type = Some(join.protocol_type.clone());
    }
    if group.leader.is_none() {
        group.leader = Some(member_id.clone());
    }
    if let Some(instance) = &join.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    let rebalance_timeout_ms = if join.rebalance_timeout_ms > 0 {
        join.rebalance_timeout_ms
    } else {
        join.session_timeout_ms
    };
    ctx.schedule(
        heartbeat_key(&group.group_id, &member_id),
        i64::from(join.session_timeout_ms),
    );
    group.members.insert(
        member_id.clone(),
        Member {
            member_id,
            group_instance_id: join.group_instance_id,
            client_id: join.client_id,
            client_host: join.client_host,
            rebalance_timeout_ms,
            session_timeout_ms: join.session_timeout_ms,
            protocol_type: join.protocol_type,
            protocols: join.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(request),
            awaiting_sync: None,
        },
    );
    prepare_rebalance_or_complete_join(group, ctx);
}

fn update_member(
    group: &mut Group,
    join: JoinGroupRequest,
    request: Option<RequestId>,
    ctx: &mut Ctx<'_>,
) {
    let member = group
        .members
        .get_mut(&join.member_id)
        .expect("caller validated the member");
    member.protocols = join.protocols;
    member.session_timeout_ms = join.session_timeout_ms;
    member.rebalance_timeout_ms = if join.rebalance_timeout_ms > 0 {
        join.rebalance_timeout_ms
    } else {
        join.session_timeout_ms
    };
    member.client_id = join.client_id;
    member.client_host = join.client_host;
    if let Some(request) = request
        && let Some(previous) = member.awaiting_join.replace(request)
    {
        ctx.respond(
            previous,
            ResponseBody::JoinGroup(JoinGroupResponse::error(
                ErrorCode::RebalanceInProgress,
                &join.member_id,
            )),
        );
    }
}

fn update_member_and_rebalance(
    group: &mut Group,
    request: RequestId,
    join: JoinGroupRequest,
    ctx: &mut Ctx<'_>,
) {
    update_member(group, join, Some(request), ctx);
    prepare_rebalance_or_complete_join(group, ctx);
}

/// KIP-345: a static member rejoined with an unknown member id. The old member id is fenced and
/// replaced; a Stable group whose selected protocol stays the same does not rebalance.
fn replace_static_member(
    group: &mut Group,
    request: RequestId,
    mut join: JoinGroupRequest,
    old_member_id: String,
    new_member_id: String,
    ctx: &mut Ctx<'_>,
) {
    let version = join.version;
    let previous_leader = group.leader.clone().unwrap_or_default();
    let mut member = group
        .members
        .remove(&old_member_id)
        .expect("static member map points at a member");
    if let Some(previous) = member.awaiting_join.take() {
        ctx.respond(
            previous,
            ResponseBody::JoinGroup(JoinGroupResponse::error(
                ErrorCode::FencedInstanceId,
                &old_member_id,
            )),
        );
    }
    if let Some(previous) = member.awaiting_sync.take() {
        ctx.respond(
            previous,
            ResponseBody::SyncGroup(SyncGroupResponse::error(ErrorCode::FencedInstanceId)),
        );
    }
    ctx.cancel(heartbeat_key(&group.group_id, &old_member_id));
    if group.pending_sync.remove(&old_member_id) {
        group.pending_sync.insert(new_member_id.clone());
    }
    if group.is_leader(&old_member_id) {
        group.leader = Some(new_member_id.clone());
    }
    member.member_id = new_member_id.clone();
    if let Some(instance) = &member.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_member_id.clone());
    }
    let session = join.session_timeout_ms;
    group.members.insert(new_member_id.clone(), member);
    ctx.schedule(
        heartbeat_key(&group.group_id, &new_member_id),
        i64::from(session),
    );
    join.member_id = new_member_id.clone();
    match group.state {
        GroupState::Stable => {
            update_member(group, join, None, ctx);
            if group.select_protocol() == group.protocol {
                store_group(group, ctx);
                // KIP-814 (v9+): a replaced leader gets the members and `skip_assignment`, so it
                // knows it leads without reassigning. Older versions have no such flag: the
                // member is told the previous leader id, which is not its own, so it does not
                // act as leader (a Stable group would not pass a new assignment on).
                let skip = version >= 9 && group.is_leader(&new_member_id);
                let mut response = join_response(group, &new_member_id, skip);
                response.skip_assignment = skip;
                if !skip {
                    response.leader = previous_leader;
                }
                ctx.respond(request, ResponseBody::JoinGroup(response));
            } else {
                // The group's protocol would change: rebalance so the leader sees it.
                group
                    .members
                    .get_mut(&new_member_id)
                    .expect("just inserted")
                    .awaiting_join = Some(request);
                prepare_rebalance(group, ctx);
            }
        }
        GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
            update_member_and_rebalance(group, request, join, ctx)
        }
        GroupState::Empty | GroupState::Dead => {
            debug_assert!(false, "a group with a static member is not Empty or Dead");
            ctx.respond(
                request,
                ResponseBody::JoinGroup(JoinGroupResponse::error(
                    ErrorCode::UnknownMemberId,
                    &new_member_id,
                )),
            );
        }
    }
}

fn prepare_rebalance_or_complete_join(group: &mut Group, ctx: &mut Ctx<'_>) {
    match group.state {
        GroupState::Empty | GroupState::CompletingRebalance | GroupState::Stable => {
            prepare_rebalance(group, ctx)
        }
        GroupState::PreparingRebalance => maybe_complete_join(group, ctx),
        GroupState::Dead => {}
    }
}

fn prepare_rebalance(group: &mut Group, ctx: &mut Ctx<'_>) {
    if group.state == GroupState::CompletingRebalance {
        // The generation the leader was assigning for is abandoned.
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
        }
        let parked: Vec<(String, RequestId, i32)> = group
            .members
            .values_mut()
            .filter_map(|m| {
                m.awaiting_sync
                    .take()
                    .map(|r| (m.member_id.clone(), r, m.session_timeout_ms))
            })
            .collect();
        for (member_id, request, session) in parked {
            ctx.respond(
                request,
                ResponseBody::SyncGroup(SyncGroupResponse::error(ErrorCode::RebalanceInProgress)),
            );
            ctx.schedule(
                heartbeat_key(&group.group_id, &member_id),
                i64::from(session),
            );
        }
    }
    group.pending_sync.clear();
    ctx.cancel(sync_key(&group.group_id));
    let initial = group.state == GroupState::Empty;
    group.transition(GroupState::PreparingRebalance, ctx.now);
    if initial {
        let delay = ctx.config.group_initial_rebalance_delay_ms.max(0);
        let remaining = (group.rebalance_timeout_ms() - delay).max(0);
        group.initial_join = Some((delay, remaining));
        ctx.schedule(join_key(&group.group_id), i64::from(delay));
    } else {
        group.initial_join = None;
        ctx.schedule(
            join_key(&group.group_id),
            i64::from(group.rebalance_timeout_ms()),
        );
        maybe_complete_join(group, ctx);
    }
}

fn maybe_complete_join(group: &mut Group, ctx: &mut Ctx<'_>) {
    if group.state == GroupState::PreparingRebalance
        && group.all_members_joined()
        && group.previous_state != GroupState::Empty
    {
        complete_join(group, ctx);
    }
}

fn on_join_timer(group: &mut Group, ctx: &mut Ctx<'_>) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if let Some((delay, remaining)) = group.initial_join
        && group.new_member_added
        && remaining != 0
    {
        // A member joined during the initial delay: wait again, bounded by the rebalance timeout.
        group.new_member_added = false;
        let next_delay = delay.min(remaining);
        let next_remaining = (remaining - delay).max(0);
        group.initial_join = Some((next_delay, next_remaining));
        ctx.schedule(join_key(&group.group_id), i64::from(next_delay));
        return;
    }
    complete_join(group, ctx);
}

fn complete_join(group: &mut Group, ctx: &mut Ctx<'_>) {
    debug_assert_eq!(group.state, GroupState::PreparingRebalance);
    // Dynamic members that did not rejoin in time leave; static members stay until their
    // session expires.
    let missing: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in missing {
        remove_member(group, &member_id, ctx);
    }
    if !group.members.is_empty() {
        let leader_joined = group
            .leader
            .as_ref()
            .and_then(|l| group.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_joined {
            match group.members.values().find(|m| m.awaiting_join.is_some()) {
                Some(member) => group.leader = Some(member.member_id.clone()),
                None => {
                    // Only static members that have not rejoined remain: wait for them (or for
                    // their sessions to expire).
                    ctx.schedule(
                        join_key(&group.group_id),
                        i64::from(group.rebalance_timeout_ms()),
                    );
                    return;
                }
            }
        }
    }
    ctx.cancel(join_key(&group.group_id));
    group.initial_join = None;
    group.new_member_added = false;
    group.generation = GenerationId(group.generation.value().wrapping_add(1));
    if group.members.is_empty() {
        group.protocol = None;
        group.leader = None;
        group.transition(GroupState::Empty, ctx.now);
        group.subscribed_topics = None;
        store_group(group, ctx);
        return;
    }
    group.protocol = group.select_protocol();
    group.transition(GroupState::CompletingRebalance, ctx.now);
    group.compute_subscribed_topics();
    let leader = group.leader.clone().unwrap_or_default();
    let member_ids: Vec<String> = group.members.keys().cloned().collect();
    for member_id in &member_ids {
        let request = group
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take());
        if let Some(request) = request {
            let response = join_response(group, member_id, *member_id == leader);
            ctx.respond(request, ResponseBody::JoinGroup(response));
        }
        let session = group.members[member_id].session_timeout_ms;
        ctx.schedule(
            heartbeat_key(&group.group_id, member_id),
            i64::from(session),
        );
    }
    group.pending_sync = member_ids.into_iter().collect();
    ctx.schedule(
        sync_key(&group.group_id),
        i64::from(group.rebalance_timeout_ms()),
    );
}

fn propagate_assignment(group: &mut Group, ctx: &mut Ctx<'_>) {
    let protocol_type = group.protocol_type.clone();
    let protocol = group.protocol.clone();
    let group_id = group.group_id.clone();
    for member in group.members.values_mut() {
        if let Some(request) = member.awaiting_sync.take() {
            ctx.respond(
                request,
                ResponseBody::SyncGroup(SyncGroupResponse {
                    error: ErrorCode::None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    assignment: member.assignment.clone(),
                }),
            );
            ctx.schedule(
                heartbeat_key(&group_id, &member.member_id),
                i64::from(member.session_timeout_ms),
            );
        }
    }
}

fn remove_pending_sync(group: &mut Group, member_id: &str, ctx: &mut Ctx<'_>) {
    if group.pending_sync.remove(member_id) && group.pending_sync.is_empty() {
        ctx.cancel(sync_key(&group.group_id));
    }
}

fn on_sync_timer(group: &mut Group, ctx: &mut Ctx<'_>) {
    if !matches!(
        group.state,
        GroupState::CompletingRebalance | GroupState::Stable
    ) || group.pending_sync.is_empty()
    {
        return;
    }
    let missing: Vec<String> = std::mem::take(&mut group.pending_sync)
        .into_iter()
        .collect();
    tracing::info!(group = %group.group_id, members = ?missing, "members did not sync in time");
    for member_id in missing {
        remove_member(group, &member_id, ctx);
    }
    prepare_rebalance(group, ctx);
}

/// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID. The caller decides
/// the group's next state ([`after_member_removal`]).
fn remove_member(group: &mut Group, member_id: &str, ctx: &mut Ctx<'_>) {
    let Some(member) = group.members.remove(member_id) else {
        return;
    };
    if let Some(request) = member.awaiting_join {
        ctx.respond(
            request,
            ResponseBody::JoinGroup(JoinGroupResponse::error(
                ErrorCode::UnknownMemberId,
                member_id,
            )),
        );
    }
    if let Some(request) = member.awaiting_sync {
        ctx.respond(
            request,
            ResponseBody::SyncGroup(SyncGroupResponse::error(ErrorCode::UnknownMemberId)),
        );
    }
    ctx.cancel(heartbeat_key(&group.group_id, member_id));
    if let Some(instance) = &member.group_instance_id
        && group.static_members.get(instance).map(String::as_str) == Some(member_id)
    {
        group.static_members.remove(instance);
    }
    remove_pending_sync(group, member_id, ctx);
    if group.is_leader(member_id) {
        group.leader = group
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .or_else(|| group.members.values().next())
            .map(|m| m.member_id.clone());
    }
}

fn after_member_removal(group: &mut Group, ctx: &mut Ctx<'_>) {
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(group, ctx),
        GroupState::PreparingRebalance => maybe_complete_join(group, ctx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// The durable view of a group, for tests comparing a shard with its replayed copy.
#[cfg(test)]
impl GroupCoordinatorShard {
    pub(crate) fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }
}
