//! The log cleaner (Kafka's `LogCleaner`, `LogCleanerManager`, `SkimpyOffsetMap`): compaction
//! of logs whose `cleanup.policy` includes `compact`, keeping the latest record of every key.
//!
//! **Which logs.** [`PartitionLog::cleanable`] computes Kafka's cleanable range: from the first
//! dirty offset (the cleaner checkpoint, or the log start offset when there is none or it is out
//! of range) to the first uncleanable offset — the lowest of the high watermark (the caller's
//! `upper_bound`; there are no transactions, so it is also the last stable offset), the active
//! segment's base offset, and the first segment whose largest timestamp is within
//! `min.compaction.lag.ms` of now — rounded down to a segment boundary. A log is ready when its
//! dirty ratio (dirty bytes / total bytes) exceeds `min.cleanable.dirty.ratio`, or a dirty
//! segment's first batch is older than `max.compaction.lag.ms`. [`LogCleaner`] picks the
//! filthiest ready log.
//!
//! **One pass** ([`PartitionLog::clean`]):
//! 1. Build the key → latest offset map of the dirty range in an [`OffsetMap`] of bounded size.
//!    If the dirty range has more keys than fit, the map stops at the last record that fit and
//!    the pass cleans only up to there; the checkpoint records it and the next pass continues.
//! 2. Group the segments below the map's end (clean ones included) so each group fits one
//!    segment (`segment.bytes`, `segment.index.bytes`, 31-bit relative offsets), and rewrite each
//!    group into a new segment: a record survives when it is the latest for its key (or past the
//!    map's end), and, if it is a tombstone, while its batch's delete horizon has not passed. A
//!    batch that keeps tombstones gets a delete horizon (now + `delete.retention.ms`, KIP-534).
//!    Batches keep their base offset, last offset, producer fields and codec; a batch that lost
//!    every record is dropped unless it is its producer's last batch or ends the cleaning round
//!    (then its empty header stays); control batches are kept untouched; keyless records go.
//! 3. Swap each cleaned group in (below), then advance the cleaner checkpoint durably.
//!
//! **Concurrency.** The pass holds only the log's maintenance lock (excluding retention). It
//! reads batches under the truncation read lock one at a time and gives up if a truncation
//! happened since it started (the truncation generation changed) or the log is closing. Appends
//! never touch cleaned segments (the active segment is never cleaned). Only the swap takes the
//! append lock.
//!
//! **Crash-safe swap**, under the append lock (so a truncation can never interleave):
//! 1. the cleaned segment is written as `<base>.{log,index,timeindex}.cleaned` and fsynced;
//! 2. renamed to `.swap` (indexes first, `.log` last), directory fsynced;
//! 3. the replaced segments other than the one sharing its base offset are renamed `.deleted`,
//!    directory fsynced;
//! 4. `.swap` renamed over the live names (indexes first, `.log` last), the in-memory list
//!    replaced, the directory fsynced after the lock is released.
//!
//! At startup (`load`), `.cleaned` files are deleted (with any `.swap` at or above the lowest
//! `.cleaned` base offset, which was not completely renamed); a `<base>.log.swap` completes the
//! swap: live segments with base offsets in `[base, swap's next offset)` are deleted and the
//! swap renamed into place (indexes are rebuilt). `.deleted` files are removed.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use caudal_model::{Offset, ProducerId, RecordBatchHeader, TimestampMs, TopicPartition};
use uuid::Uuid;

use crate::CrashPoint;
use crate::config::{CleanerConfig, LogConfig};
use crate::error::StorageError;
use crate::files::sync_dir;
use crate::index::{NewIndexEntries, SegmentIndex, batch_fits_segment, fits_relative};
use crate::log::{PartitionLog, PendingDeletion};
use crate::records::{self, DECOMPRESSED_BATCH_BYTES_MAX};
use crate::segment::{BatchAt, CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX, Segment};

/// Bytes per offset-map slot: a 16-byte key hash and an 8-byte offset (Kafka's arithmetic).
pub const OFFSET_MAP_SLOT_BYTES: u64 = 24;
/// Slots allocated before the map first grows.
const OFFSET_MAP_INITIAL_SLOTS: usize = 1024;
/// Batches larger than this are copied verbatim, never decoded.
const BATCH_DECODE_BYTES_MAX: usize = DECOMPRESSED_BATCH_BYTES_MAX;
/// Chunk size for copying a batch too large to decode.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The key → latest offset map of one cleaner (Kafka's `SkimpyOffsetMap`), bounded by
/// `log.cleaner.dedupe.buffer.size`: keys are stored as 128-bit keyed hashes (two SipHash
/// instances with random keys, so colliding keys cannot be crafted), so memory never depends on
/// key sizes. Open addressing with linear probing; slots are allocated as the map fills, never
/// more than the buffer allows.
pub struct OffsetMap {
    slots_max: usize,
    entries_max: usize,
    hashes: Vec<u128>,
    /// `-1` marks an empty slot.
    offsets: Vec<i64>,
    len: usize,
    latest_offset: i64,
    hashers: (RandomState, RandomState),
}

