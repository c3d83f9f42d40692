//! # caudal-controller
//!
//! The metadata controller: it decides what the cluster's metadata becomes (topics, partitions and
//! their leaders, configs, producer-id blocks) and makes those decisions durable as records.
//!
//! - [`decisions`]: the state machine. Each operation takes the current `MetadataImage` and a
//!   request and returns the records to append plus the result for the caller; no I/O, unit-tested
//!   without files or sockets (STYLE habit 2).
//! - [`replication`]: partition-level decisions (AlterPartition, ElectLeaders, KIP-455
//!   reassignments), pure like `decisions`.
//! - [`command`]: every broker write as a serializable [`Command`] with its [`CommandReply`];
//!   `Command::decide` runs the pure decisions, so a command can be forwarded to the leader.
//! - [`log`]: the metadata log file: CRC-framed records, fsynced on append, replayed at startup with
//!   a torn tail truncated.
//! - [`controller`]: the single-node runtime: serialises writes, appends the records, applies them
//!   and publishes the new image to subscribers (the broker).
//! - [`quorum`]: the Raft metadata quorum (openraft): the replicated log store, the image state
//!   machine with snapshots, the controller-to-controller network, broker leases and fencing, and
//!   the `Quorum` facade the server submits commands through (see `docs/quorum.md`).
//!
//! Invariants: an image is published only after its records are durable; records are applied in
//! log order and replay reproduces the same image. With the Raft quorum (openraft) the `log` module
//! becomes the Raft log store and `controller` the leader's write path; `decisions` stays as is.

pub mod command;
pub mod controller;
pub mod decisions;
pub mod log;
pub mod quorum;
pub mod replication;

pub use command::{Command, CommandError, CommandReply};
pub use controller::Controller;
pub use decisions::{ControllerError, NewTopic, TopicDefaults};
