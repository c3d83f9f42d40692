//! Crash and interference tests for the log cleaner's swap and for retention, driven by test
//! failpoints: a "crash" stops the operation at a step and leaves the files as they are, then the
//! log manager is dropped without a shutdown (as after `kill -9`) and reopened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use caudal_model::batch::{BatchIter, build_batch};
use caudal_model::{
    LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs, TopicPartition,
};
use uuid::Uuid;

use crate::records::decode_batch;
use crate::records::tests::encode_record;
use crate::{
    CleanerConfig, CleanupPolicy, CrashPoint, FailAction, Failpoint, LogConfig, LogManager,
    OffsetMap, PartitionLog, StorageError,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "caudal-storage-unit-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Entry = (i64, String, Option<String>);

fn tp() -> TopicPartition {
    TopicPartition::new("changelog", 0)
}

fn config(segment_bytes: u64, policy: CleanupPolicy) -> LogConfig {
    LogConfig {
        segment_bytes,
        cleanup_policy: policy,
        retention_ms: 1_000,
        ..LogConfig::default()
    }
}

fn keyed(key: &str, value: Option<&str>, ts: i64) -> Vec<u8> {
    let record = encode_record(0, 0, Some(key.as_bytes()), value.map(str::as_bytes));
    build_batch(
        Offset(0),
        0,
        0,
        TimestampMs(ts),
        TimestampMs(ts),
        ProducerId::NONE,
        ProducerEpoch::NONE,
        Sequence::NONE,
        1,
        &record,
    )
}

fn contents(log: &PartitionLog) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    loop {
        let read = log.read(next, 1 << 20, Offset(i64::MAX), true).unwrap();
        if read.records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&read.records) {
            let (range, header) = item.unwrap();
            next = header.next_offset();
            let decoded = decode_batch(&read.records[range], &header).unwrap();
            for record in &decoded.records {
                let key = String::from_utf8(decoded.key(record).unwrap().to_vec()).unwrap();
                let value = decoded
                    .value(record)
                    .map(|value| String::from_utf8(value.to_vec()).unwrap());
                out.push((
                    header.base_offset.0 + record.offset_delta as i64,
                    key,
                    value,
                ));
            }
        }
    }
}

/// The latest entry per key below `first_uncleanable`, plus everything from it on.
fn compacted(entries: &[Entry], first_uncleanable: i64) -> Vec<Entry> {
    entries
        .iter()
        .filter(|(offset, key, _)| {
            *offset >= first_uncleanable
                || !entries.iter().any(|(later, other, _)| {
                    later > offset && *later < first_uncleanable && other == key
                })
        })
        .cloned()
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("changelog-0"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            [".cleaned", ".swap", ".deleted"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
        })
        .collect();
    names.sort();
    names
}

/// A compacted log of eight one-record segments over three keys (plus an active segment).
fn setup(dir: &Path, log_config: LogConfig) -> (LogManager, Arc<PartitionLog>) {
    let manager = LogManager::open(dir, TimestampMs(0)).unwrap();
    let log = manager
        .create_log(&tp(), Uuid::from_u128(7), log_config, TimestampMs(0))
        .unwrap();
    for index in 0..9 {
        let value = format!("v{index}");
        log.append_as_leader(
            &keyed(&format!("k{}", index % 3), Some(&value), 100 + index),
            LeaderEpoch(0),
            TimestampMs(100 + index),
        )
        .unwrap();
        if index < 8 {
            log.roll(TimestampMs(100 + index)).unwrap();
        }
    }
    (manager, log)
}

fn arm(log: &PartitionLog, point: CrashPoint, skip: usize, action: FailAction) {
    *log.failpoint.lock() = Some(Failpoint {
        point,
        skip,
        action,
    });
}

fn reopen(dir: &Path, log_config: LogConfig) -> (LogManager, Arc<PartitionLog>) {
    let manager = LogManager::open(dir, TimestampMs(10_000)).unwrap();
    let log = manager.get(&tp()).unwrap();
    log.update_config(log_config);
    (manager, log)
}

fn clean(log: &PartitionLog) -> Result<crate::CleanOutcome, StorageError> {
    let mut map = OffsetMap::new(&CleanerConfig::default());
    log.clean(TimestampMs(1_000), log.log_end_offset(), &mut map)
}

