//! Partition-level controller decisions, as Kafka's `ReplicationControlManager` and
//! `PartitionChangeBuilder` make them: ISR changes from partition leaders (AlterPartition),
//! leader elections (ElectLeaders) and replica reassignments (KIP-455). Pure: image + request →
//! records + per-partition results.
//!
//! Rules:
//! - a broker is *eligible* (may lead, may join an ISR) when it is registered, unfenced and not
//!   in controlled shutdown ([`MetadataImage::is_broker_active`]);
//! - the leader epoch grows only when the leader changes; the partition epoch on every change;
//! - an ISR never becomes empty;
//! - while a reassignment is in progress the partition's replicas are the union of the original
//!   and the target replicas; it completes as soon as every adding replica is in the ISR (and a
//!   target replica in the ISR can lead): replicas become the target, removed replicas leave the
//!   ISR, and the leader moves if it was removed.

use std::collections::BTreeSet;

use caudal_metadata::{MetadataImage, MetadataRecord, PartitionRegistration};
use caudal_model::{LeaderEpoch, NodeId, PartitionIndex};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's "no leader" broker id.
pub const NO_LEADER: NodeId = NodeId(-1);

/// Why the controller refused one partition of a request, with Kafka's error name and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PartitionError {
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("The requesting broker is not the leader of this partition.")]
    NotLeaderOrFollower,
    #[error("The leader epoch in the request is older than the epoch on the controller.")]
    FencedLeaderEpoch,
    #[error("The partition epoch in the request does not match the controller's.")]
    InvalidUpdateVersion,
    #[error("The new ISR contains at least one ineligible replica.")]
    IneligibleReplica,
    #[error("The request is not valid.")]
    InvalidRequest,
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    #[error("The preferred leader was not available.")]
    PreferredLeaderNotAvailable,
    #[error("Eligible topic partition leaders are not available.")]
    EligibleLeadersNotAvailable,
    #[error("No partition reassignment is in progress.")]
    NoReassignmentInProgress,
    #[error("The replica assignment is not valid.")]
    InvalidReplicaAssignment,
}

impl PartitionError {
    /// Kafka's error code.
    pub fn code(self) -> i16 {
        match self {
            PartitionError::UnknownTopicOrPartition => 3,
            PartitionError::NotLeaderOrFollower => 6,
            PartitionError::InvalidReplicaAssignment => 39,
            PartitionError::InvalidRequest => 42,
            PartitionError::FencedLeaderEpoch => 74,
            PartitionError::PreferredLeaderNotAvailable => 80,
            PartitionError::EligibleLeadersNotAvailable => 83,
            PartitionError::ElectionNotNeeded => 84,
            PartitionError::NoReassignmentInProgress => 85,
            PartitionError::InvalidUpdateVersion => 95,
            PartitionError::UnknownTopicId => 100,
            PartitionError::IneligibleReplica => 107,
        }
    }

    /// Kafka's error name.
    pub fn name(self) -> &'static str {
        match self {
            PartitionError::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            PartitionError::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            PartitionError::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            PartitionError::InvalidRequest => "INVALID_REQUEST",
            PartitionError::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            PartitionError::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            PartitionError::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            PartitionError::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            PartitionError::NoReassignmentInProgress => "NO_REASSIGNMENT_IN_PROGRESS",
            PartitionError::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            PartitionError::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            PartitionError::IneligibleReplica => "INELIGIBLE_REPLICA",
        }
    }
}

/// A partition's leadership as the controller now records it (AlterPartition's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
}

impl PartitionState {
    fn of(registration: &PartitionRegistration) -> Self {
        Self {
            replicas: registration.replicas.clone(),
            isr: registration.isr.clone(),
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
        }
    }
}

