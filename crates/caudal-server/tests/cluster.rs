//! Several brokers in one process sharing one metadata controller: placement, per-broker
//! hosting and leadership, and Metadata answers that agree on every broker.

mod common;

use std::time::Duration;

use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use common::{Client, batch, start_shared_cluster};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

async fn metadata(client: &mut Client, topic: &str) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    match client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
        .await
    {
        ResponseKind::Metadata(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

async fn produce_response(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> produce_response::PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch(2, Compression::None, None))),
                ]),
        ]);
    match client
        .call(ApiKey::Produce, 10, RequestKind::Produce(request))
        .await
    {
        ResponseKind::Produce(response) => response.responses[0].partition_responses[0].clone(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn brokers_sharing_metadata_place_host_and_lead_partitions_together() {
    let dir = tempfile::tempdir().unwrap();
    let brokers = start_shared_cluster(dir.path(), 3, &[]).await;

    // Created through broker 2; the topic is everyone's.
    let mut client = Client::connect(brokers[1].local_addr).await;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name("spread"))
                .with_num_partitions(6)
                .with_replication_factor(3),
        ])
        .with_timeout_ms(5000);
    let ResponseKind::CreateTopics(created) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    else {
        panic!("not CreateTopics")
    };
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);

    // Every broker hosts a replica of every partition (its own metadata follower reconciles).
    for broker in &brokers {
        tokio::time::timeout(Duration::from_secs(10), async {
            while broker.broker.partitions().len() < 6 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("every broker hosts the new partitions");
    }

    // Any broker answers Metadata alike: three brokers with their real ports, leaders spread.
    let mut answers = Vec::new();
    for broker in &brokers {
        let mut client = Client::connect(broker.local_addr).await;
        answers.push(metadata(&mut client, "spread").await);
    }
    let first = &answers[0];
    let ports: Vec<i32> = first.brokers.iter().map(|broker| broker.port).collect();
    let mut expected: Vec<i32> = brokers
        .iter()
        .map(|broker| broker.local_addr.port() as i32)
        .collect();
    expected.sort();
    let mut sorted = ports.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    let topic = &first.topics[0];
    assert_eq!(topic.partitions.len(), 6);
    let mut led = [0; 3];
    for partition in &topic.partitions {
        assert_eq!(partition.replica_nodes.len(), 3);
        assert_eq!(partition.isr_nodes.len(), 3);
        led[(partition.leader_id.0 - 1) as usize] += 1;
    }
    assert_eq!(led, [2, 2, 2], "leaders spread evenly");
    for answer in &answers[1..] {
        assert_eq!(answer.topics[0].partitions, topic.partitions);
    }

    // Only the leader takes produces; the others say NOT_LEADER_OR_FOLLOWER and name the
    // leader (KIP-951, v10+).
    let partition = &topic.partitions[0];
    for (index, broker) in brokers.iter().enumerate() {
        let mut client = Client::connect(broker.local_addr).await;
        let response = produce_response(&mut client, "spread", partition.partition_index).await;
        if index as i32 + 1 == partition.leader_id.0 {
            assert_eq!(response.error_code, 0);
        } else {
            assert_eq!(response.error_code, ErrorCode::NotLeaderOrFollower.code());
            assert_eq!(response.current_leader.leader_id, partition.leader_id);
            assert_eq!(response.current_leader.leader_epoch, partition.leader_epoch);
        }
    }

    for broker in brokers {
        broker.shutdown().await.unwrap();
    }
}
