//! The controller's decisions as pure functions: current image + request → records + result.
//!
//! The rules are Apache Kafka's (`Topic.validate`, `ReplicationControlManager.createTopic`,
//! `createPartitions`, `deleteTopics`), with the same error cases and messages in spirit.

use std::collections::{BTreeMap, BTreeSet};

use caudal_metadata::config::{
    ConfigDef, ConfigError, ConfigType, broker_config, topic_config, validate_topic_configs,
};
use caudal_metadata::{ConfigResource, MetadataImage, MetadataRecord};
use caudal_model::{LeaderEpoch, NodeId, PartitionIndex, ProducerId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// The most partitions one CreateTopics or CreatePartitions entry may add (Kafka's controller
/// limit on records per user operation).
pub const PARTITIONS_PER_OPERATION_MAX: i32 = 10_000;
/// How many producer ids one InitProducerId block hands a broker (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Why the controller refused a request. The broker maps each variant to one Kafka error code
/// ([`ControllerError::kafka_error_name`] names it). Serializable, so a refusal travels from the
/// active controller back to the controller that forwarded the command.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error("Topic '{name}' already exists.")]
    TopicAlreadyExists { name: String },
    #[error("{reason}")]
    InvalidTopic { reason: String },
    #[error("{reason}")]
    InvalidPartitions { reason: String },
    #[error("{reason}")]
    InvalidReplicationFactor { reason: String },
    #[error("{reason}")]
    InvalidReplicaAssignment { reason: String },
    #[error("{0}")]
    InvalidConfig(#[from] ConfigError),
    #[error("{reason}")]
    InvalidRequest { reason: String },
    #[error("This server does not host this topic-partition.")]
    UnknownTopic { name: String },
    #[error("This server does not host this topic ID.")]
    UnknownTopicId { topic_id: Uuid },
    #[error("Topic deletion is disabled.")]
    TopicDeletionDisabled,
    /// A heartbeat (or another broker request) from a broker that is not registered (Kafka:
    /// BROKER_ID_NOT_REGISTERED).
    #[error("Broker {node_id} is not registered.")]
    BrokerIdNotRegistered { node_id: NodeId },
    /// Only the single-node metadata log produces it; across the network it travels as its
    /// message.
    #[error(transparent)]
    MetadataLog(
        #[from]
        #[serde(with = "metadata_log_error_as_message")]
        crate::log::MetadataLogError,
    ),
}

impl ControllerError {
    /// Kafka's name of the error code this refusal maps to.
    pub fn kafka_error_name(&self) -> &'static str {
        match self {
            ControllerError::TopicAlreadyExists { .. } => "TOPIC_ALREADY_EXISTS",
            ControllerError::InvalidTopic { .. } => "INVALID_TOPIC_EXCEPTION",
            ControllerError::InvalidPartitions { .. } => "INVALID_PARTITIONS",
            ControllerError::InvalidReplicationFactor { .. } => "INVALID_REPLICATION_FACTOR",
            ControllerError::InvalidReplicaAssignment { .. } => "INVALID_REPLICA_ASSIGNMENT",
            ControllerError::InvalidConfig(_) => "INVALID_CONFIG",
            ControllerError::InvalidRequest { .. } => "INVALID_REQUEST",
            ControllerError::UnknownTopic { .. } => "UNKNOWN_TOPIC_OR_PARTITION",
            ControllerError::UnknownTopicId { .. } => "UNKNOWN_TOPIC_ID",
            ControllerError::TopicDeletionDisabled => "TOPIC_DELETION_DISABLED",
            ControllerError::BrokerIdNotRegistered { .. } => "BROKER_ID_NOT_REGISTERED",
            ControllerError::MetadataLog(_) => "KAFKA_STORAGE_ERROR",
        }
    }
}

mod metadata_log_error_as_message {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::log::MetadataLogError;

    pub fn serialize<S: Serializer>(
        error: &MetadataLogError,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&error.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MetadataLogError, D::Error> {
        let message = String::deserialize(deserializer)?;
        Ok(MetadataLogError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(message),
        })
    }
}

