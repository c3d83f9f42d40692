//! A partition this broker hosts: its log, its replication role, and the waits built on them.
//!
//! The role comes from the metadata image ([`Partition::apply_registration`], called by the
//! broker's reconcile for every hosted partition): as leader the partition owns a
//! [`LeaderState`] (follower progress, ISR proposals, the high watermark, `acks=all` waits); as
//! follower a fetcher task ([`crate::replication`]) copies the leader's log into it. Every
//! decision is made by the I/O-free state machines in `caudal-replica`; this module holds them
//! under one lock, carries out what they return, and publishes the high watermark the request
//! path reads. A partition with one replica behaves as a single node: its high watermark is the
//! log end offset.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::time::Duration;

use caudal_metadata::config::ResolvedConfig;
use caudal_metadata::{MetadataImage, PartitionRegistration};
use caudal_model::{LeaderEpoch, NodeId, Offset, TimestampMs, TopicPartition};
use caudal_replica::{
    EpochEndOffset, ErrorCode as ReplicaError, FollowerFetch, FollowerFetchOutcome, IsrProposal,
    LeaderConfig, LeaderInit, LeaderState, PartitionEpoch, ProduceWaitId,
};
use caudal_storage::{
    AppendOutcome, CleanupPolicy, LogConfig, PartitionLog, StorageError, TimestampType,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::replication::{ReplicaContext, ReplicationConfig};

/// Per-topic settings the request path checks (the log itself takes [`LogConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSettings {
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    pub timestamp_after_max_ms: i64,
    pub timestamp_before_max_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub min_insync_replicas: i32,
}

