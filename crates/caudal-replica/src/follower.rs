//! The follower's side of one partition: what to ask the leader next, and what to do with its
//! answer (Kafka's `AbstractFetcherThread` / `ReplicaFetcherThread` for one partition, with the
//! KIP-101 / KIP-279 truncation rules and KIP-320 diverging epochs).
//!
//! The state mirrors the local log's offsets. Every decision that changes the log (truncate,
//! append, move the log start) updates the mirror at once: the server must carry it out before it
//! asks for the next request, and a storage failure takes the whole partition offline (the state is
//! then dropped and rebuilt from the log).

use caudal_model::{LeaderEpoch, NodeId, Offset};

use crate::EpochEndOffset;
use crate::error::ErrorCode;

/// Where the follower is in its protocol with the current leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerPhase {
    /// Must find the divergence point with OffsetForLeaderEpoch before fetching.
    Truncating,
    /// Fetching; divergence, if any, is reported in Fetch responses (KIP-320).
    Fetching,
}

/// The local log offsets a follower starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLog {
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// The recovery point: everything below it is fsynced.
    pub durable_offset: Offset,
    pub high_watermark: Offset,
    /// The latest epoch in the local leader-epoch cache; `None` for a log without epochs.
    pub latest_epoch: Option<LeaderEpoch>,
}

/// A Fetch for this partition, as sent to the leader. Pass it back with the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    pub leader: NodeId,
    pub current_leader_epoch: LeaderEpoch,
    pub fetch_offset: Offset,
    /// What this follower has fsynced (DESIGN §2); the leader counts it for the high watermark.
    pub durable_offset: Offset,
    pub log_start_offset: Offset,
    /// Fetch v12+ `last_fetched_epoch`: the epoch of the last local record.
    pub last_fetched_epoch: Option<LeaderEpoch>,
}

/// An OffsetForLeaderEpoch for this partition, as sent to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRequest {
    pub leader: NodeId,
    pub current_leader_epoch: LeaderEpoch,
    /// The epoch whose end offset is asked: the latest local one.
    pub leader_epoch: LeaderEpoch,
}

/// The follower's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerStep {
    /// Send this OffsetForLeaderEpoch.
    SendEpochRequest(EpochRequest),
    /// Send this Fetch.
    SendFetch(FetchRequest),
    /// A log without epochs cannot ask where it diverges: truncate locally to the high watermark
    /// (Kafka's pre-KIP-101 rule), then ask again.
    TruncateTo(Offset),
}

/// The offsets of the records a Fetch response carries (from their batch headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsRange {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// The leader's answer for this partition in a Fetch response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchResponse {
    pub error_code: i16,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub diverging_epoch: Option<EpochEndOffset>,
    /// `None` when the response carries no records.
    pub records: Option<RecordsRange>,
}

/// The leader's answer for this partition in an OffsetForLeaderEpoch response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochResponse {
    pub error_code: i16,
    /// −1 when undefined.
    pub leader_epoch: LeaderEpoch,
    /// −1 when undefined.
    pub end_offset: Offset,
}

/// What the server must do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerAction {
    /// The response answers a request from an older leadership or position: drop it.
    Discard,
    /// Truncate the local log (and its epoch cache) to this offset (exclusive end).
    TruncateTo(Offset),
    /// Append the response's records (they start at the fetch offset), then adopt
    /// `high_watermark`; advance the local log start to `log_start_offset` if it is higher.
    Apply {
        append: Option<RecordsRange>,
        high_watermark: Offset,
        log_start_offset: Offset,
    },
    /// The leader answered OFFSET_OUT_OF_RANGE: ask it (ListOffsets, earliest and latest) and call
    /// [`FollowerState::on_leader_log_offsets`].
    ResolveOutOfRange,
    /// This follower is behind on metadata (FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, …): wait
    /// for the next metadata image before fetching again.
    AwaitMetadata(ErrorCode),
    /// A transient error (UNKNOWN_LEADER_EPOCH: the leader has not learned its epoch yet, or an
    /// unknown code): back off, then ask again.
    Backoff(i16),
    /// Delete the whole local log and restart it empty at this offset (the leader's log start is
    /// past this follower's log end).
    TruncateFullyAndStartAt(Offset),
}

/// A response the follower cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerError {
    /// The records do not start at the fetch offset.
    NonContiguousRecords {
        expected: Offset,
        base_offset: Offset,
    },
    /// The records' last offset is before their base offset.
    InvalidRecordsRange,
}

