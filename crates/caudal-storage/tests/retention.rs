//! Retention (`retention.ms`, `retention.bytes`, the log start offset, the high watermark as an
//! upper bound), DeleteRecords, the delayed removal of `.deleted` files, and restarts after each.

mod common;

use caudal_model::Offset;
use caudal_storage::{CleanupPolicy, DeletionReason, LogConfig, PartitionLog, StorageError};
use common::*;

/// One batch per segment: every append after the first rolls.
fn one_batch_per_segment() -> LogConfig {
    LogConfig {
        segment_bytes: 100,
        ..LogConfig::default()
    }
}

/// Appends one 2-record batch (about 140 bytes) with max timestamp `ts` for each of `timestamps`.
fn fill_at(log: &PartitionLog, timestamps: &[i64]) {
    for &ts in timestamps {
        log.append_as_leader(&batch(2, ts, 60), epoch(0), now(ts))
            .unwrap();
    }
}

fn files_with_suffix(dir: &std::path::Path, suffix: &str) -> usize {
    segment_files(dir, suffix).len()
}

fn reasons(outcome: &caudal_storage::RetentionOutcome) -> Vec<(i64, DeletionReason)> {
    outcome
        .deleted
        .iter()
        .map(|segment| (segment.base_offset.0, segment.reason))
        .collect()
}

#[test]
fn time_retention_deletes_segments_whose_largest_timestamp_expired() {
    let dir = TempDir::new("retention-time");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 1_000,
            ..one_batch_per_segment()
        },
    );
    fill_at(&log, &[1_000, 2_000, 3_000, 4_000, 5_000]);
    assert_eq!(log.segment_count(), 5);
    let end = log.log_end_offset();

    // now − largest timestamp must exceed retention.ms: 3_000 − 2_000 is not > 1_000.
    let outcome = log.delete_old_segments(now(3_000), end).unwrap();
    assert_eq!(reasons(&outcome), vec![(0, DeletionReason::RetentionMs)]);
    assert_eq!(outcome.log_start_offset, Offset(2));
    assert_eq!(log.log_start_offset(), Offset(2));
    assert_eq!(
        log.segment_base_offsets(),
        vec![Offset(2), Offset(4), Offset(6), Offset(8)]
    );
    assert!(outcome.bytes_deleted() > 0);

    let outcome = log.delete_old_segments(now(4_500), end).unwrap();
    assert_eq!(
        reasons(&outcome),
        vec![
            (2, DeletionReason::RetentionMs),
            (4, DeletionReason::RetentionMs)
        ]
    );
    assert_eq!(log.log_start_offset(), Offset(6));
    assert!(matches!(
        log.read(Offset(5), 1 << 20, end, true),
        Err(StorageError::OffsetOutOfRange {
            log_start_offset: Offset(6),
            ..
        })
    ));
    let read = log.read(Offset(6), 1 << 20, end, true).unwrap();
    assert_eq!(headers(&read.records)[0].base_offset, Offset(6));
    // Nothing more is due.
    assert!(
        log.delete_old_segments(now(4_500), end)
            .unwrap()
            .deleted
            .is_empty()
    );
}

#[test]
fn size_retention_keeps_at_least_retention_bytes() {
    let dir = TempDir::new("retention-size");
    let manager = open(dir.path());
    let log = create(&manager, one_batch_per_segment());
    fill_at(&log, &[1, 2, 3, 4, 5]);
    let segment_size = log.size_bytes() / 5;
    let set_retention_bytes = |bytes: u64| {
        log.update_config(LogConfig {
            retention_bytes: bytes as i64,
            retention_ms: -1,
            ..one_batch_per_segment()
        })
    };
    let apply = || {
        let outcome = log
            .delete_old_segments(now(10), log.log_end_offset())
            .unwrap();
        assert!(
            outcome
                .deleted
                .iter()
                .all(|segment| segment.reason == DeletionReason::RetentionBytes)
        );
        outcome
            .deleted
            .iter()
            .map(|segment| segment.base_offset.0)
            .collect::<Vec<_>>()
    };
    // Kafka keeps at least retention.bytes: a segment goes only if the log stays that big
    // without it. Room for two and a half segments: the two oldest go, three stay.
    set_retention_bytes(segment_size * 5 / 2);
    assert_eq!(apply(), vec![0, 2]);
    assert_eq!(log.size_bytes(), segment_size * 3);
    // Exactly two segments' worth: one more goes (size − segment ≥ retention.bytes).
    set_retention_bytes(segment_size * 2);
    assert_eq!(apply(), vec![4]);
    // One byte: the last full segment goes, the active one stays (the log would drop below).
    set_retention_bytes(1);
    assert_eq!(apply(), vec![6]);
    assert_eq!(log.size_bytes(), segment_size);
    // Zero: the active segment is rolled and deleted too.
    set_retention_bytes(0);
    assert_eq!(apply(), vec![8]);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.log_start_offset(), Offset(10));
    assert_eq!(log.segment_base_offsets(), vec![Offset(10)]);
}

