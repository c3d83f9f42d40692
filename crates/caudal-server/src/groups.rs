//! The group coordinator runtime: hosts one [`GroupCoordinatorShard`] per `__consumer_offsets`
//! partition this broker leads, and is the I/O side of the shard's contract
//! (`docs/coordinator.md`, "What the runtime must do").
//!
//! Each shard runs in its own task, which alone calls it (the shard is `&mut self`). Handlers send
//! it a [`Call`] (operations that may write records or park) or a [`Query`] (read-only) and await
//! the answer. The task:
//! - **loads** the shard by replaying the partition from its start to the high watermark;
//! - **appends** each call's records to the partition as one batch, then releases the call's
//!   responses only once everything appended so far is durable (the partition's `acks=all`
//!   level: fsync with `caudal.acks.all.fsync`), so a client that saw a commit succeed finds it
//!   after any crash; read-only answers wait the same way, so they never show state that could
//!   still be lost;
//! - keeps the shard's **timers** (one per key, wall-clock deadlines) and calls `on_timer`;
//! - runs **offset expiry** every `offsets.retention.check.interval.ms`;
//! - on an append or flush failure **unloads** the shard (every waiting request gets
//!   NOT_COORDINATOR) and reloads it from the log, so memory never runs ahead of the log.
//!
//! [`GroupCoordinator::reconcile`] starts a shard for every `__consumer_offsets` partition this
//! node leads and stops those it no longer leads; with replication, leadership changes arrive the
//! same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use caudal_coordinator::{
    CoordinatorResult, DescribedGroup, Effect, ErrorCode, GroupCoordinatorShard, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListedGroup, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, Record, RecordError, RequestId, ResponseBody, SyncGroupRequest, TimerKey,
    partition_for_group,
};
use caudal_metadata::MetadataImage;
use caudal_model::{NodeId, Offset, PartitionIndex, RecordBatchHeader, TimestampMs};
use caudal_protocol::kafka_protocol::indexmap::IndexMap;
use caudal_protocol::kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use caudal_storage::{PartitionLog, StorageError};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::now_ms;
use crate::config::GroupSettings;
use crate::partition::Partition;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Requests one shard may have queued before senders wait.
const COMMANDS_QUEUED_MAX: usize = 1024;
/// The largest decompressed batch the loader accepts.
const LOAD_DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Reloads in a row before a shard whose records cannot be appended gives up.
const LOAD_ATTEMPTS_MAX: usize = 3;

/// An operation that may write records or park until a rebalance completes.
#[derive(Debug)]
pub enum Call {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetDelete {
        group_id: String,
        topics: Vec<(String, Vec<PartitionIndex>)>,
    },
    DeleteGroups(Vec<String>),
}

/// A read-only request.
#[derive(Debug)]
pub enum Query {
    OffsetFetch(OffsetFetchRequest),
    DescribeGroups {
        version: i16,
        group_ids: Vec<String>,
    },
    ListGroups {
        states: Vec<String>,
        types: Vec<String>,
    },
}

/// The answer to a [`Query`].
#[derive(Debug)]
pub enum Answer {
    OffsetFetch(OffsetFetchResponse),
    DescribeGroups(Vec<DescribedGroup>),
    ListGroups(Result<Vec<ListedGroup>, ErrorCode>),
}

/// What a request waits for: its answer, or the error the whole request gets (NOT_COORDINATOR,
/// COORDINATOR_NOT_AVAILABLE).
pub type Reply<T> = Result<T, ErrorCode>;

enum Command {
    Call(Call, oneshot::Sender<Reply<ResponseBody>>),
    Query(Query, oneshot::Sender<Reply<Answer>>),
    /// Records the shard appended could not be made durable.
    DurabilityFailed,
}

struct ShardHandle {
    partition: Arc<Partition>,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
}

/// The group coordinators of this broker.
pub struct GroupCoordinator {
    node_id: NodeId,
    settings: GroupSettings,
    /// Whether durability means fsync (`caudal.acks.all.fsync`).
    fsync: bool,
    shards: RwLock<HashMap<i32, ShardHandle>>,
}

