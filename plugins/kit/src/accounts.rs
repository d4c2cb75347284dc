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
//! A provider plugin builds its pool from `[[plugins.NAME.accounts]]` with
//! [`AccountPool::from_entries`] and [`entry_source`], has each attempt's
//! account from [`AccountPool::choose`], gives the host the retry plan with
//! [`PoolSettings::plan`] and shows the pool with
//! [`AccountPool::plugin_health`]: what stays in the plugin is its kinds of
//! credential and how one becomes what a request sends.
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

use ccproxy_plugin_abi::{
    Health, HealthStatus, PluginError, ProviderAttempt, UpstreamRequest, Value, json, warn,
};
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

impl PoolSettings {
    /// The retry plan of a prepared request. On a retry (`retry`) the body
    /// asks for `fallback_model` and the client sees that model's own id (no
    /// alias). With an account (`(label, max_attempts, delay)`: the plugin
    /// counts its attempts, e.g. copilot adds its token renewals) the host is
    /// told its label, the attempts and the wait; without one, a fallback
    /// model still earns one more attempt, else there is nothing to retry.
    pub fn plan(
        &self,
        mut upstream: UpstreamRequest,
        retry: bool,
        account: Option<(String, u32, Duration)>,
    ) -> UpstreamRequest {
        let fallback_model = &self.fallback_model;
        if retry && !fallback_model.is_empty() {
            upstream.body = with_model(upstream.body, fallback_model);
            upstream.model_alias = None;
        }
        match account {
            Some((label, max_attempts, delay)) => upstream
                .with_account(label)
                .with_retries(max_attempts)
                .after(delay),
            None if !fallback_model.is_empty() => upstream.with_retries(2),
            None => upstream,
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

/// The label of entry `index` (from 0) of `section` (`plugins.NAME.accounts`):
/// its own, trimmed, else `account-N` (from 1). One that an entry before it
/// (in `earlier`) has is refused, since the host tells failures back by
/// label and health shows accounts by it.
fn entry_label<C>(
    section: &str,
    index: usize,
    label: &str,
    earlier: &[(String, C)],
) -> Result<String, PluginError> {
    let label = if label.trim().is_empty() {
        format!("account-{}", index + 1)
    } else {
        label.trim().to_owned()
    };
    if earlier.iter().any(|(seen, _)| *seen == label) {
        return Err(PluginError::invalid(format!(
            "{section}: label {label:?} is used twice; give each account its own"
        )));
    }
    Ok(label)
}

/// Where an entry's credential comes from, as [`entry_source`] found it.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The secret written in the entry (the plugin reads its own field).
    Inline,
    /// The secret read from the entry's environment variable (not blank).
    Env(String),
    /// The plugin's login (`oauth = true`).
    OAuth,
}

/// The one credential source an entry of `section` (`plugins.NAME.accounts`)
/// sets: its inline secret (`inline_set`), its environment variable
/// (`env_variable`, empty: none) or `oauth`; `names` are the first two's
/// keys, for the error. Two would leave unclear which one the account
/// uses; the variable is read once now, and unset or blank refused rather
/// than sent as an empty credential per request.
pub fn entry_source(
    section: &str,
    label: &str,
    names: [&str; 2],
    inline_set: bool,
    env_variable: &str,
    oauth: bool,
) -> Result<Source, PluginError> {
    let set = [inline_set, !env_variable.is_empty(), oauth];
    if set.iter().filter(|set| **set).count() != 1 {
        let [inline, env] = names;
        return Err(PluginError::invalid(format!(
            "{section} {label}: set exactly one of {inline}, {env}, oauth = true"
        )));
    }
    if oauth {
        return Ok(Source::OAuth);
    }
    if inline_set {
        return Ok(Source::Inline);
    }
    let value = std::env::var(env_variable).unwrap_or_default();
    if value.trim().is_empty() {
        return Err(PluginError::invalid(format!(
            "{section} {label}: environment variable {env_variable} is empty or unset"
        )));
    }
    Ok(Source::Env(value))
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

/// The account [`AccountPool::choose`] chose for one attempt.
#[derive(Debug)]
pub struct Chosen<R> {
    /// Its label, for `UpstreamRequest::with_account`.
    pub label: String,
    /// What the plugin's `resolve` made of its credential (what is sent).
    pub credential: R,
    /// Wait this long first (its rest ends then).
    pub delay: Option<Duration>,
}

/// Why the plugin's `resolve` could not have an account's credential: the
/// error, and the status the account's failure counts as in the pool.
#[derive(Debug)]
pub struct Unresolved {
    /// The error, returned when no account is left to try.
    pub error: PluginError,
    /// As in [`AccountPool::report_failure`]: 401 for a refused
    /// credential, 0 for a failure that says nothing about the account.
    pub status: u16,
}

impl Unresolved {
    /// A credential that cannot be had counts as refused (401): a missing
    /// login needs the user as much as a rejected key does.
    pub fn refused(error: PluginError) -> Self {
        Self { error, status: 401 }
    }
}

/// No account can take the attempt: the message for the client and when to
/// come back (`UpstreamRequest::exhausted`).
pub type Exhausted = (String, Option<Duration>);

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

    /// The pool of a plugin's `[[plugins.NAME.accounts]]` entries (`section`
    /// names them in errors), `None` when there are none (the plugin keeps
    /// its single credential then). Each entry comes with its configured
    /// label; the pool gives it `account-N` when blank and refuses one used
    /// twice (failures come back by label), then `credential` makes the
    /// entry's credential, checking what is particular to the plugin.
    pub fn from_entries<'a, E: 'a>(
        section: &str,
        entries: impl IntoIterator<Item = (&'a str, E)>,
        settings: PoolSettings,
        mut credential: impl FnMut(&str, E) -> Result<C, PluginError>,
    ) -> Result<Option<Self>, PluginError> {
        let mut accounts = Vec::new();
        for (index, (label, entry)) in entries.into_iter().enumerate() {
            let label = entry_label(section, index, label, &accounts)?;
            let credential = credential(&label, entry)?;
            accounts.push((label, credential));
        }
        if accounts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::new(accounts, settings)))
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

    /// Notes the failure the host tells of in `attempt` (a retry) as the
    /// failure of account `label`, with a warning naming it. `label` is
    /// usually `attempt.previous_account`; a plugin that marks its labels
    /// (copilot's renewed token) passes the account's own.
    pub fn report_attempt(&self, label: &str, attempt: &ProviderAttempt) {
        let retry_after = attempt.retry_after_ms.map(Duration::from_millis);
        self.report_failure(label, attempt.previous_status, retry_after);
        let status = match attempt.previous_status {
            0 => "no answer".to_owned(),
            status => format!("status {status}"),
        };
        warn!(
            "account {label} failed with {status} (attempt {}); trying the next",
            attempt.number.saturating_sub(1)
        );
    }

    /// The account for an attempt: notes the previous attempt's failure
    /// ([`AccountPool::report_attempt`]), then
    /// [`AccountPool::choose_after`] it.
    pub async fn choose<R, Fut>(
        &self,
        attempt: Option<&ProviderAttempt>,
        what: &str,
        resolve: impl FnMut(&C) -> Fut,
    ) -> Result<Result<Chosen<R>, Exhausted>, PluginError>
    where
        Fut: Future<Output = Result<R, Unresolved>>,
    {
        let previous = attempt.and_then(|attempt| {
            let label = attempt.previous_account.as_deref()?;
            self.report_attempt(label, attempt);
            Some(label)
        });
        self.choose_after(previous, what, resolve).await
    }

    /// Picks accounts after `previous` (as [`AccountPool::pick`]) until
    /// `resolve` has one's credential: one it cannot have (`what`, e.g.
    /// "credential", names it in the warning) is reported with its
    /// [`Unresolved::status`] and the next one is tried, so a missing
    /// login does not fail a request another account can serve.
    /// `Ok(Err(..))`: every account rests or is disabled; `Err`: the last
    /// account's error when none could be had. `resolve`'s future owns what
    /// it needs (clone the credential): an async closure borrowing it fails
    /// the lifetime bounds of the SDK's handler futures (a rustc limit).
    pub async fn choose_after<R, Fut>(
        &self,
        previous: Option<&str>,
        what: &str,
        mut resolve: impl FnMut(&C) -> Fut,
    ) -> Result<Result<Chosen<R>, Exhausted>, PluginError>
    where
        Fut: Future<Output = Result<R, Unresolved>>,
    {
        let mut previous = previous.map(str::to_owned);
        let mut last_error = None;
        for _ in 0..self.len() {
            match self.pick(previous.as_deref()) {
                Pick::Exhausted {
                    retry_after,
                    message,
                } => {
                    return match last_error {
                        Some(error) => Err(error),
                        None => Ok(Err((message, retry_after))),
                    };
                }
                Pick::Use { account, delay } => {
                    let label = account.label().to_owned();
                    match resolve(account.credential()).await {
                        Ok(credential) => {
                            return Ok(Ok(Chosen {
                                label,
                                credential,
                                delay,
                            }));
                        }
                        Err(Unresolved { error, status }) => {
                            warn!("account {label} has no {what}: {}", error.message());
                            self.report_failure(&label, status, None);
                            last_error = Some(error);
                            previous = Some(label);
                        }
                    }
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| PluginError::unauthorized(format!("no account has a {what}"))))
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

    /// The plugin's `/plugins/{name}/health` while it has accounts:
    /// `details` with `accounts` ([`AccountPool::health`]). Degraded, saying
    /// why, when no account can take a request now: not unhealthy, since
    /// rests end by themselves and clients are told when to come back.
    pub fn plugin_health(&self, mut details: Value, describe: impl Fn(&C) -> Value) -> Health {
        let available = self.available() > 0;
        details["accounts"] = self.health(describe);
        if available {
            return Health::with(HealthStatus::Healthy, details);
        }
        details["reason"] = json!("no account can take a request now");
        Health::with(HealthStatus::Degraded, details)
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

    fn pool_of(labels: &[&str]) -> (AccountPool<String>, Clock) {
        pool(labels, PoolSettings::default())
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

    /// `resolve` of the tests: "secret-b" cannot be had (as a missing
    /// login), "secret-c" fails with a status that says nothing of it.
    #[expect(clippy::ptr_arg, reason = "the test pool's credential is a String")]
    fn resolve(secret: &String) -> impl Future<Output = Result<String, Unresolved>> + use<> {
        let result = match secret.as_str() {
            "secret-b" => Err(Unresolved::refused(PluginError::unauthorized("no login"))),
            "secret-c" => Err(Unresolved {
                error: PluginError::unavailable("GitHub is down"),
                status: 0,
            }),
            secret => Ok(format!("sent-{secret}")),
        };
        std::future::ready(result)
    }

    /// The output of a future that is ready at once (the tests' `resolve`).
    trait Ready: Future + Sized {
        fn ready(self) -> Self::Output {
            use futures_util::FutureExt;
            self.now_or_never().expect("ready at once")
        }
    }
    impl<F: Future> Ready for F {}

    fn retry(previous: &str, status: u16, retry_after_ms: Option<u64>) -> ProviderAttempt {
        ProviderAttempt {
            number: 2,
            previous_status: status,
            previous_account: Some(previous.to_owned()),
            retry_after_ms,
        }
    }

    #[test]
    fn choose_reports_the_retry_and_skips_accounts_without_a_credential() {
        let (pool, clock) = pool(&["a", "b", "c", "d"], PoolSettings::default());
        let first = pool.choose(None, "credential", resolve).ready();
        let chosen = first.unwrap().unwrap();
        assert_eq!(
            (
                chosen.label.as_str(),
                chosen.credential.as_str(),
                chosen.delay
            ),
            ("a", "sent-secret-a", None)
        );
        // "a" answered 429: it rests; "b" has no login (counted as refused),
        // "c" could not be asked (not counted); "d" is sent.
        let attempt = retry("a", 429, Some(30_000));
        let chosen = pool
            .choose(Some(&attempt), "credential", resolve)
            .ready()
            .unwrap()
            .unwrap();
        assert_eq!((chosen.label.as_str(), chosen.delay), ("d", None));
        let health = pool.health(|_| json!({}));
        assert_eq!(health["accounts"][0]["cooling_seconds_left"], 30);
        assert_eq!(health["accounts"][1]["state"], "cooling");
        assert_eq!(health["accounts"][1]["last_failure_status"], 401);
        assert_eq!(health["accounts"][1]["failures"], 1);
        assert_eq!(health["accounts"][2]["state"], "available");
        assert_eq!(health["accounts"][2]["last_failure_status"], 0);
        // "d" fails too: only "c" is in turn and it cannot be had, so its
        // error is the answer.
        let attempt = retry("d", 529, None);
        let error = pool
            .choose(Some(&attempt), "credential", resolve)
            .ready()
            .unwrap_err();
        assert_eq!(error.message(), "GitHub is down");
        // Once the rests are over, "a" is back first.
        clock.advance(Duration::from_secs(60));
        let chosen = pool.choose(None, "credential", resolve).ready();
        assert_eq!(chosen.unwrap().unwrap().label, "a");
    }

    #[test]
    fn choose_answers_exhausted_or_waits_for_a_short_rest() {
        let settings = PoolSettings {
            max_retry_wait_seconds: 5,
            ..PoolSettings::default()
        };
        let (pool, clock) = pool(&["a"], settings);
        let attempt = retry("a", 429, Some(3_000));
        let chosen = pool
            .choose(Some(&attempt), "credential", resolve)
            .ready()
            .unwrap()
            .unwrap();
        assert_eq!(chosen.delay, Some(Duration::from_secs(3)));
        clock.advance(Duration::from_secs(3));
        let attempt = retry("a", 429, Some(20_000));
        let (message, retry_after) = pool
            .choose(Some(&attempt), "credential", resolve)
            .ready()
            .unwrap()
            .unwrap_err();
        assert_eq!(retry_after, Some(Duration::from_secs(20)));
        assert!(message.contains("cooling down"), "{message}");
        // An account the previous attempt used is not asked again at once.
        let (pool, _) = pool_of(&["a", "e"]);
        let chosen = pool
            .choose_after(Some("a"), "credential", resolve)
            .ready()
            .unwrap()
            .unwrap();
        assert_eq!(chosen.label, "e");
    }

    #[test]
    fn choose_with_no_credential_anywhere_answers_the_last_error() {
        let (pool, _) = pool_of(&["b"]);
        let error = pool
            .choose(None, "Copilot token", resolve)
            .ready()
            .unwrap_err();
        assert_eq!(error.message(), "no login");
        assert_eq!(pool.available(), 0);
    }

    #[test]
    fn entries_get_checked_labels_one_source_and_a_set_variable() {
        let section = "plugins.x.accounts";
        let earlier = vec![("account-1".to_owned(), ())];
        assert_eq!(
            entry_label(section, 1, "  ", &earlier).unwrap(),
            "account-2"
        );
        assert_eq!(entry_label(section, 1, " team ", &earlier).unwrap(), "team");
        let twice = entry_label(section, 1, "account-1", &earlier).unwrap_err();
        assert!(
            twice.message().contains("used twice"),
            "{}",
            twice.message()
        );
        let names = ["key", "key_env"];
        let source = |inline, env, oauth| entry_source(section, "a", names, inline, env, oauth);
        assert_eq!(source(true, "", false).unwrap(), Source::Inline);
        assert_eq!(source(false, "", true).unwrap(), Source::OAuth);
        assert_eq!(
            source(false, "PATH", false).unwrap(),
            Source::Env(std::env::var("PATH").unwrap())
        );
        let both = source(true, "PATH", false).unwrap_err();
        assert_eq!(
            both.message(),
            "plugins.x.accounts a: set exactly one of key, key_env, oauth = true"
        );
        assert!(source(false, "", false).is_err());
        let unset = source(false, "CCPROXY_KIT_TEST_UNSET_VARIABLE", false).unwrap_err();
        assert!(
            unset.message().contains("empty or unset"),
            "{}",
            unset.message()
        );
        let entries = [("", 1), (" b ", 2)];
        let pool =
            AccountPool::from_entries(section, entries, PoolSettings::default(), |label, n| {
                Ok(format!("{label}={n}"))
            })
            .unwrap()
            .expect("a pool");
        assert_eq!(pool.get("account-1").unwrap().credential(), "account-1=1");
        assert_eq!(pool.get("b").unwrap().credential(), "b=2");
        let twice = AccountPool::from_entries(
            section,
            [("b", ()), ("b", ())],
            PoolSettings::default(),
            |_, ()| Ok(()),
        );
        assert!(twice.is_err());
        let none: [(&str, ()); 0] = [];
        let empty =
            AccountPool::from_entries(section, none, PoolSettings::default(), |_, ()| Ok(()));
        assert!(empty.unwrap().is_none());
    }

    #[test]
    fn the_plan_names_the_account_and_asks_a_retry_for_the_fallback_model() {
        let upstream = || UpstreamRequest {
            body: br#"{"model":"opus"}"#.to_vec(),
            model_alias: Some("alias".to_owned()),
            ..UpstreamRequest::default()
        };
        let settings = PoolSettings::default();
        let first = settings.plan(upstream(), false, Some(("a".to_owned(), 3, Duration::ZERO)));
        assert_eq!(first.account.as_deref(), Some("a"));
        assert_eq!(first.retry.map(|retry| retry.max_attempts), Some(3));
        assert_eq!(
            (first.delay, first.model_alias.as_deref()),
            (None, Some("alias"))
        );
        assert!(settings.plan(upstream(), true, None).retry.is_none());
        let settings = PoolSettings {
            fallback_model: "sonnet".to_owned(),
            ..PoolSettings::default()
        };
        let retry = settings.plan(
            upstream(),
            true,
            Some(("b".to_owned(), 3, Duration::from_secs(2))),
        );
        assert_eq!(retry.body, br#"{"model":"sonnet"}"#);
        assert_eq!(
            (retry.delay, retry.model_alias),
            (Some(Duration::from_secs(2)), None)
        );
        let single = settings.plan(upstream(), false, None);
        assert_eq!(single.retry.map(|retry| retry.max_attempts), Some(2));
        assert_eq!(single.body, br#"{"model":"opus"}"#);
    }

    #[test]
    fn plugin_health_is_degraded_with_a_reason_while_no_account_can_serve() {
        let (pool, clock) = pool_of(&["a", "b"]);
        pool.report_failure("a", 429, Some(Duration::from_secs(10)));
        let plugin = pool.plugin_health(json!({"base_url": "u"}), |_| json!({}));
        assert_eq!(plugin.status, HealthStatus::Healthy);
        assert!(plugin.details.get("reason").is_none());
        assert_eq!(
            plugin.details["accounts"]["accounts"][0]["state"],
            "cooling"
        );
        pool.report_failure("b", 401, None);
        pool.report_failure("b", 401, None);
        let plugin = pool.plugin_health(json!({"base_url": "u"}), |_| json!({}));
        assert_eq!(plugin.status, HealthStatus::Degraded);
        assert_eq!(plugin.details["base_url"], "u");
        assert_eq!(
            plugin.details["accounts"]["accounts"][1]["state"],
            "disabled"
        );
        assert_eq!(
            plugin.details["reason"],
            "no account can take a request now"
        );
        clock.advance(Duration::from_secs(10));
        let plugin = pool.plugin_health(json!({}), |_| json!({}));
        assert_eq!(plugin.status, HealthStatus::Healthy);
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
