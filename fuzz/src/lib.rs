//! Support for the fuzz targets in `fuzz_targets/`.
//!
//! [`HugeAllocationGuard`] (feature `huge-alloc-guard`) serves allocations of at least
//! [`HUGE_ALLOCATION_BYTES`] from anonymous `MAP_NORESERVE` mappings: address space only, no
//! memory until touched. `kafka-protocol` 0.18 reserves `Vec::with_capacity(count)` from array
//! counts read off the wire; without the guard a frame claiming 2^31 elements makes the allocator
//! fail and the process abort, which is the first thing the fuzzer finds. The broker binary runs
//! with the same kind of guard, so fuzzing with it explores what the broker would actually do.

#[cfg(feature = "huge-alloc-guard")]
pub use guard::{HUGE_ALLOCATION_BYTES, HugeAllocationGuard};

#[cfg(feature = "huge-alloc-guard")]
mod guard {
    use std::alloc::{GlobalAlloc, Layout, System};

    /// Allocations at or above this size are mapped, not allocated.
    pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
    const PAGE_BYTES: usize = 4096;

    pub struct HugeAllocationGuard;

    fn is_huge(layout: &Layout) -> bool {
        layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
    }

    // SAFETY: huge blocks come from fresh private anonymous mappings of exactly `layout.size()`
    // bytes (page aligned, zero filled) and go back with `munmap` of the same length; everything
    // else is delegated to the system allocator unchanged.
    unsafe impl GlobalAlloc for HugeAllocationGuard {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if is_huge(&layout) {
                map(layout.size())
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc(layout) }
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if is_huge(&layout) {
                map(layout.size())
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc_zeroed(layout) }
            }
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            if is_huge(&layout) {
                // SAFETY: `pointer` came from `map(layout.size())`.
                unsafe { libc::munmap(pointer.cast(), layout.size()) };
            } else {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.dealloc(pointer, layout) }
            }
        }
    }

    fn map(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping without an address hint has no preconditions.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if pointer == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            pointer.cast()
        }
    }
}
