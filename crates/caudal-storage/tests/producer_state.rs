//! Idempotent producer rules (Kafka's ProducerAppendInfo) and their persistence.

mod common;

use caudal_model::{Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs};
use caudal_storage::{LogConfig, StorageError, TimestampType};
use common::*;

const PID: i64 = 42;

#[test]
fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate() {
    let dir = TempDir::new("dup");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    let mut originals = Vec::new();
    for i in 0..7 {
        let outcome = log
            .append_as_leader(
                &producer_batch(PID, 0, i * 2, 2, 100 + i as i64),
                epoch(0),
                now(0),
            )
            .unwrap();
        originals.push(outcome);
    }
    let end = log.log_end_offset();
    let size = log.size_bytes();
    for i in 2..7 {
        let retry = log
            .append_as_leader(
                &producer_batch(PID, 0, i * 2, 2, 100 + i as i64),
                epoch(0),
                now(0),
            )
            .unwrap();
        assert!(retry.duplicate, "batch {i}");
        assert_eq!(retry.first_offset, originals[i as usize].first_offset);
        assert_eq!(retry.last_offset, originals[i as usize].last_offset);
        assert_eq!((retry.record_count, retry.bytes), (0, 0));
    }
    // Only five are remembered: an older retry is out of order.
    for i in 0..2 {
        let error = log
            .append_as_leader(&producer_batch(PID, 0, i * 2, 2, 100), epoch(0), now(0))
            .unwrap_err();
        assert!(matches!(
            error,
            StorageError::OutOfOrderSequence { expected: Sequence(14), received, .. } if received == Sequence(i * 2)
        ));
    }
    // Same first sequence but a different last sequence is not a duplicate.
    assert!(matches!(
        log.append_as_leader(&producer_batch(PID, 0, 12, 1, 100), epoch(0), now(0)),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.size_bytes(), size);
    let state = log.producer_state(ProducerId(PID)).unwrap();
    assert_eq!(state.producer_epoch, ProducerEpoch(0));
    assert_eq!(state.last_sequence, Some(Sequence(13)));
    assert_eq!(state.last_offset, Some(Offset(13)));
}

#[test]
fn a_gap_in_sequences_is_out_of_order() {
    let dir = TempDir::new("gap");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    log.append_as_leader(&producer_batch(PID, 0, 0, 3, 1), epoch(0), now(0))
        .unwrap();
    let error = log
        .append_as_leader(&producer_batch(PID, 0, 4, 1, 1), epoch(0), now(0))
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::OutOfOrderSequence {
            producer_id: ProducerId(PID),
            expected: Sequence(3),
            received: Sequence(4)
        }
    ));
    log.append_as_leader(&producer_batch(PID, 0, 3, 1, 1), epoch(0), now(0))
        .unwrap();
    // Other producers are independent, and a producer without state accepts any sequence.
    log.append_as_leader(&producer_batch(7, 3, 1000, 1, 1), epoch(0), now(0))
        .unwrap();
    assert_eq!(
        log.producer_state(ProducerId(7)).unwrap().last_sequence,
        Some(Sequence(1000))
    );
    assert_eq!(log.log_end_offset(), Offset(5));
}

