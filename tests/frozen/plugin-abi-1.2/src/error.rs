//! The error type plugin code returns.

use std::fmt;

use crate::raw::{AbiError, ErrorCode};

/// What kind of failure a [`PluginError`] is; decides the HTTP status the host
/// answers with when the error ends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Anything else (500).
    Internal,
    /// The operation is not implemented by the other side.
    Unsupported,
    /// The plugin panicked (500).
    Panicked,
    /// Bad input (400).
    Invalid,
    /// Not found (404).
    NotFound,
    /// Missing or refused credentials (401).
    Unauthorized,
    /// Not allowed (403).
    Forbidden,
    /// A dependency is unavailable (503).
    Unavailable,
    /// Timed out (504).
    Timeout,
    /// The upstream failed (502).
    Upstream,
    /// Called before initialisation (503).
    NotInitialized,
    /// Too many requests (429).
    RateLimited,
}

impl ErrorKind {
    /// The raw error code for this kind (used by the host).
    #[doc(hidden)]
    pub fn code(self) -> ErrorCode {
        match self {
            ErrorKind::Internal => ErrorCode::Internal,
            ErrorKind::Unsupported => ErrorCode::Unsupported,
            ErrorKind::Panicked => ErrorCode::Panicked,
            ErrorKind::Invalid => ErrorCode::Invalid,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Unauthorized => ErrorCode::Unauthorized,
            ErrorKind::Forbidden => ErrorCode::Forbidden,
            ErrorKind::Unavailable => ErrorCode::Unavailable,
            ErrorKind::Timeout => ErrorCode::Timeout,
            ErrorKind::Upstream => ErrorCode::Upstream,
            ErrorKind::NotInitialized => ErrorCode::NotInitialized,
            ErrorKind::RateLimited => ErrorCode::RateLimited,
        }
    }

    /// The kind for a raw error code (used by the host).
    #[doc(hidden)]
    pub fn from_code(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Internal => ErrorKind::Internal,
            ErrorCode::Unsupported => ErrorKind::Unsupported,
            ErrorCode::Panicked => ErrorKind::Panicked,
            ErrorCode::Invalid => ErrorKind::Invalid,
            ErrorCode::NotFound => ErrorKind::NotFound,
            ErrorCode::Unauthorized => ErrorKind::Unauthorized,
            ErrorCode::Forbidden => ErrorKind::Forbidden,
            ErrorCode::Unavailable => ErrorKind::Unavailable,
            ErrorCode::Timeout => ErrorKind::Timeout,
            ErrorCode::Upstream => ErrorKind::Upstream,
            ErrorCode::NotInitialized => ErrorKind::NotInitialized,
            ErrorCode::RateLimited => ErrorKind::RateLimited,
        }
    }

    /// The HTTP status the host answers with when this error ends a request.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RateLimited => 429,
            ErrorKind::Upstream => 502,
            ErrorKind::Unavailable | ErrorKind::NotInitialized => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal | ErrorKind::Unsupported | ErrorKind::Panicked => 500,
        }
    }
}

/// An error from plugin code or from a host call: a kind and a one-line message.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
///
/// fn check(name: &str) -> Result<(), PluginError> {
///     if name.is_empty() {
///         return Err(PluginError::invalid("name must not be empty"));
///     }
///     Ok(())
/// }
/// assert_eq!(check("").unwrap_err().kind(), ErrorKind::Invalid);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    kind: ErrorKind,
    message: String,
}

impl PluginError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// An internal error (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Bad input (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// Not found (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A dependency is unavailable (503).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// The upstream failed (502).
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
    /// Timed out (504).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// Missing or refused credentials (401).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// The operation is not supported.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Converts to the raw form.
    pub(crate) fn into_abi(self) -> AbiError {
        AbiError::new(self.kind.code(), self.message)
    }
    /// Converts from the raw form.
    pub(crate) fn from_abi(error: AbiError) -> Self {
        Self {
            kind: ErrorKind::from_code(ErrorCode::from_u32(error.code)),
            message: error.message.into(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<serde_json::Error> for PluginError {
    fn from(error: serde_json::Error) -> Self {
        Self::invalid(format!("invalid JSON: {error}"))
    }
}
