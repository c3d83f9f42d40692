//! OffsetCommit (key 8): stores a group's consumed positions. Partitions that do not exist are
//! answered UNKNOWN_TOPIC_OR_PARTITION here and never reach the coordinator; the rest are
//! written to `__consumer_offsets` and acknowledged once durable.

use std::collections::HashMap;
use std::sync::Arc;

use caudal_coordinator::{
    ErrorCode as GroupError, GenerationId, OffsetCommitPartition, OffsetCommitTopic, ResponseBody,
};
use caudal_metadata::MetadataImage;
use caudal_model::{LeaderEpoch, Offset, PartitionIndex};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::OffsetCommit, 2, 9);

/// Per-partition errors of a group request, by (topic, partition).
pub type PartitionErrors = HashMap<(String, i32), GroupError>;

/// The partitions of a request that exist, mapped by `keep`, topic by topic (topics left empty
/// are dropped); the others get UNKNOWN_TOPIC_OR_PARTITION in `errors` and never reach the
/// coordinator, as in Kafka.
pub fn known_partitions<'a, P: 'a, T>(
    image: &MetadataImage,
    topics: impl Iterator<Item = (&'a str, &'a [P])>,
    index: impl Fn(&P) -> i32,
    keep: impl Fn(&P) -> T,
    errors: &mut PartitionErrors,
) -> Vec<(String, Vec<T>)> {
    let mut known = Vec::new();
    for (name, partitions) in topics {
        let topic = image.topic(name);
        let mut kept = Vec::new();
        for partition in partitions {
            let partition_index = index(partition);
            if topic.is_some_and(|topic| {
                topic
                    .partitions
                    .contains_key(&PartitionIndex(partition_index))
            }) {
                kept.push(keep(partition));
            } else {
                errors.insert(
                    (name.to_string(), partition_index),
                    GroupError::UnknownTopicOrPartition,
                );
            }
        }
        if !kept.is_empty() {
            known.push((name.to_string(), kept));
        }
    }
    known
}

/// Adds the coordinator's per-partition answers to `errors`.
pub fn record_errors(
    errors: &mut PartitionErrors,
    answered: Vec<(String, Vec<(PartitionIndex, GroupError)>)>,
) {
    for (topic, partitions) in answered {
        for (partition, error) in partitions {
            errors.insert((topic.clone(), partition.0), error);
        }
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    request: OffsetCommitRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let image = broker.image();
    let mut errors = PartitionErrors::new();
    let topics: Vec<OffsetCommitTopic> = known_partitions(
        &image,
        request
            .topics
            .iter()
            .map(|topic| (topic.name.0.as_str(), topic.partitions.as_slice())),
        |partition| partition.partition_index,
        |partition| OffsetCommitPartition {
            partition: PartitionIndex(partition.partition_index),
            committed_offset: Offset(partition.committed_offset),
            committed_leader_epoch: if version >= 6 {
                LeaderEpoch(partition.committed_leader_epoch)
            } else {
                LeaderEpoch::UNKNOWN
            },
            committed_metadata: partition
                .committed_metadata
                .as_ref()
                .map(|metadata| metadata.to_string()),
        },
        &mut errors,
    )
    .into_iter()
    .map(|(name, partitions)| OffsetCommitTopic { name, partitions })
    .collect();
    if !topics.is_empty() {
        let commit = caudal_coordinator::OffsetCommitRequest {
            group_id: group_id.clone(),
            generation_id: GenerationId(request.generation_id_or_member_epoch),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
            retention_time_ms: if version <= 4 {
                request.retention_time_ms
            } else {
                -1
            },
            topics: topics.clone(),
        };
        match broker
            .groups
            .call(&image, &group_id, Call::OffsetCommit(commit))
            .await
        {
            Ok(ResponseBody::OffsetCommit(response)) => record_errors(&mut errors, response.topics),
            other => {
                let error = match other {
                    Err(error) => error,
                    Ok(other) => {
                        tracing::error!(
                            ?other,
                            "group coordinator answered OffsetCommit with another response"
                        );
                        GroupError::UnknownServerError
                    }
                };
                for topic in &topics {
                    for partition in &topic.partitions {
                        errors.insert((topic.name.clone(), partition.partition.0), error);
                    }
                }
            }
        }
    }
    let response = OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                let error = errors
                                    .get(&(name.clone(), partition.partition_index))
                                    .copied()
                                    .unwrap_or(GroupError::UnknownServerError);
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(error.code())
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode(
        correlation_id,
        ApiKey::OffsetCommit,
        version,
        ResponseKind::OffsetCommit(response),
    )
}
