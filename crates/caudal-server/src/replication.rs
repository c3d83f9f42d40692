//! The replication runtime (DESIGN §2, §6; `docs/replica.md`): the follower fetcher tasks, the
//! periodic ISR check, and ISR proposals to the controller. The decisions are
//! `caudal-replica`'s state machines; [`crate::partition::Partition`] holds the leader's, a
//! fetcher task here drives the follower's and does its I/O (Fetch, OffsetForLeaderEpoch and
//! ListOffsets to the leader; append, truncate, fsync locally).
//!
//! Shape: one fetcher task per followed partition and leader epoch (Kafka runs one thread per
//! leader broker for all its partitions), each with its own connection to the leader. A new
//! leader, epoch or leader address cancels the task and starts another; so does the partition
//! leaving this broker and broker shutdown.
//!
//! How a follower reports what it has fsynced: with `caudal.acks.all.fsync` on, it fsyncs
//! everything it appended before it sends the next Fetch, so the fetch offset *is* its durable
//! offset (the leader counts `FollowerFetch::durable_offset = None` as "everything below the fetch
//! offset"). With it off, fetch offsets are log end offsets, as in Kafka. Every broker of a
//! cluster must use the same setting.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use caudal_client::{ClientError, Connection, ConnectionConfig};
use caudal_controller::command::{Command, CommandReply};
use caudal_controller::replication::AlterPartitionRequest;
use caudal_metadata::MetadataImage;
use caudal_model::{LeaderEpoch, NodeId, Offset, RecordBatchHeader};
use caudal_protocol::ErrorCode;
use caudal_replica::{
    EpochEndOffset, EpochRequest, EpochResponse, ErrorCode as ReplicaError, FetchRequest,
    FetchResponse, FollowerAction, FollowerState, FollowerStep, IsrProposal, LocalLog,
    RecordsRange,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest as WireFetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, now_ms};
use crate::config::BrokerConfig;
use crate::partition::Partition;

/// The Fetch version followers send: v12 has `last_fetched_epoch` and diverging epochs
/// (KIP-320) and still names topics (v13+ use topic ids).
const FOLLOWER_FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 4;
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;

/// The broker settings replication uses, by their Kafka names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    pub node_id: NodeId,
    /// `caudal.acks.all.fsync`.
    pub acks_all_fsync: bool,
    /// `replica.lag.time.max.ms` (Kafka's default 30000).
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.backoff.ms` (1000).
    pub fetch_backoff_ms: u64,
    /// `replica.fetch.wait.max.ms` (500).
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes` (1).
    pub fetch_min_bytes: i32,
    /// `replica.fetch.max.bytes` (1 MiB): per partition.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10 MiB).
    pub fetch_response_max_bytes: i32,
    /// `replica.socket.timeout.ms` (30000): a request to the leader must be answered within it.
    pub socket_timeout_ms: u64,
}

impl ReplicationConfig {
    /// Reads the settings from the broker's configured values, with Kafka's defaults.
    pub fn from_broker(config: &BrokerConfig) -> ReplicationConfig {
        let number = |name: &str, default: i64| -> i64 {
            config
                .values
                .get(name)
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(default)
        };
        ReplicationConfig {
            node_id: config.node_id,
            acks_all_fsync: config.acks_all_fsync,
            replica_lag_time_max_ms: number("replica.lag.time.max.ms", 30_000).max(1),
            fetch_backoff_ms: number("replica.fetch.backoff.ms", 1_000).max(0) as u64,
            fetch_wait_max_ms: number("replica.fetch.wait.max.ms", 500).clamp(0, i32::MAX as i64)
                as i32,
            fetch_min_bytes: number("replica.fetch.min.bytes", 1).clamp(0, i32::MAX as i64) as i32,
            fetch_max_bytes: number("replica.fetch.max.bytes", 1 << 20).clamp(1, i32::MAX as i64)
                as i32,
            fetch_response_max_bytes: number("replica.fetch.response.max.bytes", 10 << 20)
                .clamp(1, i32::MAX as i64) as i32,
            socket_timeout_ms: number("replica.socket.timeout.ms", 30_000).max(1) as u64,
        }
    }

