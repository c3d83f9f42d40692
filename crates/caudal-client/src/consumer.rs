//! [`Consumer`]: reads assigned partitions from a chosen start, fetching from every leader at once.
//!
//! There is no group membership here: partitions are assigned explicitly (all of a topic's, or
//! some), each starting at the earliest or latest offset, an absolute offset, an offset counted back
//! from the end, or the first offset at or after a timestamp — resolved with ListOffsets. Each
//! [`Consumer::poll`] sends one fetch to each leader (long-polling up to `max_wait`) and returns
//! the records that arrived, in offset order per partition.

use std::collections::BTreeMap;
use std::time::Duration;

use caudal_model::{NodeId, Offset, PartitionIndex};
use caudal_protocol::ErrorCode;

use crate::client::{Client, FetchOptions, FetchPosition, OffsetSpec};
use crate::error::{ClientError, KafkaError};
use crate::records::{ConsumerRecord, count_records, decode_batches};

/// Where a partition starts being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    /// An absolute offset; clamped into the log by the out-of-range policy if it falls outside.
    Offset(i64),
    /// This many records before the end (clamped to the log start).
    FromEnd(i64),
    /// The first record with a timestamp at or after this (ms since the epoch); the end of the log
    /// if there is none.
    Timestamp(i64),
}

/// What to do when the fetch position is outside the log (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail with `OFFSET_OUT_OF_RANGE`.
    None,
}

/// How a [`Consumer`] behaves; names follow Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`.
    pub max_wait: Duration,
    /// `fetch.min.bytes`.
    pub fetch_bytes_min: i32,
    /// `fetch.max.bytes`.
    pub fetch_bytes_max: i32,
    /// `max.partition.fetch.bytes`.
    pub partition_fetch_bytes_max: i32,
    /// `auto.offset.reset`.
    pub offset_reset: OffsetReset,
    /// Largest decompressed size accepted for one batch.
    pub decompressed_batch_bytes_max: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            fetch_bytes_min: 1,
            fetch_bytes_max: 50 << 20,
            partition_fetch_bytes_max: 1 << 20,
            offset_reset: OffsetReset::Earliest,
            decompressed_batch_bytes_max: 256 << 20,
        }
    }
}

/// A consumed record with its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub topic: String,
    pub record: ConsumerRecord,
}

#[derive(Debug, Clone, Copy)]
struct PartitionState {
    position: Offset,
    high_watermark: Option<Offset>,
}

/// What one fetch round did for one partition, in counts (see [`Consumer::poll_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub records: u64,
    pub bytes: u64,
}

