//! Kafka's config names, types, defaults and validation, for topics and brokers.
//!
//! Names and defaults are Apache Kafka's so that `DescribeConfigs`/`AlterConfigs` clients and
//! existing `server.properties` files work unchanged. A topic config falls back to its broker
//! synonyms (`retention.ms` ← `log.retention.ms` ← `log.retention.minutes` ← `log.retention.hours`)
//! and then to its default.

use std::collections::BTreeMap;

/// A config value's type, as DescribeConfigs reports it (`ConfigType` in KIP-336 numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Password,
}

impl ConfigType {
    /// The `config_type` code of DescribeConfigs v3+.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Password => 9,
        }
    }
}

/// What values a config accepts beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    Any,
    AtLeast(i64),
    Between(f64, f64),
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these values.
    ListOf(&'static [&'static str]),
}

/// One config's definition.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// `None` means "no default" (null).
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// For topic configs: the broker configs it falls back to, highest precedence first. A synonym
    /// may be in other units; see [`ConfigDef::from_synonym`].
    pub broker_synonyms: &'static [&'static str],
    /// Broker configs that cannot change without a restart.
    pub read_only: bool,
    pub documentation: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

macro_rules! def {
    ($name:literal, $type:ident, $default:expr, $validator:expr, [$($synonym:literal),*], $read_only:literal, $doc:literal) => {
        ConfigDef {
            name: $name,
            config_type: ConfigType::$type,
            default: $default,
            validator: $validator,
            broker_synonyms: &[$($synonym),*],
            read_only: $read_only,
            documentation: $doc,
        }
    };
}

const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

/// Every topic config Caudal knows, with Kafka's defaults.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        Some("delete"),
        Validator::ListOf(CLEANUP_POLICIES),
        ["log.cleanup.policy"],
        false,
        "Retention policy for old log segments: delete and/or compact."
    ),
    def!(
        "compression.type",
        String,
        Some("producer"),
        Validator::OneOf(COMPRESSION_TYPES),
        ["compression.type"],
        false,
        "Final compression type for the topic; 'producer' keeps the producer's codec."
    ),
    def!(
        "delete.retention.ms",
        Long,
        Some("86400000"),
        Validator::AtLeast(0),
        ["log.cleaner.delete.retention.ms"],
        false,
        "How long tombstones are retained on compacted topics."
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        Some("60000"),
        Validator::AtLeast(0),
        ["log.segment.delete.delay.ms"],
        false,
        "Time to wait before deleting a file from the filesystem."
    ),
    def!(
        "flush.messages",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        ["log.flush.interval.messages"],
        false,
        "Force an fsync after this many messages."
    ),
    def!(
        "flush.ms",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(0),
        ["log.flush.interval.ms"],
        false,
        "Force an fsync after this much time."
    ),
    def!(
        "index.interval.bytes",
        Int,
        Some("4096"),
        Validator::AtLeast(0),
        ["log.index.interval.bytes"],
        false,
        "Bytes between offset index entries."
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        ["log.cleaner.max.compaction.lag.ms"],
        false,
        "Maximum time a message stays ineligible for compaction."
    ),
    def!(
        "max.message.bytes",
        Int,
        Some("1048588"),
        Validator::AtLeast(0),
        ["message.max.bytes"],
        false,
        "Largest record batch size allowed."
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        Some("3600000"),
        Validator::AtLeast(0),
        ["log.message.timestamp.after.max.ms"],
        false,
        "How far in the future a CreateTime timestamp may be."
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(0),
        ["log.message.timestamp.before.max.ms"],
        false,
        "How far in the past a CreateTime timestamp may be."
    ),
    def!(
        "message.timestamp.type",
        String,
        Some("CreateTime"),
        Validator::OneOf(TIMESTAMP_TYPES),
        ["log.message.timestamp.type"],
        false,
        "CreateTime or LogAppendTime."
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        Some("0.5"),
        Validator::Between(0.0, 1.0),
        ["log.cleaner.min.cleanable.ratio"],
        false,
        "Dirty ratio above which the log is compacted."
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        Some("0"),
        Validator::AtLeast(0),
        ["log.cleaner.min.compaction.lag.ms"],
        false,
        "Minimum time a message stays uncompacted."
    ),
    def!(
        "min.insync.replicas",
        Int,
        Some("1"),
        Validator::AtLeast(1),
        ["min.insync.replicas"],
        false,
        "Minimum in-sync replicas for acks=all."
    ),
    def!(
        "preallocate",
        Boolean,
        Some("false"),
        Validator::Any,
        ["log.preallocate"],
        false,
        "Preallocate segment files."
    ),
    def!(
        "retention.bytes",
        Long,
        Some("-1"),
        Validator::Any,
        ["log.retention.bytes"],
        false,
        "Maximum partition size before old segments are deleted; -1 for no limit."
    ),
    def!(
        "retention.ms",
        Long,
        Some("604800000"),
        Validator::AtLeast(-1),
        [
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours"
        ],
        false,
        "How long to keep a segment; -1 for no limit."
    ),
    def!(
        "segment.bytes",
        Int,
        Some("1073741824"),
        Validator::AtLeast(14),
        ["log.segment.bytes"],
        false,
        "Segment file size."
    ),
    def!(
        "segment.index.bytes",
        Int,
        Some("10485760"),
        Validator::AtLeast(4),
        ["log.index.size.max.bytes"],
        false,
        "Offset index size."
    ),
    def!(
        "segment.jitter.ms",
        Long,
        Some("0"),
        Validator::AtLeast(0),
        ["log.roll.jitter.ms", "log.roll.jitter.hours"],
        false,
        "Random jitter subtracted from segment.ms."
    ),
    def!(
        "segment.ms",
        Long,
        Some("604800000"),
        Validator::AtLeast(1),
        ["log.roll.ms", "log.roll.hours"],
        false,
        "Time after which a segment is rolled."
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        Some("false"),
        Validator::Any,
        ["unclean.leader.election.enable"],
        false,
        "Allow out-of-sync replicas to become leader."
    ),
];

