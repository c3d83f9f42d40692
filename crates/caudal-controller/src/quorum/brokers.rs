//! Broker leases and the leadership changes that follow them, as KRaft's active controller keeps
//! them: a broker heartbeats within `broker.session.timeout.ms` or is fenced; partitions move
//! their leadership off fenced brokers, and leaderless partitions elect again when an in-sync
//! replica is back. Pure functions plus a leader-local lease table, so the server drives them
//! with `Quorum::write` and a clock.
//!
//! Rules (Kafka's `ReplicationControlManager`/`PartitionChangeBuilder`):
//! - a fenced broker leaves every ISR, except that an ISR never becomes empty: its last member
//!   stays, and the partition is left without a leader ([`NO_LEADER`]);
//! - a partition's leader is kept while it is not fenced; otherwise the first replica, in
//!   assignment order, that is in the ISR and not fenced leads; none → [`NO_LEADER`];
//! - the leader epoch grows only when the leader changes; the partition epoch on every change.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use caudal_metadata::{BrokerRegistration, ConfigResource, MetadataImage, MetadataRecord};
use caudal_model::{LeaderEpoch, NodeId};
use serde::{Deserialize, Serialize};

use crate::decisions::ControllerError;
use crate::replication::apply_all;

pub use crate::replication::NO_LEADER;
/// Kafka's `broker.session.timeout.ms` default.
pub const BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(9000);

/// When each broker last heartbeated, on the active controller only (Kafka keeps leases in the
/// controller's memory too). A new active controller starts every registered broker with a fresh
/// lease, so a failover never fences live brokers.
#[derive(Debug, Clone)]
pub struct BrokerLeases {
    session_timeout: Duration,
    last_heartbeat: HashMap<NodeId, Instant>,
}

impl BrokerLeases {
    pub fn new(session_timeout: Duration) -> Self {
        Self {
            session_timeout,
            last_heartbeat: HashMap::new(),
        }
    }

    /// Gives every broker registered in `image` a lease starting `now` (on becoming leader).
    pub fn reset(&mut self, image: &MetadataImage, now: Instant) {
        self.last_heartbeat = image.brokers.keys().map(|node| (*node, now)).collect();
    }

    /// Gives every broker registered in `image` that has no lease yet one starting `now` (brokers
    /// whose registration this controller applied after it became leader, or learned from its
    /// predecessor's last entries).
    pub fn adopt(&mut self, image: &MetadataImage, now: Instant) {
        for node in image.brokers.keys() {
            self.last_heartbeat.entry(*node).or_insert(now);
        }
    }

    /// Records a heartbeat (or a registration) from `node`.
    pub fn heartbeat(&mut self, node: NodeId, now: Instant) {
        self.last_heartbeat.insert(node, now);
    }

    /// Forgets a broker (it shut down cleanly or was unregistered).
    pub fn remove(&mut self, node: NodeId) {
        self.last_heartbeat.remove(&node);
    }

    /// Brokers whose lease has lapsed at `now`, plus registered brokers never heard from.
    pub fn fenced(&self, image: &MetadataImage, now: Instant) -> BTreeSet<NodeId> {
        image
            .brokers
            .keys()
            .filter(|node| {
                self.last_heartbeat
                    .get(node)
                    .is_none_or(|last| now.saturating_duration_since(*last) > self.session_timeout)
            })
            .copied()
            .collect()
    }
}

/// The record registering `broker`, unless the image already has it with the same address.
/// (Fencing state is not compared: a registration always leaves the broker fenced.)
pub fn register_broker(image: &MetadataImage, broker: &BrokerRegistration) -> Vec<MetadataRecord> {
    if image.brokers.get(&broker.node_id).is_some_and(|known| {
        known.host == broker.host && known.port == broker.port && known.rack == broker.rack
    }) {
        return Vec::new();
    }
    vec![MetadataRecord::RegisterBroker {
        node_id: broker.node_id,
        host: broker.host.clone(),
        port: broker.port,
        rack: broker.rack.clone(),
    }]
}

