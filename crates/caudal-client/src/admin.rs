//! Admin requests: create and delete topics, add partitions, describe and alter configs, delete
//! records, InitProducerId, elect leaders, reassign partitions and list the reassignments in
//! progress.
//!
//! Admin requests go to the controller when Metadata names one (older Kafka brokers only accept
//! them there; newer ones forward), and are retried once against fresh metadata on
//! `NOT_CONTROLLER`. Configs of one broker are described and altered on that broker, as Kafka's
//! Admin client does; DeleteRecords goes to each partition's leader.

use std::collections::BTreeMap;
use std::time::Duration;

use caudal_model::{NodeId, Offset, PartitionIndex, ProducerEpoch, ProducerId};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use caudal_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use caudal_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use caudal_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use caudal_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use caudal_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use caudal_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use caudal_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use caudal_protocol::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use caudal_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    ElectLeadersRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{ClientError, KafkaError, check_code};

/// A topic to create. `-1` partitions or replication factor take the broker's defaults
/// (`num.partitions`, `default.replication.factor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    pub fn with_replication_factor(mut self, replication_factor: i16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// What the broker reported for a created (or validated) topic. The details come with
/// CreateTopics v5 and later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: Option<Uuid>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
}

/// Where a config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    DynamicTopicConfig,
    DynamicBrokerConfig,
    DynamicDefaultBrokerConfig,
    StaticBrokerConfig,
    DefaultConfig,
    DynamicBrokerLoggerConfig,
    ClientMetricsConfig,
    GroupConfig,
}

impl ConfigSource {
    pub fn from_wire(source: i8) -> Self {
        match source {
            1 => Self::DynamicTopicConfig,
            2 => Self::DynamicBrokerConfig,
            3 => Self::DynamicDefaultBrokerConfig,
            4 => Self::StaticBrokerConfig,
            5 => Self::DefaultConfig,
            6 => Self::DynamicBrokerLoggerConfig,
            7 => Self::ClientMetricsConfig,
            8 => Self::GroupConfig,
            _ => Self::Unknown,
        }
    }

    /// Kafka's name for the source, as `kafka-configs.sh --describe` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::DynamicTopicConfig => "DYNAMIC_TOPIC_CONFIG",
            Self::DynamicBrokerConfig => "DYNAMIC_BROKER_CONFIG",
            Self::DynamicDefaultBrokerConfig => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            Self::StaticBrokerConfig => "STATIC_BROKER_CONFIG",
            Self::DefaultConfig => "DEFAULT_CONFIG",
            Self::DynamicBrokerLoggerConfig => "DYNAMIC_BROKER_LOGGER_CONFIG",
            Self::ClientMetricsConfig => "CLIENT_METRICS_CONFIG",
            Self::GroupConfig => "GROUP_CONFIG",
        }
    }
}

/// One link of a config's synonym chain (DescribeConfigs v1+ with `include_synonyms`): where the
/// effective value could come from, most specific first — the topic's own value, then per broker
/// config name the value set for this broker, for every broker, at startup, and the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One config entry of a DescribeConfigs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values and unset ones.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub is_sensitive: bool,
    /// The synonym chain; empty when the broker sent none.
    pub synonyms: Vec<ConfigSynonym>,
}

impl ConfigEntry {
    /// True when the value is set for this topic rather than inherited or defaulted.
    pub fn is_override(&self) -> bool {
        matches!(self.source, ConfigSource::DynamicTopicConfig)
    }

    /// The value this config has at `source` under its own name: the effective value when it
    /// comes from there, else the synonym of the same name from there (a cluster-wide default
    /// shadowed by a per-broker value is only in the chain). `None` when nothing is set there.
    pub fn value_at(&self, source: ConfigSource) -> Option<Option<&str>> {
        if self.source == source {
            return Some(self.value.as_deref());
        }
        self.synonyms
            .iter()
            .find(|synonym| synonym.source == source && synonym.name == self.name)
            .map(|synonym| synonym.value.as_deref())
    }
}

/// A resource with configs: a topic, one broker, or the default of every broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    Topic(String),
    Broker(NodeId),
    /// Broker configs set for every broker (Kafka: `--entity-default`, resource name `""`).
    BrokerDefault,
}

impl ConfigResource {
    fn wire_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) | ConfigResource::BrokerDefault => 4,
        }
    }

    fn wire_name(&self) -> String {
        match self {
            ConfigResource::Topic(name) => name.clone(),
            ConfigResource::Broker(node_id) => node_id.to_string(),
            ConfigResource::BrokerDefault => String::new(),
        }
    }

    /// The source a value set on this resource is reported with: what `kafka-configs.sh
    /// --describe` lists for it without `--all`.
    pub fn dynamic_source(&self) -> ConfigSource {
        match self {
            ConfigResource::Topic(_) => ConfigSource::DynamicTopicConfig,
            ConfigResource::Broker(_) => ConfigSource::DynamicBrokerConfig,
            ConfigResource::BrokerDefault => ConfigSource::DynamicDefaultBrokerConfig,
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic {name:?}"),
            ConfigResource::Broker(node_id) => write!(f, "broker {node_id}"),
            ConfigResource::BrokerDefault => f.write_str("the cluster-wide broker default"),
        }
    }
}

/// One IncrementalAlterConfigs operation on one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets the value on the resource.
    Set(String),
    /// Removes the resource's value, so the config falls back along its synonym chain.
    Delete,
    /// Adds comma-separated items to a list config (to the resource's value, or the default).
    Append(String),
    /// Removes comma-separated items from a list config.
    Subtract(String),
}

impl AlterConfigOp {
    /// `config_operation` and `value` on the wire.
    fn wire(&self) -> (i8, Option<StrBytes>) {
        match self {
            AlterConfigOp::Set(value) => (0, Some(StrBytes::from_string(value.clone()))),
            AlterConfigOp::Delete => (1, None),
            AlterConfigOp::Append(value) => (2, Some(StrBytes::from_string(value.clone()))),
            AlterConfigOp::Subtract(value) => (3, Some(StrBytes::from_string(value.clone()))),
        }
    }
}

/// Changes to the configs of one resource: `(config name, operation)` in order.
pub type ConfigChanges = Vec<(String, AlterConfigOp)>;

/// Where DeleteRecords moves a partition's log start offset to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRecordsBefore {
    /// Every record below this offset is deleted; beyond the high watermark is
    /// `OFFSET_OUT_OF_RANGE`.
    Offset(Offset),
    /// Every record below the high watermark (offset `-1` on the wire).
    HighWatermark,
}

