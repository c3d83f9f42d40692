//! OffsetDelete (key 47): removes a group's committed offsets for topics it no longer consumes.
//! Partitions that do not exist are answered UNKNOWN_TOPIC_OR_PARTITION here.

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, ResponseBody};
use caudal_model::PartitionIndex;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::encode;
use super::offset_commit::{PartitionErrors, known_partitions, record_errors};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::OffsetDelete, 0, 0);

pub async fn handle(
    broker: Arc<Broker>,
    request: OffsetDeleteRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let image = broker.image();
    let mut errors = PartitionErrors::new();
    let topics = known_partitions(
        &image,
        request
            .topics
            .iter()
            .map(|topic| (topic.name.0.as_str(), topic.partitions.as_slice())),
        |partition| partition.partition_index,
        |partition| PartitionIndex(partition.partition_index),
        &mut errors,
    );
    let call = Call::OffsetDelete {
        group_id: group_id.clone(),
        topics,
    };
    let top_level = match broker.groups.call(&image, &group_id, call).await {
        Ok(ResponseBody::OffsetDelete(response)) => {
            record_errors(&mut errors, response.topics);
            response.error
        }
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered OffsetDelete unexpectedly"
            );
            GroupError::UnknownServerError
        }
        Err(error) => error,
    };
    let response = if top_level != GroupError::None {
        OffsetDeleteResponse::default().with_error_code(top_level.code())
    } else {
        OffsetDeleteResponse::default().with_topics(
            request
                .topics
                .iter()
                .map(|topic| {
                    let name = topic.name.0.to_string();
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|partition| {
                                    let error = errors
                                        .get(&(name.clone(), partition.partition_index))
                                        .copied()
                                        .unwrap_or(GroupError::None);
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(partition.partition_index)
                                        .with_error_code(error.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    encode(
        correlation_id,
        ApiKey::OffsetDelete,
        version,
        ResponseKind::OffsetDelete(response),
    )
}
