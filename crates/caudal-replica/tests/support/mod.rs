//! A minimal in-memory partition log for driving the state machines in tests: each record is
//! identified by its offset and the leader epoch it was written in, with a leader-epoch cache that
//! answers like Kafka's `LeaderEpochFileCache.endOffsetFor`.

#![allow(dead_code)]

use caudal_model::{LeaderEpoch, Offset};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestLog {
    /// The epoch of the record at each offset (the log starts at offset 0).
    pub records: Vec<i32>,
    /// `(epoch, start offset)`, ascending.
    pub epochs: Vec<(i32, i64)>,
    /// Everything below this offset is fsynced.
    pub durable: i64,
}

impl TestLog {
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.records.len() as i64)
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|(epoch, _)| LeaderEpoch(*epoch))
    }

    /// Kafka's `assignEpochStartOffset`: a new epoch starts at `start` if it is newer.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        if self.epochs.last().is_none_or(|(last, _)| *last < epoch) {
            self.epochs.push((epoch, start));
        }
    }

    pub fn append(&mut self, epoch: i32) -> Offset {
        let offset = self.records.len() as i64;
        self.assign_epoch(epoch, offset);
        self.records.push(epoch);
        Offset(offset)
    }

    pub fn truncate_to(&mut self, offset: Offset) {
        let offset = offset.value().max(0) as usize;
        if offset < self.records.len() {
            self.records.truncate(offset);
        }
        let end = self.records.len() as i64;
        self.epochs.retain(|(_, start)| *start < end);
        self.durable = self.durable.min(end);
    }

    pub fn flush(&mut self) -> Offset {
        self.durable = self.records.len() as i64;
        Offset(self.durable)
    }

    /// A crash loses everything not fsynced.
    pub fn crash(&mut self) {
        let durable = Offset(self.durable);
        self.truncate_to(durable);
    }

    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let requested = requested.value();
        let (latest, _) = *self.epochs.last()?;
        if requested == latest {
            return Some((LeaderEpoch(latest), self.log_end_offset()));
        }
        let higher = self.epochs.iter().find(|(epoch, _)| *epoch > requested)?;
        match self
            .epochs
            .iter()
            .rev()
            .find(|(epoch, _)| *epoch <= requested)
        {
            Some((floor, _)) => Some((LeaderEpoch(*floor), Offset(higher.1))),
            None => Some((LeaderEpoch(requested), Offset(higher.1))),
        }
    }

    pub fn lookup(&self) -> impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)> + '_ {
        move |epoch| self.end_offset_for_epoch(epoch)
    }
}

use caudal_model::{NodeId, TimestampMs};
use caudal_replica::{
    EpochResponse, FetchRead, FetchResponse, FollowerAction, FollowerFetch, FollowerState,
    FollowerStep, IsrProposal, LeaderState, RecordsRange,
};

/// How many records one Fetch response carries at most.
pub const FETCH_RECORDS_MAX: usize = 4;

/// The leader's answer to a follower's step, as it would travel back.
#[derive(Debug, Clone)]
pub enum Answer {
    Fetch(caudal_replica::FetchRequest, FetchResponse, Vec<i32>),
    Epoch(caudal_replica::EpochRequest, EpochResponse),
    Local(Offset),
}