/// The records that turn `old` into `new` (replicas, ISR, leader): one `Partition` with the
/// epochs advanced, and a `PartitionReassignment` when the reassignment state changes. Empty when
/// nothing changes.
pub fn partition_change(
    topic_id: Uuid,
    partition: PartitionIndex,
    old: &PartitionRegistration,
    new: &PartitionRegistration,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if old.replicas != new.replicas || old.isr != new.isr || old.leader != new.leader {
        records.push(MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: new.replicas.clone(),
            isr: new.isr.clone(),
            leader: new.leader,
            leader_epoch: if new.leader == old.leader {
                old.leader_epoch
            } else {
                LeaderEpoch(old.leader_epoch.0 + 1)
            },
            partition_epoch: old.partition_epoch + 1,
        });
    }
    if old.adding_replicas != new.adding_replicas || old.removing_replicas != new.removing_replicas
    {
        records.push(MetadataRecord::PartitionReassignment {
            topic_id,
            partition,
            adding_replicas: new.adding_replicas.clone(),
            removing_replicas: new.removing_replicas.clone(),
        });
    }
    records
}

/// Folds `records` into `image`.
pub(crate) fn apply_all(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    records
        .iter()
        .fold(image.clone(), |image, record| image.apply(record))
}

/// If every adding replica of `registration` is in its ISR, the registration once the
/// reassignment completes; `None` while it must wait (or when none is in progress).
fn completed_reassignment(
    image: &MetadataImage,
    registration: &PartitionRegistration,
) -> Option<PartitionRegistration> {
    if !registration.is_reassigning()
        || !registration
            .adding_replicas
            .iter()
            .all(|node| registration.isr.contains(node))
    {
        return None;
    }
    let replicas = registration.target_replicas();
    let isr: Vec<NodeId> = registration
        .isr
        .iter()
        .filter(|node| replicas.contains(node))
        .copied()
        .collect();
    let leader = if replicas.contains(&registration.leader) && isr.contains(&registration.leader) {
        registration.leader
    } else {
        replicas
            .iter()
            .find(|node| isr.contains(node) && image.is_broker_active(**node))
            .copied()?
    };
    Some(PartitionRegistration {
        replicas,
        isr,
        leader,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..registration.clone()
    })
}

/// The records completing every reassignment whose adding replicas are all in the ISR. The
/// active controller runs it after ISR changes it did not decide through [`alter_partition`].
pub fn complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (partition, registration) in &topic.partitions {
            if let Some(done) = completed_reassignment(image, registration) {
                records.extend(partition_change(
                    topic.topic_id,
                    *partition,
                    registration,
                    &done,
                ));
            }
        }
    }
    records
}

/// An AlterPartition entry from a partition leader: the ISR it wants, against the epochs it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub topic_id: Uuid,
    pub partition: PartitionIndex,
    /// The broker asking (it must lead the partition).
    pub leader_id: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

/// Decides one AlterPartition entry (Kafka's rules): the requester must lead the partition at
/// the request's leader epoch (else FENCED_LEADER_EPOCH, then NOT_LEADER_OR_FOLLOWER), at the
/// current partition epoch (else INVALID_UPDATE_VERSION); the new ISR must contain the leader,
/// without duplicates (else INVALID_REQUEST), and only replicas that are eligible (else
/// INELIGIBLE_REPLICA). Success writes the partition with its partition epoch advanced and
/// completes a reassignment the new ISR allows; the answer is the partition's new state (whose
/// leader differs from the requester when completing a reassignment moved the leadership).
pub fn alter_partition(
    image: &MetadataImage,
    request: &AlterPartitionRequest,
) -> Result<(Vec<MetadataRecord>, PartitionState), PartitionError> {
    let topic = image
        .topic_by_id(&request.topic_id)
        .ok_or(PartitionError::UnknownTopicId)?;
    let current = topic
        .partitions
        .get(&request.partition)
        .ok_or(PartitionError::UnknownTopicOrPartition)?;
    if request.leader_epoch != current.leader_epoch {
        return Err(PartitionError::FencedLeaderEpoch);
    }
    if request.leader_id != current.leader {
        return Err(PartitionError::NotLeaderOrFollower);
    }
    if request.partition_epoch != current.partition_epoch {
        return Err(PartitionError::InvalidUpdateVersion);
    }
    let unique: BTreeSet<_> = request.new_isr.iter().collect();
    if unique.len() != request.new_isr.len() || !request.new_isr.contains(&current.leader) {
        return Err(PartitionError::InvalidRequest);
    }
    if request
        .new_isr
        .iter()
        .any(|node| !current.replicas.contains(node) || !image.is_broker_active(*node))
    {
        return Err(PartitionError::IneligibleReplica);
    }
    let mut next = PartitionRegistration {
        isr: request.new_isr.clone(),
        ..current.clone()
    };
    if let Some(done) = completed_reassignment(image, &next) {
        next = done;
    }
    let records = partition_change(topic.topic_id, request.partition, current, &next);
    let after = apply_all(image, &records);
    let state = after
        .topic_by_id(&topic.topic_id)
        .and_then(|topic| topic.partitions.get(&request.partition))
        .map(PartitionState::of)
        .unwrap_or_else(|| PartitionState::of(current));
    Ok((records, state))
}

