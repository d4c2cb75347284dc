//! systemd's notification protocol (`Type=notify`): `READY=1` once serving,
//! `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` on the way out,
//! and `WATCHDOG=1` at half the unit's `WatchdogSec` while the server is
//! alive. Without `$NOTIFY_SOCKET` (not under systemd) each is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    // The variable stays set: the server notifies again on every reload.
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify systemd over NOTIFY_SOCKET");
    }
}

/// The server answers requests.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins; [`ready`] ends it. systemd wants the monotonic clock with it
/// (`Type=notify-reload`); older versions ignore it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// The server is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// When the unit sets `WatchdogSec`, pings at half its interval from a task
/// on the server's runtime, so a server whose runtime stalls is restarted.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    // As sd_watchdog_enabled(3): WATCHDOG_USEC, for this process when
    // WATCHDOG_PID names one (systemd sets both; a test or a wrapper may set
    // only the interval).
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    if usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(10));
    tracing::info!(
        interval_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
