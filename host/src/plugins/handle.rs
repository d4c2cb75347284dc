//! [`PluginHandle`]: the safe, measured, panic-proof way the rest of the host
//! calls into a plugin.
//!
//! Two lines of defence against a panicking plugin: the SDK catches panics inside
//! the plugin and answers `Panicked`; and should a panic still escape a future's
//! poll (a plugin built without the SDK's guard), async-ffi re-raises it in the
//! host, where `catch_unwind` here turns it into the same error. A segfault or an
//! abort inside a plugin still ends the process: that is the limit of in-process
//! plugins.
//!
//! Where plugin code runs: on the plugin runtime when the server has made one
//! ([`use_plugin_runtime`]), so a plugin future that blocks its thread holds
//! a plugin worker, never one of the server's (which keep accepting and
//! answering `/health*`); a caller awaits the call across, with its timeout
//! on its own side, so even a blocked thread cannot hold the caller past it.
#![allow(unsafe_code)]

use std::{
    cell::Cell,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use abi_stable::std_types::{RResult, RString, RVec};
use ccproxy_plugin_abi::{
    ErrorKind, hook_wire,
    protocol::{InputOf, Operation, OutputOf},
    raw::{self, ErrorCode, HostBox, Message},
};
use futures_util::FutureExt;

use super::load::LoadedLibrary;

/// A failed call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What kind of failure.
    pub kind: CallErrorKind,
    /// The plugin's (or the host's) message.
    pub message: String,
}

/// Kinds of [`CallError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The plugin returned an error of this kind.
    Plugin(ErrorKind),
    /// The plugin panicked.
    Panicked,
    /// The plugin does not implement the operation.
    Unsupported,
    /// The plugin's answer could not be decoded.
    BadReply,
    /// The call took longer than allowed.
    TimedOut,
}

impl CallError {
    fn new(kind: CallErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The HTTP status a request ended by this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            CallErrorKind::Plugin(kind) => kind.http_status(),
            CallErrorKind::TimedOut => 504,
            CallErrorKind::Panicked | CallErrorKind::Unsupported | CallErrorKind::BadReply => 500,
        }
    }
}

/// The runtime plugin calls run on, once the server has made one.
static PLUGIN_RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

thread_local! {
    /// Whether this thread belongs to the plugin runtime (its workers and its
    /// blocking threads): calls made here are polled in place, no hop.
    static ON_PLUGIN_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

/// Builds the plugin runtime: `worker_threads` workers (0: the number of
/// cores, at least 2), timers and I/O enabled, threads named `ccproxy-plugin`.
pub fn build_plugin_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = if worker_threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
    } else {
        worker_threads
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("ccproxy-plugin")
        .on_thread_start(|| ON_PLUGIN_RUNTIME.with(|on| on.set(true)))
        .build()
}

/// Makes `runtime` the one every later plugin call runs on (the first call
/// wins; without one, calls are polled wherever they are awaited, as the
/// CLI's short-lived commands do).
pub fn use_plugin_runtime(runtime: tokio::runtime::Handle) {
    let _ = PLUGIN_RUNTIME.set(runtime);
}

/// Whether the current thread is one of the plugin runtime's.
pub fn on_plugin_runtime() -> bool {
    ON_PLUGIN_RUNTIME.with(Cell::get)
}

/// A task that is aborted when its handle is dropped: a caller that gives up
/// (a timeout, a client gone) drops the plugin's future with it, as it would
/// if it had polled the future itself.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future` on the plugin runtime (when there is one and this thread is
/// not already one of its) and awaits it here; a panic in its poll comes back
/// as the payload.
async fn on_the_plugin_runtime<F>(future: F) -> std::thread::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let caught = AssertUnwindSafe(future).catch_unwind();
    let runtime = match PLUGIN_RUNTIME.get() {
        Some(runtime) if !on_plugin_runtime() => runtime,
        _ => return caught.await,
    };
    // The caller's span goes with it: the plugin's log lines stay in their
    // request's span.
    let caught = tracing::Instrument::instrument(caught, tracing::Span::current());
    let mut task = AbortOnDrop(runtime.spawn(caught));
    match (&mut task.0).await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => Err(error.into_panic()),
        Err(_) => Err(Box::new("the plugin runtime has stopped")),
    }
}

