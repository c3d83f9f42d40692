//! SyncGroup (key 14): the leader hands out the assignment; every member receives its own. A
//! follower's request is parked by the coordinator until the leader's arrives.

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, GenerationId, ResponseBody};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::SyncGroup, 0, 5);

pub async fn handle(
    broker: Arc<Broker>,
    request: SyncGroupRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let sync = caudal_coordinator::SyncGroupRequest {
        group_id: group_id.clone(),
        generation_id: GenerationId(request.generation_id),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        protocol_type: request.protocol_type.as_ref().map(|name| name.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|name| name.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.member_id.to_string(),
                    assignment.assignment.clone(),
                )
            })
            .collect(),
    };
    let image = broker.image();
    let answer = broker
        .groups
        .call(&image, &group_id, Call::SyncGroup(sync))
        .await;
    let response = match answer {
        Ok(ResponseBody::SyncGroup(response)) => SyncGroupResponse::default()
            .with_error_code(response.error.code())
            .with_protocol_type(response.protocol_type.map(text))
            .with_protocol_name(response.protocol_name.map(text))
            .with_assignment(response.assignment),
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered SyncGroup with another response"
            );
            SyncGroupResponse::default().with_error_code(GroupError::UnknownServerError.code())
        }
        Err(error) => SyncGroupResponse::default().with_error_code(error.code()),
    };
    encode(
        correlation_id,
        ApiKey::SyncGroup,
        version,
        ResponseKind::SyncGroup(response),
    )
}
