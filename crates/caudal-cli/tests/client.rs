//! End to end: the `caudal-client` library against a real `caudal server`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use caudal_client::admin::{ConfigResource, NewTopic};
use caudal_client::consumer::ConsumerConfig;
use caudal_client::records::Compression;
use caudal_client::{
    Acks, Client, ClientConfig, Consumer, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
    StartOffset,
};
use caudal_model::{Offset, PartitionIndex};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::ApiKey;
use support::Broker;

const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn admin_produce_and_consume_through_the_library() {
    let broker = Broker::start();
    runtime().block_on(async {
        let client = Client::connect(
            std::slice::from_ref(&broker.address),
            ClientConfig::default(),
        )
        .await
        .unwrap();
        let connection = client.any_connection().await.unwrap();
        for api in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ListOffsets,
        ] {
            connection.version(api).unwrap();
        }

        let created = client
            .create_topic(
                NewTopic::new("ledger")
                    .with_partitions(2)
                    .with_config("cleanup.policy", "delete"),
                false,
                TIMEOUT,
            )
            .await
            .unwrap();
        let info = client.topic_with_leaders("ledger", false).await.unwrap();
        assert_eq!(info.partitions.len(), 2);
        if let (Some(created_id), Some(listed_id)) = (created.topic_id, info.topic_id) {
            assert_eq!(created_id, listed_id);
        }
        let configs = client
            .describe_configs(&ConfigResource::Topic("ledger".into()), None)
            .await
            .unwrap();
        assert!(
            configs
                .iter()
                .any(|entry| entry.name == "cleanup.policy"
                    && entry.value.as_deref() == Some("delete")),
            "{configs:?}"
        );

        // An idempotent, compressed producer; keys spread records over both partitions.
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                idempotent: true,
                compression: Compression::Zstd,
                batch_bytes: 2_000,
                ..ProducerConfig::default()
            },
        )
        .await
        .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..500 {
            let record = ProducerRecord::new("ledger", format!("entry {index}"))
                .with_key(format!("account-{}", index % 13))
                .with_header("n", Some(Bytes::from(index.to_string())))
                .with_timestamp(1_000_000 + index);
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        let mut per_partition = [0i64; 2];
        for delivery in deliveries {
            let metadata = delivery.wait().await.unwrap();
            let partition = metadata.partition.0 as usize;
            assert_eq!(metadata.offset, Some(Offset(per_partition[partition])));
            per_partition[partition] += 1;
        }
        assert!(per_partition.iter().all(|&count| count > 0));
        let stats = producer.close().await.unwrap();
        assert_eq!(stats.records_acknowledged, 500);

        let latest = client
            .list_offsets(
                "ledger",
                &[
                    (PartitionIndex(0), OffsetSpec::Latest),
                    (PartitionIndex(1), OffsetSpec::Latest),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            latest[&PartitionIndex(0)].offset,
            Some(Offset(per_partition[0]))
        );
        assert_eq!(
            latest[&PartitionIndex(1)].offset,
            Some(Offset(per_partition[1]))
        );

        // Everything back, in order per partition, with keys, values and headers.
        let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
        consumer
            .assign("ledger", None, StartOffset::Earliest)
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !consumer.caught_up() {
            seen.extend(consumer.poll().await.unwrap());
        }
        assert_eq!(seen.len(), 500);
        for record in &seen {
            let value = String::from_utf8(record.record.value.clone().unwrap().to_vec()).unwrap();
            let index: i64 = value.strip_prefix("entry ").unwrap().parse().unwrap();
            assert_eq!(record.record.timestamp.0, 1_000_000 + index);
            assert_eq!(
                record.record.headers,
                vec![("n".to_owned(), Some(Bytes::from(index.to_string())))]
            );
            assert_eq!(
                record.record.key.as_deref(),
                Some(format!("account-{}", index % 13).as_bytes())
            );
        }

        // From a timestamp: the first record at or after it in each partition.
        let mut by_time = Consumer::new(client.clone(), ConsumerConfig::default());
        let starts = by_time
            .assign("ledger", None, StartOffset::Timestamp(1_000_000 + 250))
            .await
            .unwrap();
        for (partition, start) in starts {
            let expected = seen
                .iter()
                .filter(|r| r.record.partition == partition && r.record.timestamp.0 >= 1_000_250)
                .map(|r| r.record.offset)
                .min()
                .unwrap();
            assert_eq!(start, expected);
        }

        // A raw produce of one batch, acks=1, then the partition grows and the topic goes.
        let batch = caudal_client::records::encode_batch(
            &[caudal_client::records::RecordData {
                value: Some(Bytes::from_static(b"raw")),
                timestamp: 5,
                ..Default::default()
            }],
            Compression::None,
            None,
        )
        .unwrap();
        let ack = client
            .produce("ledger", PartitionIndex(1), batch, Acks::Leader, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(ack.base_offset, Offset(per_partition[1]));

        client
            .create_partitions("ledger", 3, false, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            client
                .topic_with_leaders("ledger", false)
                .await
                .unwrap()
                .partitions
                .len(),
            3
        );
        let error = client
            .create_topic(NewTopic::new("ledger"), false, TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(error.kafka_code(), Some(ErrorCode::TopicAlreadyExists));
        client.delete_topic("ledger", TIMEOUT).await.unwrap();
        let error = client.topic("ledger").await.unwrap_err();
        assert_eq!(error.kafka_code(), Some(ErrorCode::UnknownTopicOrPartition));
    });
}
