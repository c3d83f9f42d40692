//! A classic group's in-memory state: members, generation, protocol, rebalance bookkeeping and
//! committed offsets.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use caudal_model::{PartitionIndex, TimestampMs};

use crate::api::{GenerationId, JoinProtocol, RequestId};
use crate::records::{GroupMetadataValue, MemberMetadata, OffsetCommitValue};

/// A classic group's state, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; offsets may remain.
    Empty,
    /// Waiting for members to (re)join before the next generation.
    PreparingRebalance,
    /// The new generation exists; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub const fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Supported protocols in the member's order of preference.
    pub(crate) protocols: Vec<JoinProtocol>,
    pub(crate) assignment: Bytes,
    /// A parked JoinGroup of this member.
    pub(crate) awaiting_join: Option<RequestId>,
    /// A parked SyncGroup of this member.
    pub(crate) awaiting_sync: Option<RequestId>,
}

impl Member {
    /// The member's metadata for `protocol` (empty when it does not support it).
    pub(crate) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|p| p.name == name))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// The member's first preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }
}

/// A classic group and its committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) previous_state: GroupState,
    pub(crate) state_timestamp: Option<TimestampMs>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) generation: GenerationId,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub(crate) pending_members: BTreeSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub(crate) pending_sync: BTreeSet<String>,
    /// A member joined during the initial rebalance delay (which then extends it).
    pub(crate) new_member_added: bool,
    /// `(delay, remaining)` of the initial rebalance delay while it runs.
    pub(crate) initial_join: Option<(i32, i32)>,
    /// Topics the `consumer`-protocol members subscribe to; `None` when unknown.
    pub(crate) subscribed_topics: Option<BTreeSet<String>>,
    pub(crate) offsets: BTreeMap<(String, PartitionIndex), OffsetCommitValue>,
    /// The group's last metadata record (written or replayed).
    pub(crate) persisted: Option<GroupMetadataValue>,
}

impl Group {
    pub(crate) fn new(group_id: &str) -> Self {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            state_timestamp: None,
            protocol_type: None,
            generation: GenerationId(0),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            initial_join: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            persisted: None,
        }
    }

    /// Nothing durable or in flight: the group can be forgotten.
    pub(crate) fn is_blank(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.persisted.is_none()
    }

    pub(crate) fn transition(&mut self, state: GroupState, now: TimestampMs) {
        debug_assert!(
            matches!(
                (self.state, state),
                (GroupState::Empty, GroupState::PreparingRebalance)
                    | (GroupState::Empty, GroupState::Dead)
                    | (GroupState::PreparingRebalance, GroupState::Empty)
                    | (
                        GroupState::PreparingRebalance,
                        GroupState::CompletingRebalance
                    )
                    | (GroupState::PreparingRebalance, GroupState::Dead)
                    | (
                        GroupState::CompletingRebalance,
                        GroupState::PreparingRebalance
                    )
                    | (GroupState::CompletingRebalance, GroupState::Stable)
                    | (GroupState::CompletingRebalance, GroupState::Dead)
                    | (GroupState::Stable, GroupState::PreparingRebalance)
                    | (GroupState::Stable, GroupState::Dead)
            ),
            "illegal group transition {:?} -> {:?}",
            self.state,
            state
        );
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp = Some(now);
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The longest rebalance timeout among the members.
    pub(crate) fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    pub(crate) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether a member with `protocol_type` and `protocols` may join: the first member sets the
    /// type; later ones must match it and share at least one protocol with every member.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[JoinProtocol],
    ) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// The protocol every member supports with the most first-preference votes (ties: the
    /// smallest name, so the choice is deterministic).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name.to_owned())
    }

    /// Recomputes the subscribed topics of a `consumer` group from the members' metadata.
    pub(crate) fn compute_subscribed_topics(&mut self) {
        self.subscribed_topics = None;
        if self.protocol_type.as_deref() != Some("consumer") {
            return;
        }
        let Some(protocol) = self.protocol.as_deref() else {
            return;
        };
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            match crate::records::consumer_subscription_topics(&member.metadata(Some(protocol))) {
                Some(subscribed) => topics.extend(subscribed),
                None => return,
            }
        }
        self.subscribed_topics = Some(topics);
    }

    /// Whether the group's members consume `topic` (assumed so when their subscriptions are not
    /// readable); an Empty group consumes nothing.
    pub(crate) fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return false;
        }
        self.subscribed_topics
            .as_ref()
            .is_none_or(|topics| topics.contains(topic))
    }

    /// The group's metadata record value as of now.
    pub(crate) fn metadata_value(&self) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds the membership from a replayed metadata record.
    pub(crate) fn load(&mut self, value: GroupMetadataValue) {
        self.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        self.generation = value.generation;
        self.protocol = value.protocol.clone();
        self.leader = value.leader.clone();
        self.state_timestamp = value.current_state_timestamp;
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        self.new_member_added = false;
        self.initial_join = None;
        for m in &value.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: value.protocol_type.clone(),
                    protocols: vec![JoinProtocol {
                        name: value.protocol.clone().unwrap_or_default(),
                        metadata: m.subscription.clone(),
                    }],
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.previous_state = self.state;
        self.compute_subscribed_topics();
        self.persisted = Some(value);
    }

    /// Forgets the membership after a replayed tombstone, keeping the offsets.
    pub(crate) fn reset_to_blank(&mut self) {
        let offsets = std::mem::take(&mut self.offsets);
        *self = Group::new(&self.group_id);
        self.offsets = offsets;
    }
}
