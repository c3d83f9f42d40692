//! The supported-API table and the ApiVersions response built from it.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::ErrorCode;

/// The versions of one API that a broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: ApiKey,
    pub min: i16,
    pub max: i16,
}

impl ApiVersionRange {
    pub const fn new(api_key: ApiKey, min: i16, max: i16) -> Self {
        Self { api_key, min, max }
    }

    pub fn contains(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// The highest ApiVersions version this codec can answer in.
pub const API_VERSIONS_MAX: i16 = 4;

/// Builds the ApiVersions response advertising `table`. With `error` set (KIP-511: the client asked
/// for a version we don't serve) the caller encodes it at version 0.
pub fn api_versions_response(
    table: &[ApiVersionRange],
    error: Option<ErrorCode>,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |error| error.code()))
        .with_api_keys(
            table
                .iter()
                .map(|range| {
                    ApiVersion::default()
                        .with_api_key(range.api_key as i16)
                        .with_min_version(range.min)
                        .with_max_version(range.max)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_the_table() {
        let table = [
            ApiVersionRange::new(ApiKey::ApiVersions, 0, 4),
            ApiVersionRange::new(ApiKey::Metadata, 0, 12),
        ];
        let response = api_versions_response(&table, None);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.api_keys.len(), 2);
        assert_eq!(response.api_keys[1].max_version, 12);
        let fallback = api_versions_response(&table, Some(ErrorCode::UnsupportedVersion));
        assert_eq!(fallback.error_code, 35);
    }
}
