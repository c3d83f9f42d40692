//! The leader's side of one partition: follower fetch state, the high watermark, ISR proposals and
//! the `acks=all` waits (Kafka's `Partition` + `Replica` + `DelayedProduce`).
//!
//! Every method is a decision: it takes what happened (a follower fetched, the local log appended
//! or flushed, the controller committed an ISR, the clock reads `now`) and returns what the server
//! must do. Nothing here touches a socket, a file or a clock.

use std::collections::BTreeMap;

use caudal_model::{LeaderEpoch, NodeId, Offset, TimestampMs};

use crate::error::ErrorCode;
use crate::{EpochEndOffset, PartitionEpoch};

/// How the leader was configured for this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `caudal.acks.all.fsync`: the high watermark counts only fsynced offsets — the followers'
    /// reported durable offsets and the leader's own recovery point. Off: log end offsets, as Kafka.
    pub acks_all_fsync: bool,
    /// `replica.lag.time.max.ms`: a follower not caught up to the leader's log end offset for this
    /// long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// The topic's `min.insync.replicas`. As in Kafka since KIP-966, the high watermark does not
    /// advance while the committed ISR is smaller (capped by the replica count).
    pub min_insync_replicas: usize,
}

/// What the leader's log looks like when this node becomes leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInit {
    /// This broker.
    pub local: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// The full assignment, this broker included.
    pub replicas: Vec<NodeId>,
    /// The committed ISR from the metadata image, this broker included.
    pub isr: Vec<NodeId>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// The local recovery point: everything below it is fsynced.
    pub durable_offset: Offset,
    /// The high watermark the local log had as a follower (KIP-207: the new leader starts there).
    pub high_watermark: Offset,
}

/// Kafka's `ReplicaState` for one follower, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's fetch offset; `None` until it fetches in this leadership.
    pub log_end_offset: Option<Offset>,
    /// The offset below which the follower reports its log fsynced.
    pub durable_offset: Option<Offset>,
    /// The last time the follower's replicated offset reached the leader's log end offset.
    pub last_caught_up_time: TimestampMs,
    /// The last time the follower fetched.
    pub last_fetch_time: TimestampMs,
    /// The leader's log end offset at the follower's last fetch.
    pub last_fetch_leader_log_end_offset: Offset,
}

/// The ISR as the leader sees it: committed, or with one change proposed to the controller
/// (Kafka's `CommittedPartitionState` / `PendingExpandIsr` / `PendingShrinkIsr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrState {
    Committed {
        isr: Vec<NodeId>,
    },
    PendingExpand {
        isr: Vec<NodeId>,
        adding: NodeId,
    },
    PendingShrink {
        isr: Vec<NodeId>,
        removing: Vec<NodeId>,
    },
}

impl IsrState {
    /// The last ISR the controller committed.
    pub fn isr(&self) -> &[NodeId] {
        match self {
            IsrState::Committed { isr }
            | IsrState::PendingExpand { isr, .. }
            | IsrState::PendingShrink { isr, .. } => isr,
        }
    }

    /// The largest ISR that may be in effect: the committed one plus a replica being added. While
    /// a shrink is in flight, the removed replicas still count. The high watermark uses this set.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut isr = self.isr().to_vec();
        if let IsrState::PendingExpand { adding, .. } = self
            && !isr.contains(adding)
        {
            isr.push(*adding);
        }
        isr
    }

    /// The ISR the in-flight proposal asks for; `None` when nothing is in flight.
    pub fn proposed_isr(&self) -> Option<Vec<NodeId>> {
        match self {
            IsrState::Committed { .. } => None,
            IsrState::PendingExpand { .. } => Some(self.maximal_isr()),
            IsrState::PendingShrink { isr, removing } => Some(
                isr.iter()
                    .copied()
                    .filter(|replica| !removing.contains(replica))
                    .collect(),
            ),
        }
    }

    /// Whether `replica` is in the maximal ISR (without building it: the high-watermark path).
    pub fn in_maximal_isr(&self, replica: NodeId) -> bool {
        self.isr().contains(&replica)
            || matches!(self, IsrState::PendingExpand { adding, .. } if *adding == replica)
    }

    /// Whether an AlterPartition is in flight.
    pub fn is_in_flight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }
}

/// An ISR change to send to the controller as AlterPartition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the change is based on; the controller rejects a stale one.
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<NodeId>,
}

