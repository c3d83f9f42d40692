//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on topic configs and on
//! dynamic broker configs (one broker, or the cluster-wide default with an empty name). Changes
//! are metadata records: they survive restarts and take effect at once (the broker reconciles its
//! partitions after every metadata write). `validate_only` decides without writing.

use std::collections::HashMap;
use std::sync::Arc;

use caudal_controller::command::Command;
use caudal_controller::decisions::ConfigOp;
use caudal_metadata::ConfigResource;
use caudal_model::NodeId;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

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

/// The changes a request asks of one resource, or the error that resource gets.
pub type Changes = Result<Vec<(String, ConfigOp)>, (ErrorCode, String)>;

/// Decides (and unless `validate_only`, writes) each resource's changes, in order. A resource named
/// twice in one request gets INVALID_REQUEST, as in Kafka.
pub async fn apply_all(
    broker: &Arc<Broker>,
    entries: Vec<(i8, String, Changes)>,
    replace_all: bool,
    validate_only: bool,
) -> Vec<Result<(), (ErrorCode, String)>> {
    let mut counts: HashMap<(i8, String), usize> = HashMap::new();
    for (resource_type, name, _) in &entries {
        *counts.entry((*resource_type, name.clone())).or_default() += 1;
    }
    let mut outcomes = Vec::with_capacity(entries.len());
    for (resource_type, name, changes) in entries {
        if counts[&(resource_type, name.clone())] > 1 {
            outcomes.push(Err((
                ErrorCode::InvalidRequest,
                format!("Error due to duplicate resource {name}"),
            )));
            continue;
        }
        let outcome = match (resource(resource_type, &name), changes) {
            (Ok(resource), Ok(changes)) => {
                apply(broker, resource, changes, replace_all, validate_only).await
            }
            (Err(error), _) | (_, Err(error)) => Err(error),
        };
        outcomes.push(outcome);
    }
    outcomes
}

async fn apply(
    broker: &Arc<Broker>,
    resource: ConfigResource,
    changes: Vec<(String, ConfigOp)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    broker
        .submit(Command::AlterConfigs {
            resource,
            changes,
            replace_all,
            validate_only,
        })
        .await
        .map(|_| ())
        .map_err(|error| (metadata_error_code(&error), error.to_string()))
}

/// An outcome as response fields: (error code, error message).
pub fn error_fields(outcome: Result<(), (ErrorCode, String)>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((error, message)) => (error.code(), Some(text(message))),
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let entries = request
        .resources
        .iter()
        .map(|entry| {
            let changes: Changes = entry.configs.iter().map(change).collect();
            (
                entry.resource_type,
                entry.resource_name.to_string(),
                changes,
            )
        })
        .collect();
    let outcomes = apply_all(&broker, entries, false, request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let (error_code, error_message) = error_fields(outcome);
            AlterConfigsResourceResponse::default()
                .with_resource_type(entry.resource_type)
                .with_resource_name(entry.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message)
        })
        .collect();
    encode(
        correlation_id,
        ApiKey::IncrementalAlterConfigs,
        version,
        ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        ),
    )
}

fn change(config: &AlterableConfig) -> Result<(String, ConfigOp), (ErrorCode, String)> {
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
    if config.value.is_none() && op != ConfigOp::Delete {
        return Err((
            ErrorCode::InvalidRequest,
            format!("Null value not supported for: {}", config.name.as_str()),
        ));
    }
    Ok((config.name.to_string(), op))
}
