//! CreateTopics (key 19), validate-only included.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use caudal_controller::decisions::{NewTopic, TopicDefaults};
use caudal_model::NodeId;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::CreateTopics, 2, 7);

pub async fn handle(
    broker: Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .map(|topic| topic.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    let defaults = TopicDefaults {
        num_partitions: broker.config.num_partitions,
        replication_factor: broker.config.default_replication_factor,
    };
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if duplicates.contains(&name) {
            results.push(failed(
                result,
                ErrorCode::InvalidRequest,
                format!("Create topics request contains multiple entries for the topic {name}"),
            ));
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut null_config = None;
        for config in &topic.configs {
            match &config.value {
                Some(value) => {
                    configs.insert(config.name.to_string(), value.to_string());
                }
                None => null_config = Some(config.name.to_string()),
            }
        }
        if let Some(config) = null_config {
            results.push(failed(
                result,
                ErrorCode::InvalidConfig,
                format!("Null value not supported for topic configs: {config}"),
            ));
            continue;
        }
        let new_topic = NewTopic {
            name: name.clone(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|assignment| {
                    (
                        assignment.partition_index,
                        assignment
                            .broker_ids
                            .iter()
                            .map(|id| NodeId(id.0))
                            .collect(),
                    )
                })
                .collect(),
            configs,
        };
        let outcome = broker
            .create_topic(new_topic, defaults, request.validate_only)
            .await;
        match outcome {
            Ok(created) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions = created.num_partitions, "created topic");
                }
                let image = broker.image();
                let configs = broker
                    .topic_configs(&image, &name)
                    .into_iter()
                    .map(|config| {
                        CreatableTopicConfigs::default()
                            .with_name(text(config.def.name))
                            .with_value(config.value.map(text))
                            .with_read_only(false)
                            .with_config_source(config.source.code())
                            .with_is_sensitive(false)
                    })
                    .collect();
                results.push(
                    result
                        .with_topic_id(if request.validate_only {
                            uuid::Uuid::nil()
                        } else {
                            created.topic_id
                        })
                        .with_error_code(0)
                        .with_num_partitions(created.num_partitions)
                        .with_replication_factor(created.replication_factor)
                        .with_configs(Some(configs)),
                );
            }
            Err(error) => {
                let code = metadata_error_code(&error);
                results.push(failed(result, code, error.to_string()));
            }
        }
    }
    let response = CreateTopicsResponse::default().with_topics(results);
    encode(
        correlation_id,
        ApiKey::CreateTopics,
        version,
        ResponseKind::CreateTopics(response),
    )
}

fn failed(result: CreatableTopicResult, error: ErrorCode, message: String) -> CreatableTopicResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(text(message)))
}