/// What the controller answers a broker heartbeat (Kafka's BrokerHeartbeat response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeatReply {
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    /// The broker may stop now: it leads no partition any more (or asked while fenced).
    pub should_shut_down: bool,
}

fn broker_state(node_id: NodeId, fenced: bool, in_controlled_shutdown: bool) -> MetadataRecord {
    MetadataRecord::BrokerState {
        node_id,
        fenced,
        in_controlled_shutdown,
    }
}

/// Decides a heartbeat from a registered broker (Kafka's `BrokerHeartbeatManager` states):
/// - a plain heartbeat unfences the broker and ends a controlled shutdown it was in (a restarted
///   broker), then partitions that were leaderless elect again;
/// - `want_shutdown_safely` from an unfenced broker starts its controlled shutdown: it leaves
///   every ISR (an ISR never empties) and every leadership that another in-sync replica can take;
///   the reply says `should_shut_down` once it leads nothing;
/// - `want_shutdown_safely` from a fenced broker: it may shut down at once.
///
/// Records are written only when the broker's state changes (and the leadership changes that
/// follow). An unregistered broker is BROKER_ID_NOT_REGISTERED.
pub fn broker_heartbeat(
    image: &MetadataImage,
    node_id: NodeId,
    want_shutdown_safely: bool,
) -> Result<(Vec<MetadataRecord>, BrokerHeartbeatReply), ControllerError> {
    let broker = image
        .brokers
        .get(&node_id)
        .ok_or(ControllerError::BrokerIdNotRegistered { node_id })?;
    let mut records = Vec::new();
    if want_shutdown_safely && broker.fenced {
        return Ok((
            records,
            BrokerHeartbeatReply {
                is_fenced: true,
                in_controlled_shutdown: broker.in_controlled_shutdown,
                should_shut_down: true,
            },
        ));
    }
    let wanted = (false, want_shutdown_safely);
    if (broker.fenced, broker.in_controlled_shutdown) != wanted {
        records.push(broker_state(node_id, wanted.0, wanted.1));
    }
    let changed = apply_all(image, &records);
    records.extend(update_leadership(&changed, &BTreeSet::new()));
    let after = apply_all(image, &records);
    let leads_something = after.topics().any(|topic| {
        topic
            .partitions
            .values()
            .any(|partition| partition.leader == node_id)
    });
    Ok((
        records,
        BrokerHeartbeatReply {
            is_fenced: false,
            in_controlled_shutdown: want_shutdown_safely,
            should_shut_down: want_shutdown_safely && !leads_something,
        },
    ))
}

/// Fences every broker of `expired` (lapsed leases) that is registered and not fenced yet, and
/// moves leaderships and ISRs off them ([`update_leadership`]). Empty when nothing changes.
pub fn fence_brokers(image: &MetadataImage, expired: &BTreeSet<NodeId>) -> Vec<MetadataRecord> {
    let mut records: Vec<MetadataRecord> = expired
        .iter()
        .filter_map(|node| image.brokers.get(node))
        .filter(|broker| !broker.fenced)
        .map(|broker| broker_state(broker.node_id, true, broker.in_controlled_shutdown))
        .collect();
    let fenced = apply_all(image, &records);
    records.extend(update_leadership(&fenced, &BTreeSet::new()));
    records
}

