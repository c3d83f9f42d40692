//! The broker's global allocator; see `caudal_protocol::alloc_guard`.

pub use caudal_protocol::alloc_guard::GuardedAllocator;
