//! AlterConfigs (key 33), the legacy form: each resource's given configs become its whole dynamic
//! config set (keys left out are removed). Same validation and effect as IncrementalAlterConfigs.

use std::sync::Arc;

use caudal_controller::decisions::ConfigOp;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::encode;
use super::incremental_alter_configs::{Changes, apply_all, error_fields};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::AlterConfigs, 0, 2);

pub async fn handle(
    broker: Arc<Broker>,
    request: AlterConfigsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let entries = request
        .resources
        .iter()
        .map(|entry| {
            // A null value leaves the key out of the new set.
            let changes: Changes = Ok(entry
                .configs
                .iter()
                .filter_map(|config| {
                    let value = config.value.as_ref()?;
                    Some((config.name.to_string(), ConfigOp::Set(value.to_string())))
                })
                .collect());
            (
                entry.resource_type,
                entry.resource_name.to_string(),
                changes,
            )
        })
        .collect();
    let outcomes = apply_all(&broker, entries, true, request.validate_only).await;
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
        ApiKey::AlterConfigs,
        version,
        ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses)),
    )
}
