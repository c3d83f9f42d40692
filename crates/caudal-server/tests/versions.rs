//! Every API the broker advertises answers at every version it advertises: the response encodes
//! (no field set that the version lacks) and decodes with the request's correlation id.

mod common;

use bytes::Bytes;
use caudal_protocol::{ApiKey, RequestKind, ResponseKind};
use caudal_server::handlers::SUPPORTED_APIS;
use common::{Client, batch, start_broker};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: caudal_server::alloc_guard::GuardedAllocator =
    caudal_server::alloc_guard::GuardedAllocator;

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

/// A typical request for `api_key` at `version`, naming topic `t` (id `topic_id`) where it
/// names topics; `unique` keeps create/delete requests independent across versions.
fn sample(
    api_key: ApiKey,
    version: i16,
    topic_id: Uuid,
    unique: &str,
    records: Bytes,
) -> RequestKind {
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("test"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                if version >= 10 {
                    MetadataRequestTopic::default()
                        .with_name(Some(name("t")))
                        .with_topic_id(Uuid::nil())
                } else {
                    MetadataRequestTopic::default().with_name(Some(name("t")))
                },
            ])))
        }
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    if version >= 13 {
                        TopicProduceData::default().with_topic_id(topic_id)
                    } else {
                        TopicProduceData::default().with_name(name("t"))
                    }
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records)),
                    ]),
                ]),
        ),
        ApiKey::Fetch => {
            let topic = if version >= 13 {
                FetchTopic::default().with_topic_id(topic_id)
            } else {
                FetchTopic::default().with_topic(name("t"))
            };
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(0)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_session_epoch(-1)
                    .with_topics(vec![topic.with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ])]),
            )
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(0),
                        ]),
                ]),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(name(unique))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics => {
            let request = DeleteTopicsRequest::default().with_timeout_ms(5000);
            RequestKind::DeleteTopics(if version >= 6 {
                request.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(name(unique))),
                ])
            } else {
                request.with_topic_names(vec![name(unique)])
            })
        }
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(name(unique))
                        .with_count(2)
                        .with_assignments(None),
                ]),
        ),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(version >= 1)
                .with_include_documentation(version >= 3)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_configuration_keys(None),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("1"))
                        .with_configuration_keys(None),
                ]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                        ]),
                ]),
        ),
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::default().with_key_type(0);
            RequestKind::FindCoordinator(if version >= 4 {
                request.with_coordinator_keys(vec![StrBytes::from_string(unique.to_string())])
            } else {
                request.with_key(StrBytes::from_string(unique.to_string()))
            })
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(StrBytes::from_static_str(""))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"subscription")),
                ]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())));
            RequestKind::LeaveGroup(if version >= 3 {
                request.with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_member_id(StrBytes::from_static_str("nobody")),
                ])
            } else {
                request.with_member_id(StrBytes::from_static_str("nobody"))
            })
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::from_static_str(""))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(2)
                                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => {
            let group = GroupId(StrBytes::from_string(unique.to_string()));
            RequestKind::OffsetFetch(if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group)
                        .with_topics(None),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0]),
                    ]))
            })
        }
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(unique.to_string()))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_string(unique.to_string()))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(unique.to_string())))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("86400000"))),
                    ]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("86400000"))),
                    ]),
            ]),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![0]),
            ])))
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ]),
                ]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(
            DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_endpoint_type(1),
        ),
        // Topic `t` has one replica, already its leader.
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_election_type(0)
                .with_timeout_ms(5000)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![0]),
                ])),
        ),
        // Cancelling where no reassignment is in progress.
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(None),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(None),
        ),
        other => panic!("no sample request for {other:?}; add one for the new API"),
    }
}

