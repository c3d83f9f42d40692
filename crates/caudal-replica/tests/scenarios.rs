//! Replication scenarios from issue #5, driven through the state machines without sockets.

mod support;

use caudal_model::{LeaderEpoch, NodeId, Offset, TimestampMs};
use caudal_replica::{
    EpochEndOffset, ErrorCode, FetchRead, FetchRequest, FetchResponse, FollowerAction,
    FollowerFetch, FollowerPhase, FollowerState, FollowerStep, IsrState, LeaderConfig, LeaderInit,
    LeaderState, LocalLog, PartitionEpoch, ProduceWaitId,
};
use support::{Answer, TestLog, deliver, exchange, serve};

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const LAG_MS: i64 = 10_000;

fn config(acks_all_fsync: bool) -> LeaderConfig {
    LeaderConfig {
        acks_all_fsync,
        replica_lag_time_max_ms: LAG_MS,
        min_insync_replicas: 2,
    }
}

fn lead(
    local: NodeId,
    epoch: i32,
    isr: &[NodeId],
    log: &TestLog,
    high_watermark: i64,
) -> LeaderState {
    LeaderState::new(
        LeaderInit {
            local,
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: PartitionEpoch(epoch),
            replicas: vec![A, B, C],
            isr: isr.to_vec(),
            log_start_offset: Offset(0),
            log_end_offset: log.log_end_offset(),
            durable_offset: Offset(log.durable),
            high_watermark: Offset(high_watermark),
        },
        config(true),
        TimestampMs(0),
    )
}

fn follow(leader: NodeId, epoch: i32, log: &TestLog, high_watermark: i64) -> FollowerState {
    FollowerState::new(
        leader,
        LeaderEpoch(epoch),
        LocalLog {
            log_start_offset: Offset(0),
            log_end_offset: log.log_end_offset(),
            durable_offset: Offset(log.durable),
            high_watermark: Offset(high_watermark),
            latest_epoch: log.latest_epoch(),
        },
        true,
    )
}

fn fetch(replica: NodeId, fetch_offset: i64, durable_offset: i64, epoch: i32) -> FollowerFetch {
    FollowerFetch {
        replica,
        fetch_offset: Offset(fetch_offset),
        durable_offset: Some(Offset(durable_offset)),
        current_leader_epoch: Some(LeaderEpoch(epoch)),
        last_fetched_epoch: None,
    }
}

fn no_epochs(_: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
    None
}

fn leader_with_records(count: usize, fsync: bool) -> (LeaderState, TestLog) {
    let mut log = TestLog::default();
    log.assign_epoch(1, 0);
    let mut leader = LeaderState::new(
        LeaderInit {
            local: A,
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(1),
            replicas: vec![A, B, C],
            isr: vec![A, B, C],
            log_start_offset: Offset(0),
            log_end_offset: Offset(0),
            durable_offset: Offset(0),
            high_watermark: Offset(0),
        },
        config(fsync),
        TimestampMs(0),
    );
    for _ in 0..count {
        log.append(1);
    }
    leader.on_append(log.log_end_offset(), TimestampMs(0));
    (leader, log)
}

#[test]
fn high_watermark_follows_the_slowest_durable_isr_member() {
    let (mut leader, mut log) = leader_with_records(10, true);
    let now = TimestampMs(1);
    // Nothing is fsynced on the leader yet: followers alone cannot move the high watermark.
    leader
        .on_follower_fetch(fetch(B, 10, 10, 1), no_epochs, now)
        .unwrap();
    leader
        .on_follower_fetch(fetch(C, 10, 10, 1), no_epochs, now)
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(0));
    assert_eq!(leader.on_local_flush(log.flush(), now), Some(Offset(10)));

    // C has fetched everything but fsynced only up to 4: that is what counts.
    for _ in 0..10 {
        log.append(1);
    }
    leader.on_append(log.log_end_offset(), now);
    leader.on_local_flush(log.flush(), now);
    leader
        .on_follower_fetch(fetch(B, 20, 20, 1), no_epochs, now)
        .unwrap();
    let outcome = leader
        .on_follower_fetch(fetch(C, 20, 14, 1), no_epochs, now)
        .unwrap();
    assert_eq!(outcome.high_watermark_advanced, Some(Offset(14)));
    assert_eq!(leader.high_watermark(), Offset(14));
    // A durable offset past the fetch offset is not believed.
    leader
        .on_follower_fetch(fetch(C, 16, 30, 1), no_epochs, now)
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(16));
    // A follower reporting less (after its own truncation) never moves it backwards.
    leader
        .on_follower_fetch(fetch(C, 12, 12, 1), no_epochs, now)
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(16));
    let outcome = leader
        .on_follower_fetch(fetch(C, 20, 20, 1), no_epochs, now)
        .unwrap();
    assert_eq!(outcome.high_watermark, Offset(20));
    assert_eq!(
        outcome.read,
        FetchRead::Records {
            start_offset: Offset(20)
        }
    );
}