/// Checks a topic name against Kafka's rules: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason: String| Err(ControllerError::InvalidTopic { reason });
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// `.` and `_` collide in metric names, so Kafka refuses topics that differ only by them.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Broker-level defaults for topic creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A CreateTopics entry, already decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1 = the broker default.
    pub num_partitions: i32,
    /// -1 = the broker default.
    pub replication_factor: i16,
    /// Explicit replica assignment per partition, if given.
    pub assignments: BTreeMap<i32, Vec<NodeId>>,
    pub configs: BTreeMap<String, String>,
}

/// The topic a successful creation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

fn too_many_partitions(count: i32) -> ControllerError {
    ControllerError::InvalidPartitions {
        reason: format!(
            "{count} partitions in one request; at most {PARTITIONS_PER_OPERATION_MAX} may be added at once."
        ),
    }
}

fn registered_brokers(image: &MetadataImage) -> Vec<NodeId> {
    image.brokers.keys().copied().collect()
}

/// The brokers new replicas may be placed on: registered, unfenced and not in controlled
/// shutdown (Kafka places only on usable brokers), ordered so that consecutive brokers are on
/// different racks where racks allow: the first broker of each rack, then the second of each,
/// and so on (brokers without a rack form a rack of their own).
fn usable_brokers(image: &MetadataImage) -> Vec<(NodeId, Option<String>)> {
    let mut racks: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for broker in image.brokers.values().filter(|broker| broker.is_active()) {
        racks
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.node_id);
    }
    let mut ordered = Vec::new();
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    for depth in 0..deepest {
        for (rack, brokers) in &racks {
            if let Some(node) = brokers.get(depth) {
                ordered.push((*node, rack.map(str::to_string)));
            }
        }
    }
    ordered
}

