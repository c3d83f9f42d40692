//! Where this broker's metadata comes from and where its metadata writes go.
//!
//! One interface over the controller backends, so the request path does not care which one runs:
//! - [`MetadataService::Local`]: the single-node controller and its `metadata.log`. Several
//!   brokers in one process may share one (in-process cluster tests): every broker then sees the
//!   same images, as with a quorum.
//! - [`MetadataService::Quorum`]: this node is a controller of the Raft metadata quorum
//!   (`docs/quorum.md`); commands are run by the active controller, forwarded to it when that is
//!   another node.
//! - [`MetadataService::Observer`]: this node is a broker without the controller role; it follows
//!   the controllers' committed image (FetchMetadata long polls) and sends its commands to the
//!   active controller.
//!
//! Every write is a typed [`Command`] (so a controller that is not the active one can forward it);
//! every broker follows the images it is given through [`MetadataService::subscribe`]; a write
//! returns once its image is published.

use std::sync::Arc;

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::controller::NodeRegistration;
use caudal_controller::quorum::{Observer, Quorum, SubmitError};
use caudal_controller::{Controller, ControllerError};
use caudal_metadata::MetadataImage;
use caudal_model::NodeId;
use tokio::sync::watch;

/// The metadata backend a broker runs on.
#[derive(Clone)]
pub enum MetadataService {
    /// The single-node controller (shared by brokers of one process in tests).
    Local(Arc<Controller>),
    /// A controller of the metadata quorum.
    Quorum(Arc<Quorum>),
    /// A broker-only node following the metadata quorum.
    Observer(Arc<Observer>),
}

/// Why a metadata write did not happen (or may not have).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The controller decided against it: the request's own error.
    #[error(transparent)]
    Rejected(#[from] ControllerError),
    /// No controller answered in time: the outcome is unknown (REQUEST_TIMED_OUT).
    #[error("the controller did not answer: {0}")]
    Unavailable(String),
}

impl MetadataService {
    /// The latest image this broker has.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            Self::Local(controller) => controller.image(),
            Self::Quorum(quorum) => quorum.image(),
            Self::Observer(observer) => observer.image(),
        }
    }

    /// A receiver that sees every image this broker gets.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            Self::Local(controller) => controller.subscribe(),
            Self::Quorum(quorum) => quorum.subscribe(),
            Self::Observer(observer) => observer.subscribe(),
        }
    }

    /// The node that decides metadata changes (Kafka's active controller), if known. The local
    /// controller serves every broker that shares it: `asking` is told it is the controller.
    pub fn active_controller(&self, asking: NodeId) -> Option<NodeId> {
        match self {
            Self::Local(_) => Some(asking),
            Self::Quorum(quorum) => quorum.leader(),
            Self::Observer(observer) => observer.leader(),
        }
    }

    /// Runs one command on the active controller; returns once its records are written and the
    /// new image is published here.
    pub async fn submit(&self, command: Command) -> Result<CommandReply, MetadataError> {
        match self {
            Self::Local(controller) => {
                let controller = controller.clone();
                // The local metadata log fsyncs: keep it off the async workers.
                match tokio::task::spawn_blocking(move || controller.submit(&command)).await {
                    Ok(result) => result.map_err(MetadataError::Rejected),
                    Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
                }
            }
            Self::Quorum(quorum) => quorum.submit(command).await.map_err(submit_error),
            Self::Observer(observer) => observer.submit(command).await.map_err(submit_error),
        }
    }

    /// Whether this broker's metadata comes from a quorum (as a controller or an observer), so it
    /// registers, heartbeats and shuts down under the active controller's control.
    pub fn is_clustered(&self) -> bool {
        !matches!(self, Self::Local(_))
    }

    /// Stops the quorum member or observer, if this service is one (after the broker has
    /// stopped).
    pub async fn shutdown(&self) {
        match self {
            Self::Local(_) => {}
            Self::Quorum(quorum) => quorum.shutdown().await,
            Self::Observer(observer) => observer.shutdown().await,
        }
    }

    /// Registers `node` (again, when its address or rack changed).
    pub async fn register(&self, node: NodeRegistration) -> Result<(), MetadataError> {
        self.submit(Command::RegisterBroker {
            node_id: node.node_id,
            host: node.host,
            port: node.port,
            rack: node.rack,
        })
        .await
        .map(|_| ())
    }
}

fn submit_error(error: SubmitError) -> MetadataError {
    match error {
        SubmitError::Rejected(error) => MetadataError::Rejected(error.into_controller_error()),
        SubmitError::Unavailable(reason) => MetadataError::Unavailable(reason),
        SubmitError::ShutDown => {
            MetadataError::Unavailable("the metadata quorum is shut down".into())
        }
    }
}