/// The partition changes that bring every partition in line with `fenced` and with the image's
/// broker states: fenced brokers and brokers in controlled shutdown leave ISRs and leadership
/// (as Kafka does on fencing and on controlled shutdown), leaderless partitions elect an eligible
/// in-sync replica. Empty when nothing changes, so running it on every lease check is cheap and
/// idempotent.
pub fn update_leadership(image: &MetadataImage, fenced: &BTreeSet<NodeId>) -> Vec<MetadataRecord> {
    let mut fenced = fenced.clone();
    fenced.extend(
        image
            .brokers
            .values()
            .filter(|broker| !broker.is_active())
            .map(|broker| broker.node_id),
    );
    let fenced = &fenced;
    let mut records = Vec::new();
    for topic in image.topics() {
        for (partition, current) in &topic.partitions {
            let mut isr: Vec<NodeId> = current
                .isr
                .iter()
                .filter(|node| !fenced.contains(node))
                .copied()
                .collect();
            if isr.is_empty() {
                isr = current.isr.clone();
            }
            let mut leader = if current.leader != NO_LEADER
                && !fenced.contains(&current.leader)
                && isr.contains(&current.leader)
            {
                current.leader
            } else {
                current
                    .replicas
                    .iter()
                    .find(|node| isr.contains(node) && !fenced.contains(node))
                    .copied()
                    .unwrap_or(NO_LEADER)
            };
            if leader == NO_LEADER && unclean_election_enabled(image, &topic.name) {
                // Kafka's unclean election: no in-sync replica is alive, the topic accepts losing
                // records, so the first live replica leads alone.
                if let Some(live) = current
                    .replicas
                    .iter()
                    .find(|node| !fenced.contains(node) && image.brokers.contains_key(node))
                {
                    leader = *live;
                    isr = vec![*live];
                }
            }
            if isr == current.isr && leader == current.leader {
                continue;
            }
            let leader_epoch = if leader == current.leader {
                current.leader_epoch
            } else {
                LeaderEpoch(current.leader_epoch.0 + 1)
            };
            records.push(MetadataRecord::Partition {
                topic_id: topic.topic_id,
                partition: *partition,
                replicas: current.replicas.clone(),
                isr,
                leader,
                leader_epoch,
                partition_epoch: current.partition_epoch + 1,
            });
        }
    }
    records
}

