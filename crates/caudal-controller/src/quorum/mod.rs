//! The Raft metadata quorum (openraft): the controllers replicate the metadata records through a
//! Raft log, so every controller folds the same records in the same order into the same image.
//!
//! - [`log_store`]: the Raft log and vote on disk (CRC-framed entries, fsynced; torn tail truncated).
//! - [`state_machine`]: applies committed entries to a `MetadataImage`, publishes it, snapshots it.
//! - [`network`]: the controller-to-controller RPCs over TCP.
//! - [`brokers`]: broker leases (heartbeats, fencing) and the leadership changes they cause.
//! - [`Quorum`]: what the server uses: start, read/subscribe to the image, write a decision.
//! - [`observer`]: a broker without the controller role: follows the committed image through
//!   any controller (FetchMetadata long polls) and sends its commands to the leader.
//!
//! Invariants: one controller decision is one Raft entry (a batch of records), so it applies
//! atomically; a decision runs only on the leader, against an image that includes every entry
//! committed before it (linearizable check first), and writes are serialised on that leader; an
//! image is published only after its entry is committed by a majority and applied.

pub mod brokers;
pub mod log_store;
pub mod network;
pub mod observer;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caudal_metadata::{MetadataImage, MetadataRecord};
use caudal_model::NodeId;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command::{Command, CommandError, CommandReply, initialize_cluster};
use crate::decisions::ControllerError;
use crate::replication::{apply_all, complete_reassignments};
use brokers::{BrokerLeases, fence_brokers};
use log_store::{LogStore, LogStoreError};
use network::Network;
pub use observer::{Observer, ObserverTuning};
use state_machine::StateMachineStore;

/// One controller decision: the records it appends, applied together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    pub records: Vec<MetadataRecord>,
}

/// What applying one entry produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEntry {
    /// The entry's Raft log index.
    pub index: u64,
    /// `MetadataImage::last_applied` after it.
    pub image_last_applied: u64,
}

openraft::declare_raft_types!(
    /// The quorum's openraft types: entries carry a [`MetadataBatch`]; nodes are controller ids
    /// with their controller listener address.
    pub TypeConfig:
        D = MetadataBatch,
        R = AppliedEntry,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft timing and log retention. The defaults suit a LAN.
#[derive(Debug, Clone)]
pub struct QuorumTuning {
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the snapshot (followers this close catch up from the log).
    pub entries_kept_after_snapshot: u64,
    /// How long a write may wait for leadership confirmation, commit and apply.
    pub write_timeout: Duration,
    /// How long [`Quorum::submit`] keeps retrying while no leader is known or reachable.
    pub submit_timeout: Duration,
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub broker_session_timeout: Duration,
    /// How often the leader fences brokers whose session lapsed (and writes the cluster id if
    /// there is none). `None` turns these duties off (tests of Raft alone).
    pub lease_check_interval: Option<Duration>,
}

impl Default for QuorumTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_after_entries: 5000,
            entries_kept_after_snapshot: 1000,
            write_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(10),
            broker_session_timeout: brokers::BROKER_SESSION_TIMEOUT,
            lease_check_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// How to start one controller of the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// The metadata directory (Raft log, vote, snapshot).
    pub dir: PathBuf,
    /// The controller listener.
    pub listen: SocketAddr,
    /// Every voter with its controller address, this node included.
    pub voters: Vec<(NodeId, SocketAddr)>,
    pub tuning: QuorumTuning,
}

/// Why the quorum could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] LogStoreError),
    #[error("binding the controller listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting Raft: {0}")]
    Raft(String),
}

/// Why a write did not happen (or, for `Timeout`/`Unavailable`, may not have).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader; `leader` is the current one if known.
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotController { leader: Option<NodeId> },
    /// The decision itself refused the request; nothing was written.
    #[error(transparent)]
    Rejected(ControllerError),
    /// No quorum answered, or the write did not complete in time: its outcome is unknown.
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
    #[error("the metadata quorum is shut down")]
    ShutDown,
}

/// Why a command did not happen (or, for `Unavailable`, may not have).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The decision refused the command; nothing was written. Map `error.error` as a local
    /// `ControllerError`.
    #[error(transparent)]
    Rejected(CommandError),
    /// No leader answered in time, or the command's outcome is unknown: re-read the image
    /// before retrying (Kafka: REQUEST_TIMED_OUT).
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
    #[error("the metadata quorum is shut down")]
    ShutDown,
}

