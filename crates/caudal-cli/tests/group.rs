//! End to end: `caudal group list/describe/delete/seek` against a real `caudal server`. Groups are
//! made with the client library (admin commits, and a member joined over raw JoinGroup/SyncGroup
//! frames); every offset a command moves is read back with OffsetFetch.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use caudal_client::admin::NewTopic;
use caudal_client::groups::TopicPartition;
use caudal_client::records::{Compression, RecordData, encode_batch};
use caudal_client::{Acks, Client, ClientConfig};
use caudal_model::{Offset, PartitionIndex};
use caudal_protocol::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use caudal_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use caudal_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use caudal_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use caudal_protocol::kafka_protocol::messages::{
    ConsumerProtocolAssignment, GroupId, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
    TopicName,
};
use caudal_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use support::{Broker, ok, stderr, stdout};

const TIMEOUT: Duration = Duration::from_secs(10);
const MEMBER_ID_REQUIRED: i16 = 79;

/// A broker with few `__consumer_offsets` partitions (quicker to create) and no initial rebalance
/// delay (a lone member's join completes at once).
fn broker() -> Broker {
    Broker::start_with(&[
        "offsets.topic.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
    ])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(broker: &Broker) -> Client {
    Client::connect(
        std::slice::from_ref(&broker.address),
        ClientConfig {
            api_timeout: Duration::from_secs(30),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap()
}

/// Creates `topic` and appends one batch per partition: partition `p` gets `counts[p]` records
/// with timestamps `(p + 1) * 1000 + i`.
async fn topic_with_records(client: &Client, topic: &str, counts: &[i64]) {
    client
        .create_topic(
            NewTopic::new(topic).with_partitions(counts.len() as i32),
            false,
            TIMEOUT,
        )
        .await
        .unwrap();
    client.topic_with_leaders(topic, false).await.unwrap();
    for (partition, &count) in counts.iter().enumerate() {
        let records: Vec<RecordData> = (0..count)
            .map(|index| RecordData {
                value: Some(Bytes::from(format!("record {index}"))),
                timestamp: (partition as i64 + 1) * 1000 + index,
                ..Default::default()
            })
            .collect();
        let batch = encode_batch(&records, Compression::None, None).unwrap();
        client
            .produce(
                topic,
                PartitionIndex(partition as i32),
                batch,
                Acks::All,
                TIMEOUT,
            )
            .await
            .unwrap();
    }
}

fn offsets(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, Offset> {
    entries
        .iter()
        .map(|&(topic, partition, offset)| (TopicPartition::new(topic, partition), Offset(offset)))
        .collect()
}

async fn commit(client: &Client, group: &str, entries: &[(&str, i32, i64)]) {
    let results = client
        .commit_offsets(group, &offsets(entries))
        .await
        .unwrap();
    for (partition, result) in results {
        result.unwrap_or_else(|error| panic!("commit {partition}: {error}"));
    }
}

/// The group's committed offsets as `(topic-partition, offset)`.
async fn committed(client: &Client, group: &str) -> Vec<(String, i64)> {
    client
        .committed_offsets(group, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(partition, committed)| (partition.to_string(), committed.offset.0))
        .collect()
}

fn pairs(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
    entries
        .iter()
        .map(|&(partition, offset)| (partition.to_owned(), offset))
        .collect()
}

/// Whether some line of `text`, split on whitespace, is exactly `cells`.
fn has_row(text: &str, cells: &[&str]) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == cells)
}

#[test]
fn describe_lag_seek_and_delete() {
    let broker = broker();
    let runtime = runtime();
    let client = runtime.block_on(async {
        let client = connect(&broker).await;
        topic_with_records(&client, "orders", &[10, 4]).await;
        topic_with_records(&client, "audit", &[3]).await;
        commit(&client, "app", &[("orders", 0, 4), ("orders", 1, 1)]).await;
        client
    });

    let list = stdout(&ok(broker.caudal(&["group", "list"])));
    assert!(
        has_row(&list, &["GROUP", "STATE", "PROTOCOL-TYPE"]),
        "{list}"
    );
    assert!(has_row(&list, &["app", "Empty", "-"]), "{list}");
    let stable = stdout(&ok(broker.caudal(&["group", "list", "--state", "stable"])));
    assert!(!stable.contains("app"), "{stable}");
    let empty = stdout(&ok(broker.caudal(&["group", "list", "--state", "Empty"])));
    assert!(has_row(&empty, &["app", "Empty", "-"]), "{empty}");

    // Lag is the log end offset minus the committed offset.
    let describe = stdout(&ok(broker.caudal(&["group", "describe", "app"])));
    assert!(
        describe.contains("State:               Empty"),
        "{describe}"
    );
    assert!(describe.contains("Members:             0"), "{describe}");
    assert!(
        has_row(&describe, &["orders", "0", "4", "10", "6", "-", "-", "-"]),
        "{describe}"
    );
    assert!(
        has_row(&describe, &["orders", "1", "1", "4", "3", "-", "-", "-"]),
        "{describe}"
    );
    assert!(describe.contains("Total lag: 9"), "{describe}");

    let missing = broker.caudal(&["group", "describe", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).starts_with("error: GROUP_ID_NOT_FOUND (69): group \"nobody\""),
        "{}",
        stderr(&missing)
    );

    // A dry run prints the plan and commits nothing.
    let dry = ok(broker.caudal(&["group", "seek", "app", "--to", "earliest", "--dry-run"]));
    assert!(
        has_row(&stdout(&dry), &["app", "orders", "0", "4", "0"]),
        "{}",
        stdout(&dry)
    );
    assert!(stderr(&dry).contains("dry run"), "{}", stderr(&dry));
    let read = |client: &Client| runtime.block_on(committed(client, "app"));
    assert_eq!(read(&client), pairs(&[("orders-0", 4), ("orders-1", 1)]));

    ok(broker.caudal(&["group", "seek", "app", "--to", "earliest"]));
    assert_eq!(read(&client), pairs(&[("orders-0", 0), ("orders-1", 0)]));

    ok(broker.caudal(&["group", "seek", "app", "--to-latest", "--topic", "orders:1"]));
    assert_eq!(read(&client), pairs(&[("orders-0", 0), ("orders-1", 4)]));

    // An offset past a partition's end is clamped to its log end offset, as Kafka does.
    let clamped = ok(broker.caudal(&["group", "seek", "app", "--to", "7"]));
    assert!(
        stderr(&clamped).contains("orders-1: offset 7 is past the log end offset; using 4"),
        "{}",
        stderr(&clamped)
    );
    assert_eq!(read(&client), pairs(&[("orders-0", 7), ("orders-1", 4)]));

    // Timestamps: orders-0 holds 1000..=1009, orders-1 holds 2000..=2003.
    ok(broker.caudal(&["group", "seek", "app", "--to", "@1005"]));
    assert_eq!(read(&client), pairs(&[("orders-0", 5), ("orders-1", 0)]));
    // Past orders-0's last record: its log end offset.
    ok(broker.caudal(&[
        "group",
        "seek",
        "app",
        "--to-datetime",
        "1970-01-01T00:00:02.002Z",
        "--topic",
        "orders",
    ]));
    assert_eq!(read(&client), pairs(&[("orders-0", 10), ("orders-1", 2)]));

    // --topic adds partitions the group never committed.
    ok(broker.caudal(&[
        "group",
        "seek",
        "app",
        "--to-offset",
        "1",
        "--topic",
        "audit",
    ]));
    assert_eq!(
        read(&client),
        pairs(&[("audit-0", 1), ("orders-0", 10), ("orders-1", 2)])
    );
    // A group that does not exist yet gets offsets for the named topics; without --topic there
    // is nothing to move.
    let nothing = broker.caudal(&["group", "seek", "fresh", "--to-earliest"]);
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains("group \"fresh\" has no committed offsets"),
        "{}",
        stderr(&nothing)
    );
    ok(broker.caudal(&[
        "group",
        "seek",
        "fresh",
        "--to-earliest",
        "--topic",
        "audit",
    ]));
    assert_eq!(
        runtime.block_on(committed(&client, "fresh")),
        pairs(&[("audit-0", 0)])
    );
    let unknown = broker.caudal(&["group", "seek", "app", "--to", "1", "--topic", "ghost"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        stderr(&unknown)
    );
    let no_partition = broker.caudal(&["group", "seek", "app", "--to", "1", "--topic", "audit:4"]);
    assert!(!no_partition.status.success());
    assert!(
        stderr(&no_partition).contains("audit-4 does not exist"),
        "{}",
        stderr(&no_partition)
    );

    // Delete: the group and its offsets go; a second delete and a missing group fail by name.
    let deleted = stdout(&ok(broker.caudal(&["group", "delete", "app"])));
    assert!(deleted.contains("deleted group \"app\""), "{deleted}");
    assert!(read(&client).is_empty());
    let gone = broker.caudal(&["group", "describe", "app"]);
    assert!(
        stderr(&gone).contains("GROUP_ID_NOT_FOUND"),
        "{}",
        stderr(&gone)
    );
    runtime.block_on(commit(&client, "other", &[("orders", 0, 1)]));
    let mixed = broker.caudal(&["group", "delete", "other", "app", "fresh"]);
    assert!(!mixed.status.success());
    assert!(
        stdout(&mixed).contains("deleted group \"other\""),
        "{}",
        stdout(&mixed)
    );
    assert!(
        stderr(&mixed).contains("GROUP_ID_NOT_FOUND (69): group \"app\": the group does not exist"),
        "{}",
        stderr(&mixed)
    );
    assert!(
        stdout(&mixed).contains("deleted group \"fresh\""),
        "{}",
        stdout(&mixed)
    );
    assert!(
        stderr(&mixed).contains("1 of 3 groups not deleted"),
        "{}",
        stderr(&mixed)
    );
    let list = stdout(&ok(broker.caudal(&["group", "list"])));
    assert!(!list.contains("app") && !list.contains("other"), "{list}");
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// `ConsumerProtocolAssignment` v0 bytes, as a Java consumer leader sends them.
fn assignment(topics: &[(&str, &[i32])]) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        topics
            .iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(TopicName(text(topic)))
                    .with_partitions(partitions.to_vec())
            })
            .collect(),
    );
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&0i16.to_be_bytes());
    assignment.encode(&mut bytes, 0).unwrap();
    bytes.freeze()
}