impl OffsetMap {
    /// A map of `dedupe_buffer_bytes / 24` slots, of which at most `load factor` may fill.
    pub fn new(config: &CleanerConfig) -> OffsetMap {
        let slots = (config.dedupe_buffer_bytes / OFFSET_MAP_SLOT_BYTES).max(2);
        let slots_max = usize::try_from(slots).unwrap_or(usize::MAX / 32);
        let load_factor = if config.dedupe_buffer_load_factor.is_finite() {
            config.dedupe_buffer_load_factor.clamp(0.0, 1.0)
        } else {
            0.9
        };
        let entries_max = ((slots_max as f64 * load_factor) as usize).clamp(1, slots_max - 1);
        OffsetMap {
            slots_max,
            entries_max,
            hashes: Vec::new(),
            offsets: Vec::new(),
            len: 0,
            latest_offset: -1,
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// How many keys the map holds before a pass must stop.
    pub fn entries_max(&self) -> usize {
        self.entries_max
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fraction of the buffer's key capacity in use.
    pub fn utilization(&self) -> f64 {
        self.len as f64 / self.slots_max as f64
    }

    fn clear(&mut self) {
        self.offsets.fill(-1);
        self.len = 0;
        self.latest_offset = -1;
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let high = self.hashers.0.hash_one(key) as u128;
        let low = self.hashers.1.hash_one(key) as u128;
        (high << 64) | low
    }

    /// The slot holding `hash`, or the empty slot where it would go.
    fn slot(&self, hash: u128) -> usize {
        let capacity = self.offsets.len();
        let mut slot = (hash as u64 % capacity as u64) as usize;
        while self.offsets[slot] >= 0 && self.hashes[slot] != hash {
            slot = if slot + 1 == capacity { 0 } else { slot + 1 };
        }
        slot
    }

    fn grow(&mut self) {
        let capacity = self.offsets.len();
        let new_capacity = if capacity == 0 {
            OFFSET_MAP_INITIAL_SLOTS.min(self.slots_max)
        } else {
            capacity.saturating_mul(2).min(self.slots_max)
        };
        let old_hashes = std::mem::replace(&mut self.hashes, vec![0; new_capacity]);
        let old_offsets = std::mem::replace(&mut self.offsets, vec![-1; new_capacity]);
        for (hash, offset) in old_hashes.into_iter().zip(old_offsets) {
            if offset >= 0 {
                let slot = self.slot(hash);
                self.hashes[slot] = hash;
                self.offsets[slot] = offset;
            }
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, changing nothing, when the map
    /// is full (Kafka checks the size before every put, even for a key already present).
    fn put(&mut self, key: &[u8], offset: Offset) -> bool {
        if self.len >= self.entries_max {
            return false;
        }
        let capacity = self.offsets.len();
        if capacity < self.slots_max && (self.len + 1) * 4 > capacity * 3 {
            self.grow();
        }
        let hash = self.hash(key);
        let slot = self.slot(hash);
        if self.offsets[slot] < 0 {
            self.hashes[slot] = hash;
            self.len += 1;
        }
        self.offsets[slot] = offset.0;
        self.latest_offset = offset.0;
        true
    }

    /// The latest offset recorded for `key`.
    fn get(&self, key: &[u8]) -> Option<Offset> {
        if self.offsets.is_empty() {
            return None;
        }
        let slot = self.slot(self.hash(key));
        let offset = self.offsets[slot];
        (offset >= 0).then_some(Offset(offset))
    }
}

/// What [`PartitionLog::cleanable`] found: Kafka's `LogToClean`.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanableInfo {
    /// Where the dirty section starts: the cleaner checkpoint, or the log start offset.
    pub first_dirty_offset: Offset,
    /// Where cleaning must stop: a segment boundary at or below the active segment, the high
    /// watermark and `min.compaction.lag.ms`.
    pub first_uncleanable_offset: Offset,
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments in the cleanable dirty range.
    pub cleanable_bytes: u64,
    /// `cleanable_bytes / (clean_bytes + cleanable_bytes)`.
    pub dirty_ratio: f64,
    /// How long ago `max.compaction.lag.ms` required the oldest dirty segment to be cleaned; 0
    /// when it does not yet.
    pub compaction_delay_ms: i64,
    /// The log should be cleaned now: its dirty ratio exceeds `min.cleanable.dirty.ratio`, or
    /// `max.compaction.lag.ms` passed for dirty data.
    pub ready: bool,
}

/// What one cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanOutcome {
    pub first_dirty_offset: Offset,
    pub first_uncleanable_offset: Offset,
    /// The new cleaner checkpoint: everything below was cleaned. Below the first uncleanable
    /// offset when the map filled up; a later pass continues from here.
    pub end_offset: Offset,
    /// The dirty range had more keys than the map holds; this pass stopped at `end_offset`.
    pub map_full: bool,
    /// Distinct keys in the map.
    pub keys_mapped: usize,
    /// Segments read and replaced (the groups that changed).
    pub segments_cleaned: usize,
    /// Cleaned segments swapped in.
    pub segments_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    /// A truncation or the log closing stopped the pass; the checkpoint did not move.
    pub aborted: bool,
}

/// The fate of one batch in a cleaning pass.
enum BatchFate {
    /// Written unchanged.
    Verbatim,
    /// Written as these bytes (some records removed, or a delete horizon stamped).
    Rewritten(Vec<u8>),
    /// Nothing of it is written.
    Dropped,
}

/// What a pass needs to decide each batch's fate.
struct PassContext {
    now: TimestampMs,
    /// The delete horizon a batch with tombstones gets when it has none.
    new_delete_horizon: TimestampMs,
    /// Each producer's last data offset: that batch is kept, even empty.
    last_data_offsets: HashMap<ProducerId, Offset>,
    /// The first uncleanable offset: the batch ending just below it is kept, even empty.
    round_upper_bound: Offset,
    generation: u64,
    index_interval_bytes: u32,
    file_delete_delay_ms: i64,
}

/// Why a pass stops early.
enum PassError {
    Aborted,
    Storage(StorageError),
}

impl From<StorageError> for PassError {
    fn from(error: StorageError) -> Self {
        PassError::Storage(error)
    }
}

/// The range a pass works on, Kafka's `cleanableOffsets` and `calculateCleanableBytes`.
struct CleaningRange {
    first_dirty: Offset,
    first_uncleanable: Offset,
    clean_bytes: u64,
    cleanable_bytes: u64,
    compaction_delay_ms: i64,
}

/// Index of the segment holding `offset` (the last one based at or below it; the first if none).
fn floor_segment(segments: &[Arc<Segment>], offset: Offset) -> usize {
    segments
        .partition_point(|segment| segment.base_offset <= offset)
        .saturating_sub(1)
}

impl PartitionLog {
    /// The cleaner checkpoint: the offset below which the log was cleaned, if it ever was.
    pub fn cleaner_checkpoint(&self) -> Option<Offset> {
        let checkpoint = self.cleaner_checkpoint.load(Ordering::Acquire);
        (checkpoint >= 0).then_some(Offset(checkpoint))
    }

    /// After a truncation to `offset`: a checkpoint above it would call data that is not there
    /// yet clean (Kafka's `maybeTruncateCheckpoint`).
    pub(crate) fn lower_cleaner_checkpoint(&self, offset: Offset) {
        let _ = self.cleaner_checkpoint.fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |checkpoint| (checkpoint > offset.0).then_some(offset.0),
        );
    }

    #[cfg(test)]
    pub(crate) fn crash_if(&self, point: CrashPoint) -> Result<(), StorageError> {
        let fired = {
            let mut slot = self.failpoint.lock();
            match slot.as_mut() {
                Some(failpoint) if failpoint.point == point && failpoint.skip > 0 => {
                    failpoint.skip -= 1;
                    None
                }
                Some(failpoint) if failpoint.point == point => slot.take(),
                _ => None,
            }
        };
        match fired.map(|failpoint| failpoint.action) {
            None => Ok(()),
            Some(crate::FailAction::Run(action)) => {
                action();
                Ok(())
            }
            Some(crate::FailAction::Crash) => Err(StorageError::CorruptFile {
                path: self.dir.clone(),
                reason: format!("simulated crash at {point:?}"),
            }),
        }
    }

    #[cfg(not(test))]
    #[inline]
    pub(crate) fn crash_if(&self, _point: CrashPoint) -> Result<(), StorageError> {
        Ok(())
    }

    fn cleaning_range(
        &self,
        segments: &[Arc<Segment>],
        config: &LogConfig,
        now: TimestampMs,
        upper_bound: Offset,
    ) -> Result<CleaningRange, StorageError> {
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        let first_dirty = match self.cleaner_checkpoint() {
            Some(checkpoint) if checkpoint >= log_start_offset && checkpoint <= log_end_offset => {
                checkpoint
            }
            _ => log_start_offset,
        };
        let active = segments.len() - 1;
        let active_base = segments[active].base_offset;
        let mut uncleanable = upper_bound.min(active_base);
        let dirty_inactive = floor_segment(segments, first_dirty)..active;
        if config.min_compaction_lag_ms > 0 {
            let horizon = now.0.saturating_sub(config.min_compaction_lag_ms);
            for segment in &segments[dirty_inactive.clone()] {
                if segment.largest_timestamp()?.0 > horizon {
                    uncleanable = uncleanable.min(segment.base_offset);
                    break;
                }
            }
        }
        let uncleanable = uncleanable.max(first_dirty);
        let holding = floor_segment(segments, uncleanable);
        let first_uncleanable = segments[holding.min(active)].base_offset;
        let from = floor_segment(segments, first_dirty.min(first_uncleanable));
        let cleanable_bytes = segments[from..]
            .iter()
            .take_while(|segment| segment.base_offset < first_uncleanable)
            .map(|segment| segment.size())
            .sum();
        let clean_bytes = segments
            .iter()
            .take_while(|segment| segment.base_offset < first_dirty)
            .map(|segment| segment.size())
            .sum();
        let earliest_dirty = segments[dirty_inactive]
            .iter()
            .filter_map(|segment| segment.index.read().first_batch_max_timestamp)
            .filter(|timestamp| timestamp.0 > 0)
            .min();
        let clean_until = now.0.saturating_sub(config.max_compaction_lag_ms.max(0));
        let compaction_delay_ms = match earliest_dirty {
            Some(earliest) if earliest.0 < clean_until => clean_until - earliest.0,
            _ => 0,
        };
        Ok(CleaningRange {
            first_dirty,
            first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            compaction_delay_ms,
        })
    }

    /// Whether and how much this log needs cleaning (Kafka's `LogToClean`); `None` when the
    /// cleanup policy does not include `compact` or the log is empty. `upper_bound` is the high
    /// watermark: nothing at or above it is cleaned.
    pub fn cleanable(
        &self,
        now: TimestampMs,
        upper_bound: Offset,
    ) -> Result<Option<CleanableInfo>, StorageError> {
        self.check_open()?;
        let config = self.config();
        if !config.cleanup_policy.compact() {
            return Ok(None);
        }
        let segments = self.published.read().clone();
        let range = self.cleaning_range(&segments, &config, now, upper_bound);
        let range = self.note_fatal(range)?;
        let total = range.clean_bytes + range.cleanable_bytes;
        if total == 0 {
            return Ok(None);
        }
        let dirty_ratio = range.cleanable_bytes as f64 / total as f64;
        let ready = (range.compaction_delay_ms > 0 && range.cleanable_bytes > 0)
            || dirty_ratio > config.min_cleanable_dirty_ratio;
        Ok(Some(CleanableInfo {
            first_dirty_offset: range.first_dirty,
            first_uncleanable_offset: range.first_uncleanable,
            clean_bytes: range.clean_bytes,
            cleanable_bytes: range.cleanable_bytes,
            dirty_ratio,
            compaction_delay_ms: range.compaction_delay_ms,
            ready,
        }))
    }

    /// One cleaning pass (see the module docs), whatever the dirty ratio: the caller decides when
    /// with [`Self::cleanable`] (or lets [`LogCleaner`] decide). `upper_bound` is the high
    /// watermark; `map` is the cleaner's reusable key map. With no dirty data the pass still
    /// rewrites the clean section, removing tombstones whose delete horizon has passed. Blocks
    /// (reads, writes and fsyncs segments): run it on a background thread. Does nothing for a
    /// log whose cleanup policy does not include `compact`.
    pub fn clean(
        &self,
        now: TimestampMs,
        upper_bound: Offset,
        map: &mut OffsetMap,
    ) -> Result<CleanOutcome, StorageError> {
        self.check_open()?;
        let _maintenance = self.maintenance.lock();
        self.check_open()?;
        let config = self.config();
        if !config.cleanup_policy.compact() {
            let checkpoint = self.cleaner_checkpoint().unwrap_or(self.log_start_offset());
            return Ok(CleanOutcome {
                first_dirty_offset: checkpoint,
                first_uncleanable_offset: checkpoint,
                end_offset: checkpoint,
                ..CleanOutcome::default()
            });
        }
        let (segments, last_data_offsets, generation) = {
            let state = self.append.lock();
            (
                state.segments.clone(),
                state.producers.last_data_offsets(),
                self.truncation_generation.load(Ordering::Acquire),
            )
        };
        let range = self.cleaning_range(&segments, &config, now, upper_bound);
        let range = self.note_fatal(range)?;
        let context = PassContext {
            now,
            new_delete_horizon: TimestampMs(
                now.0.saturating_add(config.delete_retention_ms.max(0)),
            ),
            last_data_offsets,
            round_upper_bound: range.first_uncleanable,
            generation,
            index_interval_bytes: config.index_interval_bytes,
            file_delete_delay_ms: config.file_delete_delay_ms.max(0),
        };
        let mut outcome = CleanOutcome {
            first_dirty_offset: range.first_dirty,
            first_uncleanable_offset: range.first_uncleanable,
            ..CleanOutcome::default()
        };
        let result = self.clean_pass(&segments, &range, &config, &context, map, &mut outcome);
        match result {
            Ok(()) => {}
            Err(PassError::Aborted) => {
                outcome.aborted = true;
                tracing::info!(topic_partition = %self.topic_partition, "cleaning aborted");
                return Ok(outcome);
            }
            Err(PassError::Storage(error)) => return self.note_fatal(Err(error)),
        }
        {
            // Under the append lock, so a truncation (which lowers the checkpoint) is either
            // seen here or comes after the store.
            let _state = self.append.lock();
            if self.check_pass(generation).is_err() {
                outcome.aborted = true;
                return Ok(outcome);
            }
            let checkpoint = outcome.end_offset.max(range.first_dirty);
            self.cleaner_checkpoint
                .store(checkpoint.0, Ordering::Release);
        }
        let written = match self.manager.upgrade() {
            Some(manager) => manager.write_cleaner_checkpoint(),
            None => Ok(()),
        };
        self.note_fatal(written)?;
        tracing::info!(
            topic_partition = %self.topic_partition,
            first_dirty_offset = outcome.first_dirty_offset.0,
            end_offset = outcome.end_offset.0,
            map_full = outcome.map_full,
            keys = outcome.keys_mapped,
            segments_cleaned = outcome.segments_cleaned,
            bytes_read = outcome.bytes_read,
            bytes_written = outcome.bytes_written,
            records_removed = outcome.records_removed,
            "cleaned log"
        );
        Ok(outcome)
    }

    /// Gives up when the log is closing or was truncated since the pass started.
    fn check_pass(&self, generation: u64) -> Result<(), PassError> {
        self.check_open()?;
        if self.maintenance_abort.load(Ordering::Acquire)
            || self.truncation_generation.load(Ordering::Acquire) != generation
        {
            return Err(PassError::Aborted);
        }
        Ok(())
    }

    fn clean_pass(
        &self,
        segments: &[Arc<Segment>],
        range: &CleaningRange,
        config: &LogConfig,
        context: &PassContext,
        map: &mut OffsetMap,
        outcome: &mut CleanOutcome,
    ) -> Result<(), PassError> {
        let end_offset = if range.first_uncleanable > range.first_dirty {
            outcome.map_full = self.build_offset_map(segments, range, context, map)?;
            Offset(map.latest_offset + 1)
        } else {
            // Nothing dirty: rewrite the clean section with an empty map (every record is the
            // latest it knows of), which only drops tombstones whose delete horizon passed.
            map.clear();
            let end = range.first_dirty.min(range.first_uncleanable);
            map.latest_offset = end.0 - 1;
            end
        };
        outcome.end_offset = end_offset;
        outcome.keys_mapped = map.len();
        let to_clean: Vec<Arc<Segment>> = segments[..segments.len() - 1]
            .iter()
            .take_while(|segment| segment.base_offset < end_offset)
            .cloned()
            .collect();
        for group in group_segments(&to_clean, config, range.first_uncleanable) {
            self.clean_group(&group, context, map, outcome)?;
        }
        Ok(())
    }

    /// Kafka's `buildOffsetMap`: maps every keyed record of the dirty range to its offset until
    /// the map is full. Returns whether it filled up; `map.latest_offset` is the last offset it
    /// covers.
    fn build_offset_map(
        &self,
        segments: &[Arc<Segment>],
        range: &CleaningRange,
        context: &PassContext,
        map: &mut OffsetMap,
    ) -> Result<bool, PassError> {
        map.clear();
        let start = range.first_dirty;
        let end = range.first_uncleanable;
        let first = floor_segment(segments, start);
        for (index, segment) in segments.iter().enumerate().skip(first) {
            if segment.base_offset >= end {
                break;
            }
            let next_start = segments
                .get(index + 1)
                .map_or(end, |next| next.base_offset.min(end));
            let size = segment.size();
            let mut position = segment.index.read().floor_position(start, size);
            let mut reader = segment.chunk_reader(size);
            loop {
                let _shared = self.truncation.read();
                self.check_pass(context.generation)?;
                let header = match reader.batch_at(position, true)? {
                    BatchAt::End => break,
                    BatchAt::Invalid(reason) => {
                        return Err(corrupt(segment, position, reason).into());
                    }
                    BatchAt::Batch(header) => header,
                };
                if header.base_offset >= end {
                    break;
                }
                let size_bytes = header.size_bytes();
                if !header.is_control() && size_bytes <= BATCH_DECODE_BYTES_MAX {
                    let bytes = reader.bytes(position, size_bytes)?;
                    match records::decode_batch(bytes, &header) {
                        Ok(decoded) => {
                            for record in &decoded.records {
                                let offset =
                                    Offset(header.base_offset.0 + record.offset_delta as i64);
                                let Some(key) = decoded.key(record) else {
                                    continue;
                                };
                                if offset >= start && !map.put(key, offset) {
                                    return Ok(true);
                                }
                            }
                        }
                        Err(reason) => {
                            tracing::warn!(topic_partition = %self.topic_partition, offset = header.base_offset.0, %reason, "a batch's records cannot be decoded; its keys are not compacted");
                        }
                    }
                }
                if header.last_offset() >= start {
                    map.latest_offset = header.last_offset().0;
                }
                position += size_bytes as u64;
            }
            map.latest_offset = map.latest_offset.max(next_start.0 - 1);
        }
        Ok(false)
    }

    /// Rewrites one group of segments into one cleaned segment and swaps it in. A single
    /// segment that would come out unchanged is left alone.
    fn clean_group(
        &self,
        group: &[Arc<Segment>],
        context: &PassContext,
        map: &OffsetMap,
        outcome: &mut CleanOutcome,
    ) -> Result<(), PassError> {
        let base = group[0].base_offset;
        let cleaned = Arc::new(Segment::create_cleaned(&self.dir, base, context.now)?);
        let result = self.write_cleaned(group, &cleaned, context, map, outcome);
        let unchanged = match result {
            Ok(unchanged) => unchanged,
            Err(error) => {
                cleaned.delete_files_with_suffix(CLEANED_SUFFIX)?;
                return Err(error);
            }
        };
        if unchanged && group.len() == 1 {
            cleaned.delete_files_with_suffix(CLEANED_SUFFIX)?;
            return Ok(());
        }
        self.crash_if(CrashPoint::CleanedWritten)?;
        let swapped = self.swap_in(group, &cleaned, context);
        if let Err(error) = &swapped
            && !matches!(error, PassError::Storage(StorageError::Io { .. }))
        {
            // Given up before anything was renamed: the cleaned files are ours to remove.
            cleaned.delete_files_with_suffix(CLEANED_SUFFIX)?;
        }
        swapped?;
        outcome.segments_cleaned += group.len();
        outcome.segments_written += 1;
        outcome.bytes_written += cleaned.size();
        Ok(())
    }

    /// Writes the cleaned form of `group` into `cleaned`, indexes it, syncs it. Returns whether
    /// every batch was kept unchanged.
    fn write_cleaned(
        &self,
        group: &[Arc<Segment>],
        cleaned: &Segment,
        context: &PassContext,
        map: &OffsetMap,
        outcome: &mut CleanOutcome,
    ) -> Result<bool, PassError> {
        let mut index = SegmentIndex::new(cleaned.base_offset, context.now);
        let mut new_entries: Vec<NewIndexEntries> = Vec::new();
        let mut unchanged = true;
        let mut last_modified = TimestampMs(i64::MIN);
        for segment in group {
            last_modified = last_modified.max(segment.last_modified()?);
            let size = segment.size();
            outcome.bytes_read += size;
            let mut reader = segment.chunk_reader(size);
            let mut position = 0u64;
            loop {
                let _shared = self.truncation.read();
                self.check_pass(context.generation)?;
                let header = match reader.batch_at(position, true)? {
                    BatchAt::End => break,
                    BatchAt::Invalid(reason) => {
                        return Err(corrupt(segment, position, reason).into());
                    }
                    BatchAt::Batch(header) => header,
                };
                let size_bytes = header.size_bytes();
                if !batch_fits_segment(cleaned.base_offset, &header) {
                    return Err(StorageError::CorruptFile {
                        path: segment.log_path.clone(),
                        reason: format!(
                            "batch at {} does not fit a segment based at {}",
                            header.base_offset, cleaned.base_offset
                        ),
                    }
                    .into());
                }
                let out_position = cleaned.size();
                if out_position + size_bytes as u64 > u32::MAX as u64 {
                    return Err(StorageError::CorruptFile {
                        path: segment.log_path.clone(),
                        reason: "the cleaned segment would exceed 4 GiB".into(),
                    }
                    .into());
                }
                let written_header = if size_bytes > BATCH_DECODE_BYTES_MAX {
                    copy_batch(&mut reader, position, size_bytes, cleaned)?;
                    header
                } else {
                    let bytes = reader.bytes(position, size_bytes)?;
                    let (fate, read, removed) = self.batch_fate(bytes, &header, map, context);
                    outcome.records_read += read;
                    outcome.records_removed += removed;
                    match fate {
                        BatchFate::Verbatim => {
                            cleaned.append(&mut [IoSlice::new(bytes)])?;
                            header
                        }
                        BatchFate::Rewritten(new_bytes) => {
                            unchanged = false;
                            cleaned.append(&mut [IoSlice::new(&new_bytes)])?;
                            match RecordBatchHeader::parse(&new_bytes) {
                                Ok(new_header) => new_header,
                                Err(error) => {
                                    return Err(StorageError::CorruptFile {
                                        path: segment.log_path.clone(),
                                        reason: format!("rewritten batch does not parse: {error}"),
                                    }
                                    .into());
                                }
                            }
                        }
                        BatchFate::Dropped => {
                            unchanged = false;
                            position += size_bytes as u64;
                            continue;
                        }
                    }
                };
                cleaned.publish_size(out_position + written_header.size_bytes() as u64);
                let added =
                    index.on_batch(&written_header, out_position, context.index_interval_bytes);
                if added.offset.is_some() || added.time.is_some() {
                    new_entries.push(added);
                }
                position += size_bytes as u64;
            }
        }
        // As when a segment stops being active: its max timestamp is its time index's last entry.
        index.maybe_append_time_entry();
        cleaned.rewrite_index_files(&index)?;
        *cleaned.index.write() = index;
        if last_modified.0 >= 0 {
            cleaned.set_last_modified(last_modified)?;
        }
        cleaned.sync_log()?;
        cleaned.sync_indexes()?;
        Ok(unchanged)
    }

    /// Kafka's `RecordFilter` for the cleaner: which records of the batch survive, and in what
    /// form the batch is written. Returns the fate, records read, records removed.
    fn batch_fate(
        &self,
        bytes: &[u8],
        header: &RecordBatchHeader,
        map: &OffsetMap,
        context: &PassContext,
    ) -> (BatchFate, u64, u64) {
        if header.is_control() {
            return (BatchFate::Verbatim, 0, 0);
        }
        let decoded = match records::decode_batch(bytes, header) {
            Ok(decoded) => decoded,
            Err(reason) => {
                tracing::warn!(topic_partition = %self.topic_partition, offset = header.base_offset.0, %reason, "a batch's records cannot be decoded; keeping it as it is");
                return (BatchFate::Verbatim, 0, 0);
            }
        };
        let horizon = records::delete_horizon(header);
        let latest = map.latest_offset;
        let retained: Vec<&records::RecordRef> = decoded
            .records
            .iter()
            .filter(|record| {
                let offset = header.base_offset.0 + record.offset_delta as i64;
                if offset > latest {
                    return true;
                }
                let Some(key) = decoded.key(record) else {
                    // Kafka drops keyless records from compacted logs.
                    return false;
                };
                let latest_for_key = map.get(key).is_none_or(|found| offset >= found.0);
                let keep_tombstone = horizon.is_none_or(|horizon| context.now < horizon);
                latest_for_key && (record.value.is_some() || keep_tombstone)
            })
            .collect();
        let read = decoded.records.len() as u64;
        let removed = read - retained.len() as u64;
        let has_tombstones = retained.iter().any(|record| record.value.is_none());
        let stamp_horizon = has_tombstones && horizon.is_none();
        if !retained.is_empty() {
            if removed == 0 && !stamp_horizon {
                return (BatchFate::Verbatim, read, 0);
            }
            let new_horizon = stamp_horizon.then_some(context.new_delete_horizon);
            return match records::rebuild_batch(header, &decoded, &retained, new_horizon) {
                Ok(bytes) => (BatchFate::Rewritten(bytes), read, removed),
                Err(reason) => {
                    tracing::warn!(topic_partition = %self.topic_partition, offset = header.base_offset.0, %reason, "a batch cannot be rewritten; keeping it as it is");
                    (BatchFate::Verbatim, read, 0)
                }
            };
        }
        let producers_last = header.has_producer_id()
            && context.last_data_offsets.get(&header.producer_id) == Some(&header.last_offset());
        if producers_last || header.next_offset() == context.round_upper_bound {
            let empty = records::empty_batch(header);
            if empty == bytes {
                // Already an empty header from an earlier pass.
                return (BatchFate::Verbatim, read, removed);
            }
            return (BatchFate::Rewritten(empty), read, removed);
        }
        (BatchFate::Dropped, read, removed)
    }

    /// Replaces `group` with `cleaned` in the log (see the module docs for the steps).
    fn swap_in(
        &self,
        group: &[Arc<Segment>],
        cleaned: &Arc<Segment>,
        context: &PassContext,
    ) -> Result<(), PassError> {
        let mut state = self.append.lock();
        self.check_pass(context.generation)?;
        let Some(start) = state
            .segments
            .iter()
            .position(|segment| Arc::ptr_eq(segment, &group[0]))
        else {
            return Err(PassError::Aborted);
        };
        let end = start + group.len();
        let in_place = end < state.segments.len()
            && state.segments[start..end]
                .iter()
                .zip(group)
                .all(|(live, cleaned_from)| Arc::ptr_eq(live, cleaned_from));
        if !in_place {
            return Err(PassError::Aborted);
        }
        let renamed = (|| {
            cleaned.rename_files(CLEANED_SUFFIX, SWAP_SUFFIX)?;
            sync_dir(&self.dir)?;
            self.crash_if(CrashPoint::SwapRenamed)?;
            let mut deleted = Vec::new();
            for old in group
                .iter()
                .filter(|old| old.base_offset != cleaned.base_offset)
            {
                deleted.extend(old.rename_files("", DELETED_SUFFIX)?);
            }
            sync_dir(&self.dir)?;
            self.crash_if(CrashPoint::OldSegmentsDeleted)?;
            cleaned.rename_files(SWAP_SUFFIX, "")?;
            self.crash_if(CrashPoint::SwapInstalled)?;
            Ok::<_, StorageError>(deleted)
        })();
        // On an I/O error files may be half renamed: the directory goes offline (the caller notes
        // the error) and the next startup finishes the swap.
        let deleted = renamed?;
        state.segments.splice(start..end, [Arc::clone(cleaned)]);
        state
            .unsynced_rolled
            .retain(|segment| !group.iter().any(|old| Arc::ptr_eq(old, segment)));
        self.publish_segments(&state);
        drop(state);
        if !deleted.is_empty() {
            self.pending_deletions.lock().push(PendingDeletion {
                due: TimestampMs(context.now.0.saturating_add(context.file_delete_delay_ms)),
                paths: deleted,
            });
        }
        sync_dir(&self.dir)?;
        Ok(())
    }
}

fn corrupt(segment: &Segment, position: u64, reason: String) -> StorageError {
    StorageError::CorruptFile {
        path: segment.log_path.clone(),
        reason: format!("invalid batch at byte {position}: {reason}"),
    }
}

/// Copies a batch too large to decode, in chunks.
fn copy_batch(
    reader: &mut crate::segment::ChunkReader<'_>,
    position: u64,
    size_bytes: usize,
    cleaned: &Segment,
) -> Result<(), StorageError> {
    let mut copied = 0usize;
    while copied < size_bytes {
        let len = (size_bytes - copied).min(COPY_CHUNK_BYTES);
        let chunk = reader.bytes(position + copied as u64, len)?;
        cleaned.append(&mut [IoSlice::new(chunk)])?;
        copied += len;
    }
    Ok(())
}

/// Kafka's `groupSegmentsBySize`: consecutive segments whose total size fits `segment.bytes`,
/// whose index entries fit `segment.index.bytes`, and whose offsets fit 31 bits relative to the
/// group's first base offset (a segment's last offset is estimated by the next base offset, or
/// `first_uncleanable` for the last one).
fn group_segments(
    segments: &[Arc<Segment>],
    config: &LogConfig,
    first_uncleanable: Offset,
) -> Vec<Vec<Arc<Segment>>> {
    let size_max = config.segment_bytes_max();
    let offset_entries_max = config.offset_index_entries_max();
    let time_entries_max = config.time_index_entries_max();
    let entries = |segment: &Segment| {
        let index = segment.index.read();
        (index.offset_index.len(), index.time_index.len())
    };
    let mut groups = Vec::new();
    let mut index = 0;
    while index < segments.len() {
        let first = &segments[index];
        let mut group = vec![Arc::clone(first)];
        let mut size = first.size();
        let (mut offset_entries, mut time_entries) = entries(first);
        index += 1;
        while let Some(candidate) = segments.get(index) {
            let (candidate_offsets, candidate_times) = entries(candidate);
            let last_offset_estimate = segments
                .get(index + 1)
                .map_or(first_uncleanable, |next| next.base_offset);
            let last_offset_estimate = Offset(last_offset_estimate.0 - 1);
            let fits = size + candidate.size() <= size_max
                && offset_entries + candidate_offsets <= offset_entries_max
                && time_entries + candidate_times <= time_entries_max
                && (candidate.size() == 0
                    || fits_relative(first.base_offset, last_offset_estimate));
            if !fits {
                break;
            }
            size += candidate.size();
            offset_entries += candidate_offsets;
            time_entries += candidate_times;
            group.push(Arc::clone(candidate));
            index += 1;
        }
        groups.push(group);
    }
    groups
}

/// One log the cleaner chose and what cleaning it did.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanReport {
    pub topic_partition: TopicPartition,
    pub cleanable: CleanableInfo,
    pub outcome: CleanOutcome,
}

/// A log cleaner thread's state (Kafka's `CleanerThread` + `LogCleanerManager` choice of log):
/// its bounded key map, reused across passes, and the logs it found corrupt and no longer
/// cleans. The server runs one on a background thread and calls [`Self::clean_filthiest`] in a
/// loop, backing off (`log.cleaner.backoff.ms`) when it returns `None`.
pub struct LogCleaner {
    map: OffsetMap,
    uncleanable: HashSet<(TopicPartition, Uuid)>,
}

impl LogCleaner {
    pub fn new(config: CleanerConfig) -> LogCleaner {
        LogCleaner {
            map: OffsetMap::new(&config),
            uncleanable: HashSet::new(),
        }
    }