    /// How often the leader checks its ISR (Kafka: `replica.lag.time.max.ms / 2`).
    pub fn isr_check_interval(&self) -> Duration {
        Duration::from_millis((self.replica_lag_time_max_ms / 2).clamp(1, 5_000) as u64)
    }
}

/// What [`Partition::apply_registration`] needs from the broker.
#[derive(Clone)]
pub struct ReplicaContext {
    pub config: ReplicationConfig,
    /// Cancelled at broker shutdown: every fetcher stops.
    pub shutdown: CancellationToken,
    /// The broker's task tracker: shutdown waits for the fetchers.
    pub tasks: TaskTracker,
}

impl ReplicaContext {
    pub fn from_broker(broker: &Broker) -> ReplicaContext {
        ReplicaContext {
            config: ReplicationConfig::from_broker(&broker.config),
            shutdown: broker.shutdown.clone(),
            tasks: broker.tasks.clone(),
        }
    }
}

/// The Kafka listener of broker `node_id` in the image, as `host:port`.
pub fn broker_address(image: &MetadataImage, node_id: NodeId) -> Option<String> {
    image.brokers.get(&node_id).map(|registration| {
        if registration.host.contains(':') {
            format!("[{}]:{}", registration.host, registration.port)
        } else {
            format!("{}:{}", registration.host, registration.port)
        }
    })
}

/// A replication decision's error code as the protocol's.
pub fn protocol_error(error: ReplicaError) -> ErrorCode {
    match error {
        ReplicaError::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
        ReplicaError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        ReplicaError::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
        ReplicaError::RequestTimedOut => ErrorCode::RequestTimedOut,
        ReplicaError::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
        ReplicaError::NotEnoughReplicasAfterAppend => ErrorCode::NotEnoughReplicasAfterAppend,
        ReplicaError::FencedLeaderEpoch => ErrorCode::FencedLeaderEpoch,
        ReplicaError::UnknownLeaderEpoch => ErrorCode::UnknownLeaderEpoch,
        ReplicaError::OffsetNotAvailable => ErrorCode::OffsetNotAvailable,
    }
}

/// Sends an ISR change of `partition` to the controller (Kafka's AlterPartition) and applies
/// the answer: a committed ISR goes to the leader state, a rejection reverts its pending state.
pub fn propose_isr(broker: &Arc<Broker>, partition: Arc<Partition>, proposal: IsrProposal) {
    let broker = broker.clone();
    broker.tasks.clone().spawn(async move {
        let topic_id = partition.topic_id;
        let index = partition.topic_partition.partition;
        match alter_partition(&broker, topic_id, index, proposal.clone()).await {
            Ok((isr, partition_epoch)) => {
                tracing::info!(
                    partition = %partition.topic_partition, ?isr, partition_epoch,
                    "ISR changed"
                );
                partition.on_isr_committed(isr, partition_epoch, now_ms());
            }
            Err(error) => {
                tracing::info!(
                    partition = %partition.topic_partition, ?proposal, error = ?error,
                    "ISR change rejected"
                );
                partition.on_isr_rejected(&proposal);
            }
        }
    });
}