/// Builds the log config and request-path settings from a topic's resolved configs.
pub fn settings_from_configs(resolved: &[ResolvedConfig]) -> (LogConfig, PartitionSettings) {
    let get = |name: &str| -> Option<&str> {
        resolved
            .iter()
            .find(|config| config.def.name == name)
            .and_then(|config| config.value.as_deref())
    };
    let number = |name: &str, fallback: i64| -> i64 {
        get(name)
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(fallback)
    };
    let timestamp_type = match get("message.timestamp.type") {
        Some(value) if value.eq_ignore_ascii_case("LogAppendTime") => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    };
    let defaults = LogConfig::default();
    let log_config = LogConfig {
        segment_bytes: number("segment.bytes", defaults.segment_bytes as i64).max(14) as u64,
        segment_ms: number("segment.ms", defaults.segment_ms).max(1),
        index_interval_bytes: number("index.interval.bytes", defaults.index_interval_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        segment_index_bytes: number("segment.index.bytes", defaults.segment_index_bytes as i64)
            .clamp(4, u32::MAX as i64) as u32,
        message_timestamp_type: timestamp_type,
        max_message_bytes: number("max.message.bytes", defaults.max_message_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        cleanup_policy: get("cleanup.policy")
            .and_then(CleanupPolicy::from_name)
            .unwrap_or(defaults.cleanup_policy),
        retention_ms: number("retention.ms", defaults.retention_ms),
        retention_bytes: number("retention.bytes", defaults.retention_bytes),
        file_delete_delay_ms: number("file.delete.delay.ms", defaults.file_delete_delay_ms).max(0),
        delete_retention_ms: number("delete.retention.ms", defaults.delete_retention_ms).max(0),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .unwrap_or(defaults.min_cleanable_dirty_ratio),
        min_compaction_lag_ms: number("min.compaction.lag.ms", defaults.min_compaction_lag_ms)
            .max(0),
        max_compaction_lag_ms: number("max.compaction.lag.ms", defaults.max_compaction_lag_ms)
            .max(1),
    };
    let settings = PartitionSettings {
        max_message_bytes: log_config.max_message_bytes,
        timestamp_type,
        timestamp_after_max_ms: number("message.timestamp.after.max.ms", i64::MAX),
        timestamp_before_max_ms: number("message.timestamp.before.max.ms", i64::MAX),
        flush_messages: number("flush.messages", i64::MAX).max(1),
        flush_ms: number("flush.ms", i64::MAX).max(0),
        min_insync_replicas: number("min.insync.replicas", 1) as i32,
    };
    (log_config, settings)
}

/// A hosted partition.
pub struct Partition {
    pub topic_partition: TopicPartition,
    pub topic_id: Uuid,
    pub log: Arc<PartitionLog>,
    leader_epoch: AtomicI32,
    /// Whether this node leads the partition (else it only holds a replica of it).
    leader: AtomicBool,
    settings: RwLock<PartitionSettings>,
    /// Woken after every append and every high-watermark advance, for fetches waiting on
    /// `min_bytes`.
    appended: Notify,
    /// When the log was last flushed for `flush.ms`.
    last_flush_ms: AtomicI64,
    /// The highest offset anyone waits to see durable.
    flush_wanted: AtomicI64,
    /// True while this partition's flusher (one blocking task at most) runs.
    flusher_running: AtomicBool,
    /// Set when a flush failed: the log's directory is offline and waiters get its error.
    flush_failed: AtomicBool,
    /// Bumped after every flush the flusher completes: wakes durability waiters.
    flushed: watch::Sender<u64>,
    /// The high watermark the replication role last published: the leader's, or what a follower
    /// adopted from its leader. Consumers read below it only.
    high_watermark: AtomicI64,
    /// The replication role and its state. Held only for short, non-blocking sections (never
    /// across an await); appends as leader happen under it, so a role change cannot interleave
    /// with one.
    role: Mutex<Role>,
}

/// What this broker does for the partition.
enum Role {
    /// No metadata applied yet.
    Unassigned,
    Leader(Box<Leading>),
    Follower(Following),
}

/// This broker leads the partition at one leader epoch.
struct Leading {
    state: LeaderState,
    /// `caudal.acks.all.fsync` for a partition with followers: the leader flushes after appends
    /// so that its recovery point (its contribution to the high watermark) keeps moving.
    flush_after_append: bool,
    waits: HashMap<ProduceWaitId, oneshot::Sender<Result<(), ReplicaError>>>,
    next_wait_id: u64,
}

/// This broker follows the partition: who leads, and the fetcher copying from it.
struct Following {
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    /// The leader's Kafka listener, from its broker registration.
    leader_address: Option<String>,
    /// Stops the fetcher task; `None` when no fetcher runs (no leader, or an unknown address).
    fetcher: Option<CancellationToken>,
}

/// Why an append as leader was refused or failed.
#[derive(Debug)]
pub enum LeaderAppendError {
    /// A replication decision: NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS.
    Replica(ReplicaError),
    Storage(StorageError),
}

/// An `acks=all` produce's wait for the ISR: resolves when the high watermark passes its last
/// offset (or with the error that ends it).
pub struct ReplicationWait {
    receiver: oneshot::Receiver<Result<(), ReplicaError>>,
    deadline: tokio::time::Instant,
}

impl ReplicationWait {
    /// Waits until the ISR has the records, the leadership ends (NOT_LEADER_OR_FOLLOWER), or the
    /// request's timeout passes (REQUEST_TIMED_OUT).
    pub async fn wait(self) -> Result<(), ReplicaError> {
        match tokio::time::timeout_at(self.deadline, self.receiver).await {
            Ok(Ok(outcome)) => outcome,
            // The leadership that registered the wait was dropped without answering it.
            Ok(Err(_)) => Err(ReplicaError::NotLeaderOrFollower),
            Err(_) => Err(ReplicaError::RequestTimedOut),
        }
    }
}

impl Leading {
    /// Answers the waits the high watermark has passed.
    fn answer_ready_waits(&mut self) {
        for (id, outcome) in self.state.ready_waits() {
            if let Some(reply) = self.waits.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
    }

    fn resign(self) {
        let Leading {
            state, mut waits, ..
        } = self;
        for (id, error) in state.resign() {
            if let Some(reply) = waits.remove(&id) {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Role {
    /// Ends the current role: a leadership answers its waits with NOT_LEADER_OR_FOLLOWER, a
    /// fetcher is stopped.
    fn end(self) {
        match self {
            Role::Unassigned => {}
            Role::Leader(leading) => leading.resign(),
            Role::Follower(following) => {
                if let Some(fetcher) = following.fetcher {
                    fetcher.cancel();
                }
            }
        }
    }
}

impl Partition {
    pub fn new(
        log: Arc<PartitionLog>,
        leader_epoch: LeaderEpoch,
        settings: PartitionSettings,
        now: TimestampMs,
    ) -> Self {
        let log_start_offset = log.log_start_offset();
        Self {
            topic_partition: log.topic_partition().clone(),
            topic_id: log.topic_id(),
            log,
            leader_epoch: AtomicI32::new(leader_epoch.0),
            leader: AtomicBool::new(false),
            settings: RwLock::new(settings),
            appended: Notify::new(),
            last_flush_ms: AtomicI64::new(now.0),
            flush_wanted: AtomicI64::new(0),
            flusher_running: AtomicBool::new(false),
            flush_failed: AtomicBool::new(false),
            flushed: watch::channel(0).0,
            // No high-watermark checkpoint: a leader starts here and rises as the ISR fetches;
            // a follower adopts its leader's.
            high_watermark: AtomicI64::new(log_start_offset.0),
            role: Mutex::new(Role::Unassigned),
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch.load(Ordering::Acquire))
    }

    /// Whether this node leads the partition: only a leader serves clients' produces and fetches.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn settings(&self) -> PartitionSettings {
        self.settings.read().clone()
    }

    pub fn update_settings(&self, log_config: LogConfig, settings: PartitionSettings) {
        self.log.update_config(log_config);
        *self.settings.write() = settings;
    }

    /// The offset below which records are visible to consumers: the leader's high watermark
    /// (with one replica, the log end offset), or what a follower learned from its leader.
    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire)).min(self.log.log_end_offset())
    }

    /// The last stable offset. No transactions yet, so it is the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        self.high_watermark()
    }

    /// Applies this partition's registration from the metadata image (the broker's reconcile
    /// calls it for every hosted partition, leader or follower, after every image change).
    ///
    /// - Leader at a new epoch: any earlier role ends (its waits fail with
    ///   NOT_LEADER_OR_FOLLOWER, its fetcher stops) and a [`LeaderState`] starts from the log.
    /// - Leader at the same epoch: a newer partition epoch (replicas, ISR) and config changes go
    ///   to the state; its ready waits are answered.
    /// - Follower: a new leader or epoch (or leader address) restarts the fetcher task.
    ///
    /// Replicas on fenced or shutting-down brokers in `image` are ineligible for the ISR
    /// (KIP-841); the leader's address comes from its broker registration.
    pub fn apply_registration(
        self: &Arc<Self>,
        registration: &PartitionRegistration,
        image: &MetadataImage,
        context: &ReplicaContext,
        now: TimestampMs,
    ) {
        let node_id = context.config.node_id;
        let leader_address = crate::replication::broker_address(image, registration.leader);
        // KIP-841: replicas on fenced or shutting-down brokers may not join the ISR.
        let ineligible: Vec<NodeId> = registration
            .replicas
            .iter()
            .copied()
            .filter(|replica| *replica != node_id && !image.is_broker_active(*replica))
            .collect();
        let mut role = self.role.lock();
        if registration.leader_epoch < self.leader_epoch() && !matches!(*role, Role::Unassigned) {
            // An older image than one already applied.
            return;
        }
        self.leader_epoch
            .store(registration.leader_epoch.0, Ordering::Release);
        if registration.leader == node_id {
            let config = self.leader_config(&context.config, registration.replicas.len());
            if let Role::Leader(leading) = &mut *role
                && leading.state.leader_epoch() == registration.leader_epoch
            {
                let mut advanced = leading.state.on_partition_change(
                    registration.replicas.clone(),
                    registration.isr.clone(),
                    PartitionEpoch(registration.partition_epoch),
                    now,
                );
                leading.flush_after_append = config.acks_all_fsync;
                leading.state.set_ineligible_replicas(ineligible);
                advanced = leading.state.on_config_change(config, now).or(advanced);
                self.publish_high_watermark(leading, advanced);
                self.leader.store(true, Ordering::Release);
                return;
            }
            std::mem::replace(&mut *role, Role::Unassigned).end();
            let mut state = LeaderState::new(
                LeaderInit {
                    local: node_id,
                    leader_epoch: registration.leader_epoch,
                    partition_epoch: PartitionEpoch(registration.partition_epoch),
                    replicas: registration.replicas.clone(),
                    isr: registration.isr.clone(),
                    log_start_offset: self.log.log_start_offset(),
                    log_end_offset: self.log.log_end_offset(),
                    durable_offset: self.log.recovery_point(),
                    high_watermark: self.high_watermark(),
                },
                config,
                now,
            );
            state.set_ineligible_replicas(ineligible);
            // With one replica this is the log end offset; with followers it waits for them.
            state.on_append(self.log.log_end_offset(), now);
            state.on_local_flush(self.log.recovery_point(), now);
            tracing::info!(
                partition = %self.topic_partition, leader_epoch = registration.leader_epoch.0,
                high_watermark = state.high_watermark().0, "leading partition"
            );
            let high_watermark = state.high_watermark();
            let mut leading = Box::new(Leading {
                state,
                flush_after_append: config.acks_all_fsync,
                waits: HashMap::new(),
                next_wait_id: 0,
            });
            self.publish_high_watermark(&mut leading, Some(high_watermark));
            *role = Role::Leader(leading);
            self.leader.store(true, Ordering::Release);
            return;
        }
        self.leader.store(false, Ordering::Release);
        if let Role::Follower(following) = &*role
            && following.leader == registration.leader
            && following.leader_epoch == registration.leader_epoch
            && following.leader_address == leader_address
        {
            return;
        }
        std::mem::replace(&mut *role, Role::Unassigned).end();
        let fetcher = match (&leader_address, registration.leader.0 >= 0) {
            (Some(address), true) => Some(crate::replication::start_fetcher(
                self.clone(),
                registration.leader,
                registration.leader_epoch,
                address.clone(),
                context,
            )),
            _ => None,
        };
        tracing::info!(
            partition = %self.topic_partition, leader = registration.leader.0,
            leader_epoch = registration.leader_epoch.0, address = leader_address.as_deref().unwrap_or("-"),
            "following partition"
        );
        *role = Role::Follower(Following {
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            leader_address,
            fetcher,
        });
    }

    /// Ends the replication role (the partition is no longer hosted, or the broker stops).
    pub fn stop_replication(&self) {
        self.leader.store(false, Ordering::Release);
        std::mem::replace(&mut *self.role.lock(), Role::Unassigned).end();
    }

    fn leader_config(&self, config: &ReplicationConfig, replica_count: usize) -> LeaderConfig {
        LeaderConfig {
            // With one replica the high watermark is the log end offset, as on a single node;
            // `acks=all` still waits for the local fsync itself (`wait_durable`).
            acks_all_fsync: config.acks_all_fsync && replica_count > 1,
            replica_lag_time_max_ms: config.replica_lag_time_max_ms,
            min_insync_replicas: self.settings.read().min_insync_replicas.max(1) as usize,
        }
    }

    /// After a high-watermark advance: publish it, answer the waits it satisfies, wake long
    /// polls.
    fn publish_high_watermark(&self, leading: &mut Leading, advanced: Option<Offset>) {
        if advanced.is_none() {
            return;
        }
        self.high_watermark
            .store(leading.state.high_watermark().0, Ordering::Release);
        leading.answer_ready_waits();
        self.appended.notify_waiters();
    }

    /// Runs `decide` on the leader state, or answers NOT_LEADER_OR_FOLLOWER.
    fn with_leader<T>(
        &self,
        decide: impl FnOnce(&mut Leading) -> Result<T, ReplicaError>,
    ) -> Result<T, ReplicaError> {
        match &mut *self.role.lock() {
            Role::Leader(leading) => decide(leading),
            Role::Unassigned | Role::Follower(_) => Err(ReplicaError::NotLeaderOrFollower),
        }
    }

    /// Appends a producer's (or the group coordinator's) batches as leader. With
    /// `acks_all = Some((min.insync.replicas, deadline))`, refuses with NOT_ENOUGH_REPLICAS when
    /// the ISR is too small, and returns the wait for the ISR to replicate the records.
    pub fn append_as_leader(
        self: &Arc<Self>,
        records: &[u8],
        acks_all: Option<(usize, tokio::time::Instant)>,
        now: TimestampMs,
    ) -> Result<(AppendOutcome, Option<ReplicationWait>), LeaderAppendError> {
        let mut role = self.role.lock();
        let Role::Leader(leading) = &mut *role else {
            return Err(LeaderAppendError::Replica(
                ReplicaError::NotLeaderOrFollower,
            ));
        };
        if let Some((min_insync_replicas, _)) = acks_all {
            leading
                .state
                .can_append_acks_all(min_insync_replicas)
                .map_err(LeaderAppendError::Replica)?;
        }
        let outcome = self
            .log
            .append_as_leader(records, leading.state.leader_epoch(), now)
            .map_err(LeaderAppendError::Storage)?;
        let advanced = leading.state.on_append(self.log.log_end_offset(), now);
        let wait = acks_all.map(|(min_insync_replicas, deadline)| {
            register_wait(
                leading,
                outcome.last_offset,
                min_insync_replicas,
                deadline,
                now,
            )
        });
        self.publish_high_watermark(leading, advanced);
        leading.answer_ready_waits();
        let flush = leading.flush_after_append && !outcome.duplicate;
        drop(role);
        if !outcome.duplicate {
            self.notify_appended();
            self.maybe_flush_for_messages();
        }
        if flush {
            self.request_flush(self.log.log_end_offset());
        }
        Ok((outcome, wait))
    }

    /// Waits until the ISR has every record below `end` (as an `acks=all` produce would), for
    /// at most `timeout`. With one replica it returns at once. The group coordinator uses it
    /// before answering requests whose records it appended.
    pub async fn wait_replicated(
        &self,
        end: Offset,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        if end.0 <= 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let min_insync_replicas = self.settings.read().min_insync_replicas.max(1) as usize;
        let now = crate::broker::now_ms();
        let wait = self.with_leader(|leading| {
            let wait = register_wait(
                leading,
                Offset(end.0 - 1),
                min_insync_replicas,
                deadline,
                now,
            );
            leading.answer_ready_waits();
            Ok(wait)
        })?;
        wait.wait().await
    }

    /// A follower's Fetch (`replica_id ≥ 0`): records its progress, maybe proposes an ISR
    /// expansion, advances the high watermark (answering produce waits, waking long polls).
    pub fn on_follower_fetch(
        &self,
        fetch: FollowerFetch,
        now: TimestampMs,
    ) -> Result<FollowerFetchOutcome, ReplicaError> {
        self.with_leader(|leading| {
            leading
                .state
                .on_log_start_offset(self.log.log_start_offset());
            let outcome = leading.state.on_follower_fetch(
                fetch,
                |epoch| self.log.end_offset_for_epoch(epoch),
                now,
            )?;
            self.publish_high_watermark(leading, outcome.high_watermark_advanced);
            Ok(outcome)
        })
    }

    /// Kafka's `checkCurrentLeaderEpoch` for a client request on the leader.
    pub fn check_leader_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), ReplicaError> {
        self.with_leader(|leading| leading.state.check_leader_epoch(requested))
    }

    /// OffsetForLeaderEpoch on the leader.
    pub fn offset_for_leader_epoch(
        &self,
        current_leader_epoch: Option<LeaderEpoch>,
        leader_epoch: LeaderEpoch,
    ) -> Result<EpochEndOffset, ReplicaError> {
        self.with_leader(|leading| {
            leading
                .state
                .on_offset_for_leader_epoch(current_leader_epoch, leader_epoch, |epoch| {
                    self.log.end_offset_for_epoch(epoch)
                })
        })
    }

    /// ListOffsets latest for a client: the high watermark, or OFFSET_NOT_AVAILABLE while a new
    /// leader's high watermark is below the start of its epoch (KIP-207).
    pub fn latest_offset_for_client(&self) -> Result<Offset, ReplicaError> {
        self.with_leader(|leading| leading.state.latest_offset_for_client())
    }

    /// The periodic replication check: the ISR shrink proposal, if any (Kafka's
    /// `maybeShrinkIsr`); expired produce waits are dropped (their requests time out on their
    /// own), and the leader's own recovery point is taken in (the log also flushes after rolls).
    pub fn replication_tick(&self, now: TimestampMs) -> Option<IsrProposal> {
        self.with_leader(|leading| {
            for (id, _) in leading.state.expired_waits(now) {
                leading.waits.remove(&id);
            }
            let advanced = leading.state.on_local_flush(self.log.recovery_point(), now);
            self.publish_high_watermark(leading, advanced);
            Ok(leading.state.maybe_shrink_isr(now))
        })
        .ok()
        .flatten()
    }

    /// The controller committed `proposal` as `isr` at `partition_epoch`.
    pub fn on_isr_committed(&self, isr: Vec<NodeId>, partition_epoch: i32, now: TimestampMs) {
        let _ = self.with_leader(|leading| {
            let advanced =
                leading
                    .state
                    .on_isr_committed(isr, PartitionEpoch(partition_epoch), now);
            self.publish_high_watermark(leading, advanced);
            Ok(())
        });
    }

    /// The controller rejected `proposal`.
    pub fn on_isr_rejected(&self, proposal: &IsrProposal) {
        let _ = self.with_leader(|leading| {
            leading.state.on_isr_rejected(proposal);
            Ok(())
        });
    }

    /// The committed ISR and the maximal ISR (with a proposal in flight), when leading.
    pub fn isr(&self) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
        self.with_leader(|leading| {
            Ok((
                leading.state.isr().to_vec(),
                leading.state.isr_state().maximal_isr(),
            ))
        })
        .ok()
    }

    /// A follower adopts the high watermark its leader sent (already capped at the local log
    /// end offset by the follower state).
    pub(crate) fn set_follower_high_watermark(&self, high_watermark: Offset) {
        self.high_watermark
            .store(high_watermark.0, Ordering::Release);
    }

    /// Appends batches fetched from the leader of `leader_epoch`, if this broker still follows
    /// it (`false` otherwise: the fetcher is stale and must stop). Under the role lock, so a
    /// fetcher never writes into a log this broker has started to lead.
    pub(crate) fn append_as_follower(
        &self,
        leader_epoch: LeaderEpoch,
        records: &[u8],
        now: TimestampMs,
    ) -> Result<bool, StorageError> {
        let role = self.role.lock();
        if !matches!(&*role, Role::Follower(following) if following.leader_epoch == leader_epoch) {
            return Ok(false);
        }
        self.log.append_as_follower(records, now)?;
        Ok(true)
    }

    /// Truncates the log as the follower of `leader_epoch` (`fully`: restart it empty at
    /// `offset`), if this broker still follows it. Blocks (fsync).
    pub(crate) fn truncate_as_follower(
        &self,
        leader_epoch: LeaderEpoch,
        offset: Offset,
        fully: bool,
    ) -> Result<bool, StorageError> {
        let role = self.role.lock();
        if !matches!(&*role, Role::Follower(following) if following.leader_epoch == leader_epoch) {
            return Ok(false);
        }
        if fully {
            self.log.truncate_fully_and_start_at(offset)?;
        } else {
            self.log.truncate_to(offset)?;
        }
        self.high_watermark
            .fetch_min(self.log.log_end_offset().0, Ordering::AcqRel);
        Ok(true)
    }

    /// Whether the fetcher started for `leader_epoch` is still the current one.
    pub(crate) fn follows(&self, leader_epoch: LeaderEpoch) -> bool {
        matches!(&*self.role.lock(), Role::Follower(following) if following.leader_epoch == leader_epoch)
    }

    /// Tells waiting fetches that records arrived.
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A future that completes at the next append. Create (and `enable`) it before checking for
    /// data, so an append in between is not missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Waits until every record below `offset` is on disk. Group commit: waiters only record the
    /// offset they need; one flusher per partition fsyncs everything appended so far, again while
    /// anyone still needs more, so a single fsync answers every waiter whose data it covered and
    /// at most one blocking task per partition is ever busy with fsync.
    pub async fn wait_durable(self: &Arc<Self>, offset: Offset) -> Result<(), StorageError> {
        if self.log.recovery_point() >= offset {
            return Ok(());
        }
        let mut flushed = self.flushed.subscribe();
        self.request_flush(offset);
        loop {
            if self.log.recovery_point() >= offset {
                return Ok(());
            }
            if self.flush_failed.load(Ordering::Acquire) {
                // The flusher hit an error; asking the log again returns it without blocking.
                return self.log.flush_to(offset).map(|_| ());
            }
            if flushed.changed().await.is_err() {
                return self.log.flush_to(offset).map(|_| ());
            }
        }
    }

    /// Asks for everything below `offset` to be fsynced, starting the flusher if it is idle.
    fn request_flush(self: &Arc<Self>, offset: Offset) {
        // SeqCst here and in the flusher's exit check: each side stores one flag and then reads
        // the other's (store-load), which acquire/release does not order — on x86 the flusher's
        // read of `flush_wanted` may pass its own `flusher_running = false`, and then neither
        // side starts the flush this waiter needs.
        self.flush_wanted.fetch_max(offset.0, Ordering::SeqCst);
        if self.flusher_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let partition = self.clone();
        tokio::task::spawn_blocking(move || partition.run_flusher());
    }

    /// The flusher: fsync until nobody waits for more. Runs on a blocking thread.
    fn run_flusher(&self) {
        loop {
            let wanted = Offset(self.flush_wanted.load(Ordering::SeqCst));
            let result = self.log.flush_to(wanted);
            self.last_flush_ms
                .store(crate::broker::now_ms().0, Ordering::Relaxed);
            if let Err(error) = &result {
                tracing::error!(partition = %self.topic_partition, %error, "flush failed");
                self.flush_failed.store(true, Ordering::Release);
                self.flusher_running.store(false, Ordering::SeqCst);
                self.flushed.send_modify(|generation| *generation += 1);
                return;
            }
            self.flusher_running.store(false, Ordering::SeqCst);
            // Waiters are woken only after the recovery point this round decides on is read:
            // other flushes (the log's own, after a segment roll) also move it, and a waiter that
            // saw an older value must look again before the flusher leaves for good.
            let recovery_point = self.log.recovery_point();
            self.on_local_flush(recovery_point);
            self.flushed.send_modify(|generation| *generation += 1);
            // A waiter that asked for more after the flush began either sees the flusher stopped
            // and starts it, or is seen here.
            // It also stops when nothing is left to flush (a wanted offset above the log end can
            // only come from data truncated away since).
            if self.flush_wanted.load(Ordering::SeqCst) <= recovery_point.0
                || recovery_point >= self.log.log_end_offset()
                || self.flusher_running.swap(true, Ordering::SeqCst)
            {
                return;
            }
        }
    }

    /// The leader's own contribution to the high watermark moved (with `caudal.acks.all.fsync`
    /// and followers, the leader counts only what it has fsynced).
    fn on_local_flush(&self, recovery_point: Offset) {
        let _ = self.with_leader(|leading| {
            let advanced = leading
                .state
                .on_local_flush(recovery_point, crate::broker::now_ms());
            self.publish_high_watermark(leading, advanced);
            Ok(())
        });
    }

    /// Applies `flush.messages` after an append: flush in the background once that many records are
    /// unflushed.
    pub fn maybe_flush_for_messages(self: &Arc<Self>) {
        let flush_messages = self.settings.read().flush_messages;
        if flush_messages == i64::MAX {
            return;
        }
        let unflushed = self.log.log_end_offset().0 - self.log.recovery_point().0;
        if unflushed >= flush_messages {
            self.request_flush(self.log.log_end_offset());
        }
    }

    /// Applies `flush.ms`: flush if the last flush is older than that.
    pub fn maybe_flush_for_time(self: &Arc<Self>, now: TimestampMs) {
        let flush_ms = self.settings.read().flush_ms;
        if flush_ms == i64::MAX {
            return;
        }
        if now.0 - self.last_flush_ms.load(Ordering::Relaxed) >= flush_ms
            && self.log.recovery_point() < self.log.log_end_offset()
        {
            self.last_flush_ms.store(now.0, Ordering::Relaxed);
            self.request_flush(self.log.log_end_offset());
        }
    }
}

