//! `host.blocking`: a plugin's blocking job, run on the host's blocking pool.
//!
//! The plugin keeps the job (a closure) in its own table and asks the host to
//! run it; the host takes a blocking thread (`spawn_blocking`) and, there,
//! calls the same plugin's `blocking.run`, which runs the closure right on that
//! thread. The runtime's async workers never block, and the closure never
//! leaves the plugin's code. The reply of `blocking.run` (metadata and body)
//! is the answer to `host.blocking`.

use std::sync::Arc;

use ccproxy_plugin_abi::{
    protocol::{BlockingInput, ops},
    raw::{AbiError, ErrorCode},
};
use serde_json::Value;

use super::Shared;
use crate::plugins::handle::{CallError, CallErrorKind};

/// Runs job `input.job` of plugin `plugin` on a blocking thread.
pub(super) async fn run(
    shared: &Shared,
    plugin: &str,
    input: BlockingInput,
) -> Result<(Value, Vec<u8>), AbiError> {
    let active = shared
        .plugins
        .get(plugin)
        .map(|entry| Arc::clone(entry.value()))
        .ok_or_else(|| {
            AbiError::new(
                ErrorCode::Unavailable,
                format!("plugin {plugin} is not running"),
            )
        })?;
    let runtime = tokio::runtime::Handle::current();
    let job = input.job;
    let outcome = tokio::task::spawn_blocking(move || {
        // This thread may block: driving the call here keeps the job, which
        // runs inside the plugin's `blocking.run`, off the async workers.
        runtime.block_on(
            active
                .handle
                .call::<ops::BlockingRun>(&BlockingInput { job }, Vec::new()),
        )
    })
    .await
    .map_err(|error| {
        AbiError::new(
            ErrorCode::Internal,
            format!("blocking job {job} could not run: {error}"),
        )
    })?;
    let reply = outcome.map_err(|error| abi_error(plugin, job, error))?;
    Ok((reply.meta, reply.body))
}

/// The plugin's failure as the answer to its own `host.blocking`: a panic in
/// the job stays a panic, so the plugin can tell it from its own errors.
fn abi_error(plugin: &str, job: u64, error: CallError) -> AbiError {
    let code = match error.kind {
        CallErrorKind::Plugin(kind) => kind.code(),
        CallErrorKind::Panicked => ErrorCode::Panicked,
        CallErrorKind::TimedOut => ErrorCode::Timeout,
        CallErrorKind::Unsupported => ErrorCode::Unsupported,
        CallErrorKind::BadReply => ErrorCode::Internal,
    };
    let message = match error.kind {
        CallErrorKind::Unsupported => format!(
            "plugin {plugin} does not run blocking jobs (blocking.run); rebuild it with SDK 1.2 or later"
        ),
        _ => format!("blocking job {job}: {}", error.message),
    };
    AbiError::new(code, message)
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::ErrorKind;

    use super::*;

    fn error(kind: CallErrorKind) -> CallError {
        CallError {
            kind,
            message: "boom".to_owned(),
        }
    }

    #[test]
    fn failures_keep_their_kind() {
        let check = |kind, code| {
            assert_eq!(
                ErrorCode::from_u32(abi_error("p", 1, error(kind)).code),
                code
            )
        };
        check(CallErrorKind::Panicked, ErrorCode::Panicked);
        check(
            CallErrorKind::Plugin(ErrorKind::NotFound),
            ErrorCode::NotFound,
        );
        check(CallErrorKind::TimedOut, ErrorCode::Timeout);
        check(CallErrorKind::BadReply, ErrorCode::Internal);
        let unsupported = abi_error("old", 1, error(CallErrorKind::Unsupported));
        assert!(
            unsupported.message.contains("SDK 1.2"),
            "{}",
            unsupported.message
        );
    }
}
