//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, GenerationId, ResponseBody};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::Heartbeat, 0, 4);

pub async fn handle(
    broker: Arc<Broker>,
    request: HeartbeatRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let heartbeat = caudal_coordinator::HeartbeatRequest {
        group_id: group_id.clone(),
        generation_id: GenerationId(request.generation_id),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
    };
    let image = broker.image();
    let error = match broker
        .groups
        .call(&image, &group_id, Call::Heartbeat(heartbeat))
        .await
    {
        Ok(ResponseBody::Heartbeat(error)) => error,
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered Heartbeat with another response"
            );
            GroupError::UnknownServerError
        }
        Err(error) => error,
    };
    encode(
        correlation_id,
        ApiKey::Heartbeat,
        version,
        ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(error.code())),
    )
}
