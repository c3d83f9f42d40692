//! Admin requests: create and delete topics, add partitions, describe configs, InitProducerId.
//!
//! Admin requests go to the controller when Metadata names one (older Kafka brokers only accept
//! them there; newer ones forward), and are retried once against fresh metadata on
//! `NOT_CONTROLLER`.

use std::time::Duration;

use caudal_model::{NodeId, ProducerEpoch, ProducerId};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use caudal_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use caudal_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use caudal_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use caudal_protocol::kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, InitProducerIdRequest, TopicName,
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

/// One config entry of a DescribeConfigs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values and unset ones.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub is_sensitive: bool,
}

impl ConfigEntry {
    /// True when the value is set for this resource rather than inherited or defaulted.
    pub fn is_override(&self) -> bool {
        matches!(self.source, ConfigSource::DynamicTopicConfig)
    }
}

/// What DescribeConfigs describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(NodeId),
}

impl ConfigResource {
    fn wire_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    fn wire_name(&self) -> String {
        match self {
            ConfigResource::Topic(name) => name.clone(),
            ConfigResource::Broker(node_id) => node_id.to_string(),
        }
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

    /// Describes the configs of a topic or broker: all of them, or only `keys`.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(false)
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
        // A broker's own configs come from that broker; a topic's from any.
        let connection = match resource {
            ConfigResource::Broker(node_id) => self.connection(*node_id).await?,
            ConfigResource::Topic(_) => self.any_connection().await?,
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
            || match resource {
                ConfigResource::Topic(name) => format!("configs of topic {name:?}"),
                ConfigResource::Broker(node_id) => format!("configs of broker {node_id}"),
            },
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
    use caudal_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use caudal_protocol::kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    use caudal_protocol::kafka_protocol::messages::{
        CreateTopicsResponse, DeleteTopicsResponse, DescribeConfigsResponse, ResponseKind,
    };

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
}
