//! ISR replication across brokers of one process sharing one metadata controller: acks=all on
//! every replica, a lagging follower catching up, ISR shrink and expansion, min.insync.replicas,
//! and a leader change whose followers truncate divergent tails (KIP-101 / KIP-320).

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use caudal_metadata::{MetadataRecord, PartitionRegistration};
use caudal_model::{
    LeaderEpoch, NodeId, Offset, PartitionIndex, RecordBatchHeader, TopicPartition,
};
use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use caudal_replica::{IsrProposal, PartitionEpoch};
use caudal_server::{BrokerConfig, BrokerHandle, MetadataService};
use common::{Client, consume_partition0, produce_to_partition0, start_shared_cluster};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const WAIT: Duration = Duration::from_secs(20);

/// Fast fetch back-off and long polls, so the tests move quickly.
const FAST: &[(&str, &str)] = &[
    ("replica.fetch.backoff.ms", "50"),
    ("replica.fetch.wait.max.ms", "100"),
];

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

async fn create_topic(
    broker: &BrokerHandle,
    name: &str,
    replication_factor: i16,
    configs: &[(&str, &str)],
) {
    let mut client = Client::connect(broker.local_addr).await;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(1)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(name.to_string()))
                                .with_value(Some(StrBytes::from_string(value.to_string())))
                        })
                        .collect(),
                ),
        ])
        .with_timeout_ms(5000);
    let ResponseKind::CreateTopics(created) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    else {
        panic!("not CreateTopics")
    };
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
}

fn registration(broker: &BrokerHandle, topic: &str) -> PartitionRegistration {
    broker
        .broker
        .image()
        .topic(topic)
        .and_then(|topic| topic.partitions.get(&PartitionIndex(0)).cloned())
        .expect("partition registered")
}

/// The handle of node `node_id` (node ids are 1-based, in start order).
fn node(brokers: &[Option<BrokerHandle>], node_id: NodeId) -> &BrokerHandle {
    brokers[(node_id.0 - 1) as usize]
        .as_ref()
        .expect("broker running")
}

fn log_end_offset(broker: &BrokerHandle, topic: &str) -> Offset {
    broker
        .broker
        .partition(&TopicPartition::new(topic, 0))
        .map_or(Offset(-1), |partition| partition.log.log_end_offset())
}

fn high_watermark(broker: &BrokerHandle, topic: &str) -> Offset {
    broker
        .broker
        .partition(&TopicPartition::new(topic, 0))
        .map_or(Offset(-1), |partition| partition.high_watermark())
}

/// The whole log, as stored.
fn log_bytes(broker: &BrokerHandle, topic: &str) -> Bytes {
    let partition = broker
        .broker
        .partition(&TopicPartition::new(topic, 0))
        .expect("hosted");
    let end = partition.log.log_end_offset();
    // One read stops at a segment's end (a new leader epoch rolls one): read on to the log end.
    let mut out = Vec::new();
    let mut next = partition.log.log_start_offset();
    while next < end {
        let records = partition
            .log
            .read(next, 64 << 20, end, true)
            .expect("read")
            .records;
        next = headers(&records).last().expect("a batch").next_offset();
        out.extend_from_slice(&records);
    }
    Bytes::from(out)
}

fn headers(records: &[u8]) -> Vec<RecordBatchHeader> {
    let mut out = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let header = RecordBatchHeader::parse(&records[position..]).expect("a batch");
        position += header.size_bytes();
        out.push(header);
    }
    out
}

/// (base offset, leader epoch) of every batch in `records`.
fn batches(records: &[u8]) -> Vec<(i64, i32)> {
    headers(records)
        .iter()
        .map(|header| (header.base_offset.0, header.partition_leader_epoch.0))
        .collect()
}

async fn stop(brokers: &mut [Option<BrokerHandle>], node_id: NodeId) {
    let handle = brokers[(node_id.0 - 1) as usize]
        .take()
        .expect("broker running");
    handle.shutdown().await.expect("clean shutdown");
}

async fn restart(
    brokers: &mut [Option<BrokerHandle>],
    dir: &std::path::Path,
    metadata: &MetadataService,
    node_id: NodeId,
    extra: &[(&str, &str)],
) {
    let id = node_id.0.to_string();
    let mut settings: Vec<(&str, &str)> = vec![("node.id", id.as_str())];
    settings.extend_from_slice(extra);
    let config = BrokerConfig::for_tests(&dir.join(format!("broker-{}", node_id.0)), &settings);
    let handle = caudal_server::start_with(config, Some(metadata.clone()))
        .await
        .expect("broker restarts");
    brokers[(node_id.0 - 1) as usize] = Some(handle);
}

