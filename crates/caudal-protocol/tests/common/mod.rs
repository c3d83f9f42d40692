//! Representative requests and responses for the APIs every client sends first (ApiVersions,
//! Metadata, Produce, Fetch), one per version, with every field the version carries set to
//! something other than its default. Shared by the golden round trips and the no-panic tests.

#![allow(dead_code)]

use bytes::Bytes;
use caudal_model::batch::build_batch;
use caudal_model::{Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs};
use caudal_protocol::kafka_protocol::messages::{
    self as m, ApiKey, BrokerId, RequestKind, ResponseKind, TopicName, TransactionalId,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Builds a representative message for a version.
type RequestBuilder = fn(i16) -> RequestKind;
type ResponseBuilder = fn(i16) -> ResponseKind;

pub const ORDERS_ID: Uuid = Uuid::from_u128(0x6f72_6465_7273);
pub const PAYMENTS_ID: Uuid = Uuid::from_u128(0x7061_796d_656e_7473);

pub fn s(value: &'static str) -> StrBytes {
    StrBytes::from_static_str(value)
}

pub fn topic(name: &'static str) -> TopicName {
    TopicName(s(name))
}

/// A valid v2 record batch of three records.
pub fn record_batch() -> Bytes {
    Bytes::from(build_batch(
        Offset(0),
        0,
        2,
        TimestampMs(1_700_000_000_000),
        TimestampMs(1_700_000_000_002),
        ProducerId(-1),
        ProducerEpoch(-1),
        Sequence(-1),
        3,
        &[0x10; 24],
    ))
}

/// The versions each representative family covers: every version the codec knows.
pub fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let versions = api_key.valid_versions();
    versions.min..=versions.max
}

pub fn api_versions_request(version: i16) -> RequestKind {
    let mut request = m::ApiVersionsRequest::default();
    if version >= 3 {
        request.client_software_name = s("caudal-test");
        request.client_software_version = s("0.1.0");
    }
    RequestKind::ApiVersions(request)
}

pub fn metadata_request(version: i16) -> RequestKind {
    use m::metadata_request::MetadataRequestTopic;
    let by_name = |name| MetadataRequestTopic::default().with_name(Some(topic(name)));
    let topics = if version >= 12 {
        vec![
            by_name("orders"),
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(PAYMENTS_ID),
        ]
    } else {
        vec![by_name("orders"), by_name("payments")]
    };
    let mut request = m::MetadataRequest::default().with_topics(Some(topics));
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    if (8..=10).contains(&version) {
        request.include_cluster_authorized_operations = true;
    }
    if version >= 8 {
        request.include_topic_authorized_operations = true;
    }
    RequestKind::Metadata(request)
}

pub fn produce_request(version: i16) -> RequestKind {
    use m::produce_request::{PartitionProduceData, TopicProduceData};
    let topic_data = |name, id| {
        let data = TopicProduceData::default().with_partition_data(vec![
            PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch())),
            PartitionProduceData::default()
                .with_index(3)
                .with_records(Some(record_batch())),
        ]);
        if version >= 13 {
            data.with_topic_id(id)
        } else {
            data.with_name(topic(name))
        }
    };
    RequestKind::Produce(
        m::ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx-1"))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic_data("orders", ORDERS_ID),
                topic_data("payments", PAYMENTS_ID),
            ]),
    )
}

pub fn fetch_request(version: i16) -> RequestKind {
    use m::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic, ReplicaState};
    let mut partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(100)
        .with_partition_max_bytes(1 << 20);
    if version >= 5 {
        partition.log_start_offset = 4;
    }
    if version >= 9 {
        partition.current_leader_epoch = 3;
    }
    if version >= 12 {
        partition.last_fetched_epoch = 2;
    }
    let mut fetch_topic = FetchTopic::default().with_partitions(vec![partition]);
    if version >= 13 {
        fetch_topic.topic_id = ORDERS_ID;
    } else {
        fetch_topic.topic = topic("orders");
    }
    let mut request = m::FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1)
        .with_topics(vec![fetch_topic]);
    if version >= 15 {
        request.replica_state = ReplicaState::default()
            .with_replica_id(BrokerId(-1))
            .with_replica_epoch(-1);
    } else {
        request.replica_id = BrokerId(-1);
    }
    if version >= 7 {
        request.session_id = 11;
        request.session_epoch = 4;
        let mut forgotten = ForgottenTopic::default().with_partitions(vec![7]);
        if version >= 13 {
            forgotten.topic_id = PAYMENTS_ID;
        } else {
            forgotten.topic = topic("payments");
        }
        request.forgotten_topics_data = vec![forgotten];
    }
    if version >= 11 {
        request.rack_id = s("rack-a");
    }
    if version >= 12 {
        request.cluster_id = Some(s("caudal-cluster"));
    }
    RequestKind::Fetch(request)
}

/// Every representative request: ApiVersions, Metadata, Produce and Fetch at every version.
pub fn representative_requests() -> Vec<(ApiKey, i16, RequestKind)> {
    let families: [(ApiKey, RequestBuilder); 4] = [
        (ApiKey::ApiVersions, api_versions_request),
        (ApiKey::Metadata, metadata_request),
        (ApiKey::Produce, produce_request),
        (ApiKey::Fetch, fetch_request),
    ];
    families
        .iter()
        .flat_map(|&(api_key, build)| {
            versions(api_key).map(move |version| (api_key, version, build(version)))
        })
        .collect()
}

