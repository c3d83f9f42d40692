//! Appends, reads and their bounds, rolls, timestamp and epoch lookups.

mod common;

use std::sync::Arc;

use caudal_model::batch::HEADER_BYTES;
use caudal_model::{LeaderEpoch, Offset, TimestampMs};
use caudal_storage::{LogConfig, StorageError, TimestampType};
use common::*;

const MAX: Offset = Offset(i64::MAX);

#[test]
fn append_assigns_offsets_stamps_headers_and_reads_back_verbatim() {
    let dir = TempDir::new("append");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    let sent = [batch(2, 100, 50), batch(3, 200, 70), batch(1, 300, 10)];
    let mut expected_first = 0;
    for (i, bytes) in sent.iter().enumerate() {
        let outcome = log.append_as_leader(bytes, epoch(7), now(1000)).unwrap();
        let records = [2, 3, 1][i];
        assert_eq!(outcome.first_offset, Offset(expected_first));
        assert_eq!(outcome.last_offset, Offset(expected_first + records - 1));
        assert_eq!(outcome.record_count, records as u64);
        assert_eq!(outcome.bytes, bytes.len() as u64);
        assert!(!outcome.duplicate);
        assert_eq!(outcome.log_append_time, None);
        expected_first += records;
    }
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(
        log.size_bytes(),
        sent.iter().map(|b| b.len() as u64).sum::<u64>()
    );

    let read = log.read(Offset(0), 1 << 20, MAX, false).unwrap();
    assert_eq!(read.log_end_offset, Offset(6));
    assert_eq!(read.log_start_offset, Offset(0));
    let got = headers(&read.records);
    assert_eq!(
        got.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![Offset(0), Offset(2), Offset(5)]
    );
    assert!(
        got.iter()
            .all(|h| h.partition_leader_epoch == LeaderEpoch(7))
    );
    // Everything the CRC covers is exactly what the producer sent.
    let mut at = 0;
    for bytes in &sent {
        assert_eq!(&read.records[at + 16..at + bytes.len()], &bytes[16..]);
        at += bytes.len();
    }
}

#[test]
fn an_append_of_several_batches_is_all_or_nothing() {
    let dir = TempDir::new("all-or-nothing");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());

    let mut good = batch(2, 10, 30);
    good.extend_from_slice(&batch(4, 20, 30));
    let outcome = log.append_as_leader(&good, epoch(0), now(0)).unwrap();
    assert_eq!(
        (outcome.first_offset, outcome.last_offset),
        (Offset(0), Offset(5))
    );
    assert_eq!(outcome.record_count, 6);

    let mut bad = batch(1, 30, 30);
    let mut corrupt = batch(1, 40, 30);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    bad.extend_from_slice(&corrupt);
    let error = log.append_as_leader(&bad, epoch(0), now(0)).unwrap_err();
    assert!(
        matches!(error, StorageError::CorruptBatch { position, .. } if position == batch(1, 30, 30).len())
    );

    let mut torn = batch(1, 30, 30);
    torn.extend_from_slice(&batch(1, 40, 30)[..70]);
    assert!(matches!(
        log.append_as_leader(&torn, epoch(0), now(0)),
        Err(StorageError::CorruptBatch { .. })
    ));
    let mut old_magic = batch(1, 30, 30);
    old_magic[16] = 1;
    assert!(matches!(
        log.append_as_leader(&old_magic, epoch(0), now(0)),
        Err(StorageError::CorruptBatch { .. })
    ));
    // record count ≠ last offset delta + 1
    let mut miscounted = batch(3, 30, 30);
    miscounted[57..61].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&miscounted[21..]);
    miscounted[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(&miscounted, epoch(0), now(0)),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert!(matches!(
        log.append_as_leader(&[], epoch(0), now(0)),
        Err(StorageError::InvalidRecord { .. })
    ));

    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(log.size_bytes(), good.len() as u64);
    assert_eq!(read_all(&log), {
        let read = log.read(Offset(0), 1 << 20, MAX, false).unwrap();
        read.records.to_vec()
    });
}

#[test]
fn a_batch_over_max_message_bytes_is_rejected() {
    let dir = TempDir::new("too-large");
    let manager = open(dir.path());
    let big = batch(1, 10, 500);
    let config = LogConfig {
        max_message_bytes: big.len() as u32 - 1,
        ..LogConfig::default()
    };
    let log = create(&manager, config);
    let error = log.append_as_leader(&big, epoch(0), now(0)).unwrap_err();
    assert!(matches!(
        error,
        StorageError::RecordBatchTooLarge { size, max } if size == big.len() && max == big.len() as u32 - 1
    ));
    log.update_config(LogConfig {
        max_message_bytes: big.len() as u32,
        ..config
    });
    log.append_as_leader(&big, epoch(0), now(0)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(1));
}

