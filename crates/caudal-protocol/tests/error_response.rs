//! Error responses for every API, table-driven: for each API and every version the codec knows,
//! a request naming entities goes over the wire (where the request codec has that version), gets
//! an error response, and that response is encoded and decoded back. The decoded response must
//! carry the error at the top level exactly where the response has one, and on exactly the
//! entities Kafka lists, with the names, ids and indexes the request used.

use std::collections::BTreeSet;

use bytes::BytesMut;

use caudal_protocol::ErrorCode;
use caudal_protocol::error_response::{
    error_response, error_response_for_prefix, has_top_level_error, request_api_key,
};
use caudal_protocol::kafka_protocol::messages::{
    self as m, ApiKey, GroupId, ProducerId, RequestHeader, RequestKind, ResponseKind, TopicName,
    TransactionalId,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use caudal_protocol::request::decode_request;
use caudal_protocol::response::{decode_response, encode_request, encode_response};
use uuid::Uuid;

const ORDERS_ID: Uuid = Uuid::from_u128(0x0a0a);
const PAYMENTS_ID: Uuid = Uuid::from_u128(0x0b0b);

fn s(value: &'static str) -> StrBytes {
    StrBytes::from_static_str(value)
}

fn topic(name: &'static str) -> TopicName {
    TopicName(s(name))
}

fn group(name: &'static str) -> GroupId {
    GroupId(s(name))
}

/// A topic is named by its name, or by its id where the version carries no name.
fn topic_key(name: &str, id: Uuid) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_owned()
    }
}

fn partition_key(topic: &str, id: Uuid, partition: i32) -> String {
    format!("{}/{partition}", topic_key(topic, id))
}