/// Runs `future`, which calls into plugins, as one task on the plugin
/// runtime (when there is one and this thread is not already one of its):
/// every call inside it is then polled in place, so a run of N calls costs
/// one hop across runtimes instead of N. Dropping the returned future aborts
/// the task. `None` when the task panicked or the runtime stopped (plugin
/// panics are already caught inside each call, so this is a host bug).
pub async fn in_one_hop<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    on_the_plugin_runtime(future).await.ok()
}

/// The JSON metadata of a call to operation `O` (or a borrowed view writing
/// the same JSON).
pub fn encode_input<O: Operation>(meta: &impl InputOf<O>) -> Result<String, CallError> {
    serde_json::to_string(meta).map_err(|error| {
        CallError::new(
            CallErrorKind::BadReply,
            format!("could not encode {}: {error}", O::NAME),
        )
    })
}

/// `timeout` as the error messages say it: whole seconds as `N s`.
pub fn duration_text(timeout: Duration) -> String {
    if timeout.subsec_nanos() == 0 {
        format!("{} s", timeout.as_secs())
    } else {
        format!("{} ms", timeout.as_millis())
    }
}

/// Counters kept per plugin.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that panicked.
    pub panics: AtomicU64,
    /// Calls that returned an error (panics and timeouts included).
    pub errors: AtomicU64,
    /// Calls given up after their timeout.
    pub timeouts: AtomicU64,
    /// The last timeout: when, and its message.
    pub last_timeout: Mutex<Option<(SystemTime, String)>>,
    /// Nanoseconds spent in hook calls.
    pub hook_nanos: AtomicU64,
    /// Hook calls made.
    pub hook_calls: AtomicU64,
    /// The last panic: when, and its message.
    pub last_panic: Mutex<Option<(SystemTime, String)>>,
}

