//! A partition this broker hosts: its log plus leader state and the waits built on it.
//!
//! Single node today: this broker leads every partition, the ISR is itself, and the high
//! watermark is the log end offset. With replication, this is where follower fetch positions, the
//! ISR and the high watermark rule (DESIGN §6) live; the request path already goes through
//! [`Partition::high_watermark`] and [`Partition::wait_durable`], so only this module changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

use caudal_metadata::config::ResolvedConfig;
use caudal_model::{LeaderEpoch, Offset, TimestampMs, TopicPartition};
use caudal_storage::{LogConfig, PartitionLog, StorageError, TimestampType};
use parking_lot::RwLock;
use tokio::sync::Notify;
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
    settings: RwLock<PartitionSettings>,
    /// Woken after every append, for fetches waiting on `min_bytes`.
    appended: Notify,
    /// When the log was last flushed for `flush.ms`.
    last_flush_ms: AtomicI64,
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
            settings: RwLock::new(settings),
            appended: Notify::new(),
            last_flush_ms: AtomicI64::new(now.0),
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch.load(Ordering::Acquire))
    }

    pub fn set_leader_epoch(&self, epoch: LeaderEpoch) {
        self.leader_epoch.store(epoch.0, Ordering::Release);
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

    /// Waits until every record below `offset` is on disk. Concurrent waiters share fsyncs (group
    /// commit happens in the log: a flush covers everything appended before it started).
    pub async fn wait_durable(&self, offset: Offset) -> Result<(), StorageError> {
        if self.log.recovery_point() >= offset {
            return Ok(());
        }
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.flush_to(offset)).await {
            Ok(result) => result.map(|_| ()),
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
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
            self.spawn_flush();
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
            self.spawn_flush();
        }
    }

    fn spawn_flush(self: &Arc<Self>) {
        let partition = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = partition.log.flush() {
                tracing::error!(partition = %partition.topic_partition, %error, "flush failed");
            }
        });
    }
}
