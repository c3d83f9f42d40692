//! A broker without the controller role (Kafka's broker-only node, a Raft observer in KRaft):
//! it holds no Raft log and casts no vote, but follows the controllers' committed image and sends
//! its commands to the active controller.
//!
//! A background task long-polls one controller with [`RaftRequest::FetchMetadata`], preferring
//! the leader that controller names; the answer is the whole committed image as records, rebuilt
//! with the same fold as a snapshot ([`rebuild_image`]), so the observer's image is the
//! controller's. An image is published only when it has applied more records than the one held,
//! so a lagging controller never takes the observer back. On an error the task moves to the next
//! voter after a backoff of 100 ms, doubling up to 500 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caudal_metadata::MetadataImage;
use caudal_model::NodeId;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SubmitError;
use super::network::{
    self, CONNECT_TIMEOUT, FETCH_METADATA_WAIT, ForwardFailure, ForwardedError, MetadataUpdate,
    RaftReply, RaftRequest, read_frame, write_frame,
};
use super::state_machine::rebuild_image;
use crate::command::{Command, CommandReply};

/// The shortest wait before asking another controller after a failed fetch.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest such wait.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Consecutive failed fetches between warnings.
const FAILURES_WARN: u32 = 20;
/// How long a fetch may wait for its answer beyond the controller's long-poll wait.
const FETCH_SLACK: Duration = Duration::from_secs(5);

/// How long an observer's commands may take.
#[derive(Debug, Clone)]
pub struct ObserverTuning {
    /// How long [`Observer::submit`] keeps retrying while no leader is known or reachable
    /// (as `QuorumTuning::submit_timeout`).
    pub submit_timeout: Duration,
    /// How long one forwarded command may wait for its answer (the leader's write timeout and
    /// then some).
    pub answer_timeout: Duration,
}

impl Default for ObserverTuning {
    fn default() -> Self {
        Self {
            submit_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(11),
        }
    }
}

/// What the observer's fetch task shares with it.
struct Shared {
    voters: Vec<(NodeId, SocketAddr)>,
    image: watch::Sender<Arc<MetadataImage>>,
    leader: Mutex<Option<NodeId>>,
}

impl Shared {
    fn address(&self, node: NodeId) -> Option<SocketAddr> {
        self.voters
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, addr)| *addr)
    }

    fn set_leader(&self, leader: Option<NodeId>) {
        *self.leader.lock() = leader;
    }
}

/// A follower of the metadata quorum that is not a member of it.
pub struct Observer {
    shared: Arc<Shared>,
    tuning: ObserverTuning,
    fetcher: JoinHandle<()>,
}

impl Observer {
    /// Starts following the controllers `voters` (id and controller address, as in
    /// `controller.quorum.voters`) with the default tuning. Must run inside a Tokio runtime.
    pub fn start(voters: Vec<(NodeId, SocketAddr)>) -> Observer {
        Self::start_tuned(voters, ObserverTuning::default())
    }

    /// [`Observer::start`] with the given tuning.
    pub fn start_tuned(voters: Vec<(NodeId, SocketAddr)>, tuning: ObserverTuning) -> Observer {
        let (image, _) = watch::channel(Arc::new(MetadataImage::default()));
        let shared = Arc::new(Shared {
            voters,
            image,
            leader: Mutex::new(None),
        });
        let fetcher = tokio::spawn(follow(shared.clone()));
        Observer {
            shared,
            tuning,
            fetcher,
        }
    }