/// Cancels every broker it saw when dropped, so a failed assertion does not leave the brokers'
/// background threads (log cleaners) running and the test runtime waiting for them forever.
#[derive(Default)]
struct StopOnDrop(Vec<std::sync::Arc<caudal_server::Broker>>);

impl StopOnDrop {
    fn watch(&mut self, brokers: &[Option<BrokerHandle>]) {
        self.0
            .extend(brokers.iter().flatten().map(|handle| handle.broker.clone()));
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for broker in &self.0 {
            broker.shutdown.cancel();
        }
    }
}

async fn cluster(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<Option<BrokerHandle>> {
    start_shared_cluster(dir, 3, extra)
        .await
        .into_iter()
        .map(Some)
        .collect()
}

async fn shutdown_all(brokers: Vec<Option<BrokerHandle>>) {
    for broker in brokers.into_iter().flatten() {
        broker.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_reaches_every_replica_and_advances_the_high_watermark() {
    acks_all_reaches_every_replica(FAST).await;
}

/// The same with Kafka's page-cache durability: followers report log end offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_reaches_every_replica_without_fsync() {
    let extra: Vec<(&str, &str)> = [FAST, &[("caudal.acks.all.fsync", "false")]].concat();
    acks_all_reaches_every_replica(&extra).await;
}

async fn acks_all_reaches_every_replica(extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let brokers = cluster(dir.path(), extra).await;
    let mut stop_on_drop = StopOnDrop::default();
    stop_on_drop.watch(&brokers);
    create_topic(brokers[0].as_ref().unwrap(), "replicated", 3, &[]).await;
    let leader = registration(brokers[0].as_ref().unwrap(), "replicated").leader;
    let leader_handle = node(&brokers, leader);

    for round in 0..5 {
        let (error, base_offset) = produce_to_partition0(leader_handle, "replicated", -1, 4).await;
        assert_eq!(error, 0);
        assert_eq!(base_offset, round * 4);
        // Acknowledged with acks=all: the high watermark covers it, so every ISR member has it.
        assert!(high_watermark(leader_handle, "replicated") >= Offset(round * 4 + 4));
    }
    for broker in brokers.iter().flatten() {
        assert!(log_end_offset(broker, "replicated") >= Offset(20));
    }
    eventually("followers adopt the high watermark", || async {
        brokers
            .iter()
            .flatten()
            .all(|broker| high_watermark(broker, "replicated") == Offset(20))
    })
    .await;
    let leader_log = log_bytes(leader_handle, "replicated");
    for broker in brokers.iter().flatten() {
        assert_eq!(
            log_bytes(broker, "replicated"),
            leader_log,
            "identical logs"
        );
    }
    let (error, hw, bytes) = consume_partition0(leader_handle, "replicated").await;
    assert_eq!((error, hw), (0, 20));
    assert_eq!(bytes, leader_log.len());
    // Followers refuse clients.
    for broker in brokers.iter().flatten() {
        if broker.broker.config.node_id != leader {
            let (error, _, _) = consume_partition0(broker, "replicated").await;
            assert_eq!(error, ErrorCode::NotLeaderOrFollower.code());
            let (error, _) = produce_to_partition0(broker, "replicated", -1, 1).await;
            assert_eq!(error, ErrorCode::NotLeaderOrFollower.code());
        }
    }
    shutdown_all(brokers).await;
}

/// A stopped follower falls behind, leaves the ISR after `replica.lag.time.max.ms`, catches up
/// when it returns and is added back; consumers never see past the high watermark meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_leaves_the_isr_catches_up_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<(&str, &str)> = [FAST, &[("replica.lag.time.max.ms", "600")]].concat();
    let mut brokers = cluster(dir.path(), &extra).await;
    let mut stop_on_drop = StopOnDrop::default();
    stop_on_drop.watch(&brokers);
    let metadata = brokers[0].as_ref().unwrap().broker.metadata.clone();
    create_topic(brokers[0].as_ref().unwrap(), "lagging", 3, &[]).await;
    let registered = registration(brokers[0].as_ref().unwrap(), "lagging");
    let leader = registered.leader;
    let follower = *registered
        .replicas
        .iter()
        .find(|replica| **replica != leader)
        .expect("a follower");

    assert_eq!(
        produce_to_partition0(node(&brokers, leader), "lagging", -1, 3)
            .await
            .0,
        0
    );
    stop(&mut brokers, follower).await;
    for _ in 0..10 {
        assert_eq!(
            produce_to_partition0(node(&brokers, leader), "lagging", 1, 5)
                .await
                .0,
            0
        );
    }
    eventually("the stopped follower leaves the ISR", || async {
        let isr = registration(node(&brokers, leader), "lagging").isr;
        isr.len() == 2 && !isr.contains(&follower)
    })
    .await;
    // With the ISR shrunk, acks=all completes again.
    assert_eq!(
        produce_to_partition0(node(&brokers, leader), "lagging", -1, 2)
            .await
            .0,
        0
    );
    let end = log_end_offset(node(&brokers, leader), "lagging");
    assert_eq!(end, Offset(55));

    restart(&mut brokers, dir.path(), &metadata, follower, &extra).await;
    stop_on_drop.watch(&brokers);
    eventually("the follower catches up", || async {
        log_end_offset(node(&brokers, follower), "lagging") == end
    })
    .await;
    eventually("the follower rejoins the ISR", || async {
        registration(node(&brokers, leader), "lagging").isr.len() == 3
    })
    .await;
    assert_eq!(
        log_bytes(node(&brokers, follower), "lagging"),
        log_bytes(node(&brokers, leader), "lagging")
    );
    shutdown_all(brokers).await;
}

/// `min.insync.replicas=2` on two replicas: with the follower stopped and out of the ISR,
/// acks=all is refused before anything is appended; acks=1 still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_below_min_insync_replicas_is_not_enough_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<(&str, &str)> = [FAST, &[("replica.lag.time.max.ms", "600")]].concat();
    let mut brokers = cluster(dir.path(), &extra).await;
    let mut stop_on_drop = StopOnDrop::default();
    stop_on_drop.watch(&brokers);
    create_topic(
        brokers[0].as_ref().unwrap(),
        "guarded",
        2,
        &[("min.insync.replicas", "2")],
    )
    .await;
    let registered = registration(brokers[0].as_ref().unwrap(), "guarded");
    let leader = registered.leader;
    let follower = *registered
        .replicas
        .iter()
        .find(|replica| **replica != leader)
        .unwrap();
    assert_eq!(
        produce_to_partition0(node(&brokers, leader), "guarded", -1, 2)
            .await
            .0,
        0
    );
    stop(&mut brokers, follower).await;
    // A follower stopped at the log end is still caught up (Kafka's rule) until records arrive.
    assert_eq!(
        produce_to_partition0(node(&brokers, leader), "guarded", 1, 2)
            .await
            .0,
        0
    );
    eventually("the stopped follower leaves the ISR", || async {
        registration(node(&brokers, leader), "guarded").isr == vec![leader]
    })
    .await;
    let before = log_end_offset(node(&brokers, leader), "guarded");
    let (error, _) = produce_to_partition0(node(&brokers, leader), "guarded", -1, 2).await;
    assert_eq!(error, ErrorCode::NotEnoughReplicas.code());
    assert_eq!(log_end_offset(node(&brokers, leader), "guarded"), before);
    assert_eq!(
        produce_to_partition0(node(&brokers, leader), "guarded", 1, 2)
            .await
            .0,
        0
    );
    shutdown_all(brokers).await;
}