impl GroupCoordinator {
    pub fn new(node_id: NodeId, settings: GroupSettings, fsync: bool) -> Self {
        Self {
            node_id,
            settings,
            fsync,
            shards: RwLock::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    /// The `__consumer_offsets` partition that owns `group_id`, if the topic exists.
    pub fn partition_of(image: &MetadataImage, group_id: &str) -> Option<i32> {
        let topic = image.topic(OFFSETS_TOPIC)?;
        let partitions = i32::try_from(topic.partitions.len()).ok()?;
        (partitions > 0).then(|| partition_for_group(group_id, partitions))
    }

    /// The coordinator of `group_id`: the leader of its `__consumer_offsets` partition.
    pub fn coordinator_of(image: &MetadataImage, group_id: &str) -> Option<NodeId> {
        let partition = Self::partition_of(image, group_id)?;
        let leader = image
            .topic(OFFSETS_TOPIC)?
            .partitions
            .get(&PartitionIndex(partition))?
            .leader;
        (leader.0 >= 0).then_some(leader)
    }

    /// The shard of `group_id`. Without one: COORDINATOR_LOAD_IN_PROGRESS when this node leads
    /// the group's partition (the shard is being started: the metadata is visible before the
    /// partition is hosted), NOT_COORDINATOR when another node does, COORDINATOR_NOT_AVAILABLE
    /// when nobody does.
    fn sender(&self, image: &MetadataImage, group_id: &str) -> Reply<mpsc::Sender<Command>> {
        let partition =
            Self::partition_of(image, group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        if let Some(handle) = self.shards.read().get(&partition) {
            return Ok(handle.commands.clone());
        }
        match Self::coordinator_of(image, group_id) {
            Some(leader) if leader == self.node_id => Err(ErrorCode::CoordinatorLoadInProgress),
            Some(_) => Err(ErrorCode::NotCoordinator),
            None => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Runs `call` on the shard of `group_id` and waits for its answer.
    pub async fn call(
        &self,
        image: &MetadataImage,
        group_id: &str,
        call: Call,
    ) -> Reply<ResponseBody> {
        let sender = self.sender(image, group_id)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Command::Call(call, reply))
            .await
            .map_err(|_| ErrorCode::NotCoordinator)?;
        answer.await.unwrap_or(Err(ErrorCode::NotCoordinator))
    }

    /// Runs a read-only `query` on the shard of `group_id`.
    pub async fn query(
        &self,
        image: &MetadataImage,
        group_id: &str,
        query: Query,
    ) -> Reply<Answer> {
        let sender = self.sender(image, group_id)?;
        query_shard(sender, query).await
    }

    /// Runs `query` on every shard this broker hosts.
    pub async fn query_all(&self, query: impl Fn() -> Query) -> Vec<Reply<Answer>> {
        let senders: Vec<_> = self
            .shards
            .read()
            .values()
            .map(|handle| handle.commands.clone())
            .collect();
        futures::future::join_all(
            senders
                .into_iter()
                .map(|sender| query_shard(sender, query())),
        )
        .await
    }

    /// Starts a shard for every `__consumer_offsets` partition this node leads and hosts, and
    /// stops the shards of partitions it no longer leads (or whose log was replaced).
    pub fn reconcile(
        &self,
        image: &MetadataImage,
        node_id: NodeId,
        hosted: &HashMap<caudal_model::TopicPartition, Arc<Partition>>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let mut wanted: HashMap<i32, Arc<Partition>> = HashMap::new();
        if let Some(topic) = image.topic(OFFSETS_TOPIC) {
            for (index, registration) in &topic.partitions {
                if registration.leader != node_id {
                    continue;
                }
                let key = caudal_model::TopicPartition::new(OFFSETS_TOPIC, *index);
                if let Some(partition) = hosted.get(&key) {
                    wanted.insert(index.0, partition.clone());
                }
            }
        }
        let mut shards = self.shards.write();
        shards.retain(|index, handle| {
            let keep = wanted
                .get(index)
                .is_some_and(|partition| Arc::ptr_eq(partition, &handle.partition));
            if !keep {
                tracing::info!(partition = index, "group coordinator shard stopping");
                handle.stop.cancel();
            }
            keep
        });
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(_) => {
                if wanted.keys().any(|index| !shards.contains_key(index)) {
                    tracing::error!("group coordinators cannot start outside the runtime");
                }
                return;
            }
        };
        for (index, partition) in wanted {
            if shards.contains_key(&index) {
                continue;
            }
            let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
            let stop = shutdown.child_token();
            let task = ShardTask {
                partition: partition.clone(),
                settings: self.settings.clone(),
                fsync: self.fsync,
                shard: GroupCoordinatorShard::new(self.settings.coordinator.clone(), 0),
                timers: BTreeSet::new(),
                deadlines: HashMap::new(),
                waiters: HashMap::new(),
                next_request: 0,
                appended_end: Offset(0),
                commands: commands.downgrade(),
            };
            tasks.spawn_on(task.run(receiver, stop.clone()), &runtime);
            shards.insert(
                index,
                ShardHandle {
                    partition,
                    commands,
                    stop,
                },
            );
        }
    }
}

async fn query_shard(sender: mpsc::Sender<Command>, query: Query) -> Reply<Answer> {
    let (reply, answer) = oneshot::channel();
    sender
        .send(Command::Query(query, reply))
        .await
        .map_err(|_| ErrorCode::NotCoordinator)?;
    answer.await.unwrap_or(Err(ErrorCode::NotCoordinator))
}

/// A response ready to go once the records before it are durable.
/// Kafka's default `offsets.commit.timeout.ms`: how long group records may take to reach the ISR.
const OFFSETS_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

enum Release {
    Call(oneshot::Sender<Reply<ResponseBody>>, ResponseBody),
    Query(oneshot::Sender<Reply<Answer>>, Answer),
}

impl Release {
    fn send(self) {
        match self {
            Release::Call(reply, body) => {
                let _ = reply.send(Ok(body));
            }
            Release::Query(reply, answer) => {
                let _ = reply.send(Ok(answer));
            }
        }
    }

    fn fail(self, error: ErrorCode) {
        match self {
            Release::Call(reply, _) => {
                let _ = reply.send(Err(error));
            }
            Release::Query(reply, _) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// One shard and the I/O around it; runs as one task.
struct ShardTask {
    partition: Arc<Partition>,
    settings: GroupSettings,
    fsync: bool,
    shard: GroupCoordinatorShard,
    /// Timers by deadline, and each key's deadline: one timer per key.
    timers: BTreeSet<(TimestampMs, TimerKey)>,
    deadlines: HashMap<TimerKey, TimestampMs>,
    /// Calls whose response the shard has not produced yet (parked JoinGroup/SyncGroup).
    waiters: HashMap<RequestId, oneshot::Sender<Reply<ResponseBody>>>,
    next_request: u64,
    /// The end of the last batch this shard appended: responses wait until it is durable.
    appended_end: Offset,
    /// For flush waiters to report a failure.
    commands: mpsc::WeakSender<Command>,
}

impl ShardTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let index = self.partition.topic_partition.partition.0;
        if !self.load().await {
            return;
        }
        let check_interval =
            Duration::from_millis(self.settings.offsets_retention_check_interval_ms as u64);
        let mut expiry =
            tokio::time::interval_at(tokio::time::Instant::now() + check_interval, check_interval);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_deadline = self.timers.first().map(|(deadline, _)| *deadline);
            let timer = async move {
                match next_deadline {
                    Some(deadline) => {
                        let wait = deadline.0.saturating_sub(now_ms().0).max(0);
                        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => {
                        if !self.handle(command).await {
                            return;
                        }
                    }
                    None => break,
                },
                _ = timer => {
                    if !self.fire_timers().await {
                        return;
                    }
                }
                _ = expiry.tick() => {
                    let result = self
                        .shard
                        .expire_offsets(now_ms(), self.settings.offsets_retention_ms);
                    if !self.settle(result).await {
                        return;
                    }
                }
            }
        }
        let unloaded = self.shard.unload();
        self.fail_all(unloaded, ErrorCode::NotCoordinator);
        // Requests still queued get NOT_COORDINATOR: the client finds the new coordinator.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            reject(command, ErrorCode::NotCoordinator);
        }
        tracing::info!(partition = index, "group coordinator shard stopped");
    }

    /// Replays the partition into a fresh shard. False when the log cannot be read: the shard
    /// stays down and its requests get NOT_COORDINATOR.
    async fn load(&mut self) -> bool {
        for _ in 0..LOAD_ATTEMPTS_MAX {
            match self.load_once().await {
                Some(true) => return true,
                Some(false) => continue,
                None => return false,
            }
        }
        tracing::error!(partition = %self.partition.topic_partition, "group coordinator shard gave up reloading");
        false
    }

    /// One load: `None` if the log cannot be read, `Some(false)` if the loaded shard's first
    /// records could not be appended.
    async fn load_once(&mut self) -> Option<bool> {
        let log = self.partition.log.clone();
        let settings = self.settings.clone();
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || load_shard(&log, &settings, seed)).await;
        let index = self.partition.topic_partition.partition.0;
        match loaded {
            Ok(Ok((shard, end, stats))) => {
                self.shard = shard;
                self.appended_end = end;
                self.timers.clear();
                self.deadlines.clear();
                tracing::info!(
                    partition = index,
                    records = stats.records,
                    groups = self.shard.group_ids().count(),
                    skipped = stats.skipped,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "group coordinator shard loaded"
                );
                let result = self.shard.on_loaded(now_ms());
                Some(self.apply(result))
            }
            Ok(Err(error)) => {
                tracing::error!(partition = index, %error, "loading group coordinator shard failed");
                None
            }
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }

    /// Handles one command; false when the shard had to stop.
    async fn handle(&mut self, command: Command) -> bool {
        let now = now_ms();
        match command {
            Command::Call(call, reply) => {
                let id = RequestId(self.next_request);
                self.next_request += 1;
                self.waiters.insert(id, reply);
                let result = match call {
                    Call::JoinGroup(request) => self.shard.join_group(id, request, now),
                    Call::SyncGroup(request) => self.shard.sync_group(id, request, now),
                    Call::Heartbeat(request) => self.shard.heartbeat(id, request, now),
                    Call::LeaveGroup(request) => self.shard.leave_group(id, request, now),
                    Call::OffsetCommit(request) => self.shard.offset_commit(id, request, now),
                    Call::OffsetDelete { group_id, topics } => {
                        self.shard.offset_delete(id, &group_id, topics, now)
                    }
                    Call::DeleteGroups(group_ids) => self.shard.delete_groups(id, group_ids, now),
                };
                self.settle(result).await
            }
            Command::Query(query, reply) => {
                let answer = match query {
                    Query::OffsetFetch(request) => {
                        Answer::OffsetFetch(self.shard.offset_fetch(&request))
                    }
                    Query::DescribeGroups { version, group_ids } => {
                        Answer::DescribeGroups(self.shard.describe_groups(version, &group_ids))
                    }
                    Query::ListGroups { states, types } => {
                        Answer::ListGroups(self.shard.list_groups(&states, &types))
                    }
                };
                self.release(vec![Release::Query(reply, answer)]);
                true
            }
            Command::DurabilityFailed => {
                tracing::error!(
                    partition = %self.partition.topic_partition,
                    "group records could not be made durable; reloading the shard"
                );
                let unloaded = self.shard.unload();
                self.fail_all(unloaded, ErrorCode::NotCoordinator);
                self.load().await
            }
        }
    }

    async fn fire_timers(&mut self) -> bool {
        let now = now_ms();
        while let Some((deadline, key)) = self.timers.first().cloned() {
            if deadline > now {
                break;
            }
            self.timers.remove(&(deadline, key.clone()));
            self.deadlines.remove(&key);
            let result = self.shard.on_timer(&key, now);
            if !self.settle(result).await {
                return false;
            }
        }
        true
    }

    /// Carries out a shard result and reloads the shard if its records could not be appended
    /// (false if the reload fails too: the shard stops).
    async fn settle(&mut self, result: CoordinatorResult) -> bool {
        if self.apply(result) {
            return true;
        }
        self.load().await
    }

    /// Carries out a shard result: append its records, keep its timers, release its responses
    /// once durable. False when the append failed: the shard's memory is then thrown away (every
    /// waiting request gets NOT_COORDINATOR) and it must be reloaded from the log.
    fn apply(&mut self, result: CoordinatorResult) -> bool {
        if !result.records.is_empty()
            && let Err(error) = self.append(&result.records)
        {
            tracing::error!(
                partition = %self.partition.topic_partition, %error,
                "appending group records failed; reloading the shard"
            );
            self.fail_all(result, ErrorCode::NotCoordinator);
            let unloaded = self.shard.unload();
            self.fail_all(unloaded, ErrorCode::NotCoordinator);
            return false;
        }
        let mut ready = Vec::new();
        for effect in result.effects {
            match effect {
                Effect::ScheduleTimer { key, deadline } => {
                    if let Some(previous) = self.deadlines.insert(key.clone(), deadline) {
                        self.timers.remove(&(previous, key.clone()));
                    }
                    self.timers.insert((deadline, key));
                }
                Effect::CancelTimer { key } => {
                    if let Some(previous) = self.deadlines.remove(&key) {
                        self.timers.remove(&(previous, key));
                    }
                }
                Effect::Respond(response) => {
                    if let Some(reply) = self.waiters.remove(&response.request) {
                        ready.push(Release::Call(reply, response.body));
                    }
                }
            }
        }
        self.release(ready);
        true
    }

    /// Answers every response in `result` (and drops its timers) with `error`, and clears the
    /// timer table: used when the shard's memory is being thrown away.
    fn fail_all(&mut self, result: CoordinatorResult, error: ErrorCode) {
        for response in result.responses() {
            if let Some(reply) = self.waiters.remove(&response.request) {
                let _ = reply.send(Err(error));
            }
        }
        self.timers.clear();
        self.deadlines.clear();
    }

    /// Sends `ready` now if everything appended is durable and on the ISR, else after the flush
    /// and the replication (as an `acks=all` produce; bounded by Kafka's default
    /// `offsets.commit.timeout.ms`, after which the requests get COORDINATOR_NOT_AVAILABLE).
    fn release(&self, ready: Vec<Release>) {
        if ready.is_empty() {
            return;
        }
        let wanted = self.appended_end;
        let durable = !self.fsync || self.partition.log.recovery_point() >= wanted;
        if durable && self.partition.high_watermark() >= wanted {
            ready.into_iter().for_each(Release::send);
            return;
        }
        let partition = self.partition.clone();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            if !durable && let Err(error) = partition.wait_durable(wanted).await {
                tracing::error!(partition = %partition.topic_partition, %error, "flushing group records failed");
                ready
                    .into_iter()
                    .for_each(|release| release.fail(ErrorCode::NotCoordinator));
                if let Some(commands) = commands.upgrade() {
                    let _ = commands.send(Command::DurabilityFailed).await;
                }
                return;
            }
            match partition
                .wait_replicated(wanted, OFFSETS_COMMIT_TIMEOUT)
                .await
            {
                Ok(()) => ready.into_iter().for_each(Release::send),
                Err(error) => {
                    tracing::warn!(partition = %partition.topic_partition, %error, "group records not replicated in time");
                    ready
                        .into_iter()
                        .for_each(|release| release.fail(ErrorCode::CoordinatorNotAvailable));
                }
            }
        });
    }

    fn append(&mut self, records: &[Record]) -> Result<(), String> {
        let now = now_ms();
        let batch = encode_records(records, now)?;
        let (outcome, _) = self
            .partition
            .append_as_leader(&batch, None, now)
            .map_err(|error| format!("{error:?}"))?;
        self.appended_end = outcome.last_offset.next();
        Ok(())
    }
}

fn reject(command: Command, error: ErrorCode) {
    match command {
        Command::Call(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Command::Query(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Command::DurabilityFailed => {}
    }
}

/// Encodes coordinator records as one uncompressed v2 batch (offsets assigned by the log).
fn encode_records(records: &[Record], now: TimestampMs) -> Result<Vec<u8>, String> {
    let wire: Vec<WireRecord> = records
        .iter()
        .enumerate()
        .map(|(index, record)| WireRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch while `offset - sequence` is constant.
            sequence: index as i32 - 1,
            timestamp: now.0,
            key: Some(record.encode_key()),
            value: record.encode_value(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        wire.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|error| format!("cannot encode group records: {error}"))?;
    Ok(buf.to_vec())
}

#[derive(Debug, Default)]
struct LoadStats {
    records: u64,
    skipped: u64,
}

/// Replays `log` from its start to its high watermark into a new shard (blocking I/O).
fn load_shard(
    log: &PartitionLog,
    settings: &GroupSettings,
    seed: u64,
) -> Result<(GroupCoordinatorShard, Offset, LoadStats), StorageError> {
    let mut shard = GroupCoordinatorShard::new(settings.coordinator.clone(), seed);
    let mut stats = LoadStats::default();
    // Single node: the high watermark is the log end offset.
    let end = log.log_end_offset();
    let partition = log.topic_partition().partition;
    let mut position = log.log_start_offset();
    while position < end {
        let read = log.read(position, settings.offsets_load_buffer_bytes, end, true)?;
        let mut bytes = read.records;
        if bytes.is_empty() {
            break;
        }
        let mut next = position;
        while !bytes.is_empty() {
            let Ok(size) = RecordBatchHeader::peek_size(&bytes) else {
                break;
            };
            if size > bytes.len() {
                break;
            }
            let batch = bytes.split_to(size);
            match caudal_protocol::records::decode_batches(
                partition,
                batch.clone(),
                position,
                LOAD_DECOMPRESSED_BYTES_MAX,
            ) {
                Ok(decoded) => {
                    for record in decoded.records {
                        replay(&mut shard, &record, &mut stats);
                    }
                    if let Some(after) = decoded.next_offset {
                        next = next.max(after);
                    }
                }
                Err(error) => {
                    tracing::error!(partition = %log.topic_partition(), %error, "skipping an unreadable batch of group records");
                    stats.skipped += 1;
                    if let Ok(header) = RecordBatchHeader::parse(&batch) {
                        next = next.max(header.next_offset());
                    }
                }
            }
        }
        if next <= position {
            // Nothing whole could be read: stop rather than spin.
            tracing::error!(partition = %log.topic_partition(), offset = position.0, "group records end in an unreadable batch");
            break;
        }
        position = next;
    }
    Ok((shard, end, stats))
}

fn replay(
    shard: &mut GroupCoordinatorShard,
    record: &caudal_protocol::records::ConsumerRecord,
    stats: &mut LoadStats,
) {
    let Some(key) = &record.key else {
        stats.skipped += 1;
        return;
    };
    match Record::decode(key, record.value.as_deref()) {
        Ok(decoded) => {
            stats.records += 1;
            shard.replay(decoded);
        }
        Err(RecordError::UnknownKeyVersion { version }) => {
            tracing::debug!(
                offset = record.offset.0,
                version,
                "skipping a group record of another kind"
            );
            stats.skipped += 1;
        }
        Err(error) => {
            tracing::warn!(offset = record.offset.0, %error, "skipping an unreadable group record");
            stats.skipped += 1;
        }
    }
}
