//! Limits on client connections: how long one may take to send a request head,
//! how long it may sit idle between requests, and how many are served at once.
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a
//! kept-alive connection waits for its next request, so it would close idle
//! connections after the (short) header timeout, and HTTP/2 has none. Instead
//! each connection has an [`Activity`]: its reads mark the start of a head, its
//! requests are counted from the moment hyper hands them over until their
//! response body has been sent or dropped, and [`drive`] closes the connection
//! when the wait that applies has run out. A request in flight has no deadline
//! here, so streams are never cut.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{Notify, watch},
    time::Instant,
};

/// After a connection has been told to close (keep-alive off, or GOAWAY), how
/// long it may take before it is dropped, unless a request is in flight.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How often a repeated warning (refused connections, failed accepts) may be logged.
pub(super) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Connections past the cap that are still read, for a `/health*` request, at
/// once; connections past these are closed unread. Counted in the files the
/// automatic cap leaves free (`RESERVED_FILES` in `config/model.rs`).
pub(super) const OVER_CAP_SLOTS: usize = 32;

/// How long a connection past the cap may stay open in all.
pub(super) const OVER_CAP_DEADLINE: Duration = Duration::from_secs(5);

/// The two waits a connection with no request in flight is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From the connection's start, or the first byte of a later request, to a complete head.
    pub(super) header: Duration,
    /// From the end of the last response to the first byte of the next request.
    pub(super) idle: Duration,
}

/// What a connection without a request in flight is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// A request head: the connection is new, or bytes of a request have arrived.
    Head,
    /// The next request on a kept-alive connection.
    Idle,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    wait: Wait,
    /// When the current wait began.
    since: Instant,
}

/// What one connection is doing, as far as its timeouts are concerned.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Whether the connection is idle, so that the next byte read starts a
    /// head; lets reads skip the lock on every other byte.
    idle: AtomicBool,
    /// Woken when a wait begins (the deadline may have moved earlier).
    changed: Notify,
}