#[test]
fn without_fsync_the_high_watermark_counts_log_end_offsets() {
    let (mut leader, _log) = leader_with_records(10, false);
    let now = TimestampMs(1);
    leader
        .on_follower_fetch(fetch(B, 10, 0, 1), no_epochs, now)
        .unwrap();
    leader
        .on_follower_fetch(fetch(C, 7, 0, 1), no_epochs, now)
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(7));
}

#[test]
fn new_leader_starts_from_its_own_high_watermark_until_followers_fetch_in_its_epoch() {
    let mut log = TestLog::default();
    for _ in 0..8 {
        log.append(1);
    }
    log.flush();
    let mut leader = lead(B, 2, &[A, B, C], &log, 5);
    assert_eq!(leader.high_watermark(), Offset(5));
    assert_eq!(leader.leader_epoch_start_offset(), Offset(8));
    assert!(!leader.high_watermark_reached_epoch_start());
    assert_eq!(
        leader.latest_offset_for_client(),
        Err(ErrorCode::OffsetNotAvailable)
    );
    // Appending alone does not advance: the followers' progress is unknown in this epoch.
    assert_eq!(leader.on_append(Offset(8), TimestampMs(1)), None);
    leader
        .on_follower_fetch(fetch(A, 8, 8, 2), no_epochs, TimestampMs(1))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(5));
    leader
        .on_follower_fetch(fetch(C, 8, 8, 2), no_epochs, TimestampMs(1))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(8));
    assert!(leader.high_watermark_reached_epoch_start());
    assert_eq!(leader.latest_offset_for_client(), Ok(Offset(8)));
}

#[test]
fn fetch_errors_follow_kafka() {
    let (mut leader, log) = leader_with_records(5, true);
    let now = TimestampMs(1);
    let stranger = NodeId(9);
    assert_eq!(
        leader.on_follower_fetch(fetch(stranger, 0, 0, 1), no_epochs, now),
        Err(ErrorCode::NotLeaderOrFollower)
    );
    assert_eq!(
        leader.on_follower_fetch(fetch(B, 0, 0, 0), no_epochs, now),
        Err(ErrorCode::FencedLeaderEpoch)
    );
    assert_eq!(
        leader.on_follower_fetch(fetch(B, 0, 0, 2), no_epochs, now),
        Err(ErrorCode::UnknownLeaderEpoch)
    );
    assert_eq!(
        leader.on_follower_fetch(fetch(B, 6, 6, 1), no_epochs, now),
        Err(ErrorCode::OffsetOutOfRange)
    );
    // An epoch of −1 skips the check.
    let mut unchecked = fetch(B, 5, 5, 1);
    unchecked.current_leader_epoch = Some(LeaderEpoch::UNKNOWN);
    assert!(
        leader
            .on_follower_fetch(unchecked, log.lookup(), now)
            .is_ok()
    );
    // The follower's last fetched epoch 0 ended where the leader's epoch 1 starts: diverging.
    let mut diverging = fetch(C, 3, 3, 1);
    diverging.last_fetched_epoch = Some(LeaderEpoch(0));
    let mut leader_log = TestLog::default();
    leader_log.append(0);
    leader_log.append(0);
    for _ in 0..3 {
        leader_log.append(1);
    }
    let outcome = leader
        .on_follower_fetch(diverging, leader_log.lookup(), now)
        .unwrap();
    assert_eq!(
        outcome.read,
        FetchRead::Diverging(EpochEndOffset {
            leader_epoch: LeaderEpoch(0),
            end_offset: Offset(2),
        })
    );
    // A diverging fetch does not count as progress.
    assert_eq!(leader.follower(C).unwrap().log_end_offset, None);
}

