//! A global allocator that keeps impossible allocation sizes from aborting a process that decodes
//! network bytes (the broker, the fuzz targets).
//!
//! The wire codec (`kafka-protocol` 0.18) pre-allocates `Vec::with_capacity(count)` from array counts
//! read off the wire, before decoding a single element. A 12-byte request claiming 2^31 topics asks
//! for ~150 GB; the system allocator refuses, and Rust aborts the process on allocation failure —
//! one hostile or corrupt frame would take the whole broker down.
//!
//! This allocator serves every request of at least [`HUGE_ALLOCATION_BYTES`] from an anonymous
//! `MAP_NORESERVE` mapping: address space only, no commit charge, pages materialise only when
//! touched. The codec then runs out of input after a few bytes, returns its decode error, and the
//! untouched mapping is unmapped when the vector drops. Smaller allocations go to the system
//! allocator unchanged. No legitimate allocation in Caudal comes near the threshold (frames are
//! bounded by `socket.request.max.bytes`, 100 MiB by default), and one that did would still be
//! correct memory. See `docs/decisions/0001-bounded-decode-allocations.md`; this module goes away
//! when the codec bounds its pre-allocation upstream.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are backed by reserve-free virtual memory.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;

/// The mmap path serves alignments up to the page size; larger ones go to the system allocator.
const MMAP_ALIGN_MAX: usize = 4096;

/// See the module documentation. Install with `#[global_allocator]` in a binary.
pub struct GuardedAllocator;

#[inline]
fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= MMAP_ALIGN_MAX
}

fn map_huge(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; failure is
    // reported as MAP_FAILED and turned into a null pointer (allocation failure).
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

// SAFETY: every pointer is released by the same path that produced it, decided by the layout, which
// callers must pass unchanged to `dealloc`/`realloc` (the `GlobalAlloc` contract). Mappings are
// page-aligned, which satisfies every alignment `is_huge` admits, and anonymous mappings are zeroed.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map_huge(layout.size())
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map_huge(layout.size())
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `pointer` came from `map_huge(layout.size())`.
            unsafe {
                libc::munmap(pointer.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded contract.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, release the old block through its own path.
        unsafe {
            let new_pointer = self.alloc(new_layout);
            if !new_pointer.is_null() {
                std::ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            new_pointer
        }
    }
}
