//! Raft RPCs, and broker commands forwarded to the leader, between controllers over TCP: each
//! message is one frame `[length u32 BE][JSON]`,
//! at most [`FRAME_BYTES_MAX`]. A client keeps one connection per peer, reconnecting after any
//! error; every call is bounded by openraft's RPC deadline. The listener answers each request frame
//! with one response frame; a bad frame closes that connection and nothing else. At most
//! [`CONNECTIONS_MAX`] connections are served at once.

use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Core, TypeConfig, WriteError};
use crate::command::{Command, CommandError, CommandReply};
use caudal_metadata::MetadataRecord;
use caudal_model::NodeId;
use std::sync::Arc;

/// The largest frame read or written (a snapshot chunk is far smaller).
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The most controller connections served at once; more are closed on accept. Each peer keeps
/// one, so this only bounds misbehaving or foreign clients.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a controller holds a [`RaftRequest::FetchMetadata`] that has nothing newer to answer.
pub const FETCH_METADATA_WAIT: Duration = Duration::from_secs(1);
/// How long connecting to a peer may take before the peer counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A request from one controller to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A broker's command, forwarded to the controller believed to be the leader.
    Command(Command),
    /// An observer (a broker without the controller role) asks for this controller's committed
    /// image if it has applied more than `after` records; otherwise the controller waits up to
    /// [`FETCH_METADATA_WAIT`] for a newer one (long poll). Any controller answers.
    FetchMetadata {
        after: u64,
    },
}

/// The answer to a [`RaftRequest`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Command(Result<CommandReply, ForwardedError>),
    FetchMetadata(MetadataUpdate),
}

/// A controller's answer to [`RaftRequest::FetchMetadata`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataUpdate {
    /// The leader the answering controller knows, if any.
    pub leader: Option<NodeId>,
    /// The whole image, when it had applied more records than asked for; `None`: no change
    /// within the wait.
    pub image: Option<ImageRecords>,
}

/// A whole image as the records that rebuild it (`state_machine::image_records`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecords {
    /// `MetadataImage::last_applied` of the image.
    pub last_applied: u64,
    pub records: Vec<MetadataRecord>,
}

/// Why a forwarded command did not succeed on the controller it was sent to.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedError {
    /// That controller is not the leader (any more); `leader` is the one it knows, if any.
    NotController { leader: Option<NodeId> },
    /// The decision refused the command; nothing was written.
    Rejected(CommandError),
    /// The command's outcome is unknown (no quorum, timed out).
    Unavailable(String),
    /// That controller is shutting down.
    ShutDown,
}

