//! Error responses for every API: the response Kafka's broker sends when a request fails as a
//! whole (Kafka's `AbstractRequest.getErrorResponse`), built per API so that a client reads the
//! error where it looks for it:
//!
//! - at the top level, where the response has an error code at that version;
//! - on every entity the request named (topic/partition, group, resource, transactional id, ACL
//!   creation, …), mirroring the names, topic ids and partition indexes from the request, in
//!   request order.
//!
//! Where Kafka deliberately sends less, so do we: a Fetch v13+ error carries only the top-level
//! code (no partitions), AddPartitionsToTxn v4+ only the top-level code, OffsetFetch v2–v7 only the
//! group error, and the top-level-only responses (LeaveGroup, OffsetDelete, DescribeLogDirs, …)
//! list no entities. Sentinel fields take Kafka's values (offsets and epochs `-1`, empty
//! assignments, `NO_NODE` coordinators). Error messages are left null; throttle time is zero.
//!
//! Every response built here is valid to encode at the version it was built for; versions outside
//! [`ApiKey::valid_versions`] give `None`, as nothing can be encoded there. The broker answers an
//! API or version it does not serve with [`ErrorCode::UnsupportedVersion`] through
//! [`error_response`] when the body decoded, and through [`error_response_for_prefix`] when only
//! the 8-byte request prefix could be read. ApiVersions requests at a version this codec can't
//! decode are not answered here: the KIP-511 fallback (a v0 response listing the supported ranges)
//! is [`crate::api::api_versions_response`].

