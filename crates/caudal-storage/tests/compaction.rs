//! The log cleaner: keyless records refused on compacted topics, the latest value per key kept
//! with offsets preserved, tombstones kept for `delete.retention.ms` after the cleaner first saw
//! them, bounded key maps (several passes), cleanable-range and dirty-ratio decisions,
//! idempotent producers' last batches, the cleaner checkpoint across restarts, appends and reads
//! while cleaning, and a seeded model test.
//!
//! Rerun one model case with `CAUDAL_STORAGE_SEED=<seed> cargo test -p caudal-storage --test
//! compaction -- --nocapture`; run more with `CAUDAL_STORAGE_SEEDS=<count>`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use caudal_model::Offset;
use caudal_storage::{
    CleanerConfig, CleanupPolicy, LogCleaner, LogConfig, LogManager, OffsetMap, PartitionLog,
    StorageError,
};
use common::*;

fn compacted(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

fn big_map() -> OffsetMap {
    OffsetMap::new(&CleanerConfig::default())
}

fn append(log: &PartitionLog, records: &[KeyValue], ts: i64) -> Offset {
    log.append_as_leader(&keyed_batch(records, ts), epoch(0), now(ts))
        .unwrap()
        .first_offset
}

/// `(offset, key, value)` of every record, as strings (`None` for a tombstone).
fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    read_records(log)
        .into_iter()
        .map(|record| {
            (
                record.offset,
                String::from_utf8(record.key.unwrap()).unwrap(),
                record.value.map(|value| String::from_utf8(value).unwrap()),
            )
        })
        .collect()
}

fn entry(offset: i64, key: &str, value: Option<&str>) -> (i64, String, Option<String>) {
    (offset, key.to_owned(), value.map(str::to_owned))
}

