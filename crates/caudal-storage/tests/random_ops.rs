//! Seeded random operations — append (plain, idempotent, retries, several batches), read, roll,
//! truncate, flush, crash (drop without shutdown, optionally tearing or garbling the unflushed
//! tail of the active segment), clean restart — checked against a simple in-memory model.
//!
//! Every case prints its seed; rerun one with `CAUDAL_STORAGE_SEED=<seed> cargo test -p
//! caudal-storage --test random_ops -- --nocapture`, or run more seeds with
//! `CAUDAL_STORAGE_SEEDS=<count>`.

mod common;

use std::path::Path;

use caudal_model::batch::build_batch;
use caudal_model::{
    LeaderEpoch, Offset, ProducerEpoch, ProducerId, RecordBatchHeader, Sequence, TimestampMs,
};
use caudal_storage::{LogConfig, LogManager, PartitionLog, StorageError};
use common::*;

const PID: i64 = 77;
const OPERATIONS: usize = 300;
/// Seeds per run; `CAUDAL_STORAGE_SEEDS=<n>` runs more (small segments make this fsync-bound).
const SEEDS: u64 = 4;

#[derive(Clone, Debug)]
struct ModelBatch {
    /// The batch as the producer sent it.
    sent: Vec<u8>,
    base: i64,
    last: i64,
    leader_epoch: i32,
    /// (producer epoch, first sequence, last sequence) for the idempotent producer.
    producer: Option<(i16, i32, i32)>,
}

#[derive(Default)]
struct Model {
    batches: Vec<ModelBatch>,
    /// Everything below is fsynced (the log's recovery point when last observed).
    durable: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(0, |batch| batch.last + 1)
    }

    fn truncate(&mut self, offset: i64) {
        self.batches.retain(|batch| batch.last < offset);
        self.durable = self.durable.min(self.end());
    }

    fn last_producer_batch(&self) -> Option<(&ModelBatch, (i16, i32, i32))> {
        self.batches
            .iter()
            .rev()
            .find_map(|batch| batch.producer.map(|producer| (batch, producer)))
    }

    /// The batches a retry may repeat: the producer's last five in its latest epoch.
    fn retry_candidates(&self) -> Vec<&ModelBatch> {
        let Some((_, (epoch, _, _))) = self.last_producer_batch() else {
            return Vec::new();
        };
        let mut candidates: Vec<&ModelBatch> = self
            .batches
            .iter()
            .filter(|batch| batch.producer.is_some_and(|(e, _, _)| e == epoch))
            .collect();
        let skip = candidates.len().saturating_sub(5);
        candidates.drain(..skip);
        candidates
    }

    fn expected_epochs(&self) -> Vec<(LeaderEpoch, Offset)> {
        let mut entries: Vec<(LeaderEpoch, Offset)> = Vec::new();
        for batch in &self.batches {
            if entries
                .last()
                .is_none_or(|(epoch, _)| epoch.0 != batch.leader_epoch)
            {
                entries.push((LeaderEpoch(batch.leader_epoch), Offset(batch.base)));
            }
        }
        entries
    }
}

struct Harness {
    rng: Rng,
    model: Model,
    leader_epoch: i32,
    producer_epoch: i16,
    timestamp: i64,
    now: i64,
    config: LogConfig,
}

fn random_config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: rng.range(400, 6000) as u64,
        segment_ms: rng.range(2_000, 50_000),
        index_interval_bytes: rng.range(50, 1000) as u32,
        segment_index_bytes: rng.range(4, 40) as u32 * 12,
        ..LogConfig::default()
    }
}

impl Harness {
    fn plain_batch(&mut self) -> Vec<u8> {
        let records = self.rng.range(1, 5) as i32;
        let len = self.rng.below(200) as usize;
        self.timestamp += self.rng.range(0, 60);
        build_batch(
            Offset(0),
            0,
            records - 1,
            TimestampMs(self.timestamp),
            TimestampMs(self.timestamp + self.rng.range(0, 30)),
            ProducerId::NONE,
            ProducerEpoch::NONE,
            Sequence::NONE,
            records,
            &payload(len, self.rng.next() as u8),
        )
    }

    fn next_producer_batch(&mut self) -> (Vec<u8>, (i16, i32, i32)) {
        let first = match self.model.last_producer_batch() {
            Some((_, (epoch, _, last))) if epoch == self.producer_epoch => last + 1,
            _ => 0,
        };
        let records = self.rng.range(1, 4) as i32;
        self.timestamp += self.rng.range(0, 60);
        let bytes = build_batch(
            Offset(0),
            0,
            records - 1,
            TimestampMs(self.timestamp),
            TimestampMs(self.timestamp),
            ProducerId(PID),
            ProducerEpoch(self.producer_epoch),
            Sequence(first),
            records,
            &payload(self.rng.below(100) as usize, first as u8),
        );
        (bytes, (self.producer_epoch, first, first + records - 1))
    }