/// A consumer of explicitly assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assignments: BTreeMap<(String, PartitionIndex), PartitionState>,
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        Self {
            client,
            config,
            assignments: BTreeMap::new(),
        }
    }

    /// Assigns partitions of `topic` (all of them if `partitions` is `None`), each starting at
    /// `start`. Returns the resolved start offset per partition.
    pub async fn assign(
        &mut self,
        topic: &str,
        partitions: Option<&[i32]>,
        start: StartOffset,
    ) -> Result<Vec<(PartitionIndex, Offset)>, ClientError> {
        let info = self.client.topic_with_leaders(topic, false).await?;
        let partitions: Vec<PartitionIndex> = match partitions {
            None => info.partitions.iter().map(|p| p.partition).collect(),
            Some(wanted) => {
                for &partition in wanted {
                    if info.partition(PartitionIndex(partition)).is_none() {
                        return Err(KafkaError::new(
                            ErrorCode::UnknownTopicOrPartition,
                            format!(
                                "{topic}-{partition}: the topic has {} partitions",
                                info.partitions.len()
                            ),
                        )
                        .into());
                    }
                }
                wanted.iter().map(|&p| PartitionIndex(p)).collect()
            }
        };
        let resolved = self.resolve(topic, &partitions, start).await?;
        for &(partition, position) in &resolved {
            self.assignments.insert(
                (topic.to_owned(), partition),
                PartitionState {
                    position,
                    high_watermark: None,
                },
            );
        }
        Ok(resolved)
    }

    async fn resolve(
        &self,
        topic: &str,
        partitions: &[PartitionIndex],
        start: StartOffset,
    ) -> Result<Vec<(PartitionIndex, Offset)>, ClientError> {
        let list = |spec: OffsetSpec| {
            let requests: Vec<(PartitionIndex, OffsetSpec)> =
                partitions.iter().map(|&p| (p, spec)).collect();
            let client = self.client.clone();
            let topic = topic.to_owned();
            async move { client.list_offsets(&topic, &requests).await }
        };
        let offset_of =
            |listed: &BTreeMap<PartitionIndex, crate::client::ListedOffset>,
             partition: PartitionIndex|
             -> Option<Offset> { listed.get(&partition).and_then(|l| l.offset) };
        match start {
            StartOffset::Offset(offset) if offset >= 0 => {
                Ok(partitions.iter().map(|&p| (p, Offset(offset))).collect())
            }
            StartOffset::Offset(offset) => Err(ClientError::InvalidArgument(format!(
                "offset {offset} is negative"
            ))),
            StartOffset::Earliest | StartOffset::Latest => {
                let spec = if start == StartOffset::Earliest {
                    OffsetSpec::Earliest
                } else {
                    OffsetSpec::Latest
                };
                let listed = list(spec).await?;
                Ok(partitions
                    .iter()
                    .map(|&p| (p, offset_of(&listed, p).unwrap_or(Offset(0))))
                    .collect())
            }
            StartOffset::FromEnd(count) => {
                let earliest = list(OffsetSpec::Earliest).await?;
                let latest = list(OffsetSpec::Latest).await?;
                Ok(partitions
                    .iter()
                    .map(|&p| {
                        let start = offset_of(&earliest, p).unwrap_or(Offset(0));
                        let end = offset_of(&latest, p).unwrap_or(start);
                        (p, Offset((end.0 - count.max(0)).max(start.0)))
                    })
                    .collect())
            }
            StartOffset::Timestamp(timestamp) => {
                let at = list(OffsetSpec::Timestamp(timestamp)).await?;
                let latest = list(OffsetSpec::Latest).await?;
                Ok(partitions
                    .iter()
                    .map(|&p| {
                        let end = offset_of(&latest, p).unwrap_or(Offset(0));
                        (p, offset_of(&at, p).unwrap_or(end))
                    })
                    .collect())
            }
        }
    }

    /// The next offset to be read from a partition.
    pub fn position(&self, topic: &str, partition: PartitionIndex) -> Option<Offset> {
        self.assignments
            .get(&(topic.to_owned(), partition))
            .map(|state| state.position)
    }

    /// Records between the position and the high watermark, summed over all assigned partitions
    /// (as of the last fetch; partitions not yet fetched count as unknown and are skipped).
    pub fn lag(&self) -> i64 {
        self.assignments
            .values()
            .filter_map(|state| {
                state
                    .high_watermark
                    .map(|high| (high.0 - state.position.0).max(0))
            })
            .sum()
    }

    /// True once every assigned partition has been fetched and its position has reached the
    /// high watermark the broker last reported.
    pub fn caught_up(&self) -> bool {
        self.assignments.values().all(|state| {
            state
                .high_watermark
                .is_some_and(|high| state.position >= high)
        })
    }

    /// One fetch round: returns the records that arrived (possibly none, after `max_wait`).
    pub async fn poll(&mut self) -> Result<Vec<TopicRecord>, ClientError> {
        let limit = self.config.decompressed_batch_bytes_max;
        let mut out = Vec::new();
        self.fetch_round(|topic, partition, position, data| {
            let decoded = decode_batches(topic, partition, data, position, limit)?;
            let next = decoded.next_offset;
            out.extend(decoded.records.into_iter().map(|record| TopicRecord {
                topic: topic.to_owned(),
                record,
            }));
            Ok(next)
        })
        .await?;
        Ok(out)
    }

    /// One fetch round that only counts records and bytes from the batch headers, without
    /// decoding or decompressing them (for throughput measurement).
    pub async fn poll_counts(&mut self) -> Result<PartitionProgress, ClientError> {
        let mut progress = PartitionProgress {
            records: 0,
            bytes: 0,
        };
        self.fetch_round(|topic, partition, position, data| {
            let (records, next) =
                count_records(&data, position).map_err(|reason| ClientError::CorruptRecords {
                    topic: topic.to_owned(),
                    partition: partition.0,
                    offset: position.0,
                    reason,
                })?;
            progress.records += records;
            progress.bytes += data.len() as u64;
            Ok(next)
        })
        .await?;
        Ok(progress)
    }

    /// Fetches every assigned partition from its leader (one request per leader, all at once),
    /// hands each partition's bytes to `consume` (which returns the next position), and deals
    /// with partition errors: leader changes refresh metadata, out-of-range positions reset.
    async fn fetch_round<F>(&mut self, mut consume: F) -> Result<(), ClientError>
    where
        F: FnMut(&str, PartitionIndex, Offset, bytes::Bytes) -> Result<Option<Offset>, ClientError>,
    {
        if self.assignments.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no partitions assigned".to_owned(),
            ));
        }
        let mut by_node: BTreeMap<NodeId, Vec<FetchPosition>> = BTreeMap::new();
        let mut leaderless = Vec::new();
        for ((topic, partition), state) in &self.assignments {
            match self.client.cached_leader(topic, *partition) {
                Some(node_id) => by_node.entry(node_id).or_default().push(FetchPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: state.position,
                    partition_bytes_max: self.config.partition_fetch_bytes_max,
                }),
                None => leaderless.push(topic.clone()),
            }
        }
        let options = FetchOptions {
            max_wait: self.config.max_wait,
            bytes_min: self.config.fetch_bytes_min,
            bytes_max: self.config.fetch_bytes_max,
            isolation_level: 0,
        };
        let fetches = by_node.into_iter().map(|(node_id, positions)| {
            let client = self.client.clone();
            async move {
                let result = client.fetch(node_id, &positions, options).await;
                (positions, result)
            }
        });
        let answers = futures::future::join_all(fetches).await;
        let mut refresh: Vec<String> = leaderless;
        let mut resets: Vec<(String, PartitionIndex, OffsetSpec)> = Vec::new();
        for (positions, result) in answers {
            let fetched = match result {
                Ok(fetched) => fetched,
                Err(error) if error.needs_metadata_refresh() => {
                    tracing::debug!(%error, "fetch failed; refreshing metadata");
                    refresh.extend(positions.into_iter().map(|p| p.topic));
                    continue;
                }
                Err(error) => return Err(error),
            };
            for partition in fetched {
                let key = (partition.topic.clone(), partition.partition);
                let Some(state) = self.assignments.get(&key).copied() else {
                    continue;
                };
                match partition.result {
                    Ok(data) => {
                        let next = consume(
                            &partition.topic,
                            partition.partition,
                            state.position,
                            data.records,
                        )?;
                        if let Some(entry) = self.assignments.get_mut(&key) {
                            if let Some(next) = next {
                                entry.position = entry.position.max(next);
                            }
                            entry.high_watermark = Some(data.high_watermark);
                        }
                    }
                    Err(ErrorCode::OffsetOutOfRange) => {
                        let spec = match self.config.offset_reset {
                            OffsetReset::Earliest => OffsetSpec::Earliest,
                            OffsetReset::Latest => OffsetSpec::Latest,
                            OffsetReset::None => {
                                return Err(KafkaError::new(
                                    ErrorCode::OffsetOutOfRange,
                                    format!(
                                        "{}-{} at offset {}",
                                        partition.topic, partition.partition, state.position
                                    ),
                                )
                                .into());
                            }
                        };
                        resets.push((partition.topic, partition.partition, spec));
                    }
                    Err(code) => {
                        let error = ClientError::from(KafkaError::new(
                            code,
                            format!("Fetch {}-{}", partition.topic, partition.partition),
                        ));
                        if error.needs_metadata_refresh() || error.is_retriable() {
                            tracing::debug!(%error, "partition fetch failed; will retry");
                            refresh.push(partition.topic);
                        } else {
                            return Err(error);
                        }
                    }
                }
            }
        }
        for (topic, partition, spec) in resets {
            let listed = self
                .client
                .list_offsets(&topic, &[(partition, spec)])
                .await?;
            if let Some(offset) = listed.get(&partition).and_then(|listed| listed.offset)
                && let Some(entry) = self.assignments.get_mut(&(topic.clone(), partition))
            {
                tracing::debug!(%topic, %partition, from = %entry.position, to = %offset, "offset reset");
                entry.position = offset;
            }
        }
        refresh.sort();
        refresh.dedup();
        if !refresh.is_empty() {
            tokio::time::sleep(self.client.config().retry_backoff).await;
            for topic in refresh {
                match self.client.topic(&topic).await {
                    Ok(_) => {}
                    Err(error) if error.is_retriable() => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::records::{Compression, RecordData, encode_batch};
    use crate::testing::{FakeBroker, metadata_response};
    use bytes::{Bytes, BytesMut};
    use caudal_model::LeaderEpoch;
    use caudal_model::batch::stamp_offset_and_epoch;
    use caudal_protocol::RequestKind;
    use caudal_protocol::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };
    use caudal_protocol::kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use caudal_protocol::kafka_protocol::messages::{
        FetchResponse, ListOffsetsResponse, ResponseKind,
    };
    use std::sync::Arc;

    /// A log of `count` records on partition 0 of "t", in batches of 10, values "v<offset>".
    fn log(count: i64) -> Bytes {
        let mut bytes = BytesMut::new();
        for base in (0..count).step_by(10) {
            let records: Vec<RecordData> = (base..(base + 10).min(count))
                .map(|offset| RecordData {
                    value: Some(Bytes::from(format!("v{offset}"))),
                    timestamp: 1_000 + offset,
                    ..RecordData::default()
                })
                .collect();
            let mut batch = encode_batch(&records, Compression::None, None)
                .unwrap()
                .to_vec();
            stamp_offset_and_epoch(&mut batch, Offset(base), LeaderEpoch(0));
            bytes.extend_from_slice(&batch);
        }
        bytes.freeze()
    }

    /// Serves Fetch from `log` (whole batches from the one containing the fetch offset, at most
    /// 3 batches per answer) and ListOffsets (earliest 0, latest = count).
    async fn fetch_broker(count: i64) -> FakeBroker {
        let broker = FakeBroker::bind().await;
        let me = broker.node(1);
        let log = Arc::new(log(count));
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[("t", &[(0, 1)])],
            ))),
            RequestKind::ListOffsets(list) => Some(ResponseKind::ListOffsets(
                ListOffsetsResponse::default().with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(list.topics[0].name.clone())
                        .with_partitions(vec![
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(0)
                                .with_offset(match list.topics[0].partitions[0].timestamp {
                                    -2 => 0,
                                    -1 => count,
                                    // Timestamps are 1000 + offset.
                                    timestamp if timestamp - 1_000 < count => {
                                        (timestamp - 1_000).max(0)
                                    }
                                    _ => -1,
                                }),
                        ]),
                ]),
            )),
            RequestKind::Fetch(fetch) => {
                let offset = fetch.topics[0].partitions[0].fetch_offset;
                let answer = PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(count);
                let answer = if offset > count {
                    answer.with_error_code(1)
                } else {
                    // Batches are 10 records; serve up to 3 from the one holding `offset`.
                    let mut position = 0;
                    let mut start = None;
                    let mut served = 0;
                    let mut end = 0;
                    while position < log.len() {
                        let header =
                            caudal_model::RecordBatchHeader::parse(&log[position..]).unwrap();
                        let next = position + header.size_bytes();
                        if start.is_none() && header.last_offset().0 >= offset {
                            start = Some(position);
                        }
                        if start.is_some() {
                            served += 1;
                            end = next;
                            if served == 3 {
                                break;
                            }
                        }
                        position = next;
                    }
                    let records = match start {
                        Some(start) => log.slice(start..end),
                        None => Bytes::new(),
                    };
                    answer.with_records(Some(records))
                };
                Some(ResponseKind::Fetch(
                    FetchResponse::default().with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(fetch.topics[0].topic.clone())
                            .with_partitions(vec![answer]),
                    ]),
                ))
            }
            _ => None,
        });
        broker
    }

    async fn consumer(broker: &FakeBroker) -> Consumer {
        let client = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        Consumer::new(
            client,
            ConsumerConfig {
                max_wait: Duration::from_millis(10),
                ..ConsumerConfig::default()
            },
        )
    }

    async fn drain(consumer: &mut Consumer) -> Vec<i64> {
        let mut offsets = Vec::new();
        for _ in 0..20 {
            for record in consumer.poll().await.unwrap() {
                assert_eq!(
                    record.record.value.as_deref(),
                    Some(format!("v{}", record.record.offset).as_bytes())
                );
                offsets.push(record.record.offset.0);
            }
            if consumer.caught_up() {
                break;
            }
        }
        offsets
    }

    #[tokio::test]
    async fn reads_from_an_offset_inside_a_batch() {
        let broker = fetch_broker(45).await;
        let mut consumer = consumer(&broker).await;
        let start = consumer
            .assign("t", None, StartOffset::Offset(13))
            .await
            .unwrap();
        assert_eq!(start, vec![(PartitionIndex(0), Offset(13))]);
        assert_eq!(drain(&mut consumer).await, (13..45).collect::<Vec<_>>());
        assert_eq!(consumer.lag(), 0);
    }

    #[tokio::test]
    async fn resolves_earliest_latest_from_end_and_timestamps() {
        let broker = fetch_broker(45).await;
        let mut consumer = consumer(&broker).await;
        let cases = [
            (StartOffset::Earliest, 0),
            (StartOffset::Latest, 45),
            (StartOffset::FromEnd(5), 40),
            (StartOffset::FromEnd(500), 0),
            (StartOffset::Timestamp(1_020), 20),
            (StartOffset::Timestamp(99_999), 45),
        ];
        for (start, expected) in cases {
            let resolved = consumer.assign("t", Some(&[0]), start).await.unwrap();
            assert_eq!(resolved[0].1, Offset(expected), "{start:?}");
        }
        assert!(
            consumer
                .assign("t", Some(&[3]), StartOffset::Earliest)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn resets_an_out_of_range_position() {
        let broker = fetch_broker(25).await;
        let mut consumer = consumer(&broker).await;
        consumer
            .assign("t", None, StartOffset::Offset(1_000))
            .await
            .unwrap();
        assert!(consumer.poll().await.unwrap().is_empty());
        assert_eq!(consumer.position("t", PartitionIndex(0)), Some(Offset(0)));
        assert_eq!(drain(&mut consumer).await, (0..25).collect::<Vec<_>>());
        consumer.config.offset_reset = OffsetReset::None;
        consumer
            .assign("t", None, StartOffset::Offset(1_000))
            .await
            .unwrap();
        let error = consumer.poll().await.unwrap_err();
        assert_eq!(error.kafka_code(), Some(ErrorCode::OffsetOutOfRange));
    }

    #[tokio::test]
    async fn counts_without_decoding() {
        let broker = fetch_broker(45).await;
        let mut consumer = consumer(&broker).await;
        consumer
            .assign("t", None, StartOffset::Offset(5))
            .await
            .unwrap();
        let mut total = 0;
        while !consumer.caught_up() {
            total += consumer.poll_counts().await.unwrap().records;
        }
        assert_eq!(total, 40);
    }
}
