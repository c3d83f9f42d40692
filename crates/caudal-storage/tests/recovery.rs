//! Durability: flush and the recovery point, clean and unclean restarts, corruption, garbage
//! files, leftovers, truncation, deletion, directory failure.

mod common;

use std::sync::Arc;

use caudal_model::{LeaderEpoch, Offset, TimestampMs, TopicPartition};
use caudal_storage::{
    CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE, LogConfig,
    RECOVERY_POINT_CHECKPOINT_FILE, StorageError,
};
use common::*;
use uuid::Uuid;

const MAX: Offset = Offset(i64::MAX);

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1200,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

/// Appends `count` batches of 1..=3 records with growing timestamps; returns their sizes.
fn fill(log: &caudal_storage::PartitionLog, count: usize) -> Vec<usize> {
    let leader_epoch = log.latest_epoch().unwrap_or(LeaderEpoch(0));
    (0..count)
        .map(|i| {
            let bytes = batch(1 + (i % 3) as i32, 1000 + i as i64 * 10, 40 + i % 7);
            log.append_as_leader(&bytes, leader_epoch, now(0)).unwrap();
            bytes.len()
        })
        .collect()
}

#[test]
fn flush_advances_the_recovery_point_as_a_group_commit() {
    let dir = TempDir::new("flush");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    fill(&log, 3);
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(log.recovery_point(), Offset(0));
    // One fsync covers everything written so far, not just what was asked for.
    assert_eq!(log.flush_to(Offset(2)).unwrap(), Offset(6));
    assert_eq!(log.flush_count(), 1);
    assert_eq!(log.flush_to(Offset(5)).unwrap(), Offset(6));
    assert_eq!(log.flush_to(Offset(6)).unwrap(), Offset(6));
    assert_eq!(log.flush_to(Offset(100)).unwrap(), Offset(6));
    assert_eq!(log.flush_count(), 1);
    fill(&log, 2);
    assert_eq!(log.flush().unwrap(), Offset(9));
    assert_eq!(log.flush_count(), 2);

    // Concurrent callers: each returns a recovery point covering its own offset.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let outcome = log
                        .append_as_leader(&batch(1, 5, 10), epoch(0), now(0))
                        .unwrap();
                    let point = log.flush_to(outcome.last_offset.next()).unwrap();
                    assert!(point > outcome.last_offset);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(log.recovery_point(), log.log_end_offset());
    assert!(log.flush_count() <= 2 + 160);
}

#[test]
fn a_clean_restart_loads_without_scanning_and_keeps_everything() {
    let dir = TempDir::new("clean");
    let (content, end, by_timestamp, max_batch) = {
        let manager = open(dir.path());
        let log = create(&manager, small_segments());
        fill(&log, 40);
        log.append_as_leader(&batch(2, 5000, 10), epoch(3), now(0))
            .unwrap();
        fill(&log, 5);
        assert!(log.segment_count() > 3);
        let found = log.find_batch_by_timestamp(TimestampMs(1105)).unwrap();
        let max = log.batch_with_max_timestamp().unwrap();
        let content = read_all(&log);
        manager.shutdown().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(matches!(
            log.append_as_leader(&batch(1, 1, 1), epoch(3), now(0)),
            Err(StorageError::LogClosed { .. })
        ));
        (content, log.log_end_offset(), found, max)
    };
    let manager = open(dir.path());
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let report = &manager.recovery_report()[0];
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(report.indexes_rebuilt, 0);
    assert_eq!(report.bytes_truncated, 0);
    assert!(!report.leader_epochs_rebuilt);
    let log = manager.get(&tp()).unwrap();
    assert_eq!(log.topic_id(), TOPIC_ID);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.recovery_point(), end);
    assert_eq!(read_all(&log), content);
    assert_eq!(
        log.find_batch_by_timestamp(TimestampMs(1105)).unwrap(),
        by_timestamp
    );
    assert_eq!(log.batch_with_max_timestamp().unwrap(), max_batch);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(3)));
    // The server re-applies topic config after open; appends continue where they stopped.
    log.update_config(small_segments());
    let outcome = log
        .append_as_leader(&batch(1, 9000, 5), epoch(3), now(0))
        .unwrap();
    assert_eq!(outcome.first_offset, end);
}