use kafka_protocol::messages::{self as m, ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::ErrorCode;
use crate::api::API_VERSIONS_MAX;

/// Kafka's "no offset" / "no timestamp" / "no epoch" sentinel.
const UNKNOWN: i64 = -1;
const UNKNOWN_EPOCH: i32 = -1;

/// Calls `$callback!` with the name of every API this codec knows. The names are shared by
/// [`ApiKey`], [`RequestKind`] and [`ResponseKind`] variants.
macro_rules! with_every_api {
    ($callback:ident) => {
        $callback! {
            Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator,
            JoinGroup, Heartbeat, LeaveGroup, SyncGroup, DescribeGroups, ListGroups, SaslHandshake,
            ApiVersions, CreateTopics, DeleteTopics, DeleteRecords, InitProducerId,
            OffsetForLeaderEpoch, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers,
            TxnOffsetCommit, DescribeAcls, CreateAcls, DeleteAcls, DescribeConfigs, AlterConfigs,
            AlterReplicaLogDirs, DescribeLogDirs, SaslAuthenticate, CreatePartitions,
            CreateDelegationToken, RenewDelegationToken, ExpireDelegationToken,
            DescribeDelegationToken, DeleteGroups, ElectLeaders, IncrementalAlterConfigs,
            AlterPartitionReassignments, ListPartitionReassignments, OffsetDelete,
            DescribeClientQuotas, AlterClientQuotas, DescribeUserScramCredentials,
            AlterUserScramCredentials, Vote, BeginQuorumEpoch, EndQuorumEpoch, DescribeQuorum,
            AlterPartition, UpdateFeatures, Envelope, FetchSnapshot, DescribeCluster,
            DescribeProducers, BrokerRegistration, BrokerHeartbeat, UnregisterBroker,
            DescribeTransactions, ListTransactions, AllocateProducerIds, ConsumerGroupHeartbeat,
            ConsumerGroupDescribe, ControllerRegistration, GetTelemetrySubscriptions, PushTelemetry,
            AssignReplicasToDirs, ListConfigResources, DescribeTopicPartitions, ShareGroupHeartbeat,
            ShareGroupDescribe, ShareFetch, ShareAcknowledge, AddRaftVoter, RemoveRaftVoter,
            UpdateRaftVoter, InitializeShareGroupState, ReadShareGroupState, WriteShareGroupState,
            DeleteShareGroupState, ReadShareGroupStateSummary, DescribeShareGroupOffsets,
            AlterShareGroupOffsets, DeleteShareGroupOffsets
        }
    };
}

macro_rules! define_api_lookups {
    ($($name:ident),* $(,)?) => {
        /// The API key of a request body; `None` only for a request kind newer than this codec's
        /// table (the `kafka-protocol` enum is non-exhaustive).
        pub fn request_api_key(request: &RequestKind) -> Option<ApiKey> {
            match request {
                $(RequestKind::$name(_) => Some(ApiKey::$name),)*
                #[allow(unreachable_patterns)]
                _ => None,
            }
        }

        /// An empty request body of `api_key`, for answering a frame whose body didn't decode.
        fn empty_request(api_key: ApiKey) -> RequestKind {
            match api_key {
                $(ApiKey::$name => RequestKind::$name(Default::default()),)*
            }
        }
    };
}

with_every_api!(define_api_lookups);

/// The response Kafka sends when `request` (received at `version`) fails as a whole with `error`.
///
/// `None` when `version` is outside the versions this codec can encode for the API, or for a
/// request kind this module doesn't know. A Produce request with `acks=0` still gets a response
/// here; whether to send it is the caller's decision (Kafka sends none).
pub fn error_response(
    request: &RequestKind,
    version: i16,
    error: ErrorCode,
) -> Option<ResponseKind> {
    let api_key = request_api_key(request)?;
    let known = api_key.valid_versions();
    if version < known.min || version > known.max {
        return None;
    }
    let code = error.code();
    let response = match request {
        RequestKind::Produce(request) => ResponseKind::Produce(produce(request, code)),
        RequestKind::Fetch(request) => ResponseKind::Fetch(fetch(request, version, code)),
        RequestKind::ListOffsets(request) => ResponseKind::ListOffsets(list_offsets(request, code)),
        RequestKind::Metadata(request) => ResponseKind::Metadata(metadata(request, code)),
        RequestKind::OffsetCommit(request) => {
            ResponseKind::OffsetCommit(offset_commit(request, code))
        }
        RequestKind::OffsetFetch(request) => {
            ResponseKind::OffsetFetch(offset_fetch(request, version, code))
        }
        RequestKind::FindCoordinator(request) => {
            ResponseKind::FindCoordinator(find_coordinator(request, version, code))
        }
        RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(join_group(version, code)),
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(m::HeartbeatResponse::default().with_error_code(code))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(m::LeaveGroupResponse::default().with_error_code(code))
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(m::SyncGroupResponse::default().with_error_code(code))
        }
        RequestKind::DescribeGroups(request) => {
            ResponseKind::DescribeGroups(describe_groups(request, code))
        }
        RequestKind::ListGroups(_) => {
            ResponseKind::ListGroups(m::ListGroupsResponse::default().with_error_code(code))
        }
        RequestKind::SaslHandshake(_) => {
            ResponseKind::SaslHandshake(m::SaslHandshakeResponse::default().with_error_code(code))
        }
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(error)),
        RequestKind::CreateTopics(request) => {
            ResponseKind::CreateTopics(create_topics(request, code))
        }
        RequestKind::DeleteTopics(request) => {
            ResponseKind::DeleteTopics(delete_topics(request, version, code))
        }
        RequestKind::DeleteRecords(request) => {
            ResponseKind::DeleteRecords(delete_records(request, code))
        }
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            m::InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        RequestKind::OffsetForLeaderEpoch(request) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch(request, code))
        }
        RequestKind::AddPartitionsToTxn(request) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn(request, version, code))
        }
        RequestKind::AddOffsetsToTxn(_) => ResponseKind::AddOffsetsToTxn(
            m::AddOffsetsToTxnResponse::default().with_error_code(code),
        ),
        RequestKind::EndTxn(_) => {
            ResponseKind::EndTxn(m::EndTxnResponse::default().with_error_code(code))
        }
        RequestKind::WriteTxnMarkers(request) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers(request, code))
        }
        RequestKind::TxnOffsetCommit(request) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit(request, code))
        }
        RequestKind::DescribeAcls(_) => {
            ResponseKind::DescribeAcls(m::DescribeAclsResponse::default().with_error_code(code))
        }
        RequestKind::CreateAcls(request) => ResponseKind::CreateAcls(create_acls(request, code)),
        RequestKind::DeleteAcls(request) => ResponseKind::DeleteAcls(delete_acls(request, code)),
        RequestKind::DescribeConfigs(request) => {
            ResponseKind::DescribeConfigs(describe_configs(request, code))
        }
        RequestKind::AlterConfigs(request) => {
            ResponseKind::AlterConfigs(alter_configs(request, code))
        }
        RequestKind::AlterReplicaLogDirs(request) => {
            ResponseKind::AlterReplicaLogDirs(alter_replica_log_dirs(request, code))
        }
        RequestKind::DescribeLogDirs(_) => ResponseKind::DescribeLogDirs(
            m::DescribeLogDirsResponse::default().with_error_code(code),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            m::SaslAuthenticateResponse::default().with_error_code(code),
        ),
        RequestKind::CreatePartitions(request) => {
            ResponseKind::CreatePartitions(create_partitions(request, code))
        }
        RequestKind::CreateDelegationToken(_) => {
            ResponseKind::CreateDelegationToken(create_delegation_token(version, code))
        }
        RequestKind::RenewDelegationToken(_) => ResponseKind::RenewDelegationToken(
            m::RenewDelegationTokenResponse::default().with_error_code(code),
        ),
        RequestKind::ExpireDelegationToken(_) => ResponseKind::ExpireDelegationToken(
            m::ExpireDelegationTokenResponse::default().with_error_code(code),
        ),
        RequestKind::DescribeDelegationToken(_) => ResponseKind::DescribeDelegationToken(
            m::DescribeDelegationTokenResponse::default().with_error_code(code),
        ),
        RequestKind::DeleteGroups(request) => {
            ResponseKind::DeleteGroups(delete_groups(request, code))
        }
        RequestKind::ElectLeaders(request) => {
            ResponseKind::ElectLeaders(elect_leaders(request, version, code))
        }
        RequestKind::IncrementalAlterConfigs(request) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs(request, code))
        }
        RequestKind::AlterPartitionReassignments(request) => {
            ResponseKind::AlterPartitionReassignments(alter_partition_reassignments(request, code))
        }
        RequestKind::ListPartitionReassignments(request) => {
            ResponseKind::ListPartitionReassignments(list_partition_reassignments(request, code))
        }
        RequestKind::OffsetDelete(_) => {
            ResponseKind::OffsetDelete(m::OffsetDeleteResponse::default().with_error_code(code))
        }
        RequestKind::DescribeClientQuotas(_) => ResponseKind::DescribeClientQuotas(
            m::DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_entries(None),
        ),
        RequestKind::AlterClientQuotas(request) => {
            ResponseKind::AlterClientQuotas(alter_client_quotas(request, code))
        }
        RequestKind::DescribeUserScramCredentials(request) => {
            ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials(
                request, code,
            ))
        }
        RequestKind::AlterUserScramCredentials(request) => {
            ResponseKind::AlterUserScramCredentials(alter_user_scram_credentials(request, code))
        }
        RequestKind::Vote(_) => {
            ResponseKind::Vote(m::VoteResponse::default().with_error_code(code))
        }
        RequestKind::BeginQuorumEpoch(_) => ResponseKind::BeginQuorumEpoch(
            m::BeginQuorumEpochResponse::default().with_error_code(code),
        ),
        RequestKind::EndQuorumEpoch(_) => {
            ResponseKind::EndQuorumEpoch(m::EndQuorumEpochResponse::default().with_error_code(code))
        }
        RequestKind::DescribeQuorum(_) => {
            ResponseKind::DescribeQuorum(m::DescribeQuorumResponse::default().with_error_code(code))
        }
        RequestKind::AlterPartition(_) => {
            ResponseKind::AlterPartition(m::AlterPartitionResponse::default().with_error_code(code))
        }
        RequestKind::UpdateFeatures(_) => {
            ResponseKind::UpdateFeatures(m::UpdateFeaturesResponse::default().with_error_code(code))
        }
        RequestKind::Envelope(_) => ResponseKind::Envelope(
            m::EnvelopeResponse::default()
                .with_error_code(code)
                .with_response_data(None),
        ),
        RequestKind::FetchSnapshot(_) => {
            ResponseKind::FetchSnapshot(m::FetchSnapshotResponse::default().with_error_code(code))
        }
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(
            m::DescribeClusterResponse::default().with_error_code(code),
        ),
        RequestKind::DescribeProducers(request) => {
            ResponseKind::DescribeProducers(describe_producers(request, code))
        }
        RequestKind::BrokerRegistration(_) => ResponseKind::BrokerRegistration(
            m::BrokerRegistrationResponse::default().with_error_code(code),
        ),
        RequestKind::BrokerHeartbeat(_) => ResponseKind::BrokerHeartbeat(
            m::BrokerHeartbeatResponse::default().with_error_code(code),
        ),
        RequestKind::UnregisterBroker(_) => ResponseKind::UnregisterBroker(
            m::UnregisterBrokerResponse::default().with_error_code(code),
        ),
        RequestKind::DescribeTransactions(request) => {
            ResponseKind::DescribeTransactions(describe_transactions(request, code))
        }
        RequestKind::ListTransactions(_) => ResponseKind::ListTransactions(
            m::ListTransactionsResponse::default().with_error_code(code),
        ),
        RequestKind::AllocateProducerIds(_) => ResponseKind::AllocateProducerIds(
            m::AllocateProducerIdsResponse::default().with_error_code(code),
        ),
        RequestKind::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
            m::ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
        RequestKind::ConsumerGroupDescribe(request) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe(request, code))
        }
        RequestKind::ControllerRegistration(_) => ResponseKind::ControllerRegistration(
            m::ControllerRegistrationResponse::default().with_error_code(code),
        ),
        RequestKind::GetTelemetrySubscriptions(_) => ResponseKind::GetTelemetrySubscriptions(
            m::GetTelemetrySubscriptionsResponse::default().with_error_code(code),
        ),
        RequestKind::PushTelemetry(_) => {
            ResponseKind::PushTelemetry(m::PushTelemetryResponse::default().with_error_code(code))
        }
        RequestKind::AssignReplicasToDirs(_) => ResponseKind::AssignReplicasToDirs(
            m::AssignReplicasToDirsResponse::default().with_error_code(code),
        ),
        RequestKind::ListConfigResources(_) => ResponseKind::ListConfigResources(
            m::ListConfigResourcesResponse::default().with_error_code(code),
        ),
        RequestKind::DescribeTopicPartitions(request) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions(request, code))
        }
        RequestKind::ShareGroupHeartbeat(_) => ResponseKind::ShareGroupHeartbeat(
            m::ShareGroupHeartbeatResponse::default().with_error_code(code),
        ),
        RequestKind::ShareGroupDescribe(request) => {
            ResponseKind::ShareGroupDescribe(share_group_describe(request, code))
        }
        RequestKind::ShareFetch(_) => {
            ResponseKind::ShareFetch(m::ShareFetchResponse::default().with_error_code(code))
        }
        RequestKind::ShareAcknowledge(_) => ResponseKind::ShareAcknowledge(
            m::ShareAcknowledgeResponse::default().with_error_code(code),
        ),
        RequestKind::AddRaftVoter(_) => {
            ResponseKind::AddRaftVoter(m::AddRaftVoterResponse::default().with_error_code(code))
        }
        RequestKind::RemoveRaftVoter(_) => ResponseKind::RemoveRaftVoter(
            m::RemoveRaftVoterResponse::default().with_error_code(code),
        ),
        RequestKind::UpdateRaftVoter(_) => ResponseKind::UpdateRaftVoter(
            m::UpdateRaftVoterResponse::default().with_error_code(code),
        ),
        RequestKind::InitializeShareGroupState(request) => {
            ResponseKind::InitializeShareGroupState(initialize_share_group_state(request, code))
        }
        RequestKind::ReadShareGroupState(request) => {
            ResponseKind::ReadShareGroupState(read_share_group_state(request, code))
        }
        RequestKind::WriteShareGroupState(request) => {
            ResponseKind::WriteShareGroupState(write_share_group_state(request, code))
        }
        RequestKind::DeleteShareGroupState(request) => {
            ResponseKind::DeleteShareGroupState(delete_share_group_state(request, code))
        }
        RequestKind::ReadShareGroupStateSummary(request) => {
            ResponseKind::ReadShareGroupStateSummary(read_share_group_state_summary(request, code))
        }
        RequestKind::DescribeShareGroupOffsets(request) => {
            ResponseKind::DescribeShareGroupOffsets(describe_share_group_offsets(request, code))
        }
        RequestKind::AlterShareGroupOffsets(request) => {
            ResponseKind::AlterShareGroupOffsets(alter_share_group_offsets(request, code))
        }
        RequestKind::DeleteShareGroupOffsets(_) => ResponseKind::DeleteShareGroupOffsets(
            m::DeleteShareGroupOffsetsResponse::default().with_error_code(code),
        ),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(response)
}

