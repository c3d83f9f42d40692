//! ApiVersions (key 18): the versions of every API this broker serves (KIP-511 fallback included).

use caudal_protocol::api::{ApiVersionRange, api_versions_response};
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::ApiVersionsRequest;

use super::{SUPPORTED_APIS, encode};
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::ApiVersions, 0, 4);

pub fn handle(request: &ApiVersionsRequest, version: i16, correlation_id: i32) -> Outcome {
    if version >= 3 {
        tracing::debug!(
            client = %request.client_software_name.as_str(),
            client_version = %request.client_software_version.as_str(),
            "client connected"
        );
    }
    let response = api_versions_response(SUPPORTED_APIS, None);
    encode(
        correlation_id,
        ApiKey::ApiVersions,
        version,
        ResponseKind::ApiVersions(response),
    )
}

/// KIP-511: a client asked for an ApiVersions version we don't serve. Answer in v0 with
/// UNSUPPORTED_VERSION and our ranges, so it can retry with one we do.
pub fn fallback(correlation_id: i32) -> Outcome {
    let response = api_versions_response(SUPPORTED_APIS, Some(ErrorCode::UnsupportedVersion));
    encode(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        ResponseKind::ApiVersions(response),
    )
}