#[test]
fn keyless_records_are_refused_on_compacted_topics() {
    let dir = TempDir::new("keyless");
    let manager = open(dir.path());
    let log = create(&manager, compacted(1 << 20));
    for codec in CODECS {
        let end = log.log_end_offset();
        let keyless =
            keyed_batch_with(&[kv("a", "1"), (None, Some(b"x".to_vec()))], 1, codec, None);
        match log.append_as_leader(&keyless, epoch(0), now(1)) {
            Err(StorageError::InvalidRecord { reason }) => {
                assert_eq!(reason, "Compacted topic cannot accept message without key")
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        assert_eq!(log.log_end_offset(), end, "{codec:?}");
        let keyed = keyed_batch_with(&[kv("a", "1"), tombstone("b")], 1, codec, None);
        log.append_as_leader(&keyed, epoch(0), now(1)).unwrap();
    }
    assert_eq!(log.log_end_offset(), Offset(10));
    // Records that do not decode are refused too.
    let garbage = batch(2, 1, 30);
    assert!(matches!(
        log.append_as_leader(&garbage, epoch(0), now(1)),
        Err(StorageError::InvalidRecord { .. })
    ));
    // A delete-only topic takes keyless records.
    log.update_config(LogConfig::default());
    let keyless = keyed_batch(&[(None, Some(b"x".to_vec()))], 1);
    log.append_as_leader(&keyless, epoch(0), now(1)).unwrap();
    // Replicated batches are the leader's business.
    log.update_config(compacted(1 << 20));
    let mut replicated = keyed_batch(&[(None, Some(b"x".to_vec()))], 1);
    caudal_model::batch::stamp_offset_and_epoch(&mut replicated, Offset(11), epoch(0));
    log.append_as_follower(&replicated, now(1)).unwrap();
}

#[test]
fn cleaning_keeps_the_latest_value_of_every_key_at_its_offset() {
    let dir = TempDir::new("compact-basic");
    let manager = open(dir.path());
    let log = create(&manager, compacted(1 << 20));
    let append_and_roll = |records: &[KeyValue], ts: i64| {
        append(&log, records, ts);
        log.roll(now(ts)).unwrap();
    };
    append_and_roll(&[kv("a", "1"), kv("b", "1")], 10);
    append_and_roll(&[kv("a", "2"), kv("c", "1")], 11);
    append_and_roll(&[kv("b", "2"), kv("a", "3")], 12);
    append_and_roll(&[kv("d", "1")], 13);
    append(&log, &[kv("a", "4")], 14);
    assert_eq!(log.segment_count(), 5);
    let end = log.log_end_offset();
    let mut map = big_map();
    let outcome = log.clean(now(100), end, &mut map).unwrap();
    // The active segment (offset 7) is never cleaned.
    assert_eq!(outcome.first_dirty_offset, Offset(0));
    assert_eq!(outcome.first_uncleanable_offset, Offset(7));
    assert_eq!(outcome.end_offset, Offset(7));
    assert!(!outcome.map_full);
    assert_eq!(outcome.keys_mapped, 4);
    assert_eq!(outcome.records_read, 7);
    assert_eq!(outcome.records_removed, 3);
    assert_eq!(outcome.segments_cleaned, 4);
    assert_eq!(outcome.segments_written, 1);
    assert_eq!(log.cleaner_checkpoint(), Some(Offset(7)));
    assert_eq!(
        contents(&log),
        vec![
            entry(3, "c", Some("1")),
            entry(4, "b", Some("2")),
            entry(5, "a", Some("3")),
            entry(6, "d", Some("1")),
            entry(7, "a", Some("4")),
        ]
    );
    // The small cleaned segments were merged into one.
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(7)]);
    assert_eq!(log.log_start_offset(), Offset(0));
    // Reads by offset land on the batch holding the offset or the next one after a gap.
    let read = log.read(Offset(1), 1 << 20, end, true).unwrap();
    assert_eq!(headers(&read.records)[0].base_offset, Offset(2));
    // Leftovers of the swap are `.deleted` files waiting for file.delete.delay.ms.
    assert_eq!(segment_files(dir.path(), ".cleaned").len(), 0);
    assert_eq!(segment_files(dir.path(), ".swap").len(), 0);
    assert!(log.pending_file_deletions() > 0);
    manager.delete_pending_files(now(1_000_000)).unwrap();
    assert_eq!(segment_files(dir.path(), ".deleted").len(), 0);

    // Restarts (clean and crash) read back the same log and the same checkpoint.
    let before = contents(&log);
    manager.shutdown().unwrap();
    drop(manager);
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(contents(&log), before);
    assert_eq!(log.cleaner_checkpoint(), Some(Offset(7)));
    let checkpoint = std::fs::read_to_string(dir.path().join("cleaner-offset-checkpoint")).unwrap();
    assert_eq!(checkpoint, "0\n1\norders 0 7\n");
    drop(manager);
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(contents(&log), before);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn tombstones_stay_for_delete_retention_ms_after_the_cleaner_first_sees_them() {
    let dir = TempDir::new("compact-tombstones");
    let manager = open(dir.path());
    let log = create(&manager, compacted(50));
    append(&log, &[kv("a", "1"), kv("b", "1")], 10);
    append(&log, &[tombstone("a"), kv("c", "1")], 11);
    append(&log, &[kv("d", "1")], 12);
    let mut map = big_map();
    log.clean(now(5_000), log.log_end_offset(), &mut map)
        .unwrap();
    // The tombstone is the latest for `a`: kept, its batch stamped with 5_000 + 1_000.
    assert_eq!(
        contents(&log),
        vec![
            entry(1, "b", Some("1")),
            entry(2, "a", None),
            entry(3, "c", Some("1")),
            entry(4, "d", Some("1")),
        ]
    );
    let stamped = read_all(&log);
    let tombstone_batch = headers(&stamped)
        .into_iter()
        .find(|header| header.base_offset == Offset(2))
        .unwrap();
    assert_eq!(tombstone_batch.attributes & 0x40, 0x40);
    assert_eq!(tombstone_batch.base_timestamp.0, 6_000);
    // Record timestamps survive the new base timestamp.
    let timestamps: Vec<i64> = read_records(&log)
        .iter()
        .map(|record| record.timestamp)
        .collect();
    assert_eq!(timestamps, vec![11, 11, 12, 12]);

    append(&log, &[kv("e", "1")], 13);
    append(&log, &[kv("f", "1")], 14);
    // Before the horizon, later passes keep it.
    log.clean(now(5_999), log.log_end_offset(), &mut map)
        .unwrap();
    assert!(contents(&log).contains(&entry(2, "a", None)));
    // At the horizon it goes, even with nothing new to clean.
    log.clean(now(6_000), log.log_end_offset(), &mut map)
        .unwrap();
    assert!(!contents(&log).iter().any(|(_, key, _)| key == "a"));
    assert_eq!(contents(&log)[0], entry(1, "b", Some("1")));
}

#[test]
fn a_small_key_map_cleans_in_several_passes() {
    let dir = TempDir::new("compact-passes");
    let manager = open(dir.path());
    let log = create(&manager, compacted(400));
    let mut expected: HashMap<String, (i64, String)> = HashMap::new();
    for round in 0..30 {
        let key = format!("k{}", round % 7);
        let value = format!("v{round}");
        let offset = append(&log, &[kv(&key, &value)], round);
        expected.insert(key, (offset.0, value));
    }
    log.roll(now(100)).unwrap();
    // Three keys per pass.
    let mut map = OffsetMap::new(&CleanerConfig {
        dedupe_buffer_bytes: 24 * 4,
        dedupe_buffer_load_factor: 0.9,
    });
    assert_eq!(map.entries_max(), 3);
    let end = log.log_end_offset();
    let mut passes = 0;
    loop {
        let outcome = log.clean(now(1_000), end, &mut map).unwrap();
        passes += 1;
        assert!(outcome.keys_mapped <= 3);
        assert_eq!(log.cleaner_checkpoint(), Some(outcome.end_offset));
        if !outcome.map_full {
            assert_eq!(outcome.end_offset, end);
            break;
        }
        assert!(outcome.end_offset < end);
        assert!(passes < 40, "no progress");
    }
    assert!(passes > 2, "{passes} passes");
    let mut wanted: Vec<(i64, String, Option<String>)> = expected
        .into_iter()
        .map(|(key, (offset, value))| (offset, key, Some(value)))
        .collect();
    wanted.sort();
    assert_eq!(contents(&log), wanted);
}

#[test]
fn cleanable_follows_kafkas_ratio_and_lag_rules() {
    let dir = TempDir::new("compact-cleanable");
    let manager = open(dir.path());
    let log = create(&manager, compacted(50));
    assert_eq!(log.cleanable(now(0), Offset(0)).unwrap(), None);
    for ts in 1..=4 {
        append(&log, &[kv("a", &ts.to_string()), kv("b", "x")], ts * 1_000);
    }
    let end = log.log_end_offset();
    let info = log.cleanable(now(10_000), end).unwrap().unwrap();
    assert_eq!(info.first_dirty_offset, Offset(0));
    assert_eq!(info.first_uncleanable_offset, Offset(6));
    assert_eq!(info.clean_bytes, 0);
    assert_eq!(info.dirty_ratio, 1.0);
    assert!(info.ready);
    // The high watermark bounds the range, rounded down to a segment boundary.
    let info = log.cleanable(now(10_000), Offset(3)).unwrap().unwrap();
    assert_eq!(info.first_uncleanable_offset, Offset(2));
    // min.compaction.lag.ms: the segment whose largest timestamp is within the lag stops it.
    log.update_config(LogConfig {
        min_compaction_lag_ms: 8_500,
        ..compacted(50)
    });
    let info = log.cleanable(now(10_000), end).unwrap().unwrap();
    assert_eq!(info.first_uncleanable_offset, Offset(2));
    log.update_config(compacted(50));

    let mut map = big_map();
    log.clean(now(10_000), end, &mut map).unwrap();
    let info = log
        .cleanable(now(10_000), log.log_end_offset())
        .unwrap()
        .unwrap();
    assert_eq!(info.first_dirty_offset, Offset(6));
    assert_eq!(info.cleanable_bytes, 0);
    assert_eq!(info.dirty_ratio, 0.0);
    assert!(!info.ready);

    // New dirty data: ready only above min.cleanable.dirty.ratio.
    append(&log, &[kv("a", "5"), kv("b", "y")], 5_000);
    let info = log
        .cleanable(now(10_000), log.log_end_offset())
        .unwrap()
        .unwrap();
    assert!(info.cleanable_bytes > 0 && info.clean_bytes > 0);
    let ratio = info.dirty_ratio;
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    log.update_config(LogConfig {
        min_cleanable_dirty_ratio: ratio + 0.01,
        ..compacted(50)
    });
    assert!(
        !log.cleanable(now(10_000), log.log_end_offset())
            .unwrap()
            .unwrap()
            .ready
    );
    // max.compaction.lag.ms makes it ready whatever the ratio.
    log.update_config(LogConfig {
        min_cleanable_dirty_ratio: 0.99,
        max_compaction_lag_ms: 3_000,
        ..compacted(50)
    });
    let info = log
        .cleanable(now(10_000), log.log_end_offset())
        .unwrap()
        .unwrap();
    // The oldest dirty segment's first batch has max timestamp 4_001.
    assert_eq!(info.compaction_delay_ms, 10_000 - 3_000 - 4_001);
    assert!(info.ready);
    // A delete-only log is never cleanable.
    log.update_config(LogConfig::default());
    assert_eq!(
        log.cleanable(now(10_000), log.log_end_offset()).unwrap(),
        None
    );
}

#[test]
fn a_producers_last_batch_survives_as_an_empty_header() {
    let dir = TempDir::new("compact-producer");
    {
        let manager = open(dir.path());
        let log = create(&manager, compacted(50));
        let first = keyed_batch_with(
            &[kv("a", "1"), kv("b", "1")],
            10,
            Codec::Zstd,
            Some((7, 0, 0)),
        );
        let second = keyed_batch_with(
            &[kv("a", "2"), kv("b", "2")],
            11,
            Codec::Gzip,
            Some((7, 0, 2)),
        );
        log.append_as_leader(&first, epoch(0), now(10)).unwrap();
        log.append_as_leader(&second, epoch(0), now(11)).unwrap();
        // Another producer supersedes everything the idempotent one wrote.
        append(&log, &[kv("a", "3"), kv("b", "3")], 12);
        append(&log, &[kv("z", "1")], 13);
        let mut map = big_map();
        log.clean(now(100), log.log_end_offset(), &mut map).unwrap();
        let cleaned = read_all(&log);
        let batches = headers(&cleaned);
        // The first batch is gone; the second stays as an empty header with its last offset and
        // sequence.
        assert_eq!(batches[0].base_offset, Offset(2));
        assert_eq!(batches[0].record_count, 0);
        assert_eq!(batches[0].last_offset(), Offset(3));
        assert_eq!(batches[0].last_sequence().0, 3);
        assert_eq!(
            contents(&log),
            vec![
                entry(4, "a", Some("3")),
                entry(5, "b", Some("3")),
                entry(6, "z", Some("1"))
            ]
        );
        // A retry of the last batch is still recognised as a duplicate.
        let retry = log.append_as_leader(&second, epoch(0), now(20)).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.first_offset, Offset(2));
        // A crash (no clean shutdown): producer state is rebuilt.
    }
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    log.update_config(compacted(50));
    let state = log.producer_state(caudal_model::ProducerId(7)).unwrap();
    assert_eq!(state.last_sequence.unwrap().0, 3);
    assert_eq!(state.last_offset, Some(Offset(3)));
    let next = keyed_batch_with(&[kv("c", "1")], 30, Codec::None, Some((7, 0, 4)));
    assert!(
        !log.append_as_leader(&next, epoch(0), now(30))
            .unwrap()
            .duplicate
    );
}