#[test]
fn an_unclean_restart_recovers_from_the_recovery_point() {
    let dir = TempDir::new("unclean");
    let content = {
        let manager = open(dir.path());
        let log = create(&manager, small_segments());
        fill(&log, 30);
        manager.sync_background_flushes();
        log.flush().unwrap();
        manager.checkpoint().unwrap();
        fill(&log, 30);
        read_all(&log)
    };
    let manager = open(dir.path());
    let report = manager.recovery_report()[0].clone();
    assert!(!report.clean_shutdown);
    let checkpointed = report.recovery_point.unwrap();
    assert!(checkpointed > Offset(0));
    let log = manager.get(&tp()).unwrap();
    let bases = log.segment_base_offsets();
    let recovered_from = bases
        .iter()
        .rposition(|base| *base <= checkpointed)
        .unwrap();
    assert_eq!(report.segments_recovered, bases.len() - recovered_from);
    assert!(report.corruption.is_none());
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(read_all(&log), content);
    assert_eq!(log.recovery_point(), checkpointed);
}

fn crash_with_batches(dir: &TempDir, count: usize, config: LogConfig) -> (Vec<usize>, Vec<u8>) {
    let manager = open(dir.path());
    let log = create(&manager, config);
    let sizes = fill(&log, count);
    (sizes, read_all(&log))
}

#[test]
fn a_torn_tail_is_truncated_to_the_last_whole_batch() {
    let dir = TempDir::new("torn");
    let (sizes, content) = crash_with_batches(&dir, 5, LogConfig::default());
    let log_file = segment_files(dir.path(), ".log").pop().unwrap();
    let whole: usize = sizes[..4].iter().sum();
    let cut = whole + sizes[4] / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log_file)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();

    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    let site = report
        .corruption
        .as_ref()
        .expect("the torn batch is reported");
    assert_eq!(site.segment_base_offset, Offset(0));
    assert_eq!(site.position, whole as u64);
    assert!(site.reason.contains("truncated"), "{}", site.reason);
    assert_eq!(report.bytes_truncated, (cut - whole) as u64);
    assert_eq!(report.segments_deleted, 0);
    let log = manager.get(&tp()).unwrap();
    // Batches 0..4 hold 1+2+3+1 = 7 records.
    assert_eq!(log.log_end_offset(), Offset(7));
    assert_eq!(read_all(&log), content[..whole]);
    assert_eq!(std::fs::metadata(&log_file).unwrap().len(), whole as u64);
    let outcome = log
        .append_as_leader(&batch(1, 1, 1), epoch(0), now(0))
        .unwrap();
    assert_eq!(outcome.first_offset, Offset(7));
}