/// Registers an `acks=all` wait on `leading` (answer it with `answer_ready_waits`).
fn register_wait(
    leading: &mut Leading,
    last_offset: Offset,
    min_insync_replicas: usize,
    deadline: tokio::time::Instant,
    now: TimestampMs,
) -> ReplicationWait {
    let id = ProduceWaitId(leading.next_wait_id);
    leading.next_wait_id += 1;
    let (reply, receiver) = oneshot::channel();
    leading.waits.insert(id, reply);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let deadline_ms = TimestampMs(now.0.saturating_add(remaining.as_millis() as i64));
    leading
        .state
        .register_produce_wait(id, last_offset, min_insync_replicas, deadline_ms);
    ReplicationWait { receiver, deadline }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use caudal_storage::LogManager;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as WireType,
    };

    use super::*;

    fn one_record() -> BytesMut {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: WireType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        buf
    }

    /// Durability waiters must wake however the recovery point moves: the log flushes on its own
    /// after rolls, and a waiter that saw the flusher's older recovery point used to sleep forever
    /// once the flusher found nothing left to do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durability_waiters_wake_when_another_flush_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), TimestampMs(0)).unwrap();
        let tp = TopicPartition::new("waits", 0);
        let log = manager
            .create_log(&tp, Uuid::new_v4(), LogConfig::default(), TimestampMs(0))
            .unwrap();
        let (_, settings) = settings_from_configs(&[]);
        let partition = Arc::new(Partition::new(
            log.clone(),
            LeaderEpoch(0),
            settings,
            TimestampMs(0),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let outside = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    log.flush().unwrap();
                }
            })
        };
        let batch = one_record().freeze();
        for _round in 0..200 {
            let waits: Vec<_> = (0..8)
                .map(|_| {
                    let (partition, batch) = (partition.clone(), batch.clone());
                    tokio::spawn(async move {
                        let outcome = partition
                            .log
                            .append_as_leader(&batch, LeaderEpoch(0), TimestampMs(0))
                            .unwrap();
                        partition.wait_durable(outcome.last_offset.next()).await
                    })
                })
                .collect();
            for wait in waits {
                tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .expect("a durability waiter was never woken")
                    .unwrap()
                    .unwrap();
            }
        }
        stop.store(true, Ordering::Relaxed);
        outside.join().unwrap();
        assert_eq!(log.recovery_point(), Offset(1600));
    }

    fn context(acks_all_fsync: bool) -> ReplicaContext {
        ReplicaContext {
            config: ReplicationConfig {
                node_id: NodeId(1),
                acks_all_fsync,
                replica_lag_time_max_ms: 10_000,
                fetch_backoff_ms: 10,
                fetch_wait_max_ms: 10,
                fetch_min_bytes: 1,
                fetch_max_bytes: 1 << 20,
                fetch_response_max_bytes: 1 << 20,
                socket_timeout_ms: 1_000,
            },
            shutdown: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    fn led(replicas: &[i32], leader_epoch: i32, partition_epoch: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.iter().copied().map(NodeId).collect(),
            isr: replicas.iter().copied().map(NodeId).collect(),
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(leader_epoch),
            partition_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn hosted(dir: &std::path::Path, min_insync_replicas: i32) -> Arc<Partition> {
        let manager = LogManager::open(dir, TimestampMs(0)).unwrap();
        let log = manager
            .create_log(
                &TopicPartition::new("replicated", 0),
                Uuid::new_v4(),
                LogConfig::default(),
                TimestampMs(0),
            )
            .unwrap();
        let (_, mut settings) = settings_from_configs(&[]);
        settings.min_insync_replicas = min_insync_replicas;
        Arc::new(Partition::new(
            log,
            LeaderEpoch(0),
            settings,
            TimestampMs(0),
        ))
    }

    fn follower_fetch(replica: i32, fetch_offset: i64) -> FollowerFetch {
        FollowerFetch {
            replica: NodeId(replica),
            fetch_offset: Offset(fetch_offset),
            durable_offset: None,
            current_leader_epoch: Some(LeaderEpoch(1)),
            last_fetched_epoch: None,
        }
    }

    fn in_a_second() -> Option<(usize, tokio::time::Instant)> {
        Some((1, tokio::time::Instant::now() + Duration::from_secs(1)))
    }

    /// One replica: the high watermark is the log end offset and acks=all needs nobody else,
    /// exactly as on a single node.
    #[tokio::test]
    async fn a_single_replica_partition_behaves_as_a_single_node() {
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 2);
        partition.apply_registration(
            &led(&[1], 1, 0),
            &MetadataImage::default(),
            &context(false),
            TimestampMs(0),
        );
        assert!(partition.is_leader());
        let batch = one_record();
        let (outcome, wait) = partition
            .append_as_leader(&batch, in_a_second(), TimestampMs(1))
            .unwrap();
        assert_eq!(outcome.first_offset, Offset(0));
        assert_eq!(partition.high_watermark(), Offset(1));
        wait.unwrap().wait().await.unwrap();
        assert_eq!(partition.latest_offset_for_client(), Ok(Offset(1)));
    }

    /// Three replicas: an acks=all wait completes only once both followers fetched past the
    /// records; consumers see nothing above the high watermark meanwhile.
    #[tokio::test]
    async fn acks_all_waits_for_every_isr_follower() {
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 2);
        partition.apply_registration(
            &led(&[1, 2, 3], 1, 0),
            &MetadataImage::default(),
            &context(false),
            TimestampMs(0),
        );
        let (_, wait) = partition
            .append_as_leader(&one_record(), in_a_second(), TimestampMs(1))
            .unwrap();
        let mut wait = Box::pin(wait.unwrap().wait());
        assert_eq!(partition.high_watermark(), Offset(0));
        let outcome = partition
            .on_follower_fetch(follower_fetch(2, 1), TimestampMs(2))
            .unwrap();
        assert_eq!(outcome.high_watermark, Offset(0));
        assert!(futures::poll!(wait.as_mut()).is_pending());
        let outcome = partition
            .on_follower_fetch(follower_fetch(3, 1), TimestampMs(3))
            .unwrap();
        assert_eq!(outcome.high_watermark_advanced, Some(Offset(1)));
        assert_eq!(partition.high_watermark(), Offset(1));
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .unwrap()
            .unwrap();
    }

    /// An acks=all wait nobody satisfies times out with REQUEST_TIMED_OUT; a wait whose
    /// leadership ends gets NOT_LEADER_OR_FOLLOWER; a follower refuses leader appends.
    #[tokio::test]
    async fn acks_all_waits_time_out_or_fail_on_resignation() {
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 2);
        partition.apply_registration(
            &led(&[1, 2], 1, 0),
            &MetadataImage::default(),
            &context(false),
            TimestampMs(0),
        );
        let short = Some((2, tokio::time::Instant::now() + Duration::from_millis(20)));
        let (_, wait) = partition
            .append_as_leader(&one_record(), short, TimestampMs(1))
            .unwrap();
        assert_eq!(
            wait.unwrap().wait().await,
            Err(ReplicaError::RequestTimedOut)
        );

        let (_, wait) = partition
            .append_as_leader(&one_record(), in_a_second(), TimestampMs(2))
            .unwrap();
        let mut following = led(&[1, 2], 2, 1);
        following.leader = NodeId(2);
        partition.apply_registration(
            &following,
            &MetadataImage::default(),
            &context(false),
            TimestampMs(3),
        );
        assert!(!partition.is_leader());
        assert_eq!(
            wait.unwrap().wait().await,
            Err(ReplicaError::NotLeaderOrFollower)
        );
        assert!(matches!(
            partition.append_as_leader(&one_record(), None, TimestampMs(4)),
            Err(LeaderAppendError::Replica(
                ReplicaError::NotLeaderOrFollower
            ))
        ));
    }

    /// The committed ISR below min.insync.replicas refuses acks=all before appending; the
    /// controller's answer to a shrink is applied by the next registration.
    #[tokio::test]
    async fn a_small_isr_refuses_acks_all() {
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 2);
        let mut registration = led(&[1, 2], 1, 0);
        registration.isr = vec![NodeId(1)];
        partition.apply_registration(
            &registration,
            &MetadataImage::default(),
            &context(false),
            TimestampMs(0),
        );
        assert!(matches!(
            partition.append_as_leader(
                &one_record(),
                in_a_second().map(|(_, d)| (2, d)),
                TimestampMs(1)
            ),
            Err(LeaderAppendError::Replica(ReplicaError::NotEnoughReplicas))
        ));
        assert_eq!(partition.log.log_end_offset(), Offset(0));
        registration.isr = vec![NodeId(1), NodeId(2)];
        registration.partition_epoch = 1;
        partition.apply_registration(
            &registration,
            &MetadataImage::default(),
            &context(false),
            TimestampMs(2),
        );
        assert!(
            partition
                .append_as_leader(
                    &one_record(),
                    in_a_second().map(|(_, d)| (2, d)),
                    TimestampMs(3)
                )
                .is_ok()
        );
    }

    /// KIP-207: a new leader whose high watermark is below the start of its epoch answers
    /// OFFSET_NOT_AVAILABLE for the latest offset until its followers catch it up.
    #[tokio::test]
    async fn a_new_leader_hides_the_latest_offset_until_its_high_watermark_reaches_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 1);
        let mut following = led(&[1, 2], 1, 0);
        following.leader = NodeId(2);
        partition.apply_registration(
            &following,
            &MetadataImage::default(),
            &context(false),
            TimestampMs(0),
        );
        partition
            .log
            .append_as_leader(&one_record(), LeaderEpoch(1), TimestampMs(0))
            .unwrap();
        partition.apply_registration(
            &led(&[1, 2], 2, 1),
            &MetadataImage::default(),
            &context(false),
            TimestampMs(1),
        );
        assert_eq!(partition.high_watermark(), Offset(0));
        assert_eq!(
            partition.latest_offset_for_client(),
            Err(ReplicaError::OffsetNotAvailable)
        );
        let mut fetch = follower_fetch(2, 1);
        fetch.current_leader_epoch = Some(LeaderEpoch(2));
        partition.on_follower_fetch(fetch, TimestampMs(2)).unwrap();
        assert_eq!(partition.latest_offset_for_client(), Ok(Offset(1)));
        // An older epoch is fenced, a newer one unknown.
        assert_eq!(
            partition.check_leader_epoch(Some(LeaderEpoch(1))),
            Err(ReplicaError::FencedLeaderEpoch)
        );
        assert_eq!(
            partition.check_leader_epoch(Some(LeaderEpoch(3))),
            Err(ReplicaError::UnknownLeaderEpoch)
        );
    }

    /// KIP-841: a caught-up follower on a fenced broker is not proposed for the ISR; once its
    /// broker is active again, the next fetch proposes it.
    #[tokio::test]
    async fn replicas_on_fenced_brokers_are_not_proposed_for_the_isr() {
        use caudal_metadata::MetadataRecord;
        let dir = tempfile::tempdir().unwrap();
        let partition = hosted(dir.path(), 1);
        let registered = MetadataImage::default().apply(&MetadataRecord::RegisterBroker {
            node_id: NodeId(2),
            host: "127.0.0.1".into(),
            port: 1,
            rack: None,
        });
        assert!(!registered.is_broker_active(NodeId(2)));
        let mut registration = led(&[1, 2], 1, 0);
        registration.isr = vec![NodeId(1)];
        partition.apply_registration(&registration, &registered, &context(false), TimestampMs(0));
        let outcome = partition
            .on_follower_fetch(follower_fetch(2, 0), TimestampMs(1))
            .unwrap();
        assert_eq!(outcome.isr_proposal, None);

        let active = registered.apply(&MetadataRecord::BrokerState {
            node_id: NodeId(2),
            fenced: false,
            in_controlled_shutdown: false,
        });
        partition.apply_registration(&registration, &active, &context(false), TimestampMs(2));
        let outcome = partition
            .on_follower_fetch(follower_fetch(2, 0), TimestampMs(3))
            .unwrap();
        assert_eq!(
            outcome.isr_proposal.map(|proposal| proposal.new_isr),
            Some(vec![NodeId(1), NodeId(2)])
        );
    }
}