/// The leader side of one request (what the server's Fetch / OffsetForLeaderEpoch handlers do),
/// with the ISR expansion the leader proposes, if any.
pub fn serve(
    step: FollowerStep,
    replica: NodeId,
    leader: &mut LeaderState,
    leader_log: &TestLog,
    now: TimestampMs,
) -> (Answer, Option<IsrProposal>) {
    let mut proposal = None;
    let answer = match step {
        FollowerStep::TruncateTo(offset) => Answer::Local(offset),
        FollowerStep::SendEpochRequest(request) => {
            let response = match leader.on_offset_for_leader_epoch(
                Some(request.current_leader_epoch),
                request.leader_epoch,
                leader_log.lookup(),
            ) {
                Ok(answer) => EpochResponse {
                    error_code: 0,
                    leader_epoch: answer.leader_epoch,
                    end_offset: answer.end_offset,
                },
                Err(error) => EpochResponse {
                    error_code: error.code(),
                    leader_epoch: LeaderEpoch::UNKNOWN,
                    end_offset: Offset(-1),
                },
            };
            Answer::Epoch(request, response)
        }
        FollowerStep::SendFetch(request) => {
            let outcome = leader.on_follower_fetch(
                FollowerFetch {
                    replica,
                    fetch_offset: request.fetch_offset,
                    durable_offset: Some(request.durable_offset),
                    current_leader_epoch: Some(request.current_leader_epoch),
                    last_fetched_epoch: request.last_fetched_epoch,
                },
                leader_log.lookup(),
                now,
            );
            if let Ok(outcome) = &outcome {
                proposal.clone_from(&outcome.isr_proposal);
            }
            let (response, records) = match outcome {
                Err(error) => (
                    FetchResponse {
                        error_code: error.code(),
                        high_watermark: Offset(-1),
                        log_start_offset: Offset(-1),
                        diverging_epoch: None,
                        records: None,
                    },
                    Vec::new(),
                ),
                Ok(outcome) => match outcome.read {
                    FetchRead::Diverging(diverging) => (
                        FetchResponse {
                            error_code: 0,
                            high_watermark: outcome.high_watermark,
                            log_start_offset: outcome.log_start_offset,
                            diverging_epoch: Some(diverging),
                            records: None,
                        },
                        Vec::new(),
                    ),
                    FetchRead::Records { start_offset } => {
                        let start = start_offset.value() as usize;
                        let end = leader_log.records.len().min(start + FETCH_RECORDS_MAX);
                        let records = leader_log.records[start..end].to_vec();
                        let range = (!records.is_empty()).then(|| RecordsRange {
                            base_offset: start_offset,
                            last_offset: Offset(end as i64 - 1),
                        });
                        (
                            FetchResponse {
                                error_code: 0,
                                high_watermark: outcome.high_watermark,
                                log_start_offset: outcome.log_start_offset,
                                diverging_epoch: None,
                                records: range,
                            },
                            records,
                        )
                    }
                },
            };
            Answer::Fetch(request, response, records)
        }
    };
    (answer, proposal)
}

/// The follower side: hand the answer to the state machine and carry out its action on the log.
pub fn deliver(answer: &Answer, follower: &mut FollowerState, log: &mut TestLog) -> FollowerAction {
    let action = match answer {
        Answer::Local(offset) => FollowerAction::TruncateTo(*offset),
        Answer::Epoch(request, response) => {
            follower.on_epoch_response(request, response, log.lookup())
        }
        Answer::Fetch(request, response, _) => follower
            .on_fetch_response(request, response, log.lookup())
            .expect("the leader serves contiguous records"),
    };
    match action {
        FollowerAction::TruncateTo(offset) => log.truncate_to(offset),
        FollowerAction::Apply {
            append: Some(range),
            ..
        } => {
            let Answer::Fetch(_, _, records) = answer else {
                unreachable!("only a fetch appends")
            };
            assert_eq!(range.base_offset, log.log_end_offset());
            for epoch in records {
                log.append(*epoch);
            }
        }
        FollowerAction::TruncateFullyAndStartAt(offset) => {
            assert_eq!(offset, Offset(0), "test logs start at 0");
            log.truncate_to(offset);
        }
        _ => {}
    }
    assert_eq!(follower.log_end_offset(), log.log_end_offset());
    action
}

/// One full exchange: the follower's next step, served by the leader, delivered back.
pub fn exchange(
    follower: &mut FollowerState,
    follower_log: &mut TestLog,
    replica: NodeId,
    leader: &mut LeaderState,
    leader_log: &TestLog,
    now: TimestampMs,
) -> FollowerAction {
    let step = follower.next_step(follower_log.latest_epoch());
    let (answer, _) = serve(step, replica, leader, leader_log, now);
    deliver(&answer, follower, follower_log)
}