#[test]
fn flipped_bytes_in_the_active_segment_truncate_at_the_bad_batch() {
    let dir = TempDir::new("flipped");
    let (sizes, content) = crash_with_batches(&dir, 8, LogConfig::default());
    let log_file = segment_files(dir.path(), ".log").pop().unwrap();
    let bad_start: usize = sizes[..3].iter().sum();
    let mut bytes = std::fs::read(&log_file).unwrap();
    bytes[bad_start + sizes[3] / 2] ^= 0x5A;
    std::fs::write(&log_file, &bytes).unwrap();

    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    let site = report.corruption.as_ref().unwrap();
    assert_eq!(site.position, bad_start as u64);
    assert!(site.reason.contains("CRC"), "{}", site.reason);
    assert_eq!(report.bytes_truncated, (content.len() - bad_start) as u64);
    assert_eq!(report.batches_validated, 3);
    let log = manager.get(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(read_all(&log), content[..bad_start]);
}

#[test]
fn corruption_in_an_earlier_segment_drops_every_later_segment() {
    let dir = TempDir::new("drop-later");
    let (_, content) = crash_with_batches(&dir, 40, small_segments());
    let logs = segment_files(dir.path(), ".log");
    assert!(logs.len() >= 4);
    let later_bytes: u64 = logs[2..]
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    // Garbage in the middle of the second segment, over a batch header.
    let mut bytes = std::fs::read(&logs[1]).unwrap();
    let middle = bytes.len() / 2;
    let first = caudal_model::RecordBatchHeader::parse(&bytes).unwrap();
    let mut bad = 0usize;
    while bad + first.size_bytes() <= middle {
        bad += caudal_model::RecordBatchHeader::parse(&bytes[bad..])
            .unwrap()
            .size_bytes();
    }
    for byte in &mut bytes[bad + 8..bad + 12] {
        *byte = 0xFF;
    }
    let segment_len = bytes.len();
    std::fs::write(&logs[1], &bytes).unwrap();

    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert_eq!(report.recovery_point, Some(Offset(0)));
    let site = report.corruption.as_ref().unwrap();
    assert_eq!(site.position, bad as u64);
    assert_eq!(report.segments_deleted, logs.len() - 2);
    assert_eq!(
        report.bytes_truncated,
        (segment_len - bad) as u64 + later_bytes
    );
    assert!(report.batches_dropped > 0);
    assert_eq!(segment_files(dir.path(), ".log").len(), 2);
    let log = manager.get(&tp()).unwrap();
    let first_len = std::fs::metadata(&logs[0]).unwrap().len() as usize;
    assert_eq!(read_all(&log), content[..first_len + bad]);
}

#[test]
fn garbage_checkpoint_files_mean_recovery_from_zero() {
    let dir = TempDir::new("garbage-checkpoints");
    let content = {
        let manager = open(dir.path());
        let log = create(&manager, small_segments());
        fill(&log, 20);
        log.flush().unwrap();
        manager.checkpoint().unwrap();
        read_all(&log)
    };
    std::fs::write(
        dir.path().join(RECOVERY_POINT_CHECKPOINT_FILE),
        b"\x00garbage\n7\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(LOG_START_OFFSET_CHECKPOINT_FILE),
        b"0\n1\norders 0\n",
    )
    .unwrap();
    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert_eq!(report.recovery_point, Some(Offset(0)));
    let log = manager.get(&tp()).unwrap();
    assert_eq!(report.segments_recovered, log.segment_count());
    assert_eq!(read_all(&log), content);
    // Opening rewrote valid checkpoints.
    let text = std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n1\norders 0 0\n");
}

#[test]
fn garbage_index_files_are_rebuilt_identically() {
    let dir = TempDir::new("garbage-index");
    // Loaded logs rebuild indexes with the default index.interval.bytes (the server applies the
    // topic config after open), so the log is written with it too for an identical rebuild.
    let content = {
        let manager = open(dir.path());
        let log = create(
            &manager,
            LogConfig {
                segment_bytes: 20_000,
                ..LogConfig::default()
            },
        );
        fill(&log, 600);
        // Until the active segment has index entries too.
        while std::fs::metadata(segment_files(dir.path(), ".index").pop().unwrap())
            .unwrap()
            .len()
            == 0
        {
            fill(&log, 10);
        }
        let content = read_all(&log);
        manager.shutdown().unwrap();
        content
    };
    let indexes = segment_files(dir.path(), ".index");
    let time_indexes = segment_files(dir.path(), ".timeindex");
    let original_index = std::fs::read(&indexes[1]).unwrap();
    let original_time_index = std::fs::read(&time_indexes[2]).unwrap();
    let original_active_index = std::fs::read(indexes.last().unwrap()).unwrap();
    assert!(!original_active_index.is_empty());
    assert!(!original_index.is_empty() && !original_time_index.is_empty());
    std::fs::write(&indexes[1], b"1234567").unwrap();
    std::fs::write(&time_indexes[2], [0xFFu8; 24]).unwrap();
    std::fs::remove_file(indexes.last().unwrap()).unwrap();

    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert!(report.clean_shutdown);
    assert_eq!(report.indexes_rebuilt, 2);
    assert!(report.corruption.is_none());
    assert_eq!(std::fs::read(&indexes[1]).unwrap(), original_index);
    assert_eq!(
        std::fs::read(&time_indexes[2]).unwrap(),
        original_time_index
    );
    let log = manager.get(&tp()).unwrap();
    assert_eq!(read_all(&log), content);
    for offset in 0..log.log_end_offset().0 {
        let read = log.read(Offset(offset), 1, MAX, true).unwrap();
        let header = headers(&read.records)[0];
        assert!(header.base_offset.0 <= offset && header.last_offset().0 >= offset);
    }
}

#[test]
fn a_garbage_leader_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let dir = TempDir::new("garbage-epochs");
    {
        let manager = open(dir.path());
        let log = create(&manager, LogConfig::default());
        log.append_as_leader(&batch(2, 1, 1), epoch(1), now(0))
            .unwrap();
        log.append_as_leader(&batch(2, 1, 1), epoch(4), now(0))
            .unwrap();
        log.append_as_leader(&batch(2, 1, 1), epoch(6), now(0))
            .unwrap();
        manager.shutdown().unwrap();
    }
    let path = dir.path().join("orders-0").join("leader-epoch-checkpoint");
    std::fs::write(&path, b"0\n3\n1 0\n").unwrap();
    let manager = open(dir.path());
    assert!(manager.recovery_report()[0].leader_epochs_rebuilt);
    let log = manager.get(&tp()).unwrap();
    assert_eq!(
        log.leader_epoch_entries(),
        vec![
            (LeaderEpoch(1), Offset(0)),
            (LeaderEpoch(4), Offset(2)),
            (LeaderEpoch(6), Offset(4))
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "0\n3\n1 0\n4 2\n6 4\n"
    );
}

#[test]
fn opening_tidies_leftovers() {
    let dir = TempDir::new("leftovers");
    {
        let manager = open(dir.path());
        fill(&create(&manager, LogConfig::default()), 3);
        manager.shutdown().unwrap();
    }
    let partition = dir.path().join("orders-0");
    for name in [
        "00000000000000000000.log.deleted",
        "00000000000000000000.index.cleaned",
        "00000000000000000007.log.swap",
        "partition.metadata.tmp",
        "00000000000000000099.index",
        "00000000000000000099.timeindex",
    ] {
        std::fs::write(partition.join(name), b"x").unwrap();
    }
    std::fs::write(
        dir.path().join("recovery-point-offset-checkpoint.tmp"),
        b"x",
    )
    .unwrap();
    let deleted = dir.path().join("orders-1.0123456789abcdef-delete");
    std::fs::create_dir(&deleted).unwrap();
    std::fs::write(deleted.join("00000000000000000000.log"), b"x").unwrap();
    std::fs::create_dir(dir.path().join("not a log")).unwrap();

    let manager = open(dir.path());
    assert_eq!(manager.logs().len(), 1);
    assert_eq!(manager.recovery_report()[0].leftovers_removed, 6);
    assert!(!deleted.exists());
    assert!(
        !dir.path()
            .join("recovery-point-offset-checkpoint.tmp")
            .exists()
    );
    let mut names: Vec<String> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex",
            "00000000000000000006.snapshot",
            "leader-epoch-checkpoint",
            "partition.metadata",
        ]
    );
    assert_eq!(manager.get(&tp()).unwrap().log_end_offset(), Offset(6));
}