/// AlterPartition: asks the controller to commit `proposal.new_isr` for one partition this
/// broker leads (the controller's `Command::AlterPartition`: FENCED_LEADER_EPOCH,
/// NOT_LEADER_OR_FOLLOWER, INVALID_UPDATE_VERSION, INVALID_REQUEST, INELIGIBLE_REPLICA as Kafka).
/// Returns the committed ISR and partition epoch; REQUEST_TIMED_OUT when no controller answered.
pub async fn alter_partition(
    broker: &Arc<Broker>,
    topic_id: uuid::Uuid,
    partition: caudal_model::PartitionIndex,
    proposal: IsrProposal,
) -> Result<(Vec<NodeId>, i32), ErrorCode> {
    let request = AlterPartitionRequest {
        topic_id,
        partition,
        leader_id: broker.config.node_id,
        leader_epoch: proposal.leader_epoch,
        partition_epoch: proposal.partition_epoch.value(),
        new_isr: proposal.new_isr,
    };
    let reply = broker
        .submit(Command::AlterPartition {
            partitions: vec![request],
        })
        .await;
    match reply {
        Ok(CommandReply::AlterPartition(mut results)) if results.len() == 1 => {
            match results.remove(0) {
                Ok(state) => Ok((state.isr, state.partition_epoch)),
                Err(error) => {
                    Err(ErrorCode::try_from_code(error.code())
                        .unwrap_or(ErrorCode::UnknownServerError))
                }
            }
        }
        Ok(other) => {
            tracing::error!(reply = ?other, "AlterPartition got an unexpected reply");
            Err(ErrorCode::UnknownServerError)
        }
        Err(error) => Err(crate::errors::metadata_error_code(&error)),
    }
}

/// The leader's periodic replication check (Kafka's ISR expiration task): every
/// `replica.lag.time.max.ms / 2`, each led partition drops expired produce waits and may propose
/// an ISR shrink.
pub async fn replication_loop(broker: Arc<Broker>) {
    let config = ReplicationConfig::from_broker(&broker.config);
    let mut tick = tokio::time::interval(config.isr_check_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        for partition in broker.partitions() {
            if let Some(proposal) = partition.replication_tick(now) {
                propose_isr(&broker, partition, proposal);
            }
        }
    }
}

/// Starts the fetcher of `partition` from `leader` at `leader_epoch`; cancel the returned token
/// to stop it.
pub(crate) fn start_fetcher(
    partition: Arc<Partition>,
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    address: String,
    context: &ReplicaContext,
) -> CancellationToken {
    let cancel = context.shutdown.child_token();
    let fetcher = Fetcher {
        partition,
        leader,
        leader_epoch,
        address,
        config: context.config.clone(),
        cancel: cancel.clone(),
    };
    context.tasks.spawn(fetcher.run());
    cancel
}

/// Why one session with the leader ended.
#[derive(Debug, thiserror::Error)]
enum FetchFailure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("storage: {0}")]
    Storage(#[from] caudal_storage::StorageError),
    #[error("{0}")]
    Response(String),
}

struct Fetcher {
    partition: Arc<Partition>,
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    address: String,
    config: ReplicationConfig,
    cancel: CancellationToken,
}

impl Fetcher {
    fn running(&self) -> bool {
        !self.cancel.is_cancelled() && self.partition.follows(self.leader_epoch)
    }

