//! # caudal-model
//!
//! The vocabulary every other Caudal crate speaks: newtypes for each number that means something
//! (offsets, leader epochs, node ids, partition indexes, producer ids and epochs, sequences, file
//! positions) and [`batch::RecordBatchHeader`], a zero-copy view of the 61-byte header of a Kafka v2
//! record batch with its CRC-32C check.
//!
//! Modules:
//! - [`types`]: the newtypes, each with explicit conversions.
//! - [`batch`]: batch header parsing and validation, in-place stamping of base offset, leader epoch
//!   and (for `LogAppendTime`) max timestamp; iteration over a buffer holding several batches.
//!
//! Invariants: this crate is pure — no I/O, no async, no dependency on any other Caudal crate or on
//! the wire codec. Parsing never panics on any input; every length is checked before it is used.

pub mod batch;
pub mod types;

pub use batch::{BatchError, RecordBatchHeader};
pub use types::*;