fn three_batch_log(
    dir: &TempDir,
) -> (
    caudal_storage::LogManager,
    Arc<caudal_storage::PartitionLog>,
) {
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    // offsets 0-1, 2-4, 5
    for (records, ts) in [(2, 100), (3, 200), (1, 300)] {
        log.append_as_leader(&batch(records, ts, 40), epoch(0), now(0))
            .unwrap();
    }
    (manager, log)
}

#[test]
fn a_read_starts_with_the_batch_containing_the_start_offset() {
    let dir = TempDir::new("read-mid");
    let (_manager, log) = three_batch_log(&dir);
    for (start, first_base) in [(0, 0), (1, 0), (2, 2), (3, 2), (4, 2), (5, 5)] {
        let read = log.read(Offset(start), 1 << 20, MAX, false).unwrap();
        assert_eq!(
            headers(&read.records)[0].base_offset,
            Offset(first_base),
            "start {start}"
        );
    }
    assert!(
        log.read(Offset(6), 1 << 20, MAX, true)
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn reads_never_include_a_batch_reaching_the_upper_bound() {
    let dir = TempDir::new("read-upper");
    let (_manager, log) = three_batch_log(&dir);
    let bases = |upper: i64| -> Vec<i64> {
        let read = log.read(Offset(0), 1 << 20, Offset(upper), true).unwrap();
        headers(&read.records)
            .iter()
            .map(|h| h.base_offset.0)
            .collect()
    };
    assert_eq!(bases(6), vec![0, 2, 5]);
    assert_eq!(bases(5), vec![0, 2]);
    assert_eq!(bases(4), vec![0]);
    assert_eq!(bases(2), vec![0]);
    assert_eq!(bases(1), Vec::<i64>::new());
    assert_eq!(bases(0), Vec::<i64>::new());
    // min_one_batch never overrides the upper bound.
    let read = log.read(Offset(2), 1, Offset(3), true).unwrap();
    assert!(read.records.is_empty());
}

#[test]
fn reads_respect_max_bytes_and_min_one_batch() {
    let dir = TempDir::new("read-max");
    let (_manager, log) = three_batch_log(&dir);
    let sizes: Vec<usize> = [(2, 100), (3, 200), (1, 300)]
        .iter()
        .map(|(r, t)| batch(*r, *t, 40).len())
        .collect();
    let count = |max_bytes: usize, min_one: bool| {
        headers(
            &log.read(Offset(0), max_bytes, MAX, min_one)
                .unwrap()
                .records,
        )
        .len()
    };
    assert_eq!(count(sizes[0] - 1, false), 0);
    assert_eq!(count(sizes[0] - 1, true), 1);
    assert_eq!(count(0, true), 1);
    assert_eq!(count(0, false), 0);
    assert_eq!(count(sizes[0], false), 1);
    assert_eq!(count(sizes[0] + sizes[1] - 1, true), 1);
    assert_eq!(count(sizes[0] + sizes[1], false), 2);
    assert_eq!(count(usize::MAX / 2, false), 3);
    let read = log.read(Offset(0), sizes[0] + 10, MAX, false).unwrap();
    assert_eq!(read.records.len(), sizes[0]);
}

#[test]
fn reads_outside_the_log_are_out_of_range() {
    let dir = TempDir::new("read-range");
    let (_manager, log) = three_batch_log(&dir);
    for start in [7, 100, -1] {
        let error = log.read(Offset(start), 100, MAX, true).unwrap_err();
        assert!(matches!(
            error,
            StorageError::OffsetOutOfRange { requested, log_start_offset: Offset(0), log_end_offset: Offset(6) }
                if requested == Offset(start)
        ));
    }
    let at_end = log.read(Offset(6), 100, MAX, true).unwrap();
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.log_end_offset, Offset(6));
}

#[test]
fn log_append_time_rewrites_max_timestamp_and_crc() {
    let dir = TempDir::new("append-time");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let sent = batch(3, 100, 64);
    let outcome = log.append_as_leader(&sent, epoch(1), now(55_555)).unwrap();
    assert_eq!(outcome.log_append_time, Some(TimestampMs(55_555)));
    let read = log.read(Offset(0), 1 << 20, MAX, false).unwrap();
    let header = headers(&read.records)[0];
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, TimestampMs(55_555));
    assert_eq!(header.base_timestamp, TimestampMs(99));
    assert_eq!(&read.records[HEADER_BYTES..], &sent[HEADER_BYTES..]);
    assert_eq!(
        log.find_batch_by_timestamp(TimestampMs(50_000))
            .unwrap()
            .unwrap(),
        read.records
    );
}

