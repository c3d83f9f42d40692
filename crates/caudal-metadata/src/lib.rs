//! # caudal-metadata
//!
//! Cluster metadata as Caudal keeps it: a log of typed [`MetadataRecord`]s (brokers, topics with
//! ids, partitions with replicas/ISR/leader/leader epoch, configs, producer-id blocks), folded into
//! an immutable [`MetadataImage`] that every request handler reads. Today a single node appends the
//! records to a local file (see `caudal-controller`); with the Raft quorum the same records flow
//! through the replicated log, and nothing here changes.
//!
//! Modules:
//! - [`record`]: the records and their (versioned, CRC-framed) file encoding.
//! - [`config`]: Kafka config names, defaults, synonyms and validation.
//! - [`image`]: `MetadataImage` and how a record changes it.
//!
//! Invariants: pure — no I/O, no async, no network; applying the same records in the same order
//! always yields the same image. An image is never mutated after it is published: `apply` returns a
//! new one.

pub mod config;
pub mod image;
pub mod record;

pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use record::{ConfigResource, MetadataRecord, RecordDecodeError, decode_record, encode_record};
