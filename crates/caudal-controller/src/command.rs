//! Typed controller commands: every metadata write a broker asks for, as data. A command can
//! cross the network (a controller that is not the active one forwards it to the leader), which
//! a closure cannot; [`Command::decide`] turns it into records plus a [`CommandReply`] against an
//! image, with the same pure decisions the single-node `Controller` uses.

use caudal_metadata::{ConfigResource, MetadataImage, MetadataRecord};
use caudal_model::{NodeId, ProducerId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decisions::{
    ConfigOp, ControllerError, CreatedTopic, NewTopic, PRODUCER_ID_BLOCK_SIZE, TopicDefaults,
    TopicRef, allocate_producer_ids, alter_configs, create_partitions, create_topic, delete_topic,
};
use crate::quorum::brokers::{BrokerHeartbeatReply, broker_heartbeat};
use crate::replication::{
    AlterPartitionRequest, ElectionResult, ElectionType, PartitionError, PartitionRef,
    PartitionState, ReassignmentRequest, ReassignmentResult, alter_partition,
    alter_partition_reassignments, apply_all, elect_leaders,
};

/// One metadata write a broker asks the active controller for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// CreateTopics, one topic. With `validate_only`, decided but nothing is written.
    CreateTopic {
        topic: NewTopic,
        defaults: TopicDefaults,
        validate_only: bool,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        topic: TopicRef,
        /// `delete.topic.enable`.
        deletion_enabled: bool,
    },
    /// CreatePartitions, one topic: grow it to `count` partitions.
    CreatePartitions {
        topic: String,
        count: i32,
        assignments: Option<Vec<Vec<NodeId>>>,
        validate_only: bool,
    },
    /// IncrementalAlterConfigs (`replace_all: false`) or AlterConfigs (`true`), one resource.
    AlterConfigs {
        resource: ConfigResource,
        changes: Vec<(String, ConfigOp)>,
        replace_all: bool,
        validate_only: bool,
    },
    /// AllocateProducerIds: the next block of producer ids for `node_id`.
    AllocateProducerIds { node_id: NodeId },
    /// BrokerRegistration: the broker (re)registers at startup and is fenced until its first
    /// heartbeat.
    RegisterBroker {
        node_id: NodeId,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// BrokerHeartbeat.
    BrokerHeartbeat {
        node_id: NodeId,
        want_shutdown_safely: bool,
    },
    /// AlterPartition from a partition leader: ISR changes, each decided on its own.
    AlterPartition {
        partitions: Vec<AlterPartitionRequest>,
    },
    /// ElectLeaders; `partitions: None` = every partition.
    ElectLeaders {
        election_type: ElectionType,
        partitions: Option<Vec<PartitionRef>>,
    },
    /// AlterPartitionReassignments.
    AlterPartitionReassignments {
        reassignments: Vec<ReassignmentRequest>,
    },
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandReply {
    TopicCreated(CreatedTopic),
    TopicDeleted {
        name: String,
        topic_id: Uuid,
    },
    PartitionsCreated,
    ConfigsAltered,
    /// The block `[first_producer_id, first_producer_id + count)`.
    ProducerIds {
        first_producer_id: ProducerId,
        count: i64,
    },
    BrokerRegistered,
    BrokerHeartbeat(BrokerHeartbeatReply),
    /// One result per request entry, in request order.
    AlterPartition(Vec<Result<PartitionState, PartitionError>>),
    /// Per named partition (with `partitions: None`: per partition whose leader changed).
    ElectLeaders(Vec<ElectionResult>),
    /// One result per request entry, in request order.
    AlterPartitionReassignments(Vec<ReassignmentResult>),
}

/// A command the controller refused: the decision's [`ControllerError`] (map it to a Kafka
/// error code exactly as a local refusal), serializable so it crosses from the active
/// controller to the one that forwarded the command.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("{error}")]
pub struct CommandError {
    /// Kafka's name of the error code (`error.kafka_error_name()`), for logs and tools.
    pub error_name: String,
    pub error: ControllerError,
}

impl From<ControllerError> for CommandError {
    fn from(error: ControllerError) -> Self {
        Self {
            error_name: error.kafka_error_name().to_string(),
            error,
        }
    }
}

impl CommandError {
    /// The decision's error, to map as the single-node controller's.
    pub fn into_controller_error(self) -> ControllerError {
        self.error
    }

    /// The error message Kafka clients see.
    pub fn message(&self) -> String {
        self.error.to_string()
    }
}

impl Command {
    /// Decides the command against `image`: the records to write (one Raft entry, applied
    /// together) and the reply. Pure. `RegisterBroker` always writes its registration (the
    /// broker is fenced until its next heartbeat, as in KRaft); `BrokerHeartbeat` writes only
    /// when the broker's state changes.
    pub fn decide(
        &self,
        image: &MetadataImage,
    ) -> Result<(Vec<MetadataRecord>, CommandReply), ControllerError> {
        match self {
            Command::CreateTopic {
                topic,
                defaults,
                validate_only,
            } => {
                let (records, created) = create_topic(image, topic, *defaults)?;
                Ok((
                    if *validate_only { Vec::new() } else { records },
                    CommandReply::TopicCreated(created),
                ))
            }
            Command::DeleteTopic {
                topic,
                deletion_enabled,
            } => {
                let (records, (name, topic_id)) = delete_topic(image, topic, *deletion_enabled)?;
                Ok((records, CommandReply::TopicDeleted { name, topic_id }))
            }
            Command::CreatePartitions {
                topic,
                count,
                assignments,
                validate_only,
            } => {
                let records = create_partitions(image, topic, *count, assignments.as_deref())?;
                Ok((
                    if *validate_only { Vec::new() } else { records },
                    CommandReply::PartitionsCreated,
                ))
            }
            Command::AlterConfigs {
                resource,
                changes,
                replace_all,
                validate_only,
            } => {
                let records = alter_configs(image, resource, changes, *replace_all)?;
                Ok((
                    if *validate_only { Vec::new() } else { records },
                    CommandReply::ConfigsAltered,
                ))
            }
            Command::AllocateProducerIds { node_id } => {
                let (records, first_producer_id) = allocate_producer_ids(image, *node_id);
                Ok((
                    records,
                    CommandReply::ProducerIds {
                        first_producer_id,
                        count: PRODUCER_ID_BLOCK_SIZE,
                    },
                ))
            }
            Command::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => Ok((
                vec![MetadataRecord::RegisterBroker {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                }],
                CommandReply::BrokerRegistered,
            )),
            Command::BrokerHeartbeat {
                node_id,
                want_shutdown_safely,
            } => {
                let (records, reply) = broker_heartbeat(image, *node_id, *want_shutdown_safely)?;
                Ok((records, CommandReply::BrokerHeartbeat(reply)))
            }
            Command::AlterPartition { partitions } => {
                let mut current = image.clone();
                let mut records = Vec::new();
                let mut results = Vec::with_capacity(partitions.len());
                for request in partitions {
                    let result = alter_partition(&current, request).map(|(change, state)| {
                        current = apply_all(&current, &change);
                        records.extend(change);
                        state
                    });
                    results.push(result);
                }
                Ok((records, CommandReply::AlterPartition(results)))
            }
            Command::ElectLeaders {
                election_type,
                partitions,
            } => {
                let (records, results) =
                    elect_leaders(image, *election_type, partitions.as_deref());
                Ok((records, CommandReply::ElectLeaders(results)))
            }
            Command::AlterPartitionReassignments { reassignments } => {
                let (records, results) = alter_partition_reassignments(image, reassignments);
                Ok((records, CommandReply::AlterPartitionReassignments(results)))
            }
        }
    }
}

/// The records the active controller writes once when the cluster forms: its id, if the image
/// has none (idempotent).
pub fn initialize_cluster(image: &MetadataImage) -> Vec<MetadataRecord> {
    if image.cluster_id.is_some() {
        return Vec::new();
    }
    vec![MetadataRecord::Cluster {
        cluster_id: crate::controller::new_cluster_id(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_metadata::config::ConfigError;
    use caudal_model::PartitionIndex;

    #[test]
    fn commands_replies_and_refusals_cross_the_wire_unchanged() {
        let mut topic = NewTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            ..NewTopic::default()
        };
        topic.assignments.insert(0, vec![NodeId(1), NodeId(2)]);
        topic.configs.insert("retention.ms".into(), "1".into());
        let commands = [
            Command::CreateTopic {
                topic,
                defaults: TopicDefaults {
                    num_partitions: 1,
                    replication_factor: 3,
                },
                validate_only: true,
            },
            Command::AlterConfigs {
                resource: ConfigResource::Broker(NodeId(1)),
                changes: vec![("a".into(), ConfigOp::Append("x".into()))],
                replace_all: false,
                validate_only: false,
            },
            Command::ElectLeaders {
                election_type: ElectionType::Unclean,
                partitions: Some(vec![PartitionRef {
                    topic: "t".into(),
                    partition: PartitionIndex(2),
                }]),
            },
        ];
        for command in commands {
            let bytes = serde_json::to_vec(&command).unwrap();
            assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), command);
        }
        let reply = CommandReply::AlterPartition(vec![Err(PartitionError::IneligibleReplica)]);
        let bytes = serde_json::to_vec(&reply).unwrap();
        assert_eq!(
            serde_json::from_slice::<CommandReply>(&bytes).unwrap(),
            reply
        );

        let refusal = CommandError::from(ControllerError::InvalidConfig(ConfigError::Unknown {
            name: "x".into(),
        }));
        let bytes = serde_json::to_vec(&refusal).unwrap();
        let back: CommandError = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.error_name, "INVALID_CONFIG");
        assert_eq!(back.message(), refusal.message());
        assert!(matches!(
            back.into_controller_error(),
            ControllerError::InvalidConfig(ConfigError::Unknown { name }) if name == "x"
        ));
    }
}
