//! The Raft metadata quorum with three (and one) in-process controllers on 127.0.0.1: election,
//! replicated writes, refusal on followers, failover, catch-up from the log and from a snapshot,
//! restart from disk, and recovery from a torn log tail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caudal_controller::ControllerError;
use caudal_controller::quorum::log_store::{LogStore, RAFT_LOG_FILE};
use caudal_controller::quorum::state_machine::{SNAPSHOT_FILE, image_records};
use caudal_controller::quorum::{Quorum, QuorumConfig, QuorumTuning, WriteError};
use caudal_metadata::{ConfigResource, MetadataImage, MetadataRecord};
use caudal_model::NodeId;
use tokio::net::TcpListener;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn tuning() -> QuorumTuning {
    QuorumTuning {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        snapshot_after_entries: 5000,
        entries_kept_after_snapshot: 1000,
        write_timeout: Duration::from_secs(5),
        // These tests count records: no periodic leader writes (cluster id, fencing).
        lease_check_interval: None,
        ..QuorumTuning::default()
    }
}

struct Cluster {
    _root: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    voters: Vec<(NodeId, SocketAddr)>,
    nodes: Vec<Option<Quorum>>,
    tuning: QuorumTuning,
}

impl Cluster {
    async fn start(size: usize, tuning: QuorumTuning) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut voters = Vec::new();
        let mut dirs = Vec::new();
        for index in 0..size {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.push((NodeId(index as i32 + 1), listener.local_addr().unwrap()));
            listeners.push(listener);
            dirs.push(root.path().join(format!("node-{}", index + 1)));
        }
        let mut cluster = Cluster {
            _root: root,
            dirs,
            voters,
            nodes: Vec::new(),
            tuning,
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let quorum = Quorum::start_on(cluster.config(index), listener)
                .await
                .unwrap();
            cluster.nodes.push(Some(quorum));
        }
        cluster
    }

    fn config(&self, index: usize) -> QuorumConfig {
        QuorumConfig {
            node_id: self.voters[index].0,
            dir: self.dirs[index].clone(),
            listen: self.voters[index].1,
            voters: self.voters.clone(),
            tuning: self.tuning.clone(),
        }
    }

    fn node(&self, index: usize) -> &Quorum {
        self.nodes[index].as_ref().expect("node is running")
    }

    async fn stop(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.shutdown().await;
        }
    }

    async fn restart(&mut self, index: usize) {
        self.stop(index).await;
        let deadline = Instant::now() + WAIT;
        let quorum = loop {
            match Quorum::start(self.config(index)).await {
                Ok(quorum) => break quorum,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("restart of node {index} failed, retrying: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("node {index} did not restart: {error}"),
            }
        };
        self.nodes[index] = Some(quorum);
    }

    /// The index of the node every running node agrees leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let running: Vec<_> = self.nodes.iter().flatten().collect();
            let leaders: Vec<_> = running.iter().map(|node| node.leader()).collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|seen| *seen == Some(*leader))
                && let Some(index) = self.voters.iter().position(|(id, _)| id == leader)
                && self.nodes[index].is_some()
            {
                return index;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn write_topic(&self, name: &str) -> u64 {
        let leader = self.leader().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let attempt = self
                .node(leader)
                .write(|image| {
                    if image.topic(name).is_some() {
                        return Err(ControllerError::TopicAlreadyExists { name: name.into() });
                    }
                    Ok((vec![topic(name)], image.last_applied + 1))
                })
                .await;
            match attempt {
                Ok(applied) => return applied,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("write of {name} failed, retrying: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("write of {name} failed: {error}"),
            }
        }
    }

    /// Waits until every running node has applied `last_applied` records, returning their images.
    async fn converged(&self, last_applied: u64) -> Vec<Arc<MetadataImage>> {
        let mut images = Vec::new();
        for node in self.nodes.iter().flatten() {
            let image = node.wait_for_image(last_applied, WAIT).await;
            assert!(
                image.last_applied >= last_applied,
                "node {:?} stuck at {} of {last_applied} records",
                node.node_id(),
                image.last_applied
            );
            images.push(image);
        }
        images
    }

    async fn shutdown(mut self) {
        for index in 0..self.nodes.len() {
            self.stop(index).await;
        }
    }
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
    }
}

fn topic_names(image: &MetadataImage) -> Vec<String> {
    image.topics().map(|topic| topic.name.clone()).collect()
}

/// The image in comparable form.
fn canonical(image: &MetadataImage) -> (u64, Vec<MetadataRecord>) {
    let resources = [ConfigResource::BrokerDefault].into_iter().collect();
    let mut records = image_records(image, &resources);
    records.sort_by_key(|record| format!("{record:?}"));
    (image.last_applied, records)
}

