//! Helpers shared by the integration tests: temporary directories, batch builders, shortcuts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use caudal_model::batch::build_batch;
use caudal_model::{
    LeaderEpoch, Offset, ProducerEpoch, ProducerId, RecordBatchHeader, Sequence, TimestampMs,
    TopicPartition,
};
use caudal_storage::{LogConfig, LogManager, PartitionLog};
use uuid::Uuid;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "caudal-storage-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const TOPIC_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

pub fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

pub fn now(ms: i64) -> TimestampMs {
    TimestampMs(ms)
}

pub fn epoch(value: i32) -> LeaderEpoch {
    LeaderEpoch(value)
}

/// Record bytes of a given length; the log never decodes records, so any bytes do.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// A plain (non-idempotent) batch of `records` records with max timestamp `max_ts`.
pub fn batch(records: i32, max_ts: i64, payload_len: usize) -> Vec<u8> {
    build_batch(
        Offset(0),
        0,
        records - 1,
        TimestampMs(max_ts - 1),
        TimestampMs(max_ts),
        ProducerId::NONE,
        ProducerEpoch::NONE,
        Sequence::NONE,
        records,
        &payload(payload_len, records as u8),
    )
}

/// An idempotent producer's batch.
pub fn producer_batch(
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    sequenced_batch(0, pid, producer_epoch, first_seq, records, max_ts)
}

/// A transactional producer's batch.
pub fn transactional_batch(
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    sequenced_batch(0x10, pid, producer_epoch, first_seq, records, max_ts)
}

fn sequenced_batch(
    attributes: i16,
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    build_batch(
        Offset(0),
        attributes,
        records - 1,
        TimestampMs(max_ts),
        TimestampMs(max_ts),
        ProducerId(pid),
        ProducerEpoch(producer_epoch),
        Sequence(first_seq),
        records,
        &payload(20, first_seq as u8),
    )
}

/// A control batch (transaction marker) with one record.
pub fn control_batch(pid: i64, producer_epoch: i16, max_ts: i64) -> Vec<u8> {
    build_batch(
        Offset(0),
        0x30,
        0,
        TimestampMs(max_ts),
        TimestampMs(max_ts),
        ProducerId(pid),
        ProducerEpoch(producer_epoch),
        Sequence::NONE,
        1,
        &payload(12, 0),
    )
}

pub fn open(dir: &Path) -> LogManager {
    LogManager::open(dir, now(0)).unwrap()
}

pub fn create(manager: &LogManager, config: LogConfig) -> Arc<PartitionLog> {
    manager.create_log(&tp(), TOPIC_ID, config, now(0)).unwrap()
}

/// Parses the concatenated batches of a read.
pub fn headers(bytes: &[u8]) -> Vec<RecordBatchHeader> {
    caudal_model::batch::BatchIter::new(bytes)
        .map(|item| item.expect("reads return whole valid batches").1)
        .collect()
}

/// Reads the whole log from its start.
pub fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    loop {
        let read = log.read(next, 1 << 20, Offset(i64::MAX), true).unwrap();
        if read.records.is_empty() {
            return out;
        }
        let batches = headers(&read.records);
        next = batches.last().unwrap().next_offset();
        out.extend_from_slice(&read.records);
    }
}

/// The segment files of the test partition, sorted.
pub fn segment_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("orders-0"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// SplitMix64: small, seedable, good enough for choosing operations and damage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    pub fn range(&mut self, low: i64, high_inclusive: i64) -> i64 {
        low + self.below((high_inclusive - low + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
