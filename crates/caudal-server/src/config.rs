//! Broker configuration: Kafka's broker config names, resolved from layers.
//!
//! Precedence, lowest first: Kafka's defaults, a config file (TOML, or a Kafka
//! `server.properties`), `CAUDAL_*` environment variables, then command-line flags (`--set NAME=VALUE`
//! and the named flags such as `--data-dir`). Every value is validated against its definition;
//! an invalid value is a startup error naming the config and the source it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use caudal_coordinator::CoordinatorConfig;
use caudal_metadata::config::{ConfigError, broker_config, topic_config};
use caudal_model::NodeId;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("config file {path}, line {line}: expected NAME=VALUE")]
    Properties { path: PathBuf, line: usize },
    #[error("{origin}: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: ConfigError,
    },
    #[error("{name}: {reason}")]
    Address { name: String, reason: String },
}

/// The broker's effective static configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every explicitly set value by Kafka name (not the defaults): DescribeConfigs reports these
    /// as STATIC_BROKER_CONFIG, and topic configs fall back to them.
    pub values: BTreeMap<String, String>,
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub message_max_bytes: u32,
    pub request_bytes_max: usize,
    pub connections_max: usize,
    pub queued_requests_max: usize,
    /// `fetch.max.bytes`: the largest fetch response.
    pub fetch_bytes_max: u32,
    pub delete_topic_enable: bool,
    pub acks_all_fsync: bool,
    pub broker_rack: Option<String>,
    /// The group coordinator's settings (`offsets.*`, `group.*`).
    pub groups: GroupSettings,
    /// Retention and the log cleaner (`log.retention.check.interval.ms`, `log.cleaner.*`).
    pub lifecycle: LifecycleSettings,
}

/// How the broker drives retention and compaction.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleSettings {
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `log.cleaner.enable` and `log.cleaner.threads`: how many cleaner threads run (0 = none).
    pub cleaner_threads: usize,
    /// `log.cleaner.dedupe.buffer.size`, shared by the cleaner threads.
    pub cleaner_dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.buffer.load.factor`.
    pub cleaner_load_factor: f64,
    /// `log.cleaner.backoff.ms`.
    pub cleaner_backoff_ms: i64,
}

/// What the group coordinator needs from the broker config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub coordinator: CoordinatorConfig,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.load.buffer.size`.
    pub offsets_load_buffer_bytes: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
}

/// One layer of config values and where they came from.
pub struct ConfigLayer {
    pub origin: String,
    pub values: Vec<(String, String)>,
}

impl ConfigLayer {
    /// Reads a config file: `.toml` as TOML (nested tables flatten to dotted names), anything else
    /// as Java properties (`name=value`, `#`/`!` comments).
    pub fn from_file(path: &Path) -> Result<Self, ConfigLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigLoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let values = if path.extension().is_some_and(|ext| ext == "toml") {
            parse_toml(path, &text)?
        } else {
            parse_properties(path, &text)?
        };
        Ok(Self {
            origin: format!("config file {}", path.display()),
            values,
        })
    }

    /// `CAUDAL_LOG_SEGMENT_BYTES=1048576` → `log.segment.bytes`. Kafka config names contain no
    /// underscores, so the mapping is unambiguous.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let values = vars
            .into_iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix("CAUDAL_")?;
                // Variables of the client tools and test harness, not broker configs.
                if name.is_empty() || NOT_BROKER_CONFIGS.contains(&name) {
                    return None;
                }
                Some((name.to_ascii_lowercase().replace('_', "."), value))
            })
            .collect();
        Self {
            origin: "environment".into(),
            values,
        }
    }
}

/// `CAUDAL_*` variables that belong to the client tools and the test harness.
const NOT_BROKER_CONFIGS: &[&str] = &["BOOTSTRAP_SERVER", "BIN", "LOG"];

