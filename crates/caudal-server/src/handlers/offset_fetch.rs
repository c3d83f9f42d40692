//! OffsetFetch (key 9): a group's committed offsets, for the listed partitions or all of them.
//! v8+ asks for several groups at once; each is answered by its own coordinator shard.

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, OffsetFetchResponse as GroupOffsets};
use caudal_model::PartitionIndex;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::{Answer, Query};

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::OffsetFetch, 1, 9);

type TopicList = Option<Vec<(String, Vec<PartitionIndex>)>>;

/// The committed offsets as the response's topics. v8+ (several groups) and older versions use
/// two struct types with the same fields, hence a macro rather than a function.
macro_rules! wire_topics {
    ($topic:ident, $partition:ident, $topics:expr) => {
        $topics
            .into_iter()
            .map(|(name, partitions)| {
                $topic::default()
                    .with_name(TopicName(text(name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|partition| {
                                $partition::default()
                                    .with_partition_index(partition.partition.0)
                                    .with_committed_offset(partition.committed_offset.0)
                                    .with_committed_leader_epoch(partition.committed_leader_epoch.0)
                                    .with_metadata(Some(text(partition.metadata)))
                                    .with_error_code(partition.error.code())
                            })
                            .collect(),
                    )
            })
            .collect()
    };
}

pub async fn handle(
    broker: Arc<Broker>,
    request: OffsetFetchRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let response = if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in &request.groups {
            let topics: TopicList = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|topic| topic_entry(&topic.name, &topic.partition_indexes))
                    .collect()
            });
            let fetched = fetch(&broker, &group.group_id.0, topics, request.require_stable).await;
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(fetched.error.code())
                    .with_topics(wire_topics!(
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions,
                        fetched.topics
                    )),
            );
        }
        OffsetFetchResponse::default().with_groups(groups)
    } else {
        let topics: TopicList = request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|topic| topic_entry(&topic.name, &topic.partition_indexes))
                .collect()
        });
        let mut fetched = fetch(
            &broker,
            &request.group_id.0,
            topics.clone(),
            request.require_stable,
        )
        .await;
        if version < 2 && fetched.error != GroupError::None {
            // v1 has no top-level error: every requested partition carries it.
            let error = fetched.error;
            fetched.topics = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    (
                        name,
                        partitions
                            .into_iter()
                            .map(|partition| caudal_coordinator::OffsetFetchPartition {
                                partition,
                                committed_offset: caudal_model::Offset(-1),
                                committed_leader_epoch: caudal_model::LeaderEpoch::UNKNOWN,
                                metadata: String::new(),
                                error,
                            })
                            .collect(),
                    )
                })
                .collect();
        }
        OffsetFetchResponse::default()
            .with_error_code(fetched.error.code())
            .with_topics(wire_topics!(
                OffsetFetchResponseTopic,
                OffsetFetchResponsePartition,
                fetched.topics
            ))
    };
    encode(
        correlation_id,
        ApiKey::OffsetFetch,
        version,
        ResponseKind::OffsetFetch(response),
    )
}

fn topic_entry(name: &TopicName, partitions: &[i32]) -> (String, Vec<PartitionIndex>) {
    (
        name.0.to_string(),
        partitions.iter().copied().map(PartitionIndex).collect(),
    )
}

async fn fetch(
    broker: &Arc<Broker>,
    group_id: &str,
    topics: TopicList,
    require_stable: bool,
) -> GroupOffsets {
    let image = broker.image();
    let query = Query::OffsetFetch(caudal_coordinator::OffsetFetchRequest {
        group_id: group_id.to_owned(),
        topics,
        require_stable,
    });
    match broker.groups.query(&image, group_id, query).await {
        Ok(Answer::OffsetFetch(response)) => response,
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered OffsetFetch with another answer"
            );
            GroupOffsets {
                error: GroupError::UnknownServerError,
                topics: Vec::new(),
            }
        }
        Err(error) => GroupOffsets {
            error,
            topics: Vec::new(),
        },
    }
}
