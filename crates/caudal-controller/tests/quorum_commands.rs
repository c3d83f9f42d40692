//! Typed commands through the metadata quorum, with in-process controllers on 127.0.0.1:
//! forwarding from followers, failover, broker fencing on lapsed sessions and controlled
//! shutdown. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use caudal_controller::ControllerError;
use caudal_controller::command::{Command, CommandReply};
use caudal_controller::decisions::{NewTopic, TopicDefaults};
use caudal_controller::quorum::brokers::{BrokerHeartbeatReply, NO_LEADER};
use caudal_controller::quorum::{Quorum, QuorumConfig, QuorumTuning, SubmitError};
use caudal_metadata::MetadataImage;
use caudal_model::NodeId;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);

fn tuning(session_timeout: Duration) -> QuorumTuning {
    QuorumTuning {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(5),
        submit_timeout: Duration::from_secs(10),
        broker_session_timeout: session_timeout,
        lease_check_interval: Some(Duration::from_millis(100)),
        ..QuorumTuning::default()
    }
}

struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<Option<Quorum>>,
}

impl Cluster {
    async fn start(size: usize, tuning: QuorumTuning) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut voters: Vec<(NodeId, SocketAddr)> = Vec::new();
        for index in 0..size {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.push((NodeId(index as i32 + 1), listener.local_addr().unwrap()));
            listeners.push(listener);
        }
        let mut nodes = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let config = QuorumConfig {
                node_id: voters[index].0,
                dir: root.path().join(format!("node-{}", index + 1)),
                listen: voters[index].1,
                voters: voters.clone(),
                tuning: tuning.clone(),
            };
            nodes.push(Some(Quorum::start_on(config, listener).await.unwrap()));
        }
        Cluster { _root: root, nodes }
    }

    fn node(&self, index: usize) -> &Quorum {
        self.nodes[index].as_ref().expect("node is running")
    }

    /// The index of the node every running node agrees leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<_> = self.nodes.iter().flatten().map(Quorum::leader).collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|seen| *seen == Some(*leader))
                && let Some(index) = self
                    .nodes
                    .iter()
                    .position(|node| node.as_ref().is_some_and(|node| node.node_id() == *leader))
            {
                return index;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.shutdown().await;
        }
    }

    async fn shutdown(mut self) {
        for index in 0..self.nodes.len() {
            self.stop(index).await;
        }
    }
}

/// Polls `node`'s image until `done` holds, at most `WAIT`.
async fn until(node: &Quorum, what: &str, done: impl Fn(&MetadataImage) -> bool) -> Duration {
    let started = Instant::now();
    let mut updates = node.subscribe();
    let reached = tokio::time::timeout(WAIT, updates.wait_for(|image| done(image))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "{what}: not reached within {WAIT:?}; image: {:?}",
        node.image()
    );
    started.elapsed()
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("test finished in time");
}

fn register(node: i32) -> Command {
    Command::RegisterBroker {
        node_id: NodeId(node),
        host: "127.0.0.1".into(),
        port: 9000 + node as u16,
        rack: None,
    }
}

fn heartbeat(node: i32, want_shutdown_safely: bool) -> Command {
    Command::BrokerHeartbeat {
        node_id: NodeId(node),
        want_shutdown_safely,
    }
}

fn create(name: &str, partitions: i32, replication_factor: i16) -> Command {
    Command::CreateTopic {
        topic: NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor,
            ..NewTopic::default()
        },
        defaults: TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        },
        validate_only: false,
    }
}

fn heartbeat_reply(reply: CommandReply) -> BrokerHeartbeatReply {
    match reply {
        CommandReply::BrokerHeartbeat(reply) => reply,
        other => panic!("not a heartbeat reply: {other:?}"),
    }
}

