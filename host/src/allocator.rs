//! The process allocator: mimalloc, through its plain entry points for
//! ordinary alignments, and the same allocator offered to plugins.
//!
//! mimalloc instead of the system allocator: per-thread free lists make the
//! proxy's cross-thread frees (a body read on one worker, freed on another)
//! cheap, where glibc's malloc takes arena locks (docs/PERFORMANCE.md).
//!
//! The `mimalloc` crate's allocator calls `mi_malloc_aligned` for every
//! allocation; in mimalloc 3 that call over-allocates (a slower path, and
//! wasted bytes) for any size above 1 KiB whose size class is not a power of
//! two, even when the alignment asked is 8, which every mimalloc block has.
//! [`MiMalloc`] takes `mi_malloc` and friends for those.
//!
//! Plugins built with the SDK's `host-allocator` feature allocate through
//! [`HOST_ALLOCATOR`], which `main.rs` exports under the SDK's
//! `HOST_ALLOCATOR_SYMBOL`: one heap for the host and every plugin.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use ccproxy_plugin_abi::allocator::HostAllocator;
use libmimalloc_sys as mi;

/// Set by the executable that declares [`MiMalloc`] its global allocator
/// and exports [`HOST_ALLOCATOR`] ([`MiMalloc::share_with_plugins`]): only
/// then is a plugin's buffer, made through the table, one of this
/// process's own (tests that link this library keep their allocator).
static SHARED: AtomicBool = AtomicBool::new(false);

impl MiMalloc {
    /// Says that [`MiMalloc`] is the process's global allocator and
    /// [`HOST_ALLOCATOR`] is exported: `main` calls it first thing.
    pub fn share_with_plugins() {
        SHARED.store(true, Ordering::Release);
    }
}

/// Whether buffers made through [`HOST_ALLOCATOR`] are this process's own.
pub fn heap_is_shared() -> bool {
    SHARED.load(Ordering::Acquire)
}

/// The alignment every mimalloc block has: blocks are whole machine words
/// from a page start aligned to at least 16 bytes.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as a [`GlobalAlloc`] (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct MiMalloc;

// Safety: every call forwards to mimalloc with the layout's size, and with
// its alignment whenever that is more than mimalloc's own block alignment;
// the memory is freed and reallocated by the same library that gave it.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Safety: both accept any size and a power-of-two alignment.
        unsafe { alloc(layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Safety: as `alloc`.
        unsafe { alloc_zeroed(layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { dealloc(ptr, layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Safety: `ptr` came from this allocator with `layout`.
        unsafe { realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

/// The table plugins allocate through: the same functions as [`MiMalloc`].
pub const HOST_ALLOCATOR: HostAllocator = HostAllocator {
    alloc,
    alloc_zeroed,
    dealloc,
    realloc,
};

unsafe extern "C" fn alloc(size: usize, align: usize) -> *mut u8 {
    // Safety: mimalloc's allocation functions accept any size.
    unsafe {
        if align <= BLOCK_ALIGN {
            mi::mi_malloc(size).cast()
        } else {
            mi::mi_malloc_aligned(size, align).cast()
        }
    }
}

unsafe extern "C" fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    // Safety: as `alloc`.
    unsafe {
        if align <= BLOCK_ALIGN {
            mi::mi_zalloc(size).cast()
        } else {
            mi::mi_zalloc_aligned(size, align).cast()
        }
    }
}

unsafe extern "C" fn dealloc(ptr: *mut u8, _size: usize, _align: usize) {
    // Safety: the caller's block came from mimalloc (`alloc` above).
    unsafe { mi::mi_free(ptr.cast::<c_void>()) }
}

unsafe extern "C" fn realloc(ptr: *mut u8, _size: usize, align: usize, new_size: usize) -> *mut u8 {
    // Safety: the caller's block came from mimalloc with `align`.
    unsafe {
        if align <= BLOCK_ALIGN {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alignment a Rust type can ask is met for small, medium and
    /// huge sizes, and contents survive a reallocation.
    #[test]
    fn blocks_have_the_alignment_asked_and_keep_their_contents() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 40, 1000, 1032, 1500, 3000, 70_000, 5_000_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let grown_layout = Layout::from_size_align(size * 2 + 1, align).unwrap();
                // Safety: non-zero sizes; each block is freed with its layout.
                unsafe {
                    let block = MiMalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xA5, size);
                    let grown = MiMalloc.realloc(block, layout, grown_layout.size());
                    assert_eq!(grown as usize % align, 0, "realloc {size}, align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xA5));
                    MiMalloc.dealloc(grown, grown_layout);

                    let zeroed = MiMalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    MiMalloc.dealloc(zeroed, layout);
                }
            }
        }
    }
}