#[test]
fn control_batches_are_kept_untouched() {
    let dir = TempDir::new("compact-control");
    let manager = open(dir.path());
    let log = create(&manager, compacted(50));
    append(&log, &[kv("a", "1")], 10);
    log.append_as_leader(&control_batch(9, 0, 11), epoch(0), now(11))
        .unwrap();
    append(&log, &[kv("a", "2")], 12);
    append(&log, &[kv("b", "1")], 13);
    let before: Vec<u8> = {
        let all = read_all(&log);
        let control = headers(&all)
            .into_iter()
            .find(|header| header.is_control())
            .unwrap();
        let read = log
            .read(
                control.base_offset,
                control.size_bytes(),
                Offset(i64::MAX),
                true,
            )
            .unwrap();
        read.records.to_vec()
    };
    let mut map = big_map();
    log.clean(now(100), log.log_end_offset(), &mut map).unwrap();
    let after = log
        .read(Offset(1), 1 << 20, Offset(i64::MAX), true)
        .unwrap();
    assert_eq!(&after.records[..before.len()], &before[..]);
    assert_eq!(
        contents(&log),
        vec![entry(2, "a", Some("2")), entry(3, "b", Some("1"))]
    );
}

#[test]
fn appends_and_reads_go_on_while_a_log_is_cleaned() {
    let dir = TempDir::new("compact-concurrent");
    let manager = open(dir.path());
    let log = create(&manager, compacted(2_000));
    for round in 0..400 {
        append(
            &log,
            &[kv(&format!("k{}", round % 20), &format!("v{round}"))],
            round,
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let log = Arc::clone(&log);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut appended = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || appended < 50 {
                let round = 400 + appended;
                append(
                    &log,
                    &[kv(&format!("k{}", round % 20), &format!("v{round}"))],
                    round,
                );
                let read = log
                    .read(log.log_start_offset(), 1 << 16, log.log_end_offset(), true)
                    .unwrap();
                assert!(!read.records.is_empty());
                appended += 1;
            }
            appended
        })
    };
    let mut map = big_map();
    for pass in 0..5 {
        let outcome = log
            .clean(now(10_000 + pass), log.log_end_offset(), &mut map)
            .unwrap();
        assert!(!outcome.aborted);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = writer.join().unwrap();
    log.roll(now(20_000)).unwrap();
    log.clean(now(20_000), log.log_end_offset(), &mut map)
        .unwrap();
    let mut expected: HashMap<String, (i64, String)> = HashMap::new();
    for round in 0..400 + appended {
        expected.insert(format!("k{}", round % 20), (round, format!("v{round}")));
    }
    let mut wanted: Vec<(i64, String, Option<String>)> = expected
        .into_iter()
        .map(|(key, (offset, value))| (offset, key, Some(value)))
        .collect();
    wanted.sort();
    assert_eq!(contents(&log), wanted);
}