/// One controller of the metadata quorum.
pub struct Quorum {
    core: Arc<Core>,
    server: JoinHandle<()>,
    duties: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    submit_timeout: Duration,
}

/// The leader's broker leases, valid for one term of leadership.
struct LeaderLeases {
    /// The term the leases were reset in; another term (a new leadership) resets them.
    term: Option<u64>,
    leases: BrokerLeases,
}

/// What the listener and the duties task share with the [`Quorum`].
pub(crate) struct Core {
    node_id: NodeId,
    raft_id: u64,
    pub(crate) raft: Raft<TypeConfig>,
    state_machine: StateMachineStore,
    write_lock: tokio::sync::Mutex<()>,
    write_timeout: Duration,
    leases: parking_lot::Mutex<LeaderLeases>,
}

fn raft_id(node_id: NodeId) -> Result<u64, StartError> {
    u64::try_from(node_id.0)
        .map_err(|_| StartError::Config(format!("node id {} is negative", node_id.0)))
}

fn node_id(raft_id: u64) -> Option<NodeId> {
    i32::try_from(raft_id).ok().map(NodeId)
}

impl Quorum {
    /// Binds `config.listen` and starts this controller (see [`Quorum::start_on`]).
    pub async fn start(config: QuorumConfig) -> Result<Quorum, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::start_on(config, listener).await
    }

    /// Starts this controller on an already bound listener: opens the log and snapshot in
    /// `config.dir`, starts Raft, answers peers on `listener`, and — on the lowest-id voter, when
    /// nothing was ever stored — forms the cluster with `config.voters`.
    pub async fn start_on(
        config: QuorumConfig,
        listener: TcpListener,
    ) -> Result<Quorum, StartError> {
        let id = raft_id(config.node_id)?;
        let mut voters = BTreeMap::new();
        for (voter, addr) in &config.voters {
            let previous = voters.insert(
                raft_id(*voter)?,
                BasicNode {
                    addr: addr.to_string(),
                },
            );
            if previous.is_some() {
                return Err(StartError::Config(format!(
                    "voter {} listed twice",
                    voter.0
                )));
            }
        }
        if !voters.contains_key(&id) {
            return Err(StartError::Config(format!(
                "node {} is not among the voters",
                config.node_id.0
            )));
        }
        let tuning = &config.tuning;
        let millis = |duration: Duration| duration.as_millis().try_into().unwrap_or(u64::MAX);
        let raft_config = openraft::Config {
            cluster_name: "caudal-metadata".into(),
            heartbeat_interval: millis(tuning.heartbeat_interval),
            election_timeout_min: millis(tuning.election_timeout_min),
            election_timeout_max: millis(tuning.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_after_entries),
            max_in_snapshot_log_to_keep: tuning.entries_kept_after_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|error| StartError::Config(error.to_string()))?;

        let (log_store, report) = LogStore::open(&config.dir)?;
        let pristine = log_store.is_pristine();
        let state_machine = StateMachineStore::open(&config.dir)?;
        tracing::info!(
            node = id,
            entries = report.entries,
            truncated_bytes = report.truncated_bytes,
            "metadata quorum log opened"
        );
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            Network,
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let core = Arc::new(Core {
            node_id: config.node_id,
            raft_id: id,
            raft,
            state_machine,
            write_lock: tokio::sync::Mutex::new(()),
            write_timeout: tuning.write_timeout,
            leases: parking_lot::Mutex::new(LeaderLeases {
                term: None,
                leases: BrokerLeases::new(tuning.broker_session_timeout),
            }),
        });
        let server = tokio::spawn(network::serve(listener, core.clone()));
        let duties = tuning.lease_check_interval.map(|interval| {
            let core = core.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    core.leader_duties().await;
                }
            })
        });
        let quorum = Quorum {
            core,
            server,
            duties,
            local_addr,
            submit_timeout: tuning.submit_timeout,
        };
        let lowest = voters.keys().next().copied();
        if pristine && lowest == Some(id) {
            match quorum.core.raft.initialize(voters).await {
                Ok(()) => tracing::info!(node = id, "formed the metadata quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => {
                    quorum.shutdown().await;
                    return Err(StartError::Raft(error.to_string()));
                }
            }
        }
        Ok(quorum)
    }

    /// This controller's id.
    pub fn node_id(&self) -> NodeId {
        self.core.node_id
    }

    /// The address the controller listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The latest image this node has applied (on a follower it may trail the leader's).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.core.image()
    }

    /// A receiver that sees every image this node applies.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.core.state_machine.subscribe()
    }

    /// The current leader (active controller), as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.core.leader()
    }

    /// Raft's metrics (term, leader, log and snapshot positions), for status and tests.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.core.raft.metrics()
    }

    /// Runs one decision on the leader: confirms leadership and waits until the image includes
    /// every committed entry, runs `decide` on it, proposes the records as one entry and returns
    /// once that entry is committed and applied here. Writes on one leader are serialised. On a
    /// follower: [`WriteError::NotController`] with the leader, if known.
    pub async fn write<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, WriteError> {
        self.core.write(decide).await
    }

    /// Runs a broker's command on the active controller: here if this node leads, else
    /// forwarded to the leader over the controller listener. While no leader is known, the
    /// leader is unreachable or drops the connection before answering, or the one asked is not
    /// the leader any more, it retries (every 50 ms) for at most `QuorumTuning::submit_timeout`.
    /// A retry after a dropped connection may find the first attempt's effect (a CreateTopic
    /// then answers TOPIC_ALREADY_EXISTS), as with Kafka's forwarding. On the leader, heartbeats and
    /// registrations renew the broker's lease; a heartbeat writes only when the broker's state
    /// changes.
    pub async fn submit(&self, command: Command) -> Result<CommandReply, SubmitError> {
        let deadline = Instant::now() + self.submit_timeout;
        let mut last_problem: String;
        loop {
            match self.core.leader_raft_id() {
                Some(leader) if leader == self.core.raft_id => {
                    match self.core.submit_local(command.clone()).await {
                        Ok(reply) => return Ok(reply),
                        Err(WriteError::NotController { .. }) => {
                            last_problem = "leadership moved".into();
                        }
                        Err(WriteError::Rejected(error)) => {
                            return Err(SubmitError::Rejected(error.into()));
                        }
                        Err(WriteError::Unavailable(reason)) => {
                            return Err(SubmitError::Unavailable(reason));
                        }
                        Err(WriteError::ShutDown) => return Err(SubmitError::ShutDown),
                    }
                }
                Some(leader) => match self.core.leader_addr(leader) {
                    None => last_problem = format!("no address for controller {leader}"),
                    Some(addr) => {
                        let wait = self.core.write_timeout + Duration::from_secs(1);
                        match network::forward(&addr, command.clone(), wait).await {
                            Ok(Ok(reply)) => return Ok(reply),
                            Ok(Err(network::ForwardedError::Rejected(error))) => {
                                return Err(SubmitError::Rejected(error));
                            }
                            Ok(Err(network::ForwardedError::Unavailable(reason))) => {
                                return Err(SubmitError::Unavailable(reason));
                            }
                            Ok(Err(network::ForwardedError::NotController { .. })) => {
                                last_problem = format!("controller {leader} is not the leader");
                            }
                            Ok(Err(network::ForwardedError::ShutDown)) => {
                                last_problem = format!("controller {leader} is shutting down");
                            }
                            Err(network::ForwardFailure::NotSent(error)) => {
                                last_problem =
                                    format!("controller {leader} at {addr} unreachable: {error}");
                            }
                            Err(network::ForwardFailure::Lost(error))
                                if error.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                return Err(SubmitError::Unavailable(format!(
                                    "no answer from controller {leader} at {addr}: {error}"
                                )));
                            }
                            // The connection dropped before the answer (the controller stopped,
                            // or its listener was closing): sent again, as Kafka's forwarding
                            // does; the decision sees any effect of the first attempt.
                            Err(network::ForwardFailure::Lost(error)) => {
                                last_problem = format!(
                                    "controller {leader} at {addr} dropped the connection: {error}"
                                );
                            }
                        }
                    }
                },
                None => last_problem = "no leader known".into(),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SubmitError::Unavailable(format!(
                    "no active controller within {:?}: {last_problem}",
                    self.submit_timeout
                )));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
        }
    }

    /// Waits until this node has applied an image with at least `last_applied` records, or
    /// `timeout` passes; returns the image it saw last.
    pub async fn wait_for_image(&self, last_applied: u64, timeout: Duration) -> Arc<MetadataImage> {
        let mut updates = self.subscribe();
        let _ = tokio::time::timeout(
            timeout,
            updates.wait_for(|image| image.last_applied >= last_applied),
        )
        .await;
        self.image()
    }

    /// The current voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.core
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter_map(node_id)
            .collect()
    }

    /// Stops the leader's duties, Raft and the controller listener.
    pub async fn shutdown(&self) {
        if let Some(duties) = &self.duties {
            duties.abort();
        }
        if let Err(error) = self.core.raft.shutdown().await {
            tracing::warn!(%error, "stopping Raft failed");
        }
        self.server.abort();
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        if let Some(duties) = &self.duties {
            duties.abort();
        }
        self.server.abort();
    }
}