#[test]
fn a_crash_at_any_step_of_the_swap_leaves_the_old_or_the_new_log() {
    let log_config = config(1 << 20, CleanupPolicy::Compact);
    for (point, swap_completed_at_open, compacted_after) in [
        (CrashPoint::CleanedWritten, false, false),
        (CrashPoint::SwapRenamed, true, true),
        (CrashPoint::OldSegmentsDeleted, true, true),
        (CrashPoint::SwapInstalled, false, true),
    ] {
        let dir = TempDir::new("swap-crash");
        let (manager, log) = setup(&dir.0, log_config);
        let original = contents(&log);
        assert_eq!(original.len(), 9);
        let end = log.log_end_offset();
        arm(&log, point, 0, FailAction::Crash);
        match clean(&log) {
            Err(StorageError::CorruptFile { reason, .. }) => {
                assert!(reason.contains("simulated crash"), "{reason}")
            }
            other => panic!("{point:?}: {other:?}"),
        }
        drop(log);
        drop(manager);

        let (manager, log) = reopen(&dir.0, log_config);
        let report = &manager.recovery_report()[0];
        assert_eq!(
            report.swaps_completed,
            usize::from(swap_completed_at_open),
            "{point:?}"
        );
        assert!(
            leftovers(&dir.0).is_empty(),
            "{point:?}: {:?}",
            leftovers(&dir.0)
        );
        let expected = if compacted_after {
            compacted(&original, 8)
        } else {
            original.clone()
        };
        assert_eq!(contents(&log), expected, "{point:?}");
        assert_eq!(log.log_end_offset(), end, "{point:?}");
        if compacted_after {
            assert_eq!(
                log.segment_base_offsets(),
                vec![Offset(0), Offset(8)],
                "{point:?}"
            );
        }
        // Cleaning again finishes the job; the log keeps taking appends.
        let outcome = clean(&log).unwrap();
        assert!(!outcome.aborted);
        assert_eq!(contents(&log), compacted(&original, 8), "{point:?}");
        log.append_as_leader(
            &keyed("k0", Some("later"), 500),
            LeaderEpoch(0),
            TimestampMs(500),
        )
        .unwrap();
        manager.shutdown().unwrap();
        drop(manager);
        let (_manager, log) = reopen(&dir.0, log_config);
        // Three compacted keys, the record at 8 and the later one.
        assert_eq!(contents(&log).len(), 5, "{point:?}");
    }
}

#[test]
fn a_crash_in_a_later_group_keeps_the_earlier_groups_swapped() {
    // Two one-record segments per group.
    let dir = TempDir::new("swap-crash-groups");
    let probe = TempDir::new("swap-crash-probe");
    let (_probe_manager, probe_log) = setup(&probe.0, config(1 << 20, CleanupPolicy::Compact));
    let segment_size = probe_log.size_bytes() / 9;
    let log_config = config(segment_size * 2 + 1, CleanupPolicy::Compact);
    for point in [
        CrashPoint::CleanedWritten,
        CrashPoint::SwapRenamed,
        CrashPoint::OldSegmentsDeleted,
        CrashPoint::SwapInstalled,
    ] {
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).unwrap();
        let (manager, log) = setup(&dir.0, log_config);
        assert_eq!(log.segment_count(), 9);
        let original = contents(&log);
        arm(&log, point, 1, FailAction::Crash);
        assert!(clean(&log).is_err());
        drop(log);
        drop(manager);

        let (manager, log) = reopen(&dir.0, log_config);
        assert!(leftovers(&dir.0).is_empty(), "{point:?}");
        let after = contents(&log);
        // Whatever was swapped is compacted, the rest is as written: every record is an
        // original one, and the latest of every key is there.
        for entry in &after {
            assert!(original.contains(entry), "{point:?}: {entry:?}");
        }
        for entry in compacted(&original, 8) {
            assert!(after.contains(&entry), "{point:?}: {entry:?} lost");
        }
        assert!(
            after.len() < original.len(),
            "{point:?}: the first group was swapped"
        );
        let offsets: Vec<i64> = after.iter().map(|entry| entry.0).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "{point:?}"
        );
        clean(&log).unwrap();
        assert_eq!(contents(&log), compacted(&original, 8), "{point:?}");
        drop(manager);
    }
}

