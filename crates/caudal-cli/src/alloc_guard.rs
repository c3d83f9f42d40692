//! The broker's global allocator; see `caudal_server::alloc_guard`.

pub use caudal_server::alloc_guard::GuardedAllocator;