#[test]
fn isr_shrinks_after_the_lag_time_and_expands_when_caught_up() {
    let (mut leader, mut log) = leader_with_records(4, true);
    leader.on_local_flush(log.flush(), TimestampMs(0));
    leader
        .on_follower_fetch(fetch(B, 4, 4, 1), no_epochs, TimestampMs(100))
        .unwrap();
    leader
        .on_follower_fetch(fetch(C, 4, 4, 1), no_epochs, TimestampMs(100))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(4));
    // C stops fetching; B keeps up.
    for step in 1..=12 {
        let now = TimestampMs(100 + step * 1_000);
        log.append(1);
        leader.on_append(log.log_end_offset(), now);
        leader.on_local_flush(log.flush(), now);
        let end = log.log_end_offset().value();
        leader
            .on_follower_fetch(fetch(B, end, end, 1), no_epochs, now)
            .unwrap();
        let proposal = leader.maybe_shrink_isr(now);
        if now.value() - 100 <= LAG_MS {
            assert_eq!(proposal, None, "C is within the lag time at {now}");
        } else {
            let proposal = proposal.expect("C lagged past replica.lag.time.max.ms");
            assert_eq!(proposal.new_isr, vec![A, B]);
            assert_eq!(proposal.partition_epoch, PartitionEpoch(1));
            break;
        }
    }
    assert!(matches!(leader.isr_state(), IsrState::PendingShrink { .. }));
    // While the shrink is in flight, C still holds the high watermark back (maximal ISR).
    assert_eq!(leader.high_watermark(), Offset(4));
    assert_eq!(leader.maybe_shrink_isr(TimestampMs(20_000)), None);
    let advanced = leader.on_isr_committed(vec![A, B], PartitionEpoch(2), TimestampMs(20_000));
    assert_eq!(advanced, Some(log.log_end_offset()));
    assert_eq!(leader.isr(), &[A, B]);
    // A stale commit is ignored.
    assert_eq!(
        leader.on_isr_committed(vec![A, B, C], PartitionEpoch(2), TimestampMs(20_000)),
        None
    );
    assert_eq!(leader.isr(), &[A, B]);

    // C comes back: below the high watermark it is not in sync; at it, an expansion is proposed.
    let high_watermark = leader.high_watermark().value();
    let outcome = leader
        .on_follower_fetch(fetch(C, 6, 6, 1), no_epochs, TimestampMs(21_000))
        .unwrap();
    assert_eq!(outcome.isr_proposal, None);
    let outcome = leader
        .on_follower_fetch(
            fetch(C, high_watermark, high_watermark, 1),
            no_epochs,
            TimestampMs(21_000),
        )
        .unwrap();
    let proposal = outcome
        .isr_proposal
        .expect("C caught up to the high watermark");
    assert_eq!(proposal.new_isr, vec![A, B, C]);
    assert_eq!(leader.isr_state().maximal_isr(), vec![A, B, C]);
    // The controller refuses: back to the committed ISR, and the next fetch proposes again.
    let stale = caudal_replica::IsrProposal {
        partition_epoch: PartitionEpoch(1),
        ..proposal.clone()
    };
    assert!(
        !leader.on_isr_rejected(&stale),
        "an answer to an older proposal is ignored"
    );
    assert!(leader.on_isr_rejected(&proposal));
    assert_eq!(leader.isr_state(), &IsrState::Committed { isr: vec![A, B] });
    let outcome = leader
        .on_follower_fetch(
            fetch(C, high_watermark, high_watermark, 1),
            no_epochs,
            TimestampMs(21_500),
        )
        .unwrap();
    assert!(outcome.isr_proposal.is_some());
    // While the expansion is in flight, C counts for the high watermark.
    log.append(1);
    leader.on_append(log.log_end_offset(), TimestampMs(21_600));
    leader.on_local_flush(log.flush(), TimestampMs(21_600));
    let end = log.log_end_offset().value();
    leader
        .on_follower_fetch(fetch(B, end, end, 1), no_epochs, TimestampMs(21_600))
        .unwrap();
    assert_eq!(leader.high_watermark().value(), high_watermark);
    leader.on_isr_committed(vec![A, B, C], PartitionEpoch(3), TimestampMs(21_700));
    assert_eq!(leader.isr(), &[A, B, C]);
}

#[test]
fn under_min_insync_replicas_appends_fail_and_the_high_watermark_holds() {
    let (mut leader, mut log) = leader_with_records(0, true);
    // ISR [A, B, C], min.insync.replicas=2: acks=all is accepted; the produce waits.
    leader.can_append_acks_all(2).unwrap();
    for _ in 0..5 {
        log.append(1);
    }
    leader.on_append(log.log_end_offset(), TimestampMs(0));
    leader.on_local_flush(log.flush(), TimestampMs(0));
    leader.register_produce_wait(ProduceWaitId(1), Offset(4), 2, TimestampMs(30_000));
    assert!(leader.ready_waits().is_empty());
    // Both followers vanish; the ISR shrinks to the leader alone.
    let proposal = leader.maybe_shrink_isr(TimestampMs(LAG_MS + 1)).unwrap();
    assert_eq!(proposal.new_isr, vec![A]);
    let advanced =
        leader.on_isr_committed(proposal.new_isr, PartitionEpoch(2), TimestampMs(LAG_MS + 2));
    // Under min.insync.replicas the high watermark does not advance (KIP-966): the wait expires.
    assert!(leader.is_under_min_isr());
    assert_eq!(advanced, None);
    assert_eq!(leader.high_watermark(), Offset(0));
    assert!(leader.ready_waits().is_empty());
    assert_eq!(
        leader.expired_waits(TimestampMs(30_000)),
        vec![(ProduceWaitId(1), ErrorCode::RequestTimedOut)]
    );
    // From now on acks=all is refused before appending; acks=1 still appends.
    assert_eq!(
        leader.can_append_acks_all(2),
        Err(ErrorCode::NotEnoughReplicas)
    );
    leader.can_append_acks_all(1).unwrap();
    // B comes back and rejoins: the high watermark moves again once the ISR is committed.
    let outcome = leader
        .on_follower_fetch(fetch(B, 5, 5, 1), no_epochs, TimestampMs(31_000))
        .unwrap();
    let proposal = outcome.isr_proposal.expect("B is in sync");
    assert_eq!(
        outcome.high_watermark_advanced, None,
        "the committed ISR is still [A]"
    );
    let advanced =
        leader.on_isr_committed(proposal.new_isr, PartitionEpoch(3), TimestampMs(31_001));
    assert_eq!(advanced, Some(Offset(5)));
    leader.can_append_acks_all(2).unwrap();
}