/// KIP-101: the leader holds records its followers never got (acks=1, followers stopped); the
/// controller moves leadership to a follower; the old leader becomes a follower and truncates
/// its divergent tail, and every acknowledged acks=all record survives on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_makes_the_old_one_truncate_its_divergent_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut brokers = cluster(dir.path(), FAST).await;
    let mut stop_on_drop = StopOnDrop::default();
    stop_on_drop.watch(&brokers);
    let metadata = brokers[0].as_ref().unwrap().broker.metadata.clone();
    create_topic(brokers[0].as_ref().unwrap(), "diverging", 3, &[]).await;
    let registered = registration(brokers[0].as_ref().unwrap(), "diverging");
    let old_leader = registered.leader;
    let followers: Vec<NodeId> = registered
        .replicas
        .iter()
        .copied()
        .filter(|replica| *replica != old_leader)
        .collect();

    // Acknowledged by the whole ISR.
    for _ in 0..3 {
        assert_eq!(
            produce_to_partition0(node(&brokers, old_leader), "diverging", -1, 4)
                .await
                .0,
            0
        );
    }
    let acknowledged = log_bytes(node(&brokers, old_leader), "diverging");
    assert_eq!(batches(&acknowledged).len(), 3);

    // The followers stop; the leader takes records only it will ever have.
    for follower in &followers {
        stop(&mut brokers, *follower).await;
    }
    for _ in 0..2 {
        assert_eq!(
            produce_to_partition0(node(&brokers, old_leader), "diverging", 1, 5)
                .await
                .0,
            0
        );
    }
    assert_eq!(
        log_end_offset(node(&brokers, old_leader), "diverging"),
        Offset(22)
    );

    // The controller elects the first follower (as a controller would from the ISR).
    let new_leader = followers[0];
    let topic_id = node(&brokers, old_leader)
        .broker
        .image()
        .topic("diverging")
        .unwrap()
        .topic_id;
    // The single-node controller shared by the brokers: write the election's record directly.
    let MetadataService::Local(controller) = metadata.clone() else {
        panic!("the in-process cluster shares a local controller")
    };
    tokio::task::spawn_blocking(move || {
        controller.write(move |image| {
            let current = image
                .topic_by_id(&topic_id)
                .and_then(|topic| topic.partitions.get(&PartitionIndex(0)).cloned())
                .expect("registered");
            Ok((
                vec![MetadataRecord::Partition {
                    topic_id,
                    partition: PartitionIndex(0),
                    replicas: current.replicas.clone(),
                    isr: current.replicas.clone(),
                    leader: new_leader,
                    leader_epoch: LeaderEpoch(current.leader_epoch.0 + 1),
                    partition_epoch: current.partition_epoch + 1,
                }],
                (),
            ))
        })
    })
    .await
    .unwrap()
    .expect("leader moved");
    eventually("the old leader follows", || async {
        !node(&brokers, old_leader)
            .broker
            .partition(&TopicPartition::new("diverging", 0))
            .unwrap()
            .is_leader()
    })
    .await;
    for follower in &followers {
        restart(&mut brokers, dir.path(), &metadata, *follower, FAST).await;
    }
    stop_on_drop.watch(&brokers);

    eventually(
        "the old leader truncates to the new leader's log",
        || async { log_end_offset(node(&brokers, old_leader), "diverging") == Offset(12) },
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            produce_to_partition0(node(&brokers, new_leader), "diverging", -1, 3)
                .await
                .0,
            0
        );
    }
    let new_log = log_bytes(node(&brokers, new_leader), "diverging");
    assert!(
        new_log.starts_with(&acknowledged),
        "acknowledged records survive"
    );
    let epochs: Vec<(i64, i32)> = batches(&new_log);
    assert_eq!(epochs.len(), 5);
    assert!(epochs[3].1 > epochs[2].1, "new records carry the new epoch");
    eventually("every replica holds the new leader's log", || async {
        brokers
            .iter()
            .flatten()
            .all(|broker| log_end_offset(broker, "diverging") == Offset(18))
    })
    .await;
    for broker in brokers.iter().flatten() {
        assert_eq!(log_bytes(broker, "diverging"), new_log);
    }
    shutdown_all(brokers).await;
}