/// A follower's Fetch for this partition (`replica_id` set in the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: NodeId,
    pub fetch_offset: Offset,
    /// The offset below which the follower has fsynced its log; `None` means everything below
    /// `fetch_offset` (the follower fsyncs before it fetches).
    pub durable_offset: Option<Offset>,
    /// The request's `current_leader_epoch`; `None` (−1 on the wire) skips the check.
    pub current_leader_epoch: Option<LeaderEpoch>,
    /// The request's `last_fetched_epoch` (Fetch v12+); `None` skips the divergence check.
    pub last_fetched_epoch: Option<LeaderEpoch>,
}

/// What the server reads for a follower's Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchRead {
    /// Serve records from this offset (up to the log end offset and the fetch's byte limits).
    Records { start_offset: Offset },
    /// No records: the follower's log diverges; answer with this `diverging_epoch` (KIP-320).
    Diverging(EpochEndOffset),
}

/// The decision for one follower Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerFetchOutcome {
    pub read: FetchRead,
    /// The high watermark to put in the response.
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// `Some(new)` when this fetch advanced the high watermark: complete ready waits, wake
    /// consumers' long polls.
    pub high_watermark_advanced: Option<Offset>,
    /// An ISR expansion to send to the controller.
    pub isr_proposal: Option<IsrProposal>,
}

/// The server's handle for one `acks=all` produce waiting on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProduceWaitId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProduceWait {
    min_insync_replicas: usize,
    deadline: TimestampMs,
}

/// The leader's replication state for one partition at one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    config: LeaderConfig,
    local: NodeId,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    replicas: Vec<NodeId>,
    isr: IsrState,
    followers: BTreeMap<NodeId, FollowerProgress>,
    log_start_offset: Offset,
    log_end_offset: Offset,
    durable_offset: Offset,
    high_watermark: Offset,
    leader_epoch_start_offset: Offset,
    waits: BTreeMap<(Offset, ProduceWaitId), ProduceWait>,
    /// Replicas that may not join the ISR (KIP-841: fenced or shutting down brokers).
    ineligible: Vec<NodeId>,
}

