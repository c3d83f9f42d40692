//! A raw-protocol test client and broker fixture for the in-process tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use caudal_protocol::response::{decode_response, encode_request};
use caudal_protocol::{ApiKey, RequestKind, ResponseKind};
use caudal_server::{BrokerConfig, BrokerHandle};
use futures::{SinkExt, StreamExt};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

pub async fn start_broker(dir: &std::path::Path, extra: &[(&str, &str)]) -> BrokerHandle {
    let config = BrokerConfig::for_tests(dir, extra);
    caudal_server::start(config).await.expect("broker starts")
}

/// `count` brokers (node ids 1..=count) in this process sharing one metadata controller, each
/// with its own data directory under `dir`: every broker sees the same metadata images, as in a
/// cluster on a quorum.
pub async fn start_shared_cluster(
    dir: &std::path::Path,
    count: i32,
    extra: &[(&str, &str)],
) -> Vec<BrokerHandle> {
    let first = BrokerConfig::for_tests(&dir.join("broker-1"), extra);
    let controller = caudal_controller::Controller::open(
        &dir.join("metadata"),
        &caudal_controller::controller::NodeRegistration {
            node_id: first.node_id,
            host: "127.0.0.1".into(),
            port: 0,
            rack: None,
        },
    )
    .expect("controller opens");
    let metadata = caudal_server::MetadataService::Local(std::sync::Arc::new(controller));
    let mut brokers = Vec::new();
    for node in 1..=count {
        let node_id = node.to_string();
        let mut settings: Vec<(&str, &str)> = vec![("node.id", node_id.as_str())];
        settings.extend_from_slice(extra);
        let config = BrokerConfig::for_tests(&dir.join(format!("broker-{node}")), &settings);
        brokers.push(
            caudal_server::start_with(config, Some(metadata.clone()))
                .await
                .expect("broker starts"),
        );
    }
    brokers
}

/// Produces `records` records to partition 0 of `topic` with `acks`: (error code, base offset).
pub async fn produce_to_partition0(
    broker: &BrokerHandle,
    topic: &str,
    acks: i16,
    records: usize,
) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let mut client = Client::connect(broker.local_addr).await;
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(records, Compression::None, None))),
                ]),
        ]);
    let ResponseKind::Produce(response) = client
        .call(ApiKey::Produce, 9, RequestKind::Produce(request))
        .await
    else {
        panic!("not Produce")
    };
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// A consumer's fetch of partition 0 of `topic` from offset 0: (error, high watermark, bytes of
/// records).
pub async fn consume_partition0(broker: &BrokerHandle, topic: &str) -> (i16, i64, usize) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let mut client = Client::connect(broker.local_addr).await;
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let ResponseKind::Fetch(response) = client
        .call(ApiKey::Fetch, 12, RequestKind::Fetch(request))
        .await
    else {
        panic!("not Fetch")
    };
    let data = &response.responses[0].partitions[0];
    (
        data.error_code,
        data.high_watermark,
        data.records.as_ref().map_or(0, Bytes::len),
    )
}

pub struct Client {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        Self {
            framed: Framed::new(stream, caudal_protocol::frame::frame_codec(64 << 20)),
            next_correlation_id: 1,
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("caudal-test")));
        let frame = encode_request(&header, &body).expect("encode");
        self.framed.send(frame.slice(4..)).await.expect("send");
        correlation_id
    }

    /// Sends raw bytes as one frame.
    pub async fn send_raw(&mut self, frame: Bytes) {
        self.framed.send(frame).await.expect("send raw");
    }

    /// Reads the next response frame, or None if the connection closed (5 s deadline).
    pub async fn receive_raw(&mut self) -> Option<BytesMut> {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.framed.next())
            .await
            .expect("response within 5 s")
            .and_then(Result::ok)
    }

    pub async fn receive(&mut self, api_key: ApiKey, version: i16) -> (i32, ResponseKind) {
        let frame = self.receive_raw().await.expect("a response");
        let (header, body) = decode_response(api_key, version, frame.freeze()).expect("decode");
        (header.correlation_id, body)
    }

    pub async fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let sent = self.send(api_key, version, body).await;
        let (correlation_id, response) = self.receive(api_key, version).await;
        assert_eq!(correlation_id, sent);
        response
    }
}

/// A record batch of `count` records `key-i`/`value-i` with one header each.
pub fn batch(count: usize, compression: Compression, producer: Option<(i64, i16, i32)>) -> Bytes {
    let now = 1_700_000_000_000i64;
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_string(format!("h{i}")),
                Some(Bytes::from(format!("hv{i}"))),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: producer.map_or(-1, |p| p.0),
                producer_epoch: producer.map_or(-1, |p| p.1),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is constant.
                sequence: producer.map_or(i as i32 - 1, |p| p.2 + i as i32),
                timestamp: now + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A hand-built v2 batch with a valid CRC and no producer id: `attributes` (compression bits,
/// control bit), the header's record count and last offset delta, and raw record bytes. For
/// batches a well-behaved client would never send.
pub fn raw_batch(
    attributes: i16,
    last_offset_delta: i32,
    record_count: i32,
    timestamp_ms: i64,
    records: &[u8],
) -> Bytes {
    use caudal_model::{Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs};
    Bytes::from(caudal_model::batch::build_batch(
        Offset(0),
        attributes,
        last_offset_delta,
        TimestampMs(timestamp_ms),
        TimestampMs(timestamp_ms),
        ProducerId::NONE,
        ProducerEpoch::NONE,
        Sequence::NONE,
        record_count,
        records,
    ))
}