/// The first error in the response: top level, or on the topic/partition the sample named.
fn first_error(response: &ResponseKind) -> i16 {
    let first = |codes: Vec<i16>| codes.into_iter().find(|code| *code != 0).unwrap_or(0);
    match response {
        ResponseKind::ApiVersions(response) => response.error_code,
        ResponseKind::Fetch(response) => first(
            std::iter::once(response.error_code)
                .chain(
                    response
                        .responses
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
                .collect(),
        ),
        ResponseKind::Produce(response) => first(
            response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
                .collect(),
        ),
        ResponseKind::Metadata(response) => first(
            std::iter::once(response.error_code)
                .chain(response.topics.iter().map(|t| t.error_code))
                .collect(),
        ),
        ResponseKind::ListOffsets(response) => first(
            response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
        ),
        ResponseKind::CreateTopics(response) => {
            first(response.topics.iter().map(|t| t.error_code).collect())
        }
        ResponseKind::DeleteTopics(response) => {
            first(response.responses.iter().map(|t| t.error_code).collect())
        }
        ResponseKind::CreatePartitions(response) => {
            first(response.results.iter().map(|t| t.error_code).collect())
        }
        ResponseKind::DescribeConfigs(response) => {
            first(response.results.iter().map(|r| r.error_code).collect())
        }
        ResponseKind::InitProducerId(response) => response.error_code,
        ResponseKind::OffsetForLeaderEpoch(response) => first(
            response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
        ),
        ResponseKind::FindCoordinator(response) => first(
            std::iter::once(response.error_code)
                .chain(response.coordinators.iter().map(|c| c.error_code))
                .collect(),
        ),
        ResponseKind::JoinGroup(response) => response.error_code,
        ResponseKind::SyncGroup(response) => response.error_code,
        ResponseKind::Heartbeat(response) => response.error_code,
        ResponseKind::LeaveGroup(response) => first(
            std::iter::once(response.error_code)
                .chain(response.members.iter().map(|m| m.error_code))
                .collect(),
        ),
        ResponseKind::OffsetCommit(response) => first(
            response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
        ),
        ResponseKind::OffsetFetch(response) => first(
            std::iter::once(response.error_code)
                .chain(response.groups.iter().map(|g| g.error_code))
                .chain(
                    response
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
                .collect(),
        ),
        ResponseKind::DescribeGroups(response) => {
            first(response.groups.iter().map(|g| g.error_code).collect())
        }
        ResponseKind::ListGroups(response) => response.error_code,
        ResponseKind::DeleteGroups(response) => {
            first(response.results.iter().map(|r| r.error_code).collect())
        }
        ResponseKind::OffsetDelete(response) => first(
            std::iter::once(response.error_code)
                .chain(
                    response
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
                .collect(),
        ),
        ResponseKind::AlterConfigs(response) => {
            first(response.responses.iter().map(|r| r.error_code).collect())
        }
        ResponseKind::IncrementalAlterConfigs(response) => {
            first(response.responses.iter().map(|r| r.error_code).collect())
        }
        ResponseKind::DescribeLogDirs(response) => first(
            std::iter::once(response.error_code)
                .chain(response.results.iter().map(|r| r.error_code))
                .collect(),
        ),
        ResponseKind::DeleteRecords(response) => first(
            response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
        ),
        ResponseKind::DescribeCluster(response) => response.error_code,
        ResponseKind::ElectLeaders(response) => first(
            std::iter::once(response.error_code)
                .chain(
                    response
                        .replica_election_results
                        .iter()
                        .flat_map(|t| t.partition_result.iter().map(|p| p.error_code)),
                )
                .collect(),
        ),
        ResponseKind::AlterPartitionReassignments(response) => first(
            std::iter::once(response.error_code)
                .chain(
                    response
                        .responses
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
                .collect(),
        ),
        ResponseKind::ListPartitionReassignments(response) => {
            assert!(response.topics.is_empty(), "no reassignment is in progress");
            response.error_code
        }
        other => panic!("no error check for {other:?}"),
    }
}

/// The error the sample request must get. Group samples name a group that does not exist (or a
/// member that is not in it), so most group APIs answer with the error Kafka gives for that.
fn expected_error(api_key: ApiKey, version: i16) -> i16 {
    const MEMBER_ID_REQUIRED: i16 = 79;
    const UNKNOWN_MEMBER_ID: i16 = 25;
    const GROUP_ID_NOT_FOUND: i16 = 69;
    const ELECTION_NOT_NEEDED: i16 = 84;
    const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    match api_key {
        ApiKey::JoinGroup if version >= 4 => MEMBER_ID_REQUIRED,
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => UNKNOWN_MEMBER_ID,
        ApiKey::DeleteGroups | ApiKey::OffsetDelete => GROUP_ID_NOT_FOUND,
        ApiKey::ElectLeaders => ELECTION_NOT_NEEDED,
        ApiKey::AlterPartitionReassignments => NO_REASSIGNMENT_IN_PROGRESS,
        _ => 0,
    }
}

#[tokio::test]
async fn every_advertised_api_answers_at_every_advertised_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(
        dir.path(),
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "3"),
        ],
    )
    .await;
    let mut client = Client::connect(broker.local_addr).await;
    let create = sample(ApiKey::CreateTopics, 7, Uuid::nil(), "t", Bytes::new());
    let ResponseKind::CreateTopics(created) = client.call(ApiKey::CreateTopics, 7, create).await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let records = batch(3, Compression::None, None);
    client
        .call(
            ApiKey::Produce,
            9,
            sample(ApiKey::Produce, 9, topic_id, "", records.clone()),
        )
        .await;
    // Clients find the coordinator first; that creates __consumer_offsets.
    let find = sample(ApiKey::FindCoordinator, 3, topic_id, "g", Bytes::new());
    client.call(ApiKey::FindCoordinator, 3, find).await;

    let mut checked = 0;
    for range in SUPPORTED_APIS {
        for version in range.min..=range.max {
            let unique = format!("v-{}-{version}", range.api_key as i16);
            if matches!(
                range.api_key,
                ApiKey::DeleteTopics | ApiKey::CreatePartitions
            ) {
                let create = sample(ApiKey::CreateTopics, 7, Uuid::nil(), &unique, Bytes::new());
                client.call(ApiKey::CreateTopics, 7, create).await;
            }
            let request = sample(range.api_key, version, topic_id, &unique, records.clone());
            let response = client.call(range.api_key, version, request).await;
            assert_eq!(
                first_error(&response),
                expected_error(range.api_key, version),
                "{:?} v{version} answered with an unexpected error",
                range.api_key
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} API versions checked");
    broker.shutdown().await.unwrap();
}
