//! Logging into the host's `tracing`, under the target `plugin` with the
//! plugin's name as the `plugin` field.
//!
//! The macros ask the host whether the level is enabled before formatting, so a
//! disabled `debug!` costs one call.

use std::sync::OnceLock;

use abi_stable::std_types::RStr;

use crate::raw::HostBox;

static HOST: OnceLock<(HostBox, String)> = OnceLock::new();

/// Log levels, as numbers across the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Needs an operator.
    Error = 1,
    /// Degraded but working.
    Warn = 2,
    /// Lifecycle.
    Info = 3,
    /// Per request.
    Debug = 4,
    /// Bodies and chunks.
    Trace = 5,
}

// Internal: each plugin library has its own copy of this static, so a library
// holds exactly one host handle and one target.
pub(crate) fn install(host: HostBox, plugin_name: &str) {
    if HOST.set((host, format!("plugin::{plugin_name}"))).is_ok() {
        // This library has its own std and so its own panic hook; without this,
        // a caught panic would print an unstructured message to stderr. The
        // panic itself is still caught and reported to the host as an error.
        // Under the mock host, test assertions panic too: keep the previous
        // hook so a failing test still prints its message.
        #[cfg(feature = "testing")]
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            #[cfg(feature = "testing")]
            previous(info);
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = crate::raw::panic_message(info.payload());
            record(Level::Error, &format!("panic{location}: {message}"));
        }));
    }
}

/// Whether `level` is enabled for this plugin. Used by the macros.
#[doc(hidden)]
pub fn enabled(level: Level) -> bool {
    match HOST.get() {
        Some((host, target)) => host.log_enabled(level as u8, RStr::from_str(target)),
        None => level <= Level::Warn,
    }
}

/// Records `message` at `level`. Used by the macros.
#[doc(hidden)]
pub fn record(level: Level, message: &str) {
    match HOST.get() {
        Some((host, target)) => {
            host.log(level as u8, RStr::from_str(target), RStr::from_str(message))
        }
        // Before the host handed us its handle (only in unit tests without the
        // mock host) there is nowhere better to write.
        None => eprintln!("[{level:?}] {message}"),
    }
}

/// Logs at `error` level: `error!("could not open {}", path)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Error, $($arg)+) };
}
/// Logs at `warn` level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Warn, $($arg)+) };
}
/// Logs at `info` level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Info, $($arg)+) };
}
/// Logs at `debug` level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Debug, $($arg)+) };
}
/// Logs at `trace` level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Trace, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::record($level, &::std::format!($($arg)+));
        }
    };
}
