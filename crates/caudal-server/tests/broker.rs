//! In-process broker tests over raw Kafka protocol frames.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use common::{Client, batch, raw_batch, start_broker};

// The same allocator the `caudal` binary installs (see docs/decisions/0001).
#[global_allocator]
static ALLOCATOR: caudal_server::alloc_guard::GuardedAllocator =
    caudal_server::alloc_guard::GuardedAllocator;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

async fn create_topic(client: &mut Client, name: &str, partitions: i32) -> i16 {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    match client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    {
        ResponseKind::CreateTopics(response) => response.topics[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]),
    )
}

/// Produces and returns (error code, base offset).
async fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> (i16, i64) {
    match client
        .call(
            ApiKey::Produce,
            9,
            produce_request(topic, partition, records, acks),
        )
        .await
    {
        ResponseKind::Produce(response) => {
            let partition = &response.responses[0].partition_responses[0];
            if partition.error_code != 0 {
                eprintln!(
                    "produce error {}: {:?}",
                    partition.error_code, partition.error_message
                );
            }
            (partition.error_code, partition.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]),
    )
}

async fn fetch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> fetch_response::PartitionData {
    match client
        .call(
            ApiKey::Fetch,
            12,
            fetch_request(topic, partition, offset, 0),
        )
        .await
    {
        ResponseKind::Fetch(response) => response.responses[0].partitions[0].clone(),
        other => panic!("unexpected {other:?}"),
    }
}

fn records_of(data: &fetch_response::PartitionData) -> Vec<kafka_protocol::records::Record> {
    let mut bytes = data.records.clone().unwrap_or_default();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        records.extend(
            RecordBatchDecoder::decode(&mut bytes)
                .expect("decodes")
                .records,
        );
    }
    records
}

