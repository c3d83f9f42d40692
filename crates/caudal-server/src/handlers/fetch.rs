//! Fetch (key 1): reads whole batches from partition logs up to the high watermark (or the last
//! stable offset for `read_committed`), long-polling until `min_bytes` are available or `max_wait_ms`
//! passes. Waits are woken by appends and high-watermark advances of the partitions named.
//!
//! A fetch from a follower (`replica_id ≥ 0`, from v15 `replica_state.replica_id`) goes to the
//! leader state first (`Partition::on_follower_fetch`: progress, ISR expansion, high watermark,
//! diverging epoch) and reads up to the log end offset.
//!
//! Fetch sessions (KIP-227) are never created: the response's session id is 0, which tells
//! clients to keep sending full fetch requests. A request naming a session we never created gets
//! FETCH_SESSION_ID_NOT_FOUND, which clients answer by starting over without one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use caudal_metadata::MetadataImage;
use caudal_model::{LeaderEpoch, NodeId, Offset, PartitionIndex, TopicPartition};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use caudal_replica::{FetchRead, FollowerFetch};
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::encode;
use crate::broker::{Broker, now_ms};
use crate::connection::Outcome;
use crate::errors::storage_error_code;
use crate::partition::Partition;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::Fetch, 4, 18);

/// `isolation_level` = READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// One requested partition, resolved against the image.
struct Target {
    topic_index: usize,
    topic_name: Option<String>,
    partition_index: i32,
    partition: Result<Arc<Partition>, ErrorCode>,
    fetch_offset: Offset,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    partition_max_bytes: usize,
}

/// Who sent the fetch.
#[derive(Clone, Copy)]
enum Fetcher {
    Consumer,
    Follower(NodeId),
}

