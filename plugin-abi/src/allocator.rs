//! A plugin library's global allocator: the host's, when the library is
//! loaded by a host that offers it; the system's otherwise.
//!
//! A host (ccproxy 1.3 and later) exports [`HOST_ALLOCATOR_SYMBOL`], a
//! [`HostAllocator`] table. On its first allocation a library looks the symbol
//! up in the process and keeps the answer for its whole life, so every block
//! it frees came from the allocator it frees it with. Under an older host, in
//! a unit test or in any other program, the symbol is missing and the library
//! uses [`std::alloc::System`].
//!
//! Why: the host's allocator (mimalloc) costs a third of glibc's `malloc` per
//! call, and one allocator shared by the host and every plugin keeps no heap
//! per library (a copy of mimalloc in each plugin would hold about 400 KiB
//! each; see docs/PERFORMANCE.md). Memory still never changes hands across the
//! boundary without the allocator that made it: abi_stable's vectors carry
//! their own.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The name under which a host exports its [`HostAllocator`] (a dynamic
/// symbol of the executable). Part of plugin API 1.3: later hosts keep it.
/// A host exports it only when the table's functions are its own global
/// allocator's: every buffer it hands a plugin was made by them, so a plugin
/// allocating through the table may keep such a buffer as its own (the
/// SDK does, [`shares_host_heap`]), and the host a plugin's.
pub const HOST_ALLOCATOR_SYMBOL: &CStr = c"ccproxy_host_allocator_v1";

/// The allocation functions a host offers its plugins, with the contract of
/// [`GlobalAlloc`]'s methods (sizes and alignments are a [`Layout`]'s).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostAllocator {
    /// `GlobalAlloc::alloc`.
    pub alloc: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// `GlobalAlloc::alloc_zeroed`.
    pub alloc_zeroed: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// `GlobalAlloc::dealloc`.
    pub dealloc: unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize),
    /// `GlobalAlloc::realloc`.
    pub realloc:
        unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8,
}

/// The global allocator [`export_plugin!`](crate::export_plugin) declares
/// when the SDK's `host-allocator` feature is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct PluginAllocator;

/// What this library allocates with, decided at its first allocation: null
/// until then, [`system`] for the system allocator, else the host's table.
static CHOSEN: AtomicPtr<HostAllocator> = AtomicPtr::new(std::ptr::null_mut());

/// Set when [`PluginAllocator`] itself made the choice, at an allocation:
/// it is then this library's global allocator, not merely compiled in.
static SERVES: AtomicBool = AtomicBool::new(false);

/// The value of [`CHOSEN`] that means "the system allocator": an address no
/// table has, never dereferenced.
fn system() -> *mut HostAllocator {
    std::ptr::dangling_mut()
}

/// The host's table, or `None` for the system allocator; `allocating`:
/// asked by [`PluginAllocator`] for an allocation.
#[inline]
fn host(allocating: bool) -> Option<&'static HostAllocator> {
    let mut chosen = CHOSEN.load(Ordering::Acquire);
    if chosen.is_null() {
        chosen = choose();
        if allocating {
            SERVES.store(true, Ordering::Release);
        }
    }
    if chosen == system() {
        None
    } else {
        // Safety: any other non-null value is the address of the host's
        // exported table, a static that lives as long as the process.
        Some(unsafe { &*chosen })
    }
}

/// Looks the host's table up, once: threads racing here find the same
/// answer, and the first to store it wins.
#[cold]
fn choose() -> *mut HostAllocator {
    let found = lookup();
    let candidate = if found.is_null() { system() } else { found };
    match CHOSEN.compare_exchange(
        std::ptr::null_mut(),
        candidate,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => candidate,
        Err(already) => already,
    }
}

#[cfg(unix)]
fn lookup() -> *mut HostAllocator {
    // Safety: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only
    // reads the process's symbol tables; it does not allocate through this
    // allocator (glibc's own `malloc`, if anything).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, HOST_ALLOCATOR_SYMBOL.as_ptr()).cast() }
}

#[cfg(not(unix))]
fn lookup() -> *mut HostAllocator {
    std::ptr::null_mut()
}

/// Whether this library allocates with the host's allocator (`false`: the
/// system's). Decides it if nothing was allocated yet.
pub fn uses_host_allocator() -> bool {
    host(false).is_some()
}

/// Whether this library's vectors and the host's come from the same
/// allocation functions, so a buffer can change hands without a copy: this
/// library's global allocator is [`PluginAllocator`] (it made the choice at
/// its first allocation) and it allocates through the host's table. A host
/// exports the table only if it allocates everything it hands a plugin
/// with the same functions (part of [`HOST_ALLOCATOR_SYMBOL`]'s contract).
pub fn shares_host_heap() -> bool {
    SERVES.load(Ordering::Acquire) && uses_host_allocator()
}

// Safety: each call goes to the allocator chosen once for the library's whole
// life (the host's table honours `GlobalAlloc`'s contract, the system
// allocator is std's), so a block is always freed or grown by the allocator
// that made it.
unsafe impl GlobalAlloc for PluginAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match host(true) {
            // Safety: `layout` is valid (GlobalAlloc's contract).
            Some(host) => unsafe { (host.alloc)(layout.size(), layout.align()) },
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match host(true) {
            // Safety: as `alloc`.
            Some(host) => unsafe { (host.alloc_zeroed)(layout.size(), layout.align()) },
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match host(true) {
            // Safety: `ptr` came from this allocator with `layout`.
            Some(host) => unsafe { (host.dealloc)(ptr, layout.size(), layout.align()) },
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match host(true) {
            // Safety: `ptr` came from this allocator with `layout`.
            Some(host) => unsafe { (host.realloc)(ptr, layout.size(), layout.align(), new_size) },
            None => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test binary exports no host table: the library falls back to the
    /// system allocator, and allocating through it works.
    #[test]
    fn without_a_host_the_system_allocator_serves() {
        assert!(!uses_host_allocator());
        let layout = Layout::from_size_align(100, 8).unwrap();
        // Safety: a non-zero layout, freed with the same layout.
        unsafe {
            let block = PluginAllocator.alloc(layout);
            assert!(!block.is_null());
            block.write_bytes(7, 100);
            let grown = PluginAllocator.realloc(block, layout, 5000);
            assert_eq!(*grown.add(99), 7);
            PluginAllocator.dealloc(grown, Layout::from_size_align(5000, 8).unwrap());
        }
        // No shared heap: a buffer crossing over is copied.
        assert!(!shares_host_heap());
    }
}