impl DeleteRecordsBefore {
    fn wire(self) -> i64 {
        match self {
            DeleteRecordsBefore::Offset(offset) => offset.0,
            DeleteRecordsBefore::HighWatermark => -1,
        }
    }
}

/// ElectLeaders' election type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership to each partition's first replica (its preferred leader).
    Preferred,
    /// Elect a leader for leaderless partitions, from outside the ISR if need be (records the
    /// new leader never had are lost).
    Unclean,
}

impl ElectionType {
    fn wire(self) -> i8 {
        match self {
            Self::Preferred => 0,
            Self::Unclean => 1,
        }
    }
}

/// A partition named by topic and index.
pub type TopicPartitionRef = (String, PartitionIndex);

/// One partition's outcome of an admin request that answers per partition.
pub type PartitionOutcome = (String, PartitionIndex, Result<(), KafkaError>);

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: PartitionIndex,
    /// The union of the original and the target replicas.
    pub replicas: Vec<NodeId>,
    pub adding_replicas: Vec<NodeId>,
    pub removing_replicas: Vec<NodeId>,
}

/// Groups partitions by topic, keeping the order in which each topic first appears.
fn by_topic<T: Clone>(
    entries: &[(String, PartitionIndex, T)],
) -> Vec<(String, Vec<(PartitionIndex, T)>)> {
    let mut topics: Vec<(String, Vec<(PartitionIndex, T)>)> = Vec::new();
    for (topic, partition, value) in entries {
        match topics.iter_mut().find(|(name, _)| name == topic) {
            Some((_, partitions)) => partitions.push((*partition, value.clone())),
            None => topics.push((topic.clone(), vec![(*partition, value.clone())])),
        }
    }
    topics
}

/// Partitions grouped by topic, in first-seen order: each topic with its partition indexes.
fn partition_indexes_by_topic(partitions: &[TopicPartitionRef]) -> Vec<(String, Vec<i32>)> {
    let entries: Vec<(String, PartitionIndex, ())> = partitions
        .iter()
        .map(|(topic, partition)| (topic.clone(), *partition, ()))
        .collect();
    by_topic(&entries)
        .into_iter()
        .map(|(topic, partitions)| (topic, partitions.iter().map(|(p, ())| p.0).collect()))
        .collect()
}

/// The outcome for `partition` of `topic` in a per-partition answer, or an error saying the
/// answer lacks it.
fn partition_outcome(
    api: &str,
    topic: &str,
    partition: PartitionIndex,
    answer: Option<(i16, Option<String>)>,
) -> Result<(), KafkaError> {
    let context = format!("{topic}-{}", partition.0);
    match answer {
        None => Err(KafkaError::new(
            ErrorCode::UnknownServerError,
            format!("{context}: no result in the {api} response"),
        )),
        Some((code, message)) => match ErrorCode::try_from_code(code) {
            None => Ok(()),
            Some(code) => Err(KafkaError::new(code, context).with_message(message)),
        },
    }
}