impl Activity {
    /// A new connection: waiting for its first head from now.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                wait: Wait::Head,
                since: Instant::now(),
            }),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Internal: the state is a few plain fields, valid even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived: on an idle connection, a request head has begun.
    fn bytes_read(&self) {
        if !self.idle.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state();
        if state.in_flight == 0 && state.wait == Wait::Idle {
            state.wait = Wait::Head;
            state.since = Instant::now();
            self.idle.store(false, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// A request was handed to the service; it is in flight until the returned
    /// guard is dropped (with the response body, once sent).
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        // Under the lock, so it cannot overtake the `true` of a request ending.
        self.idle.store(false, Ordering::Relaxed);
        drop(state);
        InFlight(self.clone())
    }

    /// When the current wait ends, counted from no earlier than `not_before`;
    /// `None` while a request is in flight.
    fn deadline(&self, timeouts: Timeouts, not_before: Option<Instant>) -> Option<(Wait, Instant)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        let limit = match state.wait {
            Wait::Head => timeouts.header,
            Wait::Idle => timeouts.idle,
        };
        let since = not_before.map_or(state.since, |floor| state.since.max(floor));
        Some((state.wait, since + limit))
    }

    /// Resolves when the connection has waited out its current wait with no
    /// request in flight; says which wait it was.
    async fn expired(&self, timeouts: Timeouts, not_before: Option<Instant>) -> Wait {
        loop {
            // A wait that begins after this check stores a permit for `notified`.
            match self.deadline(timeouts, not_before) {
                None => self.changed.notified().await,
                Some((wait, deadline)) => {
                    if deadline <= Instant::now() {
                        return wait;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on its connection; dropped with the response body.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let mut state = activity.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.wait = Wait::Idle;
            state.since = Instant::now();
            activity.idle.store(true, Ordering::Relaxed);
            activity.changed.notify_one();
        }
    }
}

/// A response body that keeps its request counted as in flight, and the app
/// it began on alive, until it has been sent to the end or dropped: a reload
/// retires the old app's plugins only after their streams have ended.
pub(super) struct InFlightBody<B> {
    inner: B,
    _in_flight: InFlight,
    _app: Arc<super::App>,
}

impl<B> InFlightBody<B> {
    pub(super) fn new(inner: B, in_flight: InFlight, app: Arc<super::App>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
            _app: app,
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for InFlightBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket, telling its [`Activity`] when bytes arrive.
#[derive(Debug)]
pub(super) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection driven by [`drive`] ended.
#[derive(Debug)]
pub(super) enum Ended<E> {
    /// hyper finished it (the client closed, or it closed after a shutdown).
    Done(Result<(), E>),
    /// It was dropped after waiting out `Wait` and not closing when asked.
    TimedOut(Wait),
}

/// Runs `connection` until it ends. When it has waited out its header or idle
/// timeout with no request in flight it is asked to close (HTTP/1: at once when
/// idle; HTTP/2: GOAWAY), and dropped if it has not within [`CLOSE_GRACE`]. When
/// `stop` changes it is asked to close after its requests in flight.
///
/// `close` asks the connection to close: hyper's `graceful_shutdown`. (It is
/// passed in rather than reached through hyper-util's `GracefulConnection`,
/// whose bounds rustc cannot prove `Send` through an `async fn`.)
pub(super) async fn drive<C, E>(
    connection: C,
    mut close: impl FnMut(Pin<&mut C>),
    activity: Arc<Activity>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) -> Ended<E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    let mut asked_to_close = false;
    let mut stopping = false;
    // Set once the connection's own wait ran out: (which wait, when).
    let mut timed_out: Option<(Wait, Instant)> = None;
    loop {
        let (limits, not_before) = match timed_out {
            None => (timeouts, None),
            Some((_, at)) => (
                Timeouts {
                    header: CLOSE_GRACE,
                    idle: CLOSE_GRACE,
                },
                Some(at),
            ),
        };
        tokio::select! {
            result = connection.as_mut() => return Ended::Done(result),
            wait = activity.expired(limits, not_before) => {
                if let Some((wait, _)) = timed_out {
                    return Ended::TimedOut(wait);
                }
                timed_out = Some((wait, Instant::now()));
                if !asked_to_close {
                    asked_to_close = true;
                    close(connection.as_mut());
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                if !asked_to_close {
                    asked_to_close = true;
                    close(connection.as_mut());
                }
            }
        }
    }
}

/// Counts one kind of repeated event and says when a warning about them is
/// due: the first at once, then at most one per interval, with the count since
/// the last warning.
#[derive(Debug)]
pub(super) struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    pub(super) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: 0,
        }
    }

    /// Counts one event at `now`; returns the number to report (this one
    /// included) when a warning is due.
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// When the open connections have fallen this far below their high-water
/// mark, the memory they freed is given back to the OS
/// ([`crate::memory::release_after_connections_closed`]): an idle proxy that
/// held thousands of streams would otherwise keep their memory. Steady churn
/// (connections closing as others open) never moves the count this far.
const RELEASE_AFTER_CLOSED: usize = 1024;

/// The connection cap and who holds its slots.
#[derive(Debug)]
pub(super) struct Slots {
    cap: usize,
    open: Arc<AtomicUsize>,
    /// The most connections open since memory was last given back.
    high_water: Arc<AtomicUsize>,
    over_cap: Arc<AtomicUsize>,
    refusals: Mutex<Throttle>,
}

/// What a newly accepted connection gets.
#[derive(Debug)]
pub(super) enum Admission {
    /// Served; the slot is freed when this is dropped.
    Served(Slot),
    /// Past the cap: read for a health check, else refused; holds an over-cap slot.
    OverCap(Slot),
    /// Past the cap and every over-cap slot: closed unread.
    Closed,
}

/// One taken slot; freed on drop.
#[derive(Debug)]
pub(super) struct Slot {
    counter: Arc<AtomicUsize>,
    /// For a served connection: [`Slots::high_water`].
    high_water: Option<Arc<AtomicUsize>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.counter.fetch_sub(1, Ordering::AcqRel) - 1;
        if let Some(high_water) = &self.high_water
            && released_below(high_water, open)
        {
            crate::memory::release_after_connections_closed();
        }
    }
}

/// Whether `open` connections are [`RELEASE_AFTER_CLOSED`] below the
/// high-water mark; if so the mark comes down to `open` (one release per fall).
fn released_below(high_water: &AtomicUsize, open: usize) -> bool {
    let mark = high_water.load(Ordering::Acquire);
    mark >= open + RELEASE_AFTER_CLOSED
        && high_water
            .compare_exchange(mark, open, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

fn take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<(Slot, usize)> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < limit).then_some(open + 1)
        })
        .ok()
        .map(|before| {
            let slot = Slot {
                counter: counter.clone(),
                high_water: None,
            };
            (slot, before + 1)
        })
}

impl Slots {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
            high_water: Arc::default(),
            over_cap: Arc::default(),
            refusals: Mutex::new(Throttle::new(WARNING_INTERVAL)),
        }
    }

    /// The cap.
    pub(super) fn cap(&self) -> usize {
        self.cap
    }

    /// Takes a slot for a new connection; past the cap, warns (at most once per
    /// [`WARNING_INTERVAL`]) how many were refused and what to raise.
    pub(super) fn admit(&self) -> Admission {
        if let Some((mut slot, open)) = take(&self.open, self.cap) {
            self.high_water.fetch_max(open, Ordering::AcqRel);
            slot.high_water = Some(self.high_water.clone());
            return Admission::Served(slot);
        }
        let due = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hit(Instant::now());
        if let Some(refused) = due {
            tracing::warn!(
                refused,
                open = self.cap,
                "refusing connections: {} are open, the limit server.max_connections = {}; \
                 past it only /health* is answered and other requests get 503. Raise \
                 server.max_connections (and the open-file limit, ulimit -n) if these clients \
                 are legitimate (repeated at most every {} s with the count since)",
                self.cap,
                self.cap,
                WARNING_INTERVAL.as_secs()
            );
        }
        match take(&self.over_cap, OVER_CAP_SLOTS) {
            Some((slot, _)) => Admission::OverCap(slot),
            None => Admission::Closed,
        }
    }
}