/// Replicas for `count` partitions starting at `first`, in the spirit of Kafka's
/// `StripedReplicaPlacer`: leaders rotate over every usable broker so they spread evenly; each
/// partition's followers are the next brokers in the rack-alternating order, taking brokers on
/// racks the partition does not use yet first.
fn place_replicas(
    brokers: &[(NodeId, Option<String>)],
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Vec<Vec<NodeId>> {
    debug_assert!(!brokers.is_empty() && replication_factor as usize <= brokers.len());
    let total = brokers.len();
    (first..first + count)
        .map(|partition| {
            let start = partition as usize % total;
            // Later rounds shift the followers, so partitions with the same leader do not all
            // put their followers on the same brokers.
            let shift = (partition as usize / total) % total.max(1);
            let mut chosen = vec![start];
            let mut racks: BTreeSet<&Option<String>> = [&brokers[start].1].into();
            let candidates: Vec<usize> = (1..total)
                .map(|step| (start + (step + shift - 1) % (total - 1) + 1) % total)
                .collect();
            for &candidate in &candidates {
                if chosen.len() == replication_factor as usize {
                    break;
                }
                if racks.insert(&brokers[candidate].1) {
                    chosen.push(candidate);
                }
            }
            for &candidate in &candidates {
                if chosen.len() == replication_factor as usize {
                    break;
                }
                if !chosen.contains(&candidate) {
                    chosen.push(candidate);
                }
            }
            chosen.into_iter().map(|index| brokers[index].0).collect()
        })
        .collect()
}

/// A new partition: every replica that is active starts in the ISR and the first of them leads
/// (Kafka's rule for manual assignments; automatic placement uses only active brokers).
fn partition_record(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: Vec<NodeId>,
) -> Result<MetadataRecord, ControllerError> {
    let isr: Vec<NodeId> = replicas
        .iter()
        .copied()
        .filter(|node| image.is_broker_active(*node))
        .collect();
    let Some(leader) = isr.first().copied() else {
        return Err(ControllerError::InvalidReplicaAssignment {
            reason: format!(
                "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
            ),
        });
    };
    Ok(MetadataRecord::Partition {
        topic_id,
        partition: PartitionIndex(partition),
        leader,
        isr,
        replicas,
        leader_epoch: LeaderEpoch(0),
        partition_epoch: 0,
    })
}

fn validate_assignment(
    brokers: &[NodeId],
    partition: i32,
    replicas: &[NodeId],
) -> Result<(), ControllerError> {
    let invalid = |reason: String| Err(ControllerError::InvalidReplicaAssignment { reason });
    if replicas.is_empty() {
        return invalid(format!(
            "The manual partition assignment includes an empty replica list for partition {partition}."
        ));
    }
    let unique: BTreeSet<_> = replicas.iter().collect();
    if unique.len() != replicas.len() {
        return invalid(format!(
            "The manual partition assignment includes duplicate replicas for partition {partition}."
        ));
    }
    if let Some(missing) = replicas.iter().find(|replica| !brokers.contains(replica)) {
        return invalid(format!(
            "The manual partition assignment includes broker {missing}, but no such broker is registered."
        ));
    }
    Ok(())
}

/// Decides a topic creation: the records to write and what was created.
pub fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    defaults: TopicDefaults,
) -> Result<(Vec<MetadataRecord>, CreatedTopic), ControllerError> {
    validate_topic_name(&topic.name)?;
    if image.topic(&topic.name).is_some() {
        return Err(ControllerError::TopicAlreadyExists {
            name: topic.name.clone(),
        });
    }
    let key = collision_key(&topic.name);
    if let Some(existing) = image
        .topics()
        .find(|existing| collision_key(&existing.name) == key)
    {
        return Err(ControllerError::InvalidTopic {
            reason: format!(
                "Topic '{}' collides with existing topic: {}",
                topic.name, existing.name
            ),
        });
    }
    validate_topic_configs(topic.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let brokers = registered_brokers(image);
    let usable = usable_brokers(image);
    let placements: Vec<Vec<NodeId>> = if topic.assignments.is_empty() {
        let num_partitions = if topic.num_partitions == -1 {
            defaults.num_partitions
        } else {
            topic.num_partitions
        };
        let replication_factor = if topic.replication_factor == -1 {
            defaults.replication_factor
        } else {
            topic.replication_factor
        };
        if num_partitions <= 0 {
            return Err(ControllerError::InvalidPartitions {
                reason: "Number of partitions was set to an invalid non-positive value.".into(),
            });
        }
        if num_partitions > PARTITIONS_PER_OPERATION_MAX {
            return Err(too_many_partitions(num_partitions));
        }
        if replication_factor <= 0 {
            return Err(ControllerError::InvalidReplicationFactor {
                reason: "Replication factor must be larger than 0, or -1 to use the default value."
                    .into(),
            });
        }
        if replication_factor as usize > usable.len() {
            return Err(ControllerError::InvalidReplicationFactor {
                reason: format!(
                    "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
                    usable.len()
                ),
            });
        }
        place_replicas(&usable, 0, num_partitions, replication_factor)
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest {
                reason: "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            });
        }
        if topic.assignments.len() > PARTITIONS_PER_OPERATION_MAX as usize {
            return Err(too_many_partitions(topic.assignments.len() as i32));
        }
        let mut placements = Vec::new();
        for (expected, (partition, replicas)) in topic.assignments.iter().enumerate() {
            if *partition != expected as i32 {
                return Err(ControllerError::InvalidReplicaAssignment {
                    reason: "Partitions should be a consecutive 0-based integer sequence".into(),
                });
            }
            validate_assignment(&brokers, *partition, replicas)?;
            placements.push(replicas.clone());
        }
        placements
    };
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        name: topic.name.clone(),
        topic_id,
    }];
    for (name, value) in &topic.configs {
        records.push(MetadataRecord::Config {
            resource: ConfigResource::Topic(topic.name.clone()),
            name: name.clone(),
            value: Some(value.clone()),
        });
    }
    let replication_factor = placements[0].len() as i16;
    let num_partitions = placements.len() as i32;
    for (partition, replicas) in placements.into_iter().enumerate() {
        records.push(partition_record(
            image,
            topic_id,
            partition as i32,
            replicas,
        )?);
    }
    Ok((
        records,
        CreatedTopic {
            topic_id,
            num_partitions,
            replication_factor,
        },
    ))
}

