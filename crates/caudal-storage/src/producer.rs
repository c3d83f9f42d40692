//! Idempotent-producer state (Kafka's `ProducerStateManager`, `ProducerStateEntry` and
//! `ProducerAppendInfo`): per producer id, its epoch, the last five batches it wrote (for duplicate
//! detection), its last timestamp and the first offset of its open transaction.
//!
//! Rules for appends as leader (exactly Kafka's):
//! - an epoch below the current one → `InvalidProducerEpoch`;
//! - a new epoch must start at sequence 0 (unless no epoch was known) → else `OutOfOrderSequence`;
//! - in the same epoch, a batch whose (first, last) sequence equals one of the cached last five is
//!   a duplicate (nothing is written, the original offsets are returned); otherwise its first
//!   sequence must follow the last one (wrapping at `i32::MAX` to 0) → else `OutOfOrderSequence`;
//! - a producer without state accepts any sequence.
//!
//! Replay (recovery, truncation, snapshots) applies batches without these checks, as Kafka does for
//! replication.
//!
//! Snapshots: `<offset>.snapshot` holds the state of every producer after all batches below
//! `offset`. Binary, big-endian, with a CRC-32C over everything after the CRC field:
//!
//! ```text
//! version: u16 (1) | crc: u32 | offset: i64 | producer count: u32 | producers...
//! producer: id i64 | epoch i16 | last timestamp i64 | open txn first offset i64 (-1 none)
//!           | batch count u8 (≤ 5) | batches: first seq i32 | last seq i32 | first offset i64
//!           | last offset i64 | timestamp i64
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use caudal_model::{Offset, ProducerEpoch, ProducerId, RecordBatchHeader, Sequence, TimestampMs};

use crate::error::{StorageError, io_error};
use crate::files::{remove_file_if_exists, write_atomic};

/// Kafka keeps this many batches per producer for duplicate detection.
pub(crate) const BATCHES_RETAINED: usize = 5;
/// How many snapshot files a log keeps.
pub(crate) const SNAPSHOTS_RETAINED: usize = 3;
/// Suffix of producer snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 2 + 4 + 8 + 4;
const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 8 + 8 + 1;

/// One batch a producer wrote, as remembered for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub first_sequence: Sequence,
    pub last_sequence: Sequence,
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp as written (the append time for `LogAppendTime`).
    pub timestamp: TimestampMs,
}

/// The state of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProducerStateEntry {
    pub epoch: ProducerEpoch,
    pub batches: VecDeque<BatchMetadata>,
    pub last_timestamp: TimestampMs,
    pub current_txn_first_offset: Option<Offset>,
}

impl Default for ProducerStateEntry {
    fn default() -> Self {
        Self {
            epoch: ProducerEpoch::NONE,
            batches: VecDeque::new(),
            last_timestamp: TimestampMs::NONE,
            current_txn_first_offset: None,
        }
    }
}

impl ProducerStateEntry {
    pub fn last_sequence(&self) -> Option<Sequence> {
        self.batches.back().map(|batch| batch.last_sequence)
    }

    fn maybe_update_epoch(&mut self, epoch: ProducerEpoch) {
        if self.epoch != epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
    }

    fn add_data_batch(&mut self, batch: &ProducerBatch) {
        self.maybe_update_epoch(batch.epoch);
        if self.batches.len() == BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(BatchMetadata {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            first_offset: batch.first_offset,
            last_offset: batch.last_offset,
            timestamp: batch.max_timestamp,
        });
        self.last_timestamp = batch.max_timestamp;
        if batch.transactional && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(batch.first_offset);
        }
    }

    /// A control batch (transaction marker) ends the producer's open transaction.
    fn end_transaction(&mut self, batch: &ProducerBatch) {
        self.maybe_update_epoch(batch.epoch);
        self.current_txn_first_offset = None;
        self.last_timestamp = batch.max_timestamp;
    }

    fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchMetadata> {
        if batch.epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|cached| {
                cached.first_sequence == batch.first_sequence
                    && cached.last_sequence == batch.last_sequence
            })
            .copied()
    }
}

/// What the producer-state rules need from one batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProducerBatch {
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub first_sequence: Sequence,
    pub last_sequence: Sequence,
    pub first_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp: TimestampMs,
    pub transactional: bool,
    pub control: bool,
}

