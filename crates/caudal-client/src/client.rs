//! [`Client`]: bootstrap, the metadata cache, one connection per broker, and routing of
//! produce / fetch / list-offsets requests to partition leaders with bounded metadata refreshes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use caudal_model::{LeaderEpoch, NodeId, Offset, PartitionIndex, TimestampMs};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use caudal_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use caudal_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use caudal_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use caudal_protocol::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, ProduceResponse, TopicName,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::cluster::{ClusterMetadata, TopicInfo};
use crate::connection::{Connection, ConnectionConfig, PendingResponse};
use crate::error::{ClientError, KafkaError, check_code};

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connection: ConnectionConfig,
    /// How many times a request is re-routed after a metadata refresh (stale leader, unknown
    /// partition, lost connection) before the error is returned.
    pub metadata_refreshes_max: u32,
    /// Wait before each refresh-and-retry (`retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// How long an admin operation may keep retrying retriable errors, such as a group
    /// coordinator that is still loading (`default.api.timeout.ms`).
    pub api_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            metadata_refreshes_max: 5,
            retry_backoff: Duration::from_millis(100),
            api_timeout: Duration::from_secs(60),
        }
    }
}

/// `acks` for produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker sends no response.
    None,
    /// `acks=1`: the leader has appended the batch.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has it (and, on Caudal, it is fsynced).
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ClientError::InvalidArgument(format!(
                "acks must be 0, 1 or all, not {other:?}"
            ))),
        }
    }
}

/// One batch for one partition in a produce request.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: PartitionIndex,
    /// One or more encoded v2 record batches.
    pub records: Bytes,
}

/// What the leader reported for an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset of the batch's first record; `-1` for `acks=0`.
    pub base_offset: Offset,
    /// Set when the topic uses `LogAppendTime`.
    pub log_append_time: Option<TimestampMs>,
    pub log_start_offset: Offset,
}

/// Which offset ListOffsets should look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark for consumers).
    Latest,
    /// The offset of the record with the largest timestamp (ListOffsets v7+).
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(timestamp) => timestamp,
        }
    }
}

/// A ListOffsets answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// `None` when no record matches (a timestamp after the last record).
    pub offset: Option<Offset>,
    pub timestamp: Option<TimestampMs>,
    pub leader_epoch: LeaderEpoch,
}

/// One partition of a fetch request.
#[derive(Debug, Clone)]
pub struct FetchPosition {
    pub topic: String,
    pub partition: PartitionIndex,
    pub offset: Offset,
    pub partition_bytes_max: i32,
}

/// Fetch settings shared by all partitions of a request.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    pub max_wait: Duration,
    pub bytes_min: i32,
    pub bytes_max: i32,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            bytes_min: 1,
            bytes_max: 50 << 20,
            isolation_level: 0,
        }
    }
}

/// What a fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: PartitionIndex,
    pub result: Result<FetchedData, ErrorCode>,
}

/// Records and watermarks of one fetched partition.
#[derive(Debug, Clone, Default)]
pub struct FetchedData {
    /// Raw record batches; the last one may be cut short by the byte limits.
    pub records: Bytes,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
}

struct State {
    metadata: ClusterMetadata,
    connections: HashMap<NodeId, Arc<Connection>>,
    /// A connection made through a bootstrap address, for requests any broker can answer.
    bootstrap: Option<Arc<Connection>>,
}

struct Inner {
    config: ClientConfig,
    bootstrap_servers: Vec<String>,
    state: Mutex<State>,
}

