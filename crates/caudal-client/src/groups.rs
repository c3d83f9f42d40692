//! Consumer-group admin, as Kafka's Admin client does it for `kafka-consumer-groups.sh`: find a
//! group's coordinator, list / describe / delete groups, read a group's committed offsets and
//! commit new ones with a "simple" commit (generation -1, no member id).
//!
//! Requests about a group go to its coordinator, found with FindCoordinator (key type 0; several
//! groups in one request from v4, KIP-699). `NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`,
//! `COORDINATOR_LOAD_IN_PROGRESS` and lost connections are retried — looking the coordinator up
//! again — after the client's backoff, until [`ClientConfig::api_timeout`] has passed (Kafka:
//! `default.api.timeout.ms`). ListGroups goes to every broker, since each knows only the groups
//! it coordinates.
//!
//! [`ClientConfig::api_timeout`]: crate::ClientConfig::api_timeout

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use caudal_model::{LeaderEpoch, NodeId, Offset, PartitionIndex};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use caudal_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use caudal_protocol::kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::client::Client;
use crate::cluster::BrokerInfo;
use crate::connection::Connection;
use crate::error::{ClientError, KafkaError};

/// The protocol type of groups formed by Kafka consumers; their member assignments are
/// `ConsumerProtocolAssignment` bytes.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// FindCoordinator key type of a consumer group (1 is a transactional id).
const KEY_TYPE_GROUP: i8 = 0;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionIndex,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition: PartitionIndex(partition),
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The broker coordinating a group, as FindCoordinator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: NodeId,
    pub host: String,
    pub port: i32,
}

impl Coordinator {
    /// `host:port`.
    pub fn address(&self) -> String {
        BrokerInfo {
            node_id: self.node_id,
            host: self.host.clone(),
            port: self.port,
            rack: None,
        }
        .address()
    }
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// `consumer` for Kafka consumers, empty for groups that only hold committed offsets.
    pub protocol_type: String,
    /// The group state (ListGroups v4+), e.g. `Stable`; `None` from older brokers.
    pub state: Option<String>,
    /// `classic`, `consumer`, … (ListGroups v5+).
    pub group_type: Option<String>,
    /// The broker that reported (and coordinates) the group.
    pub broker: NodeId,
}

/// Every broker's groups, and the brokers that could not be asked.
#[derive(Debug, Clone, Default)]
pub struct GroupListing {
    /// Sorted by group id; a group reported by two brokers (a coordinator move) appears once.
    pub groups: Vec<ListedGroup>,
    pub failures: Vec<(NodeId, ClientError)>,
}

/// A member of a group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    /// `group.instance.id` of a static member (DescribeGroups v4+).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The assignment bytes exactly as the group leader sent them.
    pub assignment: Bytes,
    /// The assignment decoded as a `ConsumerProtocolAssignment`, for groups of protocol type
    /// `consumer`; `None` for other protocol types. Empty while the member awaits an assignment.
    pub assigned: Option<Result<Vec<TopicPartition>, String>>,
}

impl GroupMember {
    /// The decoded assigned partitions (none when undecodable or not a consumer group).
    pub fn assigned_partitions(&self) -> &[TopicPartition] {
        match &self.assigned {
            Some(Ok(partitions)) => partitions,
            _ => &[],
        }
    }
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub coordinator: Coordinator,
    /// Kafka's state name: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, or
    /// `Dead` for a group that does not exist.
    pub state: String,
    pub protocol_type: String,
    /// The selected protocol (assignor name for consumer groups), once the group is formed.
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// Kafka answers DescribeGroups for an unknown group with state `Dead`.
    pub fn exists(&self) -> bool {
        self.state != "Dead"
    }

    /// Whether the group has no active members, so its offsets may be changed from outside
    /// (Kafka's test before resetting offsets: `Empty` or `Dead`).
    pub fn is_inactive(&self) -> bool {
        matches!(self.state.as_str(), "Empty" | "Dead")
    }

    /// The member a partition is assigned to, if any.
    pub fn owner(&self, partition: &TopicPartition) -> Option<&GroupMember> {
        self.members
            .iter()
            .find(|member| member.assigned_partitions().contains(partition))
    }
}

/// A committed offset, as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: Offset,
    pub leader_epoch: Option<LeaderEpoch>,
    pub metadata: Option<String>,
}

/// Decodes a `ConsumerProtocolAssignment` (version, then the assigned partitions per topic, then
/// user data, which is ignored). Versions above 3 are read as version 3, as Kafka's consumers do:
/// later versions only append fields. Empty bytes mean no assignment yet. Every count is checked
/// against the bytes left before anything is allocated.
pub fn decode_consumer_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = Reader { bytes, position: 0 };
    let version = reader.i16()?;
    if version < 0 {
        return Err(format!("assignment version {version}"));
    }
    let topics = reader.count(6, "topic")?;
    let mut assigned: BTreeSet<TopicPartition> = BTreeSet::new();
    for _ in 0..topics {
        let length = reader.i16()?;
        let length = usize::try_from(length).map_err(|_| format!("topic name length {length}"))?;
        let name = std::str::from_utf8(reader.take(length)?)
            .map_err(|_| "topic name is not UTF-8".to_owned())?
            .to_owned();
        let partitions = reader.count(4, "partition")?;
        for _ in 0..partitions {
            let partition = reader.i32()?;
            assigned.insert(TopicPartition {
                topic: name.clone(),
                partition: PartitionIndex(partition),
            });
        }
    }
    Ok(assigned.into_iter().collect())
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take(&mut self, length: usize) -> Result<&[u8], String> {
        let end = self
            .position
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "assignment ends after {} bytes, {length} more expected at byte {}",
                    self.bytes.len(),
                    self.position
                )
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// An array count, each element at least `element_bytes_min` long.
    fn count(&mut self, element_bytes_min: usize, what: &str) -> Result<usize, String> {
        let count = self.i32()?;
        let count = usize::try_from(count).map_err(|_| format!("{what} count {count}"))?;
        let left = self.bytes.len() - self.position;
        if count > left / element_bytes_min {
            return Err(format!(
                "{what} count {count} does not fit in the {left} bytes left"
            ));
        }
        Ok(count)
    }
}