pub fn api_versions_response(version: i16) -> ResponseKind {
    use m::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
    let mut response = m::ApiVersionsResponse::default().with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(ApiKey::Produce as i16)
            .with_min_version(3)
            .with_max_version(11),
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(4),
    ]);
    if version >= 1 {
        response.throttle_time_ms = 15;
    }
    if version >= 3 {
        response.supported_features = vec![
            SupportedFeatureKey::default()
                .with_name(s("metadata.version"))
                .with_min_version(1)
                .with_max_version(20),
        ];
        response.finalized_features_epoch = 9;
        response.finalized_features = vec![
            FinalizedFeatureKey::default()
                .with_name(s("metadata.version"))
                .with_min_version_level(20)
                .with_max_version_level(20),
        ];
    }
    ResponseKind::ApiVersions(response)
}

pub fn metadata_response(version: i16) -> ResponseKind {
    use m::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    let mut broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(s("localhost"))
        .with_port(9092);
    if version >= 1 {
        broker.rack = Some(s("rack-a"));
    }
    let mut partition = MetadataResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        .with_isr_nodes(vec![BrokerId(1)]);
    if version >= 5 {
        partition.offline_replicas = vec![BrokerId(2)];
    }
    if version >= 7 {
        partition.leader_epoch = 5;
    }
    let mut orders = MetadataResponseTopic::default()
        .with_name(Some(topic("orders")))
        .with_partitions(vec![partition]);
    if version >= 1 {
        orders.is_internal = false;
    }
    if version >= 8 {
        orders.topic_authorized_operations = 0b1111_1000;
    }
    if version >= 10 {
        orders.topic_id = ORDERS_ID;
    }
    let missing = MetadataResponseTopic::default()
        .with_name(Some(topic("payments")))
        .with_error_code(3);
    let mut response = m::MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(vec![orders, missing]);
    if version >= 1 {
        response.controller_id = BrokerId(1);
    }
    if version >= 2 {
        response.cluster_id = Some(s("caudal-cluster"));
    }
    if version >= 3 {
        response.throttle_time_ms = 20;
    }
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations = 0b1_1111_1000;
    }
    ResponseKind::Metadata(response)
}

pub fn produce_response(version: i16) -> ResponseKind {
    use m::produce_response::{
        BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
        TopicProduceResponse,
    };
    let mut ok = PartitionProduceResponse::default()
        .with_index(0)
        .with_base_offset(42)
        .with_log_append_time_ms(-1);
    let mut failed = PartitionProduceResponse::default()
        .with_index(3)
        .with_error_code(6)
        .with_base_offset(-1);
    if version >= 5 {
        ok.log_start_offset = 0;
    }
    if version >= 8 {
        failed.record_errors = vec![
            BatchIndexAndErrorMessage::default()
                .with_batch_index(1)
                .with_batch_index_error_message(Some(s("bad record"))),
        ];
        failed.error_message = Some(s("not the leader"));
    }
    if version >= 10 {
        failed.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(6);
    }
    let mut topic_response =
        TopicProduceResponse::default().with_partition_responses(vec![ok, failed]);
    if version >= 13 {
        topic_response.topic_id = ORDERS_ID;
    } else {
        topic_response.name = topic("orders");
    }
    let mut response = m::ProduceResponse::default()
        .with_responses(vec![topic_response])
        .with_throttle_time_ms(5);
    if version >= 10 {
        response.node_endpoints = vec![
            NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("broker-2"))
                .with_port(9092)
                .with_rack(Some(s("rack-b"))),
        ];
    }
    ResponseKind::Produce(response)
}

pub fn fetch_response(version: i16) -> ResponseKind {
    use m::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, NodeEndpoint, PartitionData,
    };
    let mut partition = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(103)
        .with_last_stable_offset(101)
        .with_aborted_transactions(Some(vec![
            AbortedTransaction::default()
                .with_producer_id(m::ProducerId(9))
                .with_first_offset(90),
        ]))
        .with_records(Some(record_batch()));
    if version >= 5 {
        partition.log_start_offset = 4;
    }
    if version >= 11 {
        partition.preferred_read_replica = BrokerId(2);
    }
    let mut topic_response = FetchableTopicResponse::default().with_partitions(vec![partition]);
    if version >= 13 {
        topic_response.topic_id = ORDERS_ID;
    } else {
        topic_response.topic = topic("orders");
    }
    let mut response = m::FetchResponse::default()
        .with_throttle_time_ms(1)
        .with_responses(vec![topic_response]);
    if version >= 7 {
        response.session_id = 11;
    }
    if version >= 16 {
        response.node_endpoints = vec![
            NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("broker-2"))
                .with_port(9092),
        ];
    }
    ResponseKind::Fetch(response)
}

/// Every representative response, for the same families and versions as the requests.
pub fn representative_responses() -> Vec<(ApiKey, i16, ResponseKind)> {
    let families: [(ApiKey, ResponseBuilder); 4] = [
        (ApiKey::ApiVersions, api_versions_response),
        (ApiKey::Metadata, metadata_response),
        (ApiKey::Produce, produce_response),
        (ApiKey::Fetch, fetch_response),
    ];
    families
        .iter()
        .flat_map(|&(api_key, build)| {
            versions(api_key).map(move |version| (api_key, version, build(version)))
        })
        .collect()
}
