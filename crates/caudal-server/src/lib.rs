//! # caudal-server
//!
//! The Kafka broker: a tokio listener, one task per connection with pipelined requests and
//! responses in request order, and one handler module per Kafka API.
//!
//! Modules:
//! - [`config`]: broker configuration by Kafka names, from defaults, file, environment and flags.
//! - [`broker`]: the broker's shared state (controller, log manager, hosted partitions), startup,
//!   the accept loop, background flush/checkpoint tasks, graceful shutdown.
//! - [`partition`]: a hosted partition: log, replication role (leader state or follower),
//!   high watermark, append notifications, durability and replication waits.
//! - [`replication`]: follower fetcher tasks, the periodic ISR check, ISR proposals to the
//!   controller (`docs/replica.md`).
//! - [`connection`]: the per-connection pipeline (DESIGN §4).
//! - [`handlers`]: one module per API with its version range; the table there is the single
//!   source of the ApiVersions response.
//! - [`errors`]: typed errors → Kafka error codes, one exhaustive `match` per error type.
//! - [`groups`]: the group coordinator runtime: one shard task per `__consumer_offsets` partition
//!   this broker leads (load, append-then-respond, timers, offset expiry).
//! - [`metadata`]: the metadata backend (the single-node controller today): images, writes,
//!   registration.
//! - [`lifecycle`]: the schedule of retention, `.deleted` file removal and the log cleaner threads.
//!
//! Invariants: only this crate knows there is a network. Nothing here panics on bytes from a
//! client: every frame is decoded into a `Result`, every length is bounded. A partition's appends
//! happen in arrival order per connection; responses leave in request order; `acks=0` gets none.

pub mod broker;
pub mod config;
pub mod connection;
pub mod errors;
pub mod groups;
pub mod handlers;
pub mod lifecycle;
pub mod metadata;
pub mod partition;
pub mod replication;

pub use broker::{Broker, BrokerHandle, start, start_with};
/// The allocation guard the broker binary installs (it lives with the codec it defends against).
pub use caudal_protocol::alloc_guard;
pub use config::{BrokerConfig, ConfigLayer};
pub use metadata::MetadataService;
