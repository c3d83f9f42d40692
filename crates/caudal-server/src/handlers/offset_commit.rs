//! OffsetCommit (key 8): stores a group's consumed positions. Partitions that do not exist are
//! answered UNKNOWN_TOPIC_OR_PARTITION here and never reach the coordinator; the rest are
//! written to `__consumer_offsets` and acknowledged once durable.

use std::collections::HashMap;
use std::sync::Arc;

use caudal_coordinator::{
    ErrorCode as GroupError, GenerationId, OffsetCommitPartition, OffsetCommitTopic, ResponseBody,
};
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

pub async fn handle(
    broker: Arc<Broker>,
    request: OffsetCommitRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let image = broker.image();
    // Errors decided here, by (topic, partition).
    let mut errors: HashMap<(String, i32), GroupError> = HashMap::new();
    let mut topics = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = image.topic(&name);
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            let exists = known.is_some_and(|known| {
                known
                    .partitions
                    .contains_key(&PartitionIndex(partition.partition_index))
            });
            if !exists {
                errors.insert(
                    (name.clone(), partition.partition_index),
                    GroupError::UnknownTopicOrPartition,
                );
                continue;
            }
            partitions.push(OffsetCommitPartition {
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
            });
        }
        if !partitions.is_empty() {
            topics.push(OffsetCommitTopic { name, partitions });
        }
    }
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
            Ok(ResponseBody::OffsetCommit(response)) => {
                for (topic, partitions) in response.topics {
                    for (partition, error) in partitions {
                        errors.insert((topic.clone(), partition.0), error);
                    }
                }
            }
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