/// The error response for a request whose body could not be decoded, knowing only its API key
/// and version: the response with `error` at the top level, where the response has a top-level
/// error code at `version`; `None` where it has none (the caller then closes the connection, as
/// Kafka does for a request it cannot parse) or where `version` can't be encoded.
pub fn error_response_for_prefix(
    api_key: ApiKey,
    version: i16,
    error: ErrorCode,
) -> Option<ResponseKind> {
    if !has_top_level_error(api_key, version) {
        return None;
    }
    error_response(&empty_request(api_key), version, error)
}

/// Whether the response of `api_key` at `version` has a top-level error code.
pub fn has_top_level_error(api_key: ApiKey, version: i16) -> bool {
    match api_key {
        ApiKey::Fetch => version >= 7,
        ApiKey::Metadata => version >= 13,
        ApiKey::OffsetFetch => (2..=7).contains(&version),
        ApiKey::FindCoordinator => version <= 3,
        ApiKey::AddPartitionsToTxn => version >= 4,
        ApiKey::DescribeLogDirs => version >= 3,
        ApiKey::ElectLeaders => version >= 1,
        ApiKey::Produce
        | ApiKey::ListOffsets
        | ApiKey::OffsetCommit
        | ApiKey::DescribeGroups
        | ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::DeleteRecords
        | ApiKey::OffsetForLeaderEpoch
        | ApiKey::WriteTxnMarkers
        | ApiKey::TxnOffsetCommit
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::DescribeConfigs
        | ApiKey::AlterConfigs
        | ApiKey::AlterReplicaLogDirs
        | ApiKey::CreatePartitions
        | ApiKey::DeleteGroups
        | ApiKey::IncrementalAlterConfigs
        | ApiKey::AlterClientQuotas
        | ApiKey::AlterUserScramCredentials
        | ApiKey::DescribeProducers
        | ApiKey::DescribeTransactions
        | ApiKey::ConsumerGroupDescribe
        | ApiKey::DescribeTopicPartitions
        | ApiKey::ShareGroupDescribe
        | ApiKey::InitializeShareGroupState
        | ApiKey::ReadShareGroupState
        | ApiKey::WriteShareGroupState
        | ApiKey::DeleteShareGroupState
        | ApiKey::ReadShareGroupStateSummary
        | ApiKey::DescribeShareGroupOffsets => false,
        ApiKey::JoinGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::ListGroups
        | ApiKey::SaslHandshake
        | ApiKey::ApiVersions
        | ApiKey::InitProducerId
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::DescribeAcls
        | ApiKey::SaslAuthenticate
        | ApiKey::CreateDelegationToken
        | ApiKey::RenewDelegationToken
        | ApiKey::ExpireDelegationToken
        | ApiKey::DescribeDelegationToken
        | ApiKey::AlterPartitionReassignments
        | ApiKey::ListPartitionReassignments
        | ApiKey::OffsetDelete
        | ApiKey::DescribeClientQuotas
        | ApiKey::DescribeUserScramCredentials
        | ApiKey::Vote
        | ApiKey::BeginQuorumEpoch
        | ApiKey::EndQuorumEpoch
        | ApiKey::DescribeQuorum
        | ApiKey::AlterPartition
        | ApiKey::UpdateFeatures
        | ApiKey::Envelope
        | ApiKey::FetchSnapshot
        | ApiKey::DescribeCluster
        | ApiKey::BrokerRegistration
        | ApiKey::BrokerHeartbeat
        | ApiKey::UnregisterBroker
        | ApiKey::ListTransactions
        | ApiKey::AllocateProducerIds
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ControllerRegistration
        | ApiKey::GetTelemetrySubscriptions
        | ApiKey::PushTelemetry
        | ApiKey::AssignReplicasToDirs
        | ApiKey::ListConfigResources
        | ApiKey::ShareGroupHeartbeat
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge
        | ApiKey::AddRaftVoter
        | ApiKey::RemoveRaftVoter
        | ApiKey::UpdateRaftVoter
        | ApiKey::AlterShareGroupOffsets
        | ApiKey::DeleteShareGroupOffsets => true,
    }
}