#[tokio::test]
async fn api_versions_advertises_the_table_and_falls_back_for_unknown_versions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let ResponseKind::ApiVersions(response) = client
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!("not ApiVersions")
    };
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|key| key.api_key == 0)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 13));

    // KIP-511: ApiVersions v127 is answered in v0 with UNSUPPORTED_VERSION and the ranges.
    let mut frame = BytesMut::new();
    frame.put_i16(18);
    frame.put_i16(127);
    frame.put_i32(77);
    frame.put_i16(-1);
    client.send_raw(frame.freeze()).await;
    let response = client.receive_raw().await.expect("a response");
    let (header, body) =
        caudal_protocol::response::decode_response(ApiKey::ApiVersions, 0, response.freeze())
            .unwrap();
    assert_eq!(header.correlation_id, 77);
    let ResponseKind::ApiVersions(body) = body else {
        panic!()
    };
    assert_eq!(body.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(!body.api_keys.is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn produce_then_fetch_returns_the_same_records_with_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    assert_eq!(create_topic(&mut client, "orders", 3).await, 0);
    assert_eq!(
        create_topic(&mut client, "orders", 3).await,
        ErrorCode::TopicAlreadyExists.code()
    );
    assert_eq!(
        create_topic(&mut client, "bad name", 1).await,
        ErrorCode::InvalidTopicException.code()
    );
    let mut expected_offset = 0;
    for (round, compression) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let sent = batch(10, compression, None);
        let (error, base_offset) = produce(&mut client, "orders", 1, sent.clone(), -1).await;
        assert_eq!(error, 0, "round {round}");
        assert_eq!(base_offset, expected_offset);
        expected_offset += 10;
        let data = fetch(&mut client, "orders", 1, base_offset).await;
        assert_eq!(data.error_code, 0);
        assert_eq!(data.high_watermark, expected_offset);
        // Stored verbatim: identical bytes but for the stamped base offset.
        let stored = data.records.clone().unwrap();
        assert_eq!(stored.len(), sent.len());
        assert_eq!(&stored[12..16], &[0, 0, 0, 0], "leader epoch 0");
        assert_eq!(&stored[16..], &sent[16..]);
        let records = records_of(&data);
        assert_eq!(records.len(), 10);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, base_offset + i as i64);
            assert_eq!(record.key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(
                record.value.as_deref(),
                Some(format!("value-{i}").as_bytes())
            );
            assert_eq!(record.headers.len(), 1);
        }
    }
    // Other partitions are untouched; an unknown partition is an error.
    assert_eq!(fetch(&mut client, "orders", 0, 0).await.high_watermark, 0);
    assert_eq!(
        fetch(&mut client, "orders", 9, 0).await.error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        fetch(&mut client, "orders", 1, 51).await.error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_batches_get_kafka_errors_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("message.max.bytes", "2000")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "t", 1).await;
    let mut corrupt = BytesMut::from(&batch(3, Compression::None, None)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "t", 0, corrupt.freeze(), 1).await.0,
        ErrorCode::CorruptMessage.code()
    );
    assert_eq!(
        produce(&mut client, "t", 0, batch(200, Compression::None, None), 1)
            .await
            .0,
        ErrorCode::MessageTooLarge.code()
    );
    assert_eq!(
        produce(
            &mut client,
            "unknown",
            0,
            batch(1, Compression::None, None),
            1
        )
        .await
        .0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    let mut two = BytesMut::from(&batch(1, Compression::None, None)[..]);
    two.extend_from_slice(&batch(1, Compression::None, None));
    assert_eq!(
        produce(&mut client, "t", 0, two.freeze(), 1).await.0,
        ErrorCode::InvalidRecord.code()
    );
    assert_eq!(
        produce(&mut client, "t", 0, batch(1, Compression::None, None), 5)
            .await
            .0,
        ErrorCode::InvalidRequiredAcks.code()
    );
    // A control batch (attribute bit 5) from a client.
    let control = raw_batch(0x20, 0, 1, 0, &[0; 10]);
    assert_eq!(
        produce(&mut client, "t", 0, control, 1).await.0,
        ErrorCode::InvalidRecord.code()
    );
    // An uncompressed batch claiming 2^31-1 records in no bytes: it would use up 2^31 offsets.
    let poison = raw_batch(0, i32::MAX - 1, i32::MAX, 0, &[]);
    assert_eq!(
        produce(&mut client, "t", 0, poison, 1).await.0,
        ErrorCode::InvalidRecord.code()
    );
    assert_eq!(fetch(&mut client, "t", 0, 0).await.high_watermark, 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn idempotent_producer_duplicates_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "idem", 1).await;
    let ResponseKind::InitProducerId(init) = client
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(-1)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(init.error_code, 0);
    let producer_id = init.producer_id.0;
    assert!(producer_id >= 0);
    let first = batch(5, Compression::None, Some((producer_id, 0, 0)));
    assert_eq!(
        produce(&mut client, "idem", 0, first.clone(), -1).await,
        (0, 0)
    );
    let second = batch(5, Compression::None, Some((producer_id, 0, 5)));
    assert_eq!(
        produce(&mut client, "idem", 0, second.clone(), -1).await,
        (0, 5)
    );
    // A retried batch is acknowledged with its original offset and not written twice.
    assert_eq!(produce(&mut client, "idem", 0, first, -1).await, (0, 0));
    assert_eq!(produce(&mut client, "idem", 0, second, -1).await, (0, 5));
    let gap = batch(5, Compression::None, Some((producer_id, 0, 20)));
    assert_eq!(
        produce(&mut client, "idem", 0, gap, -1).await.0,
        ErrorCode::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(fetch(&mut client, "idem", 0, 0).await.high_watermark, 10);

    // A second InitProducerId hands out a different id.
    let ResponseKind::InitProducerId(again) = client
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(-1)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_ne!(again.producer_id.0, producer_id);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_acks_zero_gets_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "p", 2).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let acks = if i % 3 == 0 { -1 } else { 1 };
        sent.push(
            client
                .send(
                    ApiKey::Produce,
                    9,
                    produce_request("p", i % 2, batch(2, Compression::None, None), acks),
                )
                .await,
        );
    }
    // acks=0: no response; the next response is the ApiVersions that follows it.
    client
        .send(
            ApiKey::Produce,
            9,
            produce_request("p", 0, batch(2, Compression::None, None), 0),
        )
        .await;
    let versions = client
        .send(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
    for expected in sent {
        let (correlation_id, body) = client.receive(ApiKey::Produce, 9).await;
        assert_eq!(correlation_id, expected);
        let ResponseKind::Produce(body) = body else {
            panic!()
        };
        assert_eq!(body.responses[0].partition_responses[0].error_code, 0);
    }
    let (correlation_id, _) = client.receive(ApiKey::ApiVersions, 3).await;
    assert_eq!(correlation_id, versions);
    let total = fetch(&mut client, "p", 0, 0).await.high_watermark
        + fetch(&mut client, "p", 1, 0).await.high_watermark;
    assert_eq!(total, 102);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_auto_creates_topics_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("num.partitions", "4")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let request = |name: &str| {
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name(name))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
    };
    let ResponseKind::Metadata(response) = client.call(ApiKey::Metadata, 12, request("auto")).await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 4);
    assert_eq!(response.brokers.len(), 1);
    assert!(response.cluster_id.is_some());
    broker.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("auto.create.topics.enable", "false")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let ResponseKind::Metadata(response) = client.call(ApiKey::Metadata, 12, request("auto")).await
    else {
        panic!()
    };
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_offsets_by_position_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "ts", 1).await;
    produce(&mut client, "ts", 0, batch(10, Compression::Lz4, None), 1).await;
    let list = |timestamp: i64| {
        RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic_name("ts"))
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(timestamp),
                        ]),
                ]),
        )
    };
    let mut lookup = async |timestamp: i64| -> (i64, i64) {
        let ResponseKind::ListOffsets(response) =
            client.call(ApiKey::ListOffsets, 7, list(timestamp)).await
        else {
            panic!()
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        (partition.offset, partition.timestamp)
    };
    assert_eq!(lookup(-2).await.0, 0);
    assert_eq!(lookup(-1).await.0, 10);
    // Records have timestamps 1_700_000_000_000 + i.
    assert_eq!(lookup(1_700_000_000_004).await, (4, 1_700_000_000_004));
    assert_eq!(lookup(0).await.0, 0);
    assert_eq!(lookup(1_800_000_000_000).await, (-1, -1));
    assert_eq!(lookup(-3).await, (9, 1_700_000_000_009));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "durable", 1).await;
    for _ in 0..5 {
        produce(
            &mut client,
            "durable",
            0,
            batch(4, Compression::Zstd, None),
            -1,
        )
        .await;
    }
    let before = records_of(&fetch(&mut client, "durable", 0, 0).await);
    drop(client);
    broker.shutdown().await.unwrap();
    assert!(
        dir.path().join(".caudal_cleanshutdown").exists(),
        "clean-shutdown marker written"
    );

    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let data = fetch(&mut client, "durable", 0, 0).await;
    assert_eq!(data.high_watermark, 20);
    assert_eq!(records_of(&data), before);
    assert_eq!(
        produce(
            &mut client,
            "durable",
            0,
            batch(1, Compression::None, None),
            1
        )
        .await,
        (0, 20)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut consumer = Client::connect(broker.local_addr).await;
    let mut producer = Client::connect(broker.local_addr).await;
    create_topic(&mut producer, "poll", 1).await;
    let started = std::time::Instant::now();
    let sent = consumer
        .send(ApiKey::Fetch, 12, fetch_request("poll", 0, 0, 10_000))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(
        &mut producer,
        "poll",
        0,
        batch(3, Compression::None, None),
        1,
    )
    .await;
    let (correlation_id, response) = consumer.receive(ApiKey::Fetch, 12).await;
    assert_eq!(correlation_id, sent);
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    assert_eq!(records_of(&response.responses[0].partitions[0]).len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the append, not the timeout"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("socket.request.max.bytes", "4096")]).await;
    let mut healthy = Client::connect(broker.local_addr).await;
    create_topic(&mut healthy, "safe", 1).await;

    // Unknown API key: closed.
    let mut bad = Client::connect(broker.local_addr).await;
    bad.send_raw(Bytes::from_static(&[
        0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff,
    ]))
    .await;
    assert!(bad.receive_raw().await.is_none());

    // Oversized frame: closed before the body is read.
    let mut stream = tokio::net::TcpStream::connect(broker.local_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&100_000i32.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)));

    // A Metadata request claiming 2^31-1 topics: an error, not an abort.
    let mut hostile = Client::connect(broker.local_addr).await;
    let mut frame = BytesMut::new();
    frame.put_i16(3);
    frame.put_i16(1);
    frame.put_i32(5);
    frame.put_i16(-1);
    frame.put_i32(i32::MAX);
    hostile.send_raw(frame.freeze()).await;
    let _ = hostile.receive_raw().await;

    // Truncated produce body: answered with an error or closed; the broker lives on.
    let mut truncated = Client::connect(broker.local_addr).await;
    truncated
        .send_raw(Bytes::from_static(&[0, 0, 0, 9, 0, 0, 0, 3, 0, 0]))
        .await;
    let _ = truncated.receive_raw().await;

    assert_eq!(
        produce(
            &mut healthy,
            "safe",
            0,
            batch(1, Compression::None, None),
            1
        )
        .await,
        (0, 0)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn describe_configs_reports_sources_and_filters_by_key() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("log.retention.hours", "2")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "cfg", 1).await;
    let mut describe = async |keys: Option<Vec<&str>>| {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("cfg"))
            .with_configuration_keys(keys.map(|keys| {
                keys.into_iter()
                    .map(|key| StrBytes::from_string(key.to_string()))
                    .collect()
            }));
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![resource]);
        let ResponseKind::DescribeConfigs(response) = client
            .call(
                ApiKey::DescribeConfigs,
                4,
                RequestKind::DescribeConfigs(request),
            )
            .await
        else {
            panic!()
        };
        response.results[0].configs.clone()
    };
    let all = describe(None).await;
    assert!(all.len() > 20);
    // An empty key list means every config too (kafka-python sends one).
    assert_eq!(describe(Some(vec![])).await.len(), all.len());
    let retention = describe(Some(vec!["retention.ms"])).await;
    assert_eq!(retention.len(), 1);
    assert_eq!(retention[0].value.as_deref(), Some("7200000"));
    assert_eq!(retention[0].config_source, 4, "STATIC_BROKER_CONFIG");
    assert_eq!(
        retention[0].synonyms[0].name.as_str(),
        "log.retention.hours"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_responses_are_capped_and_pipelined_fetches_all_complete_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("fetch.max.bytes", "2048")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "capped", 1).await;
    let one = batch(10, Compression::None, None);
    for _ in 0..20 {
        produce(&mut client, "capped", 0, one.clone(), 1).await;
    }
    // The request allows 50 MiB; the broker's fetch.max.bytes (2 KiB) wins, but at least one
    // whole batch comes back.
    let data = fetch(&mut client, "capped", 0, 0).await;
    let returned = data.records.as_ref().unwrap().len();
    assert!(
        returned >= one.len() && returned <= 2048,
        "{returned} bytes"
    );
    assert_eq!(data.high_watermark, 200);

    // Many fetches pipelined on one connection (more than the connection's response budget
    // admits at once) are all answered, in order, as the writer drains.
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            client
                .send(ApiKey::Fetch, 12, fetch_request("capped", 0, i * 10, 0))
                .await,
        );
    }
    for (i, expected) in sent.into_iter().enumerate() {
        let (correlation_id, response) = client.receive(ApiKey::Fetch, 12).await;
        assert_eq!(correlation_id, expected);
        let ResponseKind::Fetch(response) = response else {
            panic!()
        };
        let records = records_of(&response.responses[0].partitions[0]);
        assert_eq!(records[0].offset, i as i64 * 10);
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_ready_response_is_not_held_behind_a_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "quiet", 1).await;
    create_topic(&mut client, "busy", 1).await;
    // A produce, then a fetch that long-polls an empty partition for 20 s, then another produce.
    let started = std::time::Instant::now();
    let first = client
        .send(
            ApiKey::Produce,
            9,
            produce_request("busy", 0, batch(1, Compression::None, None), 1),
        )
        .await;
    client
        .send(ApiKey::Fetch, 12, fetch_request("quiet", 0, 0, 20_000))
        .await;
    let (correlation_id, _) = client.receive(ApiKey::Produce, 9).await;
    assert_eq!(correlation_id, first);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the produce response waited for the long poll behind it"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_mid_long_poll_frees_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("max.connections", "1")]).await;
    let mut first = Client::connect(broker.local_addr).await;
    create_topic(&mut first, "idle", 1).await;
    first
        .send(ApiKey::Fetch, 12, fetch_request("idle", 0, 0, 60_000))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(first);
    // With one connection allowed, the next client is served only once the first is gone.
    let mut second = Client::connect(broker.local_addr).await;
    let ResponseKind::ApiVersions(response) = second
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.error_code, 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_offsets_answers_for_a_batch_too_large_to_search() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic(&mut client, "bomb", 1).await;
    // One zstd "record" that expands to 128 MiB of zeros, from a few KiB on the wire.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..128 {
        encoder.write_all(&zeros).unwrap();
    }
    let payload = encoder.finish().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let bomb = raw_batch(4, 0, 1, now, &payload);
    assert_eq!(produce(&mut client, "bomb", 0, bomb, 1).await, (0, 0));
    let request = RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name("bomb"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(0),
                    ]),
            ]),
    );
    let ResponseKind::ListOffsets(response) = client.call(ApiKey::ListOffsets, 7, request).await
    else {
        panic!()
    };
    let partition = &response.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.offset), (0, 0));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_partition_whose_log_cannot_be_created_is_offline_not_unknown() {
    let dir = tempfile::tempdir().unwrap();
    // A plain file where the partition's directory must go.
    std::fs::write(dir.path().join("blocked-0"), b"not a directory").unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    assert_eq!(create_topic(&mut client, "blocked", 1).await, 0);
    assert_eq!(
        produce(
            &mut client,
            "blocked",
            0,
            batch(1, Compression::None, None),
            1
        )
        .await
        .0,
        ErrorCode::KafkaStorageError.code()
    );
    assert_eq!(
        fetch(&mut client, "blocked", 0, 0).await.error_code,
        ErrorCode::KafkaStorageError.code()
    );
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("blocked"))),
    ])));
    let ResponseKind::Metadata(metadata) = client.call(ApiKey::Metadata, 12, request).await else {
        panic!()
    };
    let partition = &metadata.topics[0].partitions[0];
    assert_eq!(partition.error_code, ErrorCode::LeaderNotAvailable.code());
    assert_eq!(partition.leader_id, BrokerId(-1));
    assert_eq!(partition.offline_replicas, vec![BrokerId(1)]);
    drop(client);
    broker.shutdown().await.unwrap();
    // The broker still starts with the partition offline.
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    assert_eq!(
        fetch(&mut client, "blocked", 0, 0).await.error_code,
        ErrorCode::KafkaStorageError.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_partition_led_by_another_broker_is_not_served_here() {
    use caudal_metadata::MetadataRecord;
    use caudal_model::{LeaderEpoch, NodeId, PartitionIndex};

    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let topic_id = uuid::Uuid::new_v4();
    let caudal_server::MetadataService::Local(controller) = &broker.broker.metadata;
    controller
        .write(move |_| {
            Ok((
                vec![
                    MetadataRecord::RegisterBroker {
                        node_id: NodeId(2),
                        host: "127.0.0.1".into(),
                        port: 1,
                        rack: None,
                    },
                    MetadataRecord::Topic {
                        name: "elsewhere".into(),
                        topic_id,
                    },
                    MetadataRecord::Partition {
                        topic_id,
                        partition: PartitionIndex(0),
                        replicas: vec![NodeId(2), NodeId(1)],
                        isr: vec![NodeId(2), NodeId(1)],
                        leader: NodeId(2),
                        leader_epoch: LeaderEpoch(3),
                        partition_epoch: 0,
                    },
                ],
                (),
            ))
        })
        .unwrap();
    broker.broker.reconcile();
    // This node holds a replica (its log exists) but does not lead it.
    assert!(
        broker
            .broker
            .partition(&caudal_model::TopicPartition::new("elsewhere", 0))
            .is_some_and(|partition| !partition.is_leader())
    );
    let mut client = Client::connect(broker.local_addr).await;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    let (error, _) = produce(
        &mut client,
        "elsewhere",
        0,
        batch(1, Compression::None, None),
        -1,
    )
    .await;
    assert_eq!(error, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        fetch(&mut client, "elsewhere", 0, 0).await.error_code,
        NOT_LEADER_OR_FOLLOWER
    );
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("elsewhere"))),
    ]));
    let ResponseKind::Metadata(metadata) = client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(metadata))
        .await
    else {
        panic!("not a Metadata response")
    };
    let partition = &metadata.topics[0].partitions[0];
    assert_eq!(partition.leader_id, BrokerId(2));
    assert_eq!(partition.leader_epoch, 3);
    broker.shutdown().await.unwrap();
}
