//! A partition this broker hosts: its log plus leader state and the waits built on it.
//!
//! Single node today: this broker leads every partition, the ISR is itself, and the high
//! watermark is the log end offset. With replication, this is where follower fetch positions, the
//! ISR and the high watermark rule (DESIGN §6) live; the request path already goes through
//! [`Partition::high_watermark`] and [`Partition::wait_durable`], so only this module changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};

use caudal_metadata::config::ResolvedConfig;
use caudal_model::{LeaderEpoch, Offset, TimestampMs, TopicPartition};
use caudal_storage::{CleanupPolicy, LogConfig, PartitionLog, StorageError, TimestampType};
use parking_lot::RwLock;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

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
    /// Woken after every append, for fetches waiting on `min_bytes`.
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
}

impl Partition {
    pub fn new(
        log: Arc<PartitionLog>,
        leader_epoch: LeaderEpoch,
        settings: PartitionSettings,
        now: TimestampMs,
    ) -> Self {
        Self {
            topic_partition: log.topic_partition().clone(),
            topic_id: log.topic_id(),
            log,
            leader_epoch: AtomicI32::new(leader_epoch.0),
            leader: AtomicBool::new(true),
            settings: RwLock::new(settings),
            appended: Notify::new(),
            last_flush_ms: AtomicI64::new(now.0),
            flush_wanted: AtomicI64::new(0),
            flusher_running: AtomicBool::new(false),
            flush_failed: AtomicBool::new(false),
            flushed: watch::channel(0).0,
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch.load(Ordering::Acquire))
    }

    pub fn set_leader_epoch(&self, epoch: LeaderEpoch) {
        self.leader_epoch.store(epoch.0, Ordering::Release);
    }

    /// Whether this node leads the partition: only a leader serves clients' produces and fetches.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Records whether this node leads the partition (from the metadata image).
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
    }

    pub fn settings(&self) -> PartitionSettings {
        self.settings.read().clone()
    }

    pub fn update_settings(&self, log_config: LogConfig, settings: PartitionSettings) {
        self.log.update_config(log_config);
        *self.settings.write() = settings;
    }

    /// The offset below which records are visible to consumers. Single node: the log end offset.
    pub fn high_watermark(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// The last stable offset. No transactions yet, so it is the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        self.high_watermark()
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
}