fn produce(request: &m::ProduceRequest, code: i16) -> m::ProduceResponse {
    use m::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|partition| {
                            PartitionProduceResponse::default()
                                .with_index(partition.index)
                                .with_error_code(code)
                                .with_base_offset(UNKNOWN)
                                .with_log_append_time_ms(UNKNOWN)
                                .with_log_start_offset(UNKNOWN)
                        })
                        .collect(),
                )
        })
        .collect();
    m::ProduceResponse::default().with_responses(responses)
}

fn fetch(request: &m::FetchRequest, version: i16, code: i16) -> m::FetchResponse {
    use m::fetch_response::{FetchableTopicResponse, PartitionData};
    let mut response = m::FetchResponse::default().with_error_code(code);
    if version >= 7 {
        response.session_id = request.session_id;
    }
    // From v13 the client reads the top-level error and Kafka returns no partitions.
    if version < 13 {
        response.responses = request
            .topics
            .iter()
            .map(|topic| {
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                PartitionData::default()
                                    .with_partition_index(partition.partition)
                                    .with_error_code(code)
                                    .with_high_watermark(UNKNOWN)
                            })
                            .collect(),
                    )
            })
            .collect();
    }
    response
}

fn list_offsets(request: &m::ListOffsetsRequest, code: i16) -> m::ListOffsetsResponse {
    use m::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(partition.partition_index)
                                .with_error_code(code)
                                .with_offset(UNKNOWN)
                                .with_timestamp(UNKNOWN)
                                .with_leader_epoch(UNKNOWN_EPOCH)
                        })
                        .collect(),
                )
        })
        .collect();
    m::ListOffsetsResponse::default().with_topics(topics)
}

