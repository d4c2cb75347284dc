//! [`PluginHandle`]: the safe, measured, panic-proof way the rest of the host
//! calls into a plugin.
//!
//! Two lines of defence against a panicking plugin: the SDK catches panics inside
//! the plugin and answers `Panicked`; and should a panic still escape a future's
//! poll (a plugin built without the SDK's guard), async-ffi re-raises it in the
//! host, where `catch_unwind` here turns it into the same error. A segfault or an
//! abort inside a plugin still ends the process: that is the limit of in-process
//! plugins.
#![allow(unsafe_code)]

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use abi_stable::std_types::{RResult, RString};
use ccproxy_plugin_abi::{
    ErrorKind,
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

/// Counters kept per plugin.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that panicked.
    pub panics: AtomicU64,
    /// Calls that returned an error (panics included).
    pub errors: AtomicU64,
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
        Ok(Self {
            name: library.manifest.name.clone(),
            object,
            stats: CallStats::default(),
        })
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
        let op = O::NAME;
        let meta = serde_json::to_string(meta).map_err(|error| {
            CallError::new(
                CallErrorKind::BadReply,
                format!("could not encode {op}: {error}"),
            )
        })?;
        let reply = self.call_raw(op, meta, body).await?;
        let text = if reply.meta.is_empty() {
            "null"
        } else {
            reply.meta.as_str()
        };
        let meta = serde_json::from_str(text).map_err(|error| {
            CallError::new(
                CallErrorKind::BadReply,
                format!(
                    "plugin {} answered {op} with malformed data: {error}",
                    self.name
                ),
            )
        })?;
        Ok(Reply {
            meta,
            body: reply.body.into_vec(),
        })
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
        match tokio::time::timeout(timeout, self.call_reading::<O, T>(meta, body)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::new(
                CallErrorKind::TimedOut,
                format!(
                    "plugin {} did not answer {} within {} ms",
                    self.name,
                    O::NAME,
                    timeout.as_millis()
                ),
            )),
        }
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
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
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
        let nanos = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.stats.hook_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.stats.hook_calls.fetch_add(1, Ordering::Relaxed);
    }
}
