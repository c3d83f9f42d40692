//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), and
//! the first record at or after a timestamp. The log finds the batch through its time index; the
//! exact record inside it is found here by decoding that one batch. Latest is the high
//! watermark for clients (OFFSET_NOT_AVAILABLE while a new leader's is below its epoch start,
//! KIP-207) and the log end offset for a follower (`replica_id ≥ 0`).

use std::sync::Arc;

use bytes::Bytes;
use caudal_model::{
    LeaderEpoch, Offset, PartitionIndex, RecordBatchHeader, TimestampMs, TopicPartition,
};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::records::decode_batches;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::storage_error_code;
use crate::partition::Partition;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::ListOffsets, 1, 8);

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let read_committed = version >= 2 && request.isolation_level == READ_COMMITTED;
    // A follower resolving an out-of-range fetch asks for the leader's log end offset.
    let from_replica = request.replica_id.0 >= 0;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|requested| {
                    let index = requested.partition_index;
                    let response =
                        ListOffsetsPartitionResponse::default().with_partition_index(index);
                    let partition = match broker
                        .partition_or_error(&TopicPartition::new(name.clone(), index))
                    {
                        Ok(partition) => partition,
                        Err(error) => return failed(response, error),
                    };
                    let current_leader_epoch = (requested.current_leader_epoch >= 0)
                        .then_some(LeaderEpoch(requested.current_leader_epoch));
                    if let Err(error) = partition.check_leader_epoch(current_leader_epoch) {
                        return failed(response, crate::replication::protocol_error(error));
                    }
                    match lookup(
                        &partition,
                        requested.timestamp,
                        read_committed,
                        from_replica,
                    ) {
                        Ok(found) => response
                            .with_error_code(0)
                            .with_timestamp(found.timestamp.0)
                            .with_offset(found.offset.0)
                            // The leader epoch field exists from v4.
                            .with_leader_epoch(if version >= 4 {
                                found.leader_epoch.0
                            } else {
                                -1
                            }),
                        Err(code) => failed(response, code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = ListOffsetsResponse::default().with_topics(topics);
    encode(
        correlation_id,
        ApiKey::ListOffsets,
        version,
        ResponseKind::ListOffsets(response),
    )
}

fn failed(
    response: ListOffsetsPartitionResponse,
    error: ErrorCode,
) -> ListOffsetsPartitionResponse {
    response
        .with_error_code(error.code())
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

struct Found {
    timestamp: TimestampMs,
    offset: Offset,
    leader_epoch: LeaderEpoch,
}

const NOT_FOUND: Found = Found {
    timestamp: TimestampMs(-1),
    offset: Offset(-1),
    leader_epoch: LeaderEpoch(-1),
};

fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
    from_replica: bool,
) -> Result<Found, ErrorCode> {
    let log = &partition.log;
    // As Kafka: the current leader epoch for the latest offset, the epoch of the log start offset
    // for the earliest.
    let leader_epoch = partition.leader_epoch();
    let log_start_offset = log.log_start_offset();
    let log_start_epoch = log
        .leader_epoch_entries()
        .into_iter()
        .take_while(|(_, start_offset)| *start_offset <= log_start_offset)
        .last()
        .map_or(LeaderEpoch::UNKNOWN, |(epoch, _)| epoch);
    let visible_end = if read_committed {
        partition.last_stable_offset()
    } else {
        partition.high_watermark()
    };
    match timestamp {
        LATEST_TIMESTAMP if from_replica => Ok(Found {
            timestamp: TimestampMs(-1),
            offset: log.log_end_offset(),
            leader_epoch,
        }),
        // KIP-207: a new leader answers OFFSET_NOT_AVAILABLE until its high watermark reaches
        // the start of its epoch, so the latest offset never goes backwards.
        LATEST_TIMESTAMP => {
            let high_watermark = partition
                .latest_offset_for_client()
                .map_err(crate::replication::protocol_error)?;
            Ok(Found {
                timestamp: TimestampMs(-1),
                offset: visible_end.min(high_watermark),
                leader_epoch,
            })
        }
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Ok(Found {
            timestamp: TimestampMs(-1),
            offset: log_start_offset,
            leader_epoch: log_start_epoch,
        }),
        MAX_TIMESTAMP => {
            let batch = log
                .batch_with_max_timestamp()
                .map_err(|error| storage_error_code(&error))?;
            Ok(batch
                .and_then(|batch| record_with_max_timestamp(batch, visible_end))
                .unwrap_or(NOT_FOUND))
        }
        target => {
            let batch = log
                .find_batch_by_timestamp(TimestampMs(target))
                .map_err(|error| storage_error_code(&error))?;
            Ok(batch
                .and_then(|batch| first_record_at_or_after(batch, TimestampMs(target), visible_end))
                .unwrap_or(NOT_FOUND))
        }
    }
}

/// The most a stored batch may decompress to while its records are searched. Producers control
/// what batches contain, so the limit keeps a compression bomb from exhausting memory.
const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 << 20;

/// Decodes one stored batch into (offset, timestamp) pairs, `LogAppendTime` applied. A batch that
/// does not decode within the limit is answered by its base offset and max timestamp: a consumer
/// told to start there reads at most one batch too early.
fn record_times(batch: Bytes) -> Option<(RecordBatchHeader, Vec<(Offset, TimestampMs)>)> {
    let header = RecordBatchHeader::parse(&batch).ok()?;
    match decode_batches(
        PartitionIndex(0),
        batch,
        Offset(0),
        DECOMPRESSED_BATCH_BYTES_MAX,
    ) {
        Ok(decoded) => {
            let times = decoded
                .records
                .iter()
                .map(|record| (record.offset, record.timestamp))
                .collect();
            Some((header, times))
        }
        Err(error) => {
            tracing::warn!(%error, "stored batch not searchable record by record; answering with its first offset");
            Some((header, vec![(header.base_offset, header.max_timestamp)]))
        }
    }
}

fn first_record_at_or_after(
    batch: Bytes,
    target: TimestampMs,
    visible_end: Offset,
) -> Option<Found> {
    let (header, times) = record_times(batch)?;
    times
        .into_iter()
        .find(|(offset, timestamp)| *timestamp >= target && *offset < visible_end)
        .map(|(offset, timestamp)| Found {
            timestamp,
            offset,
            leader_epoch: header.partition_leader_epoch,
        })
}

fn record_with_max_timestamp(batch: Bytes, visible_end: Offset) -> Option<Found> {
    let (header, times) = record_times(batch)?;
    let mut best: Option<(Offset, TimestampMs)> = None;
    for (offset, timestamp) in times {
        if offset >= visible_end {
            break;
        }
        if best.is_none_or(|(_, max)| timestamp > max) {
            best = Some((offset, timestamp));
        }
    }
    best.map(|(offset, timestamp)| Found {
        timestamp,
        offset,
        leader_epoch: header.partition_leader_epoch,
    })
}