    fn append(&mut self, log: &PartitionLog) {
        if self.rng.chance(5) {
            self.leader_epoch += 1;
        }
        if self.rng.chance(10) {
            let candidates = self.model.retry_candidates();
            if !candidates.is_empty() {
                let original = candidates[self.rng.below(candidates.len() as u64) as usize].clone();
                let outcome = log
                    .append_as_leader(
                        &original.sent,
                        LeaderEpoch(self.leader_epoch),
                        TimestampMs(self.now),
                    )
                    .unwrap();
                assert!(outcome.duplicate);
                assert_eq!(
                    (outcome.first_offset.0, outcome.last_offset.0),
                    (original.base, original.last)
                );
                return;
            }
        }
        let count = if self.rng.chance(20) {
            self.rng.range(2, 3)
        } else {
            1
        };
        let mut buffer = Vec::new();
        let mut pending = Vec::new();
        let mut next = self.model.end();
        for _ in 0..count {
            if self.rng.chance(2) {
                self.producer_epoch += 1;
            }
            let (bytes, producer) = if self.rng.chance(40) {
                let (bytes, producer) = self.next_producer_batch();
                (bytes, Some(producer))
            } else {
                (self.plain_batch(), None)
            };
            let header = RecordBatchHeader::parse(&bytes).unwrap();
            let batch = ModelBatch {
                sent: bytes.clone(),
                base: next,
                last: next + header.last_offset_delta as i64,
                leader_epoch: self.leader_epoch,
                producer,
            };
            next = batch.last + 1;
            buffer.extend_from_slice(&bytes);
            // Later batches of the same append chain on earlier ones.
            self.model.batches.push(batch.clone());
            pending.push(batch);
        }
        let outcome = log
            .append_as_leader(
                &buffer,
                LeaderEpoch(self.leader_epoch),
                TimestampMs(self.now),
            )
            .unwrap();
        assert!(!outcome.duplicate);
        assert_eq!(outcome.first_offset.0, pending[0].base);
        assert_eq!(outcome.last_offset.0, pending.last().unwrap().last);
    }

    fn check_read(&mut self, log: &PartitionLog) {
        let end = self.model.end();
        let start = self.rng.range(-1, end + 1);
        let max_bytes = self.rng.below(1500) as usize;
        let upper = self.rng.range(0, end + 2);
        let min_one = self.rng.chance(50);
        let result = log.read(Offset(start), max_bytes, Offset(upper), min_one);
        if start < 0 || start > end {
            assert!(
                matches!(result, Err(StorageError::OffsetOutOfRange { .. })),
                "{result:?}"
            );
            return;
        }
        let got = result.unwrap();
        assert_eq!(got.log_end_offset.0, end);
        let bases = log.segment_base_offsets();
        let segment_of = |base: i64| bases.iter().rposition(|b| b.0 <= base).unwrap();
        let mut expected = Vec::new();
        if let Some(first) = self.model.batches.iter().position(|b| b.last >= start) {
            let segment = segment_of(self.model.batches[first].base);
            let mut total = 0usize;
            for batch in &self.model.batches[first..] {
                let size = batch.sent.len();
                let fits = total + size <= max_bytes || (min_one && total == 0);
                if segment_of(batch.base) != segment || batch.last >= upper.min(end) || !fits {
                    break;
                }
                total += size;
                expected.push(batch.base);
            }
        }
        let got_bases: Vec<i64> = headers(&got.records)
            .iter()
            .map(|h| h.base_offset.0)
            .collect();
        assert_eq!(
            got_bases, expected,
            "read({start}, {max_bytes}, {upper}, {min_one})"
        );
    }

    /// Compares the whole log with the model.
    fn check_all(&self, log: &PartitionLog) {
        let bytes = read_all(log);
        let got = headers(&bytes);
        assert_eq!(got.len(), self.model.batches.len());
        let mut at = 0;
        for (header, batch) in got.iter().zip(&self.model.batches) {
            assert_eq!(header.base_offset.0, batch.base);
            assert_eq!(header.last_offset().0, batch.last);
            assert_eq!(header.partition_leader_epoch.0, batch.leader_epoch);
            assert_eq!(&bytes[at + 16..at + batch.sent.len()], &batch.sent[16..]);
            at += batch.sent.len();
        }
        assert_eq!(log.log_end_offset().0, self.model.end());
        assert_eq!(log.leader_epoch_entries(), self.model.expected_epochs());
        let state = log.producer_state(ProducerId(PID));
        match self.model.last_producer_batch() {
            None => assert!(state.is_none(), "{state:?}"),
            Some((batch, (epoch, _, last))) => {
                let state = state.expect("producer state");
                assert_eq!(state.producer_epoch, ProducerEpoch(epoch));
                assert_eq!(state.last_sequence, Some(Sequence(last)));
                assert_eq!(state.last_offset, Some(Offset(batch.last)));
            }
        }
    }