/// Errors after which a group request is worth sending again to a freshly looked-up coordinator.
pub fn is_coordinator_retriable(error: &ClientError) -> bool {
    match error {
        ClientError::Kafka(error) => matches!(
            error.code,
            ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::CoordinatorLoadInProgress
        ),
        ClientError::ConnectionLost { .. }
        | ClientError::Connect { .. }
        | ClientError::Timeout { .. } => true,
        _ => false,
    }
}

/// Retries within the client's `api_timeout`, with its backoff.
struct RetryBudget {
    deadline: Instant,
    attempt: u32,
}

impl RetryBudget {
    fn new(client: &Client) -> Self {
        Self {
            deadline: Instant::now() + client.config().api_timeout,
            attempt: 0,
        }
    }

    /// Waits the next backoff and returns true, or returns false if that would pass the deadline.
    async fn again(&mut self, client: &Client) -> bool {
        self.attempt += 1;
        let backoff = client.backoff(self.attempt);
        if Instant::now() + backoff >= self.deadline {
            return false;
        }
        tokio::time::sleep(backoff).await;
        true
    }
}

fn group_context(group_id: &str) -> String {
    format!("group {group_id:?}")
}

fn kafka_error(code: ErrorCode, context: String, message: Option<&StrBytes>) -> ClientError {
    ClientError::Kafka(KafkaError::new(code, context).with_message(message.map(|m| m.to_string())))
}

fn missing(what: String) -> ClientError {
    ClientError::Protocol {
        broker: "coordinator".to_owned(),
        reason: format!("response has no result for {what}"),
    }
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Partitions grouped by topic, topics and partitions in order.
fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for partition in partitions {
        topics
            .entry(partition.topic.as_str())
            .or_default()
            .push(partition.partition.0);
    }
    for partitions in topics.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    topics
}