#[test]
fn a_wait_needing_more_replicas_than_remain_fails_after_append() {
    let (mut leader, mut log) = leader_with_records(0, true);
    for _ in 0..3 {
        log.append(1);
    }
    leader.on_append(log.log_end_offset(), TimestampMs(0));
    leader.on_local_flush(log.flush(), TimestampMs(0));
    // Produced while the topic asked for three in-sync replicas; the topic now asks for two.
    leader.register_produce_wait(ProduceWaitId(1), Offset(2), 3, TimestampMs(30_000));
    leader
        .on_follower_fetch(fetch(B, 3, 3, 1), no_epochs, TimestampMs(1))
        .unwrap();
    let proposal = leader.maybe_shrink_isr(TimestampMs(LAG_MS + 1)).unwrap();
    assert_eq!(proposal.new_isr, vec![A, B]);
    leader
        .on_follower_fetch(fetch(B, 3, 3, 1), no_epochs, TimestampMs(LAG_MS + 1))
        .unwrap();
    assert!(
        leader.ready_waits().is_empty(),
        "C still holds the HW back while the shrink is pending"
    );
    let advanced =
        leader.on_isr_committed(proposal.new_isr, PartitionEpoch(2), TimestampMs(LAG_MS + 2));
    assert_eq!(advanced, Some(Offset(3)));
    assert_eq!(
        leader.ready_waits(),
        vec![(
            ProduceWaitId(1),
            Err(ErrorCode::NotEnoughReplicasAfterAppend)
        )]
    );
}

#[test]
fn min_insync_replicas_is_capped_by_the_replica_count() {
    let mut leader = LeaderState::new(
        LeaderInit {
            local: A,
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(1),
            replicas: vec![A],
            isr: vec![A],
            log_start_offset: Offset(0),
            log_end_offset: Offset(0),
            durable_offset: Offset(0),
            high_watermark: Offset(0),
        },
        config(true),
        TimestampMs(0),
    );
    leader.can_append_acks_all(2).unwrap();
    leader.on_append(Offset(1), TimestampMs(0));
    leader.register_produce_wait(ProduceWaitId(1), Offset(0), 2, TimestampMs(30_000));
    assert_eq!(
        leader.on_local_flush(Offset(1), TimestampMs(0)),
        Some(Offset(1))
    );
    assert_eq!(leader.ready_waits(), vec![(ProduceWaitId(1), Ok(()))]);
}

#[test]
fn produce_waits_succeed_in_offset_order_and_expire() {
    let (mut leader, mut log) = leader_with_records(6, true);
    leader.on_local_flush(log.flush(), TimestampMs(0));
    leader.register_produce_wait(ProduceWaitId(7), Offset(2), 2, TimestampMs(1_000));
    leader.register_produce_wait(ProduceWaitId(8), Offset(5), 2, TimestampMs(1_000));
    leader
        .on_follower_fetch(fetch(B, 3, 3, 1), no_epochs, TimestampMs(10))
        .unwrap();
    leader
        .on_follower_fetch(fetch(C, 4, 4, 1), no_epochs, TimestampMs(10))
        .unwrap();
    assert_eq!(leader.ready_waits(), vec![(ProduceWaitId(7), Ok(()))]);
    assert!(leader.expired_waits(TimestampMs(999)).is_empty());
    assert_eq!(
        leader.expired_waits(TimestampMs(1_000)),
        vec![(ProduceWaitId(8), ErrorCode::RequestTimedOut)]
    );
    assert_eq!(leader.waiting_count(), 0);
    log.append(1);
    leader.register_produce_wait(ProduceWaitId(9), Offset(6), 2, TimestampMs(5_000));
    assert_eq!(
        leader.resign(),
        vec![(ProduceWaitId(9), ErrorCode::NotLeaderOrFollower)]
    );
}

