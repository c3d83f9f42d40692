//! One module per Kafka API. Each declares the versions it serves (`VERSIONS`); [`SUPPORTED_APIS`]
//! collects them and is the single source of the ApiVersions response and of version checks.

pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::error_response::{error_response, error_response_for_prefix};
use caudal_protocol::request::{DecodedRequest, RequestDecodeError, decode_request};
use caudal_protocol::response::encode_response;
use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::connection::{Outcome, Pending};

/// `authorized_operations` when the client did not ask for them (Kafka's sentinel).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Every API this broker serves, with its versions.
pub const SUPPORTED_APIS: &[ApiVersionRange] = &[
    produce::VERSIONS,
    fetch::VERSIONS,
    list_offsets::VERSIONS,
    metadata::VERSIONS,
    api_versions::VERSIONS,
    create_topics::VERSIONS,
    delete_topics::VERSIONS,
    init_producer_id::VERSIONS,
    offset_for_leader_epoch::VERSIONS,
    describe_configs::VERSIONS,
    create_partitions::VERSIONS,
    offset_commit::VERSIONS,
    offset_fetch::VERSIONS,
    find_coordinator::VERSIONS,
    join_group::VERSIONS,
    heartbeat::VERSIONS,
    leave_group::VERSIONS,
    sync_group::VERSIONS,
    describe_groups::VERSIONS,
    list_groups::VERSIONS,
    delete_groups::VERSIONS,
    offset_delete::VERSIONS,
    alter_configs::VERSIONS,
    incremental_alter_configs::VERSIONS,
    describe_log_dirs::VERSIONS,
    delete_records::VERSIONS,
    describe_cluster::VERSIONS,
    elect_leaders::VERSIONS,
    alter_partition_reassignments::VERSIONS,
    list_partition_reassignments::VERSIONS,
];

fn supported(api_key: ApiKey) -> Option<&'static ApiVersionRange> {
    SUPPORTED_APIS.iter().find(|range| range.api_key == api_key)
}

