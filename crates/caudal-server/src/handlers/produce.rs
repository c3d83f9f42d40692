//! Produce (key 0). Stage one (validate and append) runs inline, in arrival order; with
//! `acks=all` stage two waits for durability (fsync, group commit) in a task while the connection
//! keeps reading. Batches stay the client's bytes: only the 61-byte header is parsed here, the log
//! checks the CRC and stamps offsets in place.

use crate::partition::Partition;
use std::sync::Arc;

use caudal_model::batch::{CompressionCodec, HEADER_BYTES};
use caudal_model::{Offset, RecordBatchHeader, TimestampMs, TopicPartition};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use caudal_storage::TimestampType;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};

use super::{encode, text};
use crate::broker::{Broker, now_ms};
use crate::connection::{Outcome, Pending};
use crate::errors::{batch_error_code, storage_error_code};

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::Produce, 3, 13);

/// The smallest a v2 record can be: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// One partition's result after stage one.
struct Appended {
    response: PartitionProduceResponse,
    /// Set when the append succeeded and `acks=all` must wait for everything below this offset
    /// of this partition to be durable.
    durable: Option<(Arc<Partition>, Offset)>,
}

fn failed(index: i32, error: ErrorCode, message: Option<String>) -> Appended {
    Appended {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(error.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(message.map(text)),
        durable: None,
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
    correlation_id: i32,
) -> Pending {
    let acks = request.acks;
    let now = now_ms();
    let request_error = if !matches!(acks, -1..=1) {
        Some((ErrorCode::InvalidRequiredAcks, None))
    } else if request.transactional_id.is_some() {
        Some((
            ErrorCode::TransactionalIdAuthorizationFailed,
            Some("transactions are not supported by this broker yet".to_string()),
        ))
    } else {
        None
    };
    let image = broker.image();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut first_error = None;
    for topic in request.topic_data {
        // From v13 topics are named by id.
        let name = if version >= 13 {
            image
                .topic_by_id(&topic.topic_id)
                .map(|found| found.name.clone())
        } else {
            Some(topic.name.0.to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let appended = match (&request_error, &name) {
                (Some((error, message)), _) => failed(data.index, *error, message.clone()),
                (None, None) => failed(data.index, ErrorCode::UnknownTopicId, None),
                (None, Some(name)) => {
                    append_one(broker, &image, name, data.index, data.records, acks, now)
                }
            };
            if appended.response.error_code != 0 && first_error.is_none() {
                first_error = Some(appended.response.error_code);
            }
            partitions.push(appended);
        }
        topics.push(((topic.name, topic.topic_id), partitions));
    }
    if acks == 0 {
        // Kafka closes the connection of an acks=0 producer whose produce failed: the only signal
        // it can get.
        return match first_error {
            Some(code) => Pending::Close(format!("acks=0 produce failed with error code {code}")),
            None => Pending::Ready(None),
        };
    }
    let waits_for_durability = topics
        .iter()
        .any(|(_, partitions)| partitions.iter().any(|appended| appended.durable.is_some()));
    if !waits_for_durability {
        return super::ready(respond(topics, version, correlation_id));
    }
    // The wait is for this broker's own fsync, which Kafka never times out; `timeout_ms` will
    // bound the wait for followers once partitions are replicated.
    Pending::Later(tokio::spawn(async move {
        let mut topics = topics;
        let waits = topics
            .iter_mut()
            .flat_map(|(_, partitions)| partitions.iter_mut())
            .filter_map(|appended| {
                let (partition, offset) = appended.durable.take()?;
                Some(async move {
                    if let Err(error) = partition.wait_durable(offset).await {
                        tracing::error!(partition = %partition.topic_partition, %error, "flush failed");
                        appended.response.error_code = storage_error_code(&error).code();
                    }
                })
            });
        futures::future::join_all(waits).await;
        respond(topics, version, correlation_id)
    }))
}

/// A topic as the request named it: by name (up to v12) and id (v13+).
type TopicKey = (kafka_protocol::messages::TopicName, uuid::Uuid);

fn respond(topics: Vec<(TopicKey, Vec<Appended>)>, version: i16, correlation_id: i32) -> Outcome {
    let response = ProduceResponse::default().with_responses(
        topics
            .into_iter()
            .map(|((name, topic_id), partitions)| {
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_partition_responses(
                        partitions
                            .into_iter()
                            .map(|appended| appended.response)
                            .collect(),
                    )
            })
            .collect(),
    );
    encode(
        correlation_id,
        ApiKey::Produce,
        version,
        ResponseKind::Produce(response),
    )
}

fn append_one(
    broker: &Arc<Broker>,
    image: &caudal_metadata::MetadataImage,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
    now: TimestampMs,
) -> Appended {
    if topic == crate::groups::OFFSETS_TOPIC {
        // Only the group coordinator writes its topic.
        return failed(
            index,
            ErrorCode::InvalidTopicException,
            Some(format!("cannot append to internal topic {topic}")),
        );
    }
    let topic_partition = TopicPartition::new(topic, index);
    let partition = match broker.partition_or_error(&topic_partition) {
        Ok(partition) => partition,
        Err(error) => return failed(index, error, None),
    };
    let Some(records) = records.filter(|records| !records.is_empty()) else {
        return failed(
            index,
            ErrorCode::InvalidRecord,
            Some("produce requests must contain exactly one record batch".into()),
        );
    };
    let header = match RecordBatchHeader::parse(&records) {
        Ok(header) => header,
        Err(error) => {
            return failed(index, batch_error_code(&error), Some(error.to_string()));
        }
    };
    if header.size_bytes() != records.len() {
        return failed(
            index,
            ErrorCode::InvalidRecord,
            Some("produce requests must contain exactly one record batch".into()),
        );
    }
    // Without decompressing, an uncompressed batch can still be held to its bytes: every record
    // takes at least 7 (six one-byte varints and the attributes byte).
    if matches!(header.compression(), Ok(CompressionCodec::None))
        && header.record_count as usize > (header.size_bytes() - HEADER_BYTES) / RECORD_BYTES_MIN
    {
        return failed(
            index,
            ErrorCode::InvalidRecord,
            Some(format!(
                "batch claims {} records in {} bytes",
                header.record_count,
                header.size_bytes()
            )),
        );
    }
    if header.is_control() {
        return failed(
            index,
            ErrorCode::InvalidRecord,
            Some("clients are not allowed to write control records".into()),
        );
    }
    if header.is_transactional() {
        return failed(
            index,
            ErrorCode::InvalidTxnState,
            Some(
                "transactional batches need a transaction; transactions are not supported yet"
                    .into(),
            ),
        );
    }
    let settings = partition.settings();
    if header.size_bytes() > settings.max_message_bytes as usize {
        return failed(
            index,
            ErrorCode::MessageTooLarge,
            Some(format!(
                "batch of {} bytes exceeds max.message.bytes {}",
                header.size_bytes(),
                settings.max_message_bytes
            )),
        );
    }
    if settings.timestamp_type == TimestampType::CreateTime {
        // A batch without timestamps (-1) is not checked, as in Kafka.
        let ahead = if header.max_timestamp.0 >= 0 {
            header.max_timestamp.0.saturating_sub(now.0)
        } else {
            0
        };
        let behind = if header.base_timestamp.0 >= 0 {
            now.0.saturating_sub(header.base_timestamp.0)
        } else {
            0
        };
        if ahead > settings.timestamp_after_max_ms || behind > settings.timestamp_before_max_ms {
            return failed(
                index,
                ErrorCode::InvalidTimestamp,
                Some("record timestamp is outside the range the topic allows".into()),
            );
        }
    }
    if acks == -1 {
        let isr = image
            .topic(topic)
            .and_then(|topic| topic.partitions.get(&topic_partition.partition))
            .map_or(0, |registration| registration.isr.len() as i32);
        if isr < settings.min_insync_replicas {
            return failed(
                index,
                ErrorCode::NotEnoughReplicas,
                Some(format!(
                    "{isr} in-sync replica(s), min.insync.replicas is {}",
                    settings.min_insync_replicas
                )),
            );
        }
    }
    match partition
        .log
        .append_as_leader(&records, partition.leader_epoch(), now)
    {
        Ok(outcome) => {
            if !outcome.duplicate {
                partition.notify_appended();
                partition.maybe_flush_for_messages();
            }
            let durable = (acks == -1 && broker.config.acks_all_fsync)
                .then(|| (partition.clone(), outcome.last_offset.next()));
            Appended {
                response: PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(0)
                    .with_base_offset(outcome.first_offset.0)
                    .with_log_append_time_ms(outcome.log_append_time.map_or(-1, |time| time.0))
                    .with_log_start_offset(outcome.log_start_offset.0),
                durable,
            }
        }
        Err(error) => {
            let code = storage_error_code(&error);
            if code == ErrorCode::KafkaStorageError {
                tracing::error!(partition = %topic_partition, %error, "append failed");
            } else {
                tracing::debug!(partition = %topic_partition, %error, "append rejected");
            }
            failed(index, code, Some(error.to_string()))
        }
    }
}
