//! The proxy as a system service: systemd notifications (`notify`), live
//! reload of config and plugins on `SIGHUP` (`reload`), and the file through
//! which `ccproxy reload` finds a running server and learns how its reload
//! went (`control`).

pub mod control;
pub mod notify;
pub mod reload;

pub use control::request_reload;
