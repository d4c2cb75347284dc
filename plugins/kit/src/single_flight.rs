//! A token refreshed once for any number of concurrent callers, with a
//! back-off after a failed refresh.
//!
//! An auth provider hands out an access token on every proxied request. When
//! the token is about to expire, the first caller refreshes it and every
//! caller that arrives meanwhile waits for that one refresh and shares its
//! outcome, success or failure, instead of sending a request of its own.
//! After a failed refresh, callers get that failure for
//! [`SingleFlight::new`]'s `retry_after` rather than ask the token endpoint
//! again on every request (a revoked login would otherwise cost one refresh
//! request per proxied request), while a token that is still valid, only
//! inside the grace period, is served meanwhile. A new login written by
//! another program is used at once: the stored login is read again first.
//!
//! The plugin says how to read, judge and refresh its login by implementing
//! [`TokenSource`]; [`SingleFlight::get`] and [`SingleFlight::force`] do the
//! rest. [`SingleFlight::exclusive`] serialises other writers (login, logout)
//! with the refresh.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::PluginError;
use futures_util::lock::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

/// How a plugin's stored login is read, judged and refreshed.
pub trait TokenSource {
    /// The stored login (credentials, tokens).
    type Login: Clone;

    /// The stored login, read again (the file may have changed); an error
    /// when there is none or it cannot be read.
    fn load_login(&self) -> Result<Self::Login, PluginError>;

    /// Whether `login` is due for a refresh: it expires within the grace
    /// period.
    fn needs_refresh(&self, login: &Self::Login) -> bool;

    /// Whether `login` may still be served after a failed refresh: it has
    /// not expired yet.
    fn still_valid(&self, login: &Self::Login) -> bool;

    /// Sends the refresh request for `current` and stores the answer; the
    /// refreshed login, or why not. Call [`Answered::now`] once the token
    /// endpoint has answered (before storing the answer): callers that
    /// arrived while the request was in flight then share its outcome. A
    /// refresh that sends no request (no refresh token) does not call it.
    fn refresh(
        &self,
        current: &Self::Login,
        answered: Answered<'_>,
    ) -> impl Future<Output = Result<Self::Login, PluginError>> + Send;
}

/// Handed to [`TokenSource::refresh`] to report that the token endpoint
/// answered.
pub struct Answered<'a>(&'a AtomicU64);

impl Answered<'_> {
    /// The token endpoint answered (whatever it said).
    pub fn now(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The outcome of the last refresh request.
#[derive(Default)]
struct LastRefresh {
    /// When it failed, and why.
    failure: Option<(Instant, PluginError)>,
}

impl LastRefresh {
    fn record<T>(&mut self, outcome: &Result<T, PluginError>) {
        self.failure = outcome
            .as_ref()
            .err()
            .map(|error| (Instant::now(), error.clone()));
    }

    /// The failure of a refresh less than `retry_after` ago.
    fn recent_failure(&self, retry_after: Duration) -> Option<&PluginError> {
        self.failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() < retry_after)
            .map(|(_, error)| error)
    }
}

/// Held while the stored login changes otherwise than by a refresh (a login,
/// a logout), so no refresh runs meanwhile.
pub struct Exclusive<'a>(#[allow(dead_code)] AsyncMutexGuard<'a, LastRefresh>);

/// One login's refresh: at most one request in flight, its outcome shared.
pub struct SingleFlight {
    /// Held while the stored credentials change (refresh, login, logout), so
    /// concurrent callers make one refresh request, not one each. It guards
    /// the outcome of the last refresh.
    writer: AsyncMutex<LastRefresh>,
    /// Refresh requests answered so far: a caller that saw it change while it
    /// waited for `writer` shares that refresh's outcome instead of asking again.
    answered: AtomicU64,
    retry_after: Duration,
}

