//! DescribeConfigs (key 32): effective topic and broker configs with their source, synonyms, type
//! and documentation, as Kafka reports them.

use std::sync::Arc;

use caudal_controller::decisions::validate_topic_name;
use std::collections::BTreeMap;

use caudal_metadata::ConfigResource;
use caudal_metadata::config::{BrokerLayers, ConfigSource, ResolvedConfig, resolve_broker_configs};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DescribeConfigs, 1, 4);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    request: &DescribeConfigsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let image = broker.image();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let resolved: Result<Vec<(ResolvedConfig, bool)>, (ErrorCode, String)> =
                match resource.resource_type {
                    RESOURCE_TOPIC => {
                        if let Err(error) = validate_topic_name(&name) {
                            Err((ErrorCode::InvalidTopicException, error.to_string()))
                        } else if image.topic(&name).is_none() {
                            Err((
                                ErrorCode::UnknownTopicOrPartition,
                                format!("Topic '{name}' does not exist."),
                            ))
                        } else {
                            Ok(broker
                                .topic_configs(&image, &name)
                                .into_iter()
                                .map(|config| (config, false))
                                .collect())
                        }
                    }
                    RESOURCE_BROKER => {
                        let own_id = broker.config.node_id.to_string();
                        if name.is_empty() {
                            // The cluster-wide default resource holds only what was set there.
                            let defaults = image.configs(&ConfigResource::BrokerDefault);
                            let layers = BrokerLayers {
                                dynamic_broker: None,
                                dynamic_default: defaults,
                                static_broker: &BTreeMap::new(),
                            };
                            Ok(resolve_broker_configs(layers)
                                .into_iter()
                                .filter(|config| {
                                    config.source == ConfigSource::DynamicDefaultBroker
                                })
                                .map(|config| (config, false))
                                .collect())
                        } else if name == own_id {
                            Ok(resolve_broker_configs(broker.broker_layers(&image))
                                .into_iter()
                                .map(|config| {
                                    let read_only = config.def.read_only;
                                    (config, read_only)
                                })
                                .collect())
                        } else {
                            Err((
                                ErrorCode::InvalidRequest,
                                format!(
                                    "Unexpected broker id, expected {own_id} or empty string, but received {name}"
                                ),
                            ))
                        }
                    }
                    other => Err((
                        ErrorCode::InvalidRequest,
                        format!("Unsupported resource type {other}"),
                    )),
                };
            match resolved {
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(text(message))),
                Ok(configs) => {
                    // Null or empty both mean every config, as in Kafka (kafka-python sends an empty list).
                    let keys = resource.configuration_keys.as_ref().filter(|keys| !keys.is_empty());
                    let configs = configs
                        .into_iter()
                        .filter(|(config, _)| {
                            keys.is_none_or(|keys| keys.iter().any(|key| key.as_str() == config.def.name))
                        })
                        .map(|(config, read_only)| {
                            describe(config, read_only, request.include_synonyms, request.include_documentation)
                        })
                        .collect();
                    result.with_error_code(0).with_configs(configs)
                }
            }
        })
        .collect();
    let response = DescribeConfigsResponse::default().with_results(results);
    encode(
        correlation_id,
        ApiKey::DescribeConfigs,
        version,
        ResponseKind::DescribeConfigs(response),
    )
}

fn describe(
    config: ResolvedConfig,
    read_only: bool,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        config
            .synonyms
            .iter()
            .map(|synonym| {
                DescribeConfigsSynonym::default()
                    .with_name(text(synonym.name.clone()))
                    .with_value(synonym.value.clone().map(text))
                    .with_source(synonym.source.code())
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(text(config.def.name))
        .with_value(config.value.map(text))
        .with_read_only(read_only)
        .with_config_source(config.source.code())
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config.def.config_type.code())
        .with_documentation(include_documentation.then(|| text(config.def.documentation)))
}