#[test]
fn a_truncation_during_cleaning_aborts_the_swap() {
    let dir = TempDir::new("swap-truncation");
    let log_config = config(1 << 20, CleanupPolicy::Compact);
    let (_manager, log) = setup(&dir.0, log_config);
    let original = contents(&log);
    let truncating = Arc::clone(&log);
    arm(
        &log,
        CrashPoint::CleanedWritten,
        0,
        FailAction::Run(Box::new(move || truncating.truncate_to(Offset(5)).unwrap())),
    );
    let outcome = clean(&log).unwrap();
    assert!(outcome.aborted);
    assert_eq!(log.cleaner_checkpoint(), None);
    assert!(leftovers(&dir.0).is_empty(), "{:?}", leftovers(&dir.0));
    // Nothing of the cleaned copy came back: the log is the truncated original.
    assert_eq!(contents(&log), original[..5].to_vec());
    let outcome = clean(&log).unwrap();
    assert!(!outcome.aborted);
    // The truncation left an empty active segment at 5.
    assert_eq!(log.segment_base_offsets().last(), Some(&Offset(5)));
    assert_eq!(contents(&log), compacted(&original[..5], 5));
}

#[test]
fn deleting_a_log_stops_its_cleaning_pass() {
    let dir = TempDir::new("swap-delete");
    let log_config = config(1 << 20, CleanupPolicy::Compact);
    let (manager, log) = setup(&dir.0, log_config);
    let manager = Arc::new(manager);
    let deleter = Arc::clone(&manager);
    let aborting = Arc::clone(&log);
    let handle: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let slot = Arc::clone(&handle);
    arm(
        &log,
        CrashPoint::CleanedWritten,
        0,
        FailAction::Run(Box::new(move || {
            *slot.lock() = Some(std::thread::spawn(move || {
                deleter.delete_log(&tp()).unwrap()
            }));
            // Wait (bounded) until the deletion asked the pass to stop.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !aborting.maintenance_abort.load(Ordering::Acquire) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the deletion never asked"
                );
                std::thread::yield_now();
            }
        })),
    );
    let outcome = clean(&log).unwrap();
    assert!(outcome.aborted);
    handle.lock().take().unwrap().join().unwrap();
    assert!(manager.get(&tp()).is_none());
    assert!(!dir.0.join("changelog-0").exists());
    assert!(matches!(clean(&log), Err(StorageError::LogClosed { .. })));
}

#[test]
fn a_crash_during_retention_leaves_a_consistent_log() {
    let dir = TempDir::new("retention-crash");
    let log_config = config(1 << 20, CleanupPolicy::Delete);
    let (manager, log) = setup(&dir.0, log_config);
    let original = contents(&log);
    arm(&log, CrashPoint::RetentionRenamed, 0, FailAction::Crash);
    // Segments up to timestamp 105 are older than 1_000 ms at 1_106.
    assert!(
        log.delete_old_segments(TimestampMs(1_106), Offset(9))
            .is_err()
    );
    assert_eq!(leftovers(&dir.0).len(), 6 * 3);
    drop(log);
    drop(manager);

    let (manager, log) = reopen(&dir.0, log_config);
    assert_eq!(manager.recovery_report()[0].leftovers_removed, 6 * 3);
    assert!(leftovers(&dir.0).is_empty());
    // The checkpoint was not written: the log start offset comes from the first segment.
    assert_eq!(log.log_start_offset(), Offset(6));
    assert_eq!(contents(&log), original[6..].to_vec());
    // Retention carries on from there.
    let outcome = log
        .delete_old_segments(TimestampMs(1_107), Offset(9))
        .unwrap();
    assert_eq!(outcome.deleted.len(), 1);
    assert_eq!(log.log_start_offset(), Offset(7));
}

#[test]
fn retention_skips_a_log_while_it_is_cleaned() {
    let dir = TempDir::new("retention-busy");
    let log_config = config(1 << 20, CleanupPolicy::CompactDelete);
    let (_manager, log) = setup(&dir.0, log_config);
    let retention = Arc::clone(&log);
    let seen: Arc<parking_lot::Mutex<Option<crate::RetentionOutcome>>> = Arc::default();
    let slot = Arc::clone(&seen);
    arm(
        &log,
        CrashPoint::CleanedWritten,
        0,
        FailAction::Run(Box::new(move || {
            *slot.lock() = Some(
                retention
                    .delete_old_segments(TimestampMs(1_000_000), Offset(9))
                    .unwrap(),
            );
        })),
    );
    assert!(!clean(&log).unwrap().aborted);
    let outcome = seen.lock().take().unwrap();
    assert!(outcome.skipped_busy);
    assert!(outcome.deleted.is_empty());
    // Once the pass is over, retention runs.
    let outcome = log
        .delete_old_segments(TimestampMs(1_000_000), Offset(9))
        .unwrap();
    assert!(!outcome.skipped_busy);
    assert!(!outcome.deleted.is_empty());
}
