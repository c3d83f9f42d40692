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

use caudal_metadata::{BrokerRegistration, MetadataImage, MetadataRecord};
use caudal_model::{LeaderEpoch, NodeId};

/// Kafka's "no leader" broker id.
pub const NO_LEADER: NodeId = NodeId(-1);
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

/// The partition changes that bring every partition in line with `fenced`: fenced brokers leave
/// ISRs and leadership, leaderless partitions elect an unfenced in-sync replica. Empty when
/// nothing changes, so running it on every lease check is cheap and idempotent.
pub fn update_leadership(image: &MetadataImage, fenced: &BTreeSet<NodeId>) -> Vec<MetadataRecord> {
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
            let leader = if current.leader != NO_LEADER
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