#[test]
fn unlimited_retention_keeps_everything() {
    let dir = TempDir::new("retention-unlimited");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: -1,
            retention_bytes: -1,
            ..one_batch_per_segment()
        },
    );
    fill_at(&log, &[1, 2, 3]);
    let outcome = log
        .delete_old_segments(now(i64::MAX), log.log_end_offset())
        .unwrap();
    assert!(outcome.deleted.is_empty());
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn retention_never_deletes_at_or_above_the_upper_bound() {
    let dir = TempDir::new("retention-upper-bound");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 10,
            ..one_batch_per_segment()
        },
    );
    fill_at(&log, &[1, 2, 3, 4]);
    // High watermark 5: segment [4, 6) is not wholly below it, so it and later segments stay.
    let outcome = log.delete_old_segments(now(1_000), Offset(5)).unwrap();
    assert_eq!(
        reasons(&outcome),
        vec![
            (0, DeletionReason::RetentionMs),
            (2, DeletionReason::RetentionMs)
        ]
    );
    assert_eq!(log.segment_base_offsets(), vec![Offset(4), Offset(6)]);
    // High watermark at the next segment's base: that one may go.
    let outcome = log.delete_old_segments(now(1_000), Offset(6)).unwrap();
    assert_eq!(reasons(&outcome), vec![(4, DeletionReason::RetentionMs)]);
    // The active segment only goes when the high watermark reaches the log end offset.
    assert!(
        log.delete_old_segments(now(1_000), Offset(7))
            .unwrap()
            .deleted
            .is_empty()
    );
    assert_eq!(log.segment_base_offsets(), vec![Offset(6)]);
}

#[test]
fn an_expired_active_segment_is_rolled_then_deleted_and_appends_continue() {
    let dir = TempDir::new("retention-active");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 10,
            ..LogConfig::default()
        },
    );
    fill_at(&log, &[1, 2, 3]);
    assert_eq!(log.segment_count(), 1);
    let outcome = log.delete_old_segments(now(1_000), Offset(6)).unwrap();
    assert_eq!(reasons(&outcome), vec![(0, DeletionReason::RetentionMs)]);
    assert_eq!(log.segment_base_offsets(), vec![Offset(6)]);
    assert_eq!(log.log_start_offset(), Offset(6));
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(log.size_bytes(), 0);
    // An empty active segment is never deleted.
    assert!(
        log.delete_old_segments(now(1_000_000), Offset(6))
            .unwrap()
            .deleted
            .is_empty()
    );
    let appended = log
        .append_as_leader(&batch(1, 2_000, 10), epoch(0), now(2_000))
        .unwrap();
    assert_eq!(appended.first_offset, Offset(6));
    assert_eq!(appended.log_start_offset, Offset(6));
    let read = log.read(Offset(6), 1 << 20, Offset(7), true).unwrap();
    assert_eq!(headers(&read.records).len(), 1);
}

#[test]
fn compacted_logs_only_lose_segments_below_the_log_start_offset() {
    let dir = TempDir::new("retention-compact");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 10,
            retention_bytes: 1,
            cleanup_policy: CleanupPolicy::Compact,
            ..one_batch_per_segment()
        },
    );
    for ts in [1, 2, 3, 4] {
        log.append_as_leader(
            &keyed_batch(&[kv("k", "v"), kv("j", "w")], ts),
            epoch(0),
            now(ts),
        )
        .unwrap();
    }
    let end = log.log_end_offset();
    assert!(
        log.delete_old_segments(now(1_000), end)
            .unwrap()
            .deleted
            .is_empty()
    );
    // DeleteRecords into the third segment: the two below it become deletable.
    assert_eq!(
        log.delete_records_before(Offset(5), end).unwrap(),
        Offset(5)
    );
    let outcome = log.delete_old_segments(now(1_000), end).unwrap();
    assert_eq!(
        reasons(&outcome),
        vec![
            (0, DeletionReason::LogStartOffset),
            (2, DeletionReason::LogStartOffset)
        ]
    );
    assert_eq!(log.log_start_offset(), Offset(5));
    assert_eq!(log.segment_base_offsets(), vec![Offset(4), Offset(6)]);
}

