//! AlterPartitionReassignments (key 45, KIP-455): move a partition's replicas to a target list,
//! or cancel the reassignment in progress (a null replica list), decided by the controller
//! (`kafka-reassign-partitions.sh --execute` / `--cancel`).
//!
//! Each partition gets its own error: UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT
//! (empty, duplicate or unregistered replicas), NO_REASSIGNMENT_IN_PROGRESS (cancel with none),
//! and from v1, when `allow_replication_factor_change` is false (KIP-860),
//! INVALID_REPLICATION_FACTOR for a target whose size differs from the replication factor the
//! partition has (or is heading to).

use std::collections::BTreeSet;
use std::sync::Arc;

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::replication::{PartitionRef, ReassignmentRequest};
use caudal_metadata::MetadataImage;
use caudal_model::{NodeId, PartitionIndex};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::error_response::error_response;
use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::submit_expecting;
use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange =
    ApiVersionRange::new(ApiKey::AlterPartitionReassignments, 0, 1);

/// One requested partition's answer: an error code and message, or `None` while it waits for
/// the controller.
type Answer = Option<(i16, Option<StrBytes>)>;

pub async fn handle(
    broker: Arc<Broker>,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    // v0 has no flag and always allows a replication factor change.
    let allow_replication_factor_change = version < 1 || request.allow_replication_factor_change;
    let image = broker.image();
    let mut answers: Vec<Answer> = Vec::new();
    let mut submitted = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let target: Option<Vec<NodeId>> = partition
                .replicas
                .as_ref()
                .map(|replicas| replicas.iter().map(|id| NodeId(id.0)).collect());
            let reference = PartitionRef {
                topic: topic.name.0.to_string(),
                partition: PartitionIndex(partition.partition_index),
            };
            if !allow_replication_factor_change
                && let Some(target) = &target
                && let Some(message) = replication_factor_change(&image, &reference, target)
            {
                answers.push(Some((
                    ErrorCode::InvalidReplicationFactor.code(),
                    Some(text(message)),
                )));
                continue;
            }
            answers.push(None);
            submitted.push(ReassignmentRequest {
                partition: reference,
                replicas: target,
            });
        }
    }
    if !submitted.is_empty() {
        let command = Command::AlterPartitionReassignments {
            reassignments: submitted.clone(),
        };
        let taken = submit_expecting(
            &broker,
            command,
            "partition reassignment",
            |reply| match reply {
                CommandReply::AlterPartitionReassignments(results) => Ok(results),
                other => Err(other),
            },
        )
        .await;
        let results = match taken {
            Ok(results) => results,
            Err(code) => return refuse(request, version, correlation_id, code),
        };
        // The controller answers the submitted entries one by one, in order.
        let mut results = results.into_iter();
        let mut submitted = submitted.iter();
        for answer in answers.iter_mut().filter(|answer| answer.is_none()) {
            let sent = submitted.next();
            *answer = Some(match results.next() {
                Some(result) if Some(&result.partition) == sent.map(|s| &s.partition) => {
                    match result.result {
                        Ok(()) => {
                            if let Some(sent) = sent {
                                tracing::info!(
                                    topic = %sent.partition.topic,
                                    partition = sent.partition.partition.0,
                                    target = ?sent.replicas,
                                    "partition reassignment changed"
                                );
                            }
                            (0, None)
                        }
                        Err(error) => (error.code(), Some(text(error.to_string()))),
                    }
                }
                _ => (
                    ErrorCode::UnknownServerError.code(),
                    Some(text("the controller gave no result")),
                ),
            });
        }
    }
    let mut answers = answers.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let (code, message) = answers.next().flatten().unwrap_or((
                        ErrorCode::UnknownServerError.code(),
                        Some(text("no result")),
                    ));
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut response = AlterPartitionReassignmentsResponse::default()
        .with_error_code(0)
        .with_error_message(None)
        .with_responses(responses);
    if version >= 1 {
        response.allow_replication_factor_change = request.allow_replication_factor_change;
    }
    encode(
        correlation_id,
        ApiKey::AlterPartitionReassignments,
        version,
        ResponseKind::AlterPartitionReassignments(response),
    )
}

