//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, from the log's epoch cache.
//! Consumers use it to detect log truncation after a leader change; followers to truncate.

use std::sync::Arc;

use caudal_model::{LeaderEpoch, TopicPartition};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::OffsetForLeaderEpoch, 2, 4);

pub fn handle(
    broker: &Arc<Broker>,
    request: &OffsetForLeaderEpochRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let response = EpochEndOffset::default().with_partition(requested.partition);
                    let failed = |error: ErrorCode| {
                        response
                            .clone()
                            .with_error_code(error.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    };
                    let topic_partition =
                        TopicPartition::new(topic.topic.0.to_string(), requested.partition);
                    let partition = match broker.partition_or_error(&topic_partition) {
                        Ok(partition) => partition,
                        Err(error) => return failed(error),
                    };
                    let leader_epoch = partition.leader_epoch();
                    if requested.current_leader_epoch >= 0 {
                        if requested.current_leader_epoch < leader_epoch.0 {
                            return failed(ErrorCode::FencedLeaderEpoch);
                        }
                        if requested.current_leader_epoch > leader_epoch.0 {
                            return failed(ErrorCode::UnknownLeaderEpoch);
                        }
                    }
                    match partition
                        .log
                        .end_offset_for_epoch(LeaderEpoch(requested.leader_epoch))
                    {
                        Some((epoch, end_offset)) => response
                            .with_error_code(0)
                            .with_leader_epoch(epoch.0)
                            .with_end_offset(end_offset.0),
                        None => response
                            .with_error_code(0)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    encode(
        correlation_id,
        ApiKey::OffsetForLeaderEpoch,
        version,
        ResponseKind::OffsetForLeaderEpoch(response),
    )
}
