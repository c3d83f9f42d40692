//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, from the leader's epoch
//! cache, after the leader state's epoch check. Consumers use it to detect log truncation after a
//! leader change; followers (`replica_id ≥ 0`, answered the same way) to truncate.

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
                    let current_leader_epoch = (requested.current_leader_epoch >= 0)
                        .then_some(LeaderEpoch(requested.current_leader_epoch));
                    match partition.offset_for_leader_epoch(
                        current_leader_epoch,
                        LeaderEpoch(requested.leader_epoch),
                    ) {
                        Ok(answer) => response
                            .with_error_code(0)
                            .with_leader_epoch(answer.leader_epoch.0)
                            .with_end_offset(answer.end_offset.0),
                        Err(error) => failed(crate::replication::protocol_error(error)),
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
