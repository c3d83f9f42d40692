//! Where this broker's metadata comes from and where its metadata writes go.
//!
//! One interface over the controller backends, so the request path does not care which one runs:
//! - [`MetadataService::Local`]: the single-node controller and its `metadata.log`. Several
//!   brokers in one process may share one (in-process cluster tests): every broker then sees the
//!   same images, as with a quorum.
//!
//! Every broker follows the images it is given through [`MetadataService::subscribe`]; writes
//! return once their image is published.

use std::sync::Arc;

use caudal_controller::controller::{NodeRegistration, registration_records};
use caudal_controller::{Controller, ControllerError};
use caudal_metadata::{MetadataImage, MetadataRecord};
use caudal_model::NodeId;
use tokio::sync::watch;

/// The metadata backend a broker runs on.
#[derive(Clone)]
pub enum MetadataService {
    /// The single-node controller (shared by brokers of one process in tests).
    Local(Arc<Controller>),
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
    /// controller lives with the broker that opened it: `owner`.
    pub fn active_controller(&self, owner: NodeId) -> Option<NodeId> {
        match self {
            Self::Local(_) => Some(owner),
        }
    }

    /// Runs one decision against the current image and writes its records; returns once the new
    /// image is published.
    pub async fn write<T: Send + 'static>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>
        + Send
        + 'static,
    ) -> Result<T, ControllerError> {
        match self {
            Self::Local(controller) => {
                let controller = controller.clone();
                // The local metadata log fsyncs: keep it off the async workers.
                match tokio::task::spawn_blocking(move || controller.write(decide)).await {
                    Ok(result) => result,
                    Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
                }
            }
        }
    }

    /// Registers `node` (again, when its address or rack changed).
    pub async fn register(&self, node: NodeRegistration) -> Result<(), ControllerError> {
        self.write(move |image| Ok((registration_records(image, &node), ())))
            .await
    }
}
