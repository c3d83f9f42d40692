//! The sparse offset index and the time index of one segment, held in memory and mirrored to
//! append-only files, and the single indexing rule shared by appends and recovery.
//!
//! File formats (big-endian, no header, Kafka's entry layouts):
//! - `.index`: 8-byte entries `relative last offset: u32, position: u32`. An entry says "the batch
//!   starting at `position` ends at `base + relative last offset`". Entries are added for the first
//!   batch after more than `index.interval.bytes` of batches since the previous entry.
//! - `.timeindex`: 12-byte entries `timestamp: i64, relative offset: u32`, written at the same
//!   moments as offset-index entries when the segment's max timestamp has grown, and once more when
//!   the segment stops being active. An entry `(T, X)` says "the largest batch max timestamp up to
//!   and including the batch ending at `X` is `T`, first reached by that batch".
//!
//! Loaded index files are validated (sizes, monotonicity, bounds); a file that fails is rebuilt
//! from the segment.

use caudal_model::{Offset, RecordBatchHeader, TimestampMs};

/// Size of one `.index` entry.
pub(crate) const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Size of one `.timeindex` entry.
pub(crate) const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// "The batch starting at `position` has last offset `last_offset`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetIndexEntry {
    pub last_offset: Offset,
    pub position: u32,
}

/// "Up to the batch ending at `offset`, the largest max timestamp is `timestamp`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeIndexEntry {
    pub timestamp: TimestampMs,
    pub offset: Offset,
}

/// The largest offset relative to a segment's base that its indexes can hold (Kafka's limit).
pub(crate) const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;

/// True when `offset` can be stored relative to `base_offset` in the indexes.
pub(crate) fn fits_relative(base_offset: Offset, offset: Offset) -> bool {
    offset
        .0
        .checked_sub(base_offset.0)
        .is_some_and(|relative| (0..=RELATIVE_OFFSET_MAX).contains(&relative))
}

/// True when every offset of the batch `header` describes fits a segment based at
/// `segment_base`. Base offsets are not covered by the CRC, so this is checked (without overflow)
/// before any offset arithmetic on a header read from disk.
pub(crate) fn batch_fits_segment(segment_base: Offset, header: &RecordBatchHeader) -> bool {
    header.last_offset_delta >= 0
        && fits_relative(segment_base, header.base_offset)
        && header.base_offset.0 - segment_base.0 + header.last_offset_delta as i64
            <= RELATIVE_OFFSET_MAX
}

pub(crate) fn encode_offset_entry(base_offset: Offset, entry: OffsetIndexEntry) -> [u8; 8] {
    debug_assert!(fits_relative(base_offset, entry.last_offset));
    let relative = (entry.last_offset.0 - base_offset.0) as u32;
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&relative.to_be_bytes());
    bytes[4..].copy_from_slice(&entry.position.to_be_bytes());
    bytes
}

pub(crate) fn encode_time_entry(base_offset: Offset, entry: TimeIndexEntry) -> [u8; 12] {
    debug_assert!(fits_relative(base_offset, entry.offset));
    let relative = (entry.offset.0 - base_offset.0) as u32;
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&entry.timestamp.0.to_be_bytes());
    bytes[8..].copy_from_slice(&relative.to_be_bytes());
    bytes
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(buf)
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(buf)
}