/// A follower's replication state for one partition under one leader at one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerState {
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    phase: FollowerPhase,
    truncate_on_fetch: bool,
    log_start_offset: Offset,
    log_end_offset: Offset,
    durable_offset: Offset,
    high_watermark: Offset,
}

impl FollowerState {
    /// This node follows `leader` at `leader_epoch`. `truncate_on_fetch`: the leader answers Fetch
    /// v12+ with diverging epochs, so the follower fetches at once when it knows its latest epoch;
    /// otherwise (or with a log without epochs) it first truncates (OffsetForLeaderEpoch).
    pub fn new(
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        local: LocalLog,
        truncate_on_fetch: bool,
    ) -> FollowerState {
        let phase = if truncate_on_fetch && local.latest_epoch.is_some() {
            FollowerPhase::Fetching
        } else {
            FollowerPhase::Truncating
        };
        let log_end_offset = local.log_end_offset;
        FollowerState {
            leader,
            leader_epoch,
            phase,
            truncate_on_fetch,
            log_start_offset: local.log_start_offset,
            log_end_offset,
            durable_offset: local.durable_offset.min(log_end_offset),
            high_watermark: local.high_watermark.min(log_end_offset),
        }
    }

    /// The metadata names a new leader or epoch. An older or equal epoch is ignored (`false`);
    /// a newer one restarts the protocol with the new leader (`true`) and every response to an
    /// earlier request will be discarded.
    pub fn on_leader_change(
        &mut self,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        latest_epoch: Option<LeaderEpoch>,
    ) -> bool {
        if leader_epoch <= self.leader_epoch {
            return false;
        }
        self.leader = leader;
        self.leader_epoch = leader_epoch;
        self.phase = if self.truncate_on_fetch && latest_epoch.is_some() {
            FollowerPhase::Fetching
        } else {
            FollowerPhase::Truncating
        };
        true
    }

