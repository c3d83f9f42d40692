//! An observer (a broker without the controller role) following three in-process controllers on
//! 127.0.0.1: it holds the controllers' image after writes, and its commands are run by the
//! leader, also after a leader change. Every wait is bounded.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::decisions::{ConfigOp, NewTopic, TopicDefaults};
use caudal_controller::quorum::state_machine::image_records;
use caudal_controller::quorum::{
    Observer, ObserverTuning, Quorum, QuorumConfig, QuorumTuning, SubmitError,
};
use caudal_controller::{ControllerError, command::CommandError};
use caudal_metadata::{ConfigResource, MetadataImage};
use caudal_model::NodeId;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);

fn tuning() -> QuorumTuning {
    QuorumTuning {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(5),
        submit_timeout: Duration::from_secs(10),
        broker_session_timeout: Duration::from_secs(30),
        lease_check_interval: Some(Duration::from_millis(100)),
        ..QuorumTuning::default()
    }
}

async fn start_controllers(
    root: &std::path::Path,
) -> (Vec<Option<Quorum>>, Vec<(NodeId, SocketAddr)>) {
    let mut listeners = Vec::new();
    let mut voters = Vec::new();
    for index in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        voters.push((NodeId(index + 1), listener.local_addr().unwrap()));
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let config = QuorumConfig {
            node_id: voters[index].0,
            dir: root.join(format!("node-{}", index + 1)),
            listen: voters[index].1,
            voters: voters.clone(),
            tuning: tuning(),
        };
        nodes.push(Some(Quorum::start_on(config, listener).await.unwrap()));
    }
    (nodes, voters)
}

/// The index of the node every running node agrees leads.
async fn leader(nodes: &[Option<Quorum>]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<_> = nodes.iter().flatten().map(Quorum::leader).collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|seen| *seen == Some(*leader))
            && let Some(index) = nodes
                .iter()
                .position(|node| node.as_ref().is_some_and(|node| node.node_id() == *leader))
        {
            return index;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An image as records (with every config resource the test uses) and its `last_applied`.
fn contents(image: &MetadataImage) -> (u64, Vec<caudal_metadata::MetadataRecord>) {
    let resources: BTreeSet<ConfigResource> = [
        ConfigResource::Topic("orders".into()),
        ConfigResource::BrokerDefault,
    ]
    .into();
    (image.last_applied, image_records(image, &resources))
}

/// Waits until the observer holds exactly `controller`'s current image.
async fn same_image(observer: &Observer, controller: &Quorum) {
    let expected = contents(&controller.image());
    let mut updates = observer.subscribe();
    // The guard `wait_for` returns is dropped at once: it holds the channel's read lock.
    let reached = tokio::time::timeout(
        WAIT,
        updates.wait_for(|image| image.last_applied >= expected.0),
    )
    .await
    .map(|seen| seen.is_ok());
    assert_eq!(reached, Ok(true), "observer did not catch up");
    assert_eq!(contents(&observer.image()), expected);
}

fn create(name: &str) -> Command {
    Command::CreateTopic {
        topic: NewTopic {
            name: name.into(),
            num_partitions: 3,
            replication_factor: 3,
            ..NewTopic::default()
        },
        defaults: TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        },
        validate_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_image_and_its_commands_survive_a_leader_change() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let root = tempfile::tempdir().unwrap();
        let (mut nodes, voters) = start_controllers(root.path()).await;
        let observer = Observer::start_tuned(
            voters,
            ObserverTuning {
                submit_timeout: Duration::from_secs(10),
                answer_timeout: Duration::from_secs(6),
            },
        );

        // The first image arrives with the cluster id the leader wrote.
        let mut updates = observer.subscribe();
        let first =
            tokio::time::timeout(WAIT, updates.wait_for(|image| image.cluster_id.is_some()))
                .await
                .map(|seen| seen.is_ok());
        assert_eq!(first, Ok(true), "no cluster id");

        // Commands from the observer are run by the leader.
        for broker in 1..=3 {
            let reply = observer
                .submit(Command::RegisterBroker {
                    node_id: NodeId(broker),
                    host: "127.0.0.1".into(),
                    port: 9000 + broker as u16,
                    rack: None,
                })
                .await
                .unwrap();
            assert_eq!(reply, CommandReply::BrokerRegistered);
            let reply = observer
                .submit(Command::BrokerHeartbeat {
                    node_id: NodeId(broker),
                    want_shutdown_safely: false,
                })
                .await
                .unwrap();
            assert!(matches!(reply, CommandReply::BrokerHeartbeat(reply) if !reply.is_fenced));
        }
        let leader_index = leader(&nodes).await;
        assert_eq!(
            observer.leader(),
            Some(nodes[leader_index].as_ref().unwrap().node_id())
        );
        assert!(matches!(
            observer.submit(create("orders")).await.unwrap(),
            CommandReply::TopicCreated(_)
        ));
        observer
            .submit(Command::AlterConfigs {
                resource: ConfigResource::Topic("orders".into()),
                changes: vec![("retention.ms".into(), ConfigOp::Set("60000".into()))],
                replace_all: false,
                validate_only: false,
            })
            .await
            .unwrap();
        // A refused command comes back as the decision's error.
        match observer.submit(create("orders")).await {
            Err(SubmitError::Rejected(error)) => assert!(matches!(
                CommandError::into_controller_error(error),
                ControllerError::TopicAlreadyExists { .. }
            )),
            other => panic!("expected TOPIC_ALREADY_EXISTS, got {other:?}"),
        }

        // The observer's image is the leader's, record for record.
        let leader_node = nodes[leader_index].as_ref().unwrap();
        same_image(&observer, leader_node).await;
        let image = observer.image();
        assert_eq!(image.topic("orders").unwrap().partitions.len(), 3);
        assert_eq!(
            image
                .configs(&ConfigResource::Topic("orders".into()))
                .and_then(|configs| configs.get("retention.ms"))
                .map(String::as_str),
            Some("60000")
        );

        // The leader stops; the observer's next command reaches the new leader.
        let old_leader = nodes[leader_index].take().unwrap();
        let old_leader_id = old_leader.node_id();
        old_leader.shutdown().await;
        assert!(matches!(
            observer.submit(create("after-failover")).await.unwrap(),
            CommandReply::TopicCreated(_)
        ));
        let new_index = leader(&nodes).await;
        let new_leader = nodes[new_index].as_ref().unwrap();
        assert_ne!(new_leader.node_id(), old_leader_id);
        same_image(&observer, new_leader).await;
        assert!(observer.image().topic("after-failover").is_some());
        let deadline = Instant::now() + WAIT;
        while observer.leader() != Some(new_leader.node_id()) {
            assert!(
                Instant::now() < deadline,
                "observer never names the new leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        observer.shutdown().await;
        for node in nodes.into_iter().flatten() {
            node.shutdown().await;
        }
    })
    .await
    .expect("test finished in time");
}