#[test]
fn a_response_from_before_a_leader_change_is_discarded() {
    let mut leader_log = TestLog::default();
    for _ in 0..3 {
        leader_log.append(1);
    }
    leader_log.flush();
    let mut leader = lead(A, 1, &[A, B], &leader_log, 0);
    let mut follower_log = TestLog::default();
    follower_log.append(1);
    follower_log.flush();
    let mut follower = follow(A, 1, &follower_log, 0);
    // The fetch leaves; while it is in flight the follower learns of epoch 2 under C.
    let step = follower.next_step(follower_log.latest_epoch());
    let (answer, _) = serve(step, B, &mut leader, &leader_log, TimestampMs(1));
    assert!(follower.on_leader_change(C, LeaderEpoch(2), follower_log.latest_epoch()));
    assert!(!follower.on_leader_change(A, LeaderEpoch(1), follower_log.latest_epoch()));
    assert_eq!(
        deliver(&answer, &mut follower, &mut follower_log),
        FollowerAction::Discard
    );
    assert_eq!(follower_log.log_end_offset(), Offset(1));
    // A response for an older fetch position is discarded too.
    let FollowerStep::SendFetch(request) = follower.next_step(follower_log.latest_epoch()) else {
        panic!("a follower with epochs fetches");
    };
    assert_eq!(request.leader, C);
    assert_eq!(request.current_leader_epoch, LeaderEpoch(2));
    let stale = FetchRequest {
        fetch_offset: Offset(0),
        ..request
    };
    let response = FetchResponse {
        error_code: 0,
        high_watermark: Offset(1),
        log_start_offset: Offset(0),
        diverging_epoch: None,
        records: None,
    };
    assert_eq!(
        follower.on_fetch_response(&stale, &response, follower_log.lookup()),
        Ok(FollowerAction::Discard)
    );
    // Errors from the leader map to Kafka's follower reactions.
    let fenced = FetchResponse {
        error_code: ErrorCode::FencedLeaderEpoch.code(),
        ..response
    };
    assert_eq!(
        follower.on_fetch_response(&request, &fenced, follower_log.lookup()),
        Ok(FollowerAction::AwaitMetadata(ErrorCode::FencedLeaderEpoch))
    );
    let unknown = FetchResponse {
        error_code: ErrorCode::UnknownLeaderEpoch.code(),
        ..response
    };
    assert_eq!(
        follower.on_fetch_response(&request, &unknown, follower_log.lookup()),
        Ok(FollowerAction::Backoff(75))
    );
}

/// Drives `follower` against `leader` until it has the leader's whole log and has reported it
/// (bounded).
fn catch_up(
    follower: &mut FollowerState,
    follower_log: &mut TestLog,
    replica: NodeId,
    leader: &mut LeaderState,
    leader_log: &TestLog,
) -> Vec<FollowerAction> {
    let mut actions = Vec::new();
    for round in 0..32 {
        let action = exchange(
            follower,
            follower_log,
            replica,
            leader,
            leader_log,
            TimestampMs(round),
        );
        actions.push(action);
        // The follower fsyncs before it reports the next offset (DESIGN §2).
        follower.on_flushed(follower_log.flush());
        if follower_log.records == leader_log.records
            && matches!(action, FollowerAction::Apply { append: None, .. })
        {
            return actions;
        }
    }
    panic!("no catch-up in 32 rounds: {actions:?}");
}

/// KIP-101, scenario 2 with two quick leader changes. A leads epoch 1 and writes m0, m1; B has
/// fetched only m0 (high watermark 1). A dies; B leads epoch 2 and writes m1' at offset 1, then dies
/// before anyone fetches it; A comes back and leads epoch 3 (it never saw epoch 2) and writes m2.
/// B returns as a follower: it must drop m1' (never acknowledged), keep m0 and end up with A's log.
#[test]
fn two_quick_leader_changes_truncate_the_divergent_suffix() {
    for truncate_on_fetch in [true, false] {
        let mut log_a = TestLog::default();
        log_a.append(1);
        log_a.append(1);
        log_a.flush();
        let mut log_b = TestLog::default();
        log_b.append(1);
        log_b.flush();
        // B leads epoch 2.
        log_b.assign_epoch(2, 1);
        log_b.append(2);
        log_b.flush();
        // A leads epoch 3.
        log_a.assign_epoch(3, log_a.log_end_offset().value());
        let mut leader = lead(A, 3, &[A, B], &log_a, 1);
        log_a.append(3);
        leader.on_append(log_a.log_end_offset(), TimestampMs(0));
        leader.on_local_flush(log_a.flush(), TimestampMs(0));

        let mut follower = FollowerState::new(
            A,
            LeaderEpoch(3),
            LocalLog {
                log_start_offset: Offset(0),
                log_end_offset: log_b.log_end_offset(),
                durable_offset: Offset(log_b.durable),
                high_watermark: Offset(1),
                latest_epoch: log_b.latest_epoch(),
            },
            truncate_on_fetch,
        );
        let expected_phase = if truncate_on_fetch {
            FollowerPhase::Fetching
        } else {
            FollowerPhase::Truncating
        };
        assert_eq!(follower.phase(), expected_phase);
        let actions = catch_up(&mut follower, &mut log_b, B, &mut leader, &log_a);
        assert_eq!(
            actions[0],
            FollowerAction::TruncateTo(Offset(1)),
            "{actions:?}"
        );
        assert_eq!(log_b.records, vec![1, 1, 3]);
        assert_eq!(log_b.epochs, log_a.epochs);
        assert_eq!(leader.high_watermark(), Offset(3));
        assert_eq!(follower.high_watermark(), Offset(3));
    }
}