impl LeaderState {
    /// This node becomes leader (Kafka's `makeLeader`): every follower's progress is unknown until
    /// it fetches in this epoch; ISR members count as caught up as of `now`, so none is shrunk
    /// before it had `replica.lag.time.max.ms` to fetch.
    pub fn new(init: LeaderInit, config: LeaderConfig, now: TimestampMs) -> LeaderState {
        let LeaderInit {
            local,
            leader_epoch,
            partition_epoch,
            mut replicas,
            mut isr,
            log_start_offset,
            log_end_offset,
            durable_offset,
            high_watermark,
        } = init;
        if !replicas.contains(&local) {
            replicas.push(local);
        }
        if !isr.contains(&local) {
            isr.push(local);
        }
        let followers = replicas
            .iter()
            .filter(|replica| **replica != local)
            .map(|replica| {
                let caught_up = if isr.contains(replica) {
                    now
                } else {
                    TimestampMs(0)
                };
                (
                    *replica,
                    FollowerProgress {
                        log_end_offset: None,
                        durable_offset: None,
                        last_caught_up_time: caught_up,
                        last_fetch_time: now,
                        last_fetch_leader_log_end_offset: log_end_offset,
                    },
                )
            })
            .collect();
        let durable_offset = durable_offset.min(log_end_offset);
        LeaderState {
            config,
            local,
            leader_epoch,
            partition_epoch,
            replicas,
            isr: IsrState::Committed { isr },
            followers,
            log_start_offset,
            log_end_offset,
            durable_offset,
            high_watermark: high_watermark.clamp(log_start_offset, log_end_offset),
            leader_epoch_start_offset: log_end_offset,
            waits: BTreeMap::new(),
            ineligible: Vec::new(),
        }
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    pub fn isr_state(&self) -> &IsrState {
        &self.isr
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[NodeId] {
        self.isr.isr()
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    /// The log end offset when this leadership began (the start of this epoch's records).
    pub fn leader_epoch_start_offset(&self) -> Offset {
        self.leader_epoch_start_offset
    }

    /// KIP-207: until the high watermark reaches the start of this epoch, ListOffsets for the
    /// latest offset answers OFFSET_NOT_AVAILABLE instead of an offset that may move backwards.
    pub fn high_watermark_reached_epoch_start(&self) -> bool {
        self.high_watermark >= self.leader_epoch_start_offset
    }

    /// ListOffsets for the latest offset from a client: the high watermark, or (KIP-207)
    /// OFFSET_NOT_AVAILABLE while it is below the start of this epoch, so that a client never sees
    /// the latest offset go backwards across a leader change.
    pub fn latest_offset_for_client(&self) -> Result<Offset, ErrorCode> {
        if self.high_watermark_reached_epoch_start() {
            Ok(self.high_watermark)
        } else {
            Err(ErrorCode::OffsetNotAvailable)
        }
    }

    pub fn follower(&self, replica: NodeId) -> Option<&FollowerProgress> {
        self.followers.get(&replica)
    }

    /// How many `acks=all` produces wait.
    pub fn waiting_count(&self) -> usize {
        self.waits.len()
    }

    /// The offset this replica contributes to the high watermark.
    fn local_replicated_offset(&self) -> Offset {
        if self.config.acks_all_fsync {
            self.durable_offset
        } else {
            self.log_end_offset
        }
    }

    fn follower_replicated_offset(&self, progress: &FollowerProgress) -> Option<Offset> {
        let log_end_offset = progress.log_end_offset?;
        if self.config.acks_all_fsync {
            Some(
                progress
                    .durable_offset
                    .unwrap_or(log_end_offset)
                    .min(log_end_offset),
            )
        } else {
            Some(log_end_offset)
        }
    }

    /// Kafka's `Replica.isCaughtUp`.
    fn is_caught_up(&self, progress: &FollowerProgress, now: TimestampMs) -> bool {
        self.follower_replicated_offset(progress) == Some(self.log_end_offset)
            || now.value() - progress.last_caught_up_time.value()
                <= self.config.replica_lag_time_max_ms
    }

    /// Validate `current_leader_epoch` from a request against this leadership (Kafka's
    /// `checkCurrentLeaderEpoch`): older is FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH.
    pub fn check_leader_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), ErrorCode> {
        match requested {
            None => Ok(()),
            Some(epoch) if epoch == LeaderEpoch::UNKNOWN => Ok(()),
            Some(epoch) if epoch < self.leader_epoch => Err(ErrorCode::FencedLeaderEpoch),
            Some(epoch) if epoch > self.leader_epoch => Err(ErrorCode::UnknownLeaderEpoch),
            Some(_) => Ok(()),
        }
    }

    /// An OffsetForLeaderEpoch for this partition (Kafka's `lastOffsetForLeaderEpoch` on the
    /// leader): the epoch check, then the local leader-epoch cache answer, or the undefined answer
    /// (−1, −1) when the cache has none.
    pub fn on_offset_for_leader_epoch(
        &self,
        current_leader_epoch: Option<LeaderEpoch>,
        leader_epoch: LeaderEpoch,
        end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
    ) -> Result<EpochEndOffset, ErrorCode> {
        self.check_leader_epoch(current_leader_epoch)?;
        Ok(match end_offset_for_epoch(leader_epoch) {
            Some((leader_epoch, end_offset)) => EpochEndOffset {
                leader_epoch,
                end_offset,
            },
            None => EpochEndOffset {
                leader_epoch: LeaderEpoch::UNKNOWN,
                end_offset: Offset(-1),
            },
        })
    }

    /// A follower fetched (Kafka's `fetchRecords`, `updateFollowerFetchState`, `maybeExpandIsr`
    /// and `maybeIncrementLeaderHW`). `end_offset_for_epoch` is the local leader-epoch cache
    /// lookup: the largest epoch ≤ the given one and its end offset.
    pub fn on_follower_fetch(
        &mut self,
        fetch: FollowerFetch,
        end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
        now: TimestampMs,
    ) -> Result<FollowerFetchOutcome, ErrorCode> {
        self.check_leader_epoch(fetch.current_leader_epoch)?;
        if !self.followers.contains_key(&fetch.replica) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if let Some(last_fetched_epoch) = fetch.last_fetched_epoch
            && last_fetched_epoch != LeaderEpoch::UNKNOWN
        {
            let Some((epoch, end_offset)) = end_offset_for_epoch(last_fetched_epoch) else {
                return Err(ErrorCode::OffsetOutOfRange);
            };
            if fetch.fetch_offset < self.log_start_offset {
                return Err(ErrorCode::OffsetOutOfRange);
            }
            if epoch < last_fetched_epoch || end_offset < fetch.fetch_offset {
                return Ok(FollowerFetchOutcome {
                    read: FetchRead::Diverging(EpochEndOffset {
                        leader_epoch: epoch,
                        end_offset,
                    }),
                    high_watermark: self.high_watermark,
                    log_start_offset: self.log_start_offset,
                    high_watermark_advanced: None,
                    isr_proposal: None,
                });
            }
        }
        if fetch.fetch_offset < self.log_start_offset || fetch.fetch_offset > self.log_end_offset {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        self.update_follower_progress(fetch, now);
        let isr_proposal = self.maybe_expand_isr(fetch.replica);
        let high_watermark_advanced = self.maybe_increment_high_watermark(now);
        Ok(FollowerFetchOutcome {
            read: FetchRead::Records {
                start_offset: fetch.fetch_offset,
            },
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            high_watermark_advanced,
            isr_proposal,
        })
    }

    /// Kafka's `Replica.updateFetchStateOrThrow`, on the replicated (durable) offset.
    fn update_follower_progress(&mut self, fetch: FollowerFetch, now: TimestampMs) {
        let leader_log_end_offset = self.log_end_offset;
        let acks_all_fsync = self.config.acks_all_fsync;
        let Some(progress) = self.followers.get_mut(&fetch.replica) else {
            return;
        };
        progress.log_end_offset = Some(fetch.fetch_offset);
        progress.durable_offset = fetch
            .durable_offset
            .map(|durable| durable.min(fetch.fetch_offset));
        let replicated = if acks_all_fsync {
            progress.durable_offset.unwrap_or(fetch.fetch_offset)
        } else {
            fetch.fetch_offset
        };
        if replicated >= leader_log_end_offset {
            progress.last_caught_up_time = progress.last_caught_up_time.max(now);
        } else if replicated >= progress.last_fetch_leader_log_end_offset {
            progress.last_caught_up_time =
                progress.last_caught_up_time.max(progress.last_fetch_time);
        }
        progress.last_fetch_leader_log_end_offset = leader_log_end_offset;
        progress.last_fetch_time = now;
    }

    /// Kafka's `isFollowerInSync`: caught up to the high watermark and into this epoch.
    fn is_follower_in_sync(&self, replica: NodeId) -> bool {
        self.followers
            .get(&replica)
            .and_then(|progress| self.follower_replicated_offset(progress))
            .is_some_and(|replicated| {
                replicated >= self.high_watermark && replicated >= self.leader_epoch_start_offset
            })
    }

    fn maybe_expand_isr(&mut self, replica: NodeId) -> Option<IsrProposal> {
        if self.isr.is_in_flight()
            || self.isr.isr().contains(&replica)
            || self.ineligible.contains(&replica)
            || !self.is_follower_in_sync(replica)
        {
            return None;
        }
        let isr = self.isr.isr().to_vec();
        let mut new_isr = isr.clone();
        new_isr.push(replica);
        self.isr = IsrState::PendingExpand {
            isr,
            adding: replica,
        };
        Some(IsrProposal {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        })
    }

    /// Kafka's `maybeShrinkIsr`: the ISR followers not caught up to the log end offset within
    /// `replica.lag.time.max.ms` are proposed for removal. `None` while another change is in
    /// flight or when every member keeps up.
    pub fn maybe_shrink_isr(&mut self, now: TimestampMs) -> Option<IsrProposal> {
        if self.isr.is_in_flight() {
            return None;
        }
        let isr = self.isr.isr().to_vec();
        let removing: Vec<NodeId> = isr
            .iter()
            .copied()
            .filter(|replica| *replica != self.local)
            .filter(|replica| {
                self.followers
                    .get(replica)
                    .is_none_or(|progress| !self.is_caught_up(progress, now))
            })
            .collect();
        if removing.is_empty() {
            return None;
        }
        let new_isr = isr
            .iter()
            .copied()
            .filter(|replica| !removing.contains(replica))
            .collect();
        self.isr = IsrState::PendingShrink { isr, removing };
        Some(IsrProposal {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        })
    }

    /// The controller committed an ISR for this partition at `partition_epoch` (the
    /// AlterPartition response, or a metadata image update at the same leader epoch). A stale
    /// partition epoch (not newer than the current one) is ignored (`None`). Returns the high-watermark advance, if any.
    pub fn on_isr_committed(
        &mut self,
        new_isr: Vec<NodeId>,
        partition_epoch: PartitionEpoch,
        now: TimestampMs,
    ) -> Option<Offset> {
        if partition_epoch <= self.partition_epoch {
            return None;
        }
        let mut isr = new_isr;
        if !isr.contains(&self.local) {
            isr.push(self.local);
        }
        self.partition_epoch = partition_epoch;
        self.isr = IsrState::Committed { isr };
        self.maybe_increment_high_watermark(now)
    }

    /// The metadata image changed the partition at this leader epoch with a newer partition epoch:
    /// a new replica set (reassignment) and ISR. New replicas start with unknown progress, removed
    /// ones are forgotten. Older or equal partition epochs are ignored (`None`). Returns the
    /// high-watermark advance, if any.
    pub fn on_partition_change(
        &mut self,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        partition_epoch: PartitionEpoch,
        now: TimestampMs,
    ) -> Option<Offset> {
        if partition_epoch <= self.partition_epoch {
            return None;
        }
        let mut replicas = replicas;
        if !replicas.contains(&self.local) {
            replicas.push(self.local);
        }
        self.followers
            .retain(|replica, _| replicas.contains(replica));
        for replica in &replicas {
            if *replica != self.local && !self.followers.contains_key(replica) {
                self.followers.insert(
                    *replica,
                    FollowerProgress {
                        log_end_offset: None,
                        durable_offset: None,
                        last_caught_up_time: TimestampMs(0),
                        last_fetch_time: now,
                        last_fetch_leader_log_end_offset: self.log_end_offset,
                    },
                );
            }
        }
        self.replicas = replicas;
        let isr = isr
            .into_iter()
            .filter(|replica| self.replicas.contains(replica))
            .collect();
        self.on_isr_committed(isr, partition_epoch, now)
    }

    /// KIP-841: the replicas whose brokers are fenced or shutting down in the metadata image. They
    /// are not proposed for the ISR and do not hold the high watermark as "about to join".
    pub fn set_ineligible_replicas(&mut self, ineligible: Vec<NodeId>) {
        self.ineligible = ineligible;
    }

    /// The controller rejected `proposal`. If it is still the one in flight (Kafka ignores answers
    /// to proposals that are no longer pending), go back to the last committed ISR; the next fetch
    /// or shrink check may propose again. Returns whether the state changed.
    pub fn on_isr_rejected(&mut self, proposal: &IsrProposal) -> bool {
        let pending = proposal.leader_epoch == self.leader_epoch
            && proposal.partition_epoch == self.partition_epoch
            && self.isr.proposed_isr().as_ref() == Some(&proposal.new_isr);
        if pending {
            let isr = self.isr.isr().to_vec();
            self.isr = IsrState::Committed { isr };
        }
        pending
    }

    /// The local log appended up to `log_end_offset` (exclusive).
    pub fn on_append(&mut self, log_end_offset: Offset, now: TimestampMs) -> Option<Offset> {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        self.maybe_increment_high_watermark(now)
    }

    /// The local log fsynced everything below `durable_offset` (the recovery point).
    pub fn on_local_flush(&mut self, durable_offset: Offset, now: TimestampMs) -> Option<Offset> {
        self.durable_offset = self
            .durable_offset
            .max(durable_offset.min(self.log_end_offset));
        self.maybe_increment_high_watermark(now)
    }

    /// The local log start offset moved (retention, DeleteRecords).
    pub fn on_log_start_offset(&mut self, log_start_offset: Offset) {
        self.log_start_offset = self.log_start_offset.max(log_start_offset);
    }

    /// `min.insync.replicas` capped by the replica count (Kafka's `effectiveMinIsr`).
    fn effective_min_insync_replicas(&self, min_insync_replicas: usize) -> usize {
        min_insync_replicas.min(self.replicas.len())
    }

    /// Kafka's `isUnderMinIsr`: the committed ISR is smaller than `min.insync.replicas`.
    pub fn is_under_min_isr(&self) -> bool {
        self.isr.isr().len() < self.effective_min_insync_replicas(self.config.min_insync_replicas)
    }

    /// The topic's configuration changed (`min.insync.replicas`, `replica.lag.time.max.ms`).
    /// Returns the high-watermark advance, if any.
    pub fn on_config_change(&mut self, config: LeaderConfig, now: TimestampMs) -> Option<Offset> {
        self.config = config;
        self.maybe_increment_high_watermark(now)
    }

    /// Kafka's `maybeIncrementLeaderHW`: the minimum replicated offset over the maximal ISR (and
    /// over followers caught up and about to join it), capped by the leader's own contribution;
    /// no advance while the ISR is under `min.insync.replicas`.
    fn maybe_increment_high_watermark(&mut self, now: TimestampMs) -> Option<Offset> {
        if self.is_under_min_isr() {
            return None;
        }
        let mut candidate = self.local_replicated_offset();
        for (replica, progress) in &self.followers {
            let in_maximal_isr = self.isr.in_maximal_isr(*replica);
            let joining = !in_maximal_isr
                && !self.ineligible.contains(replica)
                && progress.log_end_offset.is_some()
                && self.is_caught_up(progress, now);
            if !(in_maximal_isr || joining) {
                continue;
            }
            match self.follower_replicated_offset(progress) {
                Some(replicated) => candidate = candidate.min(replicated),
                None => candidate = candidate.min(self.high_watermark),
            }
        }
        let candidate = candidate.min(self.log_end_offset);
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }

    /// Kafka's append-time check for `acks=all`: the committed ISR must have at least
    /// `min.insync.replicas` members (capped by the replica count), else NOT_ENOUGH_REPLICAS and
    /// nothing is appended.
    pub fn can_append_acks_all(&self, min_insync_replicas: usize) -> Result<(), ErrorCode> {
        if self.isr.isr().len() < self.effective_min_insync_replicas(min_insync_replicas) {
            Err(ErrorCode::NotEnoughReplicas)
        } else {
            Ok(())
        }
    }

    /// An `acks=all` produce appended up to `last_offset` (inclusive) waits for the high
    /// watermark to pass it, until `deadline`. Call [`LeaderState::ready_waits`] afterwards: the
    /// wait may already be satisfied.
    pub fn register_produce_wait(
        &mut self,
        id: ProduceWaitId,
        last_offset: Offset,
        min_insync_replicas: usize,
        deadline: TimestampMs,
    ) {
        self.waits.insert(
            (last_offset, id),
            ProduceWait {
                min_insync_replicas,
                deadline,
            },
        );
    }

    /// Kafka's `checkEnoughReplicasReachOffset` over every wait: those whose last offset is below
    /// the high watermark are removed and answered — `Ok` when the maximal ISR still has the
    /// wait's `min.insync.replicas` members, NOT_ENOUGH_REPLICAS_AFTER_APPEND when it has fewer
    /// (possible only when the wait asked for more than the topic's current setting: below that
    /// setting the high watermark does not advance at all, and the wait expires).
    pub fn ready_waits(&mut self) -> Vec<(ProduceWaitId, Result<(), ErrorCode>)> {
        let maximal_isr_len = self.isr.maximal_isr().len();
        let replicas_len = self.replicas.len();
        let mut ready = Vec::new();
        while let Some(entry) = self.waits.first_entry() {
            let (last_offset, id) = *entry.key();
            if last_offset >= self.high_watermark {
                break;
            }
            let wait = entry.remove();
            let outcome = if maximal_isr_len >= wait.min_insync_replicas.min(replicas_len) {
                Ok(())
            } else {
                Err(ErrorCode::NotEnoughReplicasAfterAppend)
            };
            ready.push((id, outcome));
        }
        ready
    }

    /// Waits whose deadline passed: removed; the server answers REQUEST_TIMED_OUT.
    pub fn expired_waits(&mut self, now: TimestampMs) -> Vec<(ProduceWaitId, ErrorCode)> {
        let expired: Vec<(Offset, ProduceWaitId)> = self
            .waits
            .iter()
            .filter(|(_, wait)| wait.deadline <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in &expired {
            self.waits.remove(key);
        }
        expired
            .into_iter()
            .map(|(_, id)| (id, ErrorCode::RequestTimedOut))
            .collect()
    }

    /// This node stops leading (a newer leader epoch, or the partition moved): every wait fails
    /// with NOT_LEADER_OR_FOLLOWER; none can be acknowledged by this leadership any more.
    pub fn resign(self) -> Vec<(ProduceWaitId, ErrorCode)> {
        self.waits
            .into_keys()
            .map(|(_, id)| (id, ErrorCode::NotLeaderOrFollower))
            .collect()
    }
}
