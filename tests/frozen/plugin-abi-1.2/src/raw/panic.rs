//! Panic containment at every entry point into plugin code.
//!
//! abi_stable turns a panic that crosses an `extern` function into
//! `process::exit(1)`, so every entry point the SDK exports runs its body under
//! `catch_unwind` and returns the panic as an [`AbiError`] instead.

use std::{
    any::Any,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
};

use futures_util::FutureExt;

use super::{AbiError, ErrorCode};

/// Runs `f`, turning a panic into an [`ErrorCode::Panicked`] error.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T, AbiError>) -> Result<T, AbiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(AbiError::new(
            ErrorCode::Panicked,
            format!("plugin panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// Wraps a future so that a panic while polling it becomes an
/// [`ErrorCode::Panicked`] error.
pub fn catch_panic_future<T>(
    future: impl Future<Output = Result<T, AbiError>> + Send + 'static,
) -> impl Future<Output = Result<T, AbiError>> + Send + 'static {
    AssertUnwindSafe(future)
        .catch_unwind()
        .map(|result| match result {
            Ok(result) => result,
            Err(payload) => Err(AbiError::new(
                ErrorCode::Panicked,
                format!("plugin panicked: {}", panic_message(payload.as_ref())),
            )),
        })
}

/// The text of a panic payload, or a placeholder when it is not a string.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