#[test]
fn the_active_segment_rolls_on_segment_bytes() {
    let dir = TempDir::new("roll-size");
    let manager = open(dir.path());
    let one = batch(2, 10, 100).len() as u64;
    let log = create(
        &manager,
        LogConfig {
            segment_bytes: 3 * one,
            ..LogConfig::default()
        },
    );
    for i in 0..10 {
        log.append_as_leader(&batch(2, 10 + i, 100), epoch(0), now(0))
            .unwrap();
    }
    assert_eq!(
        log.segment_base_offsets(),
        vec![Offset(0), Offset(6), Offset(12), Offset(18)]
    );
    assert_eq!(headers(&read_all(&log)).len(), 10);
    // A rolled segment is flushed in the background.
    manager.sync_background_flushes();
    assert!(log.recovery_point() >= Offset(18));
    assert_eq!(segment_files(dir.path(), ".snapshot").len(), 3);
}

#[test]
fn the_active_segment_rolls_on_segment_ms() {
    let dir = TempDir::new("roll-time");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        },
    );
    // By the first batch's timestamp: 100 → 1100 is not > 1000 ms later, 1101 is.
    log.append_as_leader(&batch(1, 100, 10), epoch(0), now(0))
        .unwrap();
    log.append_as_leader(&batch(1, 1100, 10), epoch(0), now(0))
        .unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append_as_leader(&batch(1, 1101, 10), epoch(0), now(0))
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);

    // Without timestamps: by the segment's creation time (the roll at now = 0).
    log.roll(now(5000)).unwrap();
    assert_eq!(log.segment_base_offsets().last(), Some(&Offset(3)));
    log.append_as_leader(&batch(1, -1, 10), epoch(0), now(5500))
        .unwrap();
    log.append_as_leader(&batch(1, -1, 10), epoch(0), now(6000))
        .unwrap();
    assert_eq!(log.segment_count(), 3);
    log.append_as_leader(&batch(1, -1, 10), epoch(0), now(6001))
        .unwrap();
    assert_eq!(log.segment_base_offsets().last(), Some(&Offset(5)));
}

#[test]
fn the_active_segment_rolls_when_an_index_is_full() {
    let dir = TempDir::new("roll-index");
    let manager = open(dir.path());
    // 16 bytes: two offset-index entries, one time-index entry.
    let log = create(
        &manager,
        LogConfig {
            segment_index_bytes: 16,
            index_interval_bytes: 1,
            ..LogConfig::default()
        },
    );
    log.append_as_leader(&batch(1, 10, 10), epoch(0), now(0))
        .unwrap();
    log.append_as_leader(&batch(1, 20, 10), epoch(0), now(0))
        .unwrap();
    assert_eq!(log.segment_count(), 1);
    // The second batch added the first time-index entry: the index is full.
    log.append_as_leader(&batch(1, 30, 10), epoch(0), now(0))
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
    let index = std::fs::read(&segment_files(dir.path(), ".index")[0]).unwrap();
    assert_eq!(index.len(), 8);
}

#[test]
fn a_new_leader_epoch_rolls_and_is_recorded() {
    let dir = TempDir::new("roll-epoch");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    log.append_as_leader(&batch(2, 10, 10), epoch(0), now(0))
        .unwrap();
    log.append_as_leader(&batch(2, 10, 10), epoch(0), now(0))
        .unwrap();
    log.append_as_leader(&batch(3, 10, 10), epoch(2), now(0))
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(4)]);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(2)));
    assert_eq!(
        log.leader_epoch_entries(),
        vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(2), Offset(4))]
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(0)),
        Some((LeaderEpoch(0), Offset(4)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(0), Offset(4)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(2)),
        Some((LeaderEpoch(2), Offset(7)))
    );
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(3)), None);
    // A stale leader cannot append.
    let error = log
        .append_as_leader(&batch(1, 10, 10), epoch(1), now(0))
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::StaleLeaderEpoch {
            latest: LeaderEpoch(2),
            received: LeaderEpoch(1)
        }
    ));
    assert_eq!(log.log_end_offset(), Offset(7));
}

