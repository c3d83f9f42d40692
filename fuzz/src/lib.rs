//! Support for the fuzz targets in `fuzz_targets/`.
//!
//! With the feature `huge-alloc-guard`, `request_decode` installs
//! `caudal_protocol::alloc_guard::GuardedAllocator`, the allocator the broker binary runs with.
//! `kafka-protocol` 0.18 reserves `Vec::with_capacity(count)` from array counts read off the wire;
//! without the guard a frame claiming 2^31 elements makes the allocator fail and the process
//! abort, which is the first thing the fuzzer finds. With it, fuzzing explores what the broker
//! would actually do.