#[test]
fn create_and_delete_logs() {
    let dir = TempDir::new("create-delete");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    fill(&log, 3);
    let same = manager
        .create_log(&tp(), TOPIC_ID, LogConfig::default(), now(0))
        .unwrap();
    assert!(Arc::ptr_eq(&log, &same));
    let other = Uuid::from_u128(7);
    assert!(matches!(
        manager.create_log(&tp(), other, LogConfig::default(), now(0)),
        Err(StorageError::LogExists { existing_topic_id, requested_topic_id, .. })
            if existing_topic_id == TOPIC_ID && requested_topic_id == other
    ));
    assert!(matches!(
        manager.create_log(
            &TopicPartition::new("bad/name", 0),
            other,
            LogConfig::default(),
            now(0)
        ),
        Err(StorageError::InvalidTopicPartition { .. })
    ));
    let second = manager
        .create_log(
            &TopicPartition::new("orders", 1),
            other,
            LogConfig::default(),
            now(0),
        )
        .unwrap();
    fill(&second, 1);
    assert_eq!(manager.logs().len(), 2);

    manager.delete_log(&tp()).unwrap();
    assert!(manager.get(&tp()).is_none());
    assert!(!dir.path().join("orders-0").exists());
    assert!(matches!(
        log.append_as_leader(&batch(1, 1, 1), epoch(0), now(0)),
        Err(StorageError::LogClosed { .. })
    ));
    assert!(matches!(
        log.read(Offset(0), 10, MAX, true),
        Err(StorageError::LogClosed { .. })
    ));
    manager.delete_log(&tp()).unwrap();

    // Recreated under a new topic id: empty, never the old data.
    let recreated = manager
        .create_log(&tp(), other, LogConfig::default(), now(0))
        .unwrap();
    assert_eq!(recreated.log_end_offset(), Offset(0));
    manager.shutdown().unwrap();
    let manager = open(dir.path());
    assert_eq!(manager.get(&tp()).unwrap().topic_id(), other);
    assert_eq!(
        manager
            .get(&TopicPartition::new("orders", 1))
            .unwrap()
            .log_end_offset(),
        Offset(1)
    );
}

