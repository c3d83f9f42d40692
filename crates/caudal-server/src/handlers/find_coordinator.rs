//! FindCoordinator (key 10): which broker coordinates a consumer group. The coordinator of a
//! group is the leader of its `__consumer_offsets` partition; the topic is created on the first
//! request for a group. v4+ batches keys (`coordinator_keys`); v0–v3 ask for one key.

use std::sync::Arc;

use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::GroupCoordinator;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::FindCoordinator, 0, 6);

/// Kafka's coordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let keys: Vec<StrBytes> = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        coordinators.push(find(&broker, request.key_type, key).await);
    }
    let response = if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let found = coordinators.pop().unwrap_or_default();
        FindCoordinatorResponse::default()
            .with_error_code(found.error_code)
            .with_error_message(found.error_message)
            .with_node_id(found.node_id)
            .with_host(found.host)
            .with_port(found.port)
    };
    encode(
        correlation_id,
        ApiKey::FindCoordinator,
        version,
        ResponseKind::FindCoordinator(response),
    )
}

fn failed(key: StrBytes, error: ErrorCode, message: Option<String>) -> Coordinator {
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(-1))
        .with_host(StrBytes::from_static_str(""))
        .with_port(-1)
        .with_error_code(error.code())
        .with_error_message(Some(text(
            message.unwrap_or_else(|| "The coordinator is not available.".to_string()),
        )))
}

async fn find(broker: &Arc<Broker>, key_type: i8, key: StrBytes) -> Coordinator {
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => {
            return failed(
                key,
                ErrorCode::TransactionalIdAuthorizationFailed,
                Some("transactions are not supported by this broker yet".into()),
            );
        }
        other => {
            return failed(
                key,
                ErrorCode::InvalidRequest,
                Some(format!("unknown coordinator key type {other}")),
            );
        }
    }
    if let Err(error) = broker.ensure_offsets_topic().await {
        tracing::warn!(%error, "creating the consumer offsets topic failed");
        return failed(
            key,
            ErrorCode::CoordinatorNotAvailable,
            Some(error.to_string()),
        );
    }
    let image = broker.image();
    let endpoint = GroupCoordinator::coordinator_of(&image, &key)
        .and_then(|leader| image.brokers.get(&leader));
    match endpoint {
        Some(endpoint) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(endpoint.node_id.0))
            .with_host(text(endpoint.host.clone()))
            .with_port(i32::from(endpoint.port))
            .with_error_code(0)
            .with_error_message(None),
        None => failed(key, ErrorCode::CoordinatorNotAvailable, None),
    }
}