/// AlterPartition's checks: a stale leader epoch is fenced, a stale partition epoch or an ISR
/// without the leader refused; a valid change bumps the partition epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_partition_checks_epochs_and_commits_with_the_next_partition_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let brokers = cluster(dir.path(), FAST).await;
    let mut stop_on_drop = StopOnDrop::default();
    stop_on_drop.watch(&brokers);
    let first = brokers[0].as_ref().unwrap();
    create_topic(first, "altered", 3, &[]).await;
    let registered = registration(first, "altered");
    let topic_id = first.broker.image().topic("altered").unwrap().topic_id;
    let leader = registered.leader;
    let proposal = |leader_epoch: i32, partition_epoch: i32, isr: Vec<NodeId>| IsrProposal {
        leader_epoch: LeaderEpoch(leader_epoch),
        partition_epoch: PartitionEpoch(partition_epoch),
        new_isr: isr,
    };
    let epoch = registered.leader_epoch.0;
    let version = registered.partition_epoch;
    let shrunk: Vec<NodeId> = vec![leader];
    let alter = |proposal: IsrProposal| {
        caudal_server::replication::alter_partition(
            &first.broker,
            topic_id,
            PartitionIndex(0),
            proposal,
        )
    };
    assert_eq!(
        alter(proposal(epoch - 1, version, shrunk.clone())).await,
        Err(ErrorCode::FencedLeaderEpoch)
    );
    assert_eq!(
        alter(proposal(epoch, version + 1, shrunk.clone())).await,
        Err(ErrorCode::InvalidUpdateVersion)
    );
    let without_leader: Vec<NodeId> = registered
        .replicas
        .iter()
        .copied()
        .filter(|replica| *replica != leader)
        .collect();
    assert_eq!(
        alter(proposal(epoch, version, without_leader)).await,
        Err(ErrorCode::InvalidRequest)
    );
    assert_eq!(
        alter(proposal(epoch, version, shrunk.clone())).await,
        Ok((shrunk.clone(), version + 1))
    );
    // The followers are still caught up: the leader adds them back, one change at a time.
    eventually("the followers rejoin the ISR", || async {
        let registered = registration(first, "altered");
        registered.isr.len() == 3 && registered.partition_epoch == version + 3
    })
    .await;
    shutdown_all(brokers).await;
}