/// ElectLeaders' election type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Move leadership to the first replica, if it is in the ISR and eligible.
    Preferred,
    /// Elect a leaderless partition's leader even outside the ISR (data may be lost).
    Unclean,
}

/// A partition named by topic name, as ElectLeaders and the reassignment APIs name them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionRef {
    pub topic: String,
    pub partition: PartitionIndex,
}

/// One partition's ElectLeaders outcome: the leader elected, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub partition: PartitionRef,
    pub result: Result<NodeId, PartitionError>,
}

fn elect_one(
    image: &MetadataImage,
    current: &PartitionRegistration,
    election_type: ElectionType,
) -> Result<PartitionRegistration, PartitionError> {
    match election_type {
        ElectionType::Preferred => {
            let preferred = *current
                .replicas
                .first()
                .ok_or(PartitionError::PreferredLeaderNotAvailable)?;
            if current.leader == preferred {
                return Err(PartitionError::ElectionNotNeeded);
            }
            if !current.isr.contains(&preferred) || !image.is_broker_active(preferred) {
                return Err(PartitionError::PreferredLeaderNotAvailable);
            }
            Ok(PartitionRegistration {
                leader: preferred,
                ..current.clone()
            })
        }
        ElectionType::Unclean => {
            if current.leader != NO_LEADER {
                return Err(PartitionError::ElectionNotNeeded);
            }
            if let Some(clean) = current
                .replicas
                .iter()
                .find(|node| current.isr.contains(node) && image.is_broker_active(**node))
            {
                return Ok(PartitionRegistration {
                    leader: *clean,
                    ..current.clone()
                });
            }
            let unclean = current
                .replicas
                .iter()
                .find(|node| image.is_broker_active(**node))
                .ok_or(PartitionError::EligibleLeadersNotAvailable)?;
            Ok(PartitionRegistration {
                leader: *unclean,
                isr: vec![*unclean],
                ..current.clone()
            })
        }
    }
}

/// Decides an ElectLeaders request over `partitions` (`None` = every partition). Named
/// partitions each get a result (UNKNOWN_TOPIC_OR_PARTITION, ELECTION_NOT_NEEDED,
/// PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE or the new leader); with
/// `None`, as Kafka, only the partitions whose leader changed are reported.
pub fn elect_leaders(
    image: &MetadataImage,
    election_type: ElectionType,
    partitions: Option<&[PartitionRef]>,
) -> (Vec<MetadataRecord>, Vec<ElectionResult>) {
    let all: Vec<PartitionRef>;
    let (targets, report_all) = match partitions {
        Some(partitions) => (partitions, true),
        None => {
            all = image
                .topics()
                .flat_map(|topic| {
                    topic.partitions.keys().map(|partition| PartitionRef {
                        topic: topic.name.clone(),
                        partition: *partition,
                    })
                })
                .collect();
            (all.as_slice(), false)
        }
    };
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut image = image.clone();
    for target in targets {
        let found = image.topic(&target.topic).and_then(|topic| {
            topic
                .partitions
                .get(&target.partition)
                .map(|current| (topic.topic_id, current.clone()))
        });
        let result = match found {
            None => Err(PartitionError::UnknownTopicOrPartition),
            Some((topic_id, current)) => elect_one(&image, &current, election_type).map(|next| {
                let change = partition_change(topic_id, target.partition, &current, &next);
                image = apply_all(&image, &change);
                records.extend(change);
                next.leader
            }),
        };
        if report_all || result.is_ok() {
            results.push(ElectionResult {
                partition: target.clone(),
                result,
            });
        }
    }
    (records, results)
}