#[test]
fn an_older_producer_epoch_is_fenced_and_a_new_one_starts_at_zero() {
    let dir = TempDir::new("epochs");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    log.append_as_leader(&producer_batch(PID, 2, 0, 2, 1), epoch(0), now(0))
        .unwrap();
    let error = log
        .append_as_leader(&producer_batch(PID, 1, 2, 1, 1), epoch(0), now(0))
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidProducerEpoch {
            current: ProducerEpoch(2),
            received: ProducerEpoch(1),
            ..
        }
    ));
    // A new epoch must start at sequence 0.
    let error = log
        .append_as_leader(&producer_batch(PID, 3, 2, 1, 1), epoch(0), now(0))
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::OutOfOrderSequence {
            expected: Sequence(0),
            received: Sequence(2),
            ..
        }
    ));
    let bumped = log
        .append_as_leader(&producer_batch(PID, 3, 0, 1, 1), epoch(0), now(0))
        .unwrap();
    assert!(!bumped.duplicate);
    // The old epoch's batches are forgotten: a retry of one is now fenced.
    assert!(matches!(
        log.append_as_leader(&producer_batch(PID, 2, 0, 2, 1), epoch(0), now(0)),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    let state = log.producer_state(ProducerId(PID)).unwrap();
    assert_eq!(
        (state.producer_epoch, state.last_sequence),
        (ProducerEpoch(3), Some(Sequence(0)))
    );
}

#[test]
fn sequences_wrap_at_i32_max() {
    let dir = TempDir::new("wrap");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    log.append_as_leader(
        &producer_batch(PID, 0, i32::MAX - 3, 2, 1),
        epoch(0),
        now(0),
    )
    .unwrap();
    // A batch spanning the wrap: MAX-1, MAX, 0.
    log.append_as_leader(
        &producer_batch(PID, 0, i32::MAX - 1, 3, 1),
        epoch(0),
        now(0),
    )
    .unwrap();
    assert_eq!(
        log.producer_state(ProducerId(PID)).unwrap().last_sequence,
        Some(Sequence(0))
    );
    log.append_as_leader(&producer_batch(PID, 0, 1, 1, 1), epoch(0), now(0))
        .unwrap();
    let retry = log
        .append_as_leader(
            &producer_batch(PID, 0, i32::MAX - 1, 3, 1),
            epoch(0),
            now(0),
        )
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.first_offset, retry.last_offset),
        (Offset(2), Offset(4))
    );

    log.append_as_leader(&producer_batch(9, 0, i32::MAX, 1, 1), epoch(0), now(0))
        .unwrap();
    log.append_as_leader(&producer_batch(9, 0, 0, 1, 1), epoch(0), now(0))
        .unwrap();
    assert!(matches!(
        log.append_as_leader(&producer_batch(9, 0, 0, 1, 1), epoch(0), now(0)),
        Ok(outcome) if outcome.duplicate
    ));
}

#[test]
fn a_duplicate_under_log_append_time_reports_the_original_append_time() {
    let dir = TempDir::new("dup-append-time");
    let manager = open(dir.path());
    let log = create(
        &manager,
        LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let first = log
        .append_as_leader(&producer_batch(PID, 0, 0, 1, 1), epoch(0), now(1_000))
        .unwrap();
    assert_eq!(first.log_append_time, Some(TimestampMs(1_000)));
    let retry = log
        .append_as_leader(&producer_batch(PID, 0, 0, 1, 1), epoch(0), now(9_000))
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.log_append_time, Some(TimestampMs(1_000)));
}

#[test]
fn an_open_transaction_requires_transactional_batches_until_its_marker() {
    let dir = TempDir::new("txn");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    log.append_as_leader(&transactional_batch(PID, 0, 0, 2, 1), epoch(0), now(0))
        .unwrap();
    assert_eq!(
        log.producer_state(ProducerId(PID))
            .unwrap()
            .current_txn_first_offset,
        Some(Offset(0))
    );
    let error = log
        .append_as_leader(&producer_batch(PID, 0, 2, 1, 1), epoch(0), now(0))
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidTxnState {
            transaction_first_offset: Offset(0),
            ..
        }
    ));
    log.append_as_leader(&transactional_batch(PID, 0, 2, 1, 1), epoch(0), now(0))
        .unwrap();
    // The coordinator's marker ends it; control batches carry no sequence.
    log.append_as_leader(&control_batch(PID, 0, 5), epoch(0), now(0))
        .unwrap();
    let state = log.producer_state(ProducerId(PID)).unwrap();
    assert_eq!(state.current_txn_first_offset, None);
    assert_eq!(state.last_sequence, Some(Sequence(2)));
    log.append_as_leader(&producer_batch(PID, 0, 3, 1, 1), epoch(0), now(0))
        .unwrap();
    // A marker from an older producer epoch is fenced.
    log.append_as_leader(&producer_batch(PID, 1, 0, 1, 1), epoch(0), now(0))
        .unwrap();
    assert!(matches!(
        log.append_as_leader(&control_batch(PID, 0, 5), epoch(0), now(0)),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
}

fn write_history(log: &caudal_storage::PartitionLog) {
    for i in 0..12 {
        log.append_as_leader(
            &producer_batch(PID, 1, i * 3, 3, 10 + i as i64),
            epoch(0),
            now(0),
        )
        .unwrap();
        log.append_as_leader(&producer_batch(PID + 1, 0, i, 1, 10), epoch(0), now(0))
            .unwrap();
        if i % 4 == 3 {
            log.roll(now(0)).unwrap();
        }
    }
    log.append_as_leader(&transactional_batch(PID + 2, 5, 0, 1, 10), epoch(0), now(0))
        .unwrap();
}

fn check_history(log: &caudal_storage::PartitionLog) {
    let state = log.producer_state(ProducerId(PID)).unwrap();
    assert_eq!(state.producer_epoch, ProducerEpoch(1));
    assert_eq!(state.last_sequence, Some(Sequence(35)));
    assert_eq!(state.last_timestamp, TimestampMs(21));
    assert_eq!(
        log.producer_state(ProducerId(PID + 2))
            .unwrap()
            .current_txn_first_offset,
        Some(Offset(48))
    );
    // Each of the last five is still recognised, with its original offsets.
    for i in 7..12 {
        let retry = log
            .append_as_leader(&producer_batch(PID, 1, i * 3, 3, 10), epoch(0), now(0))
            .unwrap();
        assert!(retry.duplicate, "batch {i}");
        assert_eq!(retry.first_offset, Offset(i as i64 * 4));
    }
    assert!(matches!(
        log.append_as_leader(&producer_batch(PID, 1, 37, 1, 10), epoch(0), now(0)),
        Err(StorageError::OutOfOrderSequence {
            expected: Sequence(36),
            ..
        })
    ));
    let next = log
        .append_as_leader(&producer_batch(PID, 1, 36, 1, 10), epoch(0), now(0))
        .unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.first_offset, Offset(49));
}