/// Decodes and validates a `.index` file of a segment whose `.log` is `segment_bytes` long.
pub(crate) fn decode_offset_index(
    bytes: &[u8],
    base_offset: Offset,
    segment_bytes: u64,
) -> Result<Vec<OffsetIndexEntry>, String> {
    if !bytes.len().is_multiple_of(OFFSET_INDEX_ENTRY_BYTES) {
        return Err(format!(
            "size {} is not a multiple of {OFFSET_INDEX_ENTRY_BYTES}",
            bytes.len()
        ));
    }
    let mut entries: Vec<OffsetIndexEntry> =
        Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
        let relative = be_u32(chunk);
        let position = be_u32(&chunk[4..]);
        if relative as i64 > RELATIVE_OFFSET_MAX {
            return Err(format!("relative offset {relative} overflows"));
        }
        let entry = OffsetIndexEntry {
            last_offset: Offset(base_offset.0 + relative as i64),
            position,
        };
        if position as u64 >= segment_bytes {
            return Err(format!(
                "entry position {position} is beyond the segment's {segment_bytes} bytes"
            ));
        }
        if let Some(previous) = entries.last()
            && (entry.last_offset <= previous.last_offset || entry.position <= previous.position)
        {
            return Err(format!("entry {entry:?} does not follow {previous:?}"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Decodes and validates a `.timeindex` file.
pub(crate) fn decode_time_index(
    bytes: &[u8],
    base_offset: Offset,
) -> Result<Vec<TimeIndexEntry>, String> {
    if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_BYTES) {
        return Err(format!(
            "size {} is not a multiple of {TIME_INDEX_ENTRY_BYTES}",
            bytes.len()
        ));
    }
    let mut entries: Vec<TimeIndexEntry> = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
        let timestamp = TimestampMs(be_i64(chunk));
        let relative = be_u32(&chunk[8..]);
        if relative as i64 > RELATIVE_OFFSET_MAX {
            return Err(format!("relative offset {relative} overflows"));
        }
        let entry = TimeIndexEntry {
            timestamp,
            offset: Offset(base_offset.0 + relative as i64),
        };
        if let Some(previous) = entries.last()
            && (entry.timestamp <= previous.timestamp || entry.offset < previous.offset)
        {
            return Err(format!("entry {entry:?} does not follow {previous:?}"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The in-memory state of one segment derived from its batches: both indexes, the max timestamp
/// and what time-based rolling needs. Appends and recovery update it through [`Self::on_batch`]
/// only, so an index rebuilt by recovery is identical to the one appends built.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    pub base_offset: Offset,
    pub offset_index: Vec<OffsetIndexEntry>,
    pub time_index: Vec<TimeIndexEntry>,
    /// The largest batch max timestamp in the segment and the last offset of the first batch
    /// holding it. `None` for an empty segment.
    pub max_timestamp: Option<TimeIndexEntry>,
    /// The max timestamp of the segment's first batch (Kafka's rolling-based timestamp).
    pub first_batch_max_timestamp: Option<TimestampMs>,
    /// When the segment was created or loaded, for `segment.ms` without timestamps.
    pub created: TimestampMs,
}

/// Index entries one batch produced, to be mirrored to the index files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewIndexEntries {
    pub offset: Option<OffsetIndexEntry>,
    pub time: Option<TimeIndexEntry>,
}

impl SegmentIndex {
    pub fn new(base_offset: Offset, created: TimestampMs) -> Self {
        Self {
            base_offset,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: None,
            first_batch_max_timestamp: None,
            created,
        }
    }

    /// Bytes of batches since the last offset-index entry, for a segment of `segment_bytes`.
    /// After an entry for the batch at position `p`, it is `segment_bytes - p`.
    pub fn bytes_since_last_index_entry(&self, segment_bytes: u64) -> u64 {
        let last = self
            .offset_index
            .last()
            .map_or(0, |entry| entry.position as u64);
        segment_bytes.saturating_sub(last)
    }

    /// Accounts for the batch `header` written at `position`: updates the max timestamp and adds
    /// index entries when more than `index_interval_bytes` passed since the last entry (Kafka's
    /// rule). Returns the entries added.
    pub fn on_batch(
        &mut self,
        header: &RecordBatchHeader,
        position: u64,
        index_interval_bytes: u32,
    ) -> NewIndexEntries {
        debug_assert!(position <= u32::MAX as u64);
        debug_assert!(fits_relative(self.base_offset, header.last_offset()));
        let last_offset = header.last_offset();
        if position == 0 {
            self.first_batch_max_timestamp = Some(header.max_timestamp);
        }
        if self
            .max_timestamp
            .is_none_or(|max| header.max_timestamp > max.timestamp)
        {
            self.max_timestamp = Some(TimeIndexEntry {
                timestamp: header.max_timestamp,
                offset: last_offset,
            });
        }
        let mut added = NewIndexEntries::default();
        if self.bytes_since_last_index_entry(position) > index_interval_bytes as u64 {
            let entry = OffsetIndexEntry {
                last_offset,
                position: position as u32,
            };
            debug_assert!(self.offset_index.last().is_none_or(|last| last.last_offset
                < entry.last_offset
                && last.position < entry.position));
            self.offset_index.push(entry);
            added.offset = Some(entry);
            added.time = self.maybe_append_time_entry();
        }
        added
    }

    /// Appends the current max timestamp to the time index if it grew past the last entry.
    pub fn maybe_append_time_entry(&mut self) -> Option<TimeIndexEntry> {
        let max = self.max_timestamp?;
        if self
            .time_index
            .last()
            .is_some_and(|last| max.timestamp <= last.timestamp)
        {
            return None;
        }
        self.time_index.push(max);
        Some(max)
    }

    /// The offset-index entry to start a search for `target` from: the last entry whose last
    /// offset is ≤ `target` and whose position is below `size_limit`.
    pub fn floor_position(&self, target: Offset, size_limit: u64) -> u64 {
        let by_offset = self
            .offset_index
            .partition_point(|entry| entry.last_offset <= target);
        let by_position = self
            .offset_index
            .partition_point(|entry| (entry.position as u64) < size_limit);
        match by_offset.min(by_position) {
            0 => 0,
            count => self.offset_index[count - 1].position as u64,
        }
    }

    /// The last time-index entry whose timestamp is ≤ `timestamp`.
    pub fn time_floor(&self, timestamp: TimestampMs) -> Option<TimeIndexEntry> {
        let count = self
            .time_index
            .partition_point(|entry| entry.timestamp <= timestamp);
        count.checked_sub(1).map(|index| self.time_index[index])
    }

    /// Drops index entries that describe batches at or after `offset`: offset entries whose batch
    /// ends at or after it, time entries whose offset is at or after it. Returns the position to
    /// resume scanning from (the batch of the last kept offset entry, or 0) and resets the max
    /// timestamp to the last kept time entry; the caller rescans from that position.
    pub fn truncate_entries(&mut self, offset: Offset) -> u64 {
        let keep = self
            .offset_index
            .partition_point(|entry| entry.last_offset < offset);
        self.offset_index.truncate(keep);
        let keep = self
            .time_index
            .partition_point(|entry| entry.offset < offset);
        self.time_index.truncate(keep);
        self.max_timestamp = self.time_index.last().copied();
        self.offset_index
            .last()
            .map_or(0, |entry| entry.position as u64)
    }

    /// Accounts for a batch seen while rescanning after [`Self::truncate_entries`] or a load: only
    /// the max timestamp and the first batch's timestamp, no new index entries.
    pub fn observe_batch(&mut self, header: &RecordBatchHeader, position: u64) {
        if position == 0 {
            self.first_batch_max_timestamp = Some(header.max_timestamp);
        }
        if self
            .max_timestamp
            .is_none_or(|max| header.max_timestamp > max.timestamp)
        {
            self.max_timestamp = Some(TimeIndexEntry {
                timestamp: header.max_timestamp,
                offset: header.last_offset(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::batch::build_batch;
    use caudal_model::{ProducerEpoch, ProducerId, Sequence};

    fn header(base: i64, count: i32, max_ts: i64) -> RecordBatchHeader {
        let bytes = build_batch(
            Offset(base),
            0,
            count - 1,
            TimestampMs(max_ts),
            TimestampMs(max_ts),
            ProducerId::NONE,
            ProducerEpoch::NONE,
            Sequence::NONE,
            count,
            &[0; 100],
        );
        RecordBatchHeader::parse_and_validate(&bytes).unwrap()
    }

    #[test]
    fn entries_follow_kafkas_interval_rule() {
        let mut index = SegmentIndex::new(Offset(100), TimestampMs(0));
        let mut position = 0u64;
        let mut added = Vec::new();
        for i in 0..10 {
            let h = header(100 + i * 2, 2, 1000 + i);
            let entries = index.on_batch(&h, position, 300);
            if entries.offset.is_some() {
                added.push(position);
            }
            position += h.size_bytes() as u64;
        }
        // Each batch is 161 bytes: an entry after more than 300 bytes, i.e. every 2nd batch.
        assert_eq!(added, vec![322, 644, 966, 1288]);
        assert_eq!(index.time_index.len(), 4);
        assert_eq!(index.max_timestamp.unwrap().timestamp, TimestampMs(1009));
        assert_eq!(index.first_batch_max_timestamp, Some(TimestampMs(1000)));
        assert_eq!(index.floor_position(Offset(100), u64::MAX), 0);
        assert_eq!(index.floor_position(Offset(105), u64::MAX), 322);
        assert_eq!(index.floor_position(Offset(105), 300), 0);
        assert_eq!(index.floor_position(Offset(200), u64::MAX), 1288);
    }

    #[test]
    fn index_files_round_trip_and_reject_garbage() {
        let base = Offset(1000);
        let entries = [
            OffsetIndexEntry {
                last_offset: Offset(1005),
                position: 4100,
            },
            OffsetIndexEntry {
                last_offset: Offset(1010),
                position: 8200,
            },
        ];
        let bytes: Vec<u8> = entries
            .iter()
            .flat_map(|entry| encode_offset_entry(base, *entry))
            .collect();
        assert_eq!(decode_offset_index(&bytes, base, 9000).unwrap(), entries);
        assert!(decode_offset_index(&bytes, base, 8000).is_err());
        assert!(decode_offset_index(&bytes[..7], base, 9000).is_err());
        let mut reversed = bytes[8..].to_vec();
        reversed.extend_from_slice(&bytes[..8]);
        assert!(decode_offset_index(&reversed, base, 9000).is_err());
        assert!(decode_offset_index(&[0xFF; 8], base, 9000).is_err());

        let times = [
            TimeIndexEntry {
                timestamp: TimestampMs(5),
                offset: Offset(1001),
            },
            TimeIndexEntry {
                timestamp: TimestampMs(9),
                offset: Offset(1001),
            },
        ];
        let bytes: Vec<u8> = times
            .iter()
            .flat_map(|entry| encode_time_entry(base, *entry))
            .collect();
        assert_eq!(decode_time_index(&bytes, base).unwrap(), times);
        assert!(decode_time_index(&bytes[..13], base).is_err());
        let mut swapped = bytes[12..].to_vec();
        swapped.extend_from_slice(&bytes[..12]);
        assert!(decode_time_index(&swapped, base).is_err());
    }

    #[test]
    fn truncating_entries_keeps_only_whole_batches_before_the_offset() {
        let mut index = SegmentIndex::new(Offset(0), TimestampMs(0));
        let mut position = 0u64;
        for i in 0..10 {
            let h = header(i * 2, 2, 1000 + i);
            index.on_batch(&h, position, 100);
            position += h.size_bytes() as u64;
        }
        let resume = index.truncate_entries(Offset(9));
        assert!(index.offset_index.iter().all(|e| e.last_offset < Offset(9)));
        assert!(index.time_index.iter().all(|e| e.offset < Offset(9)));
        assert_eq!(resume, index.offset_index.last().unwrap().position as u64);
        assert_eq!(index.max_timestamp, index.time_index.last().copied());
        assert_eq!(index.truncate_entries(Offset(0)), 0);
        assert!(index.max_timestamp.is_none());
    }
}
