//! Several accounts (credentials) for one provider: which one a request
//! uses, which ones rest after a failure, and what `/plugins/{name}/health`
//! shows of them.
//!
//! An [`AccountPool`] holds labelled credentials in priority order and picks
//! one per attempt: the first available (`failover`, the original
//! `credential_balancer`'s default) or the next in turn (`round_robin`). A
//! failure the host reports back (plugin API 1.3, `ProviderRequest::attempt`)
//! rests the account: 429 and 529 for the upstream's `Retry-After` (else
//! `cooldown_seconds`), 401 and 403 for `cooldown_seconds`, counted, and after
//! `max_failures_before_disable` of those the account is disabled until the
//! plugin starts again (a reload with a changed section does that). A resting
//! account comes back by itself when its time is up.
//!
//! The host tells a plugin of failures only (no call per success: the
//! success path stays free of extra work), so failures are counted since the
//! start, not in a row.
//!
//! ```
//! use std::time::Duration;
//! use ccproxy_plugin_kit::accounts::{AccountPool, Pick, PoolSettings};
//!
//! let pool = AccountPool::new(
//!     vec![("a".to_owned(), "key-a"), ("b".to_owned(), "key-b")],
//!     PoolSettings::default(),
//! );
//! let Pick::Use { account, .. } = pool.pick(None) else { panic!() };
//! assert_eq!(account.label(), "a");
//! // "a" answered 429 with Retry-After: 30; the retry goes to "b".
//! pool.report_failure("a", 429, Some(Duration::from_secs(30)));
//! let Pick::Use { account, .. } = pool.pick(Some("a")) else { panic!() };
//! assert_eq!(*account.credential(), "key-b");
//! ```

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{Value, json};
use serde::{Deserialize, Serialize};

/// How the next account is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first available account in the configured order (priority).
    #[default]
    Failover,
    /// Each request the next available account in turn.
    RoundRobin,
}

/// A pool's settings (a provider plugin's `[plugins.NAME.failover]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// `failover` (priority order) or `round_robin`.
    pub strategy: Strategy,
    /// How long an account rests after a failure with no `Retry-After`.
    pub cooldown_seconds: u64,
    /// Failures with a status of `failure_status_codes` after which an
    /// account is disabled; 0: never.
    pub max_failures_before_disable: u32,
    /// Statuses that count towards disabling (a refused credential).
    pub failure_status_codes: Vec<u16>,
    /// Statuses that rest an account without counting (rate limit, overload).
    pub cooldown_status_codes: Vec<u16>,
    /// When every account rests, wait for the first one back if that is at
    /// most this long (a `Retry-After` honoured); 0: answer 429 at once.
    pub max_retry_wait_seconds: u64,
    /// The model every retry asks for instead of the client's (an
    /// overloaded model's stand-in); empty: the client's. For the plugin to
    /// apply ([`with_model`]).
    pub fallback_model: String,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Failover,
            cooldown_seconds: 60,
            max_failures_before_disable: 2,
            failure_status_codes: vec![401, 403],
            cooldown_status_codes: vec![429, 529],
            max_retry_wait_seconds: 0,
            fallback_model: String::new(),
        }
    }
}

/// `body` (a JSON object) asking for `model` instead: the fallback model of
/// a retry. A body that is not a JSON object is returned unchanged.
pub fn with_model(body: Vec<u8>, model: &str) -> Vec<u8> {
    match ccproxy_plugin_abi::serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut object)) => {
            object.insert("model".to_owned(), Value::String(model.to_owned()));
            ccproxy_plugin_abi::serde_json::to_vec(&object).unwrap_or(body)
        }
        _ => body,
    }
}

/// Where the pool reads the time: the real clock, or one a test moves.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fake: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn fake() -> Self {
        Self {
            fake: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// Moves a fake clock on by `by` (nothing for the real one).
    pub fn advance(&self, by: Duration) {
        if let Some(fake) = &self.fake {
            let mut now = fake.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *now += by;
        }
    }

    fn now(&self) -> Instant {
        match &self.fake {
            Some(fake) => *fake.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            None => Instant::now(),
        }
    }
}