/// One config change: IncrementalAlterConfigs' operations. (Legacy AlterConfigs replaces a
/// resource's whole dynamic config set: see [`alter_configs`].)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Adds items to a list config (to its dynamic value, or its default when it has none).
    Append(String),
    /// Removes items from a list config.
    Subtract(String),
}

/// Decides a config change of one resource: the `Config` records to write (one per key whose
/// dynamic value changes). With `replace_all` (legacy AlterConfigs) the given `Set`s become the
/// resource's whole dynamic config set and every other key is removed.
///
/// Kafka's rules: topics must exist; names must be known configs of the resource type; broker
/// configs must be dynamically updatable ("Cannot update these configs dynamically", as Kafka,
/// INVALID_REQUEST); APPEND and SUBTRACT apply to list configs only; every resulting value is
/// validated; a key named twice is INVALID_REQUEST.
pub fn alter_configs(
    image: &MetadataImage,
    resource: &ConfigResource,
    changes: &[(String, ConfigOp)],
    replace_all: bool,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let mut seen = BTreeSet::new();
    for (name, _) in changes {
        if !seen.insert(name.as_str()) {
            return Err(ControllerError::InvalidRequest {
                reason: format!("Error due to duplicate config keys: {name}"),
            });
        }
    }
    let lookup: fn(&str) -> Option<&'static ConfigDef> = match resource {
        ConfigResource::Topic(name) => {
            validate_topic_name(name)?;
            if image.topic(name).is_none() {
                return Err(ControllerError::UnknownTopic { name: name.clone() });
            }
            topic_config
        }
        ConfigResource::Broker(node_id) => {
            if !image.brokers.contains_key(node_id) {
                return Err(ControllerError::InvalidRequest {
                    reason: format!("Broker {node_id} is not registered."),
                });
            }
            broker_config
        }
        ConfigResource::BrokerDefault => broker_config,
    };
    let mut defs = Vec::with_capacity(changes.len());
    for (name, _) in changes {
        let def = lookup(name).ok_or_else(|| ConfigError::Unknown { name: name.clone() })?;
        defs.push(def);
    }
    if !matches!(resource, ConfigResource::Topic(_)) {
        let fixed: Vec<&str> = defs
            .iter()
            .filter(|def| def.read_only)
            .map(|def| def.name)
            .collect();
        if !fixed.is_empty() {
            return Err(ControllerError::InvalidRequest {
                reason: format!(
                    "Cannot update these configs dynamically: Set({})",
                    fixed.join(", ")
                ),
            });
        }
    }
    let current = image.configs(resource).cloned().unwrap_or_default();
    let mut next = if replace_all {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for ((name, op), def) in changes.iter().zip(&defs) {
        let list_op = |verb: &str| -> Result<Vec<String>, ControllerError> {
            if def.config_type != ConfigType::List {
                return Err(ConfigError::InvalidValue {
                    name: name.clone(),
                    value: String::new(),
                    reason: format!("config value {verb} is not allowed for a non-list config"),
                }
                .into());
            }
            let base = next
                .get(name)
                .cloned()
                .or_else(|| def.default.map(str::to_string))
                .unwrap_or_default();
            Ok(split_list(&base))
        };
        match op {
            ConfigOp::Set(value) => {
                def.validate(value)?;
                next.insert(name.clone(), value.trim().to_string());
            }
            ConfigOp::Delete => {
                next.remove(name);
            }
            ConfigOp::Append(value) => {
                let mut items = list_op("append")?;
                for item in split_list(value) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                let joined = items.join(",");
                def.validate(&joined)?;
                next.insert(name.clone(), joined);
            }
            ConfigOp::Subtract(value) => {
                let remove = split_list(value);
                let items: Vec<String> = list_op("subtract")?
                    .into_iter()
                    .filter(|item| !remove.contains(item))
                    .collect();
                let joined = items.join(",");
                def.validate(&joined)?;
                next.insert(name.clone(), joined);
            }
        }
    }
    let keys: BTreeSet<&String> = current.keys().chain(next.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|key| current.get(*key) != next.get(*key))
        .map(|key| MetadataRecord::Config {
            resource: resource.clone(),
            name: key.clone(),
            value: next.get(key).cloned(),
        })
        .collect())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Which topic a DeleteTopics entry names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// Decides a topic deletion.