/// Broker configs Caudal reads, with Kafka's defaults. Caudal-only settings start with `caudal.`.
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    def!(
        "node.id",
        Int,
        Some("1"),
        Validator::AtLeast(0),
        [],
        true,
        "This node's id."
    ),
    def!(
        "log.dirs",
        String,
        Some("./caudal-data"),
        Validator::Any,
        [],
        true,
        "Data directory (one is supported)."
    ),
    def!(
        "listeners",
        String,
        Some("PLAINTEXT://127.0.0.1:9092"),
        Validator::Any,
        [],
        true,
        "Kafka listener."
    ),
    def!(
        "advertised.listeners",
        String,
        None,
        Validator::Any,
        [],
        true,
        "Address clients are told to use; defaults to the listener."
    ),
    def!(
        "auto.create.topics.enable",
        Boolean,
        Some("true"),
        Validator::Any,
        [],
        true,
        "Create topics on first metadata request or produce."
    ),
    def!(
        "num.partitions",
        Int,
        Some("1"),
        Validator::AtLeast(1),
        [],
        true,
        "Default partitions for auto-created topics."
    ),
    def!(
        "default.replication.factor",
        Int,
        Some("1"),
        Validator::AtLeast(1),
        [],
        true,
        "Default replication factor for auto-created topics."
    ),
    def!(
        "message.max.bytes",
        Int,
        Some("1048588"),
        Validator::AtLeast(0),
        [],
        false,
        "Largest record batch size allowed."
    ),
    def!(
        "socket.request.max.bytes",
        Int,
        Some("104857600"),
        Validator::AtLeast(1),
        [],
        true,
        "Largest request frame."
    ),
    def!(
        "max.connections",
        Int,
        Some("2147483647"),
        Validator::AtLeast(0),
        [],
        true,
        "Maximum client connections."
    ),
    def!(
        "queued.max.requests",
        Int,
        Some("500"),
        Validator::AtLeast(1),
        [],
        true,
        "Requests in flight per connection before reading pauses."
    ),
    def!(
        "fetch.max.bytes",
        Int,
        Some("57671680"),
        Validator::AtLeast(1024),
        [],
        true,
        "Largest fetch response; a connection holds at most two such responses unwritten."
    ),
    def!(
        "delete.topic.enable",
        Boolean,
        Some("true"),
        Validator::Any,
        [],
        true,
        "Allow topic deletion."
    ),
    def!(
        "compression.type",
        String,
        Some("producer"),
        Validator::OneOf(COMPRESSION_TYPES),
        [],
        false,
        "Default topic compression type."
    ),
    def!(
        "min.insync.replicas",
        Int,
        Some("1"),
        Validator::AtLeast(1),
        [],
        false,
        "Default min.insync.replicas."
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        Some("false"),
        Validator::Any,
        [],
        false,
        "Default unclean.leader.election.enable."
    ),
    def!(
        "log.cleanup.policy",
        List,
        Some("delete"),
        Validator::ListOf(CLEANUP_POLICIES),
        [],
        false,
        "Default cleanup.policy."
    ),
    def!(
        "log.segment.bytes",
        Int,
        Some("1073741824"),
        Validator::AtLeast(14),
        [],
        false,
        "Default segment.bytes."
    ),
    def!(
        "log.roll.ms",
        Long,
        None,
        Validator::AtLeast(1),
        [],
        false,
        "Default segment.ms in ms."
    ),
    def!(
        "log.roll.hours",
        Int,
        Some("168"),
        Validator::AtLeast(1),
        [],
        false,
        "Default segment.ms in hours."
    ),
    def!(
        "log.roll.jitter.ms",
        Long,
        None,
        Validator::AtLeast(0),
        [],
        false,
        "Default segment.jitter.ms in ms."
    ),
    def!(
        "log.roll.jitter.hours",
        Int,
        Some("0"),
        Validator::AtLeast(0),
        [],
        false,
        "Default segment.jitter.ms in hours."
    ),
    def!(
        "log.retention.ms",
        Long,
        None,
        Validator::AtLeast(-1),
        [],
        false,
        "Default retention.ms in ms."
    ),
    def!(
        "log.retention.minutes",
        Int,
        None,
        Validator::AtLeast(-1),
        [],
        false,
        "Default retention.ms in minutes."
    ),
    def!(
        "log.retention.hours",
        Int,
        Some("168"),
        Validator::AtLeast(-1),
        [],
        false,
        "Default retention.ms in hours."
    ),
    def!(
        "log.retention.bytes",
        Long,
        Some("-1"),
        Validator::Any,
        [],
        false,
        "Default retention.bytes."
    ),
    def!(
        "log.index.interval.bytes",
        Int,
        Some("4096"),
        Validator::AtLeast(0),
        [],
        false,
        "Default index.interval.bytes."
    ),
    def!(
        "log.index.size.max.bytes",
        Int,
        Some("10485760"),
        Validator::AtLeast(4),
        [],
        false,
        "Default segment.index.bytes."
    ),
    def!(
        "log.message.timestamp.type",
        String,
        Some("CreateTime"),
        Validator::OneOf(TIMESTAMP_TYPES),
        [],
        false,
        "Default message.timestamp.type."
    ),
    def!(
        "log.message.timestamp.after.max.ms",
        Long,
        Some("3600000"),
        Validator::AtLeast(0),
        [],
        false,
        "Default message.timestamp.after.max.ms."
    ),
    def!(
        "log.message.timestamp.before.max.ms",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(0),
        [],
        false,
        "Default message.timestamp.before.max.ms."
    ),
    def!(
        "log.flush.interval.messages",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        [],
        false,
        "Default flush.messages."
    ),
    def!(
        "log.flush.interval.ms",
        Long,
        None,
        Validator::AtLeast(0),
        [],
        false,
        "Default flush.ms."
    ),
    def!(
        "log.preallocate",
        Boolean,
        Some("false"),
        Validator::Any,
        [],
        false,
        "Default preallocate."
    ),
    def!(
        "log.segment.delete.delay.ms",
        Long,
        Some("60000"),
        Validator::AtLeast(0),
        [],
        false,
        "Default file.delete.delay.ms."
    ),
    def!(
        "log.cleaner.delete.retention.ms",
        Long,
        Some("86400000"),
        Validator::AtLeast(0),
        [],
        false,
        "Default delete.retention.ms."
    ),
    def!(
        "log.cleaner.min.cleanable.ratio",
        Double,
        Some("0.5"),
        Validator::Between(0.0, 1.0),
        [],
        false,
        "Default min.cleanable.dirty.ratio."
    ),
    def!(
        "log.cleaner.min.compaction.lag.ms",
        Long,
        Some("0"),
        Validator::AtLeast(0),
        [],
        false,
        "Default min.compaction.lag.ms."
    ),
    def!(
        "log.cleaner.max.compaction.lag.ms",
        Long,
        Some(LONG_MAX),
        Validator::AtLeast(1),
        [],
        false,
        "Default max.compaction.lag.ms."
    ),
    def!(
        "log.retention.check.interval.ms",
        Long,
        Some("300000"),
        Validator::AtLeast(1),
        [],
        true,
        "How often the broker checks whether any log segment can be deleted under retention."
    ),
    def!(
        "log.cleaner.enable",
        Boolean,
        Some("true"),
        Validator::Any,
        [],
        true,
        "Run the log cleaner, which compacts topics with cleanup.policy=compact."
    ),
    def!(
        "log.cleaner.threads",
        Int,
        Some("1"),
        Validator::AtLeast(0),
        [],
        true,
        "Threads that clean logs."
    ),
    def!(
        "log.cleaner.dedupe.buffer.size",
        Long,
        Some("134217728"),
        Validator::AtLeast(0),
        [],
        true,
        "Memory for the cleaners' key maps, shared by all cleaner threads."
    ),
    def!(
        "log.cleaner.io.buffer.load.factor",
        Double,
        Some("0.9"),
        Validator::Between(0.0, 1.0),
        [],
        true,
        "How full a cleaner's key map may get."
    ),
    def!(
        "log.cleaner.backoff.ms",
        Long,
        Some("15000"),
        Validator::AtLeast(0),
        [],
        true,
        "How long a cleaner sleeps when no log needs cleaning."
    ),
    def!(
        "offsets.topic.num.partitions",
        Int,
        Some("50"),
        Validator::AtLeast(1),
        [],
        true,
        "Partitions of __consumer_offsets."
    ),
    def!(
        "offsets.topic.replication.factor",
        Short,
        Some("3"),
        Validator::AtLeast(1),
        [],
        true,
        "Replication factor of __consumer_offsets, capped at the number of registered brokers when it is created."
    ),
    def!(
        "offsets.topic.segment.bytes",
        Int,
        Some("104857600"),
        Validator::AtLeast(1),
        [],
        true,
        "segment.bytes of __consumer_offsets."
    ),
    def!(
        "offsets.load.buffer.size",
        Int,
        Some("5242880"),
        Validator::AtLeast(1),
        [],
        true,
        "Bytes read at a time when a group coordinator loads its __consumer_offsets partition."
    ),
    def!(
        "offsets.retention.minutes",
        Int,
        Some("10080"),
        Validator::AtLeast(1),
        [],
        true,
        "How long committed offsets of a group without members are kept."
    ),
    def!(
        "offsets.retention.check.interval.ms",
        Long,
        Some("600000"),
        Validator::AtLeast(1),
        [],
        true,
        "How often expired offsets are removed."
    ),
    def!(
        "offset.metadata.max.bytes",
        Int,
        Some("4096"),
        Validator::AtLeast(0),
        [],
        true,
        "The largest metadata string an offset commit may carry."
    ),
    def!(
        "group.min.session.timeout.ms",
        Int,
        Some("6000"),
        Validator::AtLeast(0),
        [],
        true,
        "The smallest session.timeout.ms a consumer may ask for."
    ),
    def!(
        "group.max.session.timeout.ms",
        Int,
        Some("1800000"),
        Validator::AtLeast(0),
        [],
        true,
        "The largest session.timeout.ms a consumer may ask for."
    ),
    def!(
        "group.initial.rebalance.delay.ms",
        Int,
        Some("3000"),
        Validator::AtLeast(0),
        [],
        true,
        "How long the first rebalance of an empty group waits for more members to join."
    ),
    def!(
        "group.max.size",
        Int,
        Some("2147483647"),
        Validator::AtLeast(1),
        [],
        true,
        "The most members one consumer group may have."
    ),
    def!(
        "caudal.acks.all.fsync",
        Boolean,
        Some("true"),
        Validator::Any,
        [],
        true,
        "Acknowledge acks=all produces only after fsync (Caudal's durable default). false = Kafka's page-cache behaviour."
    ),
];