/// Leader per partition of `topic`.
fn leaders(image: &MetadataImage, topic: &str) -> BTreeMap<i32, i32> {
    image
        .topic(topic)
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|(index, partition)| (index.0, partition.leader.0))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_followers_are_forwarded_and_survive_failover() {
    bounded(async {
        let mut cluster = Cluster::start(3, tuning(Duration::from_secs(30))).await;
        let leader = cluster.leader().await;
        let follower = (leader + 1) % 3;
        let node = cluster.node(follower);

        // The leader writes a cluster id on its own.
        until(node, "cluster id", |image| image.cluster_id.is_some()).await;

        // Registration and heartbeats from a follower reach the leader: fenced, then active.
        for broker in 1..=3 {
            assert_eq!(
                node.submit(register(broker)).await.unwrap(),
                CommandReply::BrokerRegistered
            );
        }
        for broker in 1..=3 {
            let reply = heartbeat_reply(node.submit(heartbeat(broker, false)).await.unwrap());
            assert!(!reply.is_fenced && !reply.should_shut_down);
        }
        // The reply came after the entry was applied on the leader; the follower sees it soon.
        until(node, "three active brokers", |image| {
            (1..=3).all(|broker| image.is_broker_active(NodeId(broker)))
        })
        .await;

        let created = node.submit(create("orders", 3, 3)).await.unwrap();
        let CommandReply::TopicCreated(created) = created else {
            panic!("{created:?}")
        };
        assert_eq!(created.replication_factor, 3);
        // A refusal travels back as the decision's error.
        match node.submit(create("orders", 1, 1)).await {
            Err(SubmitError::Rejected(error)) => {
                assert_eq!(error.error_name, "TOPIC_ALREADY_EXISTS");
                assert!(matches!(
                    error.into_controller_error(),
                    ControllerError::TopicAlreadyExists { .. }
                ));
            }
            other => panic!("{other:?}"),
        }
        match node.submit(heartbeat(42, false)).await {
            Err(SubmitError::Rejected(error)) => {
                assert_eq!(error.error_name, "BROKER_ID_NOT_REGISTERED")
            }
            other => panic!("{other:?}"),
        }

        // The leader stops: a command submitted at once waits for the new leader and succeeds.
        cluster.stop(leader).await;
        let survivor = cluster.node(follower);
        let started = Instant::now();
        let reply = survivor.submit(create("after-failover", 2, 1)).await;
        assert!(
            matches!(reply, Ok(CommandReply::TopicCreated(_))),
            "{reply:?} after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let other = cluster.node((follower + 1) % 3);
        until(other, "the topic on the other survivor", |image| {
            image.topic("after-failover").is_some()
        })
        .await;
        // The new leader reset the leases: nobody was fenced by the failover.
        assert!((1..=3).all(|broker| survivor.image().is_broker_active(NodeId(broker))));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_heartbeating_is_fenced_and_loses_leadership_and_isr() {
    bounded(async {
        let session = Duration::from_millis(1500);
        let cluster = Cluster::start(3, tuning(session)).await;
        let leader = cluster.leader().await;
        let node = cluster.node((leader + 1) % 3);
        for broker in 1..=3 {
            node.submit(register(broker)).await.unwrap();
        }
        let mut silent_since = Instant::now();
        for broker in 1..=3 {
            // Broker 3's lease starts no earlier than this.
            silent_since = Instant::now();
            node.submit(heartbeat(broker, false)).await.unwrap();
        }
        node.submit(create("t", 3, 3)).await.unwrap();
        until(node, "topic", |image| leaders(image, "t").len() == 3).await;
        let before = leaders(&node.image(), "t");
        assert!(before.values().any(|leader| *leader == 3), "{before:?}");

        // Brokers 1 and 2 keep heartbeating; 3 goes silent.
        let deadline = silent_since + WAIT;
        loop {
            for broker in 1..=2 {
                let reply = heartbeat_reply(node.submit(heartbeat(broker, false)).await.unwrap());
                assert!(
                    !reply.is_fenced,
                    "broker {broker} was fenced while heartbeating"
                );
            }
            let image = node.image();
            let fenced = image.brokers[&NodeId(3)].fenced;
            let partitions = &image.topic("t").unwrap().partitions;
            if fenced
                && partitions.values().all(|partition| {
                    partition.leader != NodeId(3) && !partition.isr.contains(&NodeId(3))
                })
            {
                break;
            }
            assert!(Instant::now() < deadline, "broker 3 not fenced: {image:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = silent_since.elapsed();
        assert!(
            elapsed >= session,
            "fenced before its session lapsed: {elapsed:?}"
        );
        assert!(
            elapsed < session + Duration::from_secs(3),
            "fencing took {elapsed:?}"
        );
        let image = node.image();
        assert!(image.is_broker_active(NodeId(1)) && image.is_broker_active(NodeId(2)));
        assert!(
            leaders(&image, "t")
                .values()
                .all(|leader| *leader != NO_LEADER.0)
        );

        // Broker 3 comes back: one heartbeat unfences it (it rejoins ISRs through leaders).
        let reply = heartbeat_reply(node.submit(heartbeat(3, false)).await.unwrap());
        assert!(!reply.is_fenced);
        until(node, "broker 3 active again", |image| {
            image.is_broker_active(NodeId(3))
        })
        .await;
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_moves_leadership_then_lets_the_broker_stop() {
    bounded(async {
        let cluster = Cluster::start(1, tuning(Duration::from_secs(30))).await;
        cluster.leader().await;
        let node = cluster.node(0);
        for broker in 1..=2 {
            node.submit(register(broker)).await.unwrap();
            node.submit(heartbeat(broker, false)).await.unwrap();
        }
        node.submit(create("shared", 4, 2)).await.unwrap();
        let mut solo = NewTopic {
            name: "solo".into(),
            num_partitions: -1,
            replication_factor: -1,
            ..NewTopic::default()
        };
        solo.assignments.insert(0, vec![NodeId(1)]);
        node.submit(Command::CreateTopic {
            topic: solo,
            defaults: TopicDefaults {
                num_partitions: 1,
                replication_factor: 1,
            },
            validate_only: false,
        })
        .await
        .unwrap();
        assert!(
            leaders(&node.image(), "shared")
                .values()
                .any(|leader| *leader == 1)
        );

        // Broker 1 asks to shut down safely: its leaderships move to 2; the partition only it
        // holds goes leaderless (its ISR keeps it); it leads nothing, so it may stop.
        let reply = heartbeat_reply(node.submit(heartbeat(1, true)).await.unwrap());
        assert!(reply.in_controlled_shutdown && reply.should_shut_down && !reply.is_fenced);
        let image = node.image();
        assert!(
            leaders(&image, "shared")
                .values()
                .all(|leader| *leader == 2)
        );
        assert_eq!(leaders(&image, "solo")[&0], NO_LEADER.0);
        assert_eq!(
            image
                .topic("solo")
                .unwrap()
                .partitions
                .values()
                .next()
                .unwrap()
                .isr,
            vec![NodeId(1)]
        );
        assert!(image.brokers[&NodeId(1)].in_controlled_shutdown);
        // New partitions avoid it.
        node.submit(create("later", 2, 1)).await.unwrap();
        assert!(
            leaders(&node.image(), "later")
                .values()
                .all(|leader| *leader == 2)
        );
        // Asking again writes nothing new.
        let applied = node.image().last_applied;
        let again = heartbeat_reply(node.submit(heartbeat(1, true)).await.unwrap());
        assert!(again.should_shut_down);
        assert_eq!(node.image().last_applied, applied);

        // It restarts: registration fences it and clears the shutdown; its first heartbeat
        // unfences it and the leaderless partition elects it again.
        node.submit(register(1)).await.unwrap();
        let image = node.image();
        assert!(
            image.brokers[&NodeId(1)].fenced && !image.brokers[&NodeId(1)].in_controlled_shutdown
        );
        let reply = heartbeat_reply(node.submit(heartbeat(1, false)).await.unwrap());
        assert!(!reply.is_fenced && !reply.in_controlled_shutdown && !reply.should_shut_down);
        assert_eq!(leaders(&node.image(), "solo")[&0], 1);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_changes_elections_and_reassignments_through_a_follower() {
    use caudal_controller::replication::{
        AlterPartitionRequest, ElectionType, PartitionError, PartitionRef, ReassignmentRequest,
        list_partition_reassignments,
    };
    use caudal_model::PartitionIndex;

    bounded(async {
        let cluster = Cluster::start(3, tuning(Duration::from_secs(30))).await;
        let leader = cluster.leader().await;
        let node = cluster.node((leader + 1) % 3);
        for broker in 1..=3 {
            node.submit(register(broker)).await.unwrap();
            node.submit(heartbeat(broker, false)).await.unwrap();
        }
        let mut topic = NewTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            ..NewTopic::default()
        };
        topic.assignments.insert(0, vec![NodeId(1), NodeId(2)]);
        node.submit(Command::CreateTopic {
            topic,
            defaults: TopicDefaults {
                num_partitions: 1,
                replication_factor: 1,
            },
            validate_only: false,
        })
        .await
        .unwrap();
        let partition = PartitionRef {
            topic: "t".into(),
            partition: PartitionIndex(0),
        };
        until(node, "topic", |image| image.topic("t").is_some()).await;
        let topic_id = node.image().topic("t").unwrap().topic_id;
        let current =
            |node: &Quorum| node.image().topic("t").unwrap().partitions[&PartitionIndex(0)].clone();

        // Reassign [1, 2] → [3, 2]: 3 is added, not yet in sync.
        let reply = node
            .submit(Command::AlterPartitionReassignments {
                reassignments: vec![ReassignmentRequest {
                    partition: partition.clone(),
                    replicas: Some(vec![NodeId(3), NodeId(2)]),
                }],
            })
            .await
            .unwrap();
        let CommandReply::AlterPartitionReassignments(results) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(results[0].result, Ok(()));
        until(node, "reassigning", |image| {
            !list_partition_reassignments(image, None).is_empty()
        })
        .await;
        let before = current(node);
        assert_eq!(before.replicas, vec![NodeId(3), NodeId(2), NodeId(1)]);

        // The leader (1) reports 3 in sync: the reassignment completes and 1 hands over.
        let alter = |isr: Vec<NodeId>, leader_epoch, partition_epoch| Command::AlterPartition {
            partitions: vec![AlterPartitionRequest {
                topic_id,
                partition: PartitionIndex(0),
                leader_id: NodeId(1),
                leader_epoch,
                partition_epoch,
                new_isr: isr,
            }],
        };
        let reply = node
            .submit(alter(
                vec![NodeId(1), NodeId(2), NodeId(3)],
                before.leader_epoch,
                before.partition_epoch,
            ))
            .await
            .unwrap();
        let CommandReply::AlterPartition(results) = reply else {
            panic!("{reply:?}")
        };
        let state = results[0].clone().unwrap();
        assert_eq!(state.replicas, vec![NodeId(3), NodeId(2)]);
        assert_eq!(state.leader, NodeId(3));
        until(node, "reassignment done", |image| {
            list_partition_reassignments(image, None).is_empty()
        })
        .await;
        // The same stale request again is refused per partition.
        let reply = node
            .submit(alter(
                vec![NodeId(1), NodeId(2)],
                before.leader_epoch,
                before.partition_epoch,
            ))
            .await
            .unwrap();
        assert_eq!(
            reply,
            CommandReply::AlterPartition(vec![Err(PartitionError::FencedLeaderEpoch)])
        );

        // Preferred election: 3 is first and leads already.
        let reply = node
            .submit(Command::ElectLeaders {
                election_type: ElectionType::Preferred,
                partitions: Some(vec![partition.clone()]),
            })
            .await
            .unwrap();
        let CommandReply::ElectLeaders(results) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(results[0].result, Err(PartitionError::ElectionNotNeeded));
        // Cancelling with nothing in progress.
        let reply = node
            .submit(Command::AlterPartitionReassignments {
                reassignments: vec![ReassignmentRequest {
                    partition,
                    replicas: None,
                }],
            })
            .await
            .unwrap();
        let CommandReply::AlterPartitionReassignments(results) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(
            results[0].result,
            Err(PartitionError::NoReassignmentInProgress)
        );
        cluster.shutdown().await;
    })
    .await;
}
