//! # caudal-coordinator
//!
//! Kafka's classic consumer-group coordinator as an I/O-free state machine.
//! [`GroupCoordinatorShard`] owns the groups and committed offsets of one `__consumer_offsets`
//! partition. Every operation takes plain request data and `now`, applies its decision in memory
//! and returns a [`CoordinatorResult`]: the [`Record`]s to append to the partition and the
//! [`Effect`]s (responses, possibly for earlier parked JoinGroup/SyncGroup requests; timers to
//! schedule or cancel) the runtime carries out once those records are durable. Timers come back
//! through [`GroupCoordinatorShard::on_timer`]; state is rebuilt at load time with
//! [`GroupCoordinatorShard::replay`]. `docs/coordinator.md` describes the state machine and the
//! runtime's contract.
//!
//! Modules:
//! - [`shard`]: the coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//!   OffsetFetch, OffsetDelete, DescribeGroups, ListGroups, DeleteGroups, offset expiry, timers,
//!   replay).
//! - [`group`]: a group's state ([`GroupState`]), members, protocol selection.
//! - [`api`]: request and response structs, [`Effect`], [`TimerKey`], [`CoordinatorConfig`].
//! - [`records`]: the `__consumer_offsets` key/value binary formats, byte-compatible with Kafka.
//! - [`partition`]: [`partition_for_group`], Kafka's group → partition mapping.
//! - [`error`]: [`ErrorCode`], the Kafka error codes the coordinator answers with.
//!
//! Invariants: no I/O, no clock reads (time arrives as `now`), no randomness except the member-id
//! seed passed in; no dependency on the wire codec or on other Caudal crates except
//! `caudal-model`. Record decoding never panics on any bytes. Every parked request receives
//! exactly one response while the shard lives ([`GroupCoordinatorShard::unload`] answers the rest).

pub mod api;
pub mod error;
pub mod group;
pub mod partition;
pub mod records;
pub mod shard;

#[cfg(test)]
mod tests;

pub use api::*;
pub use error::ErrorCode;
pub use group::GroupState;
pub use partition::partition_for_group;
pub use records::{
    GroupMetadataKey, GroupMetadataValue, MemberMetadata, OffsetCommitKey, OffsetCommitValue,
    Record, RecordError,
};
pub use shard::GroupCoordinatorShard;