impl ProducerBatch {
    /// `None` for a batch without a producer id. Offsets are taken from the header, so stamp (or
    /// pass `first_offset`) first.
    pub fn from_header(
        header: &RecordBatchHeader,
        first_offset: Offset,
        max_timestamp: TimestampMs,
    ) -> Option<ProducerBatch> {
        if !header.has_producer_id() {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset,
            last_offset: Offset(first_offset.0 + header.last_offset_delta as i64),
            max_timestamp,
            transactional: header.is_transactional(),
            control: header.is_control(),
        })
    }
}

/// The outcome of checking a leader append against producer state.
#[derive(Debug)]
pub(crate) enum LeaderCheck {
    /// A batch repeats one of its producer's last five: the append must write nothing.
    Duplicate(BatchMetadata),
    /// The updated entries to install once the append is written.
    Accepted(HashMap<ProducerId, ProducerStateEntry>),
}

fn in_sequence(last: Option<Sequence>, next: Sequence) -> bool {
    let last = last.unwrap_or(Sequence::NONE);
    next.0 as i64 == last.0 as i64 + 1 || (next.0 == 0 && last.0 == i32::MAX)
}

/// Producer state of one partition log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<ProducerId, ProducerStateEntry>,
}

impl ProducerStates {
    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Each producer's last data offset (the last offset of its newest batch), which the log
    /// cleaner must keep so the producer's last sequence survives compaction.
    pub fn last_data_offsets(&self) -> HashMap<ProducerId, Offset> {
        self.producers
            .iter()
            .filter_map(|(id, entry)| entry.batches.back().map(|batch| (*id, batch.last_offset)))
            .collect()
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Validates the producer batches of one leader append, in order, as Kafka's
    /// `analyzeAndValidateProducerState` does: the first duplicate ends the check.
    pub fn check_leader_append(
        &self,
        batches: impl IntoIterator<Item = ProducerBatch>,
    ) -> Result<LeaderCheck, StorageError> {
        let mut updated: HashMap<ProducerId, ProducerStateEntry> = HashMap::new();
        for batch in batches {
            let current = self.producers.get(&batch.producer_id);
            if !batch.control
                && let Some(duplicate) = current.and_then(|entry| entry.find_duplicate(&batch))
            {
                return Ok(LeaderCheck::Duplicate(duplicate));
            }
            let current_epoch = current.map_or(ProducerEpoch::NONE, |entry| entry.epoch);
            let entry = updated
                .entry(batch.producer_id)
                .or_insert_with(|| current.cloned().unwrap_or_default());
            if batch.epoch < entry.epoch {
                return Err(StorageError::InvalidProducerEpoch {
                    producer_id: batch.producer_id,
                    current: entry.epoch,
                    received: batch.epoch,
                });
            }
            if batch.control {
                entry.end_transaction(&batch);
                continue;
            }
            if batch.epoch != entry.epoch {
                if batch.first_sequence.0 != 0 && entry.epoch != ProducerEpoch::NONE {
                    return Err(StorageError::OutOfOrderSequence {
                        producer_id: batch.producer_id,
                        expected: Sequence(0),
                        received: batch.first_sequence,
                    });
                }
            } else {
                let last = entry.last_sequence();
                if current_epoch != ProducerEpoch::NONE && !in_sequence(last, batch.first_sequence)
                {
                    return Err(StorageError::OutOfOrderSequence {
                        producer_id: batch.producer_id,
                        expected: last.map_or(Sequence(0), |last| last.wrapping_add(1)),
                        received: batch.first_sequence,
                    });
                }
            }
            if let Some(transaction_first_offset) = entry.current_txn_first_offset
                && !batch.transactional
            {
                return Err(StorageError::InvalidTxnState {
                    producer_id: batch.producer_id,
                    transaction_first_offset,
                });
            }
            entry.add_data_batch(&batch);
        }
        Ok(LeaderCheck::Accepted(updated))
    }

    /// Installs the entries a successful [`Self::check_leader_append`] produced.
    pub fn apply(&mut self, updated: HashMap<ProducerId, ProducerStateEntry>) {
        self.producers.extend(updated);
    }

    /// Applies a batch without validation (recovery, truncation rebuild, replication).
    pub fn replay(&mut self, batch: &ProducerBatch) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.control {
            entry.end_transaction(batch);
        } else {
            entry.add_data_batch(batch);
        }
    }

