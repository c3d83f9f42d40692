//! A broker without the controller role (`process.roles=broker`) next to three combined nodes on
//! one metadata quorum, all in this process on 127.0.0.1: it follows the quorum's image, registers,
//! hosts and leads replicas placed on it, serves produce and fetch, and is fenced once it stops
//! heartbeating. Every wait is bounded.

mod common;

use std::future::Future;
use std::time::Duration;

use caudal_model::{NodeId, PartitionIndex, TopicPartition};
use caudal_protocol::{ApiKey, RequestKind, ResponseKind};
use caudal_server::{BrokerConfig, MetadataService};
use common::{Client, consume_partition0, produce_to_partition0};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after [`WAIT`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(
    dir: &std::path::Path,
    node: i32,
    roles: &str,
    voters: &str,
    listeners: &str,
) -> BrokerConfig {
    let node_id = node.to_string();
    BrokerConfig::for_tests(
        &dir.join(format!("node-{node}")),
        &[
            ("node.id", node_id.as_str()),
            ("process.roles", roles),
            ("listeners", listeners),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", voters),
            ("broker.heartbeat.interval.ms", "200"),
            ("broker.session.timeout.ms", "2000"),
            // The last nodes to stop have no quorum left to move leaderships with.
            ("controlled.shutdown.enable", "false"),
            ("replica.fetch.backoff.ms", "50"),
            ("replica.fetch.wait.max.ms", "100"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_the_controller_role_hosts_leads_and_is_fenced() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let dir = tempfile::tempdir().unwrap();
        let mut controller_ports = Vec::new();
        for _ in 0..3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            controller_ports.push(listener.local_addr().unwrap().port());
        }
        let voters = controller_ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("{}@127.0.0.1:{port}", index + 1))
            .collect::<Vec<_>>()
            .join(",");

        // The combined nodes wait for each other (a majority must run): start them together.
        let mut starting = Vec::new();
        for (index, port) in controller_ports.iter().enumerate() {
            let listeners = format!("PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}");
            let config = config(
                dir.path(),
                index as i32 + 1,
                "broker,controller",
                &voters,
                &listeners,
            );
            starting.push(tokio::spawn(caudal_server::start_with(config, None)));
        }
        let mut combined = Vec::new();
        for start in starting {
            combined.push(start.await.unwrap().expect("combined node starts"));
        }
        let observer = caudal_server::start_with(
            config(dir.path(), 4, "broker", &voters, "PLAINTEXT://127.0.0.1:0"),
            None,
        )
        .await
        .expect("broker-only node starts");
        assert!(matches!(
            observer.broker.metadata,
            MetadataService::Observer(_)
        ));
        let cluster_id = combined[0].broker.image().cluster_id.clone();
        assert!(cluster_id.is_some());
        assert_eq!(observer.broker.image().cluster_id, cluster_id);

        // Registered and unfenced, as the controllers see it.
        eventually("the broker-only node is active", || async {
            combined[0].broker.image().is_broker_active(NodeId(4))
        })
        .await;

        // An RF-3 partition placed on it, led by it (the first replica is the preferred leader).
        let mut client = Client::connect(combined[1].local_addr).await;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name("on-four"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(4), BrokerId(1), BrokerId(2)]),
                    ]),
            ])
            .with_timeout_ms(5000);
        let ResponseKind::CreateTopics(created) = client
            .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
            .await
        else {
            panic!("not CreateTopics")
        };
        assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
        let partition = TopicPartition::new("on-four", 0);
        eventually("the broker-only node hosts its replica", || async {
            observer.broker.partition(&partition).is_some()
        })
        .await;
        let registration = observer
            .broker
            .image()
            .topic("on-four")
            .and_then(|topic| topic.partitions.get(&PartitionIndex(0)).cloned())
            .expect("partition in the observer's image");
        assert_eq!(registration.leader, NodeId(4));

        // It leads: acks=all reaches the followers on the combined nodes, and consumers read it.
        let (error, base_offset) = produce_to_partition0(&observer, "on-four", -1, 5).await;
        assert_eq!((error, base_offset), (0, 0));
        let (error, high_watermark, bytes) = consume_partition0(&observer, "on-four").await;
        assert_eq!((error, high_watermark), (0, 5));
        assert!(bytes > 0);
        for follower in [&combined[0], &combined[1]] {
            eventually("a follower on a combined node has the records", || async {
                follower
                    .broker
                    .partition(&partition)
                    .is_some_and(|replica| replica.log.log_end_offset().0 == 5)
            })
            .await;
        }

        // It stops heartbeating (stopped without a controlled shutdown): the active controller
        // fences it after its session timeout and another in-sync replica takes over.
        observer.broker.shutdown.cancel();
        drop(observer);
        eventually("the broker-only node is fenced", || async {
            combined[0]
                .broker
                .image()
                .brokers
                .get(&NodeId(4))
                .is_some_and(|broker| broker.fenced)
        })
        .await;
        eventually("the partition has a new leader", || async {
            combined[0]
                .broker
                .image()
                .topic("on-four")
                .and_then(|topic| topic.partitions.get(&PartitionIndex(0)).cloned())
                .is_some_and(|partition| {
                    partition.leader != NodeId(4) && !partition.isr.contains(&NodeId(4))
                })
        })
        .await;

        for node in combined {
            node.shutdown().await.expect("clean shutdown");
        }
    })
    .await
    .expect("test finished in time");
}
