//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`). Each group is deleted by its own coordinator shard.

use std::sync::Arc;

use caudal_coordinator::{ErrorCode as GroupError, ResponseBody};
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::groups::Call;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DeleteGroups, 0, 2);

pub async fn handle(
    broker: Arc<Broker>,
    request: DeleteGroupsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let image = broker.image();
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in &request.groups_names {
        let call = Call::DeleteGroups(vec![group_id.0.to_string()]);
        let error = match broker.groups.call(&image, &group_id.0, call).await {
            Ok(ResponseBody::DeleteGroups(deleted)) => deleted
                .first()
                .map_or(GroupError::UnknownServerError, |(_, error)| *error),
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "group coordinator answered DeleteGroups unexpectedly"
                );
                GroupError::UnknownServerError
            }
            Err(error) => error,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(error.code()),
        );
    }
    encode(
        correlation_id,
        ApiKey::DeleteGroups,
        version,
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results)),
    )
}