    pub fn replay_header(&mut self, header: &RecordBatchHeader) {
        if let Some(batch) =
            ProducerBatch::from_header(header, header.base_offset, header.max_timestamp)
        {
            self.replay(&batch);
        }
    }

    pub fn encode_snapshot(&self, offset: Offset) -> Vec<u8> {
        let mut ids: Vec<&ProducerId> = self.producers.keys().collect();
        ids.sort();
        let mut body = Vec::with_capacity(12 + ids.len() * 64);
        body.extend_from_slice(&offset.0.to_be_bytes());
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&id.0.to_be_bytes());
            body.extend_from_slice(&entry.epoch.0.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.0.to_be_bytes());
            body.extend_from_slice(
                &entry
                    .current_txn_first_offset
                    .map_or(-1, |o| o.0)
                    .to_be_bytes(),
            );
            debug_assert!(entry.batches.len() <= BATCHES_RETAINED);
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.0.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.0.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.0.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.0.to_be_bytes());
                body.extend_from_slice(&batch.timestamp.0.to_be_bytes());
            }
        }
        let mut bytes = Vec::with_capacity(6 + body.len());
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes a snapshot; `expected_offset` is the offset in its file name.
    pub fn decode_snapshot(
        bytes: &[u8],
        expected_offset: Offset,
    ) -> Result<ProducerStates, String> {
        let mut cursor = Cursor { bytes, at: 0 };
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(format!("{} bytes is too short", bytes.len()));
        }
        let version = cursor.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let stored_crc = cursor.u32()?;
        let computed = crc32c::crc32c(&bytes[6..]);
        if stored_crc != computed {
            return Err(format!(
                "CRC mismatch: stored {stored_crc:#010x}, computed {computed:#010x}"
            ));
        }
        let offset = Offset(cursor.i64()?);
        if offset != expected_offset {
            return Err(format!(
                "holds offset {offset}, its name says {expected_offset}"
            ));
        }
        let count = cursor.u32()? as usize;
        if count > bytes.len() / SNAPSHOT_PRODUCER_BYTES {
            return Err(format!("producer count {count} exceeds the file size"));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = ProducerId(cursor.i64()?);
            let epoch = ProducerEpoch(cursor.i16()?);
            let last_timestamp = TimestampMs(cursor.i64()?);
            let txn = cursor.i64()?;
            let batch_count = cursor.u8()? as usize;
            if id.0 < 0 || batch_count > BATCHES_RETAINED {
                return Err(format!("invalid producer {id} with {batch_count} batches"));
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_sequence: Sequence(cursor.i32()?),
                    last_sequence: Sequence(cursor.i32()?),
                    first_offset: Offset(cursor.i64()?),
                    last_offset: Offset(cursor.i64()?),
                    timestamp: TimestampMs(cursor.i64()?),
                });
            }
            let entry = ProducerStateEntry {
                epoch,
                batches,
                last_timestamp,
                current_txn_first_offset: (txn >= 0).then_some(Offset(txn)),
            };
            if producers.insert(id, entry).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if cursor.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - cursor.at));
        }
        Ok(ProducerStates { producers })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self
            .at
            .checked_add(N)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("truncated at byte {}", self.at));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

/// The file name of the snapshot at `offset`.
pub(crate) fn snapshot_file_name(offset: Offset) -> String {
    crate::segment::segment_file_name(offset, SNAPSHOT_SUFFIX)
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<Offset>, StorageError> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        if let Some(name) = entry.file_name().to_str()
            && let Some(offset) = crate::segment::parse_segment_file_name(name, SNAPSHOT_SUFFIX)
        {
            offsets.push(offset);
        }
    }
    offsets.sort();
    Ok(offsets)
}

/// Writes the snapshot at `offset` (atomically; fsynced only if `durable`), then removes the
/// oldest snapshots beyond [`SNAPSHOTS_RETAINED`]. Returns the new file's path.
pub(crate) fn write_snapshot(
    dir: &Path,
    states: &ProducerStates,
    offset: Offset,
    durable: bool,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(snapshot_file_name(offset));
    write_atomic(&path, &states.encode_snapshot(offset), durable)?;
    let offsets = list_snapshots(dir)?;
    if offsets.len() > SNAPSHOTS_RETAINED {
        for old in &offsets[..offsets.len() - SNAPSHOTS_RETAINED] {
            remove_file_if_exists(&dir.join(snapshot_file_name(*old)))?;
        }
    }
    Ok(path)
}