/// One AlterPartitionReassignments entry: the target replicas, or `None` to cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentRequest {
    pub partition: PartitionRef,
    pub replicas: Option<Vec<NodeId>>,
}

/// One AlterPartitionReassignments outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentResult {
    pub partition: PartitionRef,
    pub result: Result<(), PartitionError>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedReassignment {
    pub partition: PartitionRef,
    pub replicas: Vec<NodeId>,
    pub adding_replicas: Vec<NodeId>,
    pub removing_replicas: Vec<NodeId>,
}

fn reassign_one(
    image: &MetadataImage,
    current: &PartitionRegistration,
    target: Option<&[NodeId]>,
) -> Result<PartitionRegistration, PartitionError> {
    // The replicas before any reassignment in progress.
    let original: Vec<NodeId> = current
        .replicas
        .iter()
        .filter(|node| !current.adding_replicas.contains(node))
        .copied()
        .collect();
    let next = match target {
        None => {
            if !current.is_reassigning() {
                return Err(PartitionError::NoReassignmentInProgress);
            }
            let mut isr: Vec<NodeId> = current
                .isr
                .iter()
                .filter(|node| original.contains(node))
                .copied()
                .collect();
            if isr.is_empty() {
                isr = current.isr.clone();
            }
            let leader = if original.contains(&current.leader) && isr.contains(&current.leader) {
                current.leader
            } else {
                original
                    .iter()
                    .find(|node| isr.contains(node) && image.is_broker_active(**node))
                    .copied()
                    .unwrap_or(NO_LEADER)
            };
            PartitionRegistration {
                replicas: original,
                isr,
                leader,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                ..current.clone()
            }
        }
        Some(target) => {
            let unique: BTreeSet<_> = target.iter().collect();
            if target.is_empty()
                || unique.len() != target.len()
                || target.iter().any(|node| !image.brokers.contains_key(node))
            {
                return Err(PartitionError::InvalidReplicaAssignment);
            }
            let adding: Vec<NodeId> = target
                .iter()
                .filter(|node| !original.contains(node))
                .copied()
                .collect();
            let removing: Vec<NodeId> = original
                .iter()
                .filter(|node| !target.contains(node))
                .copied()
                .collect();
            let mut replicas = target.to_vec();
            replicas.extend(&removing);
            // Replicas a replaced reassignment was adding, and the new one drops, leave the ISR.
            let isr: Vec<NodeId> = current
                .isr
                .iter()
                .filter(|node| replicas.contains(node))
                .copied()
                .collect();
            if isr.is_empty() {
                return Err(PartitionError::InvalidReplicaAssignment);
            }
            let leader = if isr.contains(&current.leader) {
                current.leader
            } else {
                replicas
                    .iter()
                    .find(|node| isr.contains(node) && image.is_broker_active(**node))
                    .copied()
                    .unwrap_or(NO_LEADER)
            };
            let pending = PartitionRegistration {
                replicas,
                isr,
                leader,
                adding_replicas: adding,
                removing_replicas: removing,
                ..current.clone()
            };
            match completed_reassignment(image, &pending) {
                Some(done) => done,
                // Nothing to wait for but no target replica can lead yet: the removal waits
                // for one to be in sync, as any reassignment does.
                None if pending.adding_replicas.is_empty()
                    && pending.removing_replicas.is_empty() =>
                {
                    PartitionRegistration {
                        replicas: target.to_vec(),
                        ..pending
                    }
                }
                None => pending,
            }
        }
    };
    Ok(next)
}

