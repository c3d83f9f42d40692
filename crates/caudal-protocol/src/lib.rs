//! # caudal-protocol
//!
//! The Kafka wire protocol as Caudal speaks it, on top of the `kafka-protocol` message codecs:
//!
//! - [`frame`]: the 4-byte size-prefixed framing, with a maximum frame size checked before any
//!   allocation (`socket.request.max.bytes`).
//! - [`request`]: decoding a frame into its request header and typed body, with errors that keep
//!   the correlation id so the broker can answer instead of hanging up.
//! - [`records`]: bounded decoding of record batches from untrusted bytes (the client's fetches,
//!   the broker's timestamp lookups).
//! - [`response`]: encoding a typed response with the version-specific response header; encoding
//!   requests and decoding responses for our own client.
//! - [`alloc_guard`]: the global allocator that keeps hostile array counts (which the codec
//!   pre-allocates from) from aborting the process; installed by every binary that decodes
//!   network bytes.
//! - [`api`]: the supported-API table type and the ApiVersions response built from it (KIP-511
//!   fallback included).
//! - [`error_response`]: Kafka's "error response" for every API: the response a request gets when
//!   it fails as a whole (e.g. `UNSUPPORTED_VERSION`), with the error set on every entity the request
//!   named.
//!
//! Invariants: never panics on bytes from the network (and, with the allocation guard installed,
//! never aborts on them); knows nothing of storage, sockets or tokio
//! tasks (the codec is a plain `tokio_util` codec value). Re-exports `kafka_protocol` so the rest of
//! the workspace uses exactly one version of it.

pub mod alloc_guard;
pub mod api;
pub mod error_response;
pub mod frame;
pub mod records;
pub mod request;
pub mod response;

pub use kafka_protocol;
/// Kafka's error codes, by name.
pub use kafka_protocol::ResponseError as ErrorCode;
pub use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
