//! Giving the memory of large request bodies, and of many connections, back
//! to the OS.
//!
//! mimalloc (the process allocator, see `main.rs`) keeps freed memory for a
//! while (`purge_delay`, 1 s) and purges it only when the allocator is next
//! busy: after a burst of large bodies, or of thousands of held streams, an
//! idle proxy would keep hundreds of MiB it no longer uses. Plugins allocate
//! with the C library's malloc, which keeps large freed blocks in its arenas
//! too. So once the last large body in flight is done
//! ([`release_after_large_bodies`]), or many connections have closed
//! ([`release_after_connections_closed`]), and a moment has passed (a burst is
//! usually followed by more), both are asked to give back what is free.

#![allow(unsafe_code)]

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// A body at least this large is worth giving back when done.
pub const LARGE_BODY_BYTES: u64 = 1024 * 1024;

/// How long after the last large body the memory is given back: beyond
/// mimalloc's purge delay, so what it scheduled is due.
const RELEASE_DELAY: Duration = Duration::from_millis(1500);

/// Set while a release is scheduled, so a burst schedules one.
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Schedules [`release_free_memory`] on the current Tokio runtime (once for
/// however many calls come meanwhile); for when many connections have closed.
pub fn release_after_connections_closed() {
    release_after_large_bodies(|| false);
}

/// Schedules [`release_free_memory`] on the current Tokio runtime, once for
/// however many large bodies end meanwhile, when `still_in_flight` (asked when
/// it is due) says no large body is in flight any more; no-op outside a runtime.
pub fn release_after_large_bodies(still_in_flight: impl Fn() -> bool + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(RELEASE_DELAY).await;
            if !still_in_flight() {
                break;
            }
        }
        SCHEDULED.store(false, Ordering::Release);
        // Off the async workers: a collection walks the heap.
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
        tracing::debug!("freed memory of large request bodies given back to the OS");
    });
}

/// Gives memory that is free back to the OS now: mimalloc's (forced purge of
/// what was freed, and this thread's free pages) and the C library's (plugins
/// allocate with it).
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and is safe to call from any
    // thread at any time (mimalloc's documented API); it only returns free
    // pages to the OS.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers, is thread-safe in glibc, and
    // only returns free memory at the top of its heaps and in free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasing_free_memory_leaves_live_memory_alone() {
        let live = vec![7u8; 4 * 1024 * 1024];
        drop(vec![1u8; 16 * 1024 * 1024]);
        release_free_memory();
        assert!(live.iter().all(|byte| *byte == 7));
    }

    #[tokio::test(start_paused = true)]
    async fn one_release_is_scheduled_for_a_burst_and_waits_for_the_last_body() {
        let in_flight = std::sync::Arc::new(AtomicBool::new(true));
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let (in_flight, asked) = (in_flight.clone(), asked.clone());
            release_after_large_bodies(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                in_flight.load(Ordering::SeqCst)
            });
        }
        tokio::time::sleep(RELEASE_DELAY * 2 + Duration::from_millis(10)).await;
        // One task asks once per delay while bodies are in flight.
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert!(SCHEDULED.load(Ordering::SeqCst));
        in_flight.store(false, Ordering::SeqCst);
        tokio::time::sleep(RELEASE_DELAY).await;
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        // The release itself runs on a blocking thread; wait for the flag.
        for _ in 0..100 {
            if !SCHEDULED.load(Ordering::SeqCst) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(!SCHEDULED.load(Ordering::SeqCst));
    }
}