/// Decides an AlterPartitionReassignments request, entry by entry in order: a target sets the
/// partition's replicas to the union of its original and target replicas with the adding and
/// removing replicas recorded (completed at once when nothing needs to catch up); `None`
/// cancels the reassignment in progress (back to the original replicas), or is
/// NO_REASSIGNMENT_IN_PROGRESS. A target must be non-empty, without duplicates, of registered
/// brokers (else INVALID_REPLICA_ASSIGNMENT).
pub fn alter_partition_reassignments(
    image: &MetadataImage,
    requests: &[ReassignmentRequest],
) -> (Vec<MetadataRecord>, Vec<ReassignmentResult>) {
    let mut image = image.clone();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for request in requests {
        let found = image.topic(&request.partition.topic).and_then(|topic| {
            topic
                .partitions
                .get(&request.partition.partition)
                .map(|current| (topic.topic_id, current.clone()))
        });
        let result = match found {
            None => Err(PartitionError::UnknownTopicOrPartition),
            Some((topic_id, current)) => {
                reassign_one(&image, &current, request.replicas.as_deref()).map(|next| {
                    let change =
                        partition_change(topic_id, request.partition.partition, &current, &next);
                    image = apply_all(&image, &change);
                    records.extend(change);
                })
            }
        };
        results.push(ReassignmentResult {
            partition: request.partition.clone(),
            result,
        });
    }
    (records, results)
}