#[test]
fn deleted_segment_files_wait_for_file_delete_delay_ms() {
    let dir = TempDir::new("retention-delay");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 10,
            file_delete_delay_ms: 5_000,
            ..one_batch_per_segment()
        },
    );
    fill_at(&log, &[1, 2, 500]);
    let outcome = log.delete_old_segments(now(100), Offset(6)).unwrap();
    assert_eq!(outcome.deleted.len(), 2);
    assert_eq!(files_with_suffix(dir.path(), ".log.deleted"), 2);
    assert_eq!(files_with_suffix(dir.path(), ".index.deleted"), 2);
    assert_eq!(files_with_suffix(dir.path(), ".timeindex.deleted"), 2);
    assert_eq!(files_with_suffix(dir.path(), ".log"), 1);
    assert_eq!(log.pending_file_deletions(), 6);
    assert_eq!(manager.delete_pending_files(now(5_099)).unwrap(), 0);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 6);
    assert_eq!(manager.delete_pending_files(now(5_100)).unwrap(), 6);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    assert_eq!(log.pending_file_deletions(), 0);
}

#[test]
fn segments_without_timestamps_expire_by_file_modification_time() {
    let dir = TempDir::new("retention-mtime");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            retention_ms: 60_000,
            ..one_batch_per_segment()
        },
    );
    // Max timestamp -1: no timestamps.
    for _ in 0..3 {
        log.append_as_leader(&batch(1, -1, 60), epoch(0), now(0))
            .unwrap();
    }
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    let first = &segment_files(dir.path(), ".log")[0];
    std::fs::File::options()
        .write(true)
        .open(first)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let wall_clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let outcome = log.delete_old_segments(now(wall_clock), Offset(3)).unwrap();
    assert_eq!(reasons(&outcome), vec![(0, DeletionReason::RetentionMs)]);
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn delete_records_moves_the_log_start_offset_durably() {
    let dir = TempDir::new("delete-records");
    {
        let manager = open(dir.path());
        let log = create(&manager, one_batch_per_segment());
        fill_at(&log, &[1, 2, 3, 4]);
        let high_watermark = Offset(6);
        assert!(matches!(
            log.delete_records_before(Offset(7), high_watermark),
            Err(StorageError::OffsetOutOfRange {
                requested: Offset(7),
                ..
            })
        ));
        assert!(matches!(
            log.delete_records_before(Offset(-2), high_watermark),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            log.delete_records_before(Offset(3), high_watermark)
                .unwrap(),
            Offset(3)
        );
        assert_eq!(log.log_start_offset(), Offset(3));
        assert!(log.recovery_point() >= Offset(3));
        // Lower than the log start offset: nothing changes.
        assert_eq!(
            log.delete_records_before(Offset(1), high_watermark)
                .unwrap(),
            Offset(3)
        );
        assert!(matches!(
            log.read(Offset(2), 1 << 20, high_watermark, true),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // A read at the log start offset returns the batch holding it (consumers skip records
        // below their position, as with Kafka).
        let read = log.read(Offset(3), 1 << 20, high_watermark, true).unwrap();
        assert_eq!(headers(&read.records)[0].base_offset, Offset(2));
        assert_eq!(read.log_start_offset, Offset(3));
        // Crash: no shutdown, no marker.
    }
    {
        let manager = open(dir.path());
        let log = manager.get(&tp()).unwrap();
        assert_eq!(log.log_start_offset(), Offset(3));
        assert_eq!(log.log_end_offset(), Offset(8));
        // -1 means the high watermark.
        assert_eq!(
            log.delete_records_before(Offset(-1), Offset(6)).unwrap(),
            Offset(6)
        );
        let outcome = log.delete_old_segments(now(10), Offset(6)).unwrap();
        assert_eq!(
            reasons(&outcome),
            vec![
                (0, DeletionReason::LogStartOffset),
                (2, DeletionReason::LogStartOffset),
                (4, DeletionReason::LogStartOffset)
            ]
        );
        manager.shutdown().unwrap();
    }
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(log.log_start_offset(), Offset(6));
    assert_eq!(log.segment_base_offsets(), vec![Offset(6)]);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    let read = log.read(Offset(6), 1 << 20, Offset(8), true).unwrap();
    assert_eq!(headers(&read.records)[0].base_offset, Offset(6));
}

#[test]
fn a_crash_after_retention_leaves_a_consistent_log() {
    let dir = TempDir::new("retention-crash");
    {
        let manager = open(dir.path());
        let log = create(
            &manager,
            LogConfig {
                retention_ms: 10,
                ..one_batch_per_segment()
            },
        );
        fill_at(&log, &[1, 2, 3, 1_000]);
        let outcome = log.delete_old_segments(now(100), Offset(8)).unwrap();
        assert_eq!(outcome.deleted.len(), 3);
        assert_eq!(files_with_suffix(dir.path(), ".deleted"), 9);
        // Crash before the delayed deletion: the `.deleted` files are still there.
    }
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(manager.recovery_report()[0].leftovers_removed, 9);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    assert_eq!(log.segment_base_offsets(), vec![Offset(6)]);
    assert_eq!(log.log_start_offset(), Offset(6));
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(headers(&read_all(&log)).len(), 1);
}
