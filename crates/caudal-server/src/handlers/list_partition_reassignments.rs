//! ListPartitionReassignments (key 46, KIP-455): the reassignments in progress, each with its
//! replicas (the union of the original and target replicas) and the replicas being added and
//! removed (`kafka-reassign-partitions.sh --verify`, `Admin.listPartitionReassignments`).
//!
//! A null topic list means every partition; named topics or partitions that do not exist, or
//! are not being reassigned, are left out, as Kafka leaves them out. Answered from this
//! broker's metadata image, which follows the controller's log.

use caudal_controller::replication::{PartitionRef, list_partition_reassignments};
use caudal_model::{NodeId, PartitionIndex};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange =
    ApiVersionRange::new(ApiKey::ListPartitionReassignments, 0, 0);

pub fn handle(
    broker: &Broker,
    request: &ListPartitionReassignmentsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let wanted: Option<Vec<PartitionRef>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partition_indexes
                    .iter()
                    .map(|partition| PartitionRef {
                        topic: topic.name.0.to_string(),
                        partition: PartitionIndex(*partition),
                    })
            })
            .collect()
    });
    let image = broker.image();
    let listed = list_partition_reassignments(&image, wanted.as_deref());
    let brokers = |nodes: &[NodeId]| nodes.iter().map(|node| BrokerId(node.0)).collect();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for reassignment in listed {
        let partition = OngoingPartitionReassignment::default()
            .with_partition_index(reassignment.partition.partition.0)
            .with_replicas(brokers(&reassignment.replicas))
            .with_adding_replicas(brokers(&reassignment.adding_replicas))
            .with_removing_replicas(brokers(&reassignment.removing_replicas));
        match topics.last_mut() {
            Some(topic) if topic.name.0.as_str() == reassignment.partition.topic => {
                topic.partitions.push(partition);
            }
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(text(reassignment.partition.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let response = ListPartitionReassignmentsResponse::default()
        .with_error_code(0)
        .with_error_message(None)
        .with_topics(topics);
    encode(
        correlation_id,
        ApiKey::ListPartitionReassignments,
        version,
        ResponseKind::ListPartitionReassignments(response),
    )
}