#[test]
fn truncation_across_segments_survives_restarts() {
    let dir = TempDir::new("truncate");
    let manager = open(dir.path());
    let log = create(&manager, small_segments());
    fill(&log, 20);
    log.append_as_leader(&batch(2, 5000, 10), epoch(2), now(0))
        .unwrap();
    fill(&log, 20);
    log.flush().unwrap();
    let content = read_all(&log);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4);
    let epoch_two_start = log.leader_epoch_entries()[1].1;

    // Inside a batch of the second segment: that batch goes whole.
    let target = Offset(bases[1].0 + 4);
    log.truncate_to(target).unwrap();
    let end = log.log_end_offset();
    assert!(end <= target && end > bases[1]);
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert_eq!(log.recovery_point(), end);
    assert_eq!(
        log.leader_epoch_entries(),
        vec![(LeaderEpoch(0), Offset(0))]
    );
    assert!(end < epoch_two_start);
    let kept = read_all(&log);
    assert_eq!(kept, content[..kept.len()]);
    assert_eq!(headers(&kept).last().unwrap().next_offset(), end);
    // The recovery-point checkpoint on disk follows the truncation at once.
    let text = std::fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, format!("0\n1\norders 0 {}\n", end.0));
    // Truncating at or beyond the end is a no-op.
    log.truncate_to(Offset(1_000_000)).unwrap();
    assert_eq!(log.log_end_offset(), end);

    let outcome = log
        .append_as_leader(&batch(1, 1, 1), epoch(3), now(0))
        .unwrap();
    assert_eq!(outcome.first_offset, end);
    let content = read_all(&log);
    drop(log);
    drop(manager);
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(read_all(&log), content);
    assert_eq!(
        log.leader_epoch_entries(),
        vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(3), end)]
    );

    log.truncate_fully_and_start_at(Offset(500)).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.recovery_point()
        ),
        (Offset(500), Offset(500), Offset(500))
    );
    assert!(matches!(
        log.read(Offset(0), 100, MAX, true),
        Err(StorageError::OffsetOutOfRange {
            log_start_offset: Offset(500),
            ..
        })
    ));
    assert!(log.leader_epoch_entries().is_empty());
    let outcome = log
        .append_as_leader(&batch(2, 1, 1), epoch(4), now(0))
        .unwrap();
    assert_eq!(outcome.first_offset, Offset(500));
    manager.shutdown().unwrap();
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(500), Offset(502))
    );
    assert_eq!(segment_files(dir.path(), ".log").len(), 1);
}