/// One account: a label that is no secret, and its credential.
#[derive(Debug)]
pub struct Account<C> {
    label: String,
    credential: C,
    state: Mutex<State>,
    picks: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    resting_until: Option<Instant>,
    failures: u32,
    failures_total: u64,
    disabled: bool,
    last_status: Option<u16>,
}

impl<C> Account<C> {
    /// Its label (shown in health and told back by the host).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its credential.
    pub fn credential(&self) -> &C {
        &self.credential
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few numbers updated in one step: a panic elsewhere
        // cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What [`AccountPool::pick`] decided.
#[derive(Debug)]
pub enum Pick<'a, C> {
    /// Send with `account`, after `delay` when it is still resting.
    Use {
        /// The account.
        account: &'a Account<C>,
        /// Wait this long first (its rest ends then).
        delay: Option<Duration>,
    },
    /// No account can be used: every one rests or is disabled.
    Exhausted {
        /// When the first one is back; `None` when all are disabled.
        retry_after: Option<Duration>,
        /// Says so, for the client.
        message: String,
    },
}

/// Labelled credentials of one provider, picked per attempt. Thread-safe:
/// shared by every request of the plugin.
#[derive(Debug)]
pub struct AccountPool<C> {
    accounts: Vec<Account<C>>,
    settings: PoolSettings,
    next: AtomicUsize,
    clock: Clock,
}

impl<C> AccountPool<C> {
    /// A pool of `(label, credential)` in priority order.
    pub fn new(accounts: Vec<(String, C)>, settings: PoolSettings) -> Self {
        Self::with_clock(accounts, settings, Clock::default())
    }

    /// [`AccountPool::new`] reading the time from `clock` (tests).
    pub fn with_clock(accounts: Vec<(String, C)>, settings: PoolSettings, clock: Clock) -> Self {
        Self {
            accounts: accounts
                .into_iter()
                .map(|(label, credential)| Account {
                    label,
                    credential,
                    state: Mutex::default(),
                    picks: AtomicU64::new(0),
                })
                .collect(),
            settings,
            next: AtomicUsize::new(0),
            clock,
        }
    }

    /// How many accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Upstream requests one client request may make: one per account, plus
    /// one more call so the plugin hears of the last account's failure too
    /// (it answers that one with `UpstreamRequest::exhausted`).
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.accounts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The account called `label`.
    pub fn get(&self, label: &str) -> Option<&Account<C>> {
        self.accounts.iter().find(|account| account.label == label)
    }

