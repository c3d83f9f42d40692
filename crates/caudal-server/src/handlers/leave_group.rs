//! LeaveGroup (key 13): members leave a group, which then rebalances. v0–v2 carry one member id;
//! v3+ a batch of members (static members leave by instance id).

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, LeaveMember, ResponseBody};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::LeaveGroup, 0, 5);

pub async fn handle(
    broker: Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let group_id = request.group_id.0.to_string();
    let members: Vec<LeaveMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| LeaveMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let leave = caudal_coordinator::LeaveGroupRequest {
        group_id: group_id.clone(),
        members,
    };
    let image = broker.image();
    let response = match broker
        .groups
        .call(&image, &group_id, Call::LeaveGroup(leave))
        .await
    {
        Ok(ResponseBody::LeaveGroup(response)) => {
            if version >= 3 {
                LeaveGroupResponse::default()
                    .with_error_code(response.error.code())
                    .with_members(
                        response
                            .members
                            .into_iter()
                            .map(|(member, error)| {
                                MemberResponse::default()
                                    .with_member_id(text(member.member_id))
                                    .with_group_instance_id(member.group_instance_id.map(text))
                                    .with_error_code(error.code())
                            })
                            .collect(),
                    )
            } else {
                // One member: its error is the request's.
                let error = match response.error {
                    GroupError::None => response
                        .members
                        .first()
                        .map_or(GroupError::None, |(_, error)| *error),
                    error => error,
                };
                LeaveGroupResponse::default().with_error_code(error.code())
            }
        }
        Ok(other) => {
            tracing::error!(
                ?other,
                "group coordinator answered LeaveGroup with another response"
            );
            LeaveGroupResponse::default().with_error_code(GroupError::UnknownServerError.code())
        }
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
    };
    encode(
        correlation_id,
        ApiKey::LeaveGroup,
        version,
        ResponseKind::LeaveGroup(response),
    )
}