pub fn delete_topic(
    image: &MetadataImage,
    topic: &TopicRef,
    deletion_enabled: bool,
) -> Result<(Vec<MetadataRecord>, (String, Uuid)), ControllerError> {
    let found = match topic {
        TopicRef::Name(name) => image
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic { name: name.clone() })?,
        TopicRef::Id(topic_id) => {
            image
                .topic_by_id(topic_id)
                .ok_or(ControllerError::UnknownTopicId {
                    topic_id: *topic_id,
                })?
        }
    };
    if !deletion_enabled {
        return Err(ControllerError::TopicDeletionDisabled);
    }
    Ok((
        vec![MetadataRecord::RemoveTopic {
            topic_id: found.topic_id,
        }],
        (found.name.clone(), found.topic_id),
    ))
}

/// Decides a CreatePartitions entry: grow `name` to `count` partitions.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<NodeId>]>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic { name: name.into() })?;
    let current = topic.partitions.len() as i32;
    if count < current {
        return Err(ControllerError::InvalidPartitions {
            reason: format!(
                "The topic {name} currently has {current} partition(s); {count} would not be an increase."
            ),
        });
    }
    if count == current {
        return Err(ControllerError::InvalidPartitions {
            reason: format!("Topic already has {current} partition(s)."),
        });
    }
    let brokers = registered_brokers(image);
    let added = count - current;
    if added > PARTITIONS_PER_OPERATION_MAX {
        return Err(too_many_partitions(added));
    }
    let placements = match assignments {
        Some(assignments) => {
            if assignments.len() as i32 != added {
                return Err(ControllerError::InvalidReplicaAssignment {
                    reason: format!(
                        "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    ),
                });
            }
            for (offset, replicas) in assignments.iter().enumerate() {
                validate_assignment(&brokers, current + offset as i32, replicas)?;
            }
            assignments.to_vec()
        }
        None => {
            let replication_factor = topic
                .partitions
                .values()
                .next()
                .map_or(1, |partition| partition.target_replicas().len() as i16);
            let usable = usable_brokers(image);
            if replication_factor as usize > usable.len() {
                return Err(ControllerError::InvalidReplicationFactor {
                    reason: format!(
                        "Unable to replicate the partition {replication_factor} time(s): only {} broker(s) are registered.",
                        usable.len()
                    ),
                });
            }
            place_replicas(&usable, current, added, replication_factor)
        }
    };
    placements
        .into_iter()
        .enumerate()
        .map(|(offset, replicas)| {
            partition_record(image, topic.topic_id, current + offset as i32, replicas)
        })
        .collect()
}