/// An instantiated plugin.
pub struct PluginHandle {
    name: String,
    object: raw::PluginBox,
    /// The plugin's SDK takes hook calls as `hook.batch` (plugin API 1.3,
    /// asked once with `plugin.features`).
    hook_batch: bool,
    /// The plugin's buffers come from the host's allocator (feature
    /// `shared_heap`): the bodies it answers are taken without a copy.
    shared_heap: bool,
    /// The plugin's SDK reads `provider.prepare`'s metadata as netstrings
    /// (feature `prepare_fields`, `ccproxy_plugin_abi::fields`).
    prepare_fields: bool,
    /// Counters for `/plugins/status` and health.
    pub stats: CallStats,
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A decoded reply: typed metadata and the raw body.
#[derive(Debug)]
pub struct Reply<T> {
    /// Metadata.
    pub meta: T,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl PluginHandle {
    /// Instantiates the library's plugin with `host` as its host handle.
    pub fn instantiate(library: &LoadedLibrary, host: HostBox) -> Result<Self, CallError> {
        let instantiate = library.module.instantiate();
        let object = match std::panic::catch_unwind(AssertUnwindSafe(|| instantiate(host))) {
            Ok(RResult::ROk(object)) => object,
            Ok(RResult::RErr(message)) => {
                return Err(CallError::new(
                    CallErrorKind::Plugin(ErrorKind::Internal),
                    message,
                ));
            }
            Err(_) => {
                return Err(CallError::new(
                    CallErrorKind::Panicked,
                    "plugin panicked while being instantiated",
                ));
            }
        };
        let features = probe_features(&object);
        let speaks = |name: &str| features.features.iter().any(|feature| feature == name);
        Ok(Self {
            name: library.manifest.name.clone(),
            hook_batch: speaks(hook_wire::HOOK_BATCH),
            shared_heap: speaks(hook_wire::SHARED_HEAP),
            prepare_fields: speaks(ccproxy_plugin_abi::fields::PREPARE_FIELDS),
            object,
            stats: CallStats::default(),
        })
    }

    /// Whether the plugin takes hook calls as `hook.batch`.
    pub fn speaks_hook_batch(&self) -> bool {
        self.hook_batch
    }

    /// Whether the plugin reads `provider.prepare`'s metadata as netstrings.
    pub fn speaks_prepare_fields(&self) -> bool {
        self.prepare_fields
    }

    /// Calls operation `op` with no metadata and `frame` as the body,
    /// giving up after `timeout`; answers the reply's body (the `hook.batch`
    /// frames, which carry no JSON).
    pub async fn call_frame_with_timeout(
        &self,
        op: &'static str,
        frame: Vec<u8>,
        timeout: Duration,
    ) -> Result<RVec<u8>, CallError> {
        self.call_raw_within(op, String::new(), frame, timeout)
            .await
            .map(|reply| reply.body)
    }

    /// Counts a failure the plugin reported for one entry of a batch (error
    /// `code`, a `raw::ErrorCode` value), as a failed call of its own would be.
    pub fn record_entry_failure(&self, code: u32, message: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if ErrorCode::from_u32(code) == ErrorCode::Panicked {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.stats.last_panic.lock() {
                *last = Some((SystemTime::now(), message.to_owned()));
            }
            tracing::error!(plugin = %self.name, op = hook_wire::BATCH_OP, %message, "plugin panicked; the hook call failed and the server keeps running");
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls operation `O` with its metadata (or a borrowed view writing the
    /// same JSON) and a body; decodes the reply as `O`'s output.
    pub async fn call<O: Operation>(
        &self,
        meta: &impl InputOf<O>,
        body: Vec<u8>,
    ) -> Result<Reply<O::Output>, CallError> {
        self.call_reading::<O, O::Output>(meta, body).await
    }

    /// Like [`PluginHandle::call`], decoding the reply as `T`, another
    /// reading of `O`'s output (see `OutputOf`).
    pub async fn call_reading<O: Operation, T: OutputOf<O>>(
        &self,
        meta: &impl InputOf<O>,
        body: Vec<u8>,
    ) -> Result<Reply<T>, CallError> {
        let meta = encode_input::<O>(meta)?;
        self.call_encoded::<O, T>(meta, body).await
    }

    /// [`PluginHandle::call_reading`] with the metadata already encoded
    /// ([`encode_input`]): the call owns everything it needs, so it can be
    /// moved into a task of its own.
    pub async fn call_encoded<O: Operation, T: OutputOf<O>>(
        &self,
        meta: String,
        body: Vec<u8>,
    ) -> Result<Reply<T>, CallError> {
        let op = O::NAME;
        let reply = self.call_raw(op, meta, body).await?;
        let text = if reply.meta.is_empty() {
            "null"
        } else {
            reply.meta.as_str()
        };
        let meta = serde_json::from_str(text).map_err(|error| self.bad_reply(op, error))?;
        Ok(Reply {
            meta,
            body: take_body(reply.body, self.shared_heap),
        })
    }

    /// Calls `op` with metadata `meta` written by the caller and `body`,
    /// giving up after `timeout`; answers the reply's metadata as text, for
    /// a caller that reads it itself (`provider.prepare`'s netstrings).
    pub async fn call_text_with_timeout(
        &self,
        op: &'static str,
        meta: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<RString>, CallError> {
        let reply = self.call_raw_within(op, meta, body, timeout).await?;
        Ok(Reply {
            meta: reply.meta,
            body: take_body(reply.body, self.shared_heap),
        })
    }

    /// [`PluginHandle::call_raw`], giving up after `timeout`.
    async fn call_raw_within(
        &self,
        op: &'static str,
        meta: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        match tokio::time::timeout(timeout, self.call_raw(op, meta, body)).await {
            Ok(reply) => reply,
            Err(_) => Err(self.timed_out(op, timeout)),
        }
    }

    /// The error of an answer to `op` whose metadata does not read.
    pub fn bad_reply(&self, op: &str, error: impl std::fmt::Display) -> CallError {
        CallError::new(
            CallErrorKind::BadReply,
            format!(
                "plugin {} answered {op} with malformed data: {error}",
                self.name
            ),
        )
    }

    /// Like [`PluginHandle::call`], giving up after `timeout`.
    pub async fn call_with_timeout<O: Operation>(
        &self,
        meta: &impl InputOf<O>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<O::Output>, CallError> {
        self.call_reading_with_timeout::<O, O::Output>(meta, body, timeout)
            .await
    }

    /// [`PluginHandle::call_reading`], giving up after `timeout`.
    pub async fn call_reading_with_timeout<O: Operation, T: OutputOf<O>>(
        &self,
        meta: &impl InputOf<O>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<T>, CallError> {
        let meta = encode_input::<O>(meta)?;
        self.call_encoded_with_timeout::<O, T>(meta, body, timeout)
            .await
    }

    /// [`PluginHandle::call_encoded`], giving up after `timeout`.
    pub async fn call_encoded_with_timeout<O: Operation, T: OutputOf<O>>(
        &self,
        meta: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<T>, CallError> {
        match tokio::time::timeout(timeout, self.call_encoded::<O, T>(meta, body)).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(O::NAME, timeout)),
        }
    }

    /// Counts and reports a call to `op` given up after `timeout`.
    fn timed_out(&self, op: &str, timeout: Duration) -> CallError {
        let message = format!(
            "plugin {} did not answer {op} within {}",
            self.name,
            duration_text(timeout)
        );
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_timeout.lock() {
            *last = Some((SystemTime::now(), message.clone()));
        }
        tracing::warn!(plugin = %self.name, op, "{message}; the call was given up");
        CallError::new(CallErrorKind::TimedOut, message)
    }

    async fn call_raw(&self, op: &str, meta: String, body: Vec<u8>) -> Result<Message, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let input = Message {
            meta: meta.into(),
            body: body.into(),
        };
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.object.call(RString::from(op), input)
        }));
        let outcome = match started {
            Ok(future) => on_the_plugin_runtime(future).await,
            Err(payload) => Err(payload),
        };
        let result = match outcome {
            Ok(RResult::ROk(message)) => return Ok(message),
            Ok(RResult::RErr(error)) => match ErrorCode::from_u32(error.code) {
                ErrorCode::Panicked => CallError::new(CallErrorKind::Panicked, error.message),
                ErrorCode::Unsupported => CallError::new(CallErrorKind::Unsupported, error.message),
                _ => CallError::new(
                    CallErrorKind::Plugin(ErrorKind::from_code(ErrorCode::from_u32(error.code))),
                    error.message,
                ),
            },
            Err(payload) => CallError::new(
                CallErrorKind::Panicked,
                format!("plugin panicked: {}", raw::panic_message(payload.as_ref())),
            ),
        };
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if result.kind == CallErrorKind::Panicked {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.stats.last_panic.lock() {
                *last = Some((SystemTime::now(), result.message.clone()));
            }
            tracing::error!(plugin = %self.name, op, message = %result.message, "plugin panicked; the call failed and the server keeps running");
        }
        Err(result)
    }

    /// Records time spent in a hook call.
    pub fn record_hook_time(&self, started: Instant) {
        self.record_hook_calls(started, 1);
    }

    /// Records time spent in `calls` hook calls made together (a batch).
    pub fn record_hook_calls(&self, started: Instant, calls: u64) {
        let nanos = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.stats.hook_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.stats.hook_calls.fetch_add(calls, Ordering::Relaxed);
    }
}

/// A plugin's buffer as a `Vec` of the host: taken without a copy from a
/// plugin that said its buffers come from the host's allocator (`shared`,
/// feature `shared_heap`) in a process where that allocator is the global
/// one (`allocator::heap_is_shared`); copied otherwise.
fn take_body(bytes: RVec<u8>, shared: bool) -> Vec<u8> {
    if !(shared && crate::allocator::heap_is_shared()) {
        return bytes.into_vec();
    }
    // Safety: the plugin made the buffer (or got it from the host) through
    // the exported table, that is with mimalloc, this process's global
    // allocator (`heap_is_shared`).
    unsafe { ccproxy_plugin_abi::shim::adopt_buffer(bytes) }
}

/// Asks a just-instantiated plugin which call protocols beyond 1.0's its SDK
/// speaks (`plugin.features`, plugin API 1.3). The SDK answers at once,
/// without initialising anything, so the answer is read by polling the call
/// once right here; SDKs before 1.3 answer `Unsupported`, and anything else
/// (a pending future, a panic, a malformed answer) means no features.
fn probe_features(object: &raw::PluginBox) -> hook_wire::Features {
    let asked = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut call = object.call(RString::from(hook_wire::FEATURES_OP), Message::default());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut call).poll(&mut context) {
            std::task::Poll::Ready(RResult::ROk(reply)) => {
                serde_json::from_str::<hook_wire::Features>(&reply.meta).ok()
            }
            _ => None,
        }
    }));
    asked.ok().flatten().unwrap_or_default()
}
