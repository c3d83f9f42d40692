//! Per-log configuration: the subset of Kafka's topic configs the partition log itself enforces,
//! and the broker-wide settings of the log cleaner.

/// `message.timestamp.type`: whose clock the batch's max timestamp carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// The producer's timestamps are kept as sent.
    #[default]
    CreateTime,
    /// The broker overwrites each batch's max timestamp with the append time.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's name for the value (`CreateTime`, `LogAppendTime`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    /// Parses Kafka's name for the value.
    pub fn from_name(name: &str) -> Option<TimestampType> {
        match name {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

/// `cleanup.policy`: what happens to old data — deleted by retention, compacted by the log
/// cleaner, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    /// `delete`: retention by time and size removes old segments.
    #[default]
    Delete,
    /// `compact`: the log cleaner keeps the latest record of each key.
    Compact,
    /// `compact,delete` (or `delete,compact`): both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Retention by time and size applies.
    pub fn delete(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// The log cleaner compacts the log (and keyless records are refused).
    pub fn compact(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// Kafka's value: `delete`, `compact` or `compact,delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Parses Kafka's list value: `delete`, `compact`, or both in either order, comma-separated
    /// with optional whitespace. Anything else (an unknown or empty entry) is `None`.
    pub fn from_name(value: &str) -> Option<CleanupPolicy> {
        let mut compact = false;
        let mut delete = false;
        for entry in value.split(',') {
            match entry.trim() {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }
}

/// Kafka topic configs that shape one partition log. Defaults are Kafka's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would grow past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the incoming batch's max timestamp is this much later than the
    /// active segment's first batch (or, without timestamps, this long after it was created).
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: index capacity; a full offset or time index rolls the segment.
    pub segment_index_bytes: u32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `max.message.bytes`: the largest batch an append accepts.
    pub max_message_bytes: u32,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: a segment whose largest timestamp is older than this is deleted; `-1` (any
    /// negative value) keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`: the oldest segments are deleted while the log stays at least this big
    /// without them; `-1` (any negative value) means no size limit.
    pub retention_bytes: i64,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay on disk (renamed
    /// `.deleted`) before they are removed.
    pub file_delete_delay_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays readable after the log cleaner first saw
    /// it (its batch's delete horizon).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean when dirty bytes / total bytes exceeds this.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10_485_760,
            message_timestamp_type: TimestampType::CreateTime,
            max_message_bytes: 1_048_588,
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            file_delete_delay_ms: 60_000,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// Broker-wide settings of the log cleaner (Kafka's `log.cleaner.*`). Defaults are Kafka's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory for the key → offset map of one cleaner (Kafka
    /// splits it between `log.cleaner.threads`; so should the caller). Each slot takes 24 bytes
    /// (a 16-byte key hash and an 8-byte offset), as in Kafka.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.buffer.load.factor`: the fraction of slots the map fills before a
    /// cleaning pass stops and leaves the rest of the dirty range for the next pass.
    pub dedupe_buffer_load_factor: f64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            dedupe_buffer_bytes: 134_217_728,
            dedupe_buffer_load_factor: 0.9,
        }
    }
}

impl LogConfig {
    /// `segment.bytes` as enforced: positions inside a segment are 32-bit (Kafka caps it at
    /// `Int.MaxValue` too).
    pub(crate) fn segment_bytes_max(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }

    /// How many offset-index entries a segment may hold before it is rolled.
    pub(crate) fn offset_index_entries_max(&self) -> usize {
        (self.segment_index_bytes as usize / crate::index::OFFSET_INDEX_ENTRY_BYTES).max(1)
    }

    /// How many time-index entries a segment may hold before it is rolled.
    pub(crate) fn time_index_entries_max(&self) -> usize {
        (self.segment_index_bytes as usize / crate::index::TIME_INDEX_ENTRY_BYTES).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let config = LogConfig::default();
        assert_eq!(config.segment_bytes, 1 << 30);
        assert_eq!(config.segment_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(config.index_interval_bytes, 4096);
        assert_eq!(config.segment_index_bytes, 10 * 1024 * 1024);
        assert_eq!(config.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.max_message_bytes, 1_048_588);
        assert_eq!(config.offset_index_entries_max(), 1_310_720);
        assert_eq!(config.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(config.retention_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(config.retention_bytes, -1);
        assert_eq!(config.file_delete_delay_ms, 60_000);
        assert_eq!(config.delete_retention_ms, 24 * 3600 * 1000);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        let cleaner = CleanerConfig::default();
        assert_eq!(cleaner.dedupe_buffer_bytes, 128 * 1024 * 1024);
        assert_eq!(cleaner.dedupe_buffer_load_factor, 0.9);
    }

    #[test]
    fn cleanup_policy_names_follow_kafka() {
        for policy in [
            CleanupPolicy::Delete,
            CleanupPolicy::Compact,
            CleanupPolicy::CompactDelete,
        ] {
            assert_eq!(CleanupPolicy::from_name(policy.as_str()), Some(policy));
        }
        assert_eq!(
            CleanupPolicy::from_name("delete, compact"),
            Some(CleanupPolicy::CompactDelete)
        );
        assert!(CleanupPolicy::CompactDelete.compact() && CleanupPolicy::CompactDelete.delete());
        assert!(!CleanupPolicy::Compact.delete() && !CleanupPolicy::Delete.compact());
        for bad in ["", "Compact", "compact,", "purge", "compact,delete,x"] {
            assert_eq!(CleanupPolicy::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timestamp_type_names_round_trip() {
        for value in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
            assert_eq!(TimestampType::from_name(value.as_str()), Some(value));
        }
        assert_eq!(TimestampType::from_name("createtime"), None);
    }
}