/// A consumer that joins `group` over raw JoinGroup (v5, two-step) and SyncGroup (v3) as its
/// leader, assigning itself `orders` partitions 0 and 1. Returns its member id.
async fn join_member(client: &Client, group: &str) -> String {
    let coordinator = client.find_coordinator(group).await.unwrap();
    let connection = client.connection(coordinator.node_id).await.unwrap();
    let join = |member_id: String| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(&member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(Bytes::from_static(
                        b"\0\0\0\0\0\x01\0\x06orders\xff\xff\xff\xff",
                    )),
            ])
    };
    let first = connection
        .request_at(&join(String::new()), 5)
        .await
        .unwrap();
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member_id = first.member_id.to_string();
    let joined = connection
        .request_at(&join(member_id.clone()), 5)
        .await
        .unwrap();
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader.as_str(), member_id);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(text(&member_id))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(text(&member_id))
                .with_assignment(assignment(&[("orders", &[0, 1])])),
        ]);
    let synced = connection.request_at(&sync, 3).await.unwrap();
    assert_eq!(synced.error_code, 0, "{synced:?}");
    member_id
}

async fn leave(client: &Client, group: &str, member_id: &str) {
    let coordinator = client.find_coordinator(group).await.unwrap();
    let connection = client.connection(coordinator.node_id).await.unwrap();
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(text(member_id)),
        ]);
    let left = connection.request_at(&request, 3).await.unwrap();
    assert_eq!(left.error_code, 0, "{left:?}");
    assert_eq!(left.members[0].error_code, 0, "{left:?}");
}