fn timeout_ms(timeout: Duration) -> i32 {
    i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Client {
    /// Runs an admin request on the controller, once more on fresh metadata after
    /// `NOT_CONTROLLER` or a lost connection.
    async fn on_controller<T, F, Fut>(&self, operation: F) -> Result<T, ClientError>
    where
        F: Fn(std::sync::Arc<crate::connection::Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let connection = self.controller_connection().await?;
        match operation(connection).await {
            Err(error)
                if error.kafka_code() == Some(ErrorCode::NotController)
                    || matches!(error, ClientError::ConnectionLost { .. }) =>
            {
                tokio::time::sleep(self.backoff(1)).await;
                self.metadata(Some(&[])).await?;
                operation(self.controller_connection().await?).await
            }
            other => other,
        }
    }

    /// Sends `request` to the controller (once more after NOT_CONTROLLER) and turns the
    /// response's top-level error (`top_level`: code and message) into an error named `what`.
    async fn controller_request<R>(
        &self,
        request: &R,
        what: &'static str,
        top_level: impl Fn(&R::Response) -> (i16, Option<&StrBytes>),
    ) -> Result<R::Response, ClientError>
    where
        R: caudal_protocol::kafka_protocol::protocol::Request,
    {
        self.on_controller(|connection| {
            let top_level = &top_level;
            async move {
                let response = connection.request(request).await?;
                let (code, message) = top_level(&response);
                check_code(code, || what.to_owned(), message)?;
                Ok(response)
            }
        })
        .await
    }

    /// Creates topics; one result per topic, in request order.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
        timeout: Duration,
    ) -> Result<Vec<(String, Result<CreatedTopic, KafkaError>)>, ClientError> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_validate_only(validate_only)
            .with_topics(
                topics
                    .iter()
                    .map(|topic| {
                        CreatableTopic::default()
                            .with_name(topic_name(&topic.name))
                            .with_num_partitions(topic.partitions)
                            .with_replication_factor(topic.replication_factor)
                            .with_configs(
                                topic
                                    .configs
                                    .iter()
                                    .map(|(name, value)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(name.clone()))
                                            .with_value(Some(StrBytes::from_string(value.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .on_controller(|connection| {
                let request = request.clone();
                async move { connection.request(&request).await }
            })
            .await?;
        if !validate_only {
            self.forget_topics(topics.iter().map(|topic| topic.name.as_str()));
        }
        Ok(topics
            .iter()
            .map(|topic| {
                let result = match response
                    .topics
                    .iter()
                    .find(|answer| answer.name.0.as_str() == topic.name)
                {
                    None => Err(KafkaError::new(
                        ErrorCode::UnknownServerError,
                        format!(
                            "topic {:?}: no result in the CreateTopics response",
                            topic.name
                        ),
                    )),
                    Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                        Some(code) => Err(KafkaError::new(code, format!("topic {:?}", topic.name))
                            .with_message(answer.error_message.as_ref().map(|m| m.to_string()))),
                        None => Ok(CreatedTopic {
                            name: topic.name.clone(),
                            topic_id: (!answer.topic_id.is_nil()).then_some(answer.topic_id),
                            partitions: (answer.num_partitions >= 0)
                                .then_some(answer.num_partitions),
                            replication_factor: (answer.replication_factor >= 0)
                                .then_some(answer.replication_factor),
                        }),
                    },
                };
                (topic.name.clone(), result)
            })
            .collect())
    }

    /// Creates one topic.
    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<CreatedTopic, ClientError> {
        let mut results = self
            .create_topics(std::slice::from_ref(&topic), validate_only, timeout)
            .await?;
        match results.pop() {
            Some((_, result)) => result.map_err(ClientError::from),
            None => Err(ClientError::Protocol {
                broker: "controller".to_owned(),
                reason: "empty CreateTopics response".to_owned(),
            }),
        }
    }

    /// Deletes topics by name; one result per topic, in request order.
    pub async fn delete_topics(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, Result<(), KafkaError>)>, ClientError> {
        let response = self
            .on_controller(|connection| {
                let names = names.to_vec();
                async move {
                    let version = connection.version(ApiKey::DeleteTopics)?;
                    let mut request =
                        DeleteTopicsRequest::default().with_timeout_ms(timeout_ms(timeout));
                    if version >= 6 {
                        request.topics = names
                            .iter()
                            .map(|name| {
                                DeleteTopicState::default().with_name(Some(topic_name(name)))
                            })
                            .collect();
                    } else {
                        request.topic_names = names.iter().map(|name| topic_name(name)).collect();
                    }
                    connection.request_at(&request, version).await
                }
            })
            .await?;
        self.forget_topics(names.iter().map(String::as_str));
        Ok(names
            .iter()
            .map(|name| {
                let result = match response.responses.iter().find(|answer| {
                    answer.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str())
                }) {
                    None => Err(KafkaError::new(
                        ErrorCode::UnknownServerError,
                        format!("topic {name:?}: no result in the DeleteTopics response"),
                    )),
                    Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                        Some(code) => Err(KafkaError::new(code, format!("topic {name:?}"))
                            .with_message(answer.error_message.as_ref().map(|m| m.to_string()))),
                        None => Ok(()),
                    },
                };
                (name.clone(), result)
            })
            .collect())
    }

    /// Deletes one topic.
    pub async fn delete_topic(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let mut results = self.delete_topics(&[name.to_owned()], timeout).await?;
        match results.pop() {
            Some((_, result)) => result.map_err(ClientError::from),
            None => Err(ClientError::Protocol {
                broker: "controller".to_owned(),
                reason: "empty DeleteTopics response".to_owned(),
            }),
        }
    }

    /// Grows `topic` to `total_partitions` partitions (Kafka never shrinks a topic).
    pub async fn create_partitions(
        &self,
        topic: &str,
        total_partitions: i32,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_validate_only(validate_only)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(total_partitions)
                    .with_assignments(None),
            ]);
        let response = self
            .on_controller(|connection| {
                let request = request.clone();
                async move { connection.request(&request).await }
            })
            .await?;
        let answer = response
            .results
            .iter()
            .find(|answer| answer.name.0.as_str() == topic)
            .ok_or_else(|| ClientError::Protocol {
                broker: "controller".to_owned(),
                reason: format!("no result for {topic:?} in the CreatePartitions response"),
            })?;
        if !validate_only {
            self.forget_topics([topic]);
        }
        check_code(
            answer.error_code,
            || format!("topic {topic:?}"),
            answer.error_message.as_ref(),
        )
    }

    /// Describes the configs of a topic, a broker or the cluster-wide broker default: all of
    /// them, or only `keys`, each with its synonym chain.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(false)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(resource.wire_type())
                    .with_resource_name(StrBytes::from_string(resource.wire_name()))
                    .with_configuration_keys(keys.map(|keys| {
                        keys.iter()
                            .map(|key| StrBytes::from_string(key.clone()))
                            .collect()
                    })),
            ]);
        // A broker's own configs come from that broker; a topic's and the default from any.
        let connection = match resource {
            ConfigResource::Broker(node_id) => self.connection(*node_id).await?,
            ConfigResource::Topic(_) | ConfigResource::BrokerDefault => {
                self.any_connection().await?
            }
        };
        let response = connection.request(&request).await?;
        let answer = response
            .results
            .iter()
            .find(|answer| {
                answer.resource_type == resource.wire_type()
                    && answer.resource_name.as_str() == resource.wire_name()
            })
            .ok_or_else(|| ClientError::Protocol {
                broker: connection.broker().to_owned(),
                reason: "no result in the DescribeConfigs response".to_owned(),
            })?;
        check_code(
            answer.error_code,
            || format!("configs of {resource}"),
            answer.error_message.as_ref(),
        )?;
        let version = connection.version(ApiKey::DescribeConfigs)?;
        Ok(answer
            .configs
            .iter()
            .map(|entry| ConfigEntry {
                name: entry.name.to_string(),
                value: entry.value.as_ref().map(|value| value.to_string()),
                // v0 had only `is_default`; from v1 the source says it all.
                source: if version >= 1 {
                    ConfigSource::from_wire(entry.config_source)
                } else {
                    ConfigSource::Unknown
                },
                read_only: entry.read_only,
                is_sensitive: entry.is_sensitive,
                synonyms: entry
                    .synonyms
                    .iter()
                    .map(|synonym| ConfigSynonym {
                        name: synonym.name.to_string(),
                        value: synonym.value.as_ref().map(|value| value.to_string()),
                        source: ConfigSource::from_wire(synonym.source),
                    })
                    .collect(),
            })
            .collect())
    }

    /// Changes configs with IncrementalAlterConfigs; one result per resource, in request order.
    /// Each broker's own configs go to that broker (as Kafka's Admin client sends them), the rest
    /// in one request to the controller. With `validate_only` the broker checks the changes and
    /// writes nothing.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, ConfigChanges)],
        validate_only: bool,
    ) -> Result<Vec<(ConfigResource, Result<(), KafkaError>)>, ClientError> {
        let mut routes: BTreeMap<Option<NodeId>, Vec<&(ConfigResource, ConfigChanges)>> =
            BTreeMap::new();
        for entry in changes {
            let node = match &entry.0 {
                ConfigResource::Broker(node_id) => Some(*node_id),
                ConfigResource::Topic(_) | ConfigResource::BrokerDefault => None,
            };
            routes.entry(node).or_default().push(entry);
        }
        let mut answers = Vec::new();
        for (node, entries) in routes {
            let request = IncrementalAlterConfigsRequest::default()
                .with_validate_only(validate_only)
                .with_resources(
                    entries
                        .iter()
                        .map(|(resource, changes)| {
                            AlterConfigsResource::default()
                                .with_resource_type(resource.wire_type())
                                .with_resource_name(StrBytes::from_string(resource.wire_name()))
                                .with_configs(
                                    changes
                                        .iter()
                                        .map(|(name, op)| {
                                            let (operation, value) = op.wire();
                                            AlterableConfig::default()
                                                .with_name(StrBytes::from_string(name.clone()))
                                                .with_config_operation(operation)
                                                .with_value(value)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = match node {
                Some(node_id) => self.connection(node_id).await?.request(&request).await?,
                None => {
                    self.on_controller(|connection| {
                        let request = request.clone();
                        async move { connection.request(&request).await }
                    })
                    .await?
                }
            };
            answers.extend(response.responses);
        }
        Ok(changes
            .iter()
            .map(|(resource, _)| {
                let answer = answers.iter().find(|answer| {
                    answer.resource_type == resource.wire_type()
                        && answer.resource_name.as_str() == resource.wire_name()
                });
                let result = match answer {
                    None => Err(KafkaError::new(
                        ErrorCode::UnknownServerError,
                        format!("{resource}: no result in the IncrementalAlterConfigs response"),
                    )),
                    Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                        Some(code) => Err(KafkaError::new(code, resource.to_string())
                            .with_message(answer.error_message.as_ref().map(|m| m.to_string()))),
                        None => Ok(()),
                    },
                };
                (resource.clone(), result)
            })
            .collect())
    }

    /// Changes the configs of one resource: [`Client::incremental_alter_configs`].
    pub async fn alter_config(
        &self,
        resource: &ConfigResource,
        changes: ConfigChanges,
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let mut results = self
            .incremental_alter_configs(&[(resource.clone(), changes)], validate_only)
            .await?;
        match results.pop() {
            Some((_, result)) => result.map_err(ClientError::from),
            None => Err(ClientError::Protocol {
                broker: "controller".to_owned(),
                reason: "empty IncrementalAlterConfigs response".to_owned(),
            }),
        }
    }

    /// Deletes the records of partitions of `topic` below the given offsets (DeleteRecords at
    /// each partition's leader, as `kafka-delete-records.sh` does), so their log start offsets
    /// move up. One result per partition: its new low watermark (the log start offset), or its
    /// error. Leader changes are followed with bounded metadata refreshes; `timeout` is how long
    /// a leader may wait for its followers to move their log start offsets too.
    pub async fn delete_records(
        &self,
        topic: &str,
        partitions: &[(PartitionIndex, DeleteRecordsBefore)],
        timeout: Duration,
    ) -> Result<BTreeMap<PartitionIndex, Result<Offset, ClientError>>, ClientError> {
        let mut remaining: Vec<(PartitionIndex, DeleteRecordsBefore)> = partitions.to_vec();
        let mut results = BTreeMap::new();
        let mut attempt = 0;
        loop {
            let indexes: Vec<PartitionIndex> = remaining.iter().map(|(p, _)| *p).collect();
            let (grouped, missing) = self.group_by_leader(topic, &indexes).await?;
            let mut retry: Vec<(PartitionIndex, DeleteRecordsBefore, ClientError)> = Vec::new();
            for (node_id, leads) in grouped {
                let entries: Vec<(PartitionIndex, DeleteRecordsBefore)> = remaining
                    .iter()
                    .filter(|(p, _)| leads.contains(p))
                    .copied()
                    .collect();
                match self
                    .delete_records_on(node_id, topic, &entries, timeout)
                    .await
                {
                    Ok(answers) => {
                        for ((partition, before), result) in entries.into_iter().zip(answers) {
                            match result {
                                Err(error) if error.needs_metadata_refresh() => {
                                    retry.push((partition, before, error));
                                }
                                other => {
                                    results.insert(partition, other);
                                }
                            }
                        }
                    }
                    Err(error) if error.needs_metadata_refresh() => {
                        retry.extend(entries.into_iter().map(|(p, b)| (p, b, error.clone())));
                    }
                    Err(error) => return Err(error),
                }
            }
            let known = self.cached_topic(topic);
            for partition in missing {
                let before = remaining
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, before)| *before);
                let Some(before) = before else { continue };
                match &known {
                    Some(info) if info.partition(partition).is_none() => {
                        results.insert(
                            partition,
                            Err(KafkaError::new(
                                ErrorCode::UnknownTopicOrPartition,
                                format!(
                                    "{topic}-{partition}: the topic has {} partitions",
                                    info.partitions.len()
                                ),
                            )
                            .into()),
                        );
                    }
                    _ => retry.push((
                        partition,
                        before,
                        ClientError::NoLeader {
                            topic: topic.to_owned(),
                            partition: partition.0,
                            attempts: attempt,
                        },
                    )),
                }
            }
            if retry.is_empty() {
                return Ok(results);
            }
            if attempt >= self.config().metadata_refreshes_max {
                for (partition, _, error) in retry {
                    results.insert(partition, Err(error));
                }
                return Ok(results);
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
            let _ = self.topic(topic).await;
            remaining = retry
                .into_iter()
                .map(|(partition, before, _)| (partition, before))
                .collect();
        }
    }

    /// One DeleteRecords request to `node_id`; one result per entry, in order.
    async fn delete_records_on(
        &self,
        node_id: NodeId,
        topic: &str,
        entries: &[(PartitionIndex, DeleteRecordsBefore)],
        timeout: Duration,
    ) -> Result<Vec<Result<Offset, ClientError>>, ClientError> {
        let connection = self.connection(node_id).await?;
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        entries
                            .iter()
                            .map(|(partition, before)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(partition.0)
                                    .with_offset(before.wire())
                            })
                            .collect(),
                    ),
            ]);
        let response = connection.request(&request).await?;
        Ok(entries
            .iter()
            .map(|(partition, _)| {
                let answer = response
                    .topics
                    .iter()
                    .filter(|answer| answer.name.0.as_str() == topic)
                    .flat_map(|answer| answer.partitions.iter())
                    .find(|answer| answer.partition_index == partition.0)
                    .ok_or_else(|| ClientError::Protocol {
                        broker: connection.broker().to_owned(),
                        reason: format!(
                            "no result for {topic}-{partition} in the DeleteRecords response"
                        ),
                    })?;
                check_code(
                    answer.error_code,
                    || format!("DeleteRecords {topic}-{partition}"),
                    None,
                )?;
                Ok(Offset(answer.low_watermark))
            })
            .collect())
    }

    /// Elects leaders (ElectLeaders): over `partitions`, or over every partition with `None`
    /// (the broker then reports only the partitions that needed an election). One outcome per
    /// reported partition; `ELECTION_NOT_NEEDED` means the partition already has the leader
    /// asked for.
    pub async fn elect_leaders(
        &self,
        election_type: ElectionType,
        partitions: Option<&[TopicPartitionRef]>,
        timeout: Duration,
    ) -> Result<Vec<PartitionOutcome>, ClientError> {
        let topic_partitions = partitions.map(|partitions| {
            partition_indexes_by_topic(partitions)
                .into_iter()
                .map(|(topic, indexes)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(indexes)
                })
                .collect::<Vec<_>>()
        });
        let response = self
            .on_controller(|connection| {
                let topic_partitions = topic_partitions.clone();
                async move {
                    let version = connection.version(ApiKey::ElectLeaders)?;
                    if version < 1 && election_type != ElectionType::Preferred {
                        return Err(ClientError::InvalidArgument(
                            "this broker only supports preferred leader elections \
                             (ElectLeaders v0)"
                                .to_owned(),
                        ));
                    }
                    let request = ElectLeadersRequest::default()
                        .with_election_type(election_type.wire())
                        .with_timeout_ms(timeout_ms(timeout))
                        .with_topic_partitions(topic_partitions);
                    let response = connection.request_at(&request, version).await?;
                    check_code(response.error_code, || "ElectLeaders".to_owned(), None)?;
                    Ok(response)
                }
            })
            .await?;
        let answered = |topic: &str, partition: PartitionIndex| {
            response
                .replica_election_results
                .iter()
                .filter(|result| result.topic.0.as_str() == topic)
                .flat_map(|result| &result.partition_result)
                .find(|result| result.partition_id == partition.0)
                .map(|result| {
                    (
                        result.error_code,
                        result.error_message.as_ref().map(|m| m.to_string()),
                    )
                })
        };
        Ok(match partitions {
            Some(partitions) => partitions
                .iter()
                .map(|(topic, partition)| {
                    let outcome = partition_outcome(
                        "ElectLeaders",
                        topic,
                        *partition,
                        answered(topic, *partition),
                    );
                    (topic.clone(), *partition, outcome)
                })
                .collect(),
            None => response
                .replica_election_results
                .iter()
                .flat_map(|result| {
                    let topic = result.topic.0.to_string();
                    result.partition_result.iter().map(move |answer| {
                        let partition = PartitionIndex(answer.partition_id);
                        let outcome = partition_outcome(
                            "ElectLeaders",
                            &topic,
                            partition,
                            Some((
                                answer.error_code,
                                answer.error_message.as_ref().map(|m| m.to_string()),
                            )),
                        );
                        (topic.clone(), partition, outcome)
                    })
                })
                .collect(),
        })
    }

    /// Starts, replaces or cancels partition reassignments (AlterPartitionReassignments): each
    /// entry's target replicas, or `None` to cancel the reassignment in progress. One outcome
    /// per entry, in order. The replication factor may change (as Kafka's Admin allows by
    /// default).
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: &[(String, PartitionIndex, Option<Vec<NodeId>>)],
        timeout: Duration,
    ) -> Result<Vec<PartitionOutcome>, ClientError> {
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_allow_replication_factor_change(true)
            .with_topics(
                by_topic(reassignments)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(partition, replicas)| {
                                        ReassignablePartition::default()
                                            .with_partition_index(partition.0)
                                            .with_replicas(replicas.map(|replicas| {
                                                replicas
                                                    .iter()
                                                    .map(|node| BrokerId(node.0))
                                                    .collect()
                                            }))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .controller_request(&request, "AlterPartitionReassignments", |response| {
                (response.error_code, response.error_message.as_ref())
            })
            .await?;
        let topics: BTreeMap<&str, _> = response
            .responses
            .iter()
            .map(|topic| (topic.name.0.as_str(), &topic.partitions))
            .collect();
        self.forget_topics(reassignments.iter().map(|(topic, _, _)| topic.as_str()));
        Ok(reassignments
            .iter()
            .map(|(topic, partition, _)| {
                let answer = topics.get(topic.as_str()).and_then(|partitions| {
                    partitions
                        .iter()
                        .find(|answer| answer.partition_index == partition.0)
                        .map(|answer| {
                            (
                                answer.error_code,
                                answer.error_message.as_ref().map(|m| m.to_string()),
                            )
                        })
                });
                let outcome =
                    partition_outcome("AlterPartitionReassignments", topic, *partition, answer);
                (topic.clone(), *partition, outcome)
            })
            .collect())
    }

    /// The reassignments in progress (ListPartitionReassignments): among `partitions`, or all
    /// of them with `None`. Partitions that are not being reassigned are not listed.
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<&[TopicPartitionRef]>,
        timeout: Duration,
    ) -> Result<Vec<PartitionReassignment>, ClientError> {
        let topics = partitions.map(|partitions| {
            partition_indexes_by_topic(partitions)
                .into_iter()
                .map(|(topic, indexes)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(&topic))
                        .with_partition_indexes(indexes)
                })
                .collect::<Vec<_>>()
        });
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topics(topics);
        let response = self
            .controller_request(&request, "ListPartitionReassignments", |response| {
                (response.error_code, response.error_message.as_ref())
            })
            .await?;
        let nodes = |ids: &[BrokerId]| ids.iter().map(|id| NodeId(id.0)).collect();
        Ok(response
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |partition| PartitionReassignment {
                        topic: topic.name.0.to_string(),
                        partition: PartitionIndex(partition.partition_index),
                        replicas: nodes(&partition.replicas),
                        adding_replicas: nodes(&partition.adding_replicas),
                        removing_replicas: nodes(&partition.removing_replicas),
                    })
            })
            .collect())
    }

    /// Allocates a producer id for an idempotent (non-transactional) producer.
    pub async fn init_producer_id(&self) -> Result<(ProducerId, ProducerEpoch), ClientError> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let mut attempt = 0;
        loop {
            let connection = self.any_connection().await?;
            let response = connection.request(&request).await?;
            match check_code(response.error_code, || "InitProducerId".to_owned(), None) {
                Ok(()) => {
                    return Ok((
                        ProducerId(response.producer_id.0),
                        ProducerEpoch(response.producer_epoch),
                    ));
                }
                Err(error)
                    if error.is_retriable() && attempt < self.config().metadata_refreshes_max =>
                {
                    attempt += 1;
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::testing::{FakeBroker, metadata_response};
    use caudal_protocol::RequestKind;
    use caudal_protocol::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use caudal_protocol::kafka_protocol::messages::delete_records_response::{
        DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
    };
    use caudal_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use caudal_protocol::kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
    };
    use caudal_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    use caudal_protocol::kafka_protocol::messages::{
        CreateTopicsResponse, DeleteRecordsResponse, DeleteTopicsResponse, DescribeConfigsResponse,
        IncrementalAlterConfigsResponse, ResponseKind,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn admin_broker() -> FakeBroker {
        let broker = FakeBroker::bind().await;
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            RequestKind::CreateTopics(create) => Some(ResponseKind::CreateTopics(
                CreateTopicsResponse::default().with_topics(
                    create
                        .topics
                        .iter()
                        .map(|topic| {
                            let exists = topic.name.0.as_str() == "taken";
                            CreatableTopicResult::default()
                                .with_name(topic.name.clone())
                                .with_error_code(if exists { 36 } else { 0 })
                                .with_error_message(
                                    exists.then(|| StrBytes::from_static_str("already exists")),
                                )
                                .with_topic_id(Uuid::from_u128(5))
                                .with_num_partitions(topic.num_partitions)
                                .with_replication_factor(1)
                        })
                        .collect(),
                ),
            )),
            RequestKind::DeleteTopics(delete) => Some(ResponseKind::DeleteTopics(
                DeleteTopicsResponse::default().with_responses(
                    delete
                        .topics
                        .iter()
                        .map(|topic| {
                            DeletableTopicResult::default()
                                .with_name(topic.name.clone())
                                .with_error_code(3)
                        })
                        .collect(),
                ),
            )),
            RequestKind::DescribeConfigs(describe) => Some(ResponseKind::DescribeConfigs(
                DescribeConfigsResponse::default().with_results(vec![
                    DescribeConfigsResult::default()
                        .with_resource_type(describe.resources[0].resource_type)
                        .with_resource_name(describe.resources[0].resource_name.clone())
                        .with_configs(vec![
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_value(Some(StrBytes::from_static_str("1000")))
                                .with_config_source(1),
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str("segment.bytes"))
                                .with_value(Some(StrBytes::from_static_str("1073741824")))
                                .with_config_source(5),
                        ]),
                ]),
            )),
            _ => None,
        });
        broker
    }

    #[tokio::test]
    async fn creates_topics_and_reports_errors_by_name() {
        let broker = admin_broker().await;
        let client = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        let created = client
            .create_topic(
                NewTopic::new("orders")
                    .with_partitions(3)
                    .with_config("retention.ms", "1000"),
                false,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(created.partitions, Some(3));
        assert_eq!(created.topic_id, Some(Uuid::from_u128(5)));
        let error = client
            .create_topic(NewTopic::new("taken"), false, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "TOPIC_ALREADY_EXISTS (36): topic \"taken\": already exists"
        );
        let sent = broker.requests();
        let create = sent
            .iter()
            .find_map(|request| match &request.body {
                RequestKind::CreateTopics(create) => Some(create.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(create.topics[0].configs[0].name.as_str(), "retention.ms");
    }

    #[tokio::test]
    async fn deletes_and_describes() {
        let broker = admin_broker().await;
        let client = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        let error = client
            .delete_topic("missing", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kafka_code(), Some(ErrorCode::UnknownTopicOrPartition));
        let configs = client
            .describe_configs(&ConfigResource::Topic("orders".into()), None)
            .await
            .unwrap();
        assert_eq!(configs.len(), 2);
        assert!(configs[0].is_override());
        assert_eq!(configs[1].source, ConfigSource::DefaultConfig);
        assert_eq!(configs[1].source.name(), "DEFAULT_CONFIG");
    }

    /// Two brokers; node 1 is the controller. Each answers IncrementalAlterConfigs per resource:
    /// a config named `no.such` gets INVALID_CONFIG with a message, anything else succeeds.
    async fn two_brokers_for_configs() -> (FakeBroker, FakeBroker) {
        let first = FakeBroker::bind().await;
        let second = FakeBroker::bind().await;
        let nodes = [first.node(1), second.node(2)];
        for broker in [&first, &second] {
            let nodes = nodes.clone();
            broker.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    Some(ResponseKind::Metadata(metadata_response(&nodes, &[])))
                }
                RequestKind::IncrementalAlterConfigs(alter) => {
                    Some(ResponseKind::IncrementalAlterConfigs(
                        IncrementalAlterConfigsResponse::default().with_responses(
                            alter
                                .resources
                                .iter()
                                .map(|resource| {
                                    let unknown = resource
                                        .configs
                                        .iter()
                                        .any(|config| config.name.as_str() == "no.such");
                                    AlterConfigsResourceResponse::default()
                                        .with_resource_type(resource.resource_type)
                                        .with_resource_name(resource.resource_name.clone())
                                        .with_error_code(if unknown { 40 } else { 0 })
                                        .with_error_message(unknown.then(|| {
                                            StrBytes::from_static_str("unknown config 'no.such'")
                                        }))
                                })
                                .collect(),
                        ),
                    ))
                }
                _ => None,
            });
        }
        (first, second)
    }

    fn alter_requests(broker: &FakeBroker) -> Vec<IncrementalAlterConfigsRequest> {
        broker
            .requests()
            .into_iter()
            .filter_map(|request| match request.body {
                RequestKind::IncrementalAlterConfigs(alter) => Some(alter),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn alters_configs_on_the_right_broker_with_per_resource_errors() {
        let (first, second) = two_brokers_for_configs().await;
        let client = Client::connect(&[first.address()], ClientConfig::default())
            .await
            .unwrap();
        let topic = ConfigResource::Topic("orders".into());
        let changes = vec![
            (
                topic.clone(),
                vec![
                    ("retention.ms".to_owned(), AlterConfigOp::Set("1000".into())),
                    ("segment.ms".to_owned(), AlterConfigOp::Delete),
                    (
                        "cleanup.policy".to_owned(),
                        AlterConfigOp::Append("compact".into()),
                    ),
                    (
                        "leader.replication.throttled.replicas".to_owned(),
                        AlterConfigOp::Subtract("0:1".into()),
                    ),
                ],
            ),
            (
                ConfigResource::Broker(NodeId(2)),
                vec![(
                    "log.retention.ms".to_owned(),
                    AlterConfigOp::Set("5000".into()),
                )],
            ),
            (
                ConfigResource::BrokerDefault,
                vec![("no.such".to_owned(), AlterConfigOp::Set("1".into()))],
            ),
        ];
        let results = client
            .incremental_alter_configs(&changes, true)
            .await
            .unwrap();
        let resources: Vec<&ConfigResource> = results.iter().map(|(r, _)| r).collect();
        assert_eq!(
            resources,
            [
                &topic,
                &ConfigResource::Broker(NodeId(2)),
                &ConfigResource::BrokerDefault
            ]
        );
        assert!(results[0].1.is_ok());
        assert!(results[1].1.is_ok());
        let error = results[2].1.clone().unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidConfig);
        assert_eq!(
            error.to_string(),
            "INVALID_CONFIG (40): the cluster-wide broker default: unknown config 'no.such'"
        );

        // The topic and the default went to the controller in one request, broker 2's own
        // configs to broker 2.
        let to_controller = alter_requests(&first);
        assert_eq!(to_controller.len(), 1);
        let request = &to_controller[0];
        assert!(request.validate_only);
        let names: Vec<(i8, &str)> = request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str()))
            .collect();
        assert_eq!(names, [(2, "orders"), (4, "")]);
        let ops: Vec<(&str, i8, Option<&str>)> = request.resources[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str()),
                )
            })
            .collect();
        assert_eq!(
            ops,
            [
                ("retention.ms", 0, Some("1000")),
                ("segment.ms", 1, None),
                ("cleanup.policy", 2, Some("compact")),
                ("leader.replication.throttled.replicas", 3, Some("0:1")),
            ]
        );
        let to_second = alter_requests(&second);
        assert_eq!(to_second.len(), 1);
        assert_eq!(to_second[0].resources[0].resource_name.as_str(), "2");

        let error = client
            .alter_config(
                &topic,
                vec![("no.such".to_owned(), AlterConfigOp::Delete)],
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(error.kafka_code(), Some(ErrorCode::InvalidConfig));
        assert!(!alter_requests(&first)[1].validate_only);
    }

    #[tokio::test]
    async fn describes_synonyms_and_finds_values_set_at_a_level() {
        let broker = FakeBroker::bind().await;
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            RequestKind::DescribeConfigs(describe) => {
                let synonym = |name: &'static str, value: &'static str, source: i8| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(StrBytes::from_static_str(value)))
                        .with_source(source)
                };
                Some(ResponseKind::DescribeConfigs(
                    DescribeConfigsResponse::default().with_results(vec![
                        DescribeConfigsResult::default()
                            .with_resource_type(describe.resources[0].resource_type)
                            .with_resource_name(describe.resources[0].resource_name.clone())
                            .with_configs(vec![
                                // Set for broker 1 and for every broker: the default is
                                // shadowed and only in the chain.
                                DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_static_str("log.retention.ms"))
                                    .with_value(Some(StrBytes::from_static_str("1000")))
                                    .with_config_source(2)
                                    .with_synonyms(vec![
                                        synonym("log.retention.ms", "1000", 2),
                                        synonym("log.retention.ms", "2000", 3),
                                        synonym("log.retention.hours", "168", 5),
                                    ]),
                                DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_static_str("num.partitions"))
                                    .with_value(Some(StrBytes::from_static_str("1")))
                                    .with_config_source(5)
                                    .with_read_only(true),
                            ]),
                    ]),
                ))
            }
            _ => None,
        });
        let client = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        let configs = client
            .describe_configs(&ConfigResource::BrokerDefault, None)
            .await
            .unwrap();
        let sent = broker
            .requests()
            .into_iter()
            .find_map(|request| match request.body {
                RequestKind::DescribeConfigs(describe) => Some(describe),
                _ => None,
            })
            .unwrap();
        assert!(sent.include_synonyms);
        assert_eq!(sent.resources[0].resource_type, 4);
        assert_eq!(sent.resources[0].resource_name.as_str(), "");

        let retention = &configs[0];
        assert_eq!(retention.synonyms.len(), 3);
        assert_eq!(
            retention.synonyms[1].source,
            ConfigSource::DynamicDefaultBrokerConfig
        );
        assert_eq!(
            retention.value_at(ConfigSource::DynamicBrokerConfig),
            Some(Some("1000"))
        );
        assert_eq!(
            retention.value_at(ConfigSource::DynamicDefaultBrokerConfig),
            Some(Some("2000"))
        );
        // A synonym under another name is not this config's value at that level.
        assert_eq!(retention.value_at(ConfigSource::DefaultConfig), None);
        assert!(configs[1].read_only);
        assert_eq!(configs[1].value_at(ConfigSource::DynamicBrokerConfig), None);
    }

    #[tokio::test]
    async fn deletes_records_at_each_leader_following_a_leader_change() {
        // Broker 1 leads partition 0, broker 2 partition 1 — until broker 2 answers
        // NOT_LEADER_OR_FOLLOWER and metadata moves partition 1 to broker 1. Each answers with the
        // requested offset as the low watermark, 42 (its high watermark) for -1, and
        // OFFSET_OUT_OF_RANGE beyond 42.
        let first = FakeBroker::bind().await;
        let second = FakeBroker::bind().await;
        let nodes = [first.node(1), second.node(2)];
        let moved = Arc::new(AtomicBool::new(false));
        for (index, broker) in [&first, &second].into_iter().enumerate() {
            let nodes = nodes.clone();
            let moved = moved.clone();
            let leads_nothing = index == 1;
            broker.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    let leader = if moved.load(Ordering::SeqCst) { 1 } else { 2 };
                    Some(ResponseKind::Metadata(metadata_response(
                        &nodes,
                        &[("t", &[(0, 1), (1, leader), (2, 1)])],
                    )))
                }
                RequestKind::DeleteRecords(delete) => {
                    if leads_nothing {
                        moved.store(true, Ordering::SeqCst);
                    }
                    Some(ResponseKind::DeleteRecords(
                        DeleteRecordsResponse::default().with_topics(vec![
                            DeleteRecordsTopicResult::default()
                                .with_name(delete.topics[0].name.clone())
                                .with_partitions(
                                    delete.topics[0]
                                        .partitions
                                        .iter()
                                        .map(|p| {
                                            let (code, low) = if leads_nothing {
                                                (6, -1)
                                            } else if p.offset == -1 {
                                                (0, 42)
                                            } else if p.offset > 42 {
                                                (1, -1)
                                            } else {
                                                (0, p.offset)
                                            };
                                            DeleteRecordsPartitionResult::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code)
                                                .with_low_watermark(low)
                                        })
                                        .collect(),
                                ),
                        ]),
                    ))
                }
                _ => None,
            });
        }
        let client = Client::connect(
            &[first.address()],
            ClientConfig {
                retry_backoff: Duration::from_millis(1),
                ..ClientConfig::default()
            },
        )
        .await
        .unwrap();
        let results = client
            .delete_records(
                "t",
                &[
                    (PartitionIndex(0), DeleteRecordsBefore::Offset(Offset(7))),
                    (PartitionIndex(1), DeleteRecordsBefore::HighWatermark),
                    (PartitionIndex(2), DeleteRecordsBefore::Offset(Offset(100))),
                    (PartitionIndex(3), DeleteRecordsBefore::Offset(Offset(1))),
                ],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[&PartitionIndex(0)].as_ref().unwrap(), &Offset(7));
        assert_eq!(results[&PartitionIndex(1)].as_ref().unwrap(), &Offset(42));
        let out_of_range = results[&PartitionIndex(2)].as_ref().unwrap_err();
        assert_eq!(out_of_range.kafka_code(), Some(ErrorCode::OffsetOutOfRange));
        let missing = results[&PartitionIndex(3)].as_ref().unwrap_err();
        assert_eq!(
            missing.kafka_code(),
            Some(ErrorCode::UnknownTopicOrPartition)
        );
        assert!(
            missing.to_string().contains("has 3 partitions"),
            "{missing}"
        );
        assert_eq!(second.requests_of(ApiKey::DeleteRecords), 1);
        let offsets_sent: Vec<(i32, i64)> = first
            .requests()
            .into_iter()
            .filter_map(|request| match request.body {
                RequestKind::DeleteRecords(delete) => Some(delete),
                _ => None,
            })
            .flat_map(|delete| delete.topics[0].partitions.clone())
            .map(|p| (p.partition_index, p.offset))
            .collect();
        assert_eq!(offsets_sent, [(0, 7), (2, 100), (1, -1)]);
    }

    #[tokio::test]
    async fn elects_leaders_and_reassigns_with_per_partition_outcomes() {
        use caudal_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
            ReassignablePartitionResponse, ReassignableTopicResponse,
        };
        use caudal_protocol::kafka_protocol::messages::elect_leaders_response::{
            PartitionResult, ReplicaElectionResult,
        };
        use caudal_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
            OngoingPartitionReassignment, OngoingTopicReassignment,
        };
        use caudal_protocol::kafka_protocol::messages::{
            AlterPartitionReassignmentsResponse, ElectLeadersResponse,
            ListPartitionReassignmentsResponse,
        };
        let broker = FakeBroker::bind().await;
        let mut apis = crate::testing::DEFAULT_APIS.to_vec();
        apis.extend([
            (ApiKey::ElectLeaders, 0, 2),
            (ApiKey::AlterPartitionReassignments, 0, 1),
            (ApiKey::ListPartitionReassignments, 0, 0),
        ]);
        broker.set_apis(&apis);
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            RequestKind::ElectLeaders(elect) => {
                assert_eq!(elect.election_type, 0);
                let topics = elect.topic_partitions.as_ref().unwrap();
                Some(ResponseKind::ElectLeaders(
                    ElectLeadersResponse::default().with_replica_election_results(vec![
                        ReplicaElectionResult::default()
                            .with_topic(topics[0].topic.clone())
                            .with_partition_result(vec![
                                PartitionResult::default().with_partition_id(0),
                                PartitionResult::default()
                                    .with_partition_id(1)
                                    .with_error_code(84),
                            ]),
                    ]),
                ))
            }
            RequestKind::AlterPartitionReassignments(alter) => {
                let partition = &alter.topics[0].partitions[0];
                let code = if partition.replicas.is_none() { 85 } else { 0 };
                Some(ResponseKind::AlterPartitionReassignments(
                    AlterPartitionReassignmentsResponse::default().with_responses(vec![
                        ReassignableTopicResponse::default()
                            .with_name(alter.topics[0].name.clone())
                            .with_partitions(vec![
                                ReassignablePartitionResponse::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code),
                            ]),
                    ]),
                ))
            }
            RequestKind::ListPartitionReassignments(_) => {
                Some(ResponseKind::ListPartitionReassignments(
                    ListPartitionReassignmentsResponse::default().with_topics(vec![
                        OngoingTopicReassignment::default()
                            .with_name(topic_name("orders"))
                            .with_partitions(vec![
                                OngoingPartitionReassignment::default()
                                    .with_partition_index(0)
                                    .with_replicas(vec![BrokerId(2), BrokerId(3), BrokerId(1)])
                                    .with_adding_replicas(vec![BrokerId(3)])
                                    .with_removing_replicas(vec![BrokerId(1)]),
                            ]),
                    ]),
                ))
            }
            _ => None,
        });
        let client = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        let timeout = Duration::from_secs(5);
        let wanted = [
            ("orders".to_owned(), PartitionIndex(0)),
            ("orders".to_owned(), PartitionIndex(1)),
        ];
        let elected = client
            .elect_leaders(ElectionType::Preferred, Some(&wanted), timeout)
            .await
            .unwrap();
        assert!(elected[0].2.is_ok());
        assert_eq!(
            elected[1].2.as_ref().unwrap_err().code,
            ErrorCode::ElectionNotNeeded
        );

        let moved = client
            .alter_partition_reassignments(
                &[(
                    "orders".to_owned(),
                    PartitionIndex(0),
                    Some(vec![NodeId(2), NodeId(3)]),
                )],
                timeout,
            )
            .await
            .unwrap();
        assert!(moved[0].2.is_ok());
        let cancelled = client
            .alter_partition_reassignments(
                &[("orders".to_owned(), PartitionIndex(0), None)],
                timeout,
            )
            .await
            .unwrap();
        assert_eq!(
            cancelled[0].2.as_ref().unwrap_err().code,
            ErrorCode::NoReassignmentInProgress
        );
        let listed = client
            .list_partition_reassignments(None, timeout)
            .await
            .unwrap();
        assert_eq!(
            listed,
            vec![PartitionReassignment {
                topic: "orders".into(),
                partition: PartitionIndex(0),
                replicas: vec![NodeId(2), NodeId(3), NodeId(1)],
                adding_replicas: vec![NodeId(3)],
                removing_replicas: vec![NodeId(1)],
            }]
        );

        // A broker with ElectLeaders v0 only cannot run an unclean election.
        apis.retain(|(key, _, _)| *key != ApiKey::ElectLeaders);
        apis.push((ApiKey::ElectLeaders, 0, 0));
        broker.set_apis(&apis);
        let old = Client::connect(&[broker.address()], ClientConfig::default())
            .await
            .unwrap();
        let refused = old
            .elect_leaders(ElectionType::Unclean, None, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, ClientError::InvalidArgument(_)),
            "{refused}"
        );
    }
}