#[test]
fn the_log_cleaner_picks_the_filthiest_ready_log() {
    let dir = TempDir::new("compact-filthiest");
    let manager = open(dir.path());
    let mut logs = Vec::new();
    for (partition, duplicates) in [(0, 2), (1, 5), (2, 1)] {
        let tp = caudal_model::TopicPartition::new("orders", partition);
        let log = manager
            .create_log(&tp, TOPIC_ID, compacted(50), now(0))
            .unwrap();
        for round in 0..6 {
            append(&log, &[kv(&format!("k{}", round % duplicates), "v")], round);
        }
        logs.push(log);
    }
    manager
        .create_log(
            &caudal_model::TopicPartition::new("plain", 0),
            TOPIC_ID,
            LogConfig::default(),
            now(0),
        )
        .unwrap();
    let mut cleaner = LogCleaner::new(CleanerConfig::default());
    let with_high_watermarks = |manager: &LogManager| {
        manager
            .logs()
            .into_iter()
            .map(|log| {
                let end = log.log_end_offset();
                (log, end)
            })
            .collect::<Vec<_>>()
    };
    let mut cleaned = Vec::new();
    while let Some(report) = cleaner
        .clean_filthiest(with_high_watermarks(&manager), now(1_000))
        .unwrap()
    {
        assert!(report.cleanable.ready);
        cleaned.push(report.topic_partition.partition.0);
        assert!(cleaned.len() <= 3);
    }
    // All three were wholly dirty (ratio 1); each is cleaned once, then none is ready.
    cleaned.sort();
    assert_eq!(cleaned, vec![0, 1, 2]);
    assert!(cleaner.uncleanable_partitions().is_empty());
    assert_eq!(contents(&logs[2]).len(), 1 + 1);
}