    pub fn leader(&self) -> NodeId {
        self.leader
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn phase(&self) -> FollowerPhase {
        self.phase
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    pub fn durable_offset(&self) -> Offset {
        self.durable_offset
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The local log fsynced everything below `durable_offset`.
    pub fn on_flushed(&mut self, durable_offset: Offset) {
        self.durable_offset = self
            .durable_offset
            .max(durable_offset.min(self.log_end_offset));
    }

    /// What to do next. `latest_epoch` is the latest epoch in the local leader-epoch cache.
    pub fn next_step(&mut self, latest_epoch: Option<LeaderEpoch>) -> FollowerStep {
        match (self.phase, latest_epoch) {
            (FollowerPhase::Truncating, None) => {
                let offset = self.high_watermark.min(self.log_end_offset);
                self.truncate(offset);
                self.phase = FollowerPhase::Fetching;
                FollowerStep::TruncateTo(offset)
            }
            (FollowerPhase::Truncating, Some(epoch)) => {
                FollowerStep::SendEpochRequest(EpochRequest {
                    leader: self.leader,
                    current_leader_epoch: self.leader_epoch,
                    leader_epoch: epoch,
                })
            }
            (FollowerPhase::Fetching, latest_epoch) => FollowerStep::SendFetch(FetchRequest {
                leader: self.leader,
                current_leader_epoch: self.leader_epoch,
                fetch_offset: self.log_end_offset,
                durable_offset: self.durable_offset,
                log_start_offset: self.log_start_offset,
                last_fetched_epoch: if self.truncate_on_fetch {
                    latest_epoch
                } else {
                    None
                },
            }),
        }
    }

    fn truncate(&mut self, offset: Offset) {
        let offset = offset.max(self.log_start_offset);
        self.log_end_offset = self.log_end_offset.min(offset);
        self.durable_offset = self.durable_offset.min(self.log_end_offset);
        self.high_watermark = self.high_watermark.min(self.log_end_offset);
    }

    fn error_action(error_code: i16) -> FollowerAction {
        match ErrorCode::from_code(error_code) {
            Some(ErrorCode::OffsetOutOfRange) => FollowerAction::ResolveOutOfRange,
            Some(
                error @ (ErrorCode::FencedLeaderEpoch
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::UnknownTopicOrPartition),
            ) => FollowerAction::AwaitMetadata(error),
            Some(
                ErrorCode::UnknownLeaderEpoch
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::OffsetNotAvailable,
            )
            | None => FollowerAction::Backoff(error_code),
        }
    }

    /// Kafka's `getOffsetTruncationState` (KIP-279): where to truncate given the leader's end
    /// offset for an epoch, and whether truncation is complete.
    fn truncation_point(
        &self,
        leader: EpochEndOffset,
        end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
    ) -> (Offset, bool) {
        if leader.end_offset.value() < 0 {
            return (self.high_watermark, true);
        }
        if leader.leader_epoch.value() < 0 {
            return (leader.end_offset.min(self.log_end_offset), true);
        }
        match end_offset_for_epoch(leader.leader_epoch) {
            Some((local_epoch, local_end)) if local_epoch == leader.leader_epoch => (
                local_end.min(leader.end_offset).min(self.log_end_offset),
                true,
            ),
            Some((_, local_end)) => (local_end.min(self.log_end_offset), false),
            None => (leader.end_offset.min(self.log_end_offset), true),
        }
    }

    /// The leader answered a Fetch sent as `sent`. `end_offset_for_epoch` is the local
    /// leader-epoch cache lookup (largest epoch ≤ the given one and its end offset).
    pub fn on_fetch_response(
        &mut self,
        sent: &FetchRequest,
        response: &FetchResponse,
        end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
    ) -> Result<FollowerAction, FollowerError> {
        if sent.leader != self.leader
            || sent.current_leader_epoch != self.leader_epoch
            || sent.fetch_offset != self.log_end_offset
            || self.phase != FollowerPhase::Fetching
        {
            return Ok(FollowerAction::Discard);
        }
        if response.error_code != 0 {
            return Ok(Self::error_action(response.error_code));
        }
        if let Some(diverging) = response.diverging_epoch {
            let (offset, complete) = self.truncation_point(diverging, end_offset_for_epoch);
            self.truncate(offset);
            if !complete && !self.truncate_on_fetch {
                self.phase = FollowerPhase::Truncating;
            }
            return Ok(FollowerAction::TruncateTo(self.log_end_offset));
        }
        if let Some(records) = response.records {
            if records.base_offset != self.log_end_offset {
                return Err(FollowerError::NonContiguousRecords {
                    expected: self.log_end_offset,
                    base_offset: records.base_offset,
                });
            }
            if records.last_offset < records.base_offset {
                return Err(FollowerError::InvalidRecordsRange);
            }
            self.log_end_offset = records.last_offset.next();
        }
        self.log_start_offset = self
            .log_start_offset
            .max(response.log_start_offset.min(self.log_end_offset));
        self.high_watermark = self
            .high_watermark
            .max(response.high_watermark.min(self.log_end_offset));
        Ok(FollowerAction::Apply {
            append: response.records,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
        })
    }

    /// The leader answered an OffsetForLeaderEpoch sent as `sent`.
    pub fn on_epoch_response(
        &mut self,
        sent: &EpochRequest,
        response: &EpochResponse,
        end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
    ) -> FollowerAction {
        if sent.leader != self.leader
            || sent.current_leader_epoch != self.leader_epoch
            || self.phase != FollowerPhase::Truncating
        {
            return FollowerAction::Discard;
        }
        if response.error_code != 0 {
            return Self::error_action(response.error_code);
        }
        let (offset, complete) = self.truncation_point(
            EpochEndOffset {
                leader_epoch: response.leader_epoch,
                end_offset: response.end_offset,
            },
            end_offset_for_epoch,
        );
        self.truncate(offset);
        if complete {
            self.phase = FollowerPhase::Fetching;
        }
        FollowerAction::TruncateTo(self.log_end_offset)
    }

    /// After [`FollowerAction::ResolveOutOfRange`]: the leader's log start and end offsets (Kafka's
    /// `fetchOffsetAndTruncate`). A leader log shorter than ours truncates ours; a leader log that
    /// starts after ours ends restarts ours empty at its start.
    pub fn on_leader_log_offsets(
        &mut self,
        leader_log_start_offset: Offset,
        leader_log_end_offset: Offset,
    ) -> FollowerAction {
        if leader_log_end_offset < self.log_end_offset {
            self.truncate(leader_log_end_offset);
            return FollowerAction::TruncateTo(self.log_end_offset);
        }
        if leader_log_start_offset > self.log_end_offset {
            self.log_start_offset = leader_log_start_offset;
            self.log_end_offset = leader_log_start_offset;
            self.durable_offset = leader_log_start_offset;
            self.high_watermark = leader_log_start_offset;
            return FollowerAction::TruncateFullyAndStartAt(leader_log_start_offset);
        }
        FollowerAction::Backoff(ErrorCode::OffsetOutOfRange.code())
    }
}