/// Decides the next producer-id block for `node_id`: `[start, start + PRODUCER_ID_BLOCK_SIZE)`.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    node_id: NodeId,
) -> (Vec<MetadataRecord>, ProducerId) {
    let start = image.next_producer_id;
    (
        vec![MetadataRecord::ProducerIds {
            node_id,
            next_producer_id: ProducerId(start.0 + PRODUCER_ID_BLOCK_SIZE),
        }],
        start,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_brokers(count: i32) -> MetadataImage {
        image_with_racks(&vec![None; count as usize])
    }

    /// Brokers 1..=n, unfenced, with the given racks.
    fn image_with_racks(racks: &[Option<&str>]) -> MetadataImage {
        racks
            .iter()
            .enumerate()
            .fold(MetadataImage::default(), |image, (index, rack)| {
                let node_id = NodeId(index as i32 + 1);
                image
                    .apply(&MetadataRecord::RegisterBroker {
                        node_id,
                        host: "127.0.0.1".into(),
                        port: 9092,
                        rack: rack.map(str::to_string),
                    })
                    .apply(&MetadataRecord::BrokerState {
                        node_id,
                        fenced: false,
                        in_controlled_shutdown: false,
                    })
            })
    }

    fn set_state(image: &MetadataImage, node: i32, fenced: bool, shutdown: bool) -> MetadataImage {
        image.apply(&MetadataRecord::BrokerState {
            node_id: NodeId(node),
            fenced,
            in_controlled_shutdown: shutdown,
        })
    }

    #[test]
    fn placement_uses_only_active_brokers_and_spreads_over_racks() {
        // Six brokers on three racks; every partition's replicas land on three racks and
        // leaders and replicas spread evenly.
        let racks = [
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ];
        let image = image_with_racks(&racks);
        let (records, _) = create_topic(&image, &new_topic("t", 12, 3), DEFAULTS).unwrap();
        let image = apply(&image, &records);
        let topic = image.topic("t").unwrap();
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        let mut replicas = BTreeMap::<NodeId, usize>::new();
        for partition in topic.partitions.values() {
            let racks: BTreeSet<_> = partition
                .replicas
                .iter()
                .map(|node| image.brokers[node].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{:?}", partition.replicas);
            *leaders.entry(partition.leader).or_default() += 1;
            for node in &partition.replicas {
                *replicas.entry(*node).or_default() += 1;
            }
        }
        assert!(leaders.values().all(|count| *count == 2), "{leaders:?}");
        assert!(replicas.values().all(|count| *count == 6), "{replicas:?}");

        // Fenced and shutting-down brokers get nothing; too few usable brokers is
        // INVALID_REPLICATION_FACTOR.
        let image = set_state(&image, 1, true, false);
        let image = set_state(&image, 3, false, true);
        let (records, _) = create_topic(&image, &new_topic("u", 8, 4), DEFAULTS).unwrap();
        let placed = apply(&image, &records);
        assert!(
            placed
                .topic("u")
                .unwrap()
                .partitions
                .values()
                .all(|p| { !p.replicas.contains(&NodeId(1)) && !p.replicas.contains(&NodeId(3)) })
        );
        assert!(matches!(
            create_topic(&image, &new_topic("v", 1, 5), DEFAULTS),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            create_partitions(&placed, "u", 9, None).map(|records| records.len()),
            Ok(1)
        ));

        // A manual assignment may name a fenced broker, which stays out of the ISR; naming only
        // inactive brokers is INVALID_REPLICA_ASSIGNMENT.
        let mut manual = new_topic("w", -1, -1);
        manual.assignments.insert(0, vec![NodeId(1), NodeId(2)]);
        let (records, _) = create_topic(&image, &manual, DEFAULTS).unwrap();
        let manual_image = apply(&image, &records);
        let partition = &manual_image.topic("w").unwrap().partitions[&PartitionIndex(0)];
        assert_eq!(partition.isr, vec![NodeId(2)]);
        assert_eq!(partition.leader, NodeId(2));
        let mut inactive = new_topic("x", -1, -1);
        inactive.assignments.insert(0, vec![NodeId(1), NodeId(3)]);
        assert!(matches!(
            create_topic(&image, &inactive, DEFAULTS),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
    }

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        records
            .iter()
            .fold(image.clone(), |image, record| image.apply(record))
    }

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 1,
        replication_factor: 1,
    };

    fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor,
            ..NewTopic::default()
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["a", "orders.v1", "A-b_c.9", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "ümlaut",
            "slash/",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn creates_topics_with_defaults_and_spreads_replicas() {
        let image = image_with_brokers(3);
        let (records, created) = create_topic(&image, &new_topic("t", 6, 2), DEFAULTS).unwrap();
        assert_eq!(created.num_partitions, 6);
        let image = apply(&image, &records);
        let topic = image.topic("t").unwrap();
        assert_eq!(topic.partitions.len(), 6);
        let leaders: BTreeSet<_> = topic.partitions.values().map(|p| p.leader).collect();
        assert_eq!(leaders.len(), 3);
        assert!(
            topic
                .partitions
                .values()
                .all(|p| p.replicas.len() == 2 && p.isr == p.replicas)
        );

        let (records, created) = create_topic(&image, &new_topic("d", -1, -1), DEFAULTS).unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (1, 1));
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        let image = image_with_brokers(1);
        let (records, _) = create_topic(&image, &new_topic("a.b", 1, 1), DEFAULTS).unwrap();
        let image = apply(&image, &records);
        assert!(matches!(
            create_topic(&image, &new_topic("a.b", 1, 1), DEFAULTS),
            Err(ControllerError::TopicAlreadyExists { .. })
        ));
        assert!(matches!(
            create_topic(&image, &new_topic("a_b", 1, 1), DEFAULTS),
            Err(ControllerError::InvalidTopic { .. })
        ));
        assert!(matches!(
            create_topic(&image, &new_topic("z", 0, 1), DEFAULTS),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        assert!(matches!(
            create_topic(&image, &new_topic("z", i32::MAX, 1), DEFAULTS),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        assert!(matches!(
            create_topic(&image, &new_topic("z", 1, 3), DEFAULTS),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        let mut with_config = new_topic("z", 1, 1);
        with_config
            .configs
            .insert("retention.ms".into(), "soon".into());
        assert!(matches!(
            create_topic(&image, &with_config, DEFAULTS),
            Err(ControllerError::InvalidConfig(_))
        ));
        let mut assigned = new_topic("z", 1, -1);
        assigned.assignments.insert(0, vec![NodeId(1)]);
        assert!(matches!(
            create_topic(&image, &assigned, DEFAULTS),
            Err(ControllerError::InvalidRequest { .. })
        ));
        let mut bad_broker = new_topic("z", -1, -1);
        bad_broker.assignments.insert(0, vec![NodeId(5)]);
        assert!(matches!(
            create_topic(&image, &bad_broker, DEFAULTS),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
    }

    #[test]
    fn deletes_and_grows_topics() {
        let image = image_with_brokers(1);
        let (records, created) = create_topic(&image, &new_topic("t", 2, 1), DEFAULTS).unwrap();
        let image = apply(&image, &records);
        let grown = apply(&image, &create_partitions(&image, "t", 5, None).unwrap());
        assert_eq!(grown.topic("t").unwrap().partitions.len(), 5);
        assert!(matches!(
            create_partitions(&grown, "t", 5, None),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        assert!(matches!(
            create_partitions(&grown, "t", i32::MAX, None),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        assert!(matches!(
            create_partitions(&grown, "t", 3, None),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        assert!(matches!(
            create_partitions(&grown, "t", 7, Some(&[vec![NodeId(1)]])),
            Err(ControllerError::InvalidReplicaAssignment { .. })
        ));
        assert!(matches!(
            delete_topic(&grown, &TopicRef::Name("t".into()), false),
            Err(ControllerError::TopicDeletionDisabled)
        ));
        let (records, (name, _)) =
            delete_topic(&grown, &TopicRef::Id(created.topic_id), true).unwrap();
        assert_eq!(name, "t");
        assert!(apply(&grown, &records).topic("t").is_none());
        assert!(matches!(
            delete_topic(&grown, &TopicRef::Name("nope".into()), true),
            Err(ControllerError::UnknownTopic { .. })
        ));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let image = image_with_brokers(1);
        let (records, first) = allocate_producer_ids(&image, NodeId(1));
        let image = apply(&image, &records);
        let (_, second) = allocate_producer_ids(&image, NodeId(1));
        assert_eq!(first, ProducerId(0));
        assert_eq!(second, ProducerId(PRODUCER_ID_BLOCK_SIZE));
    }

    #[test]
    fn incremental_config_changes_follow_kafka_rules() {
        let image = image_with_brokers(1);
        let (records, _) = create_topic(&image, &new_topic("t", 1, 1), DEFAULTS).unwrap();
        let image = apply(&image, &records);
        let topic = ConfigResource::Topic("t".into());
        let set = |name: &str, value: &str| (name.to_string(), ConfigOp::Set(value.into()));

        let records = alter_configs(
            &image,
            &topic,
            &[set("retention.ms", "1000"), set("cleanup.policy", "delete")],
            false,
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        let image = apply(&image, &records);
        assert_eq!(
            image
                .configs(&topic)
                .unwrap()
                .get("retention.ms")
                .map(String::as_str),
            Some("1000")
        );

        // APPEND adds to the list, SUBTRACT removes; both only for list configs.
        let append = (
            "cleanup.policy".to_string(),
            ConfigOp::Append("compact".into()),
        );
        let image = apply(
            &image,
            &alter_configs(&image, &topic, &[append], false).unwrap(),
        );
        assert_eq!(
            image
                .configs(&topic)
                .unwrap()
                .get("cleanup.policy")
                .map(String::as_str),
            Some("delete,compact")
        );
        let subtract = (
            "cleanup.policy".to_string(),
            ConfigOp::Subtract("delete".into()),
        );
        let image = apply(
            &image,
            &alter_configs(&image, &topic, &[subtract], false).unwrap(),
        );
        assert_eq!(
            image
                .configs(&topic)
                .unwrap()
                .get("cleanup.policy")
                .map(String::as_str),
            Some("compact")
        );
        let not_a_list = ("retention.ms".to_string(), ConfigOp::Append("5".into()));
        assert!(matches!(
            alter_configs(&image, &topic, &[not_a_list], false),
            Err(ControllerError::InvalidConfig(_))
        ));

        // DELETE removes the dynamic value; a no-op change writes nothing.
        let delete = ("retention.ms".to_string(), ConfigOp::Delete);
        let records = alter_configs(&image, &topic, std::slice::from_ref(&delete), false).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::Config {
                resource: topic.clone(),
                name: "retention.ms".into(),
                value: None
            }]
        );
        let image = apply(&image, &records);
        assert!(
            alter_configs(&image, &topic, &[delete], false)
                .unwrap()
                .is_empty()
        );

        // Legacy AlterConfigs replaces the whole set.
        let records = alter_configs(&image, &topic, &[set("segment.ms", "60000")], true).unwrap();
        let image = apply(&image, &records);
        let configs = image.configs(&topic).cloned().unwrap_or_default();
        assert_eq!(configs.len(), 1, "{configs:?}");

        // Errors.
        assert!(matches!(
            alter_configs(&image, &topic, &[set("no.such", "1")], false),
            Err(ControllerError::InvalidConfig(_))
        ));
        assert!(matches!(
            alter_configs(&image, &topic, &[set("retention.ms", "soon")], false),
            Err(ControllerError::InvalidConfig(_))
        ));
        assert!(matches!(
            alter_configs(
                &image,
                &topic,
                &[set("retention.ms", "1"), set("retention.ms", "2")],
                false
            ),
            Err(ControllerError::InvalidRequest { .. })
        ));
        assert!(matches!(
            alter_configs(
                &image,
                &ConfigResource::Topic("missing".into()),
                &[set("retention.ms", "1")],
                false
            ),
            Err(ControllerError::UnknownTopic { .. })
        ));
    }

    #[test]
    fn broker_configs_change_only_when_dynamic() {
        let image = image_with_brokers(1);
        let set = |name: &str, value: &str| (name.to_string(), ConfigOp::Set(value.into()));
        let records = alter_configs(
            &image,
            &ConfigResource::BrokerDefault,
            &[set("log.retention.ms", "60000")],
            false,
        )
        .unwrap();
        assert_eq!(records.len(), 1);
        assert!(
            alter_configs(
                &image,
                &ConfigResource::Broker(NodeId(1)),
                &[set("log.segment.bytes", "1048576")],
                false
            )
            .is_ok()
        );
        match alter_configs(
            &image,
            &ConfigResource::Broker(NodeId(1)),
            &[set("log.dirs", "/elsewhere"), set("log.retention.ms", "1")],
            false,
        ) {
            Err(ControllerError::InvalidRequest { reason }) => {
                assert_eq!(
                    reason,
                    "Cannot update these configs dynamically: Set(log.dirs)"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            alter_configs(
                &image,
                &ConfigResource::Broker(NodeId(7)),
                &[set("log.retention.ms", "1")],
                false
            ),
            Err(ControllerError::InvalidRequest { .. })
        ));
    }
}