    /// How many keys one pass can map.
    pub fn map_entries_max(&self) -> usize {
        self.map.entries_max()
    }

    /// Logs found corrupt while cleaning; they are skipped from then on (Kafka's uncleanable
    /// partitions).
    pub fn uncleanable_partitions(&self) -> Vec<TopicPartition> {
        let mut partitions: Vec<TopicPartition> =
            self.uncleanable.iter().map(|(tp, _)| tp.clone()).collect();
        partitions.sort();
        partitions
    }

    /// Cleans the ready log with the highest dirty ratio among `logs` (each with its high
    /// watermark), if any. A log whose data turns out corrupt is marked uncleanable and skipped
    /// from then on; logs that are closed or whose directory is offline are skipped.
    pub fn clean_filthiest(
        &mut self,
        logs: impl IntoIterator<Item = (Arc<PartitionLog>, Offset)>,
        now: TimestampMs,
    ) -> Result<Option<CleanReport>, StorageError> {
        let mut filthiest: Option<(Arc<PartitionLog>, Offset, CleanableInfo)> = None;
        for (log, high_watermark) in logs {
            let id = (log.topic_partition().clone(), log.topic_id());
            if self.uncleanable.contains(&id) {
                continue;
            }
            let info = match log.cleanable(now, high_watermark) {
                Ok(Some(info)) if info.ready => info,
                Ok(_) => continue,
                Err(error) => {
                    tracing::debug!(topic_partition = %id.0, %error, "skipping a log the cleaner cannot inspect");
                    continue;
                }
            };
            if filthiest
                .as_ref()
                .is_none_or(|(_, _, best)| info.dirty_ratio > best.dirty_ratio)
            {
                filthiest = Some((log, high_watermark, info));
            }
        }
        let Some((log, high_watermark, cleanable)) = filthiest else {
            return Ok(None);
        };
        let topic_partition = log.topic_partition().clone();
        match log.clean(now, high_watermark, &mut self.map) {
            Ok(outcome) => Ok(Some(CleanReport {
                topic_partition,
                cleanable,
                outcome,
            })),
            Err(error @ StorageError::CorruptFile { .. }) => {
                tracing::error!(%topic_partition, %error, "the log cannot be cleaned; marking it uncleanable");
                self.uncleanable.insert((topic_partition, log.topic_id()));
                Ok(None)
            }
            Err(StorageError::LogClosed { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