pub async fn handle(
    broker: Arc<Broker>,
    request: FetchRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    if version >= 7 && request.session_id != 0 {
        let response = FetchResponse::default()
            .with_error_code(ErrorCode::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return encode(
            correlation_id,
            ApiKey::Fetch,
            version,
            ResponseKind::Fetch(response),
        );
    }
    let image = broker.image();
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let fetcher = if replica_id >= 0 {
        Fetcher::Follower(NodeId(replica_id))
    } else {
        Fetcher::Consumer
    };
    let uses_topic_ids = version >= 13;
    let mut topics: Vec<(TopicName, Uuid)> = Vec::with_capacity(request.topics.len());
    let mut targets = Vec::new();
    for topic in &request.topics {
        let (name, topic_error) = if uses_topic_ids {
            match image.topic_by_id(&topic.topic_id) {
                Some(found) => (Some(found.name.clone()), None),
                None => (None, Some(ErrorCode::UnknownTopicId)),
            }
        } else {
            (Some(topic.topic.0.to_string()), None)
        };
        let topic_index = topics.len();
        topics.push((topic.topic.clone(), topic.topic_id));
        for fetch in &topic.partitions {
            let partition = match (&name, topic_error) {
                (_, Some(error)) => Err(error),
                (Some(name), None) => {
                    broker.partition_or_error(&TopicPartition::new(name.clone(), fetch.partition))
                }
                (None, None) => Err(ErrorCode::UnknownTopicOrPartition),
            };
            targets.push(Target {
                topic_index,
                topic_name: name.clone(),
                partition_index: fetch.partition,
                partition,
                fetch_offset: Offset(fetch.fetch_offset),
                current_leader_epoch: fetch.current_leader_epoch,
                last_fetched_epoch: fetch.last_fetched_epoch,
                partition_max_bytes: fetch.partition_max_bytes.max(0) as usize,
            });
        }
    }
    let read_committed = request.isolation_level == READ_COMMITTED;
    // The broker's fetch.max.bytes caps every response (the connection budgets for it).
    let broker_bytes_max = broker.config.fetch_bytes_max as usize;
    let response_bytes_max = if request.max_bytes <= 0 {
        broker_bytes_max
    } else {
        (request.max_bytes as usize).min(broker_bytes_max)
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let mut targets = targets;
    let hosted: Vec<Arc<Partition>> = targets
        .iter()
        .filter_map(|target| target.partition.as_ref().ok().cloned())
        .collect();

    loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let mut waiters: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = hosted
            .iter()
            .map(|partition| Box::pin(partition.appended()))
            .collect();
        for waiter in &mut waiters {
            waiter.as_mut().enable();
        }
        let (partitions, bytes, errored) = read_all(
            &broker,
            &image,
            fetcher,
            &mut targets,
            read_committed,
            response_bytes_max,
            version,
        );
        let now = Instant::now();
        if bytes >= min_bytes || errored || now >= deadline || waiters.is_empty() {
            return respond(topics, partitions, version, correlation_id);
        }
        tokio::select! {
            _ = futures::future::select_all(waiters) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutdown.cancelled() => {}
        }
        if broker.shutdown.is_cancelled() {
            let (partitions, _, _) = read_all(
                &broker,
                &image,
                fetcher,
                &mut targets,
                read_committed,
                response_bytes_max,
                version,
            );
            return respond(topics, partitions, version, correlation_id);
        }
    }
}

fn partition_error(index: i32, error: ErrorCode) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// Reads every target once. Returns the per-topic partition data, the bytes read, and whether any
/// partition had an error (Kafka answers at once then).
fn read_all(
    broker: &Arc<Broker>,
    image: &MetadataImage,
    fetcher: Fetcher,
    targets: &mut [Target],
    read_committed: bool,
    response_bytes_max: usize,
    version: i16,
) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut remaining = response_bytes_max;
    let mut bytes = 0;
    let mut errored = false;
    let mut out = Vec::with_capacity(targets.len());
    for target in targets.iter_mut() {
        let data = match &target.partition {
            Err(error) => {
                errored = true;
                let data = partition_error(target.partition_index, *error);
                if *error == ErrorCode::NotLeaderOrFollower && version >= 12 {
                    with_current_leader(data, image, target)
                } else {
                    data
                }
            }
            Ok(partition) => {
                let partition = partition.clone();
                let data = match fetcher {
                    Fetcher::Consumer => {
                        read_one(&partition, target, read_committed, remaining, bytes == 0)
                    }
                    Fetcher::Follower(replica) => read_for_follower(
                        broker,
                        &partition,
                        replica,
                        target,
                        remaining,
                        bytes == 0,
                    ),
                };
                let read = data.records.as_ref().map_or(0, Bytes::len);
                bytes += read;
                remaining = remaining.saturating_sub(read);
                // Errors and a diverging epoch are answered at once, as Kafka does.
                if data.error_code != 0 || data.diverging_epoch.epoch >= 0 {
                    errored = true;
                }
                data
            }
        };
        out.push((target.topic_index, data));
    }
    (out, bytes, errored)
}

/// NOT_LEADER_OR_FOLLOWER carries the leader the image names (v12+, KIP-951's `current_leader`).
fn with_current_leader(
    data: PartitionData,
    image: &MetadataImage,
    target: &Target,
) -> PartitionData {
    let Some(registration) = target.topic_name.as_ref().and_then(|name| {
        image.topic(name).and_then(|topic| {
            topic
                .partitions
                .get(&PartitionIndex(target.partition_index))
        })
    }) else {
        return data;
    };
    data.with_current_leader(
        LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(registration.leader.0))
            .with_leader_epoch(registration.leader_epoch.0),
    )
}

/// A follower's fetch: the leader state decides (epoch check, divergence, progress, high
/// watermark, ISR expansion); records are read up to the log end offset. Every read of a long
/// poll reports the same progress again (as Kafka's delayed fetch does when it completes).
fn read_for_follower(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    replica: NodeId,
    target: &mut Target,
    remaining: usize,
    first_data: bool,
) -> PartitionData {
    let index = target.partition_index;
    let current_leader_epoch =
        (target.current_leader_epoch >= 0).then_some(LeaderEpoch(target.current_leader_epoch));
    let last_fetched_epoch =
        (target.last_fetched_epoch >= 0).then_some(LeaderEpoch(target.last_fetched_epoch));
    let outcome = partition.on_follower_fetch(
        FollowerFetch {
            replica,
            fetch_offset: target.fetch_offset,
            durable_offset: None,
            current_leader_epoch,
            last_fetched_epoch,
        },
        now_ms(),
    );
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return partition_error(index, crate::replication::protocol_error(error)),
    };
    if let Some(proposal) = outcome.isr_proposal.clone() {
        crate::replication::propose_isr(broker, partition.clone(), proposal);
    }
    let base = PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(outcome.high_watermark.0)
        .with_last_stable_offset(outcome.high_watermark.0)
        .with_log_start_offset(outcome.log_start_offset.0)
        .with_preferred_read_replica(BrokerId(-1));
    let start_offset = match outcome.read {
        FetchRead::Diverging(diverging) => {
            return diverging_answer(base, diverging.leader_epoch, diverging.end_offset);
        }
        FetchRead::Records { start_offset } => start_offset,
    };
    let bytes_max = target.partition_max_bytes.min(remaining);
    let end = partition.log.log_end_offset();
    read_into(base, partition, start_offset, bytes_max, end, first_data)
}