fn keys(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// What a decoded response says: its top-level error code (`None` where the response type has
/// none at any version) and each entity's key and error code, in response order.
struct Seen {
    top: Option<i16>,
    entities: Vec<(String, i16)>,
}

impl Seen {
    fn top(code: i16) -> Self {
        Self {
            top: Some(code),
            entities: Vec::new(),
        }
    }

    fn entities(entities: Vec<(String, i16)>) -> Self {
        Self {
            top: None,
            entities,
        }
    }

    fn both(code: i16, entities: Vec<(String, i16)>) -> Self {
        Self {
            top: Some(code),
            entities,
        }
    }
}

/// What the error response must carry at a version: the error at the top level or not, and the
/// keys of the entities (in request order) that must carry it.
struct Expect {
    top: bool,
    entities: Vec<String>,
}

impl Expect {
    fn top_only() -> Self {
        Self {
            top: true,
            entities: Vec::new(),
        }
    }

    fn entities(entities: Vec<String>) -> Self {
        Self {
            top: false,
            entities,
        }
    }
}

struct Case {
    api_key: ApiKey,
    request: fn(i16) -> RequestKind,
    seen: fn(&ResponseKind) -> Seen,
    expect: fn(i16) -> Expect,
}

fn unexpected(response: &ResponseKind) -> Seen {
    panic!("unexpected response kind {response:?}")
}

/// An API whose error response is its top-level error code alone, at every version.
macro_rules! top_only {
    ($name:ident) => {
        Case {
            api_key: ApiKey::$name,
            request: |_| RequestKind::$name(Default::default()),
            seen: |response| match response {
                ResponseKind::$name(response) => Seen::top(response.error_code),
                other => unexpected(other),
            },
            expect: |_| Expect::top_only(),
        }
    };
}

/// The share-group state APIs: results per topic id, per partition.
macro_rules! share_group_state_case {
    ($name:ident, $request:ident, $module:ident, $topic:ident) => {
        Case {
            api_key: ApiKey::$name,
            request: |_| {
                use m::$module::{$topic, PartitionData};
                RequestKind::$name(
                    m::$request::default()
                        .with_group_id(s("sharers"))
                        .with_topics(vec![$topic::default().with_topic_id(ORDERS_ID).with_partitions(
                            vec![
                                PartitionData::default().with_partition(0),
                                PartitionData::default().with_partition(1),
                            ],
                        )]),
                )
            },
            seen: |response| match response {
                ResponseKind::$name(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key("", topic.topic_id, partition.partition),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(vec![format!("{ORDERS_ID}/0"), format!("{ORDERS_ID}/1")]),
        }
    };
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            api_key: ApiKey::Produce,
            request: |version| {
                use m::produce_request::{PartitionProduceData, TopicProduceData};
                let topic_data = |name, id, partitions: &[i32]| {
                    let data = TopicProduceData::default().with_partition_data(
                        partitions
                            .iter()
                            .map(|&index| PartitionProduceData::default().with_index(index))
                            .collect(),
                    );
                    if version >= 13 {
                        data.with_topic_id(id)
                    } else {
                        data.with_name(topic(name))
                    }
                };
                RequestKind::Produce(
                    m::ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(1000)
                        .with_topic_data(vec![
                            topic_data("orders", ORDERS_ID, &[0, 3]),
                            topic_data("payments", PAYMENTS_ID, &[1]),
                        ]),
                )
            },
            seen: |response| match response {
                ResponseKind::Produce(response) => Seen::entities(
                    response
                        .responses
                        .iter()
                        .flat_map(|topic| {
                            topic.partition_responses.iter().map(|partition| {
                                (
                                    partition_key(&topic.name.0, topic.topic_id, partition.index),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| {
                Expect::entities(if version >= 13 {
                    vec![
                        format!("{ORDERS_ID}/0"),
                        format!("{ORDERS_ID}/3"),
                        format!("{PAYMENTS_ID}/1"),
                    ]
                } else {
                    keys(&["orders/0", "orders/3", "payments/1"])
                })
            },
        },
        Case {
            api_key: ApiKey::Fetch,
            request: |version| {
                use m::fetch_request::{FetchPartition, FetchTopic};
                let fetch_topic = FetchTopic::default().with_partitions(vec![
                    FetchPartition::default().with_partition(0),
                    FetchPartition::default().with_partition(1),
                ]);
                let fetch_topic = if version >= 13 {
                    fetch_topic.with_topic_id(ORDERS_ID)
                } else {
                    fetch_topic.with_topic(topic("orders"))
                };
                RequestKind::Fetch(
                    m::FetchRequest::default()
                        .with_max_wait_ms(500)
                        .with_topics(vec![fetch_topic]),
                )
            },
            seen: |response| match response {
                ResponseKind::Fetch(response) => Seen::both(
                    response.error_code,
                    response
                        .responses
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.topic.0,
                                        topic.topic_id,
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            // Kafka sends partitions only before v13, and a top-level error from v7.
            expect: |version| Expect {
                top: version >= 7,
                entities: if version < 13 {
                    keys(&["orders/0", "orders/1"])
                } else {
                    Vec::new()
                },
            },
        },
        Case {
            api_key: ApiKey::ListOffsets,
            request: |_| {
                use m::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
                RequestKind::ListOffsets(m::ListOffsetsRequest::default().with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic("orders"))
                        .with_partitions(vec![
                            ListOffsetsPartition::default().with_partition_index(0),
                            ListOffsetsPartition::default()
                                .with_partition_index(2)
                                .with_timestamp(-2),
                        ]),
                ]))
            },
            seen: |response| match response {
                ResponseKind::ListOffsets(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/2"])),
        },
        Case {
            api_key: ApiKey::Metadata,
            request: |version| {
                use m::metadata_request::MetadataRequestTopic;
                let mut topics =
                    vec![MetadataRequestTopic::default().with_name(Some(topic("orders")))];
                if version >= 12 {
                    topics.push(
                        MetadataRequestTopic::default()
                            .with_name(None)
                            .with_topic_id(PAYMENTS_ID),
                    );
                }
                RequestKind::Metadata(m::MetadataRequest::default().with_topics(Some(topics)))
            },
            seen: |response| match response {
                ResponseKind::Metadata(response) => Seen::both(
                    response.error_code,
                    response
                        .topics
                        .iter()
                        .map(|topic| {
                            let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
                            (topic_key(name, topic.topic_id), topic.error_code)
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| Expect {
                top: version >= 13,
                entities: if version >= 12 {
                    vec!["orders".to_owned(), PAYMENTS_ID.to_string()]
                } else {
                    keys(&["orders"])
                },
            },
        },
        Case {
            api_key: ApiKey::OffsetCommit,
            request: |version| {
                use m::offset_commit_request::{
                    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
                };
                let commit_topic = OffsetCommitRequestTopic::default().with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_partition_index(0),
                    OffsetCommitRequestPartition::default().with_partition_index(1),
                ]);
                let commit_topic = if version >= 10 {
                    commit_topic.with_topic_id(ORDERS_ID)
                } else {
                    commit_topic.with_name(topic("orders"))
                };
                RequestKind::OffsetCommit(
                    m::OffsetCommitRequest::default()
                        .with_group_id(group("readers"))
                        .with_topics(vec![commit_topic]),
                )
            },
            seen: |response| match response {
                ResponseKind::OffsetCommit(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        topic.topic_id,
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| {
                Expect::entities(if version >= 10 {
                    vec![format!("{ORDERS_ID}/0"), format!("{ORDERS_ID}/1")]
                } else {
                    keys(&["orders/0", "orders/1"])
                })
            },
        },
        Case {
            api_key: ApiKey::OffsetFetch,
            request: |version| {
                use m::offset_fetch_request::{
                    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
                };
                let request = if version >= 8 {
                    m::OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default()
                            .with_group_id(group("readers"))
                            .with_topics(Some(vec![
                                OffsetFetchRequestTopics::default()
                                    .with_name(topic("orders"))
                                    .with_partition_indexes(vec![0]),
                            ])),
                        OffsetFetchRequestGroup::default()
                            .with_group_id(group("auditors"))
                            .with_topics(None),
                    ])
                } else {
                    m::OffsetFetchRequest::default()
                        .with_group_id(group("readers"))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopic::default()
                                .with_name(topic("orders"))
                                .with_partition_indexes(vec![0, 1]),
                        ]))
                };
                RequestKind::OffsetFetch(request)
            },
            seen: |response| match response {
                ResponseKind::OffsetFetch(response) => {
                    let mut entities: Vec<(String, i16)> = response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect();
                    entities.extend(
                        response
                            .groups
                            .iter()
                            .map(|group| (group.group_id.0.to_string(), group.error_code)),
                    );
                    Seen::both(response.error_code, entities)
                }
                other => unexpected(other),
            },
            expect: |version| Expect {
                top: (2..=7).contains(&version),
                entities: match version {
                    ..=1 => keys(&["orders/0", "orders/1"]),
                    2..=7 => Vec::new(),
                    _ => keys(&["readers", "auditors"]),
                },
            },
        },
        Case {
            api_key: ApiKey::FindCoordinator,
            request: |version| {
                let request = if version >= 4 {
                    m::FindCoordinatorRequest::default()
                        .with_coordinator_keys(vec![s("readers"), s("auditors")])
                } else {
                    m::FindCoordinatorRequest::default().with_key(s("readers"))
                };
                RequestKind::FindCoordinator(request)
            },
            seen: |response| match response {
                ResponseKind::FindCoordinator(response) => Seen::both(
                    response.error_code,
                    response
                        .coordinators
                        .iter()
                        .map(|coordinator| (coordinator.key.to_string(), coordinator.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| Expect {
                top: version <= 3,
                entities: if version >= 4 {
                    keys(&["readers", "auditors"])
                } else {
                    Vec::new()
                },
            },
        },
        top_only!(JoinGroup),
        top_only!(Heartbeat),
        top_only!(LeaveGroup),
        top_only!(SyncGroup),
        Case {
            api_key: ApiKey::DescribeGroups,
            request: |_| {
                RequestKind::DescribeGroups(
                    m::DescribeGroupsRequest::default()
                        .with_groups(vec![group("readers"), group("auditors")]),
                )
            },
            seen: |response| match response {
                ResponseKind::DescribeGroups(response) => Seen::entities(
                    response
                        .groups
                        .iter()
                        .map(|group| (group.group_id.0.to_string(), group.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["readers", "auditors"])),
        },
        top_only!(ListGroups),
        top_only!(SaslHandshake),
        top_only!(ApiVersions),
        Case {
            api_key: ApiKey::CreateTopics,
            request: |_| {
                use m::create_topics_request::CreatableTopic;
                RequestKind::CreateTopics(m::CreateTopicsRequest::default().with_topics(vec![
                    CreatableTopic::default()
                        .with_name(topic("orders"))
                        .with_num_partitions(3)
                        .with_replication_factor(1),
                    CreatableTopic::default().with_name(topic("payments")),
                ]))
            },
            seen: |response| match response {
                ResponseKind::CreateTopics(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .map(|topic| (topic.name.0.to_string(), topic.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders", "payments"])),
        },
        Case {
            api_key: ApiKey::DeleteTopics,
            request: |version| {
                use m::delete_topics_request::DeleteTopicState;
                let request = if version >= 6 {
                    m::DeleteTopicsRequest::default().with_topics(vec![
                        DeleteTopicState::default().with_name(Some(topic("orders"))),
                        DeleteTopicState::default()
                            .with_name(None)
                            .with_topic_id(PAYMENTS_ID),
                    ])
                } else {
                    m::DeleteTopicsRequest::default()
                        .with_topic_names(vec![topic("orders"), topic("payments")])
                };
                RequestKind::DeleteTopics(request)
            },
            seen: |response| match response {
                ResponseKind::DeleteTopics(response) => Seen::entities(
                    response
                        .responses
                        .iter()
                        .map(|topic| {
                            let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
                            (topic_key(name, topic.topic_id), topic.error_code)
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| {
                Expect::entities(if version >= 6 {
                    vec!["orders".to_owned(), PAYMENTS_ID.to_string()]
                } else {
                    keys(&["orders", "payments"])
                })
            },
        },
        Case {
            api_key: ApiKey::DeleteRecords,
            request: |_| {
                use m::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
                RequestKind::DeleteRecords(m::DeleteRecordsRequest::default().with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(topic("orders"))
                        .with_partitions(vec![
                            DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(5),
                            DeleteRecordsPartition::default().with_partition_index(1),
                        ]),
                ]))
            },
            seen: |response| match response {
                ResponseKind::DeleteRecords(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/1"])),
        },
        top_only!(InitProducerId),
        Case {
            api_key: ApiKey::OffsetForLeaderEpoch,
            request: |_| {
                use m::offset_for_leader_epoch_request::{
                    OffsetForLeaderPartition, OffsetForLeaderTopic,
                };
                RequestKind::OffsetForLeaderEpoch(
                    m::OffsetForLeaderEpochRequest::default().with_topics(vec![
                        OffsetForLeaderTopic::default()
                            .with_topic(topic("orders"))
                            .with_partitions(vec![
                                OffsetForLeaderPartition::default().with_partition(0),
                                OffsetForLeaderPartition::default()
                                    .with_partition(4)
                                    .with_leader_epoch(3),
                            ]),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::OffsetForLeaderEpoch(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(&topic.topic.0, Uuid::nil(), partition.partition),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/4"])),
        },
        Case {
            api_key: ApiKey::AddPartitionsToTxn,
            request: |version| {
                use m::add_partitions_to_txn_request::{
                    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
                };
                let topics = vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic("orders"))
                        .with_partitions(vec![0, 1]),
                ];
                let request = if version >= 4 {
                    m::AddPartitionsToTxnRequest::default().with_transactions(vec![
                        AddPartitionsToTxnTransaction::default()
                            .with_transactional_id(TransactionalId(s("tx-1")))
                            .with_topics(topics),
                    ])
                } else {
                    m::AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(TransactionalId(s("tx-1")))
                        .with_v3_and_below_topics(topics)
                };
                RequestKind::AddPartitionsToTxn(request)
            },
            seen: |response| match response {
                ResponseKind::AddPartitionsToTxn(response) => Seen::both(
                    response.error_code,
                    response
                        .results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|topic| {
                            topic.results_by_partition.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.partition_error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| {
                if version >= 4 {
                    Expect::top_only()
                } else {
                    Expect::entities(keys(&["orders/0", "orders/1"]))
                }
            },
        },
        top_only!(AddOffsetsToTxn),
        top_only!(EndTxn),
        Case {
            api_key: ApiKey::WriteTxnMarkers,
            request: |_| {
                use m::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
                let marker = |producer_id, name, partitions: Vec<i32>| {
                    WritableTxnMarker::default()
                        .with_producer_id(ProducerId(producer_id))
                        .with_topics(vec![
                            WritableTxnMarkerTopic::default()
                                .with_name(topic(name))
                                .with_partition_indexes(partitions),
                        ])
                };
                RequestKind::WriteTxnMarkers(m::WriteTxnMarkersRequest::default().with_markers(
                    vec![
                        marker(7, "orders", vec![0, 1]),
                        marker(8, "payments", vec![2]),
                    ],
                ))
            },
            seen: |response| match response {
                ResponseKind::WriteTxnMarkers(response) => Seen::entities(
                    response
                        .markers
                        .iter()
                        .flat_map(|marker| {
                            marker.topics.iter().flat_map(move |topic| {
                                topic.partitions.iter().map(move |partition| {
                                    (
                                        format!(
                                            "{}:{}/{}",
                                            marker.producer_id.0,
                                            topic.name.0,
                                            partition.partition_index
                                        ),
                                        partition.error_code,
                                    )
                                })
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["7:orders/0", "7:orders/1", "8:payments/2"])),
        },
        Case {
            api_key: ApiKey::TxnOffsetCommit,
            request: |_| {
                use m::txn_offset_commit_request::{
                    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
                };
                RequestKind::TxnOffsetCommit(
                    m::TxnOffsetCommitRequest::default()
                        .with_transactional_id(TransactionalId(s("tx-1")))
                        .with_group_id(group("readers"))
                        .with_topics(vec![
                            TxnOffsetCommitRequestTopic::default()
                                .with_name(topic("orders"))
                                .with_partitions(vec![
                                    TxnOffsetCommitRequestPartition::default()
                                        .with_partition_index(0),
                                    TxnOffsetCommitRequestPartition::default()
                                        .with_partition_index(1),
                                ]),
                        ]),
                )
            },
            seen: |response| match response {
                ResponseKind::TxnOffsetCommit(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/1"])),
        },
        top_only!(DescribeAcls),
        Case {
            api_key: ApiKey::CreateAcls,
            request: |_| {
                use m::create_acls_request::AclCreation;
                let creation = |principal| {
                    AclCreation::default()
                        .with_resource_type(2)
                        .with_resource_name(s("orders"))
                        .with_resource_pattern_type(3)
                        .with_principal(s(principal))
                        .with_host(s("*"))
                        .with_operation(3)
                        .with_permission_type(3)
                };
                RequestKind::CreateAcls(
                    m::CreateAclsRequest::default()
                        .with_creations(vec![creation("User:alice"), creation("User:bob")]),
                )
            },
            seen: |response| match response {
                ResponseKind::CreateAcls(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .enumerate()
                        .map(|(index, result)| (index.to_string(), result.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["0", "1"])),
        },
        Case {
            api_key: ApiKey::DeleteAcls,
            request: |_| {
                use m::delete_acls_request::DeleteAclsFilter;
                RequestKind::DeleteAcls(m::DeleteAclsRequest::default().with_filters(vec![
                    DeleteAclsFilter::default().with_resource_type_filter(2),
                    DeleteAclsFilter::default().with_resource_type_filter(3),
                ]))
            },
            seen: |response| match response {
                ResponseKind::DeleteAcls(response) => Seen::entities(
                    response
                        .filter_results
                        .iter()
                        .enumerate()
                        .map(|(index, result)| (index.to_string(), result.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["0", "1"])),
        },
        Case {
            api_key: ApiKey::DescribeConfigs,
            request: |_| {
                use m::describe_configs_request::DescribeConfigsResource;
                RequestKind::DescribeConfigs(m::DescribeConfigsRequest::default().with_resources(
                    vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s("orders")),
                        DescribeConfigsResource::default()
                            .with_resource_type(4)
                            .with_resource_name(s("1")),
                    ],
                ))
            },
            seen: |response| match response {
                ResponseKind::DescribeConfigs(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .map(|result| {
                            (
                                format!("{}:{}", result.resource_type, result.resource_name),
                                result.error_code,
                            )
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["2:orders", "4:1"])),
        },
        Case {
            api_key: ApiKey::AlterConfigs,
            request: |_| {
                use m::alter_configs_request::AlterConfigsResource;
                RequestKind::AlterConfigs(m::AlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("orders")),
                    AlterConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("1")),
                ]))
            },
            seen: |response| match response {
                ResponseKind::AlterConfigs(response) => Seen::entities(
                    response
                        .responses
                        .iter()
                        .map(|result| {
                            (
                                format!("{}:{}", result.resource_type, result.resource_name),
                                result.error_code,
                            )
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["2:orders", "4:1"])),
        },
        Case {
            api_key: ApiKey::AlterReplicaLogDirs,
            request: |_| {
                use m::alter_replica_log_dirs_request::{
                    AlterReplicaLogDir, AlterReplicaLogDirTopic,
                };
                let dir = |path, name, partitions: Vec<i32>| {
                    AlterReplicaLogDir::default()
                        .with_path(s(path))
                        .with_topics(vec![
                            AlterReplicaLogDirTopic::default()
                                .with_name(topic(name))
                                .with_partitions(partitions),
                        ])
                };
                RequestKind::AlterReplicaLogDirs(
                    m::AlterReplicaLogDirsRequest::default().with_dirs(vec![
                        dir("/data/a", "orders", vec![0, 1]),
                        dir("/data/b", "payments", vec![2]),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::AlterReplicaLogDirs(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.topic_name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/1", "payments/2"])),
        },
        Case {
            api_key: ApiKey::DescribeLogDirs,
            request: |_| RequestKind::DescribeLogDirs(Default::default()),
            seen: |response| match response {
                ResponseKind::DescribeLogDirs(response) => Seen::top(response.error_code),
                other => unexpected(other),
            },
            expect: |version| Expect {
                top: version >= 3,
                entities: Vec::new(),
            },
        },
        top_only!(SaslAuthenticate),
        Case {
            api_key: ApiKey::CreatePartitions,
            request: |_| {
                use m::create_partitions_request::CreatePartitionsTopic;
                RequestKind::CreatePartitions(m::CreatePartitionsRequest::default().with_topics(
                    vec![
                        CreatePartitionsTopic::default()
                            .with_name(topic("orders"))
                            .with_count(6),
                        CreatePartitionsTopic::default()
                            .with_name(topic("payments"))
                            .with_count(2),
                    ],
                ))
            },
            seen: |response| match response {
                ResponseKind::CreatePartitions(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .map(|topic| (topic.name.0.to_string(), topic.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders", "payments"])),
        },
        top_only!(CreateDelegationToken),
        top_only!(RenewDelegationToken),
        top_only!(ExpireDelegationToken),
        top_only!(DescribeDelegationToken),
        Case {
            api_key: ApiKey::DeleteGroups,
            request: |_| {
                RequestKind::DeleteGroups(
                    m::DeleteGroupsRequest::default()
                        .with_groups_names(vec![group("readers"), group("auditors")]),
                )
            },
            seen: |response| match response {
                ResponseKind::DeleteGroups(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .map(|group| (group.group_id.0.to_string(), group.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["readers", "auditors"])),
        },
        Case {
            api_key: ApiKey::ElectLeaders,
            request: |_| {
                use m::elect_leaders_request::TopicPartitions;
                RequestKind::ElectLeaders(m::ElectLeadersRequest::default().with_topic_partitions(
                    Some(vec![
                        TopicPartitions::default()
                            .with_topic(topic("orders"))
                            .with_partitions(vec![0, 1]),
                    ]),
                ))
            },
            seen: |response| match response {
                ResponseKind::ElectLeaders(response) => Seen::both(
                    response.error_code,
                    response
                        .replica_election_results
                        .iter()
                        .flat_map(|topic| {
                            topic.partition_result.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.topic.0,
                                        Uuid::nil(),
                                        partition.partition_id,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |version| Expect {
                top: version >= 1,
                entities: keys(&["orders/0", "orders/1"]),
            },
        },
        Case {
            api_key: ApiKey::IncrementalAlterConfigs,
            request: |_| {
                use m::incremental_alter_configs_request::AlterConfigsResource;
                RequestKind::IncrementalAlterConfigs(
                    m::IncrementalAlterConfigsRequest::default().with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s("orders")),
                        AlterConfigsResource::default()
                            .with_resource_type(8)
                            .with_resource_name(s("1")),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::IncrementalAlterConfigs(response) => Seen::entities(
                    response
                        .responses
                        .iter()
                        .map(|result| {
                            (
                                format!("{}:{}", result.resource_type, result.resource_name),
                                result.error_code,
                            )
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["2:orders", "8:1"])),
        },
        Case {
            api_key: ApiKey::AlterPartitionReassignments,
            request: |_| {
                use m::alter_partition_reassignments_request::{
                    ReassignablePartition, ReassignableTopic,
                };
                RequestKind::AlterPartitionReassignments(
                    m::AlterPartitionReassignmentsRequest::default().with_topics(vec![
                        ReassignableTopic::default()
                            .with_name(topic("orders"))
                            .with_partitions(vec![
                                ReassignablePartition::default().with_partition_index(0),
                                ReassignablePartition::default().with_partition_index(1),
                            ]),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::AlterPartitionReassignments(response) => Seen::both(
                    response.error_code,
                    response
                        .responses
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect {
                top: true,
                entities: keys(&["orders/0", "orders/1"]),
            },
        },
        top_only!(ListPartitionReassignments),
        top_only!(OffsetDelete),
        top_only!(DescribeClientQuotas),
        Case {
            api_key: ApiKey::AlterClientQuotas,
            request: |_| {
                use m::alter_client_quotas_request::{EntityData, EntryData};
                let entry = |entity_type, entity_name| {
                    EntryData::default().with_entity(vec![
                        EntityData::default()
                            .with_entity_type(s(entity_type))
                            .with_entity_name(entity_name),
                    ])
                };
                RequestKind::AlterClientQuotas(m::AlterClientQuotasRequest::default().with_entries(
                    vec![entry("user", Some(s("alice"))), entry("client-id", None)],
                ))
            },
            seen: |response| match response {
                ResponseKind::AlterClientQuotas(response) => Seen::entities(
                    response
                        .entries
                        .iter()
                        .map(|entry| {
                            let entity: Vec<String> = entry
                                .entity
                                .iter()
                                .map(|entity| {
                                    format!(
                                        "{}={}",
                                        entity.entity_type,
                                        entity.entity_name.as_deref().unwrap_or("<default>")
                                    )
                                })
                                .collect();
                            (entity.join(","), entry.error_code)
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["user=alice", "client-id=<default>"])),
        },
        Case {
            api_key: ApiKey::DescribeUserScramCredentials,
            request: |_| {
                use m::describe_user_scram_credentials_request::UserName;
                RequestKind::DescribeUserScramCredentials(
                    m::DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                        UserName::default().with_name(s("alice")),
                        UserName::default().with_name(s("bob")),
                    ])),
                )
            },
            seen: |response| match response {
                ResponseKind::DescribeUserScramCredentials(response) => Seen::both(
                    response.error_code,
                    response
                        .results
                        .iter()
                        .map(|result| (result.user.to_string(), result.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect {
                top: true,
                entities: keys(&["alice", "bob"]),
            },
        },
        Case {
            api_key: ApiKey::AlterUserScramCredentials,
            request: |_| {
                use m::alter_user_scram_credentials_request::{
                    ScramCredentialDeletion, ScramCredentialUpsertion,
                };
                RequestKind::AlterUserScramCredentials(
                    m::AlterUserScramCredentialsRequest::default()
                        .with_deletions(vec![
                            ScramCredentialDeletion::default()
                                .with_name(s("carol"))
                                .with_mechanism(1),
                        ])
                        .with_upsertions(vec![
                            ScramCredentialUpsertion::default()
                                .with_name(s("bob"))
                                .with_mechanism(1),
                            ScramCredentialUpsertion::default()
                                .with_name(s("carol"))
                                .with_mechanism(2),
                        ]),
                )
            },
            seen: |response| match response {
                ResponseKind::AlterUserScramCredentials(response) => Seen::entities(
                    response
                        .results
                        .iter()
                        .map(|result| (result.user.to_string(), result.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["bob", "carol"])),
        },
        top_only!(Vote),
        top_only!(BeginQuorumEpoch),
        top_only!(EndQuorumEpoch),
        top_only!(DescribeQuorum),
        top_only!(AlterPartition),
        top_only!(UpdateFeatures),
        top_only!(Envelope),
        top_only!(FetchSnapshot),
        top_only!(DescribeCluster),
        Case {
            api_key: ApiKey::DescribeProducers,
            request: |_| {
                use m::describe_producers_request::TopicRequest;
                RequestKind::DescribeProducers(m::DescribeProducersRequest::default().with_topics(
                    vec![
                        TopicRequest::default()
                            .with_name(topic("orders"))
                            .with_partition_indexes(vec![0, 1]),
                    ],
                ))
            },
            seen: |response| match response {
                ResponseKind::DescribeProducers(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.name.0,
                                        Uuid::nil(),
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders/0", "orders/1"])),
        },
        top_only!(BrokerRegistration),
        top_only!(BrokerHeartbeat),
        top_only!(UnregisterBroker),
        Case {
            api_key: ApiKey::DescribeTransactions,
            request: |_| {
                RequestKind::DescribeTransactions(
                    m::DescribeTransactionsRequest::default().with_transactional_ids(vec![
                        TransactionalId(s("tx-1")),
                        TransactionalId(s("tx-2")),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::DescribeTransactions(response) => Seen::entities(
                    response
                        .transaction_states
                        .iter()
                        .map(|state| (state.transactional_id.0.to_string(), state.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["tx-1", "tx-2"])),
        },
        top_only!(ListTransactions),
        top_only!(AllocateProducerIds),
        top_only!(ConsumerGroupHeartbeat),
        Case {
            api_key: ApiKey::ConsumerGroupDescribe,
            request: |_| {
                RequestKind::ConsumerGroupDescribe(
                    m::ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![group("readers"), group("auditors")]),
                )
            },
            seen: |response| match response {
                ResponseKind::ConsumerGroupDescribe(response) => Seen::entities(
                    response
                        .groups
                        .iter()
                        .map(|group| (group.group_id.0.to_string(), group.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["readers", "auditors"])),
        },
        top_only!(ControllerRegistration),
        top_only!(GetTelemetrySubscriptions),
        top_only!(PushTelemetry),
        top_only!(AssignReplicasToDirs),
        top_only!(ListConfigResources),
        Case {
            api_key: ApiKey::DescribeTopicPartitions,
            request: |_| {
                use m::describe_topic_partitions_request::TopicRequest;
                RequestKind::DescribeTopicPartitions(
                    m::DescribeTopicPartitionsRequest::default().with_topics(vec![
                        TopicRequest::default().with_name(topic("orders")),
                        TopicRequest::default().with_name(topic("payments")),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::DescribeTopicPartitions(response) => Seen::entities(
                    response
                        .topics
                        .iter()
                        .map(|topic| {
                            let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
                            (topic_key(name, topic.topic_id), topic.error_code)
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["orders", "payments"])),
        },
        top_only!(ShareGroupHeartbeat),
        Case {
            api_key: ApiKey::ShareGroupDescribe,
            request: |_| {
                RequestKind::ShareGroupDescribe(
                    m::ShareGroupDescribeRequest::default()
                        .with_group_ids(vec![group("readers"), group("auditors")]),
                )
            },
            seen: |response| match response {
                ResponseKind::ShareGroupDescribe(response) => Seen::entities(
                    response
                        .groups
                        .iter()
                        .map(|group| (group.group_id.0.to_string(), group.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["readers", "auditors"])),
        },
        top_only!(ShareFetch),
        top_only!(ShareAcknowledge),
        top_only!(AddRaftVoter),
        top_only!(RemoveRaftVoter),
        top_only!(UpdateRaftVoter),
        share_group_state_case!(
            InitializeShareGroupState,
            InitializeShareGroupStateRequest,
            initialize_share_group_state_request,
            InitializeStateData
        ),
        share_group_state_case!(
            ReadShareGroupState,
            ReadShareGroupStateRequest,
            read_share_group_state_request,
            ReadStateData
        ),
        share_group_state_case!(
            WriteShareGroupState,
            WriteShareGroupStateRequest,
            write_share_group_state_request,
            WriteStateData
        ),
        share_group_state_case!(
            DeleteShareGroupState,
            DeleteShareGroupStateRequest,
            delete_share_group_state_request,
            DeleteStateData
        ),
        share_group_state_case!(
            ReadShareGroupStateSummary,
            ReadShareGroupStateSummaryRequest,
            read_share_group_state_summary_request,
            ReadStateSummaryData
        ),
        Case {
            api_key: ApiKey::DescribeShareGroupOffsets,
            request: |_| {
                use m::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
                RequestKind::DescribeShareGroupOffsets(
                    m::DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                        DescribeShareGroupOffsetsRequestGroup::default()
                            .with_group_id(group("readers")),
                        DescribeShareGroupOffsetsRequestGroup::default()
                            .with_group_id(group("auditors")),
                    ]),
                )
            },
            seen: |response| match response {
                ResponseKind::DescribeShareGroupOffsets(response) => Seen::entities(
                    response
                        .groups
                        .iter()
                        .map(|group| (group.group_id.0.to_string(), group.error_code))
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect::entities(keys(&["readers", "auditors"])),
        },
        Case {
            api_key: ApiKey::AlterShareGroupOffsets,
            request: |_| {
                use m::alter_share_group_offsets_request::{
                    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
                };
                RequestKind::AlterShareGroupOffsets(
                    m::AlterShareGroupOffsetsRequest::default()
                        .with_group_id(group("readers"))
                        .with_topics(vec![
                            AlterShareGroupOffsetsRequestTopic::default()
                                .with_topic_name(topic("orders"))
                                .with_partitions(vec![
                                    AlterShareGroupOffsetsRequestPartition::default()
                                        .with_partition_index(0),
                                    AlterShareGroupOffsetsRequestPartition::default()
                                        .with_partition_index(1),
                                ]),
                        ]),
                )
            },
            seen: |response| match response {
                ResponseKind::AlterShareGroupOffsets(response) => Seen::both(
                    response.error_code,
                    response
                        .responses
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(|partition| {
                                (
                                    partition_key(
                                        &topic.topic_name.0,
                                        topic.topic_id,
                                        partition.partition_index,
                                    ),
                                    partition.error_code,
                                )
                            })
                        })
                        .collect(),
                ),
                other => unexpected(other),
            },
            expect: |_| Expect {
                top: true,
                entities: keys(&["orders/0", "orders/1"]),
            },
        },
        top_only!(DeleteShareGroupOffsets),
    ]
}

/// Sends `request` through the request codec at `version`, as the broker would receive it. Where
/// the request codec has no such version (its table ends below the response's), the request is
/// used as built.
fn as_received(api_key: ApiKey, version: i16, request: RequestKind) -> RequestKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("error-response-test")));
    if let Err(error) = request.encode(&mut BytesMut::new(), version) {
        let reason = format!("{error:#}");
        assert!(
            reason.contains("version not supported"),
            "{api_key:?} v{version} request: {reason}"
        );
        return request;
    }
    let frame = encode_request(&header, &request)
        .unwrap_or_else(|error| panic!("{api_key:?} v{version} request: {error}"));
    let decoded = decode_request(frame.slice(4..))
        .unwrap_or_else(|error| panic!("{api_key:?} v{version} request: {error}"));
    assert_eq!(decoded.api_key, api_key);
    decoded.body
}

/// Encodes `response` at `version` and decodes it back, as a client would read it.
fn over_the_wire(api_key: ApiKey, version: i16, response: &ResponseKind) -> ResponseKind {
    let frame = encode_response(42, api_key, version, response)
        .unwrap_or_else(|error| panic!("{api_key:?} v{version} response: {error}"));
    let (header, decoded) = decode_response(api_key, version, frame.slice(4..))
        .unwrap_or_else(|error| panic!("{api_key:?} v{version} response: {error}"));
    assert_eq!(header.correlation_id, 42);
    decoded
}

fn check_case(case: &Case, error: ErrorCode) {
    let api_key = case.api_key;
    let code = error.code();
    let versions = api_key.valid_versions();
    for version in versions.min..=versions.max {
        let request = as_received(api_key, version, (case.request)(version));
        assert_eq!(request_api_key(&request), Some(api_key));
        let response = error_response(&request, version, error)
            .unwrap_or_else(|| panic!("{api_key:?} v{version}: no error response"));
        let seen = (case.seen)(&over_the_wire(api_key, version, &response));
        let expect = (case.expect)(version);

        assert_eq!(
            has_top_level_error(api_key, version),
            expect.top,
            "{api_key:?} v{version}: has_top_level_error disagrees with the table"
        );
        if expect.top {
            assert_eq!(
                seen.top,
                Some(code),
                "{api_key:?} v{version}: top-level error"
            );
        } else {
            assert!(
                matches!(seen.top, None | Some(0)),
                "{api_key:?} v{version}: top-level error {:?} where the response has none",
                seen.top
            );
        }
        let entity_keys: Vec<&str> = seen.entities.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            entity_keys, expect.entities,
            "{api_key:?} v{version}: entities"
        );
        for (key, entity_code) in &seen.entities {
            assert_eq!(*entity_code, code, "{api_key:?} v{version}: error on {key}");
        }
    }
}

#[test]
fn the_table_covers_every_api() {
    let covered: BTreeSet<i16> = cases().iter().map(|case| case.api_key as i16).collect();
    let known: BTreeSet<i16> = ApiKey::iter().map(|api_key| api_key as i16).collect();
    assert_eq!(covered, known);
    assert_eq!(
        cases().len(),
        known.len(),
        "an API appears twice in the table"
    );
}

#[test]
fn every_api_carries_the_error_at_every_version() {
    for case in cases() {
        check_case(&case, ErrorCode::ClusterAuthorizationFailed);
        check_case(&case, ErrorCode::UnsupportedVersion);
    }
}

#[test]
fn a_prefix_gets_a_top_level_error_where_the_response_has_one() {
    let error = ErrorCode::InvalidRequest;
    for case in cases() {
        let api_key = case.api_key;
        let versions = api_key.valid_versions();
        for version in versions.min..=versions.max {
            let response = error_response_for_prefix(api_key, version, error);
            assert_eq!(
                response.is_some(),
                has_top_level_error(api_key, version),
                "{api_key:?} v{version}"
            );
            if let Some(response) = response {
                let seen = (case.seen)(&over_the_wire(api_key, version, &response));
                assert_eq!(seen.top, Some(error.code()), "{api_key:?} v{version}");
                assert!(seen.entities.is_empty(), "{api_key:?} v{version}");
            }
        }
    }
}

#[test]
fn versions_outside_the_codec_get_no_response() {
    let error = ErrorCode::UnsupportedVersion;
    for api_key in ApiKey::iter() {
        let versions = api_key.valid_versions();
        assert!(error_response_for_prefix(api_key, versions.max + 1, error).is_none());
        assert!(error_response_for_prefix(api_key, -1, error).is_none());
    }
    let request = RequestKind::Metadata(m::MetadataRequest::default());
    assert!(error_response(&request, 14, error).is_none());
    assert!(error_response(&request, 12, error).is_some());
}

#[test]
fn unsupported_api_versions_names_the_versions_to_retry_with() {
    let request = RequestKind::ApiVersions(m::ApiVersionsRequest::default());
    let Some(ResponseKind::ApiVersions(response)) =
        error_response(&request, 0, ErrorCode::UnsupportedVersion)
    else {
        panic!("expected an ApiVersions response");
    };
    assert_eq!(response.error_code, ErrorCode::UnsupportedVersion.code());
    assert_eq!(response.api_keys.len(), 1);
    assert_eq!(response.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    assert_eq!(response.api_keys[0].min_version, 0);
    assert_eq!(
        response.api_keys[0].max_version,
        caudal_protocol::api::API_VERSIONS_MAX
    );

    let Some(ResponseKind::ApiVersions(response)) =
        error_response(&request, 3, ErrorCode::InvalidRequest)
    else {
        panic!("expected an ApiVersions response");
    };
    assert!(response.api_keys.is_empty());
}

#[test]
fn fetch_errors_keep_the_session_id_and_unknown_offsets() {
    use m::fetch_request::{FetchPartition, FetchTopic};
    let request = RequestKind::Fetch(
        m::FetchRequest::default()
            .with_session_id(77)
            .with_session_epoch(3)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![FetchPartition::default().with_partition(2)]),
            ]),
    );
    let response = error_response(&request, 12, ErrorCode::NotLeaderOrFollower).unwrap();
    let ResponseKind::Fetch(response) = over_the_wire(ApiKey::Fetch, 12, &response) else {
        panic!("expected a Fetch response");
    };
    assert_eq!(response.session_id, 77);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.partition_index, 2);
    assert_eq!(partition.high_watermark, -1);
}

#[test]
fn produce_errors_report_unknown_offsets() {
    use m::produce_request::{PartitionProduceData, TopicProduceData};
    let request = RequestKind::Produce(m::ProduceRequest::default().with_acks(0).with_topic_data(
        vec![
                TopicProduceData::default()
                    .with_name(topic("orders"))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(5)]),
            ],
    ));
    // acks=0 still gets a response here: whether to send it is the connection's decision.
    let response = error_response(&request, 9, ErrorCode::MessageTooLarge).unwrap();
    let ResponseKind::Produce(response) = over_the_wire(ApiKey::Produce, 9, &response) else {
        panic!("expected a Produce response");
    };
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.index, 5);
    assert_eq!(partition.base_offset, -1);
    assert_eq!(partition.log_append_time_ms, -1);
    assert_eq!(partition.log_start_offset, -1);
}