impl Client {
    /// Looks up the coordinators of `group_ids` once: one batched request from FindCoordinator
    /// v4, else one request per group. A request-level failure is every group's error.
    async fn lookup_coordinators(
        &self,
        group_ids: &[String],
    ) -> BTreeMap<String, Result<Coordinator, ClientError>> {
        let connection = match self.any_connection().await {
            Ok(connection) => connection,
            Err(error) => {
                return group_ids
                    .iter()
                    .map(|group| (group.clone(), Err(error.clone())))
                    .collect();
            }
        };
        let version = match connection.version(ApiKey::FindCoordinator) {
            Ok(version) => version,
            Err(error) => {
                return group_ids
                    .iter()
                    .map(|group| (group.clone(), Err(error.clone())))
                    .collect();
            }
        };
        let mut found = BTreeMap::new();
        if version >= 4 {
            let request = FindCoordinatorRequest::default()
                .with_key_type(KEY_TYPE_GROUP)
                .with_coordinator_keys(group_ids.iter().map(|group| str_bytes(group)).collect());
            match connection.request_at(&request, version).await {
                Err(error) => {
                    for group in group_ids {
                        found.insert(group.clone(), Err(error.clone()));
                    }
                }
                Ok(response) => {
                    for group in group_ids {
                        let answer = response
                            .coordinators
                            .iter()
                            .find(|coordinator| coordinator.key.as_str() == group);
                        let result = match answer {
                            None => Err(missing(format!("FindCoordinator key {group:?}"))),
                            Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                                Some(code) => Err(kafka_error(
                                    code,
                                    format!("FindCoordinator {}", group_context(group)),
                                    answer.error_message.as_ref(),
                                )),
                                None => Ok(Coordinator {
                                    node_id: NodeId(answer.node_id.0),
                                    host: answer.host.to_string(),
                                    port: answer.port,
                                }),
                            },
                        };
                        found.insert(group.clone(), result);
                    }
                }
            }
        } else {
            for group in group_ids {
                let mut request = FindCoordinatorRequest::default().with_key(str_bytes(group));
                if version >= 1 {
                    request.key_type = KEY_TYPE_GROUP;
                }
                let result = match connection.request_at(&request, version).await {
                    Err(error) => Err(error),
                    Ok(response) => match ErrorCode::try_from_code(response.error_code) {
                        Some(code) => Err(kafka_error(
                            code,
                            format!("FindCoordinator {}", group_context(group)),
                            response.error_message.as_ref(),
                        )),
                        None => Ok(Coordinator {
                            node_id: NodeId(response.node_id.0),
                            host: response.host.to_string(),
                            port: response.port,
                        }),
                    },
                };
                found.insert(group.clone(), result);
            }
        }
        found
    }

    /// The coordinators of `group_ids`, retrying groups whose lookup failed with a retriable
    /// error until the API timeout. One result per distinct group.
    pub async fn find_coordinators(
        &self,
        group_ids: &[String],
    ) -> BTreeMap<String, Result<Coordinator, ClientError>> {
        let mut pending: Vec<String> = group_ids.to_vec();
        pending.sort();
        pending.dedup();
        let mut results = BTreeMap::new();
        let mut retry = RetryBudget::new(self);
        loop {
            let found = self.lookup_coordinators(&pending).await;
            pending.clear();
            for (group, result) in found {
                if matches!(&result, Err(error) if is_coordinator_retriable(error)) {
                    pending.push(group.clone());
                }
                results.insert(group, result);
            }
            if pending.is_empty() || !retry.again(self).await {
                return results;
            }
        }
    }

    /// The coordinator of one group.
    pub async fn find_coordinator(&self, group_id: &str) -> Result<Coordinator, ClientError> {
        self.find_coordinators(&[group_id.to_owned()])
            .await
            .remove(group_id)
            .unwrap_or_else(|| Err(missing(format!("FindCoordinator key {group_id:?}"))))
    }

    /// The connection to a coordinator, refreshing the broker list if it is not known yet.
    async fn coordinator_connection(
        &self,
        coordinator: &Coordinator,
    ) -> Result<Arc<Connection>, ClientError> {
        if !self
            .cached_metadata()
            .brokers
            .contains_key(&coordinator.node_id)
        {
            self.metadata(Some(&[])).await?;
        }
        self.connection(coordinator.node_id).await
    }

    /// Runs `operation` on the group's coordinator; on a coordinator error or a lost connection
    /// looks the coordinator up again and retries, until the API timeout.
    async fn on_coordinator<T, F, Fut>(
        &self,
        group_id: &str,
        operation: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Coordinator, Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let group = [group_id.to_owned()];
        let mut retry = RetryBudget::new(self);
        loop {
            let result = async {
                let coordinator = self
                    .lookup_coordinators(&group)
                    .await
                    .remove(group_id)
                    .unwrap_or_else(|| Err(missing(format!("FindCoordinator key {group_id:?}"))))?;
                let connection = self.coordinator_connection(&coordinator).await?;
                operation(coordinator, connection).await
            }
            .await;
            match result {
                Err(error) if is_coordinator_retriable(&error) && retry.again(self).await => {
                    tracing::debug!(group = group_id, %error, "retrying on the group coordinator");
                }
                other => return other,
            }
        }
    }

    /// Every group on every broker (ListGroups to each broker in the metadata), optionally only
    /// those in `states` (ListGroups v4+; Kafka's names, e.g. `Stable`, `Empty`). Brokers that
    /// fail are reported in [`GroupListing::failures`].
    pub async fn list_groups(&self, states: &[String]) -> Result<GroupListing, ClientError> {
        let metadata = self.metadata(Some(&[])).await?;
        let brokers: Vec<NodeId> = metadata.brokers.keys().copied().collect();
        let answers = futures::future::join_all(
            brokers
                .iter()
                .map(|&node_id| self.list_groups_on(node_id, states)),
        )
        .await;
        let mut listing = GroupListing::default();
        let mut seen = BTreeSet::new();
        for (node_id, answer) in brokers.into_iter().zip(answers) {
            match answer {
                Ok(groups) => {
                    for group in groups {
                        if seen.insert(group.group_id.clone()) {
                            listing.groups.push(group);
                        }
                    }
                }
                Err(error) => listing.failures.push((node_id, error)),
            }
        }
        listing.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(listing)
    }

    async fn list_groups_on(
        &self,
        node_id: NodeId,
        states: &[String],
    ) -> Result<Vec<ListedGroup>, ClientError> {
        let mut retry = RetryBudget::new(self);
        loop {
            let result = async {
                let connection = self.connection(node_id).await?;
                let version = connection.version(ApiKey::ListGroups)?;
                let mut request = ListGroupsRequest::default();
                if !states.is_empty() {
                    if version < 4 {
                        let (broker_min, broker_max) = connection
                            .versions()
                            .broker_range(ApiKey::ListGroups)
                            .unwrap_or((0, version));
                        return Err(ClientError::UnsupportedVersion {
                            broker: format!("node {node_id}"),
                            api_key: ApiKey::ListGroups,
                            broker_min,
                            broker_max,
                            client_min: 4,
                            client_max: 5,
                        });
                    }
                    request.states_filter = states.iter().map(|state| str_bytes(state)).collect();
                }
                let response = connection.request_at(&request, version).await?;
                if let Some(code) = ErrorCode::try_from_code(response.error_code) {
                    return Err(kafka_error(
                        code,
                        format!("ListGroups on node {node_id}"),
                        None,
                    ));
                }
                Ok(response
                    .groups
                    .iter()
                    .map(|group| ListedGroup {
                        group_id: group.group_id.0.to_string(),
                        protocol_type: group.protocol_type.to_string(),
                        state: (version >= 4).then(|| group.group_state.to_string()),
                        group_type: (version >= 5).then(|| group.group_type.to_string()),
                        broker: node_id,
                    })
                    .collect())
            }
            .await;
            match result {
                Err(error) if is_coordinator_retriable(&error) && retry.again(self).await => {}
                other => return other,
            }
        }
    }

    /// Describes one group at its coordinator. An unknown group comes back with state `Dead`
    /// (as Kafka answers; GROUP_ID_NOT_FOUND from DescribeGroups v6 reads the same).
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClientError> {
        self.on_coordinator(group_id, |coordinator, connection| async move {
            let request =
                DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group_id))]);
            let response = connection.request(&request).await?;
            let group = response
                .groups
                .iter()
                .find(|group| group.group_id.0.as_str() == group_id)
                .ok_or_else(|| missing(group_context(group_id)))?;
            match ErrorCode::try_from_code(group.error_code) {
                Some(ErrorCode::GroupIdNotFound) => {
                    return Ok(GroupDescription {
                        group_id: group_id.to_owned(),
                        coordinator,
                        state: "Dead".to_owned(),
                        protocol_type: String::new(),
                        protocol: String::new(),
                        members: Vec::new(),
                    });
                }
                Some(code) => {
                    return Err(kafka_error(
                        code,
                        group_context(group_id),
                        group.error_message.as_ref(),
                    ));
                }
                None => {}
            }
            let is_consumer = group.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
            let members = group
                .members
                .iter()
                .map(|member| GroupMember {
                    member_id: member.member_id.to_string(),
                    group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
                    client_id: member.client_id.to_string(),
                    client_host: member.client_host.to_string(),
                    assignment: member.member_assignment.clone(),
                    assigned: is_consumer
                        .then(|| decode_consumer_assignment(&member.member_assignment)),
                })
                .collect();
            Ok(GroupDescription {
                group_id: group_id.to_owned(),
                coordinator,
                state: group.group_state.to_string(),
                protocol_type: group.protocol_type.to_string(),
                protocol: group.protocol_data.to_string(),
                members,
            })
        })
        .await
    }

    /// The group's committed offsets (OffsetFetch at the coordinator): for `partitions`, or for
    /// every partition with a commit when `None`. Partitions without a commit are left out.
    pub async fn committed_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>, ClientError> {
        let topics = partitions.map(by_topic);
        let topics = &topics;
        self.on_coordinator(group_id, |_, connection| async move {
            let version = connection.version(ApiKey::OffsetFetch)?;
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(str_bytes(group_id)))
                        .with_topics(topics.as_ref().map(|topics| {
                            topics
                                .iter()
                                .map(|(topic, partitions)| {
                                    OffsetFetchRequestTopics::default()
                                        .with_name(TopicName(str_bytes(topic)))
                                        .with_partition_indexes(partitions.clone())
                                })
                                .collect()
                        })),
                ];
            } else {
                request.group_id = GroupId(str_bytes(group_id));
                request.topics = topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(str_bytes(topic)))
                                .with_partition_indexes(partitions.clone())
                        })
                        .collect()
                });
            }
            let response = connection.request_at(&request, version).await?;
            // (topic, partition, offset, leader epoch, metadata, error code)
            type Row = (String, i32, i64, i32, Option<String>, i16);
            // v8+ and older responses use two struct types with the same fields.
            macro_rules! rows {
                ($topics:expr) => {
                    $topics
                        .iter()
                        .flat_map(|topic| {
                            topic.partitions.iter().map(move |p| {
                                (
                                    topic.name.0.to_string(),
                                    p.partition_index,
                                    p.committed_offset,
                                    p.committed_leader_epoch,
                                    p.metadata.as_ref().map(|m| m.to_string()),
                                    p.error_code,
                                )
                            })
                        })
                        .collect::<Vec<Row>>()
                };
            }
            let (group_error, rows): (i16, Vec<Row>) = if version >= 8 {
                let group = response
                    .groups
                    .iter()
                    .find(|group| group.group_id.0.as_str() == group_id)
                    .ok_or_else(|| missing(group_context(group_id)))?;
                let rows = rows!(group.topics);
                (group.error_code, rows)
            } else {
                let rows = rows!(response.topics);
                (response.error_code, rows)
            };
            match ErrorCode::try_from_code(group_error) {
                // A group the coordinator does not know has no offsets.
                Some(ErrorCode::GroupIdNotFound) => return Ok(BTreeMap::new()),
                Some(code) => {
                    return Err(kafka_error(
                        code,
                        format!("OffsetFetch {}", group_context(group_id)),
                        None,
                    ));
                }
                None => {}
            }
            let mut offsets = BTreeMap::new();
            for (topic, partition, offset, leader_epoch, metadata, error_code) in rows {
                let partition = TopicPartition::new(topic, partition);
                if let Some(code) = ErrorCode::try_from_code(error_code) {
                    return Err(kafka_error(
                        code,
                        format!("OffsetFetch {} {partition}", group_context(group_id)),
                        None,
                    ));
                }
                if offset >= 0 {
                    offsets.insert(
                        partition,
                        CommittedOffset {
                            offset: Offset(offset),
                            leader_epoch: (leader_epoch >= 0).then_some(LeaderEpoch(leader_epoch)),
                            metadata,
                        },
                    );
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// Commits `offsets` for the group as an admin ("simple") commit: generation -1 and no
    /// member id, which the coordinator accepts only while the group has no members. One result
    /// per partition; the whole commit is retried on coordinator errors.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        offsets: &BTreeMap<TopicPartition, Offset>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, ClientError> {
        if let Some((partition, offset)) = offsets.iter().find(|(_, offset)| offset.0 < 0) {
            return Err(ClientError::InvalidArgument(format!(
                "cannot commit offset {offset} for {partition}"
            )));
        }
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (partition, offset) in offsets {
            topics.entry(partition.topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(partition.partition.0)
                    .with_committed_offset(offset.0)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::default())),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let request = &request;
        self.on_coordinator(group_id, |_, connection| async move {
            let response = connection.request(request).await?;
            let mut results = BTreeMap::new();
            for partition in offsets.keys() {
                let answer = response
                    .topics
                    .iter()
                    .filter(|topic| topic.name.0.as_str() == partition.topic)
                    .flat_map(|topic| topic.partitions.iter())
                    .find(|answer| answer.partition_index == partition.partition.0);
                let context = || format!("OffsetCommit {} {partition}", group_context(group_id));
                let result = match answer.map(|answer| ErrorCode::try_from_code(answer.error_code))
                {
                    None => Err(KafkaError::new(
                        ErrorCode::UnknownServerError,
                        format!("{}: no result in the response", context()),
                    )),
                    Some(Some(code)) => {
                        let error = KafkaError::new(code, context());
                        let retriable = ClientError::Kafka(error.clone());
                        // A coordinator error applies to the whole request: send it again.
                        if is_coordinator_retriable(&retriable) {
                            return Err(retriable);
                        }
                        Err(error)
                    }
                    Some(None) => Ok(()),
                };
                results.insert(partition.clone(), result);
            }
            Ok(results)
        })
        .await
    }

    /// Deletes groups (DeleteGroups at each group's coordinator). One result per distinct group,
    /// in order: Kafka refuses groups with members (`NON_EMPTY_GROUP`) and unknown ones
    /// (`GROUP_ID_NOT_FOUND`).
    pub async fn delete_groups(
        &self,
        group_ids: &[String],
    ) -> Vec<(String, Result<(), ClientError>)> {
        let mut pending: Vec<String> = group_ids.to_vec();
        pending.sort();
        pending.dedup();
        let mut results: BTreeMap<String, Result<(), ClientError>> = BTreeMap::new();
        let mut retry = RetryBudget::new(self);
        loop {
            let mut by_coordinator: BTreeMap<NodeId, (Coordinator, Vec<String>)> = BTreeMap::new();
            for (group, found) in self.lookup_coordinators(&pending).await {
                match found {
                    Ok(coordinator) => {
                        by_coordinator
                            .entry(coordinator.node_id)
                            .or_insert_with(|| (coordinator, Vec::new()))
                            .1
                            .push(group);
                    }
                    Err(error) => {
                        results.insert(group, Err(error));
                    }
                }
            }
            for (coordinator, groups) in by_coordinator.into_values() {
                for (group, result) in self.delete_groups_on(&coordinator, &groups).await {
                    results.insert(group, result);
                }
            }
            pending = results
                .iter()
                .filter(
                    |(_, result)| matches!(result, Err(error) if is_coordinator_retriable(error)),
                )
                .map(|(group, _)| group.clone())
                .collect();
            if pending.is_empty() || !retry.again(self).await {
                break;
            }
        }
        let mut seen = BTreeSet::new();
        group_ids
            .iter()
            .filter(|group| seen.insert(group.as_str()))
            .map(|group| {
                let result = results
                    .remove(group)
                    .unwrap_or_else(|| Err(missing(group_context(group))));
                (group.clone(), result)
            })
            .collect()
    }

    async fn delete_groups_on(
        &self,
        coordinator: &Coordinator,
        groups: &[String],
    ) -> Vec<(String, Result<(), ClientError>)> {
        let response = async {
            let connection = self.coordinator_connection(coordinator).await?;
            let request = DeleteGroupsRequest::default().with_groups_names(
                groups
                    .iter()
                    .map(|group| GroupId(str_bytes(group)))
                    .collect(),
            );
            connection.request(&request).await
        }
        .await;
        groups
            .iter()
            .map(|group| {
                let result = match &response {
                    Err(error) => Err(error.clone()),
                    Ok(response) => match response
                        .results
                        .iter()
                        .find(|answer| answer.group_id.0.as_str() == group)
                    {
                        None => Err(missing(group_context(group))),
                        Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                            Some(code) => Err(kafka_error(code, group_context(group), None)),
                            None => Ok(()),
                        },
                    },
                };
                (group.clone(), result)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;
    use crate::testing::{DEFAULT_APIS, FakeBroker, FakeNode, metadata_response};
    use caudal_protocol::RequestKind;
    use caudal_protocol::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as WireTopicPartition;
    use caudal_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    use caudal_protocol::kafka_protocol::messages::describe_groups_response::{
        DescribedGroup, DescribedGroupMember,
    };
    use caudal_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
    use caudal_protocol::kafka_protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
    use caudal_protocol::kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use caudal_protocol::kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    use caudal_protocol::kafka_protocol::messages::{
        BrokerId, ConsumerProtocolAssignment, DeleteGroupsResponse, DescribeGroupsResponse,
        FindCoordinatorResponse, ListGroupsResponse, OffsetCommitResponse, OffsetFetchResponse,
        ResponseKind,
    };
    use caudal_protocol::kafka_protocol::protocol::Encodable;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn config() -> ClientConfig {
        ClientConfig {
            retry_backoff: Duration::from_millis(1),
            api_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        }
    }

    /// The default APIs plus the group APIs up to the given maxima.
    fn group_apis(find: i16, fetch: i16) -> Vec<(ApiKey, i16, i16)> {
        let mut apis = DEFAULT_APIS.to_vec();
        apis.extend([
            (ApiKey::FindCoordinator, 0, find),
            (ApiKey::OffsetFetch, 1, fetch),
            (ApiKey::OffsetCommit, 2, 9),
            (ApiKey::DescribeGroups, 0, 5),
            (ApiKey::ListGroups, 0, 5),
            (ApiKey::DeleteGroups, 0, 2),
        ]);
        apis
    }

    fn encode_assignment(version: i16, topics: &[(&str, &[i32])]) -> Bytes {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    WireTopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string((*topic).to_owned())))
                        .with_partitions(partitions.to_vec())
                })
                .collect(),
        );
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        assignment.encode(&mut buf, version.min(3)).unwrap();
        buf.freeze()
    }

    /// A FindCoordinator answer naming `node` for every key, in the shape of `version`.
    fn find_answer(node: &FakeNode, version: i16, keys: &[StrBytes]) -> ResponseKind {
        if version >= 4 {
            ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default().with_coordinators(
                    keys.iter()
                        .map(|key| {
                            WireCoordinator::default()
                                .with_key(key.clone())
                                .with_node_id(BrokerId(node.node_id))
                                .with_host(StrBytes::from_string(node.host.clone()))
                                .with_port(node.port)
                        })
                        .collect(),
                ),
            )
        } else {
            ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(node.node_id))
                    .with_host(StrBytes::from_string(node.host.clone()))
                    .with_port(node.port),
            )
        }
    }

    #[test]
    fn decodes_consumer_assignments_of_every_version() {
        for version in [0, 1, 3, 4] {
            let bytes = encode_assignment(version, &[("orders", &[2, 0]), ("audit", &[1])]);
            assert_eq!(
                decode_consumer_assignment(&bytes).unwrap(),
                vec![
                    TopicPartition::new("audit", 1),
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 2),
                ],
                "version {version}"
            );
        }
        assert_eq!(decode_consumer_assignment(&[]).unwrap(), vec![]);
    }

    #[test]
    fn rejects_malformed_assignments_without_allocating() {
        let bytes = encode_assignment(1, &[("orders", &[0, 1, 2])]);
        for cut in 1..bytes.len() - 4 {
            // Every truncation before the user data fails (the last 4 bytes are the null user data).
            assert!(
                decode_consumer_assignment(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A huge topic count in a tiny buffer.
        let hostile = [0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 0];
        let error = decode_consumer_assignment(&hostile).unwrap_err();
        assert!(error.contains("does not fit"), "{error}");
        assert!(decode_consumer_assignment(&[0xff, 0xff, 0, 0, 0, 0]).is_err());
        // Not UTF-8.
        let bad_name = [0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 0];
        assert!(decode_consumer_assignment(&bad_name).is_err());
    }

    #[tokio::test]
    async fn describes_a_group_at_its_coordinator_after_coordinator_errors() {
        // Broker 1 answers FindCoordinator (COORDINATOR_NOT_AVAILABLE first, then "broker 2");
        // broker 2 says NOT_COORDINATOR once, then describes the group.
        let first = FakeBroker::bind().await;
        let second = FakeBroker::bind().await;
        let nodes = [first.node(1), second.node(2)];
        for broker in [&first, &second] {
            broker.set_apis(&group_apis(6, 9));
        }
        let lookups = Arc::new(AtomicUsize::new(0));
        {
            let nodes = nodes.clone();
            let lookups = lookups.clone();
            first.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    Some(ResponseKind::Metadata(metadata_response(&nodes, &[])))
                }
                RequestKind::FindCoordinator(find) => {
                    let call = lookups.fetch_add(1, Ordering::SeqCst);
                    if call == 0 {
                        return Some(ResponseKind::FindCoordinator(
                            FindCoordinatorResponse::default().with_coordinators(vec![
                                WireCoordinator::default()
                                    .with_key(find.coordinator_keys[0].clone())
                                    .with_error_code(15),
                            ]),
                        ));
                    }
                    Some(find_answer(
                        &nodes[1],
                        request.version(),
                        &find.coordinator_keys,
                    ))
                }
                _ => None,
            });
        }
        let describes = Arc::new(AtomicUsize::new(0));
        {
            let nodes = nodes.clone();
            let describes = describes.clone();
            let assignment = encode_assignment(3, &[("orders", &[0, 1])]);
            second.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    Some(ResponseKind::Metadata(metadata_response(&nodes, &[])))
                }
                RequestKind::DescribeGroups(describe) => {
                    let call = describes.fetch_add(1, Ordering::SeqCst);
                    let group = DescribedGroup::default().with_group_id(describe.groups[0].clone());
                    let group = if call == 0 {
                        group.with_error_code(16)
                    } else {
                        group
                            .with_group_state(StrBytes::from_static_str("Stable"))
                            .with_protocol_type(StrBytes::from_static_str("consumer"))
                            .with_protocol_data(StrBytes::from_static_str("range"))
                            .with_members(vec![
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_static_str("m-1"))
                                    .with_group_instance_id(Some(StrBytes::from_static_str(
                                        "static-1",
                                    )))
                                    .with_client_id(StrBytes::from_static_str("app"))
                                    .with_client_host(StrBytes::from_static_str("/10.0.0.1"))
                                    .with_member_assignment(assignment.clone()),
                            ])
                    };
                    Some(ResponseKind::DescribeGroups(
                        DescribeGroupsResponse::default().with_groups(vec![group]),
                    ))
                }
                _ => None,
            });
        }
        let client = Client::connect(&[first.address()], config()).await.unwrap();
        let description = client.describe_group("app").await.unwrap();
        assert_eq!(description.coordinator.node_id, NodeId(2));
        assert_eq!(description.coordinator.address(), second.address());
        assert_eq!(description.state, "Stable");
        assert_eq!(description.protocol, "range");
        assert!(description.exists() && !description.is_inactive());
        let member = &description.members[0];
        assert_eq!(member.group_instance_id.as_deref(), Some("static-1"));
        assert_eq!(
            member.assigned_partitions(),
            &[
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 1)
            ]
        );
        assert_eq!(
            description
                .owner(&TopicPartition::new("orders", 1))
                .map(|m| m.member_id.as_str()),
            Some("m-1")
        );
        assert!(
            description
                .owner(&TopicPartition::new("orders", 2))
                .is_none()
        );
        // Lookup retried after COORDINATOR_NOT_AVAILABLE, and again after NOT_COORDINATOR.
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
        assert_eq!(describes.load(Ordering::SeqCst), 2);
        // Batched lookups (v4+) name the group in coordinator_keys.
        let find = first
            .requests()
            .into_iter()
            .find_map(|request| match request.body {
                RequestKind::FindCoordinator(find) => {
                    Some((request.header.request_api_version, find))
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(find.0, 6);
        assert_eq!(
            find.1.coordinator_keys,
            vec![StrBytes::from_static_str("app")]
        );
        assert_eq!(find.1.key_type, 0);
    }

    #[tokio::test]
    async fn gives_up_on_a_loading_coordinator_at_the_api_timeout() {
        let broker = FakeBroker::bind().await;
        broker.set_apis(&group_apis(3, 7));
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            RequestKind::FindCoordinator(_) => Some(ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default().with_error_code(14),
            )),
            _ => None,
        });
        let client = Client::connect(
            &[broker.address()],
            ClientConfig {
                api_timeout: Duration::from_millis(300),
                retry_backoff: Duration::from_millis(20),
                ..ClientConfig::default()
            },
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let error = client.describe_group("app").await.unwrap_err();
        assert_eq!(
            error.kafka_code(),
            Some(ErrorCode::CoordinatorLoadInProgress)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let lookups = broker.requests_of(ApiKey::FindCoordinator);
        assert!((2..=20).contains(&lookups), "{lookups}");
        // v3 and below: one group per request, with the key type.
        let find = broker
            .requests()
            .into_iter()
            .find_map(|request| match request.body {
                RequestKind::FindCoordinator(find) => Some(find),
                _ => None,
            })
            .unwrap();
        assert_eq!(find.key.as_str(), "app");
    }

    #[tokio::test]
    async fn fetches_and_commits_offsets_in_both_request_shapes() {
        for fetch_max in [7, 9] {
            let broker = FakeBroker::bind().await;
            broker.set_apis(&group_apis(6, fetch_max));
            let node = broker.node(1);
            broker.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                    std::slice::from_ref(&node),
                    &[],
                ))),
                RequestKind::FindCoordinator(find) => Some(find_answer(
                    &node,
                    request.version(),
                    &find.coordinator_keys,
                )),
                RequestKind::OffsetFetch(_) if request.version() >= 8 => Some(
                    ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(vec![
                            OffsetFetchResponseGroup::default()
                                .with_group_id(GroupId(StrBytes::from_static_str("app")))
                                .with_topics(vec![
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(StrBytes::from_static_str("orders")))
                                        .with_partitions(vec![
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(0)
                                                .with_committed_offset(7)
                                                .with_committed_leader_epoch(2),
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(1)
                                                .with_committed_offset(-1),
                                        ]),
                                ]),
                        ])),
                ),
                RequestKind::OffsetFetch(_) => Some(ResponseKind::OffsetFetch(
                    OffsetFetchResponse::default().with_topics(vec![
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("orders")))
                            .with_partitions(vec![
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(7)
                                    .with_committed_leader_epoch(2)
                                    .with_metadata(Some(StrBytes::from_static_str("m"))),
                            ]),
                    ]),
                )),
                RequestKind::OffsetCommit(commit) => Some(ResponseKind::OffsetCommit(
                    OffsetCommitResponse::default().with_topics(
                        commit
                            .topics
                            .iter()
                            .map(|topic| {
                                OffsetCommitResponseTopic::default()
                                    .with_name(topic.name.clone())
                                    .with_partitions(
                                        topic
                                            .partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    // Partition 5 does not exist.
                                                    .with_error_code(if p.partition_index == 5 {
                                                        3
                                                    } else {
                                                        0
                                                    })
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                )),
                _ => None,
            });
            let client = Client::connect(&[broker.address()], config())
                .await
                .unwrap();
            let offsets = client.committed_offsets("app", None).await.unwrap();
            assert_eq!(offsets.len(), 1, "v{fetch_max}: {offsets:?}");
            let committed = &offsets[&TopicPartition::new("orders", 0)];
            assert_eq!(committed.offset, Offset(7));
            assert_eq!(committed.leader_epoch, Some(LeaderEpoch(2)));

            let wanted = [
                (TopicPartition::new("orders", 0), Offset(3)),
                (TopicPartition::new("orders", 5), Offset(0)),
                (TopicPartition::new("audit", 1), Offset(9)),
            ]
            .into_iter()
            .collect();
            let results = client.commit_offsets("app", &wanted).await.unwrap();
            assert!(results[&TopicPartition::new("orders", 0)].is_ok());
            assert!(results[&TopicPartition::new("audit", 1)].is_ok());
            assert_eq!(
                results[&TopicPartition::new("orders", 5)]
                    .as_ref()
                    .unwrap_err()
                    .code,
                ErrorCode::UnknownTopicOrPartition
            );
            let requests = broker.requests();
            let fetch = requests
                .iter()
                .find_map(|request| match &request.body {
                    RequestKind::OffsetFetch(fetch) => Some(fetch.clone()),
                    _ => None,
                })
                .unwrap();
            if fetch_max >= 8 {
                assert_eq!(fetch.groups[0].group_id.0.as_str(), "app");
                assert!(fetch.groups[0].topics.is_none(), "all topics");
            } else {
                assert_eq!(fetch.group_id.0.as_str(), "app");
                assert!(fetch.topics.is_none(), "all topics");
            }
            let commit = requests
                .iter()
                .find_map(|request| match &request.body {
                    RequestKind::OffsetCommit(commit) => Some(commit.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(commit.generation_id_or_member_epoch, -1);
            assert!(commit.member_id.is_empty());
            assert_eq!(commit.topics.len(), 2);
        }
    }

    #[tokio::test]
    async fn lists_groups_on_every_broker_with_a_state_filter() {
        let first = FakeBroker::bind().await;
        let second = FakeBroker::bind().await;
        let nodes = [first.node(1), second.node(2)];
        for (index, broker) in [&first, &second].into_iter().enumerate() {
            broker.set_apis(&group_apis(6, 9));
            let nodes = nodes.clone();
            let loads = Arc::new(AtomicUsize::new(0));
            broker.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    Some(ResponseKind::Metadata(metadata_response(&nodes, &[])))
                }
                RequestKind::ListGroups(list) => {
                    // The second broker is loading at first.
                    if index == 1 && loads.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Some(ResponseKind::ListGroups(
                            ListGroupsResponse::default().with_error_code(14),
                        ));
                    }
                    let groups = [("a", "Stable"), ("b", "Empty"), ("shared", "Empty")]
                        .into_iter()
                        .filter(|(name, _)| index == 0 || *name != "a")
                        .filter(|(_, state)| {
                            list.states_filter.is_empty()
                                || list.states_filter.iter().any(|s| s.as_str() == *state)
                        })
                        .map(|(name, state)| {
                            WireListedGroup::default()
                                .with_group_id(GroupId(StrBytes::from_string(format!(
                                    "{name}{}",
                                    if name == "shared" {
                                        String::new()
                                    } else {
                                        index.to_string()
                                    }
                                ))))
                                .with_protocol_type(StrBytes::from_static_str("consumer"))
                                .with_group_state(StrBytes::from_static_str(state))
                        })
                        .collect();
                    Some(ResponseKind::ListGroups(
                        ListGroupsResponse::default().with_groups(groups),
                    ))
                }
                _ => None,
            });
        }
        let client = Client::connect(&[first.address()], config()).await.unwrap();
        let listing = client.list_groups(&[]).await.unwrap();
        assert!(listing.failures.is_empty(), "{:?}", listing.failures);
        let names: Vec<&str> = listing.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(names, ["a0", "b0", "b1", "shared"]);
        assert_eq!(listing.groups[0].state.as_deref(), Some("Stable"));
        assert_eq!(listing.groups[2].broker, NodeId(2));
        let empty = client.list_groups(&["Empty".to_owned()]).await.unwrap();
        let names: Vec<&str> = empty.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(names, ["b0", "b1", "shared"]);
    }

    #[tokio::test]
    async fn deletes_groups_reporting_each_error() {
        let broker = FakeBroker::bind().await;
        broker.set_apis(&group_apis(6, 9));
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            RequestKind::FindCoordinator(find) => {
                Some(find_answer(&me, request.version(), &find.coordinator_keys))
            }
            RequestKind::DeleteGroups(delete) => Some(ResponseKind::DeleteGroups(
                DeleteGroupsResponse::default().with_results(
                    delete
                        .groups_names
                        .iter()
                        .map(|group| {
                            let code = match group.0.as_str() {
                                "busy" => 68,
                                "missing" => 69,
                                _ => 0,
                            };
                            DeletableGroupResult::default()
                                .with_group_id(group.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                ),
            )),
            _ => None,
        });
        let client = Client::connect(&[broker.address()], config())
            .await
            .unwrap();
        let groups: Vec<String> = ["old", "busy", "missing", "old"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let results = client.delete_groups(&groups).await;
        let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["old", "busy", "missing"]);
        assert!(results[0].1.is_ok());
        assert_eq!(
            results[1].1.as_ref().unwrap_err().kafka_code(),
            Some(ErrorCode::NonEmptyGroup)
        );
        assert_eq!(
            results[2].1.as_ref().unwrap_err().to_string(),
            "GROUP_ID_NOT_FOUND (69): group \"missing\""
        );
        // One batched lookup and one DeleteGroups for the three groups.
        assert_eq!(broker.requests_of(ApiKey::FindCoordinator), 1);
        assert_eq!(broker.requests_of(ApiKey::DeleteGroups), 1);
    }
}