#[test]
fn find_batch_by_timestamp_uses_the_time_index_across_segments() {
    let dir = TempDir::new("by-timestamp");
    let manager = open(dir.path());
    let one = batch(1, 0, 60).len() as u64;
    let log = create(
        &manager,
        LogConfig {
            segment_bytes: 8 * one,
            index_interval_bytes: one as u32,
            ..LogConfig::default()
        },
    );
    // Timestamps are not monotonic: 100, 500, 300, 700, ... over several segments.
    let mut timestamps = Vec::new();
    for i in 0..40i64 {
        let ts = 100 * (i + 1) + if i % 2 == 1 { 300 } else { 0 };
        timestamps.push(ts);
        log.append_as_leader(&batch(1, ts, 60), epoch(0), now(0))
            .unwrap();
    }
    assert!(log.segment_count() >= 5);
    for target in [0, 1, 100, 101, 399, 400, 401, 1250, 3900, 4300] {
        let expected = timestamps.iter().position(|ts| *ts >= target);
        let found = log.find_batch_by_timestamp(TimestampMs(target)).unwrap();
        match expected {
            None => assert!(found.is_none(), "{target}"),
            Some(offset) => {
                let found = headers(&found.unwrap());
                assert_eq!(found.len(), 1);
                assert_eq!(
                    found[0].base_offset,
                    Offset(offset as i64),
                    "target {target}"
                );
            }
        }
    }
    assert!(
        log.find_batch_by_timestamp(TimestampMs(4301))
            .unwrap()
            .is_none()
    );
}

#[test]
fn batch_with_max_timestamp_returns_the_earliest_on_ties() {
    let dir = TempDir::new("max-timestamp");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    assert!(log.batch_with_max_timestamp().unwrap().is_none());
    for (i, ts) in [100, 900, 300, 900, 200].into_iter().enumerate() {
        log.append_as_leader(&batch(2, ts, 10), epoch(0), now(0))
            .unwrap();
        if i == 1 {
            log.roll(now(0)).unwrap();
        }
    }
    let found = headers(&log.batch_with_max_timestamp().unwrap().unwrap());
    assert_eq!(found[0].base_offset, Offset(2));
    log.append_as_leader(&batch(1, 901, 10), epoch(0), now(0))
        .unwrap();
    let found = headers(&log.batch_with_max_timestamp().unwrap().unwrap());
    assert_eq!(found[0].base_offset, Offset(10));
}

#[test]
fn index_lookups_find_every_offset_in_a_long_log() {
    let dir = TempDir::new("lookups");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            index_interval_bytes: 200,
            segment_bytes: 10_000,
            ..LogConfig::default()
        },
    );
    let mut bases = Vec::new();
    for i in 0..600i64 {
        let records = 1 + (i % 4) as i32;
        let outcome = log
            .append_as_leader(&batch(records, i, (i % 50) as usize), epoch(0), now(0))
            .unwrap();
        bases.push((outcome.first_offset, outcome.last_offset));
    }
    assert!(log.segment_count() > 2);
    for (first, last) in bases.iter().step_by(7) {
        for offset in first.0..=last.0 {
            let read = log.read(Offset(offset), 1, MAX, true).unwrap();
            let header = headers(&read.records)[0];
            assert_eq!(header.base_offset, *first);
            assert_eq!(header.last_offset(), *last);
        }
    }
}

#[test]
fn concurrent_appends_reads_and_flushes_stay_consistent() {
    let dir = TempDir::new("concurrent");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            segment_bytes: 20_000,
            index_interval_bytes: 500,
            ..LogConfig::default()
        },
    );
    let appenders: Vec<_> = (0..3)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let outcome = log
                        .append_as_leader(
                            &batch(1 + (i % 3), i as i64, 40 + thread),
                            epoch(0),
                            now(0),
                        )
                        .unwrap();
                    if i % 20 == 0 {
                        let point = log.flush_to(outcome.last_offset.next()).unwrap();
                        assert!(point > outcome.last_offset);
                    }
                }
            })
        })
        .collect();
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for _ in 0..300 {
                let end = log.log_end_offset();
                let mut next = Offset(0);
                while next < end {
                    let read = log.read(next, 4096, end, true).unwrap();
                    let batches = headers(&read.records);
                    assert!(!batches.is_empty());
                    assert!(batches[0].base_offset <= next && batches[0].last_offset() >= next);
                    for pair in batches.windows(2) {
                        assert_eq!(pair[0].next_offset(), pair[1].base_offset);
                    }
                    next = batches.last().unwrap().next_offset();
                }
            }
        })
    };
    for appender in appenders {
        appender.join().unwrap();
    }
    reader.join().unwrap();
    let all = headers(&read_all(&log));
    assert_eq!(all.len(), 600);
    assert_eq!(all.last().unwrap().next_offset(), log.log_end_offset());
    assert_eq!(log.flush().unwrap(), log.log_end_offset());
    assert_eq!(log.recovery_point(), log.log_end_offset());
}
