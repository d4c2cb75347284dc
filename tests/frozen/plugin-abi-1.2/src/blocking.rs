//! The plugin side's table of blocking jobs (plugin API 1.2): closures
//! `Context::blocking` registered, waiting for the host to run them on one of
//! its blocking threads through `blocking.run`.
//!
//! A plugin owns no threads of its own; the host's blocking pool runs the job
//! by calling back into the plugin, so the closure never leaves the plugin's
//! own code and allocator. The table is per library: every plugin library has
//! its own copy of the SDK and so of this static.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::PluginError;

type Job = Box<dyn FnOnce() + Send>;

/// Where a job leaves its result for the future that awaits it.
pub(crate) type ResultSlot<T> = Arc<Mutex<Option<T>>>;

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

fn jobs() -> MutexGuard<'static, HashMap<u64, Job>> {
    static JOBS: OnceLock<Mutex<HashMap<u64, Job>>> = OnceLock::new();
    JOBS.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `f` as a job; returns its id and the slot its result lands in.
/// The returned guard forgets the job when dropped, so a caller that gives up
/// (its future dropped before the host ran the job) leaves nothing behind.
pub(crate) fn register<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (JobGuard, ResultSlot<T>) {
    let id = NEXT_JOB.fetch_add(1, Ordering::Relaxed);
    let slot: ResultSlot<T> = Arc::default();
    let result = slot.clone();
    let job: Job = Box::new(move || {
        let value = f();
        *result
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(value);
    });
    jobs().insert(id, job);
    (JobGuard(id), slot)
}

/// Runs job `id` on the calling thread (the host's blocking thread). A panic in
/// the job unwinds to the caller, which the SDK's guards turn into a
/// `Panicked` error for that one call.
pub(crate) fn run(id: u64) -> Result<(), PluginError> {
    let job = jobs().remove(&id).ok_or_else(|| {
        PluginError::not_found(format!(
            "blocking job {id} is unknown (already run, or its caller gave up)"
        ))
    })?;
    job();
    Ok(())
}

/// Forgets its job when dropped (a no-op once the job ran).
#[derive(Debug)]
pub(crate) struct JobGuard(pub(crate) u64);

impl Drop for JobGuard {
    fn drop(&mut self) {
        jobs().remove(&self.0);
    }
}

/// Takes the job's result out of `slot`.
pub(crate) fn take<T>(slot: &ResultSlot<T>) -> Result<T, PluginError> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .ok_or_else(|| PluginError::internal("the blocking job finished without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_once_and_leaves_its_result() {
        let (guard, slot) = register(|| 6 * 7);
        run(guard.0).unwrap();
        assert_eq!(take(&slot).unwrap(), 42);
        assert_eq!(run(guard.0).unwrap_err().kind(), crate::ErrorKind::NotFound);
        assert!(take(&slot).is_err());
    }

    #[test]
    fn a_dropped_guard_forgets_the_job() {
        let (guard, _slot) = register(|| ());
        let id = guard.0;
        drop(guard);
        assert_eq!(run(id).unwrap_err().kind(), crate::ErrorKind::NotFound);
    }
}