/// No records, and the epoch and end offset where the fetcher's log diverges from this one.
fn diverging_answer(base: PartitionData, epoch: LeaderEpoch, end_offset: Offset) -> PartitionData {
    base.with_records(Some(Bytes::new())).with_diverging_epoch(
        EpochEndOffset::default()
            .with_epoch(epoch.0)
            .with_end_offset(end_offset.0),
    )
}

/// Reads whole batches from `start` below `upper_bound` into `base`; a read error becomes the
/// partition's error code (logged when the directory failed).
fn read_into(
    base: PartitionData,
    partition: &Partition,
    start: Offset,
    bytes_max: usize,
    upper_bound: Offset,
    first_data: bool,
) -> PartitionData {
    match partition
        .log
        .read(start, bytes_max, upper_bound, first_data)
    {
        Ok(read) => base.with_error_code(0).with_records(Some(read.records)),
        Err(error) => {
            let code = storage_error_code(&error);
            if code == ErrorCode::KafkaStorageError {
                tracing::error!(partition = %partition.topic_partition, %error, "read failed");
            }
            base.with_error_code(code.code())
                .with_records(Some(Bytes::new()))
        }
    }
}

fn read_one(
    partition: &Partition,
    target: &Target,
    read_committed: bool,
    remaining: usize,
    first_data: bool,
) -> PartitionData {
    let index = target.partition_index;
    let requested =
        (target.current_leader_epoch >= 0).then_some(LeaderEpoch(target.current_leader_epoch));
    if let Err(error) = partition.check_leader_epoch(requested) {
        return partition_error(index, crate::replication::protocol_error(error));
    }
    let log = &partition.log;
    let high_watermark = partition.high_watermark();
    let last_stable_offset = partition.last_stable_offset();
    let base = PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(high_watermark.0)
        .with_last_stable_offset(last_stable_offset.0)
        .with_log_start_offset(log.log_start_offset().0)
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_preferred_read_replica(BrokerId(-1));
    if target.last_fetched_epoch >= 0
        && let Some((epoch, end_offset)) =
            log.end_offset_for_epoch(LeaderEpoch(target.last_fetched_epoch))
        && (end_offset < target.fetch_offset || epoch.0 < target.last_fetched_epoch)
    {
        return diverging_answer(base, epoch, end_offset);
    }
    let upper_bound = if read_committed {
        last_stable_offset
    } else {
        high_watermark
    };
    let bytes_max = target.partition_max_bytes.min(remaining);
    let start = target.fetch_offset;
    read_into(base, partition, start, bytes_max, upper_bound, first_data)
}

fn respond(
    topics: Vec<(TopicName, Uuid)>,
    partitions: Vec<(usize, PartitionData)>,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, topic_id)| {
            FetchableTopicResponse::default()
                .with_topic(if version >= 13 {
                    TopicName(StrBytes::default())
                } else {
                    name
                })
                .with_topic_id(topic_id)
        })
        .collect();
    for (topic_index, data) in partitions {
        responses[topic_index].partitions.push(data);
    }
    let response = FetchResponse::default()
        .with_error_code(0)
        .with_session_id(0)
        .with_responses(responses);
    encode(
        correlation_id,
        ApiKey::Fetch,
        version,
        ResponseKind::Fetch(response),
    )
}
