//! # caudal-replica
//!
//! Kafka's ISR replication for one partition, as I/O-free state machines (DESIGN §3, §6; STYLE
//! habit 2). The server drives them: its Fetch and Produce handlers call the leader's side, its
//! follower fetcher task calls the follower's side, and it carries out what they return (read,
//! append, truncate, fsync, send AlterPartition, answer produce requests). Time arrives as
//! `now: TimestampMs`; nothing here opens a socket or a file or reads a clock.
//!
//! Modules:
//! - [`leader`]: [`LeaderState`] — each follower's progress (Kafka's `ReplicaState`), the high
//!   watermark, ISR expand/shrink proposals with their pending states, diverging-epoch answers
//!   (KIP-320), epoch fencing, and the `acks=all` waits (Kafka's `DelayedProduce`).
//! - [`follower`]: [`FollowerState`] — the next request to the leader (Fetch or
//!   OffsetForLeaderEpoch) and what to do with its answer: truncate (KIP-101/279/320), append,
//!   adopt the high watermark, discard stale responses.
//! - [`error`]: the Kafka error codes these decisions answer with.
//!
//! Critical invariants (see `docs/replica.md`):
//! - The leader's high watermark never decreases and never passes its log end offset.
//! - The high watermark counts only what every member of the maximal ISR has replicated — with
//!   `caudal.acks.all.fsync` on, what they have fsynced (followers' reported durable offsets, the
//!   leader's recovery point) — so every offset below it survives the crash of any ISR member.
//! - An ISR change is only a proposal until the controller commits it; while it is in flight the
//!   high watermark uses the larger ("maximal") ISR.
//! - A request from an older leader epoch is fenced (FENCED_LEADER_EPOCH); a response to a request
//!   from an older leadership or position is discarded by the follower.
//! - An `acks=all` wait succeeds only through the high watermark of the leadership it was
//!   registered with; a resigned leadership fails all of its waits.
//!
//! This crate depends only on `caudal-model`: never on the wire codec, storage or the runtime.

pub mod error;
pub mod follower;
pub mod leader;

use caudal_model::{LeaderEpoch, Offset};

pub use error::ErrorCode;
pub use follower::{
    EpochRequest, EpochResponse, FetchRequest, FetchResponse, FollowerAction, FollowerError,
    FollowerPhase, FollowerState, FollowerStep, LocalLog, RecordsRange,
};
pub use leader::{
    FetchRead, FollowerFetch, FollowerFetchOutcome, FollowerProgress, IsrProposal, IsrState,
    LeaderConfig, LeaderInit, LeaderState, ProduceWaitId,
};

/// The version of a partition's replica set and ISR in the metadata log (AlterPartition's
/// `partition_epoch`); the controller bumps it on every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionEpoch(pub i32);

impl PartitionEpoch {
    /// The raw value, as it travels on the wire.
    pub const fn value(self) -> i32 {
        self.0
    }
}

/// An epoch and its end offset: a leader-epoch cache answer, and the `diverging_epoch` of a Fetch
/// response (KIP-320).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub leader_epoch: LeaderEpoch,
    pub end_offset: Offset,
}