/// ListPartitionReassignments: the reassignments in progress among `partitions` (`None` =
/// every partition), in topic and partition order. Unknown partitions are left out.
pub fn list_partition_reassignments(
    image: &MetadataImage,
    partitions: Option<&[PartitionRef]>,
) -> Vec<ListedReassignment> {
    let mut listed = Vec::new();
    for topic in image.topics() {
        for (partition, registration) in &topic.partitions {
            let reference = PartitionRef {
                topic: topic.name.clone(),
                partition: *partition,
            };
            if registration.is_reassigning()
                && partitions.is_none_or(|wanted| wanted.contains(&reference))
            {
                listed.push(ListedReassignment {
                    partition: reference,
                    replicas: registration.replicas.clone(),
                    adding_replicas: registration.adding_replicas.clone(),
                    removing_replicas: registration.removing_replicas.clone(),
                });
            }
        }
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: Uuid = Uuid::from_u128(1);

    fn node(id: i32) -> NodeId {
        NodeId(id)
    }

    fn nodes(ids: &[i32]) -> Vec<NodeId> {
        ids.iter().copied().map(node).collect()
    }

    /// Brokers 1..=4 unfenced, topic "t" with the given partitions (replicas, isr, leader), all
    /// at leader epoch 5 and partition epoch 7.
    fn image(partitions: &[(&[i32], &[i32], i32)]) -> MetadataImage {
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id: TOPIC,
        }];
        for id in 1..=4 {
            records.push(MetadataRecord::RegisterBroker {
                node_id: node(id),
                host: "h".into(),
                port: 9000,
                rack: None,
            });
            records.push(MetadataRecord::BrokerState {
                node_id: node(id),
                fenced: false,
                in_controlled_shutdown: false,
            });
        }
        for (index, (replicas, isr, leader)) in partitions.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id: TOPIC,
                partition: PartitionIndex(index as i32),
                replicas: nodes(replicas),
                isr: nodes(isr),
                leader: node(*leader),
                leader_epoch: LeaderEpoch(5),
                partition_epoch: 7,
            });
        }
        apply_all(&MetadataImage::default(), &records)
    }

    fn set_state(image: &MetadataImage, id: i32, fenced: bool, shutdown: bool) -> MetadataImage {
        image.apply(&MetadataRecord::BrokerState {
            node_id: node(id),
            fenced,
            in_controlled_shutdown: shutdown,
        })
    }

    fn registration(image: &MetadataImage, index: i32) -> PartitionRegistration {
        image.topic("t").unwrap().partitions[&PartitionIndex(index)].clone()
    }

    fn request(
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> AlterPartitionRequest {
        AlterPartitionRequest {
            topic_id: TOPIC,
            partition: PartitionIndex(0),
            leader_id: node(leader),
            leader_epoch: LeaderEpoch(leader_epoch),
            partition_epoch,
            new_isr: nodes(isr),
        }
    }

    fn reference(index: i32) -> PartitionRef {
        PartitionRef {
            topic: "t".into(),
            partition: PartitionIndex(index),
        }
    }

    #[test]
    fn alter_partition_follows_kafka_rules() {
        let image = image(&[(&[1, 2, 3], &[1, 2], 1)]);
        // Expanding the ISR: partition epoch + 1, leader epoch unchanged.
        let (records, state) = alter_partition(&image, &request(1, 5, 7, &[1, 2, 3])).unwrap();
        assert_eq!(state.isr, nodes(&[1, 2, 3]));
        assert_eq!(
            (state.leader, state.leader_epoch, state.partition_epoch),
            (node(1), LeaderEpoch(5), 8)
        );
        let after = apply_all(&image, &records);
        assert_eq!(registration(&after, 0).isr, nodes(&[1, 2, 3]));
        // The same request again: its partition epoch is stale now.
        assert_eq!(
            alter_partition(&after, &request(1, 5, 7, &[1, 2])).unwrap_err(),
            PartitionError::InvalidUpdateVersion
        );
        // Shrinking works against the new epoch.
        let (_, state) = alter_partition(&after, &request(1, 5, 8, &[1])).unwrap();
        assert_eq!((state.isr, state.partition_epoch), (nodes(&[1]), 9));

        let refuse =
            |request: AlterPartitionRequest| alter_partition(&image, &request).unwrap_err();
        assert_eq!(
            refuse(request(1, 4, 7, &[1])),
            PartitionError::FencedLeaderEpoch
        );
        assert_eq!(
            refuse(request(2, 5, 7, &[1, 2])),
            PartitionError::NotLeaderOrFollower
        );
        assert_eq!(
            refuse(request(1, 5, 6, &[1])),
            PartitionError::InvalidUpdateVersion
        );
        assert_eq!(
            refuse(request(1, 5, 7, &[1, 4])),
            PartitionError::IneligibleReplica
        );
        assert_eq!(
            refuse(request(1, 5, 7, &[2])),
            PartitionError::InvalidRequest
        );
        assert_eq!(
            refuse(request(1, 5, 7, &[1, 1])),
            PartitionError::InvalidRequest
        );
        let mut unknown = request(1, 5, 7, &[1]);
        unknown.partition = PartitionIndex(3);
        assert_eq!(
            refuse(unknown.clone()),
            PartitionError::UnknownTopicOrPartition
        );
        unknown.topic_id = Uuid::from_u128(99);
        assert_eq!(refuse(unknown), PartitionError::UnknownTopicId);
        // Fenced or shutting-down replicas may not join.
        for (fenced, shutdown) in [(true, false), (false, true)] {
            let image = set_state(&image, 3, fenced, shutdown);
            assert_eq!(
                alter_partition(&image, &request(1, 5, 7, &[1, 2, 3])).unwrap_err(),
                PartitionError::IneligibleReplica
            );
        }
    }

    #[test]
    fn preferred_and_unclean_elections() {
        let image = image(&[
            (&[1, 2], &[1, 2], 2), // preferred 1 is in sync: elect it
            (&[1, 2], &[1, 2], 1), // already led by the preferred replica
            (&[3, 2], &[2], 2),    // preferred 3 is out of sync
            (&[4, 3], &[4], -1),   // leaderless; its only ISR member is fenced below
        ]);
        let image = set_state(&image, 4, true, false);
        let all: Vec<_> = (0..4).map(reference).collect();
        let (records, results) = elect_leaders(&image, ElectionType::Preferred, Some(&all));
        let outcomes: Vec<_> = results.iter().map(|result| result.result).collect();
        assert_eq!(
            outcomes,
            vec![
                Ok(node(1)),
                Err(PartitionError::ElectionNotNeeded),
                Err(PartitionError::PreferredLeaderNotAvailable),
                Err(PartitionError::PreferredLeaderNotAvailable),
            ]
        );
        let after = apply_all(&image, &records);
        let elected = registration(&after, 0);
        assert_eq!(
            (
                elected.leader,
                elected.leader_epoch,
                elected.partition_epoch
            ),
            (node(1), LeaderEpoch(6), 8)
        );

        // Every partition: only the ones that changed are reported.
        let (_, results) = elect_leaders(&image, ElectionType::Preferred, None);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].partition, reference(0));

        // Unclean: a leaderless partition takes an eligible replica outside the ISR.
        let (records, results) = elect_leaders(&image, ElectionType::Unclean, Some(&all[2..]));
        assert_eq!(results[0].result, Err(PartitionError::ElectionNotNeeded));
        assert_eq!(results[1].result, Ok(node(3)));
        let after = apply_all(&image, &records);
        assert_eq!(registration(&after, 3).isr, nodes(&[3]));
        let none_eligible = set_state(&image, 3, true, false);
        let (_, results) = elect_leaders(&none_eligible, ElectionType::Unclean, Some(&all[3..]));
        assert_eq!(
            results[0].result,
            Err(PartitionError::EligibleLeadersNotAvailable)
        );
        let (_, results) = elect_leaders(
            &image,
            ElectionType::Preferred,
            Some(&[PartitionRef {
                topic: "nope".into(),
                partition: PartitionIndex(0),
            }]),
        );
        assert_eq!(
            results[0].result,
            Err(PartitionError::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn reassignment_completes_when_the_adding_replicas_are_in_sync() {
        let image = image(&[(&[1, 2], &[1, 2], 1)]);
        let move_to = |replicas: Option<&[i32]>| {
            vec![ReassignmentRequest {
                partition: reference(0),
                replicas: replicas.map(nodes),
            }]
        };
        // Cancelling nothing.
        let (_, results) = alter_partition_reassignments(&image, &move_to(None));
        assert_eq!(
            results[0].result,
            Err(PartitionError::NoReassignmentInProgress)
        );
        assert_eq!(
            alter_partition_reassignments(&image, &move_to(Some(&[3, 9]))).1[0].result,
            Err(PartitionError::InvalidReplicaAssignment)
        );

        // [1, 2] → [3, 2]: replicas are the union while 3 catches up.
        let (records, results) = alter_partition_reassignments(&image, &move_to(Some(&[3, 2])));
        assert_eq!(results[0].result, Ok(()));
        let moving = apply_all(&image, &records);
        let current = registration(&moving, 0);
        assert_eq!(current.replicas, nodes(&[3, 2, 1]));
        assert_eq!(
            (
                current.adding_replicas.clone(),
                current.removing_replicas.clone()
            ),
            (nodes(&[3]), nodes(&[1]))
        );
        assert_eq!(current.leader, node(1));
        let listed = list_partition_reassignments(&moving, None);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].adding_replicas, nodes(&[3]));
        assert!(complete_reassignments(&moving).is_empty());

        // The leader adds 3 to the ISR: the reassignment completes, 1 leaves and 2 leads.
        let (records, state) = alter_partition(
            &moving,
            &AlterPartitionRequest {
                topic_id: TOPIC,
                partition: PartitionIndex(0),
                leader_id: node(1),
                leader_epoch: current.leader_epoch,
                partition_epoch: current.partition_epoch,
                new_isr: nodes(&[1, 2, 3]),
            },
        )
        .unwrap();
        assert_eq!(state.replicas, nodes(&[3, 2]));
        assert_eq!(state.isr, nodes(&[2, 3]));
        assert_eq!(state.leader, node(3));
        assert_eq!(state.leader_epoch, LeaderEpoch(current.leader_epoch.0 + 1));
        let done = apply_all(&moving, &records);
        assert!(!registration(&done, 0).is_reassigning());
        assert!(list_partition_reassignments(&done, None).is_empty());

        // Cancelling goes back to the original replicas.
        let (records, results) = alter_partition_reassignments(&moving, &move_to(None));
        assert_eq!(results[0].result, Ok(()));
        let cancelled = registration(&apply_all(&moving, &records), 0);
        // The original replicas, in the order the reassignment kept them (target first).
        assert_eq!(cancelled.replicas, nodes(&[2, 1]));
        assert_eq!(cancelled.isr, nodes(&[1, 2]));
        assert!(!cancelled.is_reassigning());

        // Removing a replica only: nothing to wait for, done at once.
        let (records, _) = alter_partition_reassignments(&image, &move_to(Some(&[2])));
        let shrunk = registration(&apply_all(&image, &records), 0);
        assert_eq!(
            (shrunk.replicas, shrunk.isr, shrunk.leader),
            (nodes(&[2]), nodes(&[2]), node(2))
        );
    }
}