impl Core {
    fn image(&self) -> Arc<MetadataImage> {
        self.state_machine.image()
    }

    fn leader_raft_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    fn leader(&self) -> Option<NodeId> {
        self.leader_raft_id().and_then(node_id)
    }

    /// The controller address of `leader`, from the membership.
    fn leader_addr(&self, leader: u64) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
    }

    /// Runs `f` on the leases if this node leads, resetting them first when this is a new
    /// term of leadership (so a failover fences nobody).
    fn with_leases<R>(
        &self,
        now: Instant,
        f: impl FnOnce(&mut BrokerLeases, &MetadataImage) -> R,
    ) -> Option<R> {
        let (leader, term) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_leader, metrics.current_term)
        };
        if leader != Some(self.raft_id) {
            return None;
        }
        let image = self.image();
        let mut state = self.leases.lock();
        if state.term != Some(term) {
            state.leases.reset(&image, now);
            state.term = Some(term);
        }
        Some(f(&mut state.leases, &image))
    }

    async fn write<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, WriteError> {
        let _serial = self.write_lock.lock().await;
        if self.leader() != Some(self.node_id) {
            return Err(WriteError::NotController {
                leader: self.leader(),
            });
        }
        let deadline = self.write_timeout;
        let work = async {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|error| self.check_error(error))?;
            let image = self.image();
            let (records, result) = decide(&image).map_err(WriteError::Rejected)?;
            if records.is_empty() {
                return Ok(result);
            }
            self.raft
                .client_write(MetadataBatch { records })
                .await
                .map_err(|error| self.client_write_error(error))?;
            Ok(result)
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(WriteError::Unavailable(format!(
                "the write did not complete within {deadline:?}"
            ))),
        }
    }

    fn check_error(&self, error: RaftError<u64, CheckIsLeaderError<u64, BasicNode>>) -> WriteError {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => {
                WriteError::NotController {
                    leader: forward.leader_id.and_then(node_id),
                }
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)) => {
                WriteError::Unavailable(error.to_string())
            }
            RaftError::Fatal(_) => WriteError::ShutDown,
        }
    }

    fn client_write_error(
        &self,
        error: RaftError<u64, ClientWriteError<u64, BasicNode>>,
    ) -> WriteError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                WriteError::NotController {
                    leader: forward.leader_id.and_then(node_id),
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
                WriteError::Unavailable(error.to_string())
            }
            RaftError::Fatal(_) => WriteError::ShutDown,
        }
    }

    /// Runs a command on this node, which must be the leader (else `NotController`).
    pub(crate) async fn submit_local(&self, command: Command) -> Result<CommandReply, WriteError> {
        let now = Instant::now();
        match &command {
            Command::RegisterBroker { node_id, .. } => {
                self.with_leases(now, |leases, _| leases.heartbeat(*node_id, now));
            }
            Command::BrokerHeartbeat { node_id, .. } => {
                self.with_leases(now, |leases, image| {
                    if image.brokers.contains_key(node_id) {
                        leases.heartbeat(*node_id, now);
                    }
                });
            }
            _ => {}
        }
        self.write(|image| command.decide(image)).await
    }

    /// The leader's periodic work: the cluster id if there is none, fencing brokers whose
    /// session lapsed (and the leadership changes that follow), and completing reassignments
    /// whose adding replicas are all in sync. Writes only when there is something to change.
    async fn leader_duties(&self) {
        let now = Instant::now();
        let Some(expired) = self.with_leases(now, |leases, image| {
            leases.adopt(image, now);
            leases.fenced(image, now)
        }) else {
            return;
        };
        let duties = |image: &MetadataImage| {
            let mut records = initialize_cluster(image);
            records.extend(fence_brokers(&apply_all(image, &records), &expired));
            records.extend(complete_reassignments(&apply_all(image, &records)));
            records
        };
        if duties(&self.image()).is_empty() {
            return;
        }
        if !expired.is_empty() {
            tracing::info!(brokers = ?expired, "fencing brokers whose session lapsed");
        }
        if let Err(error) = self.write(|image| Ok((duties(image), ()))).await {
            tracing::debug!(%error, "the leader's periodic metadata write did not happen");
        }
    }
}
