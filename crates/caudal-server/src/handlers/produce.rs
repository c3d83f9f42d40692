//! Produce (key 0). Stage one (validate and append) runs inline, in arrival order; with
//! `acks=all` stage two waits in a task while the connection keeps reading: for the local fsync
//! (group commit, `caudal.acks.all.fsync`) and for the ISR (the high watermark passing the
//! records, bounded by the request's `timeout_ms`). Batches stay the client's bytes: only the
//! 61-byte header is parsed here, the log checks the CRC and stamps offsets in place.

use crate::partition::{LeaderAppendError, Partition, ReplicationWait};
use std::sync::Arc;

use caudal_model::batch::{CompressionCodec, HEADER_BYTES};
use caudal_model::{Offset, PartitionIndex, RecordBatchHeader, TimestampMs, TopicPartition};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use caudal_storage::TimestampType;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest};

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
    /// Set when the append succeeded with `acks=all`: what the response waits for.
    wait: Option<AcksAllWait>,
}

/// What an `acks=all` partition response waits for.
struct AcksAllWait {
    partition: Arc<Partition>,
    /// With `caudal.acks.all.fsync`: everything below this offset must be fsynced locally.
    durable: Option<Offset>,
    /// The ISR must have the records.
    replicated: Option<ReplicationWait>,
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
        wait: None,
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
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(request.timeout_ms.max(0) as u64);
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
                    let mut appended =
                        append_one(broker, name, data.index, data.records, acks, deadline, now);
                    if appended.response.error_code == ErrorCode::NotLeaderOrFollower.code()
                        && version >= 10
                        && let Some(registration) = image
                            .topic(name)
                            .and_then(|topic| topic.partitions.get(&PartitionIndex(data.index)))
                    {
                        // KIP-951: the leader the image names, so the client need not wait for
                        // a metadata refresh.
                        appended.response.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(registration.leader.0))
                            .with_leader_epoch(registration.leader_epoch.0);
                    }
                    appended
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
    let waits = topics
        .iter()
        .any(|(_, partitions)| partitions.iter().any(|appended| appended.wait.is_some()));
    if !waits {
        return super::ready(respond(topics, version, correlation_id));
    }
    Pending::Later(tokio::spawn(async move {
        let mut topics = topics;
        let waits = topics
            .iter_mut()
            .flat_map(|(_, partitions)| partitions.iter_mut())
            .filter_map(|appended| {
                let wait = appended.wait.take()?;
                Some(async move {
                    if let Some(error) = wait_acks_all(wait).await {
                        appended.response.error_code = error.code();
                    }
                })
            });
        futures::future::join_all(waits).await;
        respond(topics, version, correlation_id)
    }))
}

/// Waits for an `acks=all` append: the local fsync (which Kafka never times out), then the ISR
/// (bounded by the request's `timeout_ms`). The error to answer with, if any.
async fn wait_acks_all(wait: AcksAllWait) -> Option<ErrorCode> {
    let AcksAllWait {
        partition,
        durable,
        replicated,
    } = wait;
    if let Some(offset) = durable
        && let Err(error) = partition.wait_durable(offset).await
    {
        tracing::error!(partition = %partition.topic_partition, %error, "flush failed");
        return Some(storage_error_code(&error));
    }
    match replicated?.wait().await {
        Ok(()) => None,
        Err(error) => Some(crate::replication::protocol_error(error)),
    }
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
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
    deadline: tokio::time::Instant,
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
    let acks_all = (acks == -1).then(|| (settings.min_insync_replicas.max(1) as usize, deadline));
    match partition.append_as_leader(&records, acks_all, now) {
        Ok((outcome, replicated)) => {
            let wait = (acks == -1).then(|| AcksAllWait {
                partition: partition.clone(),
                durable: broker
                    .config
                    .acks_all_fsync
                    .then(|| outcome.last_offset.next()),
                replicated,
            });
            Appended {
                response: PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(0)
                    .with_base_offset(outcome.first_offset.0)
                    .with_log_append_time_ms(outcome.log_append_time.map_or(-1, |time| time.0))
                    .with_log_start_offset(outcome.log_start_offset.0),
                wait,
            }
        }
        Err(LeaderAppendError::Replica(error)) => {
            let code = crate::replication::protocol_error(error);
            let message = (code == ErrorCode::NotEnoughReplicas).then(|| {
                format!(
                    "the in-sync replicas are fewer than min.insync.replicas {}",
                    settings.min_insync_replicas
                )
            });
            failed(index, code, message)
        }
        Err(LeaderAppendError::Storage(error)) => {
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