impl SingleFlight {
    /// After a failed refresh, [`get`](Self::get) answers with that failure
    /// for `retry_after` instead of asking again.
    pub fn new(retry_after: Duration) -> Self {
        Self {
            writer: AsyncMutex::new(LastRefresh::default()),
            answered: AtomicU64::new(0),
            retry_after,
        }
    }

    /// Waits until no refresh (or other writer) runs, and keeps others out
    /// while the guard lives.
    pub async fn exclusive(&self) -> Exclusive<'_> {
        Exclusive(self.writer.lock().await)
    }

    /// A login that is not due for a refresh, refreshed first when it is.
    /// Single flight: concurrent callers wait for one refresh request and
    /// share its outcome. A failed refresh of a login that is still valid
    /// serves that login.
    pub async fn get<S: TokenSource>(&self, source: &S) -> Result<S::Login, PluginError> {
        let login = source.load_login()?;
        if !source.needs_refresh(&login) {
            return Ok(login);
        }
        let answered_before = self.answered.load(Ordering::SeqCst);
        let mut last_refresh = self.writer.lock().await;
        // Check again under the lock: another caller may have refreshed while
        // this one waited, or another program may have rewritten the login.
        let login = source.load_login()?;
        if !source.needs_refresh(&login) {
            return Ok(login);
        }
        let shared = if self.answered.load(Ordering::SeqCst) != answered_before {
            // A refresh finished while this call waited: share its outcome
            // rather than ask again (a failure would fail again, and a grant
            // shorter than the grace period would otherwise mean one refresh
            // per waiter).
            Some(match &last_refresh.failure {
                Some((_, error)) => Err(error.clone()),
                None => Ok(login.clone()),
            })
        } else {
            last_refresh
                .recent_failure(self.retry_after)
                .cloned()
                .map(Err)
        };
        let outcome = match shared {
            Some(outcome) => outcome,
            None => {
                let outcome = source.refresh(&login, Answered(&self.answered)).await;
                last_refresh.record(&outcome);
                outcome
            }
        };
        match outcome {
            Ok(refreshed) => Ok(refreshed),
            // Still valid, only inside the grace period: serve it; a call
            // after `retry_after` tries the refresh again.
            Err(_) if source.still_valid(&login) => Ok(login),
            Err(error) => Err(error),
        }
    }

    /// A refresh request whatever the expiry and any recent failure; its
    /// outcome is what later callers share.
    pub async fn force<S: TokenSource>(&self, source: &S) -> Result<S::Login, PluginError> {
        let mut last_refresh = self.writer.lock().await;
        let login = source.load_login()?;
        let outcome = source.refresh(&login, Answered(&self.answered)).await;
        last_refresh.record(&outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::pin,
        sync::{
            Arc, Barrier, Mutex,
            atomic::{AtomicBool, AtomicUsize},
        },
        task::{Context, Poll, Wake, Waker},
        thread::{self, Thread},
    };

    use ccproxy_plugin_abi::ErrorKind;

    use super::*;

    /// Runs `future` on this thread, parking while it waits.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            match future.as_mut().poll(&mut context) {
                Poll::Ready(output) => return output,
                Poll::Pending => thread::park(),
            }
        }
    }

    /// A login is a version number; version 0 is due for a refresh (and,
    /// when `expired`, no longer valid), any later one is fresh.
    struct Source {
        stored: Mutex<u32>,
        expired: bool,
        failing: AtomicBool,
        requests: AtomicUsize,
        delay: Duration,
    }

    impl Source {
        fn new(expired: bool, failing: bool) -> Self {
            Self {
                stored: Mutex::new(0),
                expired,
                failing: AtomicBool::new(failing),
                requests: AtomicUsize::new(0),
                delay: Duration::ZERO,
            }
        }
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    impl TokenSource for Source {
        type Login = u32;

        fn load_login(&self) -> Result<u32, PluginError> {
            Ok(*self.stored.lock().unwrap())
        }
        fn needs_refresh(&self, login: &u32) -> bool {
            *login == 0
        }
        fn still_valid(&self, login: &u32) -> bool {
            *login > 0 || !self.expired
        }
        async fn refresh(&self, current: &u32, answered: Answered<'_>) -> Result<u32, PluginError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            thread::sleep(self.delay);
            answered.now();
            if self.failing.load(Ordering::SeqCst) {
                return Err(PluginError::new(ErrorKind::Unauthorized, "refused"));
            }
            let refreshed = current + 1;
            *self.stored.lock().unwrap() = refreshed;
            Ok(refreshed)
        }
    }

    /// `callers` threads released at once, each asking for the login.
    fn concurrent(
        flight: &SingleFlight,
        source: &Source,
        callers: usize,
    ) -> Vec<Result<u32, PluginError>> {
        let start = Barrier::new(callers);
        thread::scope(|scope| {
            let handles: Vec<_> = (0..callers)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        block_on(flight.get(source))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn a_fresh_login_is_served_without_a_refresh() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source::new(false, false);
        *source.stored.lock().unwrap() = 3;
        assert_eq!(block_on(flight.get(&source)).unwrap(), 3);
        assert_eq!(source.requests(), 0);
    }

    #[test]
    fn fifty_concurrent_callers_cause_exactly_one_refresh() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source {
            delay: Duration::from_millis(200),
            ..Source::new(true, false)
        };
        let answers = concurrent(&flight, &source, 50);
        assert_eq!(source.requests(), 1);
        assert!(answers.into_iter().all(|answer| answer.unwrap() == 1));
    }

    #[test]
    fn fifty_concurrent_callers_share_one_failed_refresh() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source {
            delay: Duration::from_millis(200),
            ..Source::new(true, true)
        };
        let answers = concurrent(&flight, &source, 50);
        assert_eq!(source.requests(), 1);
        for answer in answers {
            assert_eq!(answer.unwrap_err().message(), "refused");
        }
    }

    #[test]
    fn after_a_failure_callers_wait_before_asking_again_unless_forced() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source::new(true, true);
        for _ in 0..3 {
            block_on(flight.get(&source)).unwrap_err();
        }
        assert_eq!(source.requests(), 1);
        source.failing.store(false, Ordering::SeqCst);
        assert_eq!(block_on(flight.force(&source)).unwrap(), 1);
        assert_eq!(block_on(flight.get(&source)).unwrap(), 1);
        assert_eq!(source.requests(), 2);
    }

    #[test]
    fn after_the_back_off_the_refresh_is_asked_again() {
        let flight = SingleFlight::new(Duration::ZERO);
        let source = Source::new(true, true);
        block_on(flight.get(&source)).unwrap_err();
        block_on(flight.get(&source)).unwrap_err();
        assert_eq!(source.requests(), 2);
    }

    #[test]
    fn a_failed_refresh_of_a_still_valid_login_serves_it() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source::new(false, true);
        assert_eq!(block_on(flight.get(&source)).unwrap(), 0);
        assert_eq!(block_on(flight.get(&source)).unwrap(), 0);
        assert_eq!(source.requests(), 1);
    }

    #[test]
    fn a_new_login_after_a_failure_is_used_at_once() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source::new(true, true);
        block_on(flight.get(&source)).unwrap_err();
        // Another program logs in.
        *source.stored.lock().unwrap() = 7;
        assert_eq!(block_on(flight.get(&source)).unwrap(), 7);
        assert_eq!(source.requests(), 1);
    }

    #[test]
    fn exclusive_keeps_refreshes_out() {
        let flight = SingleFlight::new(Duration::from_secs(10));
        let source = Source::new(true, false);
        let guard = block_on(flight.exclusive());
        thread::scope(|scope| {
            let waiter = scope.spawn(|| block_on(flight.get(&source)));
            thread::sleep(Duration::from_millis(50));
            assert_eq!(source.requests(), 0);
            drop(guard);
            assert_eq!(waiter.join().unwrap().unwrap(), 1);
        });
    }
}