    /// Simulates losing unflushed bytes: cut the active segment somewhere at or after the durable
    /// point, and maybe leave garbage after the cut. Returns the bytes recovery must remove.
    fn mutilate(&mut self, dir: &Path) -> u64 {
        let file = segment_files(dir, ".log").pop().unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        let base: i64 = name[..20].parse().unwrap();
        let len = std::fs::metadata(&file).unwrap().len();
        let mut durable_position = 0u64;
        for batch in self.model.batches.iter().filter(|b| b.base >= base) {
            if batch.last < self.model.durable {
                durable_position += batch.sent.len() as u64;
            }
        }
        let cut = durable_position + self.rng.below(len - durable_position + 1);
        let handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        handle.set_len(cut).unwrap();
        let mut whole = 0u64;
        let mut survivors = 0;
        for batch in self.model.batches.iter().filter(|b| b.base >= base) {
            if whole + batch.sent.len() as u64 > cut {
                break;
            }
            whole += batch.sent.len() as u64;
            survivors += 1;
        }
        let mut garbage = 0u64;
        if self.rng.chance(40) {
            garbage = self.rng.range(1, 300) as u64;
            let bytes: Vec<u8> = (0..garbage).map(|_| self.rng.next() as u8).collect();
            std::os::unix::fs::FileExt::write_all_at(&handle, &bytes, cut).unwrap();
        }
        let first_in_segment = self.model.batches.iter().position(|b| b.base >= base);
        if let Some(first) = first_in_segment {
            self.model.batches.truncate(first + survivors);
        }
        self.model.durable = self.model.durable.min(self.model.end());
        cut - whole + garbage
    }
}

fn reopen(dir: &Path, config: LogConfig) -> (LogManager, std::sync::Arc<PartitionLog>) {
    let manager = LogManager::open(dir, TimestampMs(0)).unwrap();
    let log = manager.get(&tp()).unwrap();
    log.update_config(config);
    (manager, log)
}

fn run(seed: u64) {
    println!("random_ops seed {seed}");
    let dir = TempDir::new(&format!("random-{seed}"));
    let mut rng = Rng(seed);
    let config = random_config(&mut rng);
    let mut harness = Harness {
        rng,
        model: Model::default(),
        leader_epoch: 0,
        producer_epoch: 0,
        timestamp: 1_000,
        now: 0,
        config,
    };
    let mut manager = open(dir.path());
    let mut log = create(&manager, harness.config);
    for step in 0..OPERATIONS {
        harness.now += harness.rng.range(1, 100);
        let choice = harness.rng.below(100);
        match choice {
            0..=49 => harness.append(&log),
            50..=64 => harness.check_read(&log),
            65..=69 => log.roll(TimestampMs(harness.now)).unwrap(),
            70..=75 => {
                let offset = harness.rng.range(0, harness.model.end());
                log.truncate_to(Offset(offset)).unwrap();
                harness.model.truncate(offset);
                harness.check_all(&log);
            }
            76..=85 => {
                let offset = harness.rng.range(0, harness.model.end() + 1);
                let point = log.flush_to(Offset(offset)).unwrap();
                assert!(point.0 >= offset.min(harness.model.end()));
                harness.model.durable = point.0;
            }
            86..=95 => {
                // Crash: drop everything without shutdown.
                manager.sync_background_flushes();
                harness.model.durable = log.recovery_point().0;
                drop(log);
                drop(manager);
                let expected_truncated = if harness.rng.chance(60) {
                    harness.mutilate(dir.path())
                } else {
                    0
                };
                if harness.rng.chance(20) {
                    harness.config = random_config(&mut harness.rng);
                }
                (manager, log) = reopen(dir.path(), harness.config);
                let report = &manager.recovery_report()[0];
                assert!(!report.clean_shutdown);
                assert_eq!(report.bytes_truncated, expected_truncated, "step {step}");
                assert_eq!(
                    report.corruption.is_some(),
                    expected_truncated > 0,
                    "step {step}"
                );
                harness.check_all(&log);
            }
            _ => {
                manager.shutdown().unwrap();
                drop(log);
                drop(manager);
                (manager, log) = reopen(dir.path(), harness.config);
                let report = &manager.recovery_report()[0];
                assert!(report.clean_shutdown);
                assert_eq!(report.indexes_rebuilt, 0);
                assert_eq!(log.recovery_point().0, harness.model.end());
                harness.check_all(&log);
            }
        }
        // Rolls are flushed in the background; wait so the run does not depend on timing.
        manager.sync_background_flushes();
        assert!(log.recovery_point().0 <= log.log_end_offset().0);
    }
    harness.check_all(&log);
}

#[test]
fn random_operations_match_the_model() {
    if let Some(seed) = std::env::var("CAUDAL_STORAGE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        run(seed);
        return;
    }
    let seeds = std::env::var("CAUDAL_STORAGE_SEEDS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(SEEDS);
    for seed in 1..=seeds {
        run(seed * 0x5DEE_CE66D);
    }
}