/// KIP-279: the follower does not know the epoch the leader answers with, so it truncates in two
/// rounds. The follower has epochs 1 and 3 (uncommitted records of a short-lived leader); the leader
/// has epochs 1, 2 and 4.
#[test]
fn truncation_takes_several_rounds_when_the_follower_misses_an_epoch() {
    for truncate_on_fetch in [true, false] {
        let mut leader_log = TestLog::default();
        for epoch in [1, 1, 2, 2, 4] {
            leader_log.append(epoch);
        }
        leader_log.flush();
        let mut follower_log = TestLog::default();
        for epoch in [1, 1, 1, 3] {
            follower_log.append(epoch);
        }
        follower_log.flush();
        let mut leader = lead(A, 4, &[A, B], &leader_log, 2);
        let mut follower = FollowerState::new(
            A,
            LeaderEpoch(4),
            LocalLog {
                log_start_offset: Offset(0),
                log_end_offset: follower_log.log_end_offset(),
                durable_offset: Offset(follower_log.durable),
                high_watermark: Offset(2),
                latest_epoch: follower_log.latest_epoch(),
            },
            truncate_on_fetch,
        );
        let actions = catch_up(
            &mut follower,
            &mut follower_log,
            B,
            &mut leader,
            &leader_log,
        );
        // Round 1: the leader's answer for epoch 3 is (2, 4); the follower has no epoch 2, so it
        // cuts back to the end of its epoch 1 (3). Round 2: epoch 1 ends at 2 on the leader.
        assert_eq!(
            actions[0],
            FollowerAction::TruncateTo(Offset(3)),
            "{actions:?}"
        );
        assert_eq!(
            actions[1],
            FollowerAction::TruncateTo(Offset(2)),
            "{actions:?}"
        );
        assert_eq!(follower_log.records, leader_log.records);
    }
}

/// A zombie: A led epoch 1 and is paused; the controller moves leadership to B at epoch 2. The
/// zombie keeps accepting produce requests, but no follower in the new epoch feeds its high
/// watermark, its shrink is rejected, and none of its acks=all waits succeeds. Requests in the old
/// epoch are fenced at B. When A learns, its waits fail and it truncates its zombie records.
#[test]
fn a_zombie_leader_is_fenced_and_never_acknowledges() {
    let mut log_a = TestLog::default();
    for _ in 0..3 {
        log_a.append(1);
    }
    log_a.flush();
    let mut zombie = lead(A, 1, &[A, B, C], &log_a, 3);
    let mut log_b = log_a.clone();
    let mut log_c = log_a.clone();

    // Epoch 2: B leads with ISR [B, C] (A was fenced by the controller).
    log_b.assign_epoch(2, 3);
    let mut leader_b = lead(B, 2, &[B, C], &log_b, 3);
    // The zombie appends and waits.
    zombie.can_append_acks_all(2).unwrap();
    log_a.append(1);
    log_a.append(1);
    zombie.on_append(log_a.log_end_offset(), TimestampMs(1));
    zombie.on_local_flush(log_a.flush(), TimestampMs(1));
    zombie.register_produce_wait(ProduceWaitId(1), Offset(4), 2, TimestampMs(30_000));
    // B appends in epoch 2; C follows B.
    log_b.append(2);
    leader_b.on_append(log_b.log_end_offset(), TimestampMs(1));
    leader_b.on_local_flush(log_b.flush(), TimestampMs(1));
    let mut follower_c = follow(B, 2, &log_c, 3);
    catch_up(&mut follower_c, &mut log_c, C, &mut leader_b, &log_b);
    assert_eq!(leader_b.high_watermark(), Offset(4));

    // C fetching from the zombie in epoch 2: UNKNOWN_LEADER_EPOCH, no progress recorded.
    assert_eq!(
        zombie.on_follower_fetch(fetch(C, 4, 4, 2), log_a.lookup(), TimestampMs(2)),
        Err(ErrorCode::UnknownLeaderEpoch)
    );
    // A request in the old epoch at the new leader: FENCED_LEADER_EPOCH.
    assert_eq!(
        leader_b.on_follower_fetch(fetch(C, 4, 4, 1), log_b.lookup(), TimestampMs(2)),
        Err(ErrorCode::FencedLeaderEpoch)
    );
    assert_eq!(
        leader_b.on_offset_for_leader_epoch(Some(LeaderEpoch(1)), LeaderEpoch(1), log_b.lookup()),
        Err(ErrorCode::FencedLeaderEpoch)
    );
    // The zombie tries to shrink to itself; the controller rejects the stale epoch.
    let proposal = zombie.maybe_shrink_isr(TimestampMs(LAG_MS + 10)).unwrap();
    assert_eq!(proposal.leader_epoch, LeaderEpoch(1));
    assert!(zombie.ready_waits().is_empty());
    assert!(zombie.on_isr_rejected(&proposal));
    assert!(zombie.ready_waits().is_empty());
    assert_eq!(zombie.high_watermark(), Offset(3));
    // The zombie resumes and learns: its wait fails; as B's follower it drops offsets 3 and 4.
    assert_eq!(
        zombie.resign(),
        vec![(ProduceWaitId(1), ErrorCode::NotLeaderOrFollower)]
    );
    let mut follower_a = follow(B, 2, &log_a, 3);
    let actions = catch_up(&mut follower_a, &mut log_a, A, &mut leader_b, &log_b);
    assert_eq!(actions[0], FollowerAction::TruncateTo(Offset(3)));
    assert_eq!(log_a.records, vec![1, 1, 1, 2]);
}