/// The soft limit on open files of this process, when it can be read.
pub(super) fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // Safety: getrlimit only writes the struct it is given, which lives
        // across the call.
        #[allow(unsafe_code)]
        let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        (result == 0).then_some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// An over-cap connection's answer to anything but `/health*`.
pub(super) fn over_cap_response(cap: usize) -> http::Response<super::response::Body> {
    let mut response = super::response::error_response(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        &format!(
            "the proxy is serving its limit of {cap} connections (server.max_connections); \
             retry shortly"
        ),
    );
    let headers = response.headers_mut();
    headers.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("2"),
    );
    headers.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("ccproxy"),
    );
    response
}

/// Whether an over-cap connection's request is a health check, which is answered.
pub(super) fn is_health_path(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_at_once_then_once_per_interval_with_the_count() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.hit(start), Some(1));
        for ms in [1, 50, 9_000] {
            assert_eq!(throttle.hit(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.hit(start + Duration::from_secs(10)), Some(4));
        assert_eq!(throttle.hit(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn slots_serve_up_to_the_cap_then_read_a_few_more_then_close() {
        let slots = Slots::new(2);
        let served: Vec<Admission> = (0..2).map(|_| slots.admit()).collect();
        assert!(served.iter().all(|a| matches!(a, Admission::Served(_))));
        let over: Vec<Admission> = (0..OVER_CAP_SLOTS).map(|_| slots.admit()).collect();
        assert!(over.iter().all(|a| matches!(a, Admission::OverCap(_))));
        assert!(matches!(slots.admit(), Admission::Closed));
        drop(served);
        assert!(matches!(slots.admit(), Admission::Served(_)));
    }

    #[test]
    fn memory_is_released_once_per_fall_of_many_connections() {
        let high_water = AtomicUsize::new(5000);
        assert!(!released_below(
            &high_water,
            5000 - RELEASE_AFTER_CLOSED + 1
        ));
        assert!(released_below(&high_water, 5000 - RELEASE_AFTER_CLOSED));
        assert_eq!(
            high_water.load(Ordering::Acquire),
            5000 - RELEASE_AFTER_CLOSED
        );
        // The mark came down: the next connection closing is no new fall.
        assert!(!released_below(
            &high_water,
            5000 - RELEASE_AFTER_CLOSED - 1
        ));
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_follow_requests_and_reads() {
        let activity = Activity::new();
        let opened = Instant::now();
        let deadline = |a: &Activity| a.deadline(timeouts(), None);
        assert_eq!(
            deadline(&activity),
            Some((Wait::Head, opened + Duration::from_secs(10))),
            "a new connection waits for a head"
        );

        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(deadline(&activity), None, "in flight: no deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(first);
        assert_eq!(deadline(&activity), None, "one still in flight");
        drop(second);
        let idle_since = Instant::now();
        assert_eq!(
            deadline(&activity),
            Some((Wait::Idle, idle_since + Duration::from_secs(60)))
        );

        tokio::time::advance(Duration::from_secs(5)).await;
        activity.bytes_read();
        let head_since = Instant::now();
        assert_eq!(
            deadline(&activity),
            Some((Wait::Head, head_since + Duration::from_secs(10))),
            "the first byte of a request starts the header timeout"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.bytes_read();
        assert_eq!(
            deadline(&activity),
            Some((Wait::Head, head_since + Duration::from_secs(10))),
            "later bytes do not extend it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_comes_after_the_wait_and_never_while_in_flight() {
        let activity = Activity::new();
        let in_flight = activity.begin();
        let expired = tokio::time::timeout(
            Duration::from_secs(1000),
            activity.expired(timeouts(), None),
        )
        .await;
        assert!(expired.is_err(), "no expiry while a request is in flight");
        drop(in_flight);
        let idle_since = Instant::now();
        assert_eq!(activity.expired(timeouts(), None).await, Wait::Idle);
        assert_eq!(Instant::now() - idle_since, Duration::from_secs(60));

        // A head begun while waiting moves the deadline earlier.
        let activity = Activity::new();
        drop(activity.begin());
        let waiter = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.expired(timeouts(), None).await })
        };
        tokio::time::advance(Duration::from_secs(5)).await;
        let head_since = Instant::now();
        activity.bytes_read();
        assert_eq!(waiter.await.expect("the waiter runs"), Wait::Head);
        assert_eq!(Instant::now() - head_since, Duration::from_secs(10));
    }
}
