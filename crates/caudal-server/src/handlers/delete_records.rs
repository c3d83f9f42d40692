//! DeleteRecords (key 21): moves partitions' log start offsets forward (`kafka-delete-records`).
//! Offset -1 means the high watermark. Segments wholly below the new start are deleted by the
//! next retention run; reads below it get OFFSET_OUT_OF_RANGE at once.

use std::sync::Arc;

use caudal_model::{Offset, TopicPartition};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::storage_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DeleteRecords, 0, 2);

pub async fn handle(
    broker: Arc<Broker>,
    request: DeleteRecordsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    // The log start offset checkpoint is fsynced: off the async workers.
    let joined = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        let (low_watermark, error) =
                            delete(&broker, &name, partition.partition_index, partition.offset);
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(partition.partition_index)
                            .with_low_watermark(low_watermark)
                            .with_error_code(error)
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let topics = match joined {
        Ok(topics) => topics,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    };
    encode(
        correlation_id,
        ApiKey::DeleteRecords,
        version,
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics)),
    )
}

/// One partition: the new low watermark and error code 0, or -1 and the error's code.
fn delete(broker: &Broker, topic: &str, index: i32, offset: i64) -> (i64, i16) {
    if offset < -1 {
        return (-1, ErrorCode::OffsetOutOfRange.code());
    }
    let partition = match broker.partition_or_error(&TopicPartition::new(topic, index)) {
        Ok(partition) => partition,
        Err(error) => return (-1, error.code()),
    };
    match partition
        .log
        .delete_records_before(Offset(offset), partition.high_watermark())
    {
        Ok(low_watermark) => {
            tracing::info!(
                partition = %partition.topic_partition, low_watermark = low_watermark.0,
                "records deleted"
            );
            (low_watermark.0, 0)
        }
        Err(error) => (-1, storage_error_code(&error).code()),
    }
}