    /// An account for the next attempt. `previous` is the account the
    /// previous attempt of the same request used (a retry starts after it,
    /// so it is not asked again at once); `None` for a first attempt.
    pub fn pick(&self, previous: Option<&str>) -> Pick<'_, C> {
        let n = self.accounts.len();
        if n == 0 {
            return Pick::Exhausted {
                retry_after: None,
                message: "no account is configured".to_owned(),
            };
        }
        let now = self.clock.now();
        let start = match previous.and_then(|label| self.position(label)) {
            Some(position) => position + 1,
            None => match self.settings.strategy {
                Strategy::Failover => 0,
                Strategy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed),
            },
        };
        let mut first_back: Option<(Instant, &Account<C>)> = None;
        for offset in 0..n {
            let account = &self.accounts[(start + offset) % n];
            let mut state = account.state();
            if state.disabled {
                continue;
            }
            match state.resting_until {
                Some(until) if until > now => {
                    if first_back.is_none_or(|(soonest, _)| until < soonest) {
                        first_back = Some((until, account));
                    }
                }
                _ => {
                    state.resting_until = None;
                    drop(state);
                    account.picks.fetch_add(1, Ordering::Relaxed);
                    return Pick::Use {
                        account,
                        delay: None,
                    };
                }
            }
        }
        let Some((until, account)) = first_back else {
            return Pick::Exhausted {
                retry_after: None,
                message: format!(
                    "all {n} accounts are disabled after repeated failures ({}); fix their credentials and reload",
                    self.labels()
                ),
            };
        };
        let wait = until - now;
        if wait <= Duration::from_secs(self.settings.max_retry_wait_seconds) {
            account.picks.fetch_add(1, Ordering::Relaxed);
            return Pick::Use {
                account,
                delay: Some(wait),
            };
        }
        Pick::Exhausted {
            retry_after: Some(wait),
            message: format!(
                "every account is cooling down after rate limits or failures ({}); the first is back in {} s",
                self.labels(),
                wait.as_secs_f64().ceil() as u64
            ),
        }
    }

    /// Notes that the attempt with account `label` failed with `status` (0:
    /// no answer) and the upstream's `retry_after`. Unknown labels are
    /// ignored (the config changed since).
    pub fn report_failure(&self, label: &str, status: u16, retry_after: Option<Duration>) {
        let Some(account) = self.get(label) else {
            return;
        };
        let settings = &self.settings;
        let counted = settings.failure_status_codes.contains(&status);
        let rests = counted || settings.cooldown_status_codes.contains(&status);
        let mut state = account.state();
        state.last_status = Some(status);
        state.failures_total += 1;
        if !rests {
            // A server error or no answer says nothing about the credential:
            // the next attempt goes elsewhere, the account stays in turn.
            return;
        }
        let cooldown = Duration::from_secs(settings.cooldown_seconds);
        let rest = match retry_after {
            Some(retry_after) if !counted => retry_after,
            _ => cooldown,
        };
        let until = self.clock.now() + rest;
        state.resting_until = Some(state.resting_until.map_or(until, |old| old.max(until)));
        if counted {
            state.failures += 1;
            let limit = settings.max_failures_before_disable;
            if limit > 0 && state.failures >= limit {
                state.disabled = true;
            }
        }
    }

    /// Each account's state for `/plugins/{name}/health`: label, `state`
    /// (`available`, `cooling`, `disabled`), seconds left to rest, failures,
    /// the last failed status, and how often it was picked; `describe` adds
    /// what the plugin knows of the credential (its kind, a masked form;
    /// never the secret).
    pub fn health(&self, describe: impl Fn(&C) -> Value) -> Value {
        let now = self.clock.now();
        let accounts: Vec<Value> = self
            .accounts
            .iter()
            .map(|account| {
                let state = account.state();
                let resting = state
                    .resting_until
                    .filter(|until| *until > now)
                    .map(|until| (until - now).as_secs_f64().ceil() as u64);
                let status = if state.disabled {
                    "disabled"
                } else if resting.is_some() {
                    "cooling"
                } else {
                    "available"
                };
                let mut entry = json!({
                    "label": account.label,
                    "state": status,
                    "cooling_seconds_left": resting,
                    "failures": state.failures,
                    "failures_total": state.failures_total,
                    "last_failure_status": state.last_status,
                    "picks": account.picks.load(Ordering::Relaxed),
                });
                if let (Value::Object(entry), Value::Object(more)) =
                    (&mut entry, describe(&account.credential))
                {
                    entry.extend(more);
                }
                entry
            })
            .collect();
        json!({
            "strategy": self.settings.strategy,
            "accounts": accounts,
        })
    }

    /// How many accounts can take a request now.
    pub fn available(&self) -> usize {
        let now = self.clock.now();
        self.accounts
            .iter()
            .filter(|account| {
                let state = account.state();
                !state.disabled && state.resting_until.is_none_or(|until| until <= now)
            })
            .count()
    }

    fn position(&self, label: &str) -> Option<usize> {
        self.accounts
            .iter()
            .position(|account| account.label == label)
    }

    fn labels(&self) -> String {
        self.accounts
            .iter()
            .map(|account| account.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(labels: &[&str], settings: PoolSettings) -> (AccountPool<String>, Clock) {
        let clock = Clock::fake();
        let accounts = labels
            .iter()
            .map(|label| ((*label).to_owned(), format!("secret-{label}")))
            .collect();
        (
            AccountPool::with_clock(accounts, settings, clock.clone()),
            clock,
        )
    }

    fn used(pick: Pick<'_, String>) -> (String, Option<Duration>) {
        match pick {
            Pick::Use { account, delay } => (account.label().to_owned(), delay),
            Pick::Exhausted { message, .. } => panic!("exhausted: {message}"),
        }
    }

    fn exhausted(pick: Pick<'_, String>) -> (Option<Duration>, String) {
        match pick {
            Pick::Exhausted {
                retry_after,
                message,
            } => (retry_after, message),
            Pick::Use { account, .. } => panic!("used {}", account.label()),
        }
    }

    #[test]
    fn failover_takes_the_first_available_in_order() {
        let (pool, _) = pool(&["a", "b", "c"], PoolSettings::default());
        assert_eq!(used(pool.pick(None)).0, "a");
        assert_eq!(used(pool.pick(None)).0, "a");
        pool.report_failure("a", 429, None);
        assert_eq!(used(pool.pick(None)).0, "b");
        // A retry starts after the account that failed.
        assert_eq!(used(pool.pick(Some("b"))).0, "c");
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_resting_ones() {
        let settings = PoolSettings {
            strategy: Strategy::RoundRobin,
            ..PoolSettings::default()
        };
        let (pool, _) = pool(&["a", "b", "c"], settings);
        let turns: Vec<String> = (0..4).map(|_| used(pool.pick(None)).0).collect();
        assert_eq!(turns, ["a", "b", "c", "a"]);
        pool.report_failure("b", 529, None);
        let turns: Vec<String> = (0..3).map(|_| used(pool.pick(None)).0).collect();
        assert_eq!(turns, ["c", "c", "a"]);
    }

    #[test]
    fn a_rate_limited_account_rests_for_retry_after_then_comes_back() {
        let (pool, clock) = pool(&["a", "b"], PoolSettings::default());
        pool.report_failure("a", 429, Some(Duration::from_secs(5)));
        assert_eq!(used(pool.pick(None)).0, "b");
        assert_eq!(pool.available(), 1);
        clock.advance(Duration::from_secs(4));
        assert_eq!(used(pool.pick(None)).0, "b");
        clock.advance(Duration::from_secs(1));
        assert_eq!(used(pool.pick(None)).0, "a");
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn without_retry_after_an_account_rests_for_the_cooldown() {
        let (pool, clock) = pool(&["a"], PoolSettings::default());
        pool.report_failure("a", 529, None);
        let (retry_after, message) = exhausted(pool.pick(None));
        assert_eq!(retry_after, Some(Duration::from_secs(60)));
        assert!(message.contains("cooling down") && message.contains("60 s"));
        clock.advance(Duration::from_secs(60));
        assert_eq!(used(pool.pick(None)).0, "a");
    }

    #[test]
    fn refused_credentials_are_disabled_after_the_limit_and_stay_so() {
        let (pool, clock) = pool(&["a", "b"], PoolSettings::default());
        pool.report_failure("a", 401, None);
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            used(pool.pick(None)).0,
            "a",
            "one 401: back after the cooldown"
        );
        pool.report_failure("a", 401, None);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(used(pool.pick(None)).0, "b", "two 401s: disabled");
        pool.report_failure("b", 403, None);
        pool.report_failure("b", 403, None);
        let (retry_after, message) = exhausted(pool.pick(None));
        assert_eq!(retry_after, None);
        assert!(message.contains("disabled"), "{message}");
        let health = pool.health(|_| json!({"kind": "api_key"}));
        assert_eq!(health["accounts"][0]["state"], "disabled");
        assert_eq!(health["accounts"][0]["failures"], 2);
        assert_eq!(health["accounts"][0]["last_failure_status"], 401);
        assert_eq!(health["accounts"][0]["kind"], "api_key");
    }

    #[test]
    fn server_errors_move_on_without_resting_the_account() {
        let (pool, _) = pool(&["a", "b"], PoolSettings::default());
        pool.report_failure("a", 500, None);
        pool.report_failure("a", 0, None);
        assert_eq!(pool.available(), 2);
        assert_eq!(used(pool.pick(Some("a"))).0, "b");
        assert_eq!(used(pool.pick(None)).0, "a");
    }

    #[test]
    fn a_short_rest_is_waited_for_when_allowed() {
        let settings = PoolSettings {
            max_retry_wait_seconds: 3,
            ..PoolSettings::default()
        };
        let (pool, _) = pool(&["a", "b"], settings);
        pool.report_failure("a", 429, Some(Duration::from_secs(2)));
        pool.report_failure("b", 429, Some(Duration::from_secs(10)));
        let (label, delay) = used(pool.pick(Some("b")));
        assert_eq!((label.as_str(), delay), ("a", Some(Duration::from_secs(2))));
        pool.report_failure("a", 429, Some(Duration::from_secs(20)));
        let (retry_after, _) = exhausted(pool.pick(None));
        assert_eq!(retry_after, Some(Duration::from_secs(10)));
    }

    #[test]
    fn health_shows_labels_and_state_never_credentials() {
        let (pool, _) = pool(&["team-a", "team-b"], PoolSettings::default());
        pool.pick(None);
        pool.report_failure("team-b", 429, Some(Duration::from_secs(30)));
        let health = pool.health(|secret| json!({"key": crate::mask::mask(secret)}));
        let text = health.to_string();
        assert!(!text.contains("secret-team"), "{text}");
        assert_eq!(health["strategy"], "failover");
        assert_eq!(health["accounts"][0]["state"], "available");
        assert_eq!(health["accounts"][0]["picks"], 1);
        assert_eq!(health["accounts"][1]["state"], "cooling");
        assert_eq!(health["accounts"][1]["cooling_seconds_left"], 30);
        assert_eq!(pool.max_attempts(), 3);
    }

    #[test]
    fn unknown_labels_and_an_empty_pool_are_harmless() {
        let (pool, _) = pool(&[], PoolSettings::default());
        pool.report_failure("gone", 429, None);
        assert!(pool.is_empty());
        let (retry_after, message) = exhausted(pool.pick(None));
        assert_eq!(retry_after, None);
        assert!(message.contains("no account"));
    }

    #[test]
    fn the_fallback_model_replaces_the_model_and_nothing_else() {
        let body = br#"{"model":"claude-opus-4-6","max_tokens":5}"#.to_vec();
        let changed: Value =
            ccproxy_plugin_abi::serde_json::from_slice(&with_model(body, "claude-sonnet-4-6"))
                .unwrap();
        assert_eq!(
            changed,
            json!({"model": "claude-sonnet-4-6", "max_tokens": 5})
        );
        assert_eq!(with_model(b"[1]".to_vec(), "m"), b"[1]");
    }

    #[test]
    fn settings_read_the_originals_names_and_refuse_unknown_keys() {
        let settings: PoolSettings = ccproxy_plugin_abi::serde_json::from_value(
            json!({"strategy": "round_robin", "cooldown_seconds": 5, "max_failures_before_disable": 3}),
        )
        .unwrap();
        assert_eq!(settings.strategy, Strategy::RoundRobin);
        assert_eq!(settings.failure_status_codes, [401, 403]);
        assert!(
            ccproxy_plugin_abi::serde_json::from_value::<PoolSettings>(json!({"stratgy": "x"}))
                .is_err()
        );
    }
}