    /// The newest image received (empty, `last_applied` 0, until the first arrives).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.shared.image.borrow().clone()
    }

    /// A receiver that sees every image this observer publishes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.image.subscribe()
    }

    /// The active controller as last heard from a controller, if any.
    pub fn leader(&self) -> Option<NodeId> {
        *self.shared.leader.lock()
    }

    /// Sends a broker's command to the active controller: the last known leader first, then the
    /// leader a controller names, else each voter in turn. Retries (every 50 ms) while no
    /// controller accepts it, for at most `ObserverTuning::submit_timeout`; the errors are
    /// `Quorum::submit`'s. A retry after a dropped connection may find the first attempt's
    /// effect, as with Kafka's forwarding.
    pub async fn submit(&self, command: Command) -> Result<CommandReply, SubmitError> {
        let shared = &self.shared;
        if shared.voters.is_empty() {
            return Err(SubmitError::Unavailable("no controller voters".into()));
        }
        let deadline = Instant::now() + self.tuning.submit_timeout;
        let mut next_voter = 0usize;
        let mut hint = self.leader();
        let mut last_problem: String;
        loop {
            let target = hint
                .take()
                .and_then(|leader| shared.address(leader).map(|addr| (leader, addr)));
            let (node, addr) = match target {
                Some(target) => target,
                None => {
                    let voter = shared.voters[next_voter % shared.voters.len()];
                    next_voter += 1;
                    voter
                }
            };
            let address = addr.to_string();
            let mut follow_hint = false;
            match network::forward(&address, command.clone(), self.tuning.answer_timeout).await {
                Ok(Ok(reply)) => {
                    shared.set_leader(Some(node));
                    return Ok(reply);
                }
                Ok(Err(ForwardedError::Rejected(error))) => {
                    shared.set_leader(Some(node));
                    return Err(SubmitError::Rejected(error));
                }
                Ok(Err(ForwardedError::Unavailable(reason))) => {
                    return Err(SubmitError::Unavailable(reason));
                }
                Ok(Err(ForwardedError::NotController { leader })) => {
                    last_problem = format!("controller {} is not the leader", node.0);
                    if let Some(leader) = leader
                        && leader != node
                    {
                        shared.set_leader(Some(leader));
                        hint = Some(leader);
                        follow_hint = true;
                    }
                }
                Ok(Err(ForwardedError::ShutDown)) => {
                    last_problem = format!("controller {} is shutting down", node.0);
                }
                Err(ForwardFailure::NotSent(error)) => {
                    last_problem = format!("controller {} at {addr} unreachable: {error}", node.0);
                }
                Err(ForwardFailure::Lost(error))
                    if error.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(SubmitError::Unavailable(format!(
                        "no answer from controller {} at {addr}: {error}",
                        node.0
                    )));
                }
                // Dropped before the answer: sent again; the decision sees any earlier effect.
                Err(ForwardFailure::Lost(error)) => {
                    last_problem = format!(
                        "controller {} at {addr} dropped the connection: {error}",
                        node.0
                    );
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SubmitError::Unavailable(format!(
                    "no active controller within {:?}: {last_problem}",
                    self.tuning.submit_timeout
                )));
            }
            if !follow_hint {
                tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
            }
        }
    }

    /// Stops following the controllers; the last image stays readable.
    pub async fn shutdown(&self) {
        self.fetcher.abort();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

/// Long-polls the controllers for newer images until aborted.
async fn follow(shared: Arc<Shared>) {
    if shared.voters.is_empty() {
        tracing::error!("no controller voters to follow");
        return;
    }
    let mut current = 0usize;
    let mut connection: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let (node, addr) = shared.voters[current % shared.voters.len()];
        let after = shared.image.borrow().last_applied;
        match fetch(&mut connection, addr, after).await {
            Ok(update) => {
                backoff = BACKOFF_MIN;
                failures = 0;
                if let Some(leader) = update.leader {
                    shared.set_leader(Some(leader));
                }
                if let Some(records) = update.image {
                    let image = rebuild_image(&records.records, records.last_applied);
                    // Never back to an older image (another controller may have sent it).
                    shared.image.send_if_modified(|held| {
                        if image.last_applied > held.last_applied {
                            *held = Arc::new(image);
                            true
                        } else {
                            false
                        }
                    });
                }
                match update.leader {
                    // Follow the leader: its image is the newest committed one.
                    Some(leader) if leader != node => {
                        if let Some(index) = shared.voters.iter().position(|(id, _)| *id == leader)
                        {
                            current = index;
                            connection = None;
                        }
                    }
                    Some(_) => {}
                    // A controller that knows no leader may be cut off from the quorum.
                    None => {
                        current += 1;
                        connection = None;
                    }
                }
            }
            Err(error) => {
                failures += 1;
                // Every failure at debug; a run of them (about 10 s) at warn.
                if failures.is_multiple_of(FAILURES_WARN) {
                    tracing::warn!(controller = node.0, %addr, %error, failures, "no controller answers metadata fetches; keeping the last image");
                } else {
                    tracing::debug!(controller = node.0, %addr, %error, "fetching metadata failed; trying the next controller");
                }
                connection = None;
                current += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One FetchMetadata exchange on `connection` (opened to `addr` when there is none).
async fn fetch(
    connection: &mut Option<TcpStream>,
    addr: SocketAddr,
    after: u64,
) -> std::io::Result<MetadataUpdate> {
    use std::io::{Error, ErrorKind};
    if connection.is_none() {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::TimedOut, "connect timed out")))?;
        stream.set_nodelay(true)?;
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else {
        return Err(Error::other("no connection"));
    };
    let exchange = async {
        write_frame(stream, &RaftRequest::FetchMetadata { after }).await?;
        read_frame::<_, RaftReply>(stream).await
    };
    match tokio::time::timeout(FETCH_METADATA_WAIT + FETCH_SLACK, exchange).await {
        Err(_) => Err(Error::new(
            ErrorKind::TimedOut,
            "no metadata answer in time",
        )),
        Ok(Err(error)) => Err(error),
        Ok(Ok(None)) => Err(Error::new(
            ErrorKind::UnexpectedEof,
            "controller closed the connection",
        )),
        Ok(Ok(Some(RaftReply::FetchMetadata(update)))) => Ok(update),
        Ok(Ok(Some(_))) => Err(Error::new(
            ErrorKind::InvalidData,
            "controller answered with a different kind of reply",
        )),
    }
}