#[test]
fn a_group_with_members_is_described_and_protected() {
    let broker = broker();
    let runtime = runtime();
    let (client, member_id) = runtime.block_on(async {
        let client = connect(&broker).await;
        topic_with_records(&client, "orders", &[6, 2]).await;
        commit(&client, "live", &[("orders", 0, 5)]).await;
        let member_id = join_member(&client, "live").await;
        (client, member_id)
    });

    let describe = stdout(&ok(broker.caudal(&["group", "describe", "live"])));
    assert!(
        describe.contains("State:               Stable"),
        "{describe}"
    );
    assert!(
        describe.contains("Protocol type:       consumer"),
        "{describe}"
    );
    assert!(
        describe.contains("Assignment strategy: range"),
        "{describe}"
    );
    let member_row = describe
        .lines()
        .find(|line| line.starts_with(&member_id))
        .unwrap_or_else(|| panic!("no member row: {describe}"));
    let cells: Vec<&str> = member_row.split_whitespace().collect();
    assert_eq!(cells[1], "-", "no instance id: {describe}");
    assert_eq!(cells[2], "caudal", "client id: {describe}");
    assert_eq!(&cells[4..], ["2", "orders(0,1)"], "{describe}");
    // orders-1 is assigned without a commit: no lag, but its owner and log end offset show.
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .filter(|line| line.starts_with("orders "))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{describe}");
    assert_eq!(&rows[0][..5], ["orders", "0", "5", "6", "1"], "{describe}");
    assert_eq!(rows[0][5], member_id, "{describe}");
    assert_eq!(&rows[1][..5], ["orders", "1", "-", "2", "-"], "{describe}");
    assert_eq!(rows[1][5], member_id, "{describe}");

    let stable = stdout(&ok(broker.caudal(&["group", "list", "--state", "Stable"])));
    assert!(
        has_row(&stable, &["live", "Stable", "consumer"]),
        "{stable}"
    );

    // Kafka resets offsets only of inactive groups, and deletes only empty ones.
    let refused = broker.caudal(&["group", "seek", "live", "--to", "earliest"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "Assignments can only be reset if the group \"live\" is inactive, but the current \
             state is Stable"
        ),
        "{}",
        stderr(&refused)
    );
    let busy = broker.caudal(&["group", "delete", "live"]);
    assert!(!busy.status.success());
    assert!(
        stderr(&busy).starts_with("error: NON_EMPTY_GROUP (68): group \"live\""),
        "{}",
        stderr(&busy)
    );
    assert_eq!(
        runtime.block_on(committed(&client, "live")),
        pairs(&[("orders-0", 5)])
    );

    // Once the member leaves, the group is Empty and both work.
    runtime.block_on(leave(&client, "live", &member_id));
    ok(broker.caudal(&["group", "seek", "live", "--to", "earliest"]));
    assert_eq!(
        runtime.block_on(committed(&client, "live")),
        pairs(&[("orders-0", 0)])
    );
    ok(broker.caudal(&["group", "delete", "live"]));
    assert!(runtime.block_on(committed(&client, "live")).is_empty());
}
