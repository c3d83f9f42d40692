//! The single-node controller runtime: serialised writes to the metadata log, image publication.

use std::path::Path;
use std::sync::Arc;

use caudal_metadata::{MetadataImage, MetadataRecord};
use caudal_model::NodeId;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::command::{Command, CommandReply};
use crate::decisions::ControllerError;
use crate::log::MetadataLog;
use crate::quorum::brokers::BrokerHeartbeatReply;

/// Owns the metadata log and the current image. Writes are serialised; each one appends and
/// fsyncs its records before the new image is published.
pub struct Controller {
    log: Mutex<MetadataLog>,
    image: watch::Sender<Arc<MetadataImage>>,
}

/// This node, as it registers itself.
#[derive(Debug, Clone)]
pub struct NodeRegistration {
    pub node_id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

impl Controller {
    /// Replays the metadata log in `dir`, forms the cluster on first start (a new cluster id) and
    /// registers this node (again, if its address changed).
    pub fn open(dir: &Path, node: &NodeRegistration) -> Result<Self, ControllerError> {
        let (log, records, report) = MetadataLog::open(dir)?;
        let image = records
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        tracing::info!(
            records = report.records,
            truncated_bytes = report.truncated_bytes,
            topics = image.topics().count(),
            "metadata log replayed"
        );
        let (sender, _) = watch::channel(Arc::new(image));
        let controller = Self {
            log: Mutex::new(log),
            image: sender,
        };
        controller.write(|image| {
            let mut records = Vec::new();
            if image.cluster_id.is_none() {
                records.push(MetadataRecord::Cluster {
                    cluster_id: new_cluster_id(),
                });
            }
            records.extend(single_node_registration(image, node));
            Ok((records, ()))
        })?;
        Ok(controller)
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Runs one typed command (see [`Command`]), as the quorum's `submit` does, on this single
    /// node: registrations are never fenced and heartbeats write nothing (there are no leases
    /// to keep and no other broker to move leaderships to); a heartbeat asking to shut down
    /// safely may shut down at once. Blocks on fsync: call from a blocking context.
    pub fn submit(&self, command: &Command) -> Result<CommandReply, ControllerError> {
        match command {
            Command::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                let node = NodeRegistration {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                };
                self.write(|image| {
                    Ok((
                        single_node_registration(image, &node),
                        CommandReply::BrokerRegistered,
                    ))
                })
            }
            Command::BrokerHeartbeat {
                node_id,
                want_shutdown_safely,
            } => {
                if !self.image().brokers.contains_key(node_id) {
                    return Err(ControllerError::BrokerIdNotRegistered { node_id: *node_id });
                }
                Ok(CommandReply::BrokerHeartbeat(BrokerHeartbeatReply {
                    is_fenced: false,
                    in_controlled_shutdown: false,
                    should_shut_down: *want_shutdown_safely,
                }))
            }
            _ => self.write(|image| command.decide(image)),
        }
    }

    /// Runs one decision against the current image; if it succeeds, appends its records durably
    /// and publishes the resulting image. Blocks on fsync: call from a blocking context.
    pub fn write<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut log = self.log.lock();
        let current = self.image();
        let (records, result) = decide(&current)?;
        if records.is_empty() {
            return Ok(result);
        }
        log.append(&records)?;
        let next = records
            .iter()
            .fold((*current).clone(), |image, record| image.apply(record));
        self.image.send_replace(Arc::new(next));
        Ok(result)
    }
}

/// The records registering `node` on a single-node controller: its registration when new or
/// changed, and — a single node being its own only broker — always unfenced (a registration
/// fences, and logs written before fencing existed replay their registrations as fenced).
fn single_node_registration(image: &MetadataImage, node: &NodeRegistration) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    let current = image.brokers.get(&node.node_id);
    let changed = current.is_none_or(|current| {
        current.host != node.host || current.port != node.port || current.rack != node.rack
    });
    if changed {
        records.push(MetadataRecord::RegisterBroker {
            node_id: node.node_id,
            host: node.host.clone(),
            port: node.port,
            rack: node.rack.clone(),
        });
    }
    if changed || current.is_some_and(|current| !current.is_active()) {
        records.push(MetadataRecord::BrokerState {
            node_id: node.node_id,
            fenced: false,
            in_controlled_shutdown: false,
        });
    }
    records
}

