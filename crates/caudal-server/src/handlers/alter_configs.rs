//! AlterConfigs (key 33), the legacy form: each resource's given configs become its whole dynamic
//! config set (keys left out are removed). Same validation and effect as IncrementalAlterConfigs.

use std::sync::Arc;

use caudal_controller::decisions::ConfigOp;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::{apply, duplicates, resource};
use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::AlterConfigs, 0, 2);

pub async fn handle(
    broker: Arc<Broker>,
    request: AlterConfigsRequest,
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
            // A null value leaves the key out of the new set.
            let changes: Vec<(String, ConfigOp)> = entry
                .configs
                .iter()
                .filter_map(|config| {
                    let value = config.value.as_ref()?;
                    Some((config.name.to_string(), ConfigOp::Set(value.to_string())))
                })
                .collect();
            match resource(entry.resource_type, &name) {
                Ok(resource) => {
                    apply(&broker, resource, changes, true, request.validate_only).await
                }
                Err(error) => Err(error),
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
        ApiKey::AlterConfigs,
        version,
        ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses)),
    )
}