fn assert_same(images: &[Arc<MetadataImage>]) {
    let first = canonical(&images[0]);
    for image in &images[1..] {
        assert_eq!(canonical(image), first);
    }
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_replicate_refuse_on_followers_and_fail_over() {
    bounded(async {
        let mut cluster = Cluster::start(3, tuning()).await;
        let leader = cluster.leader().await;
        assert_eq!(cluster.node(0).voters().len(), 3);

        // Writes through the leader reach every image in the same order.
        let mut applied = 0;
        for name in ["a", "b", "c"] {
            applied = cluster.write_topic(name).await;
        }
        let images = cluster.converged(applied).await;
        assert_same(&images);
        assert_eq!(topic_names(&images[0]), ["a", "b", "c"]);

        // A decision that refuses writes nothing.
        let refused = cluster
            .node(leader)
            .write(|_| -> Result<(Vec<MetadataRecord>, ()), _> {
                Err(ControllerError::TopicAlreadyExists { name: "a".into() })
            })
            .await;
        assert!(matches!(refused, Err(WriteError::Rejected(_))));

        // A follower refuses and names the leader.
        let follower = (leader + 1) % 3;
        let leader_id = cluster.voters[leader].0;
        let refused = cluster
            .node(follower)
            .write(|_| Ok((vec![topic("never")], ())))
            .await;
        match refused {
            Err(WriteError::NotController { leader }) => assert_eq!(leader, Some(leader_id)),
            other => panic!("a follower wrote: {other:?}"),
        }

        // The leader stops: another is elected within a few seconds and writes continue.
        cluster.stop(leader).await;
        let started = Instant::now();
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, leader);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failover took {:?}",
            started.elapsed()
        );
        let applied = cluster.write_topic("d").await;
        let images = cluster.converged(applied).await;
        assert_same(&images);
        assert_eq!(topic_names(&images[0]), ["a", "b", "c", "d"]);

        // The old leader comes back and catches up from the log.
        cluster.restart(leader).await;
        let images = cluster.converged(applied).await;
        assert_eq!(images.len(), 3);
        assert_same(&images);
        assert!(cluster.node(leader).metrics().borrow().snapshot.is_none());
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_is_sent_a_snapshot() {
    bounded(async {
        let mut cluster = Cluster::start(
            3,
            QuorumTuning {
                snapshot_after_entries: 5,
                entries_kept_after_snapshot: 0,
                ..tuning()
            },
        )
        .await;
        let leader = cluster.leader().await;
        let lagging = (leader + 1) % 3;
        let applied = cluster.write_topic("first").await;
        cluster.converged(applied).await;
        let lagging_last = cluster.node(lagging).metrics().borrow().last_log_index;
        let lagging_last = lagging_last.expect("the lagging node has entries");
        cluster.stop(lagging).await;

        let mut applied = 0;
        for index in 0..20 {
            applied = cluster.write_topic(&format!("t{index:02}")).await;
        }
        // The leader snapshots and purges the entries the lagging node misses.
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = cluster.node(leader).metrics().borrow().clone();
            // Purged past the lagging node's last entry: it can only catch up from a snapshot.
            if metrics
                .purged
                .is_some_and(|purged| purged.index > lagging_last)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leader never purged: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cluster.dirs[leader].join(SNAPSHOT_FILE).exists());

        cluster.restart(lagging).await;
        let images = cluster.converged(applied).await;
        assert_same(&images);
        assert_eq!(topic_names(&images[0]).len(), 21);
        let snapshot = cluster.node(lagging).metrics().borrow().snapshot;
        assert!(snapshot.is_some(), "the lagging node installed no snapshot");

        // Its restored image survives a restart of the whole cluster too.
        for index in 0..3 {
            cluster.stop(index).await;
        }
        for index in 0..3 {
            cluster.restart(index).await;
        }
        let images = cluster.converged(applied).await;
        assert_same(&images);
        assert_eq!(topic_names(&images[0]).len(), 21);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_restart_with_the_same_image() {
    bounded(async {
        let mut cluster = Cluster::start(3, tuning()).await;
        let mut applied = 0;
        for name in ["x", "y", "z"] {
            applied = cluster.write_topic(name).await;
        }
        let before = cluster.converged(applied).await;
        for index in 0..3 {
            cluster.stop(index).await;
        }
        // Alone, with no leader to hear from, a restarted node already serves its committed image.
        cluster.restart(0).await;
        let alone = cluster.node(0).wait_for_image(applied, WAIT).await;
        assert_eq!(canonical(&alone), canonical(&before[0]));
        assert_eq!(cluster.node(0).leader(), None);
        for index in 1..3 {
            cluster.restart(index).await;
        }
        let after = cluster.converged(applied).await;
        assert_same(&after);
        assert_eq!(canonical(&after[0]), canonical(&before[0]));
        // Restarting did not form a second cluster: the original entries are all there once.
        assert_eq!(topic_names(&after[0]), ["x", "y", "z"]);
        assert_eq!(after[0].last_applied, applied);
        let applied = cluster.write_topic("w").await;
        assert_same(&cluster.converged(applied).await);
        cluster.shutdown().await;
    })
    .await;
}

fn damage_tail(dir: &Path) {
    let path = dir.join(RAFT_LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64);
    // A torn last frame, then garbage after it.
    bytes.truncate(bytes.len() - 7);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4]);
    std::fs::write(&path, &bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_tail_is_truncated_and_the_node_recovers_from_the_others() {
    bounded(async {
        let mut cluster = Cluster::start(3, tuning()).await;
        let leader = cluster.leader().await;
        let mut applied = 0;
        for name in ["p", "q", "r"] {
            applied = cluster.write_topic(name).await;
        }
        cluster.converged(applied).await;
        let damaged = (leader + 2) % 3;
        cluster.stop(damaged).await;
        damage_tail(&cluster.dirs[damaged]);
        cluster.restart(damaged).await;
        let applied = cluster.write_topic("s").await;
        let images = cluster.converged(applied).await;
        assert_eq!(images.len(), 3);
        assert_same(&images);
        assert_eq!(topic_names(&images[0]), ["p", "q", "r", "s"]);
        // The damage was cut away at restart: the file now replays cleanly.
        cluster.stop(damaged).await;
        let (_, report) = LogStore::open(&cluster.dirs[damaged]).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert!(report.entries >= 4);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_forms_its_own_quorum_and_restarts() {
    bounded(async {
        let mut cluster = Cluster::start(1, tuning()).await;
        assert_eq!(cluster.leader().await, 0);
        let applied = cluster.write_topic("solo").await;
        cluster.restart(0).await;
        let images = cluster.converged(applied).await;
        assert_eq!(topic_names(&images[0]), ["solo"]);
        assert_eq!(cluster.leader().await, 0);
        let applied = cluster.write_topic("again").await;
        let images = cluster.converged(applied).await;
        assert_eq!(topic_names(&images[0]), ["again", "solo"]);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_node_outside_the_voters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = QuorumConfig {
        node_id: NodeId(4),
        dir: dir.path().to_path_buf(),
        listen: addr,
        voters: vec![(NodeId(1), addr)],
        tuning: tuning(),
    };
    assert!(Quorum::start_on(config, listener).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_controller_port_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let cluster = Cluster::start(1, tuning()).await;
        cluster.leader().await;
        let addr = cluster.voters[0].1;
        // A length beyond the frame limit, then a well-sized frame that is not JSON.
        for bytes in [
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            vec![0, 0, 0, 3, b'{', b'x', b'}'],
        ] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            let mut buf = [0u8; 16];
            let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "the connection was not closed: {read:?}"
            );
        }
        // The controller still works.
        let applied = cluster.write_topic("after-garbage").await;
        assert_eq!(cluster.converged(applied).await.len(), 1);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn frames_round_trip_and_oversized_lengths_are_refused() {
    use caudal_controller::quorum::network::{FRAME_BYTES_MAX, read_frame, write_frame};
    let mut buf = Vec::new();
    write_frame(&mut buf, &vec![1u32, 2, 3]).await.unwrap();
    let mut reader = buf.as_slice();
    let decoded: Option<Vec<u32>> = read_frame(&mut reader).await.unwrap();
    assert_eq!(decoded, Some(vec![1, 2, 3]));
    let empty: Option<Vec<u32>> = read_frame(&mut reader).await.unwrap();
    assert_eq!(empty, None);
    let oversized = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes();
    let refused = read_frame::<_, Vec<u32>>(&mut oversized.as_slice()).await;
    assert!(refused.is_err());
    let torn = [0u8, 0, 0, 9, b'['];
    assert!(
        read_frame::<_, Vec<u32>>(&mut torn.as_slice())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_decide_against_the_previous_ones() {
    bounded(async {
        let cluster = Cluster::start(3, tuning()).await;
        let leader = cluster.node(cluster.leader().await);
        // Each decision names its topic after how many exist: only serialised decisions, each
        // seeing every earlier one, produce six distinct names.
        let next = || {
            leader.write(|image| {
                let name = format!("n{}", image.topics().count());
                if image.topic(&name).is_some() {
                    return Err(ControllerError::TopicAlreadyExists { name });
                }
                Ok((vec![topic(&name)], image.last_applied + 1))
            })
        };
        let results = tokio::join!(next(), next(), next(), next(), next(), next());
        let mut applied = [
            results.0, results.1, results.2, results.3, results.4, results.5,
        ]
        .map(|result| result.expect("write succeeded"));
        applied.sort_unstable();
        assert_eq!(applied, [1, 2, 3, 4, 5, 6]);
        // A decision with nothing to write changes nothing.
        let unchanged = leader
            .write(|image| Ok((Vec::new(), image.last_applied)))
            .await;
        assert_eq!(unchanged.unwrap(), 6);
        let images = cluster.converged(6).await;
        assert_same(&images);
        assert_eq!(
            topic_names(&images[0]),
            ["n0", "n1", "n2", "n3", "n4", "n5"]
        );
        cluster.shutdown().await;
    })
    .await;
}