fn metadata(request: &m::MetadataRequest, code: i16) -> m::MetadataResponse {
    use m::metadata_response::MetadataResponseTopic;
    let topics = request
        .topics
        .iter()
        .flatten()
        .map(|topic| {
            // The response's name is not nullable before v12: a by-id request gets "".
            MetadataResponseTopic::default()
                .with_name(Some(topic.name.clone().unwrap_or_default()))
                .with_topic_id(topic.topic_id)
                .with_error_code(code)
                .with_is_internal(false)
        })
        .collect();
    m::MetadataResponse::default()
        .with_error_code(code)
        .with_topics(topics)
}

fn offset_commit(request: &m::OffsetCommitRequest, code: i16) -> m::OffsetCommitResponse {
    use m::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(partition.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    m::OffsetCommitResponse::default().with_topics(topics)
}

fn offset_fetch(
    request: &m::OffsetFetchRequest,
    version: i16,
    code: i16,
) -> m::OffsetFetchResponse {
    use m::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    match version {
        // v1 has no group-level error: every requested partition carries it.
        ..=1 => m::OffsetFetchResponse::default().with_topics(
            request
                .topics
                .iter()
                .flatten()
                .map(|topic| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partition_indexes
                                .iter()
                                .map(|&partition_index| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(partition_index)
                                        .with_committed_offset(UNKNOWN)
                                        .with_committed_leader_epoch(UNKNOWN_EPOCH)
                                        .with_metadata(Some(StrBytes::default()))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        2..=7 => m::OffsetFetchResponse::default().with_error_code(code),
        _ => m::OffsetFetchResponse::default().with_groups(
            request
                .groups
                .iter()
                .map(|group| {
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id.clone())
                        .with_error_code(code)
                })
                .collect(),
        ),
    }
}

fn find_coordinator(
    request: &m::FindCoordinatorRequest,
    version: i16,
    code: i16,
) -> m::FindCoordinatorResponse {
    use m::find_coordinator_response::Coordinator;
    // Kafka's `Node.noNode()`: id -1, host "", port -1.
    if version <= 3 {
        m::FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id((-1).into())
            .with_host(StrBytes::default())
            .with_port(-1)
    } else {
        m::FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id((-1).into())
                        .with_host(StrBytes::default())
                        .with_port(-1)
                        .with_error_code(code)
                })
                .collect(),
        )
    }
}