// ---------------------------------------------------------------------------------------------
// The model test.

const DELETE_RETENTION_MS: i64 = 1_000;
const PID: i64 = 7;

#[derive(Clone, Debug)]
struct ModelRecord {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    batch: usize,
}

#[derive(Default)]
struct Model {
    records: Vec<ModelRecord>,
    /// Per batch: its base offset and the time a cleaning pass first rewrote it.
    batches: Vec<(i64, Option<i64>)>,
    /// The producer's last batch as sent, and its first offset.
    last_producer_batch: Option<(Vec<u8>, i64)>,
    next_sequence: i32,
    /// Time of the latest cleaning pass.
    last_pass: Option<i64>,
}

impl Model {
    /// What the log must hold after cleaning everything below `first_uncleanable` at
    /// `self.last_pass`.
    fn expected(&self, first_uncleanable: i64) -> Vec<ReadRecord> {
        let mut latest: HashMap<&[u8], i64> = HashMap::new();
        for record in &self.records {
            if record.offset < first_uncleanable {
                latest.insert(&record.key, record.offset);
            }
        }
        self.records
            .iter()
            .filter(|record| {
                if record.offset >= first_uncleanable {
                    return true;
                }
                if latest[&record.key[..]] != record.offset {
                    return false;
                }
                if record.value.is_some() {
                    return true;
                }
                match (self.batches[record.batch].1, self.last_pass) {
                    (Some(first_seen), Some(last_pass)) => {
                        last_pass < first_seen + DELETE_RETENTION_MS
                    }
                    _ => true,
                }
            })
            .map(|record| ReadRecord {
                offset: record.offset,
                timestamp: record.timestamp,
                key: Some(record.key.clone()),
                value: record.value.clone(),
            })
            .collect()
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("CAUDAL_STORAGE_SEED") {
        return vec![seed.parse().expect("a numeric seed")];
    }
    let count = std::env::var("CAUDAL_STORAGE_SEEDS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(6u64);
    (0..count).map(|index| 0xC0FFEE + index * 7919).collect()
}

#[test]
fn cleaning_matches_the_latest_value_per_key_model() {
    for seed in seeds() {
        println!("seed {seed}");
        run_model(seed);
    }
}

fn run_model(seed: u64) {
    let mut rng = Rng(seed);
    let dir = TempDir::new("compact-model");
    let config = LogConfig {
        segment_bytes: rng.range(250, 1_500) as u64,
        index_interval_bytes: rng.range(0, 300) as u32,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: DELETE_RETENTION_MS,
        ..LogConfig::default()
    };
    let mut map = OffsetMap::new(&CleanerConfig {
        dedupe_buffer_bytes: 24 * [3, 8, 40, 10_000][rng.below(4) as usize],
        dedupe_buffer_load_factor: 0.9,
    });
    let keys = rng.range(3, 25);
    let mut manager = open(dir.path());
    let mut log = create(&manager, config);
    let mut model = Model::default();
    let mut time = 1_000i64;
    for step in 0..150 {
        time += rng.range(0, 300);
        match rng.below(100) {
            0..=59 => {
                let count = rng.range(1, 4) as usize;
                let records: Vec<KeyValue> = (0..count)
                    .map(|_| {
                        let key = format!("key-{}", rng.below(keys as u64)).into_bytes();
                        let value = (!rng.chance(20))
                            .then(|| format!("v{step}-{}", rng.next()).into_bytes());
                        (Some(key), value)
                    })
                    .collect();
                let codec = CODECS[rng.below(CODECS.len() as u64) as usize];
                let producer = rng.chance(30).then(|| {
                    let sequence = model.next_sequence;
                    model.next_sequence += count as i32;
                    (PID, 0, sequence)
                });
                let bytes = keyed_batch_with(&records, time, codec, producer);
                let outcome = log.append_as_leader(&bytes, epoch(0), now(time)).unwrap();
                assert!(!outcome.duplicate);
                let batch = model.batches.len();
                model.batches.push((outcome.first_offset.0, None));
                if producer.is_some() {
                    model.last_producer_batch = Some((bytes, outcome.first_offset.0));
                }
                for (index, (key, value)) in records.into_iter().enumerate() {
                    model.records.push(ModelRecord {
                        offset: outcome.first_offset.0 + index as i64,
                        key: key.unwrap(),
                        value,
                        timestamp: time + index as i64,
                        batch,
                    });
                }
            }
            60..=69 => log.roll(now(time)).unwrap(),
            70..=84 => {
                // Clean until the whole cleanable range is done.
                let high_watermark = log.log_end_offset();
                let mut first_uncleanable = None;
                for _ in 0..1_000 {
                    let bases = log.segment_base_offsets();
                    let outcome = log.clean(now(time), high_watermark, &mut map).unwrap();
                    assert!(!outcome.aborted);
                    // Every batch in a segment based below the pass's end was rewritten.
                    for (base_offset, first_seen) in model.batches.iter_mut() {
                        let holding = bases
                            .iter()
                            .rev()
                            .find(|base| base.0 <= *base_offset)
                            .copied()
                            .unwrap_or(bases[0]);
                        if holding < outcome.end_offset && first_seen.is_none() {
                            *first_seen = Some(time);
                        }
                    }
                    model.last_pass = Some(time);
                    first_uncleanable = Some(outcome.first_uncleanable_offset.0);
                    if !outcome.map_full {
                        break;
                    }
                }
                let first_uncleanable = first_uncleanable.unwrap();
                let actual = read_records(&log);
                let expected = model.expected(first_uncleanable);
                assert_eq!(
                    actual, expected,
                    "seed {seed} step {step}: log differs from the model"
                );
            }
            85..=89 => {
                // A retry of the producer's last batch is a duplicate, compacted or not.
                if let Some((bytes, first_offset)) = &model.last_producer_batch {
                    let retry = log.append_as_leader(bytes, epoch(0), now(time)).unwrap();
                    assert!(retry.duplicate, "seed {seed} step {step}");
                    assert_eq!(retry.first_offset.0, *first_offset);
                }
            }
            90..=94 => {
                if rng.chance(50) {
                    manager.shutdown().unwrap();
                }
                drop(log);
                drop(manager);
                manager = LogManager::open(dir.path(), now(time)).unwrap();
                log = manager.get(&tp()).unwrap();
                log.update_config(config);
                let actual = read_records(&log);
                assert_eq!(
                    actual.len(),
                    actual
                        .iter()
                        .map(|record| record.offset)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len()
                );
            }
            _ => {
                manager.delete_pending_files(now(time + 60_000)).unwrap();
            }
        }
        // Whatever happened, every record read back was appended as it is.
        let by_offset: HashMap<i64, &ModelRecord> = model
            .records
            .iter()
            .map(|record| (record.offset, record))
            .collect();
        for record in read_records(&log) {
            let original = by_offset[&record.offset];
            assert_eq!(
                record.key.as_deref(),
                Some(&original.key[..]),
                "seed {seed} step {step}"
            );
            assert_eq!(record.value, original.value, "seed {seed} step {step}");
            assert_eq!(
                record.timestamp, original.timestamp,
                "seed {seed} step {step}"
            );
        }
    }
}

#[test]
fn a_log_with_a_corrupt_segment_becomes_uncleanable() {
    let dir = TempDir::new("compact-corrupt");
    let manager = open(dir.path());
    let log = create(&manager, compacted(50));
    for round in 0..4 {
        append(&log, &[kv("a", &format!("v{round}"))], round);
    }
    // Flip a byte inside the first segment's record (covered by the CRC).
    let first = &segment_files(dir.path(), ".log")[0];
    let mut bytes = std::fs::read(first).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xFF;
    std::fs::write(first, &bytes).unwrap();
    let mut cleaner = LogCleaner::new(CleanerConfig::default());
    let logs = || vec![(Arc::clone(&log), log.log_end_offset())];
    assert_eq!(cleaner.clean_filthiest(logs(), now(100)).unwrap(), None);
    assert_eq!(cleaner.uncleanable_partitions(), vec![tp()]);
    // Skipped from then on; the log itself keeps working and nothing was swapped.
    assert_eq!(cleaner.clean_filthiest(logs(), now(100)).unwrap(), None);
    assert_eq!(log.cleaner_checkpoint(), None);
    assert_eq!(segment_files(dir.path(), ".cleaned").len(), 0);
    append(&log, &[kv("b", "1")], 10);
    assert!(!manager.is_failed());
}