/// A connection pool and metadata cache for one Kafka cluster. Cheap to clone; clones share
/// connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap_servers", &self.inner.bootstrap_servers)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap server (tried in order) and learns the brokers.
    pub async fn connect(bootstrap: &[String], config: ClientConfig) -> Result<Self, ClientError> {
        let servers: Vec<String> = bootstrap
            .iter()
            .flat_map(|entry| entry.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no bootstrap server given".to_owned(),
            ));
        }
        let client = Client {
            inner: Arc::new(Inner {
                config,
                bootstrap_servers: servers,
                state: Mutex::new(State {
                    metadata: ClusterMetadata::default(),
                    connections: HashMap::new(),
                    bootstrap: None,
                }),
            }),
        };
        let connection = client.connect_bootstrap().await?;
        client.metadata_on(&connection, Some(&[]), false).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect_bootstrap(&self) -> Result<Arc<Connection>, ClientError> {
        let mut last_error = String::new();
        for address in &self.inner.bootstrap_servers {
            match Connection::connect(address, &self.inner.config.connection).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    self.state().bootstrap = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => {
                    tracing::debug!(%address, %error, "bootstrap server unreachable");
                    last_error = error.to_string();
                }
            }
        }
        Err(ClientError::NoBootstrapServer {
            servers: self.inner.bootstrap_servers.join(","),
            last_error,
        })
    }

    /// The connection to broker `node_id`, opened on first use and reopened after a failure.
    pub async fn connection(&self, node_id: NodeId) -> Result<Arc<Connection>, ClientError> {
        let address = {
            let state = self.state();
            if let Some(connection) = state.connections.get(&node_id)
                && !connection.is_closed()
            {
                return Ok(connection.clone());
            }
            match state.metadata.brokers.get(&node_id) {
                Some(broker) => broker.address(),
                None => {
                    return Err(ClientError::Connect {
                        broker: format!("node {node_id}"),
                        reason: "not in the cluster metadata".to_owned(),
                    });
                }
            }
        };
        let connection =
            Arc::new(Connection::connect(&address, &self.inner.config.connection).await?);
        let mut state = self.state();
        match state.connections.get(&node_id) {
            // Another task connected meanwhile: keep one connection per broker.
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                state.connections.insert(node_id, connection.clone());
                Ok(connection)
            }
        }
    }

    /// A live connection to any broker: an open one if there is one, else a new one.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let (open, brokers) = {
            let state = self.state();
            let open = state
                .bootstrap
                .iter()
                .chain(state.connections.values())
                .find(|connection| !connection.is_closed())
                .cloned();
            let brokers: Vec<NodeId> = state.metadata.brokers.keys().copied().collect();
            (open, brokers)
        };
        if let Some(connection) = open {
            return Ok(connection);
        }
        for node_id in brokers {
            if let Ok(connection) = self.connection(node_id).await {
                return Ok(connection);
            }
        }
        self.connect_bootstrap().await
    }

    /// The controller's connection if metadata names one, else any broker's (admin requests).
    pub(crate) async fn controller_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let controller = {
            let state = self.state();
            state
                .metadata
                .controller_id
                .filter(|id| state.metadata.brokers.contains_key(id))
        };
        match controller {
            Some(node_id) => match self.connection(node_id).await {
                Ok(connection) => Ok(connection),
                Err(_) => self.any_connection().await,
            },
            None => self.any_connection().await,
        }
    }

    /// A copy of the cached metadata.
    pub fn cached_metadata(&self) -> ClusterMetadata {
        self.state().metadata.clone()
    }

    /// The cached metadata of one topic.
    pub fn cached_topic(&self, topic: &str) -> Option<TopicInfo> {
        self.state().metadata.topic(topic).cloned()
    }

    /// Drops topics from the metadata cache (after admin changes), so the next lookup asks the
    /// cluster.
    pub fn forget_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        for topic in topics {
            state.metadata.topics.remove(topic);
        }
    }

    /// The cached leader of a partition.
    pub fn cached_leader(&self, topic: &str, partition: PartitionIndex) -> Option<NodeId> {
        self.state()
            .metadata
            .leader(topic, partition)
            .map(|broker| broker.node_id)
    }

    /// Asks the cluster for metadata: all topics (`None`), some, or only brokers (`Some(&[])`).
    /// The answer is merged into the cache and returned.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<ClusterMetadata, ClientError> {
        self.metadata_with(topics, false).await
    }

    /// [`Client::metadata`] with `allow_auto_topic_creation` (what producers send).
    pub async fn metadata_with(
        &self,
        topics: Option<&[String]>,
        allow_auto_topic_creation: bool,
    ) -> Result<ClusterMetadata, ClientError> {
        let mut last_error = None;
        for _ in 0..2 {
            let connection = self.any_connection().await?;
            match self
                .metadata_on(&connection, topics, allow_auto_topic_creation)
                .await
            {
                Ok(metadata) => return Ok(metadata),
                // The connection died under us: one more try on a fresh one.
                Err(error @ (ClientError::ConnectionLost { .. } | ClientError::Timeout { .. })) => {
                    last_error = Some(error)
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::Closed("client")))
    }

    async fn metadata_on(
        &self,
        connection: &Connection,
        topics: Option<&[String]>,
        allow_auto_topic_creation: bool,
    ) -> Result<ClusterMetadata, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_topic_creation);
        let response = connection.request(&request).await?;
        check_code(response.error_code, || "Metadata".to_owned(), None)?;
        let metadata = ClusterMetadata::from_response(&response);
        self.state().metadata.merge(metadata.clone());
        Ok(metadata)
    }

    /// The topic's metadata, refreshed from the cluster; `UNKNOWN_TOPIC_OR_PARTITION` (or the
    /// topic's other error) if the broker reports one.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        self.topic_with(topic, false).await
    }

    /// [`Client::topic`], letting the broker auto-create the topic if it is configured to.
    pub async fn topic_with(
        &self,
        topic: &str,
        allow_auto_topic_creation: bool,
    ) -> Result<TopicInfo, ClientError> {
        let names = [topic.to_owned()];
        let metadata = self
            .metadata_with(Some(&names), allow_auto_topic_creation)
            .await?;
        let info = metadata.topics.get(topic).cloned().ok_or_else(|| {
            ClientError::from(KafkaError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic:?}"),
            ))
        })?;
        match info.error {
            Some(code) => Err(KafkaError::new(code, format!("topic {topic:?}")).into()),
            None => Ok(info),
        }
    }

    /// The topic's metadata from the cache, refreshed (with bounded retries and backoff) while it
    /// is missing or has partitions without a leader — a new topic's leaders take a moment.
    pub async fn topic_with_leaders(
        &self,
        topic: &str,
        allow_auto_topic_creation: bool,
    ) -> Result<TopicInfo, ClientError> {
        let complete = |info: &TopicInfo, metadata: &ClusterMetadata| {
            !info.partitions.is_empty()
                && info.partitions.iter().all(|partition| {
                    partition
                        .leader
                        .is_some_and(|leader| metadata.brokers.contains_key(&leader))
                })
        };
        {
            let state = self.state();
            if let Some(info) = state.metadata.topic(topic)
                && complete(info, &state.metadata)
            {
                return Ok(info.clone());
            }
        }
        let mut attempt = 0;
        loop {
            match self.topic_with(topic, allow_auto_topic_creation).await {
                Ok(info) => {
                    let metadata = self.cached_metadata();
                    if complete(&info, &metadata)
                        || attempt >= self.inner.config.metadata_refreshes_max
                    {
                        return Ok(info);
                    }
                }
                Err(error)
                    if error.is_retriable()
                        && attempt < self.inner.config.metadata_refreshes_max => {}
                Err(error) => return Err(error),
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// Backoff before retry `attempt` (1-based): `retry_backoff` doubling, capped at 1 s.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.config.retry_backoff;
        base.saturating_mul(1 << attempt.saturating_sub(1).min(4))
            .min(Duration::from_secs(1).max(base))
    }

    /// Groups partitions of `topic` by their leader, refreshing metadata while some have none.
    /// Partitions still without a leader after the bounded refreshes come back in the error list.
    pub async fn group_by_leader(
        &self,
        topic: &str,
        partitions: &[PartitionIndex],
    ) -> Result<(BTreeMap<NodeId, Vec<PartitionIndex>>, Vec<PartitionIndex>), ClientError> {
        let mut attempt = 0;
        loop {
            let (grouped, missing) = {
                let state = self.state();
                let mut grouped: BTreeMap<NodeId, Vec<PartitionIndex>> = BTreeMap::new();
                let mut missing = Vec::new();
                for &partition in partitions {
                    match state.metadata.leader(topic, partition) {
                        Some(broker) => grouped.entry(broker.node_id).or_default().push(partition),
                        None => missing.push(partition),
                    }
                }
                (grouped, missing)
            };
            if missing.is_empty() || attempt >= self.inner.config.metadata_refreshes_max {
                return Ok((grouped, missing));
            }
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            attempt += 1;
            match self.topic(topic).await {
                Ok(_) => {}
                Err(error) if error.is_retriable() => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Produce versions from 13 name topics by id; fall back to 12 when an id is unknown.
    fn version_for_topics(
        &self,
        connection: &Connection,
        api_key: ApiKey,
        ids_known: bool,
    ) -> Result<i16, ClientError> {
        let version = connection.version(api_key)?;
        if version >= 13 && !ids_known {
            let names_max = 12;
            match connection.versions().broker_range(api_key) {
                Some((broker_min, _)) if broker_min <= names_max => Ok(names_max),
                _ => Err(ClientError::InvalidArgument(format!(
                    "{api_key:?} needs topic ids, and metadata has none for a topic"
                ))),
            }
        } else {
            Ok(version)
        }
    }

    fn topic_ids(&self, topics: impl Iterator<Item = String>) -> HashMap<String, Uuid> {
        let state = self.state();
        topics
            .filter_map(|name| {
                let id = state.metadata.topic(&name)?.topic_id?;
                Some((name, id))
            })
            .collect()
    }

    /// Sends one produce request with `batches` on `connection` (which should lead them all) and
    /// returns the pending response; `None` for `acks=0`.
    pub async fn send_produce(
        &self,
        connection: &Connection,
        acks: Acks,
        timeout: Duration,
        batches: &[PartitionBatch],
    ) -> Result<Option<(PendingResponse, ProduceRouting)>, ClientError> {
        let (request, routing) = self.produce_request(connection, acks, timeout, batches)?;
        let pending = connection
            .enqueue_request(&request, routing.version, acks != Acks::None)
            .await?;
        Ok((acks != Acks::None).then_some((pending, routing)))
    }

    /// Builds the produce request for `batches` at the version negotiated on `connection`.
    pub fn produce_request(
        &self,
        connection: &Connection,
        acks: Acks,
        timeout: Duration,
        batches: &[PartitionBatch],
    ) -> Result<(ProduceRequest, ProduceRouting), ClientError> {
        let ids = self.topic_ids(batches.iter().map(|batch| batch.topic.clone()));
        let ids_known = batches.iter().all(|batch| ids.contains_key(&batch.topic));
        let version = self.version_for_topics(connection, ApiKey::Produce, ids_known)?;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for batch in batches {
            let data = PartitionProduceData::default()
                .with_index(batch.partition.0)
                .with_records(Some(batch.records.clone()));
            match topics
                .iter_mut()
                .find(|topic| topic.name.0.as_str() == batch.topic)
            {
                Some(topic) => topic.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(batch.topic.clone())))
                        .with_topic_id(ids.get(&batch.topic).copied().unwrap_or_default())
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let request = ProduceRequest::default()
            .with_acks(acks.wire())
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(topics);
        Ok((
            request,
            ProduceRouting {
                version,
                topic_ids: ids,
                partitions: batches
                    .iter()
                    .map(|batch| (batch.topic.clone(), batch.partition))
                    .collect(),
            },
        ))
    }

    /// Produces `records` (encoded batches) to one partition, routed to its leader. Re-routes
    /// after a metadata refresh only on errors that prove the batch was not appended
    /// (`NOT_LEADER_OR_FOLLOWER`, unknown partition, no connection).
    pub async fn produce(
        &self,
        topic: &str,
        partition: PartitionIndex,
        records: Bytes,
        acks: Acks,
        timeout: Duration,
    ) -> Result<ProduceAck, ClientError> {
        let batch = [PartitionBatch {
            topic: topic.to_owned(),
            partition,
            records,
        }];
        let mut attempt = 0;
        loop {
            let result = async {
                let connection = self.leader_connection(topic, partition).await?;
                match self
                    .send_produce(&connection, acks, timeout, &batch)
                    .await?
                {
                    None => Ok(ProduceAck {
                        base_offset: Offset(-1),
                        log_append_time: None,
                        log_start_offset: Offset(-1),
                    }),
                    Some((pending, routing)) => {
                        let response: ProduceResponse = pending.wait().await?;
                        routing
                            .results(&response)
                            .into_iter()
                            .next()
                            .unwrap_or_else(|| Err(missing_partition(topic, partition)))
                    }
                }
            }
            .await;
            match result {
                Err(error)
                    if attempt < self.inner.config.metadata_refreshes_max
                        && not_appended(&error) =>
                {
                    attempt += 1;
                    tokio::time::sleep(self.backoff(attempt)).await;
                    let _ = self.topic(topic).await;
                }
                other => return other,
            }
        }
    }

    /// The connection to a partition's leader, refreshing metadata (bounded) if none is known.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: PartitionIndex,
    ) -> Result<Arc<Connection>, ClientError> {
        let (grouped, _) = self.group_by_leader(topic, &[partition]).await?;
        match grouped.into_keys().next() {
            Some(node_id) => self.connection(node_id).await,
            None => {
                let info = self.cached_topic(topic);
                match info {
                    Some(info) if info.partition(partition).is_none() => Err(KafkaError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!(
                            "{topic}-{partition}: the topic has {} partitions",
                            info.partitions.len()
                        ),
                    )
                    .into()),
                    _ => Err(ClientError::NoLeader {
                        topic: topic.to_owned(),
                        partition: partition.0,
                        attempts: self.inner.config.metadata_refreshes_max,
                    }),
                }
            }
        }
    }

    /// Looks up offsets of partitions of one topic, each at its leader, with bounded re-routing.
    pub async fn list_offsets(
        &self,
        topic: &str,
        requests: &[(PartitionIndex, OffsetSpec)],
    ) -> Result<BTreeMap<PartitionIndex, ListedOffset>, ClientError> {
        let mut remaining: Vec<(PartitionIndex, OffsetSpec)> = requests.to_vec();
        let mut found = BTreeMap::new();
        let mut attempt = 0;
        loop {
            let partitions: Vec<PartitionIndex> = remaining.iter().map(|(p, _)| *p).collect();
            let (grouped, missing) = self.group_by_leader(topic, &partitions).await?;
            let mut retry = Vec::new();
            let mut last_error = None;
            for (node_id, partitions) in grouped {
                let specs: Vec<(PartitionIndex, OffsetSpec)> = remaining
                    .iter()
                    .filter(|(p, _)| partitions.contains(p))
                    .copied()
                    .collect();
                match self.list_offsets_on(node_id, topic, &specs).await {
                    Ok(results) => {
                        for (partition, result) in results {
                            match result {
                                Ok(listed) => {
                                    found.insert(partition, listed);
                                }
                                Err(error) if error.needs_metadata_refresh() => {
                                    retry.extend(specs.iter().filter(|(p, _)| *p == partition));
                                    last_error = Some(error);
                                }
                                Err(error) => return Err(error),
                            }
                        }
                    }
                    Err(error) if error.needs_metadata_refresh() => {
                        retry.extend(specs);
                        last_error = Some(error);
                    }
                    Err(error) => return Err(error),
                }
            }
            for partition in missing {
                retry.extend(remaining.iter().filter(|(p, _)| *p == partition));
                last_error.get_or_insert(ClientError::NoLeader {
                    topic: topic.to_owned(),
                    partition: partition.0,
                    attempts: attempt,
                });
            }
            if retry.is_empty() {
                return Ok(found);
            }
            if attempt >= self.inner.config.metadata_refreshes_max {
                return Err(last_error.unwrap_or(ClientError::NoLeader {
                    topic: topic.to_owned(),
                    partition: retry[0].0.0,
                    attempts: attempt,
                }));
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
            let _ = self.topic(topic).await;
            remaining = retry;
        }
    }

    async fn list_offsets_on(
        &self,
        node_id: NodeId,
        topic: &str,
        specs: &[(PartitionIndex, OffsetSpec)],
    ) -> Result<Vec<(PartitionIndex, Result<ListedOffset, ClientError>)>, ClientError> {
        let connection = self.connection(node_id).await?;
        let version = connection.version(ApiKey::ListOffsets)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_timeout_ms(
                i32::try_from(self.inner.config.connection.request_timeout.as_millis())
                    .unwrap_or(i32::MAX),
            )
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(
                        specs
                            .iter()
                            .map(|(partition, spec)| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(partition.0)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(spec.wire())
                            })
                            .collect(),
                    ),
            ]);
        let response = connection.request_at(&request, version).await?;
        let mut results = Vec::new();
        for (partition, _) in specs {
            let answer = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition.0);
            let result = match answer {
                None => Err(missing_partition(topic, *partition)),
                Some(answer) => check_code(
                    answer.error_code,
                    || format!("ListOffsets {topic}-{partition}"),
                    None,
                )
                .map(|()| ListedOffset {
                    offset: (answer.offset >= 0).then_some(Offset(answer.offset)),
                    timestamp: (answer.timestamp >= 0).then_some(TimestampMs(answer.timestamp)),
                    leader_epoch: LeaderEpoch(answer.leader_epoch),
                }),
            };
            results.push((*partition, result));
        }
        Ok(results)
    }

    /// One fetch request to broker `node_id` for `positions`, which it should lead. Partition
    /// errors come back per partition; request-level failures as the `Err`.
    pub async fn fetch(
        &self,
        node_id: NodeId,
        positions: &[FetchPosition],
        options: FetchOptions,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let connection = self.connection(node_id).await?;
        let ids = self.topic_ids(positions.iter().map(|p| p.topic.clone()));
        let ids_known = positions.iter().all(|p| ids.contains_key(&p.topic));
        let version = self.version_for_topics(&connection, ApiKey::Fetch, ids_known)?;
        let mut topics: Vec<FetchTopic> = Vec::new();
        for position in positions {
            let partition = FetchPartition::default()
                .with_partition(position.partition.0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(position.offset.0)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(position.partition_bytes_max);
            match topics
                .iter_mut()
                .find(|topic| topic.topic.0.as_str() == position.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(position.topic.clone())))
                        .with_topic_id(ids.get(&position.topic).copied().unwrap_or_default())
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(i32::try_from(options.max_wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(options.bytes_min)
            .with_max_bytes(options.bytes_max)
            .with_isolation_level(options.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let response: FetchResponse = connection.request_at(&request, version).await?;
        check_code(response.error_code, || "Fetch".to_owned(), None)?;
        let names_by_id: HashMap<Uuid, &String> =
            ids.iter().map(|(name, id)| (*id, name)).collect();
        let mut results = Vec::with_capacity(positions.len());
        for position in positions {
            let answer = response
                .responses
                .iter()
                .filter(|topic| {
                    if version >= 13 {
                        names_by_id.get(&topic.topic_id).map(|name| name.as_str())
                            == Some(position.topic.as_str())
                    } else {
                        topic.topic.0.as_str() == position.topic
                    }
                })
                .flat_map(|topic| topic.partitions.iter())
                .find(|partition| partition.partition_index == position.partition.0);
            let result = match answer {
                None => Err(ErrorCode::UnknownTopicOrPartition),
                Some(answer) => match ErrorCode::try_from_code(answer.error_code) {
                    Some(code) => Err(code),
                    None => Ok(FetchedData {
                        records: answer.records.clone().unwrap_or_default(),
                        high_watermark: Offset(answer.high_watermark),
                        last_stable_offset: Offset(answer.last_stable_offset),
                        log_start_offset: Offset(answer.log_start_offset),
                    }),
                },
            };
            results.push(FetchedPartition {
                topic: position.topic.clone(),
                partition: position.partition,
                result,
            });
        }
        Ok(results)
    }
}

/// How to read a produce response back onto the batches of its request.
#[derive(Debug, Clone)]
pub struct ProduceRouting {
    pub version: i16,
    topic_ids: HashMap<String, Uuid>,
    partitions: Vec<(String, PartitionIndex)>,
}

impl ProduceRouting {
    /// One result per batch of the request, in request order.
    pub fn results(&self, response: &ProduceResponse) -> Vec<Result<ProduceAck, ClientError>> {
        self.partitions
            .iter()
            .map(|(topic, partition)| {
                let topic_id = self.topic_ids.get(topic);
                let answer = response
                    .responses
                    .iter()
                    .filter(|answer| {
                        if self.version >= 13 {
                            Some(&answer.topic_id) == topic_id
                        } else {
                            answer.name.0.as_str() == topic
                        }
                    })
                    .flat_map(|answer| answer.partition_responses.iter())
                    .find(|answer| answer.index == partition.0);
                let Some(answer) = answer else {
                    return Err(missing_partition(topic, *partition));
                };
                check_code(
                    answer.error_code,
                    || format!("Produce {topic}-{partition}"),
                    answer.error_message.as_ref(),
                )?;
                Ok(ProduceAck {
                    base_offset: Offset(answer.base_offset),
                    log_append_time: (answer.log_append_time_ms >= 0)
                        .then_some(TimestampMs(answer.log_append_time_ms)),
                    log_start_offset: Offset(answer.log_start_offset),
                })
            })
            .collect()
    }
}

fn missing_partition(topic: &str, partition: PartitionIndex) -> ClientError {
    ClientError::Protocol {
        broker: "leader".to_owned(),
        reason: format!("response has no result for {topic}-{partition}"),
    }
}

/// Errors after which a produce request certainly did not append anything.
fn not_appended(error: &ClientError) -> bool {
    match error {
        ClientError::Kafka(error) => matches!(
            error.code,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotEnoughReplicas
        ),
        ClientError::Connect { .. } | ClientError::NoLeader { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeBroker, metadata_response};
    use caudal_protocol::RequestKind;
    use caudal_protocol::kafka_protocol::messages::ListOffsetsResponse;
    use caudal_protocol::kafka_protocol::messages::ResponseKind;
    use caudal_protocol::kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use caudal_protocol::kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn config() -> ClientConfig {
        ClientConfig {
            retry_backoff: Duration::from_millis(1),
            ..ClientConfig::default()
        }
    }

    #[tokio::test]
    async fn tries_bootstrap_servers_in_turn() {
        let broker = FakeBroker::bind().await;
        let address = broker.address();
        let me = broker.node(1);
        broker.serve(move |request| match request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[],
            ))),
            _ => None,
        });
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let client = Client::connect(&[format!("{dead},{address}")], config())
            .await
            .unwrap();
        assert_eq!(client.cached_metadata().brokers.len(), 1);
        let error = Client::connect(std::slice::from_ref(&dead), config())
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::NoBootstrapServer { .. }));
        assert!(error.to_string().contains(&dead));
    }

    #[tokio::test]
    async fn reroutes_produce_after_not_leader() {
        // Broker 1 leads at first but says NOT_LEADER_OR_FOLLOWER; the second Metadata answer
        // names broker 2, which accepts.
        let first = FakeBroker::bind().await;
        let second = FakeBroker::bind().await;
        let nodes = [first.node(1), second.node(2)];
        let metadata_calls = Arc::new(AtomicUsize::new(0));
        let produce_answer = |code: i16, offset: i64| {
            ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default()
                            .with_index(0)
                            .with_error_code(code)
                            .with_base_offset(offset),
                    ]),
            ]))
        };
        for broker in [&first, &second] {
            let nodes = nodes.clone();
            let calls = metadata_calls.clone();
            let is_first = broker.address() == first.address();
            broker.serve(move |request| match &request.body {
                RequestKind::Metadata(_) => {
                    let call = calls.fetch_add(1, Ordering::SeqCst);
                    let leader = if call < 2 { 1 } else { 2 };
                    Some(ResponseKind::Metadata(metadata_response(
                        &nodes,
                        &[("t", &[(0, leader)])],
                    )))
                }
                RequestKind::Produce(_) if is_first => Some(produce_answer(6, -1)),
                RequestKind::Produce(_) => Some(produce_answer(0, 42)),
                _ => None,
            });
        }
        let client = Client::connect(&[first.address()], config()).await.unwrap();
        client.topic("t").await.unwrap();
        let ack = client
            .produce(
                "t",
                PartitionIndex(0),
                Bytes::from_static(b"batch"),
                Acks::All,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(ack.base_offset, Offset(42));
        assert_eq!(first.requests_of(ApiKey::Produce), 1);
        assert_eq!(second.requests_of(ApiKey::Produce), 1);
    }

    #[tokio::test]
    async fn gives_up_after_bounded_refreshes() {
        let broker = FakeBroker::bind().await;
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[("t", &[(0, -1)])],
            ))),
            _ => None,
        });
        let client = Client::connect(&[broker.address()], config())
            .await
            .unwrap();
        let error = client
            .produce(
                "t",
                PartitionIndex(0),
                Bytes::new(),
                Acks::Leader,
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::NoLeader { .. }), "{error}");
        // One Metadata at connect, then bounded refreshes per attempt.
        let refreshes = broker.requests_of(ApiKey::Metadata);
        assert!(refreshes > 2 && refreshes < 60, "{refreshes}");
    }

    #[tokio::test]
    async fn lists_offsets_at_the_leader() {
        let broker = FakeBroker::bind().await;
        let me = broker.node(1);
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[("t", &[(0, 1), (1, 1)])],
            ))),
            RequestKind::ListOffsets(list) => Some(ResponseKind::ListOffsets(
                ListOffsetsResponse::default().with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(list.topics[0].name.clone())
                        .with_partitions(
                            list.topics[0]
                                .partitions
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_offset(if p.timestamp == -2 { 0 } else { 10 })
                                })
                                .collect(),
                        ),
                ]),
            )),
            _ => None,
        });
        let client = Client::connect(&[broker.address()], config())
            .await
            .unwrap();
        let offsets = client
            .list_offsets(
                "t",
                &[
                    (PartitionIndex(0), OffsetSpec::Earliest),
                    (PartitionIndex(1), OffsetSpec::Latest),
                ],
            )
            .await
            .unwrap();
        assert_eq!(offsets[&PartitionIndex(0)].offset, Some(Offset(0)));
        assert_eq!(offsets[&PartitionIndex(1)].offset, Some(Offset(10)));
    }
}