/// Kafka's message when `target` would change the partition's replication factor: the size of
/// the replicas it has, or is heading to while a reassignment is in progress, against the
/// target's. `None` when the size is the same, or when the target or the partition is invalid
/// anyway (the controller answers those with their own error first, as Kafka checks them
/// first).
fn replication_factor_change(
    image: &MetadataImage,
    partition: &PartitionRef,
    target: &[NodeId],
) -> Option<String> {
    let registration = image
        .topic(&partition.topic)?
        .partitions
        .get(&partition.partition)?;
    let unique: BTreeSet<&NodeId> = target.iter().collect();
    if target.is_empty()
        || unique.len() != target.len()
        || target.iter().any(|node| !image.brokers.contains_key(node))
    {
        return None;
    }
    let current = registration.target_replicas().len();
    (current != target.len()).then(|| {
        format!(
            "The replication factor is changed from {current} to {}",
            target.len()
        )
    })
}

/// The whole request refused with `code`, at the top level and on every partition.
fn refuse(
    request: AlterPartitionReassignmentsRequest,
    version: i16,
    correlation_id: i32,
    code: ErrorCode,
) -> Outcome {
    match error_response(
        &RequestKind::AlterPartitionReassignments(request),
        version,
        code,
    ) {
        Some(body) => encode(
            correlation_id,
            ApiKey::AlterPartitionReassignments,
            version,
            body,
        ),
        None => Err("AlterPartitionReassignments has no error response".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_metadata::MetadataRecord;
    use caudal_model::LeaderEpoch;
    use uuid::Uuid;

    /// Brokers 1..=3; topic "t" partition 0 on `replicas`, reassigning (`adding`, `removing`).
    fn image(replicas: &[i32], adding: &[i32], removing: &[i32]) -> MetadataImage {
        let nodes = |ids: &[i32]| ids.iter().copied().map(NodeId).collect::<Vec<_>>();
        let topic_id = Uuid::from_u128(7);
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        }];
        for id in 1..=3 {
            records.push(MetadataRecord::RegisterBroker {
                node_id: NodeId(id),
                host: "h".into(),
                port: 9000,
                rack: None,
            });
        }
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionIndex(0),
            replicas: nodes(replicas),
            isr: nodes(replicas),
            leader: NodeId(replicas[0]),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
        });
        if !adding.is_empty() || !removing.is_empty() {
            records.push(MetadataRecord::PartitionReassignment {
                topic_id,
                partition: PartitionIndex(0),
                adding_replicas: nodes(adding),
                removing_replicas: nodes(removing),
            });
        }
        records
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            })
    }

    fn check(image: &MetadataImage, topic: &str, target: &[i32]) -> Option<String> {
        let partition = PartitionRef {
            topic: topic.into(),
            partition: PartitionIndex(0),
        };
        let target: Vec<NodeId> = target.iter().copied().map(NodeId).collect();
        replication_factor_change(image, &partition, &target)
    }

    #[test]
    fn a_replication_factor_change_is_named_with_kafkas_message() {
        let plain = image(&[1, 2], &[], &[]);
        assert_eq!(check(&plain, "t", &[2, 3]), None);
        assert_eq!(
            check(&plain, "t", &[1, 2, 3]).as_deref(),
            Some("The replication factor is changed from 2 to 3")
        );
        // While reassigning from [1,2] to [2,3] the partition is heading to two replicas.
        let moving = image(&[2, 3, 1], &[3], &[1]);
        assert_eq!(check(&moving, "t", &[3, 1]), None);
        assert_eq!(
            check(&moving, "t", &[3]).as_deref(),
            Some("The replication factor is changed from 2 to 1")
        );
        // Invalid targets and unknown partitions get the controller's own error instead.
        assert_eq!(check(&plain, "t", &[]), None);
        assert_eq!(check(&plain, "t", &[1, 1, 2]), None);
        assert_eq!(check(&plain, "t", &[1, 2, 9]), None);
        assert_eq!(check(&plain, "other", &[1, 2, 3]), None);
    }
}