#[test]
fn out_of_range_is_resolved_with_the_leader_log_offsets() {
    let mut log = TestLog::default();
    for _ in 0..6 {
        log.append(1);
    }
    log.flush();
    let mut follower = follow(A, 2, &log, 2);
    let FollowerStep::SendFetch(request) = follower.next_step(log.latest_epoch()) else {
        panic!("a follower with epochs fetches");
    };
    let response = FetchResponse {
        error_code: ErrorCode::OffsetOutOfRange.code(),
        high_watermark: Offset(-1),
        log_start_offset: Offset(-1),
        diverging_epoch: None,
        records: None,
    };
    assert_eq!(
        follower.on_fetch_response(&request, &response, log.lookup()),
        Ok(FollowerAction::ResolveOutOfRange)
    );
    // The leader's log is shorter (an unclean election): truncate to its end.
    assert_eq!(
        follower.on_leader_log_offsets(Offset(0), Offset(4)),
        FollowerAction::TruncateTo(Offset(4))
    );
    assert_eq!(follower.log_end_offset(), Offset(4));
    // The leader's log starts past ours: start over empty at its log start.
    assert_eq!(
        follower.on_leader_log_offsets(Offset(100), Offset(120)),
        FollowerAction::TruncateFullyAndStartAt(Offset(100))
    );
    assert_eq!(follower.log_start_offset(), Offset(100));
    let FollowerStep::SendFetch(request) = follower.next_step(log.latest_epoch()) else {
        panic!("still fetching");
    };
    assert_eq!(request.fetch_offset, Offset(100));
}

#[test]
fn a_follower_adopts_the_leader_high_watermark_up_to_its_own_log_end() {
    let mut leader_log = TestLog::default();
    for _ in 0..10 {
        leader_log.append(1);
    }
    leader_log.flush();
    let mut leader = lead(A, 1, &[A, B], &leader_log, 10);
    let mut follower_log = TestLog::default();
    let mut follower = FollowerState::new(
        A,
        LeaderEpoch(1),
        LocalLog {
            log_start_offset: Offset(0),
            log_end_offset: Offset(0),
            durable_offset: Offset(0),
            high_watermark: Offset(0),
            latest_epoch: None,
        },
        true,
    );
    // No epochs yet: the follower first truncates to its high watermark (nothing to cut).
    assert_eq!(
        follower.next_step(None),
        FollowerStep::TruncateTo(Offset(0))
    );
    let action = exchange(
        &mut follower,
        &mut follower_log,
        B,
        &mut leader,
        &leader_log,
        TimestampMs(1),
    );
    let FollowerAction::Apply {
        append,
        high_watermark,
        ..
    } = action
    else {
        panic!("records expected: {action:?}");
    };
    assert_eq!(
        append.unwrap().last_offset,
        Offset(support::FETCH_RECORDS_MAX as i64 - 1)
    );
    assert_eq!(high_watermark, Offset(support::FETCH_RECORDS_MAX as i64));
    // The reported durable offset follows the follower's fsync.
    let (Answer::Fetch(request, _, _), _) = serve(
        follower.next_step(follower_log.latest_epoch()),
        B,
        &mut leader,
        &leader_log,
        TimestampMs(2),
    ) else {
        panic!("fetch expected");
    };
    assert_eq!(request.durable_offset, Offset(0));
    follower.on_flushed(follower_log.flush());
    assert_eq!(
        follower.durable_offset(),
        Offset(support::FETCH_RECORDS_MAX as i64)
    );
}