#[test]
fn an_io_error_takes_the_directory_offline() {
    let dir = TempDir::new("failed");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    let healthy = manager
        .create_log(
            &TopicPartition::new("other", 0),
            Uuid::from_u128(9),
            LogConfig::default(),
            now(0),
        )
        .unwrap();
    fill(&log, 2);
    // The partition directory disappears under the log: rolling cannot create files.
    std::fs::remove_dir_all(dir.path().join("orders-0")).unwrap();
    assert!(matches!(log.roll(now(0)), Err(StorageError::Io { .. })));
    assert!(manager.is_failed());
    for log in [&log, &healthy] {
        assert!(matches!(
            log.append_as_leader(&batch(1, 1, 1), epoch(0), now(0)),
            Err(StorageError::LogDirFailed { .. })
        ));
        assert!(matches!(
            log.flush(),
            Err(StorageError::LogDirFailed { .. })
        ));
        assert!(matches!(
            log.read(Offset(0), 10, MAX, true),
            Err(StorageError::LogDirFailed { .. })
        ));
    }
    assert!(matches!(
        manager.shutdown(),
        Err(StorageError::LogDirFailed { .. })
    ));
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
}

#[test]
fn a_corrupt_base_offset_which_the_crc_does_not_cover_is_caught() {
    // Recovery: the batch with the impossible base offset and everything after it go.
    let dir = TempDir::new("bad-base-offset");
    let (sizes, content) = crash_with_batches(&dir, 6, LogConfig::default());
    let log_file = segment_files(dir.path(), ".log").pop().unwrap();
    let bad_start: usize = sizes[..2].iter().sum();
    let mut bytes = std::fs::read(&log_file).unwrap();
    bytes[bad_start] = 0x7F;
    std::fs::write(&log_file, &bytes).unwrap();
    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert_eq!(
        report.corruption.as_ref().unwrap().position,
        bad_start as u64
    );
    let log = manager.get(&tp()).unwrap();
    assert_eq!(read_all(&log), content[..bad_start]);
    drop(log);
    manager.shutdown().unwrap();

    // Trusted data (an inactive segment after a clean shutdown is not rescanned): reads stop
    // with an error instead of panicking.
    let dir = TempDir::new("bad-base-offset-clean");
    {
        let manager = open(dir.path());
        let log = create(&manager, LogConfig::default());
        fill(&log, 6);
        log.roll(now(0)).unwrap();
        fill(&log, 2);
        manager.shutdown().unwrap();
    }
    let log_file = segment_files(dir.path(), ".log").remove(0);
    let mut bytes = std::fs::read(&log_file).unwrap();
    bytes[bad_start] = 0x7F;
    std::fs::write(&log_file, &bytes).unwrap();
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    // Offsets 0..3 (two batches) read fine; a read that would cross the bad batch stops before it.
    let read = log.read(Offset(0), 1 << 20, MAX, true).unwrap();
    assert_eq!(read.records.len(), bad_start);
    assert!(matches!(
        log.read(Offset(3), 1 << 20, MAX, true),
        Err(StorageError::CorruptFile { .. })
    ));
}

#[test]
fn a_log_without_readable_metadata_adopts_the_topic_id_of_create_log() {
    let dir = TempDir::new("adopt-topic-id");
    {
        let manager = open(dir.path());
        fill(&create(&manager, LogConfig::default()), 3);
        manager.shutdown().unwrap();
    }
    let metadata = dir.path().join("orders-0").join("partition.metadata");
    std::fs::write(&metadata, b"version: 9\ntopic_id: ???\n").unwrap();
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert!(log.topic_id().is_nil());
    let adopted = manager
        .create_log(&tp(), TOPIC_ID, LogConfig::default(), now(0))
        .unwrap();
    assert!(Arc::ptr_eq(&log, &adopted));
    assert_eq!(log.topic_id(), TOPIC_ID);
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(
        std::fs::read_to_string(&metadata).unwrap(),
        format!("version: 0\ntopic_id: {TOPIC_ID}\n")
    );
}
