//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on topic configs and on
//! dynamic broker configs (one broker, or the cluster-wide default with an empty name). Changes
//! are metadata records: they survive restarts and take effect at once (the broker reconciles its
//! partitions after every metadata write). `validate_only` decides without writing.

use std::collections::HashMap;
use std::sync::Arc;

use caudal_controller::decisions::{ConfigOp, alter_configs};
use caudal_metadata::ConfigResource;
use caudal_model::NodeId;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::controller_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::IncrementalAlterConfigs, 0, 1);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// The resource a request names, or the error it gets.
pub fn resource(resource_type: i8, name: &str) -> Result<ConfigResource, (ErrorCode, String)> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigResource::BrokerDefault),
        RESOURCE_BROKER => name
            .parse::<i32>()
            .map(|id| ConfigResource::Broker(NodeId(id)))
            .map_err(|_| {
                (
                    ErrorCode::InvalidRequest,
                    format!("Failed to parse broker name {name:?} to an integer id"),
                )
            }),
        other => Err((
            ErrorCode::InvalidRequest,
            format!("Unsupported resource type {other} for configs"),
        )),
    }
}

/// Decides (and unless `validate_only`, writes) one resource's changes.
pub async fn apply(
    broker: &Arc<Broker>,
    resource: ConfigResource,
    changes: Vec<(String, ConfigOp)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let failed = |error: caudal_controller::ControllerError| {
        (controller_error_code(&error), error.to_string())
    };
    if validate_only {
        return alter_configs(&broker.image(), &resource, &changes, replace_all)
            .map(|_| ())
            .map_err(failed);
    }
    broker
        .write_metadata(move |image| {
            alter_configs(image, &resource, &changes, replace_all).map(|records| (records, ()))
        })
        .await
        .map_err(failed)
}

/// Indexes of resources named more than once: Kafka answers each INVALID_REQUEST.
pub fn duplicates(keys: &[(i8, String)]) -> Vec<bool> {
    let mut counts: HashMap<&(i8, String), usize> = HashMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    keys.iter().map(|key| counts[key] > 1).collect()
}

pub async fn handle(
    broker: Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let keys: Vec<(i8, String)> = request
        .resources
        .iter()
        .map(|resource| (resource.resource_type, resource.resource_name.to_string()))
        .collect();
    let duplicated = duplicates(&keys);
    let mut responses = Vec::with_capacity(request.resources.len());
    for (entry, duplicate) in request.resources.into_iter().zip(duplicated) {
        let name = entry.resource_name.to_string();
        let outcome = if duplicate {
            Err((
                ErrorCode::InvalidRequest,
                format!("Error due to duplicate resource {name}"),
            ))
        } else {
            let changes: Result<Vec<(String, ConfigOp)>, (ErrorCode, String)> = entry
                .configs
                .iter()
                .map(|config| {
                    let value = config
                        .value
                        .as_ref()
                        .map(|value| value.to_string())
                        .unwrap_or_default();
                    let op = match config.config_operation {
                        0 => ConfigOp::Set(value),
                        1 => ConfigOp::Delete,
                        2 => ConfigOp::Append(value),
                        3 => ConfigOp::Subtract(value),
                        other => {
                            return Err((
                                ErrorCode::InvalidRequest,
                                format!("Unknown config operation {other}"),
                            ));
                        }
                    };
                    if config.value.is_none() && !matches!(op, ConfigOp::Delete) {
                        return Err((
                            ErrorCode::InvalidRequest,
                            format!("Null value not supported for: {}", config.name.as_str()),
                        ));
                    }
                    Ok((config.name.to_string(), op))
                })
                .collect();
            match (resource(entry.resource_type, &name), changes) {
                (Ok(resource), Ok(changes)) => {
                    apply(&broker, resource, changes, false, request.validate_only).await
                }
                (Err(error), _) | (_, Err(error)) => Err(error),
            }
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(entry.resource_type)
            .with_resource_name(entry.resource_name);
        responses.push(match outcome {
            Ok(()) => response.with_error_code(0),
            Err((error, message)) => response
                .with_error_code(error.code())
                .with_error_message(Some(text(message))),
        });
    }
    encode(
        correlation_id,
        ApiKey::IncrementalAlterConfigs,
        version,
        ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        ),
    )
}
