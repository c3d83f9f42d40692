//! Where this broker's metadata comes from and where its metadata writes go.
//!
//! One interface over the controller backends, so the request path does not care which one runs:
//! - [`MetadataService::Local`]: the single-node controller and its `metadata.log`. Several
//!   brokers in one process may share one (in-process cluster tests): every broker then sees the
//!   same images, as with a quorum.
//!
//! Every write is a typed [`Command`] (so a controller that is not the active one can forward it);
//! every broker follows the images it is given through [`MetadataService::subscribe`]; a write
//! returns once its image is published.

use std::sync::Arc;

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::controller::NodeRegistration;
use caudal_controller::{Controller, ControllerError};
use caudal_metadata::MetadataImage;
use caudal_model::NodeId;
use tokio::sync::watch;

/// The metadata backend a broker runs on.
#[derive(Clone)]
pub enum MetadataService {
    /// The single-node controller (shared by brokers of one process in tests).
    Local(Arc<Controller>),
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
        }
    }

    /// A receiver that sees every image this broker gets.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            Self::Local(controller) => controller.subscribe(),
        }
    }

    /// The node that decides metadata changes (Kafka's active controller), if known. The local
    /// controller serves every broker that shares it: `asking` is told it is the controller.
    pub fn active_controller(&self, asking: NodeId) -> Option<NodeId> {
        match self {
            Self::Local(_) => Some(asking),
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
