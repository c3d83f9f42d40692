//! Consumer groups through the broker over raw Kafka frames: the join/sync protocol across
//! connections, commits and their errors, session expiry, and group state surviving a restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use caudal_protocol::{ApiKey, RequestKind, ResponseKind};
use common::{Client, batch, start_broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

#[global_allocator]
static ALLOCATOR: caudal_server::alloc_guard::GuardedAllocator =
    caudal_server::alloc_guard::GuardedAllocator;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group(value: &str) -> GroupId {
    GroupId(text(value))
}

async fn setup(client: &mut Client, topic: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(text(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ]);
    let ResponseKind::CreateTopics(created) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(created.topics[0].error_code, NONE);
    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![text("any")]);
    let ResponseKind::FindCoordinator(found) = client
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(find),
        )
        .await
    else {
        panic!("not a FindCoordinator response")
    };
    assert_eq!(found.coordinators[0].error_code, NONE);
}

fn join_request(group_id: &str, member_id: &str, session_ms: i32) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(group(group_id))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(4_000)
            .with_member_id(text(member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(Bytes::from(format!("subscription of {member_id}"))),
            ]),
    )
}

async fn join(client: &mut Client, group_id: &str, member_id: &str) -> JoinGroupResponse {
    match client
        .call(
            ApiKey::JoinGroup,
            5,
            join_request(group_id, member_id, 10_000),
        )
        .await
    {
        ResponseKind::JoinGroup(response) => response,
        other => panic!("not a JoinGroup response: {other:?}"),
    }
}

/// A new member's two-step join (KIP-394): MEMBER_ID_REQUIRED, then the join with that id.
async fn join_new(address: SocketAddr, group_id: String) -> (Client, JoinGroupResponse) {
    let mut client = Client::connect(address).await;
    let first = join(&mut client, &group_id, "").await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    let member_id = first.member_id.to_string();
    let joined = join(&mut client, &group_id, &member_id).await;
    (client, joined)
}

async fn sync(
    client: &mut Client,
    group_id: &str,
    member_id: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(generation)
        .with_member_id(text(member_id))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(member, assignment)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(&member))
                        .with_assignment(assignment)
                })
                .collect(),
        );
    match client
        .call(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(request))
        .await
    {
        ResponseKind::SyncGroup(response) => response,
        other => panic!("not a SyncGroup response: {other:?}"),
    }
}

async fn heartbeat(client: &mut Client, group_id: &str, member_id: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(generation)
        .with_member_id(text(member_id));
    match client
        .call(ApiKey::Heartbeat, 3, RequestKind::Heartbeat(request))
        .await
    {
        ResponseKind::Heartbeat(response) => response.error_code,
        other => panic!("not a Heartbeat response: {other:?}"),
    }
}

/// Commits `(topic, partition, offset, metadata)` and returns each partition's error.
async fn commit(
    client: &mut Client,
    group_id: &str,
    member_id: &str,
    generation: i32,
    offsets: &[(&str, i32, i64, &str)],
) -> Vec<i16> {
    let topics = offsets
        .iter()
        .map(|(topic, partition, offset, metadata)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*partition)
                        .with_committed_offset(*offset)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(text(metadata))),
                ])
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(topics);
    match client
        .call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(request))
        .await
    {
        ResponseKind::OffsetCommit(response) => response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code))
            .collect(),
        other => panic!("not an OffsetCommit response: {other:?}"),
    }
}

/// Committed (offset, metadata) of `topic` partitions 0..count, via OffsetFetch v7.
async fn committed(
    client: &mut Client,
    group_id: &str,
    topic: &str,
    count: i32,
) -> Vec<(i64, String)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partition_indexes((0..count).collect()),
        ]));
    match client
        .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))
        .await
    {
        ResponseKind::OffsetFetch(response) => {
            assert_eq!(response.error_code, NONE);
            response.topics[0]
                .partitions
                .iter()
                .map(|p| {
                    assert_eq!(p.error_code, NONE);
                    (
                        p.committed_offset,
                        p.metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        }
        other => panic!("not an OffsetFetch response: {other:?}"),
    }
}

async fn describe(client: &mut Client, group_id: &str) -> describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![group(group_id)]);
    match client
        .call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(request),
        )
        .await
    {
        ResponseKind::DescribeGroups(mut response) => response.groups.remove(0),
        other => panic!("not a DescribeGroups response: {other:?}"),
    }
}

