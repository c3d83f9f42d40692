//! JoinGroup (key 11): a member joins (or rejoins) a group. The coordinator parks the request
//! until the join phase of the rebalance completes, so this handler awaits the shard's answer.

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, JoinGroupResponse, JoinProtocol, ResponseBody};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse as WireResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::JoinGroup, 0, 9);

pub async fn handle(
    broker: Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    correlation_id: i32,
    client_id: String,
    client_host: String,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let join = caudal_coordinator::JoinGroupRequest {
        version,
        group_id: group_id.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|protocol| JoinProtocol {
                name: protocol.name.to_string(),
                metadata: protocol.metadata.clone(),
            })
            .collect(),
        client_id,
        client_host,
    };
    let member_id = join.member_id.clone();
    let image = broker.image();
    let answer = broker
        .groups
        .call(&image, &group_id, Call::JoinGroup(join))
        .await;
    let response = match answer {
        Ok(ResponseBody::JoinGroup(response)) => response,
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered JoinGroup with another response"
            );
            JoinGroupResponse::error(GroupError::UnknownServerError, &member_id)
        }
        Err(error) => JoinGroupResponse::error(error, &member_id),
    };
    encode(
        correlation_id,
        ApiKey::JoinGroup,
        version,
        ResponseKind::JoinGroup(to_wire(response, version)),
    )
}

fn to_wire(response: JoinGroupResponse, version: i16) -> WireResponse {
    // Before v7 the protocol name is not nullable: an error response carries "".
    let protocol_name = match response.protocol_name {
        Some(name) => Some(text(name)),
        None if version < 7 => Some(text("")),
        None => None,
    };
    WireResponse::default()
        .with_error_code(response.error.code())
        .with_generation_id(response.generation_id.value())
        .with_protocol_type(response.protocol_type.map(text))
        .with_protocol_name(protocol_name)
        .with_leader(text(response.leader))
        .with_skip_assignment(response.skip_assignment)
        .with_member_id(text(response.member_id))
        .with_members(
            response
                .members
                .into_iter()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(member.member_id))
                        .with_group_instance_id(member.group_instance_id.map(text))
                        .with_metadata(member.metadata)
                })
                .collect(),
        )
}
