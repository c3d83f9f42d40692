//! Per-log configuration: the subset of Kafka's topic configs the partition log itself enforces.

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

/// Kafka topic configs that shape one partition log. Defaults are Kafka's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    }

    #[test]
    fn timestamp_type_names_round_trip() {
        for value in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
            assert_eq!(TimestampType::from_name(value.as_str()), Some(value));
        }
        assert_eq!(TimestampType::from_name("createtime"), None);
    }
}