/// Encodes a response, or asks for the connection to close if it cannot be encoded (the client
/// would otherwise wait for it forever).
pub fn encode(correlation_id: i32, api_key: ApiKey, version: i16, body: ResponseKind) -> Outcome {
    encode_response(correlation_id, api_key, version, &body)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// A response that is ready now; an encoding failure closes the connection.
fn ready(outcome: Outcome) -> Pending {
    match outcome {
        Ok(response) => Pending::Ready(response),
        Err(reason) => Pending::Close(reason),
    }
}

/// Runs an async handler as a task whose outcome the writer awaits in order.
fn later<F>(future: F) -> Pending
where
    F: Future<Output = Outcome> + Send + 'static,
{
    Pending::Later(tokio::spawn(future))
}

/// Turns a message into the `StrBytes` the codec wants.
/// Submits `command` and takes its reply with `take`, which returns the reply back when it is of
/// another kind (a controller bug: UNKNOWN_SERVER_ERROR). A refused or unanswered command becomes
/// the error code the request answers with (`metadata_error_code`). `what` names the request in
/// the log.
pub async fn submit_expecting<T>(
    broker: &Arc<Broker>,
    command: caudal_controller::command::Command,
    what: &str,
    take: impl FnOnce(
        caudal_controller::command::CommandReply,
    ) -> Result<T, caudal_controller::command::CommandReply>,
) -> Result<T, ErrorCode> {
    match broker.submit(command).await {
        Ok(reply) => take(reply).map_err(|other| {
            tracing::error!(reply = ?other, "{what} got another command's reply");
            ErrorCode::UnknownServerError
        }),
        Err(error) => {
            tracing::warn!(%error, "{what} failed");
            Err(crate::errors::metadata_error_code(&error))
        }
    }
}

pub fn text(message: impl Into<String>) -> StrBytes {
    StrBytes::from_string(message.into())
}

/// Handles one request frame from the client at `peer`.
pub fn handle(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr) -> Pending {
    match decode_request(frame) {
        Ok(request) => dispatch(broker, request, peer),
        Err(RequestDecodeError::TooShort { length }) => {
            Pending::Close(format!("request frame of {length} bytes has no header"))
        }
        Err(RequestDecodeError::UnknownApiKey { prefix }) => {
            Pending::Close(format!("unknown API key {}", prefix.api_key))
        }
        Err(RequestDecodeError::UnknownVersion { api_key, prefix }) => {
            if api_key == ApiKey::ApiVersions {
                // KIP-511: answer an ApiVersions we cannot parse in v0, with the supported ranges.
                ready(api_versions::fallback(prefix.correlation_id))
            } else {
                Pending::Close(format!(
                    "{api_key:?} v{} cannot be decoded",
                    prefix.api_version
                ))
            }
        }
        Err(RequestDecodeError::Malformed {
            api_key,
            prefix,
            reason,
        }) => {
            tracing::warn!(api = ?api_key, version = prefix.api_version, %reason, "malformed request");
            if api_key == ApiKey::ApiVersions {
                return ready(api_versions::fallback(prefix.correlation_id));
            }
            match error_response_for_prefix(api_key, prefix.api_version, ErrorCode::InvalidRequest)
            {
                Some(body) => ready(encode(
                    prefix.correlation_id,
                    api_key,
                    prefix.api_version,
                    body,
                )),
                None => Pending::Close(format!("malformed {api_key:?} request: {reason}")),
            }
        }
    }
}

fn dispatch(broker: &Arc<Broker>, request: DecodedRequest, peer: SocketAddr) -> Pending {
    let api_key = request.api_key;
    let version = request.version();
    let correlation_id = request.correlation_id();
    if !supported(api_key).is_some_and(|range| range.contains(version)) {
        if api_key == ApiKey::ApiVersions {
            return ready(api_versions::fallback(correlation_id));
        }
        tracing::debug!(api = ?api_key, version, "unsupported API version");
        return match error_response(&request.body, version, ErrorCode::UnsupportedVersion) {
            Some(body) => ready(encode(correlation_id, api_key, version, body)),
            None => Pending::Close(format!("{api_key:?} v{version} is not supported")),
        };
    }
    let broker = broker.clone();
    match request.body {
        RequestKind::ApiVersions(body) => {
            ready(api_versions::handle(&body, version, correlation_id))
        }
        RequestKind::Produce(body) => produce::handle(&broker, body, version, correlation_id),
        RequestKind::Fetch(body) => {
            later(async move { fetch::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::ListOffsets(body) => {
            later(async move { list_offsets::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::Metadata(body) => {
            later(async move { metadata::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::CreateTopics(body) => {
            later(async move { create_topics::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::DeleteTopics(body) => {
            later(async move { delete_topics::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::CreatePartitions(body) => {
            later(
                async move { create_partitions::handle(broker, body, version, correlation_id).await },
            )
        }
        RequestKind::DescribeConfigs(body) => ready(describe_configs::handle(
            &broker,
            &body,
            version,
            correlation_id,
        )),
        RequestKind::InitProducerId(body) => {
            later(
                async move { init_producer_id::handle(broker, body, version, correlation_id).await },
            )
        }
        RequestKind::OffsetForLeaderEpoch(body) => ready(offset_for_leader_epoch::handle(
            &broker,
            &body,
            version,
            correlation_id,
        )),
        RequestKind::DescribeLogDirs(body) => ready(describe_log_dirs::handle(
            &broker,
            &body,
            version,
            correlation_id,
        )),
        RequestKind::DescribeCluster(body) => ready(describe_cluster::handle(
            &broker,
            &body,
            version,
            correlation_id,
        )),
        RequestKind::DeleteRecords(body) => {
            later(
                async move { delete_records::handle(broker, body, version, correlation_id).await },
            )
        }
        RequestKind::AlterConfigs(body) => {
            later(async move { alter_configs::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::IncrementalAlterConfigs(body) => later(async move {
            incremental_alter_configs::handle(broker, body, version, correlation_id).await
        }),
        RequestKind::FindCoordinator(body) => {
            later(
                async move { find_coordinator::handle(broker, body, version, correlation_id).await },
            )
        }
        RequestKind::JoinGroup(body) => {
            let client_id = request
                .header
                .client_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default();
            // Kafka reports the client's address as Java prints it: "/127.0.0.1".
            let client_host = format!("/{}", peer.ip());
            later(async move {
                join_group::handle(
                    broker,
                    body,
                    version,
                    correlation_id,
                    client_id,
                    client_host,
                )
                .await
            })
        }
        RequestKind::SyncGroup(body) => {
            later(async move { sync_group::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::Heartbeat(body) => {
            later(async move { heartbeat::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::LeaveGroup(body) => {
            later(async move { leave_group::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::OffsetCommit(body) => {
            later(async move { offset_commit::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::OffsetFetch(body) => {
            later(async move { offset_fetch::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::DescribeGroups(body) => {
            later(
                async move { describe_groups::handle(broker, body, version, correlation_id).await },
            )
        }
        RequestKind::ListGroups(body) => {
            later(async move { list_groups::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::DeleteGroups(body) => {
            later(async move { delete_groups::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::OffsetDelete(body) => {
            later(async move { offset_delete::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::ElectLeaders(body) => {
            later(async move { elect_leaders::handle(broker, body, version, correlation_id).await })
        }
        RequestKind::AlterPartitionReassignments(body) => later(async move {
            alter_partition_reassignments::handle(broker, body, version, correlation_id).await
        }),
        RequestKind::ListPartitionReassignments(body) => ready(
            list_partition_reassignments::handle(&broker, &body, version, correlation_id),
        ),
        other => match error_response(&other, version, ErrorCode::UnsupportedVersion) {
            Some(body) => ready(encode(correlation_id, api_key, version, body)),
            None => Pending::Close(format!("{api_key:?} is not supported")),
        },
    }
}
