//! What a Metadata response says about the cluster, in Caudal's types.

use std::collections::BTreeMap;

use caudal_model::{LeaderEpoch, NodeId, PartitionIndex};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::MetadataResponse;
use uuid::Uuid;

/// One broker as Metadata advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for `TcpStream::connect`.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition: its leader, replicas and in-sync replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: PartitionIndex,
    /// `None` while the partition has no leader (election in progress, or offline).
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub offline_replicas: Vec<NodeId>,
    /// A partition-level error, e.g. `LEADER_NOT_AVAILABLE`.
    pub error: Option<ErrorCode>,
}

/// One topic and its partitions, sorted by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// `None` when the broker does not report topic ids (Metadata below v10) or sent the nil id.
    pub topic_id: Option<Uuid>,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
    /// A topic-level error, e.g. `UNKNOWN_TOPIC_OR_PARTITION` for a topic that does not exist.
    pub error: Option<ErrorCode>,
}

impl TopicInfo {
    pub fn partition(&self, partition: PartitionIndex) -> Option<&PartitionInfo> {
        self.partitions
            .binary_search_by_key(&partition, |info| info.partition)
            .ok()
            .map(|index| &self.partitions[index])
    }

    /// The replication factor, read off the first partition's replica list.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map_or(0, |info| info.replicas.len())
    }
}

/// Brokers, controller and topics, as of one Metadata response (merged over several for the
/// client's cache).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: Option<NodeId>,
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterMetadata {
    /// Converts a Metadata response. Topics without a name (only possible when asking by id) are
    /// skipped.
    pub fn from_response(response: &MetadataResponse) -> Self {
        let node = |id: i32| (id >= 0).then_some(NodeId(id));
        let brokers = response
            .brokers
            .iter()
            .map(|broker| {
                let info = BrokerInfo {
                    node_id: NodeId(broker.node_id.0),
                    host: broker.host.to_string(),
                    port: broker.port,
                    rack: broker.rack.as_ref().map(|rack| rack.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let topics = response
            .topics
            .iter()
            .filter_map(|topic| {
                let name = topic.name.as_ref()?.to_string();
                let mut partitions: Vec<PartitionInfo> = topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionInfo {
                        partition: PartitionIndex(partition.partition_index),
                        leader: node(partition.leader_id.0),
                        leader_epoch: LeaderEpoch(partition.leader_epoch),
                        replicas: partition
                            .replica_nodes
                            .iter()
                            .map(|id| NodeId(id.0))
                            .collect(),
                        isr: partition.isr_nodes.iter().map(|id| NodeId(id.0)).collect(),
                        offline_replicas: partition
                            .offline_replicas
                            .iter()
                            .map(|id| NodeId(id.0))
                            .collect(),
                        error: ErrorCode::try_from_code(partition.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|info| info.partition);
                partitions.dedup_by_key(|info| info.partition);
                let info = TopicInfo {
                    name: name.clone(),
                    topic_id: (!topic.topic_id.is_nil()).then_some(topic.topic_id),
                    is_internal: topic.is_internal,
                    partitions,
                    error: ErrorCode::try_from_code(topic.error_code),
                };
                Some((name, info))
            })
            .collect();
        Self {
            cluster_id: response.cluster_id.as_ref().map(|id| id.to_string()),
            controller_id: node(response.controller_id.0),
            brokers,
            topics,
        }
    }

    /// Folds a newer response into this cache: brokers, controller and cluster id are replaced;
    /// topics in the response replace their entries, and a topic reported as unknown is dropped.
    pub fn merge(&mut self, newer: ClusterMetadata) {
        self.cluster_id = newer.cluster_id.or(self.cluster_id.take());
        self.controller_id = newer.controller_id;
        if !newer.brokers.is_empty() {
            self.brokers = newer.brokers;
        }
        for (name, topic) in newer.topics {
            if topic.error.is_some() {
                self.topics.remove(&name);
            } else {
                self.topics.insert(name, topic);
            }
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The leader of `topic`-`partition` if metadata names one that is also a known broker.
    pub fn leader(&self, topic: &str, partition: PartitionIndex) -> Option<&BrokerInfo> {
        let leader = self.topic(topic)?.partition(partition)?.leader?;
        self.brokers.get(&leader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_protocol::kafka_protocol::messages::BrokerId;
    use caudal_protocol::kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use caudal_protocol::kafka_protocol::protocol::StrBytes;

    fn response() -> MetadataResponse {
        MetadataResponse::default()
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092),
            ])
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(StrBytes::from_static_str("orders").into()))
                    .with_topic_id(Uuid::from_u128(7))
                    .with_partitions(vec![
                        MetadataResponsePartition::default()
                            .with_partition_index(1)
                            .with_leader_id(BrokerId(-1))
                            .with_error_code(5),
                        MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(1))
                            .with_replica_nodes(vec![BrokerId(1)])
                            .with_isr_nodes(vec![BrokerId(1)]),
                    ]),
                MetadataResponseTopic::default()
                    .with_name(Some(StrBytes::from_static_str("gone").into()))
                    .with_error_code(3),
            ])
    }

    #[test]
    fn converts_and_sorts_partitions() {
        let metadata = ClusterMetadata::from_response(&response());
        assert_eq!(metadata.controller_id, Some(NodeId(1)));
        let orders = metadata.topic("orders").unwrap();
        assert_eq!(orders.topic_id, Some(Uuid::from_u128(7)));
        assert_eq!(orders.partitions[0].partition, PartitionIndex(0));
        assert_eq!(orders.partitions[1].leader, None);
        assert_eq!(
            orders.partitions[1].error,
            Some(ErrorCode::LeaderNotAvailable)
        );
        assert_eq!(orders.replication_factor(), 1);
        assert_eq!(
            metadata
                .leader("orders", PartitionIndex(0))
                .unwrap()
                .address(),
            "127.0.0.1:9092"
        );
        assert!(metadata.leader("orders", PartitionIndex(1)).is_none());
    }

    #[test]
    fn merge_drops_unknown_topics_and_keeps_others() {
        let mut cache = ClusterMetadata::from_response(&response());
        cache
            .topics
            .insert("gone".to_owned(), cache.topic("orders").unwrap().clone());
        cache.merge(ClusterMetadata::from_response(&response()));
        assert!(cache.topic("gone").is_none());
        assert!(cache.topic("orders").is_some());
    }

    #[test]
    fn brackets_ipv6_hosts() {
        let broker = BrokerInfo {
            node_id: NodeId(1),
            host: "::1".to_owned(),
            port: 9092,
            rack: None,
        };
        assert_eq!(broker.address(), "[::1]:9092");
    }
}