fn parse_properties(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigLoadError> {
    let mut values = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or(ConfigLoadError::Properties {
                path: path.to_path_buf(),
                line: index + 1,
            })?;
        values.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(values)
}

fn parse_toml(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigLoadError> {
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| ConfigLoadError::Toml {
                path: path.to_path_buf(),
                reason: error.message().to_string(),
            })?;
    let mut values = Vec::new();
    flatten_toml("", &toml::Value::Table(table), &mut values);
    Ok(values)
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_toml(&name, value, out);
            }
        }
        toml::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        toml::Value::Array(items) => out.push((
            prefix.to_string(),
            items
                .iter()
                .map(|item| match item {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Parses `HOST:PORT`, optionally prefixed by a listener name (`PLAINTEXT://127.0.0.1:9092`).
fn parse_host_port(name: &str, value: &str) -> Result<(String, u16), ConfigLoadError> {
    let address = value.split(',').next().unwrap_or_default().trim();
    let address = address.split_once("://").map_or(address, |(_, rest)| rest);
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| ConfigLoadError::Address {
            name: name.into(),
            reason: format!("'{value}' is not HOST:PORT"),
        })?;
    let port = port.parse().map_err(|_| ConfigLoadError::Address {
        name: name.into(),
        reason: format!("'{port}' is not a port number"),
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() { "0.0.0.0" } else { host }.to_string(),
        port,
    ))
}

impl BrokerConfig {
    /// Resolves the layers (lowest precedence first) into a validated config.
    pub fn from_layers(layers: &[ConfigLayer]) -> Result<Self, ConfigLoadError> {
        let mut values = BTreeMap::new();
        for layer in layers {
            for (name, value) in &layer.values {
                match broker_config(name).or_else(|| topic_config(name)) {
                    Some(def) => {
                        def.validate(value)
                            .map_err(|source| ConfigLoadError::Invalid {
                                origin: layer.origin.clone(),
                                source,
                            })?
                    }
                    None => tracing::warn!(
                        config = %name, origin = %layer.origin,
                        "ignoring unknown broker config"
                    ),
                }
                values.insert(name.clone(), value.clone());
            }
        }
        let get = |name: &str| -> String {
            values
                .get(name)
                .cloned()
                .or_else(|| broker_config(name).and_then(|def| def.default.map(str::to_string)))
                .unwrap_or_default()
        };
        // Validation above guarantees these parse; defaults are valid by construction.
        let number = |name: &str| -> i64 { get(name).trim().parse().unwrap_or_default() };
        let flag = |name: &str| get(name).trim().eq_ignore_ascii_case("true");

        let listeners = get("listeners");
        let (listen_host, listen_port) = parse_host_port("listeners", &listeners)?;
        let listen: SocketAddr = format!(
            "{}:{listen_port}",
            if listen_host.contains(':') {
                format!("[{listen_host}]")
            } else {
                listen_host.clone()
            }
        )
        .parse()
        .map_err(|_| ConfigLoadError::Address {
            name: "listeners".into(),
            reason: format!("'{listen_host}' is not an IP address"),
        })?;
        let (advertised_host, advertised_port) = match values.get("advertised.listeners") {
            Some(advertised) => parse_host_port("advertised.listeners", advertised)?,
            None if listen.ip().is_unspecified() => ("127.0.0.1".to_string(), listen_port),
            None => (listen_host, listen_port),
        };
        Ok(Self {
            node_id: NodeId(number("node.id") as i32),
            data_dir: PathBuf::from(
                get("log.dirs")
                    .split(',')
                    .next()
                    .unwrap_or("./caudal-data")
                    .trim(),
            ),
            listen,
            advertised_host,
            advertised_port,
            auto_create_topics: flag("auto.create.topics.enable"),
            num_partitions: number("num.partitions") as i32,
            default_replication_factor: number("default.replication.factor") as i16,
            message_max_bytes: number("message.max.bytes").max(0) as u32,
            request_bytes_max: number("socket.request.max.bytes").max(1) as usize,
            connections_max: number("max.connections").max(0) as usize,
            queued_requests_max: number("queued.max.requests").max(1) as usize,
            fetch_bytes_max: number("fetch.max.bytes").clamp(1024, i32::MAX as i64) as u32,
            delete_topic_enable: flag("delete.topic.enable"),
            acks_all_fsync: flag("caudal.acks.all.fsync"),
            broker_rack: values.get("broker.rack").cloned(),
            lifecycle: LifecycleSettings {
                retention_check_interval_ms: number("log.retention.check.interval.ms").max(1),
                cleaner_threads: if flag("log.cleaner.enable") {
                    number("log.cleaner.threads").clamp(0, 64) as usize
                } else {
                    0
                },
                cleaner_dedupe_buffer_bytes: number("log.cleaner.dedupe.buffer.size").max(0) as u64,
                cleaner_load_factor: get("log.cleaner.io.buffer.load.factor")
                    .trim()
                    .parse()
                    .unwrap_or(0.9),
                cleaner_backoff_ms: number("log.cleaner.backoff.ms").max(0),
            },
            groups: GroupSettings {
                coordinator: CoordinatorConfig {
                    group_min_session_timeout_ms: number("group.min.session.timeout.ms") as i32,
                    group_max_session_timeout_ms: number("group.max.session.timeout.ms") as i32,
                    group_initial_rebalance_delay_ms: number("group.initial.rebalance.delay.ms")
                        as i32,
                    group_max_size: number("group.max.size").max(1) as usize,
                    offset_metadata_max_bytes: number("offset.metadata.max.bytes").max(0) as usize,
                },
                offsets_topic_partitions: number("offsets.topic.num.partitions").max(1) as i32,
                offsets_topic_replication_factor: number("offsets.topic.replication.factor").max(1)
                    as i16,
                offsets_topic_segment_bytes: number("offsets.topic.segment.bytes").max(1),
                offsets_load_buffer_bytes: number("offsets.load.buffer.size").max(1) as usize,
                offsets_retention_ms: number("offsets.retention.minutes").saturating_mul(60_000),
                offsets_retention_check_interval_ms: number("offsets.retention.check.interval.ms")
                    .max(1),
            },
            values,
        })
    }

    /// A config for tests: the defaults with data in `data_dir` and an ephemeral loopback port.
    /// How this node registers itself with the controller.
    pub fn registration(&self) -> caudal_controller::controller::NodeRegistration {
        caudal_controller::controller::NodeRegistration {
            node_id: self.node_id,
            host: self.advertised_host.clone(),
            port: self.advertised_port,
            rack: self.broker_rack.clone(),
        }
    }

    pub fn for_tests(data_dir: &Path, extra: &[(&str, &str)]) -> Self {
        let mut values = vec![
            ("log.dirs".to_string(), data_dir.display().to_string()),
            (
                "listeners".to_string(),
                "PLAINTEXT://127.0.0.1:0".to_string(),
            ),
        ];
        values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::from_layers(&[ConfigLayer {
            origin: "test".into(),
            values,
        }])
        .expect("test config is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(values: &[(&str, &str)]) -> ConfigLayer {
        ConfigLayer {
            origin: "test".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_are_a_local_single_node() {
        let config = BrokerConfig::from_layers(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./caudal-data"));
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert!(config.auto_create_topics);
        assert!(config.acks_all_fsync);
        assert_eq!(config.message_max_bytes, 1_048_588);
        assert_eq!(config.node_id, NodeId(1));
    }

    #[test]
    fn later_layers_win_and_values_are_validated() {
        let config = BrokerConfig::from_layers(&[
            layer(&[
                ("num.partitions", "3"),
                ("listeners", "PLAINTEXT://0.0.0.0:9093"),
            ]),
            layer(&[("num.partitions", "6")]),
        ])
        .unwrap();
        assert_eq!(config.num_partitions, 6);
        assert_eq!(config.listen.port(), 9093);
        assert_eq!(config.advertised_host, "127.0.0.1");
        let error = BrokerConfig::from_layers(&[layer(&[("num.partitions", "zero")])]).unwrap_err();
        assert!(error.to_string().contains("num.partitions"), "{error}");
        assert!(BrokerConfig::from_layers(&[layer(&[("listeners", "nonsense")])]).is_err());
    }

    #[test]
    fn reads_properties_toml_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let properties = dir.path().join("server.properties");
        std::fs::write(
            &properties,
            "# comment\nnum.partitions=4\nlog.dirs = /tmp/x\n",
        )
        .unwrap();
        let toml_path = dir.path().join("caudal.toml");
        std::fs::write(
            &toml_path,
            "\"auto.create.topics.enable\" = false\n[log]\nsegment.bytes = 1048576\n",
        )
        .unwrap();
        let env = ConfigLayer::from_env([
            ("CAUDAL_MESSAGE_MAX_BYTES".to_string(), "2048".to_string()),
            (
                "CAUDAL_BOOTSTRAP_SERVER".to_string(),
                "elsewhere:9092".to_string(),
            ),
            ("PATH".to_string(), "/bin".to_string()),
        ]);
        let config = BrokerConfig::from_layers(&[
            ConfigLayer::from_file(&properties).unwrap(),
            ConfigLayer::from_file(&toml_path).unwrap(),
            env,
        ])
        .unwrap();
        assert_eq!(config.num_partitions, 4);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert!(!config.auto_create_topics);
        assert_eq!(config.values["log.segment.bytes"], "1048576");
        assert_eq!(config.message_max_bytes, 2048);
        assert!(!config.values.contains_key("bootstrap.server"));
        let broken = dir.path().join("broken.properties");
        std::fs::write(&broken, "just words\n").unwrap();
        assert!(matches!(
            ConfigLayer::from_file(&broken),
            Err(ConfigLoadError::Properties { line: 1, .. })
        ));
    }
}