/// A cluster id in Kafka's form: a random UUID, URL-safe base64 without padding (22 characters).
pub(crate) fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut out = [0u8; 22];
    // 128 bits → 22 six-bit digits; the top digit carries the remaining 2 bits, as base64 would
    // after shifting, which is all a cluster id needs: a unique printable token.
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(bits & 0x3f) as usize];
        bits >>= 6;
    }
    String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::{NewTopic, TopicDefaults, create_topic};

    fn node() -> NodeRegistration {
        NodeRegistration {
            node_id: NodeId(1),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }
    }

    #[test]
    fn forms_a_cluster_once_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let controller = Controller::open(dir.path(), &node()).unwrap();
        let cluster_id = controller.image().cluster_id.clone().unwrap();
        assert_eq!(cluster_id.len(), 22);
        let updates = controller.subscribe();
        let topic = NewTopic {
            name: "t".into(),
            num_partitions: 3,
            replication_factor: 1,
            ..NewTopic::default()
        };
        let defaults = TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        };
        controller
            .write(|image| create_topic(image, &topic, defaults))
            .unwrap();
        assert!(updates.has_changed().unwrap());
        assert!(
            controller
                .write(|image| create_topic(image, &topic, defaults))
                .is_err()
        );
        let applied = controller.image().last_applied;
        drop(controller);

        let reopened = Controller::open(dir.path(), &node()).unwrap();
        let image = reopened.image();
        assert_eq!(image.cluster_id.as_deref(), Some(cluster_id.as_str()));
        assert_eq!(image.topic("t").unwrap().partitions.len(), 3);
        assert!(image.is_broker_active(NodeId(1)));
        // Same address: nothing new written at restart.
        assert_eq!(image.last_applied, applied);
    }

    #[test]
    fn typed_commands_run_on_a_single_node() {
        let dir = tempfile::tempdir().unwrap();
        let controller = Controller::open(dir.path(), &node()).unwrap();
        let create = Command::CreateTopic {
            topic: NewTopic {
                name: "t".into(),
                num_partitions: 2,
                replication_factor: 1,
                ..NewTopic::default()
            },
            defaults: TopicDefaults {
                num_partitions: 1,
                replication_factor: 1,
            },
            validate_only: false,
        };
        assert!(matches!(
            controller.submit(&create),
            Ok(CommandReply::TopicCreated(_))
        ));
        assert!(matches!(
            controller.submit(&create),
            Err(ControllerError::TopicAlreadyExists { .. })
        ));
        assert_eq!(controller.image().topic("t").unwrap().partitions.len(), 2);
        let applied = controller.image().last_applied;
        let heartbeat = Command::BrokerHeartbeat {
            node_id: NodeId(1),
            want_shutdown_safely: true,
        };
        match controller.submit(&heartbeat).unwrap() {
            CommandReply::BrokerHeartbeat(reply) => {
                assert!(reply.should_shut_down && !reply.is_fenced)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(controller.image().last_applied, applied);
        assert!(matches!(
            controller.submit(&Command::BrokerHeartbeat {
                node_id: NodeId(7),
                want_shutdown_safely: false,
            }),
            Err(ControllerError::BrokerIdNotRegistered { .. })
        ));
        // Another broker registering here is active at once.
        controller
            .submit(&Command::RegisterBroker {
                node_id: NodeId(2),
                host: "h".into(),
                port: 2,
                rack: None,
            })
            .unwrap();
        assert!(controller.image().is_broker_active(NodeId(2)));
    }
}
