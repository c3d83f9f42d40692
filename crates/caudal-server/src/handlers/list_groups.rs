//! ListGroups (key 16): the groups of every coordinator shard on this broker, filtered by state
//! (v4+) and type (v5+). A shard still loading makes the answer COORDINATOR_LOAD_IN_PROGRESS
//! with the groups of the others, as Kafka does.

use std::sync::Arc;

use caudal_coordinator::ErrorCode as GroupError;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::{Answer, Query};

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::ListGroups, 0, 5);

pub async fn handle(
    broker: Arc<Broker>,
    request: ListGroupsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|state| state.to_string())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|group_type| group_type.to_string())
        .collect();
    let answers = broker
        .groups
        .query_all(|| Query::ListGroups {
            states: states.clone(),
            types: types.clone(),
        })
        .await;
    let mut error = GroupError::None;
    let mut groups = Vec::new();
    for answer in answers {
        match answer {
            Ok(Answer::ListGroups(Ok(listed))) => groups.extend(listed),
            Ok(Answer::ListGroups(Err(shard_error))) | Err(shard_error) => error = shard_error,
            Ok(other) => {
                tracing::error!(?other, "group coordinator answered ListGroups unexpectedly");
                error = GroupError::UnknownServerError;
            }
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let response = ListGroupsResponse::default()
        .with_error_code(error.code())
        .with_groups(
            groups
                .into_iter()
                .map(|group| {
                    ListedGroup::default()
                        .with_group_id(GroupId(text(group.group_id)))
                        .with_protocol_type(text(group.protocol_type))
                        .with_group_state(text(group.state))
                        .with_group_type(text(group.group_type))
                })
                .collect(),
        );
    encode(
        correlation_id,
        ApiKey::ListGroups,
        version,
        ResponseKind::ListGroups(response),
    )
}
