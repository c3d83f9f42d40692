//! The immutable metadata image and how records change it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use caudal_model::{LeaderEpoch, NodeId, PartitionIndex, ProducerId};
use uuid::Uuid;

use crate::record::{ConfigResource, MetadataRecord};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// A fenced broker may neither lead a partition nor join an ISR. A broker is fenced from its
    /// registration until its first heartbeat, and again when its session lapses (KRaft).
    pub fenced: bool,
    /// The broker asked to shut down safely and is giving up its leaderships.
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// Whether the broker may lead and be in an ISR: unfenced and not shutting down (Kafka's
    /// "active" broker).
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    /// The replicas in assignment order; while a reassignment is in progress, the union of the
    /// current and the target replicas.
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (empty when none is).
    pub adding_replicas: Vec<NodeId>,
    /// Replicas a reassignment in progress removes (empty when none is).
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionRegistration {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas once the reassignment in progress (if any) completes, in assignment order.
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .filter(|node| !self.removing_replicas.contains(node))
            .copied()
            .collect()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<PartitionIndex, PartitionRegistration>,
}

/// Everything the cluster knows, as of `last_applied` records. Cheap to clone (shared parts are
/// behind `Arc`), never mutated once published.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// How many records have been applied.
    pub last_applied: u64,
    pub cluster_id: Option<String>,
    pub brokers: Arc<BTreeMap<NodeId, BrokerRegistration>>,
    topics_by_id: Arc<HashMap<Uuid, Arc<TopicImage>>>,
    topic_ids_by_name: Arc<BTreeMap<String, Uuid>>,
    configs: Arc<BTreeMap<ConfigResource, BTreeMap<String, String>>>,
    /// Every producer id below this has been handed out.
    pub next_producer_id: ProducerId,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics_by_id.get(id))
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topics_by_id.get(topic_id)
    }

    /// Topics in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topic_ids_by_name
            .values()
            .filter_map(|id| self.topics_by_id.get(id))
    }

    /// Whether `node` is registered, unfenced and not in controlled shutdown.
    pub fn is_broker_active(&self, node: NodeId) -> bool {
        self.brokers
            .get(&node)
            .is_some_and(BrokerRegistration::is_active)
    }

    /// Dynamic configs set on a resource (not defaults).
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// The image after `record`. Records that name unknown entities are ignored with no effect:
    /// the controller never writes them, and replay must not fail on history.
    pub fn apply(&self, record: &MetadataRecord) -> MetadataImage {
        let mut next = self.clone();
        next.last_applied += 1;
        match record {
            MetadataRecord::Cluster { cluster_id } => next.cluster_id = Some(cluster_id.clone()),
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                // A (re-)registered broker is fenced until its first heartbeat.
                Arc::make_mut(&mut next.brokers).insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: true,
                        in_controlled_shutdown: false,
                    },
                );
            }
            MetadataRecord::BrokerState {
                node_id,
                fenced,
                in_controlled_shutdown,
            } => {
                if let Some(broker) = Arc::make_mut(&mut next.brokers).get_mut(node_id) {
                    broker.fenced = *fenced;
                    broker.in_controlled_shutdown = *in_controlled_shutdown;
                }
            }
            MetadataRecord::PartitionReassignment {
                topic_id,
                partition,
                adding_replicas,
                removing_replicas,
            } => {
                if let Some(topic) = Arc::make_mut(&mut next.topics_by_id).get_mut(topic_id)
                    && let Some(registration) = Arc::make_mut(topic).partitions.get_mut(partition)
                {
                    registration.adding_replicas = adding_replicas.clone();
                    registration.removing_replicas = removing_replicas.clone();
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                Arc::make_mut(&mut next.topic_ids_by_name).insert(name.clone(), *topic_id);
                Arc::make_mut(&mut next.topics_by_id).insert(
                    *topic_id,
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                if let Some(topic) = Arc::make_mut(&mut next.topics_by_id).get_mut(topic_id) {
                    // A reassignment in progress is kept: only `PartitionReassignment` changes it.
                    let partitions = &mut Arc::make_mut(topic).partitions;
                    let (adding_replicas, removing_replicas) = partitions
                        .remove(partition)
                        .map(|old| (old.adding_replicas, old.removing_replicas))
                        .unwrap_or_default();
                    partitions.insert(
                        *partition,
                        PartitionRegistration {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                            adding_replicas,
                            removing_replicas,
                        },
                    );
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(topic) = Arc::make_mut(&mut next.topics_by_id).remove(topic_id) {
                    Arc::make_mut(&mut next.topic_ids_by_name).remove(&topic.name);
                    Arc::make_mut(&mut next.configs)
                        .remove(&ConfigResource::Topic(topic.name.clone()));
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let configs = Arc::make_mut(&mut next.configs);
                match value {
                    Some(value) => {
                        configs
                            .entry(resource.clone())
                            .or_default()
                            .insert(name.clone(), value.clone());
                    }
                    None => {
                        if let Some(entries) = configs.get_mut(resource) {
                            entries.remove(name);
                            if entries.is_empty() {
                                configs.remove(resource);
                            }
                        }
                    }
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                next.next_producer_id = next.next_producer_id.max(*next_producer_id);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u128) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
        }
    }

    fn partition(id: u128, index: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: Uuid::from_u128(id),
            partition: PartitionIndex(index),
            replicas: vec![NodeId(1)],
            isr: vec![NodeId(1)],
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
        }
    }

    #[test]
    fn topics_partitions_and_configs_fold_into_the_image() {
        let records = [
            topic("b", 2),
            topic("a", 1),
            partition(1, 0),
            partition(1, 1),
            partition(2, 0),
            MetadataRecord::Config {
                resource: ConfigResource::Topic("a".into()),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
        ];
        let image = records
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        assert_eq!(image.last_applied, 6);
        let names: Vec<_> = image.topics().map(|topic| topic.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(image.topic("a").unwrap().partitions.len(), 2);
        assert_eq!(
            image.configs(&ConfigResource::Topic("a".into())).unwrap()["retention.ms"],
            "1000"
        );

        let removed = image.apply(&MetadataRecord::RemoveTopic {
            topic_id: Uuid::from_u128(1),
        });
        assert!(removed.topic("a").is_none());
        assert!(
            removed
                .configs(&ConfigResource::Topic("a".into()))
                .is_none()
        );
        // The earlier image is untouched.
        assert!(image.topic("a").is_some());
    }

    #[test]
    fn brokers_are_fenced_until_unfenced_and_reassignments_survive_partition_changes() {
        let register = MetadataRecord::RegisterBroker {
            node_id: NodeId(1),
            host: "h".into(),
            port: 1,
            rack: None,
        };
        let image = MetadataImage::default().apply(&register);
        assert!(image.brokers[&NodeId(1)].fenced);
        assert!(!image.is_broker_active(NodeId(1)));
        let image = image.apply(&MetadataRecord::BrokerState {
            node_id: NodeId(1),
            fenced: false,
            in_controlled_shutdown: false,
        });
        assert!(image.is_broker_active(NodeId(1)));
        let shutting = image.apply(&MetadataRecord::BrokerState {
            node_id: NodeId(1),
            fenced: false,
            in_controlled_shutdown: true,
        });
        assert!(!shutting.is_broker_active(NodeId(1)));
        // Registering again (a restart) fences it and clears the controlled shutdown.
        let again = shutting.apply(&register);
        assert!(again.brokers[&NodeId(1)].fenced);
        assert!(!again.brokers[&NodeId(1)].in_controlled_shutdown);
        // State of an unknown broker: ignored.
        let ignored = image.apply(&MetadataRecord::BrokerState {
            node_id: NodeId(9),
            fenced: false,
            in_controlled_shutdown: false,
        });
        assert!(!ignored.brokers.contains_key(&NodeId(9)));

        let image = image.apply(&topic("t", 1)).apply(&partition(1, 0));
        let image = image.apply(&MetadataRecord::PartitionReassignment {
            topic_id: Uuid::from_u128(1),
            partition: PartitionIndex(0),
            adding_replicas: vec![NodeId(2)],
            removing_replicas: vec![NodeId(1)],
        });
        let image = image.apply(&partition(1, 0));
        let registration = &image.topic("t").unwrap().partitions[&PartitionIndex(0)];
        assert!(registration.is_reassigning());
        assert_eq!(registration.adding_replicas, vec![NodeId(2)]);
        assert!(registration.target_replicas().is_empty());
        let image = image.apply(&MetadataRecord::PartitionReassignment {
            topic_id: Uuid::from_u128(1),
            partition: PartitionIndex(0),
            adding_replicas: vec![],
            removing_replicas: vec![],
        });
        assert!(!image.topic("t").unwrap().partitions[&PartitionIndex(0)].is_reassigning());
    }

    #[test]
    fn records_for_unknown_topics_are_ignored_and_producer_ids_only_grow() {
        let image = MetadataImage::default()
            .apply(&partition(9, 0))
            .apply(&MetadataRecord::ProducerIds {
                node_id: NodeId(1),
                next_producer_id: ProducerId(1000),
            })
            .apply(&MetadataRecord::ProducerIds {
                node_id: NodeId(1),
                next_producer_id: ProducerId(10),
            });
        assert!(image.topic_by_id(&Uuid::from_u128(9)).is_none());
        assert_eq!(image.next_producer_id, ProducerId(1000));
    }
}
