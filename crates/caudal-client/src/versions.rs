//! API version negotiation: the versions this client speaks, and the table agreed with one broker
//! from its ApiVersions response.

use std::collections::HashMap;

use caudal_protocol::kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::ClientError;

/// The APIs this client uses, each with the versions it handles. The maxima are the codec's; the
/// minima are where the codec starts or where this client's assumptions start (Metadata v1: a null
/// topic list means "all topics").
pub const CLIENT_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 6),
    // Leader elections and reassignments (KIP-455); unclean elections need ElectLeaders v1.
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Consumer-group admin ([`crate::groups`]). OffsetFetch from v2, where a null topic list
    // means "every partition with a commit".
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 2, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
];

/// The version range this client speaks for `api_key`, if it uses the API at all.
pub fn client_range(api_key: ApiKey) -> Option<(i16, i16)> {
    CLIENT_APIS
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| {
            // Never beyond what the codec can encode.
            let codec = api_key.valid_versions();
            (min.max(codec.min), max.min(codec.max))
        })
}

/// What one broker advertised, and the version chosen for each API both sides speak.
#[derive(Debug, Clone, Default)]
pub struct NegotiatedVersions {
    /// The broker's advertised ranges, by API key.
    broker: HashMap<i16, (i16, i16)>,
    /// The highest version in both ranges, per API this client uses.
    chosen: HashMap<i16, i16>,
}

impl NegotiatedVersions {
    /// Builds the table from an ApiVersions response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let broker: HashMap<i16, (i16, i16)> = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        let mut chosen = HashMap::new();
        for &(api_key, _, _) in CLIENT_APIS {
            let Some((client_min, client_max)) = client_range(api_key) else {
                continue;
            };
            if let Some(&(broker_min, broker_max)) = broker.get(&(api_key as i16)) {
                let version = client_max.min(broker_max);
                if version >= client_min.max(broker_min) {
                    chosen.insert(api_key as i16, version);
                }
            }
        }
        Self { broker, chosen }
    }

    /// The version to use for `api_key`, or why there is none.
    pub fn version(&self, api_key: ApiKey, broker: &str) -> Result<i16, ClientError> {
        if let Some(&version) = self.chosen.get(&(api_key as i16)) {
            return Ok(version);
        }
        match (self.broker.get(&(api_key as i16)), client_range(api_key)) {
            (Some(&(broker_min, broker_max)), Some((client_min, client_max))) => {
                Err(ClientError::UnsupportedVersion {
                    broker: broker.to_owned(),
                    api_key,
                    broker_min,
                    broker_max,
                    client_min,
                    client_max,
                })
            }
            _ => Err(ClientError::UnsupportedApi {
                broker: broker.to_owned(),
                api_key,
            }),
        }
    }

    /// The broker's advertised range for `api_key`.
    pub fn broker_range(&self, api_key: ApiKey) -> Option<(i16, i16)> {
        self.broker.get(&(api_key as i16)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;

    fn response(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    #[test]
    fn picks_the_highest_common_version() {
        let table = NegotiatedVersions::from_response(&response(&[
            (ApiKey::Produce, 0, 9),
            (ApiKey::Fetch, 0, 99),
            (ApiKey::Metadata, 0, 12),
        ]));
        assert_eq!(table.version(ApiKey::Produce, "b").unwrap(), 9);
        assert_eq!(table.version(ApiKey::Fetch, "b").unwrap(), 18);
        assert_eq!(table.version(ApiKey::Metadata, "b").unwrap(), 12);
    }

    #[test]
    fn reports_disjoint_ranges_and_missing_apis() {
        let table = NegotiatedVersions::from_response(&response(&[(ApiKey::Produce, 0, 2)]));
        let error = table.version(ApiKey::Produce, "b:1").unwrap_err();
        assert!(matches!(
            error,
            ClientError::UnsupportedVersion {
                broker_max: 2,
                client_min: 3,
                ..
            }
        ));
        assert!(error.to_string().contains("Produce"));
        assert!(matches!(
            table.version(ApiKey::Fetch, "b:1"),
            Err(ClientError::UnsupportedApi { .. })
        ));
    }

    #[test]
    fn client_ranges_stay_within_the_codec() {
        for &(api_key, _, _) in CLIENT_APIS {
            let (min, max) = client_range(api_key).unwrap();
            let codec = api_key.valid_versions();
            assert!(
                min >= codec.min && max <= codec.max && min <= max,
                "{api_key:?}"
            );
        }
    }
}
