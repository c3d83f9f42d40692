//! Follower appends: a follower copies the leader's log verbatim, truncates by leader epoch, and
//! can take over as leader with the same producer state.

mod common;

use std::sync::Arc;

use caudal_model::batch::build_batch;
use caudal_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs};
use caudal_storage::{LogConfig, LogManager, PartitionLog, StorageError};
use common::*;

const MAX: Offset = Offset(i64::MAX);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Copies everything the leader has that the follower lacks, in fetch-sized chunks.
fn catch_up(leader: &PartitionLog, follower: &PartitionLog) {
    loop {
        let start = follower.log_end_offset();
        let fetched = leader
            .read(start, 700, leader.log_end_offset(), true)
            .unwrap();
        if fetched.records.is_empty() {
            return;
        }
        let outcome = follower
            .append_as_follower(&fetched.records, now(0))
            .unwrap();
        assert!(outcome.first_offset >= start);
        follower.flush().unwrap();
    }
}

fn leader_history(leader: &PartitionLog, from_epoch: i32, count: i32) {
    for i in 0..count {
        let leader_epoch = epoch(from_epoch + i / 10);
        let bytes = if i % 3 == 0 {
            producer_batch(
                5,
                0,
                leader
                    .producer_state(ProducerId(5))
                    .map_or(0, |s| s.last_sequence.map_or(0, |seq| seq.0 + 1)),
                2,
                100 + i as i64,
            )
        } else {
            batch(1 + i % 4, 100 + i as i64, 30 + (i % 5) as usize * 20)
        };
        leader
            .append_as_leader(&bytes, leader_epoch, now(0))
            .unwrap();
    }
}

fn two_logs(
    leader_dir: &TempDir,
    follower_dir: &TempDir,
) -> (LogManager, Arc<PartitionLog>, LogManager, Arc<PartitionLog>) {
    let leader_manager = open(leader_dir.path());
    let leader = create(&leader_manager, config());
    let follower_manager = open(follower_dir.path());
    let follower = create(&follower_manager, config());
    (leader_manager, leader, follower_manager, follower)
}

#[test]
fn a_follower_copies_the_leader_and_can_take_over() {
    let leader_dir = TempDir::new("leader");
    let follower_dir = TempDir::new("follower");
    let (_leader_manager, leader, follower_manager, follower) =
        two_logs(&leader_dir, &follower_dir);
    leader_history(&leader, 0, 45);
    catch_up(&leader, &follower);

    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(
        follower.leader_epoch_entries(),
        leader.leader_epoch_entries()
    );
    assert_eq!(follower.leader_epoch_entries().len(), 5);
    assert_eq!(
        follower.producer_state(ProducerId(5)),
        leader.producer_state(ProducerId(5))
    );
    assert!(follower.segment_count() > 1);
    assert_eq!(follower.recovery_point(), follower.log_end_offset());

    // After a crash and restart the follower still agrees.
    drop(follower);
    drop(follower_manager);
    let follower_manager = open(follower_dir.path());
    let follower = follower_manager.get(&tp()).unwrap();
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(
        follower.producer_state(ProducerId(5)),
        leader.producer_state(ProducerId(5))
    );

    // The follower becomes leader in epoch 9: the producer's retry is still a duplicate.
    let state = follower.producer_state(ProducerId(5)).unwrap();
    let last = state.last_sequence.unwrap().0;
    let retry = follower
        .append_as_leader(&producer_batch(5, 0, last - 1, 2, 1), epoch(9), now(0))
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.last_offset, state.last_offset.unwrap());
    let next = follower
        .append_as_leader(&producer_batch(5, 0, last + 1, 1, 1), epoch(9), now(0))
        .unwrap();
    assert_eq!(next.first_offset, leader.log_end_offset());
    assert_eq!(follower.latest_epoch(), Some(LeaderEpoch(9)));
}

#[test]
fn a_diverged_follower_truncates_by_leader_epoch() {
    let leader_dir = TempDir::new("leader-diverge");
    let follower_dir = TempDir::new("follower-diverge");
    let (_lm, leader, _fm, follower) = two_logs(&leader_dir, &follower_dir);
    leader_history(&leader, 0, 20); // epochs 0 and 1
    catch_up(&leader, &follower);
    let common_end = leader.log_end_offset();
    // The old leader (now the follower) wrote more in epoch 1 that never replicated...
    for i in 0..4 {
        follower
            .append_as_leader(&batch(2, 500 + i, 10), epoch(1), now(0))
            .unwrap();
    }
    // ...while the new leader moved to epoch 2.
    leader_history(&leader, 2, 6);
    let (epoch_found, end) = leader.end_offset_for_epoch(LeaderEpoch(1)).unwrap();
    assert_eq!((epoch_found, end), (LeaderEpoch(1), common_end));
    follower.truncate_to(end).unwrap();
    assert_eq!(follower.log_end_offset(), common_end);
    catch_up(&leader, &follower);
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(
        follower.leader_epoch_entries(),
        leader.leader_epoch_entries()
    );
}

#[test]
fn follower_offsets_must_continue_the_log() {
    let dir = TempDir::new("follower-offsets");
    let manager = open(dir.path());
    let log = create(&manager, config());
    let at = |base: i64, records: i32| {
        build_batch(
            Offset(base),
            0,
            records - 1,
            TimestampMs(1),
            TimestampMs(1),
            ProducerId::NONE,
            ProducerEpoch::NONE,
            Sequence::NONE,
            records,
            &[9; 20],
        )
    };
    log.append_as_follower(&at(0, 5), now(0)).unwrap();
    assert!(matches!(
        log.append_as_follower(&at(3, 1), now(0)),
        Err(StorageError::UnexpectedAppendOffset {
            expected_at_least: Offset(5),
            base_offset: Offset(3)
        })
    ));
    let mut overlapping = at(5, 2);
    overlapping.extend_from_slice(&at(6, 1));
    assert!(matches!(
        log.append_as_follower(&overlapping, now(0)),
        Err(StorageError::UnexpectedAppendOffset {
            expected_at_least: Offset(7),
            base_offset: Offset(6)
        })
    ));
    let mut corrupt = at(5, 1);
    corrupt[40] ^= 1;
    assert!(matches!(
        log.append_as_follower(&corrupt, now(0)),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(5));

    // A gap (compacted offsets on the leader) is fine; a read inside it starts after it.
    log.append_as_follower(&at(10, 2), now(0)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(12));
    let read = log.read(Offset(7), 1000, MAX, true).unwrap();
    assert_eq!(headers(&read.records)[0].base_offset, Offset(10));

    // A gap too large for one segment's relative offsets starts a new segment.
    let far = 10 + i32::MAX as i64 + 100;
    log.append_as_follower(&at(far, 1), now(0)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(far)]);
    assert_eq!(log.log_end_offset(), Offset(far + 1));
    // An empty active segment is re-created at the new base rather than rolled.
    log.truncate_fully_and_start_at(Offset(0)).unwrap();
    log.append_as_follower(&at(far, 1), now(0)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(far)]);
    drop(log);
    drop(manager);
    let manager = open(dir.path());
    let log = manager.get(&tp()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(far + 1));
    assert_eq!(manager.recovery_report()[0].bytes_truncated, 0);
}
