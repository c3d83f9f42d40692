//! # caudal-client
//!
//! A small async Kafka client on `caudal-protocol`, used by the `caudal` CLI (topic admin, console
//! producer and consumer, benchmarks) and by end-to-end tests.
//!
//! - [`connection`]: one TCP connection to one broker — framing, correlation ids, pipelining
//!   (several requests in flight, responses matched in order), request timeouts, and ApiVersions
//!   negotiation on connect ([`versions`] holds the versions this client speaks).
//! - [`client`]: [`Client`] — bootstrap, the metadata cache ([`cluster`]), one connection per
//!   broker, routing of produce / fetch / list-offsets to partition leaders with bounded metadata
//!   refreshes on `NOT_LEADER_OR_FOLLOWER` and friends.
//! - [`admin`]: create / delete topics, add partitions, describe configs (with synonyms) and alter
//!   them (IncrementalAlterConfigs), delete records below an offset (DeleteRecords), InitProducerId.
//! - [`groups`]: consumer-group admin — find a group's coordinator (with retries on coordinator
//!   errors), list / describe / delete groups, decode consumer assignments, fetch committed
//!   offsets and commit new ones with an admin ("simple") commit.
//! - [`records`]: building v2 record batches (all five codecs) and decoding fetched ones, with a
//!   bound on decompressed size.
//! - [`partitioner`]: Kafka's default partitioner (murmur2 of the key, positive modulo).
//! - [`producer`]: [`Producer`] — per-partition batching by `linger` and `batch_bytes`, `acks`,
//!   compression, optional idempotence, retries within a delivery timeout.
//! - [`consumer`]: [`Consumer`] — assigned partitions from earliest / latest / an offset / a
//!   timestamp, long-poll fetches to every leader at once.
//! - [`error`]: [`ClientError`], which carries Kafka error codes by name.
//!
//! Invariants: bytes from the network never cause a panic; every queue, frame and decompressed
//! batch has a bound. The client knows nothing of the broker's internals: it speaks only the wire
//! protocol, so it works against any Kafka-compatible broker.

pub mod admin;
pub mod client;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod groups;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod versions;

#[cfg(test)]
mod testing;

pub use client::{Acks, Client, ClientConfig, OffsetSpec};
pub use cluster::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{Consumer, ConsumerConfig, StartOffset};
pub use error::{ClientError, KafkaError, error_name};
pub use producer::{Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use records::{Compression, ConsumerRecord};