/// Removes every snapshot above `offset`.
pub(crate) fn delete_snapshots_after(dir: &Path, offset: Offset) -> Result<usize, StorageError> {
    let mut removed = 0;
    for snapshot in list_snapshots(dir)? {
        if snapshot > offset {
            remove_file_if_exists(&dir.join(snapshot_file_name(snapshot)))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Loads the newest valid snapshot at or below `offset_max`; invalid ones are removed with a
/// warning. Returns the snapshot's offset and state.
pub(crate) fn load_latest_snapshot(
    dir: &Path,
    offset_max: Offset,
) -> Result<Option<(Offset, ProducerStates)>, StorageError> {
    for offset in list_snapshots(dir)?.into_iter().rev() {
        if offset > offset_max {
            continue;
        }
        let path = dir.join(snapshot_file_name(offset));
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        match ProducerStates::decode_snapshot(&bytes, offset) {
            Ok(states) => return Ok(Some((offset, states))),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "removing invalid producer snapshot");
                remove_file_if_exists(&path)?;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, count: i32, offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: ProducerId(pid),
            epoch: ProducerEpoch(epoch),
            first_sequence: Sequence(first),
            last_sequence: Sequence(first).wrapping_add(count - 1),
            first_offset: Offset(offset),
            last_offset: Offset(offset + count as i64 - 1),
            max_timestamp: TimestampMs(offset),
            transactional: false,
            control: false,
        }
    }

    fn accept(states: &mut ProducerStates, batch: ProducerBatch) {
        match states.check_leader_append([batch]).unwrap() {
            LeaderCheck::Accepted(updated) => states.apply(updated),
            LeaderCheck::Duplicate(duplicate) => panic!("unexpected duplicate {duplicate:?}"),
        }
    }

    #[test]
    fn sequences_must_follow_within_an_epoch() {
        let mut states = ProducerStates::default();
        accept(&mut states, batch(1, 0, 0, 3, 0));
        accept(&mut states, batch(1, 0, 3, 2, 3));
        let error = states
            .check_leader_append([batch(1, 0, 6, 1, 5)])
            .unwrap_err();
        assert!(matches!(
            error,
            StorageError::OutOfOrderSequence {
                expected: Sequence(5),
                received: Sequence(6),
                ..
            }
        ));
    }

    #[test]
    fn several_batches_of_one_producer_in_one_append_chain() {
        let states = ProducerStates::default();
        let checked = states
            .check_leader_append([batch(1, 0, 0, 2, 0), batch(1, 0, 2, 2, 2)])
            .unwrap();
        let LeaderCheck::Accepted(updated) = checked else {
            panic!()
        };
        assert_eq!(updated[&ProducerId(1)].last_sequence(), Some(Sequence(3)));
        // The second batch is checked against the first even when the first is new state.
        let mut states = ProducerStates::default();
        accept(&mut states, batch(1, 0, 0, 1, 0));
        assert!(
            states
                .check_leader_append([batch(1, 0, 1, 1, 1), batch(1, 0, 5, 1, 2)])
                .is_err()
        );
    }

    #[test]
    fn snapshots_round_trip_and_reject_corruption() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            accept(&mut states, batch(1, 0, i * 2, 2, i as i64 * 2));
        }
        accept(&mut states, batch(9, 3, 0, 1, 20));
        let mut txn = batch(4, 1, 0, 1, 21);
        txn.transactional = true;
        accept(&mut states, txn);
        let bytes = states.encode_snapshot(Offset(22));
        assert_eq!(
            ProducerStates::decode_snapshot(&bytes, Offset(22)).unwrap(),
            states
        );
        assert!(ProducerStates::decode_snapshot(&bytes, Offset(21)).is_err());
        for cut in 0..bytes.len() {
            assert!(ProducerStates::decode_snapshot(&bytes[..cut], Offset(22)).is_err());
        }
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0x40;
            assert!(
                ProducerStates::decode_snapshot(&flipped, Offset(22)).is_err(),
                "{index}"
            );
        }
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert!(in_sequence(Some(Sequence(i32::MAX)), Sequence(0)));
        assert!(in_sequence(None, Sequence(0)));
        assert!(!in_sequence(Some(Sequence(i32::MAX)), Sequence(i32::MIN)));
    }
}
