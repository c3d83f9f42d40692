//! DescribeGroups (key 15): state, protocol and members of groups; each group is answered by its
//! own coordinator shard. An unknown group is described as "Dead" with no members, as in Kafka.

use std::sync::Arc;

use caudal_coordinator::ErrorCode as GroupError;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{AUTHORIZED_OPERATIONS_OMITTED, encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::{Answer, Query};

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DescribeGroups, 0, 5);

/// Without an authorizer every group operation is allowed: READ (3), DELETE (6), DESCRIBE (8).
const GROUP_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn handle(
    broker: Arc<Broker>,
    request: DescribeGroupsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let image = broker.image();
    let operations = if version >= 3 && request.include_authorized_operations {
        GROUP_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        let query = Query::DescribeGroups {
            version,
            group_ids: vec![group_id.0.to_string()],
        };
        let described = match broker.groups.query(&image, &group_id.0, query).await {
            Ok(Answer::DescribeGroups(mut described)) if described.len() == 1 => {
                let group = described.remove(0);
                DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(group.error.code())
                    .with_group_state(text(group.state))
                    .with_protocol_type(text(group.protocol_type))
                    .with_protocol_data(text(group.protocol_data))
                    .with_members(
                        group
                            .members
                            .into_iter()
                            .map(|member| {
                                DescribedGroupMember::default()
                                    .with_member_id(text(member.member_id))
                                    .with_group_instance_id(member.group_instance_id.map(text))
                                    .with_client_id(text(member.client_id))
                                    .with_client_host(text(member.client_host))
                                    .with_member_metadata(member.metadata)
                                    .with_member_assignment(member.assignment)
                            })
                            .collect(),
                    )
                    .with_authorized_operations(operations)
            }
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "group coordinator answered DescribeGroups unexpectedly"
                );
                failed(group_id.clone(), GroupError::UnknownServerError)
            }
            Err(error) => failed(group_id.clone(), error),
        };
        groups.push(described);
    }
    encode(
        correlation_id,
        ApiKey::DescribeGroups,
        version,
        ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups)),
    )
}

fn failed(group_id: GroupId, error: GroupError) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(error.code())
        .with_group_state(text(""))
        .with_protocol_type(text(""))
        .with_protocol_data(text(""))
        .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