fn join_group(version: i16, code: i16) -> m::JoinGroupResponse {
    // The protocol name is nullable from v7; before that Kafka sends "".
    let protocol_name = if version >= 7 {
        None
    } else {
        Some(StrBytes::default())
    };
    m::JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::default())
        .with_member_id(StrBytes::default())
}

fn describe_groups(request: &m::DescribeGroupsRequest, code: i16) -> m::DescribeGroupsResponse {
    use m::describe_groups_response::DescribedGroup;
    m::DescribeGroupsResponse::default().with_groups(
        request
            .groups
            .iter()
            .map(|group_id| {
                DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(code)
                    .with_error_message(None)
            })
            .collect(),
    )
}

fn api_versions(error: ErrorCode) -> m::ApiVersionsResponse {
    use m::api_versions_response::ApiVersion;
    let response = m::ApiVersionsResponse::default().with_error_code(error.code());
    // KIP-511: an UNSUPPORTED_VERSION answer says which ApiVersions versions to retry with.
    if error == ErrorCode::UnsupportedVersion {
        response.with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(API_VERSIONS_MAX),
        ])
    } else {
        response
    }
}

fn create_topics(request: &m::CreateTopicsRequest, code: i16) -> m::CreateTopicsResponse {
    use m::create_topics_response::CreatableTopicResult;
    m::CreateTopicsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                CreatableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(code)
                    .with_error_message(None)
            })
            .collect(),
    )
}

fn delete_topics(
    request: &m::DeleteTopicsRequest,
    version: i16,
    code: i16,
) -> m::DeleteTopicsResponse {
    use m::delete_topics_response::DeletableTopicResult;
    let responses = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| {
                DeletableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_error_code(code)
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| {
                DeletableTopicResult::default()
                    .with_name(Some(name.clone()))
                    .with_error_code(code)
            })
            .collect()
    };
    m::DeleteTopicsResponse::default().with_responses(responses)
}