#[test]
fn ineligible_replicas_do_not_join_the_isr() {
    let mut log = TestLog::default();
    for _ in 0..4 {
        log.append(1);
    }
    log.flush();
    let mut leader = lead(A, 1, &[A, B], &log, 4);
    leader.set_ineligible_replicas(vec![C]);
    leader
        .on_follower_fetch(fetch(B, 4, 4, 1), no_epochs, TimestampMs(1))
        .unwrap();
    let outcome = leader
        .on_follower_fetch(fetch(C, 4, 4, 1), no_epochs, TimestampMs(1))
        .unwrap();
    assert_eq!(
        outcome.isr_proposal, None,
        "a fenced broker is not proposed"
    );
    // Nor does it hold the high watermark back as a replica about to join.
    leader
        .on_follower_fetch(fetch(C, 2, 2, 1), no_epochs, TimestampMs(2))
        .unwrap();
    log.append(1);
    leader.on_append(log.log_end_offset(), TimestampMs(2));
    leader.on_local_flush(log.flush(), TimestampMs(2));
    leader
        .on_follower_fetch(fetch(B, 5, 5, 1), no_epochs, TimestampMs(2))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(5));
    leader.set_ineligible_replicas(Vec::new());
    let outcome = leader
        .on_follower_fetch(fetch(C, 5, 5, 1), no_epochs, TimestampMs(3))
        .unwrap();
    assert_eq!(
        outcome.isr_proposal.map(|proposal| proposal.new_isr),
        Some(vec![A, B, C])
    );
}

#[test]
fn a_caught_up_replica_outside_the_isr_holds_the_high_watermark_while_it_joins() {
    let mut log = TestLog::default();
    for _ in 0..4 {
        log.append(1);
    }
    log.flush();
    let mut leader = lead(A, 1, &[A, B], &log, 4);
    leader
        .on_follower_fetch(fetch(B, 4, 4, 1), no_epochs, TimestampMs(1))
        .unwrap();
    // C catches up (its expansion goes out), then falls behind a new append while the ISR change
    // is pending: C holds the high watermark (maximal ISR).
    let outcome = leader
        .on_follower_fetch(fetch(C, 4, 4, 1), no_epochs, TimestampMs(1))
        .unwrap();
    let proposal = outcome.isr_proposal.unwrap();
    log.append(1);
    leader.on_append(log.log_end_offset(), TimestampMs(2));
    leader.on_local_flush(log.flush(), TimestampMs(2));
    leader
        .on_follower_fetch(fetch(B, 5, 5, 1), no_epochs, TimestampMs(2))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(4));
    // Rejected: C is no longer in the maximal ISR but, caught up within the lag time, it still
    // holds the high watermark as a replica about to join (shouldWaitForReplicaToJoinIsr).
    assert!(leader.on_isr_rejected(&proposal));
    leader
        .on_follower_fetch(fetch(B, 5, 5, 1), no_epochs, TimestampMs(3))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(4));
    leader
        .on_follower_fetch(fetch(C, 5, 5, 1), no_epochs, TimestampMs(3))
        .unwrap();
    assert_eq!(leader.high_watermark(), Offset(5));
}

#[test]
fn reassignment_adds_and_removes_replicas() {
    const D: NodeId = NodeId(4);
    let mut log = TestLog::default();
    for _ in 0..4 {
        log.append(1);
    }
    log.flush();
    let mut leader = lead(A, 1, &[A, B, C], &log, 4);
    assert_eq!(
        leader.on_follower_fetch(fetch(D, 0, 0, 1), no_epochs, TimestampMs(1)),
        Err(ErrorCode::NotLeaderOrFollower)
    );
    // D joins the assignment, C leaves it.
    assert_eq!(
        leader.on_partition_change(
            vec![A, B, D],
            vec![A, B, C],
            PartitionEpoch(2),
            TimestampMs(2)
        ),
        None
    );
    assert_eq!(leader.replicas(), &[A, B, D]);
    assert_eq!(leader.isr(), &[A, B]);
    assert!(leader.follower(C).is_none());
    // A stale image is ignored.
    leader.on_partition_change(
        vec![A, B, C],
        vec![A, B, C],
        PartitionEpoch(2),
        TimestampMs(2),
    );
    assert_eq!(leader.replicas(), &[A, B, D]);
    leader
        .on_follower_fetch(fetch(B, 4, 4, 1), no_epochs, TimestampMs(3))
        .unwrap();
    let outcome = leader
        .on_follower_fetch(fetch(D, 4, 4, 1), no_epochs, TimestampMs(3))
        .unwrap();
    assert_eq!(
        outcome.isr_proposal.map(|proposal| proposal.new_isr),
        Some(vec![A, B, D])
    );
}