/// Looks up a topic config definition.
pub fn topic_config(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Looks up a broker config definition.
pub fn broker_config(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|def| def.name == name)
}

/// Why a config value was rejected (Kafka: INVALID_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ConfigError {
    #[error("unknown config '{name}'")]
    Unknown { name: String },
    #[error("invalid value '{value}' for config '{name}': {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
}

impl ConfigDef {
    /// Checks `value` against this config's type and validator.
    pub fn validate(&self, value: &str) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidValue {
            name: self.name.to_string(),
            value: value.to_string(),
            reason,
        };
        let value = value.trim();
        match self.config_type {
            ConfigType::Boolean => {
                if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                    return Err(invalid("expected true or false".into()));
                }
            }
            ConfigType::Int | ConfigType::Short | ConfigType::Long => {
                let number: i64 = value
                    .parse()
                    .map_err(|_| invalid("expected a whole number".into()))?;
                let (min, max) = match self.config_type {
                    ConfigType::Int => (i32::MIN as i64, i32::MAX as i64),
                    ConfigType::Short => (i16::MIN as i64, i16::MAX as i64),
                    _ => (i64::MIN, i64::MAX),
                };
                if number < min || number > max {
                    return Err(invalid("out of range for its type".into()));
                }
                if let Validator::AtLeast(floor) = self.validator
                    && number < floor
                {
                    return Err(invalid(format!("must be at least {floor}")));
                }
            }
            ConfigType::Double => {
                let number: f64 = value
                    .parse()
                    .map_err(|_| invalid("expected a number".into()))?;
                if let Validator::Between(low, high) = self.validator
                    && !(low..=high).contains(&number)
                {
                    return Err(invalid(format!("must be between {low} and {high}")));
                }
            }
            ConfigType::String | ConfigType::Password => {
                if let Validator::OneOf(allowed) = self.validator
                    && !allowed
                        .iter()
                        .any(|candidate| candidate.eq_ignore_ascii_case(value))
                {
                    return Err(invalid(format!("must be one of {}", allowed.join(", "))));
                }
            }
            ConfigType::List => {
                if let Validator::ListOf(allowed) = self.validator {
                    let items: Vec<&str> = value.split(',').map(str::trim).collect();
                    if items.iter().any(|item| item.is_empty()) {
                        return Err(invalid("empty list item".into()));
                    }
                    if let Some(item) = items.iter().find(|item| !allowed.contains(item)) {
                        return Err(invalid(format!(
                            "'{item}' is not one of {}",
                            allowed.join(", ")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Converts a broker synonym's value to this topic config's units (hours/minutes → ms).
    pub fn from_synonym(synonym: &str, value: &str) -> Option<String> {
        let scale: i64 = if synonym.ends_with(".hours") {
            3_600_000
        } else if synonym.ends_with(".minutes") {
            60_000
        } else {
            return Some(value.to_string());
        };
        let number: i64 = value.trim().parse().ok()?;
        Some(if number < 0 {
            number.to_string()
        } else {
            number.saturating_mul(scale).to_string()
        })
    }
}

/// Validates a set of topic configs (CreateTopics, AlterConfigs).
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ConfigError> {
    for (name, value) in configs {
        let def = topic_config(name).ok_or_else(|| ConfigError::Unknown {
            name: name.to_string(),
        })?;
        def.validate(value)?;
    }
    Ok(())
}

/// Where an effective config value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One step in an effective value's precedence chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// A config's effective value and the chain it was resolved through (most specific first).
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    pub def: &'static ConfigDef,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub synonyms: Vec<ConfigSynonym>,
}

/// The broker-level config layers, most specific first: dynamic values for this broker, dynamic
/// cluster-wide defaults (both from the metadata log, changed with AlterConfigs), and the static
/// values the broker started with.
#[derive(Debug, Clone, Copy)]
pub struct BrokerLayers<'a> {
    pub dynamic_broker: Option<&'a BTreeMap<String, String>>,
    pub dynamic_default: Option<&'a BTreeMap<String, String>>,
    pub static_broker: &'a BTreeMap<String, String>,
}

impl<'a> BrokerLayers<'a> {
    /// Only static values (no dynamic configs).
    pub fn static_only(static_broker: &'a BTreeMap<String, String>) -> Self {
        BrokerLayers {
            dynamic_broker: None,
            dynamic_default: None,
            static_broker,
        }
    }

    /// Every value set for broker config `name`, most specific first.
    fn values(&self, name: &str) -> Vec<(String, ConfigSource)> {
        [
            (self.dynamic_broker, ConfigSource::DynamicBroker),
            (self.dynamic_default, ConfigSource::DynamicDefaultBroker),
            (Some(self.static_broker), ConfigSource::StaticBroker),
        ]
        .into_iter()
        .filter_map(|(layer, source)| {
            layer
                .and_then(|values| values.get(name))
                .map(|value| (value.clone(), source))
        })
        .collect()
    }
}

/// Resolves every topic config: the topic's own value, then each broker synonym through the
/// broker layers (dynamic broker, dynamic default, static), then the default.
pub fn resolve_topic_configs(
    topic: Option<&BTreeMap<String, String>>,
    broker: BrokerLayers<'_>,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(value) = topic.and_then(|configs| configs.get(def.name)) {
                synonyms.push(ConfigSynonym {
                    name: def.name.to_string(),
                    value: Some(value.clone()),
                    source: ConfigSource::DynamicTopic,
                });
            }
            for synonym in def.broker_synonyms {
                for (value, source) in broker.values(synonym) {
                    synonyms.push(ConfigSynonym {
                        name: synonym.to_string(),
                        value: ConfigDef::from_synonym(synonym, &value),
                        source,
                    });
                }
            }
            let default = def.broker_synonyms.first().map_or(def.name, |name| *name);
            synonyms.push(ConfigSynonym {
                name: default.to_string(),
                value: def.default.map(str::to_string),
                source: ConfigSource::Default,
            });
            let effective = synonyms[0].clone();
            ResolvedConfig {
                def,
                value: effective.value,
                source: effective.source,
                synonyms,
            }
        })
        .collect()
}

/// Resolves every broker config through the broker layers, then the default.
pub fn resolve_broker_configs(broker: BrokerLayers<'_>) -> Vec<ResolvedConfig> {
    BROKER_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms: Vec<ConfigSynonym> = broker
                .values(def.name)
                .into_iter()
                .map(|(value, source)| ConfigSynonym {
                    name: def.name.to_string(),
                    value: Some(value),
                    source,
                })
                .collect();
            synonyms.push(ConfigSynonym {
                name: def.name.to_string(),
                value: def.default.map(str::to_string),
                source: ConfigSource::Default,
            });
            let effective = synonyms[0].clone();
            ResolvedConfig {
                def,
                value: effective.value,
                source: effective.source,
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_types_and_ranges() {
        let def = topic_config("segment.bytes").unwrap();
        assert!(def.validate("1048576").is_ok());
        assert!(def.validate("10").is_err());
        assert!(def.validate("abc").is_err());
        assert!(def.validate("99999999999").is_err());
        let policy = topic_config("cleanup.policy").unwrap();
        assert!(policy.validate("compact,delete").is_ok());
        assert!(policy.validate("compact,shred").is_err());
        assert!(
            topic_config("message.timestamp.type")
                .unwrap()
                .validate("LogAppendTime")
                .is_ok()
        );
        assert!(
            topic_config("min.cleanable.dirty.ratio")
                .unwrap()
                .validate("1.5")
                .is_err()
        );
        assert_eq!(
            validate_topic_configs([("no.such.config", "1")]),
            Err(ConfigError::Unknown {
                name: "no.such.config".into()
            })
        );
    }

    #[test]
    fn topic_configs_fall_back_to_broker_synonyms_in_their_units() {
        let mut broker = BTreeMap::new();
        broker.insert("log.retention.hours".to_string(), "2".to_string());
        broker.insert("log.segment.bytes".to_string(), "1048576".to_string());
        let mut topic = BTreeMap::new();
        topic.insert("segment.bytes".to_string(), "2048".to_string());
        let resolved = resolve_topic_configs(Some(&topic), BrokerLayers::static_only(&broker));
        let get = |name: &str| {
            resolved
                .iter()
                .find(|config| config.def.name == name)
                .unwrap()
        };
        assert_eq!(get("retention.ms").value.as_deref(), Some("7200000"));
        assert_eq!(get("retention.ms").source, ConfigSource::StaticBroker);
        assert_eq!(get("segment.bytes").value.as_deref(), Some("2048"));
        assert_eq!(get("segment.bytes").source, ConfigSource::DynamicTopic);
        assert_eq!(get("segment.bytes").synonyms.len(), 3);
        assert_eq!(get("cleanup.policy").source, ConfigSource::Default);
    }

    #[test]
    fn dynamic_broker_layers_win_over_static_values_synonym_by_synonym() {
        let mut static_broker = BTreeMap::new();
        static_broker.insert("log.retention.hours".to_string(), "2".to_string());
        static_broker.insert("log.segment.bytes".to_string(), "1048576".to_string());
        static_broker.insert("message.max.bytes".to_string(), "2000".to_string());
        let mut dynamic_default = BTreeMap::new();
        dynamic_default.insert("log.retention.ms".to_string(), "5000".to_string());
        dynamic_default.insert("log.segment.bytes".to_string(), "4096".to_string());
        let mut dynamic_broker = BTreeMap::new();
        dynamic_broker.insert("log.segment.bytes".to_string(), "8192".to_string());
        let layers = BrokerLayers {
            dynamic_broker: Some(&dynamic_broker),
            dynamic_default: Some(&dynamic_default),
            static_broker: &static_broker,
        };
        let topic = resolve_topic_configs(None, layers);
        let get = |name: &str| topic.iter().find(|c| c.def.name == name).unwrap().clone();
        let retention = get("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("5000"));
        assert_eq!(retention.source, ConfigSource::DynamicDefaultBroker);
        let segment = get("segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("8192"));
        assert_eq!(
            segment
                .synonyms
                .iter()
                .map(|s| (s.value.clone().unwrap_or_default(), s.source))
                .collect::<Vec<_>>(),
            vec![
                ("8192".to_string(), ConfigSource::DynamicBroker),
                ("4096".to_string(), ConfigSource::DynamicDefaultBroker),
                ("1048576".to_string(), ConfigSource::StaticBroker),
                ("1073741824".to_string(), ConfigSource::Default),
            ]
        );
        let broker = resolve_broker_configs(layers);
        let segment = broker
            .iter()
            .find(|c| c.def.name == "log.segment.bytes")
            .unwrap();
        assert_eq!(segment.source, ConfigSource::DynamicBroker);
        let max = broker
            .iter()
            .find(|c| c.def.name == "message.max.bytes")
            .unwrap();
        assert_eq!(max.value.as_deref(), Some("2000"));
        assert_eq!(max.source, ConfigSource::StaticBroker);
    }
}