#[test]
fn producer_state_survives_a_clean_restart() {
    let dir = TempDir::new("producer-clean");
    {
        let manager = open(dir.path());
        write_history(&create(&manager, LogConfig::default()));
        manager.shutdown().unwrap();
    }
    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert!(report.clean_shutdown);
    assert_eq!(report.producer_snapshot, Some(Offset(49)));
    assert_eq!(report.producer_batches_replayed, 0);
    check_history(&manager.get(&tp()).unwrap());
}

#[test]
fn producer_state_survives_an_unclean_restart() {
    let dir = TempDir::new("producer-unclean");
    {
        let manager = open(dir.path());
        write_history(&create(&manager, LogConfig::default()));
        // Dropped without shutdown: a crash.
    }
    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert!(!report.clean_shutdown);
    // Snapshots were written at each roll; the batches after the last one are replayed.
    assert_eq!(report.producer_snapshot, Some(Offset(48)));
    assert_eq!(report.producer_batches_replayed, 1);
    check_history(&manager.get(&tp()).unwrap());
}

#[test]
fn producer_state_survives_losing_every_snapshot() {
    let dir = TempDir::new("producer-no-snapshot");
    {
        let manager = open(dir.path());
        write_history(&create(&manager, LogConfig::default()));
        manager.shutdown().unwrap();
    }
    let snapshots = segment_files(dir.path(), ".snapshot");
    assert!(!snapshots.is_empty());
    // Garbage in the newest, the others gone.
    for path in &snapshots[..snapshots.len() - 1] {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::write(snapshots.last().unwrap(), b"not a snapshot").unwrap();
    let manager = open(dir.path());
    let report = &manager.recovery_report()[0];
    assert_eq!(report.producer_snapshot, None);
    assert_eq!(report.producer_batches_replayed, 25);
    check_history(&manager.get(&tp()).unwrap());
}

#[test]
fn truncation_rebuilds_producer_state() {
    let dir = TempDir::new("producer-truncate");
    let manager = open(dir.path());
    let log = create(&manager, LogConfig::default());
    for i in 0..10 {
        log.append_as_leader(&producer_batch(PID, 0, i * 2, 2, 10), epoch(0), now(0))
            .unwrap();
        if i == 3 || i == 6 {
            log.roll(now(0)).unwrap();
        }
    }
    // Offsets 2i..2i+1 hold sequences 2i..2i+1; truncating at 9 removes batch 4 (8-9) onward.
    log.truncate_to(Offset(9)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(8));
    let state = log.producer_state(ProducerId(PID)).unwrap();
    assert_eq!(state.last_sequence, Some(Sequence(7)));
    assert_eq!(state.last_offset, Some(Offset(7)));
    // Batches after the truncation point are no longer duplicates, earlier ones still are.
    let again = log
        .append_as_leader(&producer_batch(PID, 0, 8, 2, 10), epoch(0), now(0))
        .unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.first_offset, Offset(8));
    assert!(
        log.append_as_leader(&producer_batch(PID, 0, 4, 2, 10), epoch(0), now(0))
            .unwrap()
            .duplicate
    );
    // Truncating to before the producer's first batch forgets it.
    log.truncate_to(Offset(0)).unwrap();
    assert!(log.producer_state(ProducerId(PID)).is_none());
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(log.segment_base_offsets(), vec![Offset(0)]);
}