    /// Sleeps `replica.fetch.backoff.ms`; false when stopped meanwhile.
    async fn back_off(&self) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(Duration::from_millis(self.config.fetch_backoff_ms)) => self.running(),
        }
    }

    async fn run(self) {
        while self.running() {
            let connection_config = ConnectionConfig {
                client_id: format!("replica-{}", self.config.node_id.0),
                connect_timeout: Duration::from_millis(self.config.socket_timeout_ms),
                request_timeout: Duration::from_millis(
                    self.config.socket_timeout_ms + self.config.fetch_wait_max_ms as u64,
                ),
                in_flight_requests_max: 1,
                response_bytes_max: (self.config.fetch_response_max_bytes as usize)
                    .saturating_add(1 << 20),
            };
            let connected = tokio::select! {
                _ = self.cancel.cancelled() => return,
                connected = Connection::connect(&self.address, &connection_config) => connected,
            };
            let outcome = match connected {
                Ok(connection) => self.follow(&connection).await,
                Err(error) => Err(error.into()),
            };
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(
                        partition = %self.partition.topic_partition, leader = self.leader.0,
                        %error, "replica fetcher backing off"
                    );
                    if !self.back_off().await {
                        return;
                    }
                }
            }
        }
    }

    /// One session with the leader: a follower state built from the local log, driven until
    /// the fetcher is stopped (`Ok`) or something fails (`Err`: back off, reconnect, rebuild).
    async fn follow(&self, connection: &Connection) -> Result<(), FetchFailure> {
        let log = &self.partition.log;
        let fetch_version = connection
            .version(kafka_protocol::messages::ApiKey::Fetch)?
            .min(FOLLOWER_FETCH_VERSION);
        let mut state = FollowerState::new(
            self.leader,
            self.leader_epoch,
            LocalLog {
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                durable_offset: log.recovery_point(),
                high_watermark: self.partition.high_watermark(),
                latest_epoch: log.latest_epoch(),
            },
            fetch_version >= FOLLOWER_FETCH_VERSION,
        );
        while self.running() {
            if self.config.acks_all_fsync && log.recovery_point() < log.log_end_offset() {
                // The next fetch offset reports what is durable: fsync what was appended.
                self.partition.wait_durable(log.log_end_offset()).await?;
                state.on_flushed(log.recovery_point());
            }
            let action = match state.next_step(log.latest_epoch()) {
                FollowerStep::TruncateTo(offset) => FollowerAction::TruncateTo(offset),
                FollowerStep::SendEpochRequest(request) => {
                    let Some(response) = self.send_epoch_request(connection, &request).await?
                    else {
                        return Ok(());
                    };
                    state.on_epoch_response(&request, &response, |epoch| {
                        log.end_offset_for_epoch(epoch)
                    })
                }
                FollowerStep::SendFetch(request) => {
                    let Some((response, records)) =
                        self.send_fetch(connection, &request, fetch_version).await?
                    else {
                        return Ok(());
                    };
                    let action = state
                        .on_fetch_response(&request, &response, |epoch| {
                            log.end_offset_for_epoch(epoch)
                        })
                        .map_err(|error| FetchFailure::Response(format!("{error:?}")))?;
                    if let FollowerAction::Apply {
                        append: Some(_), ..
                    } = action
                    {
                        let appended = self.partition.append_as_follower(
                            self.leader_epoch,
                            &records,
                            now_ms(),
                        )?;
                        if !appended {
                            return Ok(());
                        }
                    }
                    action
                }
            };
            let action = if action == FollowerAction::ResolveOutOfRange {
                let Some((start, end)) = self.leader_log_offsets(connection).await? else {
                    return Ok(());
                };
                state.on_leader_log_offsets(start, end)
            } else {
                action
            };
            if !self.carry_out(action).await? {
                return Ok(());
            }
            if log.log_end_offset() != state.log_end_offset() {
                // Truncation removes whole batches: one that straddled the point went whole.
                // Start over from what the log really holds.
                return Err(FetchFailure::Response(format!(
                    "the log ends at {} where the follower state expects {}",
                    log.log_end_offset().0,
                    state.log_end_offset().0
                )));
            }
        }
        Ok(())
    }

    /// Carries out a follower action (appends were done by the caller). False when the fetcher
    /// was stopped meanwhile.
    async fn carry_out(&self, action: FollowerAction) -> Result<bool, FetchFailure> {
        match action {
            FollowerAction::Discard => Ok(true),
            FollowerAction::TruncateTo(offset) => self.truncate(offset, false).await,
            FollowerAction::TruncateFullyAndStartAt(offset) => self.truncate(offset, true).await,
            FollowerAction::Apply {
                append: _,
                high_watermark,
                log_start_offset,
            } => {
                self.partition.set_follower_high_watermark(high_watermark);
                let log = self.partition.log.clone();
                if log_start_offset > log.log_start_offset() {
                    let upper_bound = log.log_end_offset();
                    tokio::task::spawn_blocking(move || {
                        log.delete_records_before(log_start_offset, upper_bound)
                    })
                    .await
                    .map_err(|error| FetchFailure::Response(error.to_string()))??;
                }
                Ok(true)
            }
            FollowerAction::AwaitMetadata(error) => {
                tracing::debug!(
                    partition = %self.partition.topic_partition, %error,
                    "leader refused the fetch; waiting for newer metadata"
                );
                Ok(self.back_off().await)
            }
            FollowerAction::Backoff(code) => {
                tracing::debug!(
                    partition = %self.partition.topic_partition, code,
                    "leader answered with an error; backing off"
                );
                Ok(self.back_off().await)
            }
            FollowerAction::ResolveOutOfRange => Err(FetchFailure::Response(
                "offset out of range twice in a row".into(),
            )),
        }
    }

    async fn truncate(&self, offset: Offset, fully: bool) -> Result<bool, FetchFailure> {
        let partition = self.partition.clone();
        let leader_epoch = self.leader_epoch;
        tracing::info!(
            partition = %partition.topic_partition, offset = offset.0, fully,
            log_end_offset = partition.log.log_end_offset().0, "truncating follower log"
        );
        let truncated = tokio::task::spawn_blocking(move || {
            partition.truncate_as_follower(leader_epoch, offset, fully)
        })
        .await
        .map_err(|error| FetchFailure::Response(error.to_string()))??;
        Ok(truncated)
    }

    /// Waits for `request`, or `None` when the fetcher is stopped meanwhile.
    async fn call<R: kafka_protocol::protocol::Request>(
        &self,
        connection: &Connection,
        request: &R,
        version: i16,
    ) -> Result<Option<R::Response>, FetchFailure> {
        tokio::select! {
            _ = self.cancel.cancelled() => Ok(None),
            response = connection.request_at(request, version) => Ok(Some(response?)),
        }
    }

    fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(
            self.partition.topic_partition.topic.clone(),
        ))
    }

    async fn send_fetch(
        &self,
        connection: &Connection,
        request: &FetchRequest,
        version: i16,
    ) -> Result<Option<(FetchResponse, Bytes)>, FetchFailure> {
        let index = self.partition.topic_partition.partition;
        let wire = WireFetchRequest::default()
            .with_replica_id(BrokerId(self.config.node_id.0))
            .with_max_wait_ms(self.config.fetch_wait_max_ms)
            .with_min_bytes(self.config.fetch_min_bytes)
            .with_max_bytes(self.config.fetch_response_max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(self.topic_name())
                    .with_topic_id(self.partition.topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(index.0)
                            .with_current_leader_epoch(request.current_leader_epoch.0)
                            .with_fetch_offset(request.fetch_offset.0)
                            .with_last_fetched_epoch(
                                request.last_fetched_epoch.map_or(-1, |epoch| epoch.0),
                            )
                            .with_log_start_offset(request.log_start_offset.0)
                            .with_partition_max_bytes(self.config.fetch_max_bytes),
                    ]),
            ]);
        let Some(response) = self.call(connection, &wire, version).await? else {
            return Ok(None);
        };
        if response.error_code != 0 {
            return Ok(Some((
                error_fetch_response(response.error_code),
                Bytes::new(),
            )));
        }
        let data = response
            .responses
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .find(|data| data.partition_index == index.0)
            .ok_or_else(|| FetchFailure::Response("fetch response without the partition".into()))?;
        let records = data.records.clone().unwrap_or_default();
        let (range, whole) = whole_batches(&records)
            .map_err(|reason| FetchFailure::Response(format!("fetched records: {reason}")))?;
        let diverging_epoch = (data.diverging_epoch.epoch >= 0).then_some(EpochEndOffset {
            leader_epoch: LeaderEpoch(data.diverging_epoch.epoch),
            end_offset: Offset(data.diverging_epoch.end_offset),
        });
        Ok(Some((
            FetchResponse {
                error_code: data.error_code,
                high_watermark: Offset(data.high_watermark),
                log_start_offset: Offset(data.log_start_offset),
                diverging_epoch,
                records: range,
            },
            records.slice(..whole),
        )))
    }

    async fn send_epoch_request(
        &self,
        connection: &Connection,
        request: &EpochRequest,
    ) -> Result<Option<EpochResponse>, FetchFailure> {
        let index = self.partition.topic_partition.partition;
        let wire = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.config.node_id.0))
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(self.topic_name())
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(index.0)
                            .with_current_leader_epoch(request.current_leader_epoch.0)
                            .with_leader_epoch(request.leader_epoch.0),
                    ]),
            ]);
        let version = connection
            .version(kafka_protocol::messages::ApiKey::OffsetForLeaderEpoch)?
            .min(OFFSET_FOR_LEADER_EPOCH_VERSION);
        let Some(response) = self.call(connection, &wire, version).await? else {
            return Ok(None);
        };
        let answer = response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .find(|answer| answer.partition == index.0)
            .ok_or_else(|| {
                FetchFailure::Response("OffsetForLeaderEpoch response without the partition".into())
            })?;
        Ok(Some(EpochResponse {
            error_code: answer.error_code,
            leader_epoch: LeaderEpoch(answer.leader_epoch),
            end_offset: Offset(answer.end_offset),
        }))
    }

    /// The leader's log start and end offsets (ListOffsets earliest and latest as a replica).
    async fn leader_log_offsets(
        &self,
        connection: &Connection,
    ) -> Result<Option<(Offset, Offset)>, FetchFailure> {
        let mut offsets = [Offset(0); 2];
        for (slot, timestamp) in offsets
            .iter_mut()
            .zip([EARLIEST_TIMESTAMP, LATEST_TIMESTAMP])
        {
            let Some(offset) = self.list_offset(connection, timestamp).await? else {
                return Ok(None);
            };
            *slot = offset;
        }
        Ok(Some((offsets[0], offsets[1])))
    }

    async fn list_offset(
        &self,
        connection: &Connection,
        timestamp: i64,
    ) -> Result<Option<Offset>, FetchFailure> {
        let index = self.partition.topic_partition.partition;
        let wire = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(self.config.node_id.0))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(self.topic_name())
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(index.0)
                            .with_current_leader_epoch(self.leader_epoch.0)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let Some(response) = self.call(connection, &wire, LIST_OFFSETS_VERSION).await? else {
            return Ok(None);
        };
        let answer = response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .find(|answer| answer.partition_index == index.0)
            .ok_or_else(|| {
                FetchFailure::Response("ListOffsets response without the partition".into())
            })?;
        if answer.error_code != 0 {
            return Err(FetchFailure::Response(format!(
                "ListOffsets answered error code {}",
                answer.error_code
            )));
        }
        Ok(Some(Offset(answer.offset)))
    }
}

fn error_fetch_response(error_code: i16) -> FetchResponse {
    FetchResponse {
        error_code,
        high_watermark: Offset(-1),
        log_start_offset: Offset(-1),
        diverging_epoch: None,
        records: None,
    }
}

/// The offsets of the whole batches at the start of `records` and their length in bytes (a
/// response may end in a partial batch, which is dropped and fetched again).
fn whole_batches(records: &[u8]) -> Result<(Option<RecordsRange>, usize), String> {
    let mut position = 0;
    let mut range: Option<RecordsRange> = None;
    while position < records.len() {
        let rest = &records[position..];
        let Ok(size) = RecordBatchHeader::peek_size(rest) else {
            break;
        };
        if size > rest.len() {
            break;
        }
        let header = RecordBatchHeader::parse(&rest[..size]).map_err(|error| error.to_string())?;
        range = Some(match range {
            None => RecordsRange {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
            },
            Some(range) => RecordsRange {
                base_offset: range.base_offset,
                last_offset: header.last_offset(),
            },
        });
        position += size;
    }
    Ok((range, position))
}