#[tokio::test]
async fn two_members_rebalance_commit_and_find_it_all_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "3"),
    ];
    let broker = start_broker(dir.path(), &settings).await;
    let address = broker.local_addr;
    let mut admin = Client::connect(address).await;
    setup(&mut admin, "orders", 2).await;

    // A alone: generation 1, A leads.
    let (mut a, joined_a) = join_new(address, "g".into()).await;
    assert_eq!(joined_a.error_code, NONE);
    assert_eq!(joined_a.generation_id, 1);
    let member_a = joined_a.member_id.to_string();
    assert_eq!(joined_a.leader.to_string(), member_a);
    let synced = sync(
        &mut a,
        "g",
        &member_a,
        1,
        vec![(member_a.clone(), Bytes::from_static(b"all"))],
    )
    .await;
    assert_eq!(synced.error_code, NONE);
    assert_eq!(&synced.assignment[..], b"all");

    // B joins: its join parks until A rejoins.
    let b_joining = tokio::spawn(join_new(address, "g".into()));
    let mut rebalancing = false;
    for _ in 0..50 {
        match heartbeat(&mut a, "g", &member_a, 1).await {
            REBALANCE_IN_PROGRESS => {
                rebalancing = true;
                break;
            }
            NONE => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("heartbeat answered {other}"),
        }
    }
    assert!(rebalancing, "A was never told to rejoin");
    let rejoined_a = join(&mut a, "g", &member_a).await;
    let (mut b, joined_b) = b_joining.await.unwrap();
    assert_eq!(rejoined_a.error_code, NONE);
    assert_eq!(joined_b.error_code, NONE);
    assert_eq!(rejoined_a.generation_id, 2);
    assert_eq!(joined_b.generation_id, 2);
    let member_b = joined_b.member_id.to_string();
    assert_eq!(
        rejoined_a.leader.to_string(),
        member_a,
        "the leader is kept"
    );
    assert_eq!(
        rejoined_a.members.len(),
        2,
        "the leader sees every member's metadata"
    );
    assert!(joined_b.members.is_empty(), "followers see no members");

    // B's sync parks until the leader's assignment arrives.
    let b_syncing = {
        let member_b = member_b.clone();
        tokio::spawn(async move {
            let response = sync(&mut b, "g", &member_b, 2, Vec::new()).await;
            (b, response)
        })
    };
    let synced_a = sync(
        &mut a,
        "g",
        &member_a,
        2,
        vec![
            (member_a.clone(), Bytes::from_static(b"orders-0")),
            (member_b.clone(), Bytes::from_static(b"orders-1")),
        ],
    )
    .await;
    let (mut b, synced_b) = b_syncing.await.unwrap();
    assert_eq!(synced_a.error_code, NONE);
    assert_eq!(&synced_a.assignment[..], b"orders-0");
    assert_eq!(synced_b.error_code, NONE);
    assert_eq!(&synced_b.assignment[..], b"orders-1");

    // Commits: the current generation works; a stale one, unknown partitions and oversized
    // metadata get Kafka's errors, partition by partition.
    let too_long = "x".repeat(4097);
    let errors = commit(
        &mut a,
        "g",
        &member_a,
        2,
        &[
            ("orders", 0, 17, "a's"),
            ("orders", 9, 1, ""),
            ("missing", 0, 1, ""),
            ("orders", 1, 5, &too_long),
        ],
    )
    .await;
    assert_eq!(
        errors,
        vec![
            NONE,
            UNKNOWN_TOPIC_OR_PARTITION,
            UNKNOWN_TOPIC_OR_PARTITION,
            OFFSET_METADATA_TOO_LARGE
        ]
    );
    assert_eq!(
        commit(&mut b, "g", &member_b, 1, &[("orders", 1, 3, "")]).await,
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(&mut b, "g", &member_b, 2, &[("orders", 1, 9, "b's")]).await,
        vec![NONE]
    );
    // Another group's simple commit is independent.
    assert_eq!(
        commit(&mut admin, "other", "", -1, &[("orders", 0, 2, "")]).await,
        vec![NONE]
    );
    assert_eq!(
        committed(&mut admin, "g", "orders", 2).await,
        vec![(17, "a's".to_string()), (9, "b's".to_string())]
    );

    drop((a, b, admin));
    broker.shutdown().await.unwrap();

    let broker = start_broker(dir.path(), &settings).await;
    let mut client = Client::connect(broker.local_addr).await;
    assert_eq!(
        committed(&mut client, "g", "orders", 2).await,
        vec![(17, "a's".to_string()), (9, "b's".to_string())]
    );
    assert_eq!(
        committed(&mut client, "other", "orders", 1).await,
        vec![(2, String::new())]
    );
    let described = describe(&mut client, "g").await;
    assert_eq!(described.error_code, NONE);
    assert_eq!(described.group_state.to_string(), "Stable");
    assert_eq!(described.protocol_data.to_string(), "range");
    let mut assignments: Vec<(String, Bytes)> = described
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_assignment.clone()))
        .collect();
    assignments.sort();
    let mut expected = vec![
        (member_a.clone(), Bytes::from_static(b"orders-0")),
        (member_b.clone(), Bytes::from_static(b"orders-1")),
    ];
    expected.sort();
    assert_eq!(assignments, expected);
    // The loaded members keep their generation.
    assert_eq!(heartbeat(&mut client, "g", &member_a, 2).await, NONE);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_removed_after_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(
        dir.path(),
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "100"),
            ("offsets.topic.num.partitions", "1"),
        ],
    )
    .await;
    let mut client = Client::connect(broker.local_addr).await;
    setup(&mut client, "t", 1).await;
    let first = match client
        .call(ApiKey::JoinGroup, 5, join_request("quiet", "", 300))
        .await
    {
        ResponseKind::JoinGroup(response) => response,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    let joined = match client
        .call(ApiKey::JoinGroup, 5, join_request("quiet", &member, 300))
        .await
    {
        ResponseKind::JoinGroup(response) => response,
        other => panic!("{other:?}"),
    };
    assert_eq!(joined.error_code, NONE);
    let synced = sync(
        &mut client,
        "quiet",
        &member,
        joined.generation_id,
        vec![(member.clone(), Bytes::from_static(b"t-0"))],
    )
    .await;
    assert_eq!(synced.error_code, NONE);
    assert_eq!(describe(&mut client, "quiet").await.members.len(), 1);

    let mut state = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let described = describe(&mut client, "quiet").await;
        state = described.group_state.to_string();
        if state == "Empty" {
            assert!(described.members.is_empty());
            break;
        }
    }
    assert_eq!(state, "Empty", "the silent member was not removed");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_cannot_write_the_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("offsets.topic.num.partitions", "1")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    setup(&mut client, "t", 1).await;
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(text("__consumer_offsets")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(1, Compression::None, None))),
                ]),
        ]);
    let ResponseKind::Produce(response) = client
        .call(ApiKey::Produce, 9, RequestKind::Produce(request))
        .await
    else {
        panic!("not a Produce response")
    };
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        INVALID_TOPIC_EXCEPTION
    );
    broker.shutdown().await.unwrap();
}