impl From<WriteError> for ForwardedError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotController { leader } => ForwardedError::NotController { leader },
            WriteError::Rejected(error) => ForwardedError::Rejected(error.into()),
            WriteError::Unavailable(reason) => ForwardedError::Unavailable(reason),
            WriteError::ShutDown => ForwardedError::ShutDown,
        }
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(io::Error::other(format!(
            "frame of {} bytes exceeds {FRAME_BYTES_MAX}",
            body.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    writer.write_all(&buf).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    reader: &mut R,
) -> io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(header) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {length} exceeds {FRAME_BYTES_MAX}"),
        ));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Accepts controller connections and answers their RPCs (Raft's from `core.raft`, forwarded
/// commands by running them on `core`) until the task is aborted (which also ends every
/// connection task it started).
pub(crate) async fn serve(listener: TcpListener, core: Arc<Core>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= CONNECTIONS_MAX {
                        tracing::warn!(%peer, limit = CONNECTIONS_MAX, "too many controller connections; closing this one");
                        drop(stream);
                        continue;
                    }
                    let core = core.clone();
                    connections.spawn(async move {
                        if let Err(error) = answer(stream, core).await {
                            tracing::debug!(%peer, %error, "controller connection closed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a controller connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(mut stream: TcpStream, core: Arc<Core>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let raft: &Raft<TypeConfig> = &core.raft;
    while let Some(request) = read_frame::<_, RaftRequest>(&mut stream).await? {
        let reply = match request {
            RaftRequest::AppendEntries(rpc) => {
                RaftReply::AppendEntries(raft.append_entries(rpc).await)
            }
            RaftRequest::Vote(rpc) => RaftReply::Vote(raft.vote(rpc).await),
            RaftRequest::InstallSnapshot(rpc) => {
                RaftReply::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            // Run here only: a controller that is not the leader answers NotController and the
            // sender retries, so a command is never forwarded twice.
            RaftRequest::Command(command) => RaftReply::Command(
                core.submit_local(command)
                    .await
                    .map_err(ForwardedError::from),
            ),
            RaftRequest::FetchMetadata { after } => {
                RaftReply::FetchMetadata(metadata_update(&core, after).await)
            }
        };
        write_frame(&mut stream, &reply).await?;
    }
    Ok(())
}

/// The committed image for an observer that has `after` records: at once when this controller
/// has applied more, else after at most [`FETCH_METADATA_WAIT`] for a newer one.
async fn metadata_update(core: &Core, after: u64) -> MetadataUpdate {
    let mut images = core.state_machine.subscribe();
    let _ = tokio::time::timeout(
        FETCH_METADATA_WAIT,
        images.wait_for(|image| image.last_applied > after),
    )
    .await;
    let (last_applied, records) = core.state_machine.image_as_records();
    MetadataUpdate {
        leader: core.leader(),
        image: (last_applied > after).then_some(ImageRecords {
            last_applied,
            records,
        }),
    }
}

/// Why forwarding a command failed before an answer came back.
#[derive(Debug)]
pub(crate) enum ForwardFailure {
    /// The command was not (completely) sent: it cannot have run.
    NotSent(io::Error),
    /// The command was sent but no answer came: its outcome is unknown.
    Lost(io::Error),
}

/// Sends `command` to the controller at `addr` on a connection of its own and waits at most
/// `deadline` for the answer.
pub(crate) async fn forward(
    addr: &str,
    command: Command,
    deadline: Duration,
) -> Result<Result<CommandReply, ForwardedError>, ForwardFailure> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
        .map_err(ForwardFailure::NotSent)?;
    stream.set_nodelay(true).map_err(ForwardFailure::NotSent)?;
    // A frame the peer did not receive completely is never decoded, so a failed write means
    // the command did not run.
    write_frame(&mut stream, &RaftRequest::Command(command))
        .await
        .map_err(ForwardFailure::NotSent)?;
    let answer = tokio::time::timeout(deadline, read_frame::<_, RaftReply>(&mut stream))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from the controller at {addr} within {deadline:?}"),
            ))
        })
        .map_err(ForwardFailure::Lost)?;
    match answer {
        Some(RaftReply::Command(result)) => Ok(result),
        Some(_) => Err(ForwardFailure::Lost(io::Error::new(
            io::ErrorKind::InvalidData,
            "controller answered with a different kind of reply",
        ))),
        None => Err(ForwardFailure::Lost(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "controller closed the connection",
        ))),
    }
}

/// Makes one [`PeerClient`] per peer.
#[derive(Debug, Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            connection: None,
        }
    }
}

/// The connection to one peer, reopened on demand.
pub struct PeerClient {
    target: u64,
    addr: String,
    connection: Option<TcpStream>,
}

/// Why one call failed: the peer could not be reached at all, or the exchange broke.
enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
}

impl PeerClient {
    async fn call(
        &mut self,
        request: &RaftRequest,
        deadline: Duration,
    ) -> Result<RaftReply, CallError> {
        let result = tokio::time::timeout(deadline, self.exchange(request)).await;
        let result = match result {
            Ok(result) => result,
            Err(_) => Err(CallError::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from controller {} within {deadline:?}",
                    self.target
                ),
            ))),
        };
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(&mut self, request: &RaftRequest) -> Result<RaftReply, CallError> {
        if self.connection.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                })
                .map_err(CallError::Unreachable)?;
            stream.set_nodelay(true).map_err(CallError::Unreachable)?;
            self.connection = Some(stream);
        }
        let Some(stream) = self.connection.as_mut() else {
            return Err(CallError::Unreachable(io::Error::other("no connection")));
        };
        write_frame(stream, request)
            .await
            .map_err(CallError::Network)?;
        match read_frame(stream).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(CallError::Network(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "controller closed the connection",
            ))),
            Err(error) => Err(CallError::Network(error)),
        }
    }

    async fn rpc<E: std::error::Error>(
        &mut self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, BasicNode, E>> {
        match self.call(&request, option.hard_ttl()).await {
            Ok(reply) => Ok(reply),
            Err(CallError::Unreachable(error)) => {
                Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(CallError::Network(error)) => Err(RPCError::Network(NetworkError::new(&error))),
        }
    }
}

fn mismatched<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::InvalidData,
        "controller answered with a different kind of reply",
    )))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.rpc(RaftRequest::AppendEntries(rpc), &option).await? {
            RaftReply::AppendEntries(reply) => reply.map_err(|error| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, error))
            }),
            _ => Err(mismatched()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self.rpc(RaftRequest::InstallSnapshot(rpc), &option).await? {
            RaftReply::InstallSnapshot(reply) => reply.map_err(|error| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, error))
            }),
            _ => Err(mismatched()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.rpc(RaftRequest::Vote(rpc), &option).await? {
            RaftReply::Vote(reply) => reply.map_err(|error| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, error))
            }),
            _ => Err(mismatched()),
        }
    }
}