/// `unclean.leader.election.enable` for `topic`: its own setting, else the dynamic cluster
/// default, else Kafka's default (false). (A broker's static setting is not visible to the
/// controller.)
fn unclean_election_enabled(image: &MetadataImage, topic: &str) -> bool {
    const NAME: &str = "unclean.leader.election.enable";
    image
        .configs(&ConfigResource::Topic(topic.to_string()))
        .and_then(|configs| configs.get(NAME))
        .or_else(|| {
            image
                .configs(&ConfigResource::BrokerDefault)
                .and_then(|configs| configs.get(NAME))
        })
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::PartitionIndex;
    use uuid::Uuid;

    fn node(id: i32) -> NodeId {
        NodeId(id)
    }

    fn image(partitions: &[(&[i32], &[i32], i32)]) -> MetadataImage {
        let topic_id = Uuid::from_u128(1);
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        }];
        for id in 1..=3 {
            records.push(MetadataRecord::RegisterBroker {
                node_id: node(id),
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
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
                topic_id,
                partition: PartitionIndex(index as i32),
                replicas: replicas.iter().copied().map(node).collect(),
                isr: isr.iter().copied().map(node).collect(),
                leader: node(*leader),
                leader_epoch: LeaderEpoch(5),
                partition_epoch: 7,
            });
        }
        records
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            })
    }

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        records
            .iter()
            .fold(image.clone(), |image, record| image.apply(record))
    }

    fn state(image: &MetadataImage, index: i32) -> (Vec<i32>, i32, i32, i32) {
        let partition = &image.topic("t").unwrap().partitions[&PartitionIndex(index)];
        (
            partition.isr.iter().map(|node| node.0).collect(),
            partition.leader.0,
            partition.leader_epoch.0,
            partition.partition_epoch,
        )
    }

    #[test]
    fn fencing_moves_leadership_to_the_next_in_sync_replica() {
        let before = image(&[
            (&[1, 2, 3], &[1, 2, 3], 1), // the fenced broker leads
            (&[2, 1, 3], &[2, 1, 3], 2), // it only follows
            (&[3, 2], &[3, 2], 3),       // not involved
            (&[1, 3], &[1], 1),          // it is the last in-sync replica
        ]);
        let fenced: BTreeSet<_> = [node(1)].into();
        let records = update_leadership(&before, &fenced);
        assert_eq!(records.len(), 3);
        let after = apply(&before, &records);
        assert_eq!(state(&after, 0), (vec![2, 3], 2, 6, 8));
        assert_eq!(state(&after, 1), (vec![2, 3], 2, 5, 8));
        assert_eq!(state(&after, 2), (vec![3, 2], 3, 5, 7));
        assert_eq!(state(&after, 3), (vec![1], -1, 6, 8));
        // Idempotent: nothing more to change under the same fenced set.
        assert!(update_leadership(&after, &fenced).is_empty());

        // The broker is back: the leaderless partition elects it (still the last ISR member);
        // the others keep their leaders (it rejoins their ISRs through the partition leader).
        let back = update_leadership(&after, &BTreeSet::new());
        let healed = apply(&after, &back);
        assert_eq!(back.len(), 1);
        assert_eq!(state(&healed, 3), (vec![1], 1, 7, 9));
        assert_eq!(state(&healed, 0), (vec![2, 3], 2, 6, 8));
    }

    #[test]
    fn unclean_election_only_where_the_topic_or_cluster_default_enables_it() {
        // Partition 0's only in-sync replica (1) is fenced; 3 is live but out of sync.
        let before = image(&[(&[1, 3], &[1], 1)]);
        let fenced: BTreeSet<_> = [node(1)].into();
        let after = apply(&before, &update_leadership(&before, &fenced));
        assert_eq!(
            state(&after, 0),
            (vec![1], -1, 6, 8),
            "no unclean election by default"
        );

        let enable = |resource: ConfigResource| MetadataRecord::Config {
            resource,
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        };
        for resource in [
            ConfigResource::Topic("t".into()),
            ConfigResource::BrokerDefault,
        ] {
            let enabled = apply(&before, &[enable(resource)]);
            let after = apply(&enabled, &update_leadership(&enabled, &fenced));
            assert_eq!(state(&after, 0), (vec![3], 3, 6, 8));
        }
        // The topic's own `false` wins over a cluster default of `true`.
        let mixed = apply(
            &before,
            &[
                enable(ConfigResource::BrokerDefault),
                MetadataRecord::Config {
                    resource: ConfigResource::Topic("t".into()),
                    name: "unclean.leader.election.enable".into(),
                    value: Some("false".into()),
                },
            ],
        );
        assert!(update_leadership(&mixed, &fenced)
            .iter()
            .all(|record| !matches!(record, MetadataRecord::Partition { leader, .. } if *leader == node(3))));
    }

    #[test]
    fn leases_lapse_after_the_session_timeout_and_reset_on_failover() {
        let image = image(&[]);
        let start = Instant::now();
        let mut leases = BrokerLeases::new(Duration::from_secs(9));
        // Never heard from: fenced.
        assert_eq!(leases.fenced(&image, start).len(), 3);
        leases.reset(&image, start);
        assert!(
            leases
                .fenced(&image, start + Duration::from_secs(9))
                .is_empty()
        );
        leases.heartbeat(node(2), start + Duration::from_secs(5));
        let later = start + Duration::from_secs(10);
        assert_eq!(leases.fenced(&image, later), [node(1), node(3)].into());
        leases.remove(node(3));
        assert_eq!(leases.fenced(&image, later), [node(1), node(3)].into());
    }

    #[test]
    fn registration_is_written_only_when_new_or_changed() {
        let image = image(&[]);
        let known = image.brokers[&node(2)].clone();
        assert!(register_broker(&image, &known).is_empty());
        let moved = BrokerRegistration {
            port: 19092,
            ..known
        };
        assert_eq!(register_broker(&image, &moved).len(), 1);
        let new = BrokerRegistration {
            node_id: node(9),
            host: "h".into(),
            port: 1,
            rack: Some("r".into()),
            fenced: true,
            in_controlled_shutdown: false,
        };
        let after = apply(&image, &register_broker(&image, &new));
        assert_eq!(after.brokers[&node(9)], new);
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;
    use caudal_model::PartitionIndex;
    use uuid::Uuid;

    fn image() -> MetadataImage {
        let topic_id = Uuid::from_u128(1);
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        }];
        // 1 and 2 are unfenced; 3 has just registered.
        for id in 1..=3 {
            records.push(MetadataRecord::RegisterBroker {
                node_id: NodeId(id),
                host: "h".into(),
                port: 1,
                rack: None,
            });
        }
        for id in 1..=2 {
            records.push(MetadataRecord::BrokerState {
                node_id: NodeId(id),
                fenced: false,
                in_controlled_shutdown: false,
            });
        }
        for (index, replicas, leader) in [(0, vec![1, 2], 1), (1, vec![2, 1], 2), (2, vec![1], 1)] {
            let replicas: Vec<NodeId> = replicas.into_iter().map(NodeId).collect();
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(index),
                isr: replicas.clone(),
                replicas,
                leader: NodeId(leader),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: 0,
            });
        }
        apply_all(&MetadataImage::default(), &records)
    }

    fn leaders(image: &MetadataImage) -> Vec<i32> {
        image
            .topic("t")
            .unwrap()
            .partitions
            .values()
            .map(|p| p.leader.0)
            .collect()
    }

    #[test]
    fn heartbeats_unfence_and_controlled_shutdown_moves_leadership() {
        let registered = image();
        assert!(matches!(
            broker_heartbeat(&registered, NodeId(9), false),
            Err(ControllerError::BrokerIdNotRegistered { .. })
        ));
        // First heartbeats unfence (one record each, then nothing).
        let (records, reply) = broker_heartbeat(&registered, NodeId(1), false).unwrap();
        assert!(!reply.is_fenced && !reply.should_shut_down);
        let image = apply_all(&registered, &records);
        let (records, _) = broker_heartbeat(&image, NodeId(2), false).unwrap();
        let image = apply_all(&image, &records);
        assert!(image.is_broker_active(NodeId(1)) && image.is_broker_active(NodeId(2)));
        assert!(
            broker_heartbeat(&image, NodeId(1), false)
                .unwrap()
                .0
                .is_empty()
        );

        // Broker 1 asks to shut down: it leaves leaderships another in-sync replica can take;
        // partition 2 (only on 1) goes leaderless, so 1 leads nothing and may stop.
        let (records, reply) = broker_heartbeat(&image, NodeId(1), true).unwrap();
        assert!(reply.in_controlled_shutdown && reply.should_shut_down);
        let stopping = apply_all(&image, &records);
        assert_eq!(leaders(&stopping), vec![2, 2, -1]);
        let partition = &stopping.topic("t").unwrap().partitions[&PartitionIndex(2)];
        assert_eq!(partition.isr, vec![NodeId(1)], "an ISR never empties");
        assert!(
            broker_heartbeat(&stopping, NodeId(1), true)
                .unwrap()
                .0
                .is_empty()
        );

        // Restarted: a plain heartbeat clears the controlled shutdown and the leaderless
        // partition elects it again.
        let (records, reply) = broker_heartbeat(&stopping, NodeId(1), false).unwrap();
        assert!(!reply.in_controlled_shutdown);
        let back = apply_all(&stopping, &records);
        assert_eq!(leaders(&back), vec![2, 2, 1]);

        // A fenced broker asking to shut down may stop at once.
        let (records, reply) = broker_heartbeat(&image, NodeId(3), true).unwrap();
        assert!(records.is_empty() && reply.is_fenced && reply.should_shut_down);
    }

    #[test]
    fn an_expired_lease_fences_once() {
        let image = image();
        let image = apply_all(
            &image,
            &broker_heartbeat(&image, NodeId(1), false).unwrap().0,
        );
        let image = apply_all(
            &image,
            &broker_heartbeat(&image, NodeId(2), false).unwrap().0,
        );
        let expired: BTreeSet<_> = [NodeId(2)].into();
        let records = fence_brokers(&image, &expired);
        let fenced = apply_all(&image, &records);
        assert!(fenced.brokers[&NodeId(2)].fenced);
        assert_eq!(leaders(&fenced), vec![1, 1, 1]);
        assert!(fence_brokers(&fenced, &expired).is_empty());
        // update_leadership honours the image's fenced flag on its own.
        assert!(update_leadership(&fenced, &BTreeSet::new()).is_empty());
    }
}
