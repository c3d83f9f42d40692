//! The Raft metadata quorum (openraft): the controllers replicate the metadata records through a
//! Raft log, so every controller folds the same records in the same order into the same image.
//!
//! - [`log_store`]: the Raft log and vote on disk (CRC-framed entries, fsynced; torn tail truncated).
//! - [`state_machine`]: applies committed entries to a `MetadataImage`, publishes it, snapshots it.
//! - [`network`]: the controller-to-controller RPCs over TCP.
//! - [`brokers`]: broker leases (heartbeats, fencing) and the leadership changes they cause.
//! - [`Quorum`]: what the server uses: start, read/subscribe to the image, write a decision.
//!
//! Invariants: one controller decision is one Raft entry (a batch of records), so it applies
//! atomically; a decision runs only on the leader, against an image that includes every entry
//! committed before it (linearizable check first), and writes are serialised on that leader; an
//! image is published only after its entry is committed by a majority and applied.

pub mod brokers;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use caudal_metadata::{MetadataImage, MetadataRecord};
use caudal_model::NodeId;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::decisions::ControllerError;
use log_store::{LogStore, LogStoreError};
use network::Network;
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

/// One controller of the metadata quorum.
pub struct Quorum {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    state_machine: StateMachineStore,
    write_lock: tokio::sync::Mutex<()>,
    server: JoinHandle<()>,
    local_addr: SocketAddr,
    write_timeout: Duration,
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
        let server = tokio::spawn(network::serve(listener, raft.clone()));
        let quorum = Quorum {
            node_id: config.node_id,
            raft,
            state_machine,
            write_lock: tokio::sync::Mutex::new(()),
            server,
            local_addr,
            write_timeout: tuning.write_timeout,
        };
        let lowest = voters.keys().next().copied();
        if pristine && lowest == Some(id) {
            match quorum.raft.initialize(voters).await {
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
        self.node_id
    }

    /// The address the controller listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The latest image this node has applied (on a follower it may trail the leader's).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.state_machine.image()
    }

    /// A receiver that sees every image this node applies.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.state_machine.subscribe()
    }

    /// The current leader (active controller), as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(node_id)
    }

    /// Raft's metrics (term, leader, log and snapshot positions), for status and tests.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// Runs one decision on the leader: confirms leadership and waits until the image includes
    /// every committed entry, runs `decide` on it, proposes the records as one entry and returns
    /// once that entry is committed and applied here. Writes on one leader are serialised. On a
    /// follower: [`WriteError::NotController`] with the leader, if known.
    pub async fn write<T>(
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
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter_map(node_id)
            .collect()
    }

    /// Stops Raft and the controller listener.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "stopping Raft failed");
        }
        self.server.abort();
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        self.server.abort();
    }
}