fn delete_records(request: &m::DeleteRecordsRequest, code: i16) -> m::DeleteRecordsResponse {
    use m::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    m::DeleteRecordsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_low_watermark(UNKNOWN)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn offset_for_leader_epoch(
    request: &m::OffsetForLeaderEpochRequest,
    code: i16,
) -> m::OffsetForLeaderEpochResponse {
    use m::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    m::OffsetForLeaderEpochResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                EpochEndOffset::default()
                                    .with_partition(partition.partition)
                                    .with_error_code(code)
                                    .with_leader_epoch(UNKNOWN_EPOCH)
                                    .with_end_offset(UNKNOWN)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn add_partitions_to_txn(
    request: &m::AddPartitionsToTxnRequest,
    version: i16,
    code: i16,
) -> m::AddPartitionsToTxnResponse {
    use m::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    if version >= 4 {
        return m::AddPartitionsToTxnResponse::default().with_error_code(code);
    }
    m::AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        request
            .v3_and_below_topics
            .iter()
            .map(|topic| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(
                        topic
                            .partitions
                            .iter()
                            .map(|&partition_index| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(partition_index)
                                    .with_partition_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn write_txn_markers(request: &m::WriteTxnMarkersRequest, code: i16) -> m::WriteTxnMarkersResponse {
    use m::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    m::WriteTxnMarkersResponse::default().with_markers(
        request
            .markers
            .iter()
            .map(|marker| {
                WritableTxnMarkerResult::default()
                    .with_producer_id(marker.producer_id)
                    .with_topics(
                        marker
                            .topics
                            .iter()
                            .map(|topic| {
                                WritableTxnMarkerTopicResult::default()
                                    .with_name(topic.name.clone())
                                    .with_partitions(
                                        topic
                                            .partition_indexes
                                            .iter()
                                            .map(|&partition_index| {
                                                WritableTxnMarkerPartitionResult::default()
                                                    .with_partition_index(partition_index)
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn txn_offset_commit(request: &m::TxnOffsetCommitRequest, code: i16) -> m::TxnOffsetCommitResponse {
    use m::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    m::TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn create_acls(request: &m::CreateAclsRequest, code: i16) -> m::CreateAclsResponse {
    use m::create_acls_response::AclCreationResult;
    m::CreateAclsResponse::default().with_results(
        request
            .creations
            .iter()
            .map(|_| AclCreationResult::default().with_error_code(code))
            .collect(),
    )
}

fn delete_acls(request: &m::DeleteAclsRequest, code: i16) -> m::DeleteAclsResponse {
    use m::delete_acls_response::DeleteAclsFilterResult;
    m::DeleteAclsResponse::default().with_filter_results(
        request
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code))
            .collect(),
    )
}

fn describe_configs(request: &m::DescribeConfigsRequest, code: i16) -> m::DescribeConfigsResponse {
    use m::describe_configs_response::DescribeConfigsResult;
    m::DescribeConfigsResponse::default().with_results(
        request
            .resources
            .iter()
            .map(|resource| {
                DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn alter_configs(request: &m::AlterConfigsRequest, code: i16) -> m::AlterConfigsResponse {
    use m::alter_configs_response::AlterConfigsResourceResponse;
    m::AlterConfigsResponse::default().with_responses(
        request
            .resources
            .iter()
            .map(|resource| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn alter_replica_log_dirs(
    request: &m::AlterReplicaLogDirsRequest,
    code: i16,
) -> m::AlterReplicaLogDirsResponse {
    use m::alter_replica_log_dirs_response::{
        AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
    };
    m::AlterReplicaLogDirsResponse::default().with_results(
        request
            .dirs
            .iter()
            .flat_map(|dir| dir.topics.iter())
            .map(|topic| {
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|&partition_index| {
                                AlterReplicaLogDirPartitionResult::default()
                                    .with_partition_index(partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn create_partitions(
    request: &m::CreatePartitionsRequest,
    code: i16,
) -> m::CreatePartitionsResponse {
    use m::create_partitions_response::CreatePartitionsTopicResult;
    m::CreatePartitionsResponse::default().with_results(
        request
            .topics
            .iter()
            .map(|topic| {
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn create_delegation_token(version: i16, code: i16) -> m::CreateDelegationTokenResponse {
    // Kafka answers with the anonymous principal as owner (and, from v3, as requester).
    let principal_type = StrBytes::from_static_str("User");
    let principal_name = StrBytes::from_static_str("ANONYMOUS");
    let mut response = m::CreateDelegationTokenResponse::default()
        .with_error_code(code)
        .with_principal_type(principal_type.clone())
        .with_principal_name(principal_name.clone())
        .with_issue_timestamp_ms(UNKNOWN)
        .with_expiry_timestamp_ms(UNKNOWN)
        .with_max_timestamp_ms(UNKNOWN);
    if version >= 3 {
        response.token_requester_principal_type = principal_type;
        response.token_requester_principal_name = principal_name;
    }
    response
}

fn delete_groups(request: &m::DeleteGroupsRequest, code: i16) -> m::DeleteGroupsResponse {
    use m::delete_groups_response::DeletableGroupResult;
    m::DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .iter()
            .map(|group_id| {
                DeletableGroupResult::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn elect_leaders(
    request: &m::ElectLeadersRequest,
    version: i16,
    code: i16,
) -> m::ElectLeadersResponse {
    use m::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
    let mut response = m::ElectLeadersResponse::default().with_replica_election_results(
        request
            .topic_partitions
            .iter()
            .flatten()
            .map(|topic| {
                ReplicaElectionResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partition_result(
                        topic
                            .partitions
                            .iter()
                            .map(|&partition_id| {
                                PartitionResult::default()
                                    .with_partition_id(partition_id)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    if version >= 1 {
        response.error_code = code;
    }
    response
}

fn incremental_alter_configs(
    request: &m::IncrementalAlterConfigsRequest,
    code: i16,
) -> m::IncrementalAlterConfigsResponse {
    use m::incremental_alter_configs_response::AlterConfigsResourceResponse;
    m::IncrementalAlterConfigsResponse::default().with_responses(
        request
            .resources
            .iter()
            .map(|resource| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn alter_partition_reassignments(
    request: &m::AlterPartitionReassignmentsRequest,
    code: i16,
) -> m::AlterPartitionReassignmentsResponse {
    use m::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    m::AlterPartitionReassignmentsResponse::default()
        .with_error_code(code)
        .with_responses(
            request
                .topics
                .iter()
                .map(|topic| {
                    ReassignableTopicResponse::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|partition| {
                                    ReassignablePartitionResponse::default()
                                        .with_partition_index(partition.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn list_partition_reassignments(
    request: &m::ListPartitionReassignmentsRequest,
    code: i16,
) -> m::ListPartitionReassignmentsResponse {
    use m::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    // The partitions of this response have no error field: only the top level carries it.
    m::ListPartitionReassignmentsResponse::default()
        .with_error_code(code)
        .with_topics(
            request
                .topics
                .iter()
                .flatten()
                .map(|topic| {
                    OngoingTopicReassignment::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partition_indexes
                                .iter()
                                .map(|&partition_index| {
                                    OngoingPartitionReassignment::default()
                                        .with_partition_index(partition_index)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn alter_client_quotas(
    request: &m::AlterClientQuotasRequest,
    code: i16,
) -> m::AlterClientQuotasResponse {
    use m::alter_client_quotas_response::{EntityData, EntryData};
    m::AlterClientQuotasResponse::default().with_entries(
        request
            .entries
            .iter()
            .map(|entry| {
                EntryData::default().with_error_code(code).with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|entity| {
                            EntityData::default()
                                .with_entity_type(entity.entity_type.clone())
                                .with_entity_name(entity.entity_name.clone())
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

fn describe_user_scram_credentials(
    request: &m::DescribeUserScramCredentialsRequest,
    code: i16,
) -> m::DescribeUserScramCredentialsResponse {
    use m::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
    m::DescribeUserScramCredentialsResponse::default()
        .with_error_code(code)
        .with_results(
            request
                .users
                .iter()
                .flatten()
                .map(|user| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(user.name.clone())
                        .with_error_code(code)
                })
                .collect(),
        )
}

fn alter_user_scram_credentials(
    request: &m::AlterUserScramCredentialsRequest,
    code: i16,
) -> m::AlterUserScramCredentialsResponse {
    use m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
    // One result per user, whether deleted or upserted, sorted by name (as Kafka does).
    let mut users: Vec<&StrBytes> = request
        .deletions
        .iter()
        .map(|deletion| &deletion.name)
        .chain(request.upsertions.iter().map(|upsertion| &upsertion.name))
        .collect();
    users.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    users.dedup();
    m::AlterUserScramCredentialsResponse::default().with_results(
        users
            .into_iter()
            .map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(user.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn describe_producers(
    request: &m::DescribeProducersRequest,
    code: i16,
) -> m::DescribeProducersResponse {
    use m::describe_producers_response::{PartitionResponse, TopicResponse};
    m::DescribeProducersResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                TopicResponse::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partition_indexes
                            .iter()
                            .map(|&partition_index| {
                                PartitionResponse::default()
                                    .with_partition_index(partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn describe_transactions(
    request: &m::DescribeTransactionsRequest,
    code: i16,
) -> m::DescribeTransactionsResponse {
    use m::describe_transactions_response::TransactionState;
    m::DescribeTransactionsResponse::default().with_transaction_states(
        request
            .transactional_ids
            .iter()
            .map(|transactional_id| {
                TransactionState::default()
                    .with_transactional_id(transactional_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn consumer_group_describe(
    request: &m::ConsumerGroupDescribeRequest,
    code: i16,
) -> m::ConsumerGroupDescribeResponse {
    use m::consumer_group_describe_response::DescribedGroup;
    m::ConsumerGroupDescribeResponse::default().with_groups(
        request
            .group_ids
            .iter()
            .map(|group_id| {
                DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn describe_topic_partitions(
    request: &m::DescribeTopicPartitionsRequest,
    code: i16,
) -> m::DescribeTopicPartitionsResponse {
    use m::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
    m::DescribeTopicPartitionsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic.name.clone()))
                    .with_error_code(code)
                    .with_is_internal(false)
            })
            .collect(),
    )
}

fn share_group_describe(
    request: &m::ShareGroupDescribeRequest,
    code: i16,
) -> m::ShareGroupDescribeResponse {
    use m::share_group_describe_response::DescribedGroup;
    m::ShareGroupDescribeResponse::default().with_groups(
        request
            .group_ids
            .iter()
            .map(|group_id| {
                DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

/// The share-group state APIs share one shape: results per topic id, per partition.
macro_rules! share_group_state_response {
    ($name:ident, $request:ty, $response:ident, $module:ident, $result:ident) => {
        fn $name(request: &$request, code: i16) -> m::$response {
            use m::$module::{PartitionResult, $result};
            m::$response::default().with_results(
                request
                    .topics
                    .iter()
                    .map(|topic| {
                        $result::default()
                            .with_topic_id(topic.topic_id)
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|partition| {
                                        PartitionResult::default()
                                            .with_partition(partition.partition)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
    };
}

share_group_state_response!(
    initialize_share_group_state,
    m::InitializeShareGroupStateRequest,
    InitializeShareGroupStateResponse,
    initialize_share_group_state_response,
    InitializeStateResult
);
share_group_state_response!(
    read_share_group_state,
    m::ReadShareGroupStateRequest,
    ReadShareGroupStateResponse,
    read_share_group_state_response,
    ReadStateResult
);
share_group_state_response!(
    write_share_group_state,
    m::WriteShareGroupStateRequest,
    WriteShareGroupStateResponse,
    write_share_group_state_response,
    WriteStateResult
);
share_group_state_response!(
    delete_share_group_state,
    m::DeleteShareGroupStateRequest,
    DeleteShareGroupStateResponse,
    delete_share_group_state_response,
    DeleteStateResult
);
share_group_state_response!(
    read_share_group_state_summary,
    m::ReadShareGroupStateSummaryRequest,
    ReadShareGroupStateSummaryResponse,
    read_share_group_state_summary_response,
    ReadStateSummaryResult
);

fn describe_share_group_offsets(
    request: &m::DescribeShareGroupOffsetsRequest,
    code: i16,
) -> m::DescribeShareGroupOffsetsResponse {
    use m::describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup;
    m::DescribeShareGroupOffsetsResponse::default().with_groups(
        request
            .groups
            .iter()
            .map(|group| {
                DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn alter_share_group_offsets(
    request: &m::AlterShareGroupOffsetsRequest,
    code: i16,
) -> m::AlterShareGroupOffsetsResponse {
    use m::alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
    };
    m::AlterShareGroupOffsetsResponse::default()
        .with_error_code(code)
        .with_responses(
            request
                .topics
                .iter()
                .map(|topic| {
                    AlterShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(topic.topic_name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|partition| {
                                    AlterShareGroupOffsetsResponsePartition::default()
                                        .with_partition_index(partition.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
