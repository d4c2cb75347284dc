//! `[[plugins.copilot.accounts]]`: several GitHub accounts with failover
//! (issue 12), on `kit::accounts`. Each account is a GitHub token; the
//! `oauth_copilot` plugin exchanges each for its own Copilot token (cached,
//! refreshed, single flight per GitHub token). Without accounts the plugin
//! keeps its one login (the stored one, else `COPILOT_GITHUB_TOKEN`,
//! `GH_TOKEN`, `GITHUB_TOKEN`) exactly as before.

use std::time::Duration;

use ccproxy_plugin_abi::{Context, ErrorKind, PluginError, ProviderAttempt, Value, json, warn};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Pick},
    mask::{Secret, mask},
};
use serde::{Deserialize, Serialize};

/// Added to an account's label for the attempt that follows its 401 with a
/// freshly exchanged Copilot token: a 401 of that attempt is the account's
/// failure, not an expired token.
pub(crate) const RENEWED: &str = "#renewed";

/// One entry of `[[plugins.copilot.accounts]]`: exactly one of
/// `github_token`, `github_token_env`, `oauth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AccountConfig {
    /// Shown in health and logs; default `account-N` (from 1).
    pub(crate) label: String,
    /// A GitHub token with Copilot access.
    pub(crate) github_token: Secret,
    /// The environment variable holding the GitHub token.
    pub(crate) github_token_env: String,
    /// The `ccproxy auth login copilot` login (or the environment's token,
    /// as without accounts).
    pub(crate) oauth: bool,
}

/// Where one account's GitHub token comes from.
#[derive(Debug, Clone)]
pub(crate) enum AccountCredential {
    /// A GitHub token, read at start; `from` says where (no secret).
    GitHubToken { token: Secret, from: String },
    /// The `oauth.copilot` login.
    OAuth,
}

impl AccountCredential {
    /// The `oauth.copilot` arguments that name this account's GitHub token.
    pub(crate) fn service_args(&self) -> Value {
        match self {
            Self::GitHubToken { token, .. } => json!({"github_token": token.expose()}),
            Self::OAuth => json!({}),
        }
    }
}

/// The pool, or `None` when no accounts are configured.
pub(crate) fn pool(
    accounts: &[AccountConfig],
    settings: &ccproxy_plugin_kit::accounts::PoolSettings,
) -> Result<Option<AccountPool<AccountCredential>>, PluginError> {
    if accounts.is_empty() {
        return Ok(None);
    }
    let mut pool = Vec::with_capacity(accounts.len());
    for (index, account) in accounts.iter().enumerate() {
        let label = if account.label.trim().is_empty() {
            format!("account-{}", index + 1)
        } else {
            account.label.trim().to_owned()
        };
        if label.contains(RENEWED) {
            return Err(PluginError::invalid(format!(
                "plugins.copilot.accounts: label {label:?} may not contain {RENEWED:?}"
            )));
        }
        if pool.iter().any(|(seen, _)| *seen == label) {
            return Err(PluginError::invalid(format!(
                "plugins.copilot.accounts: label {label:?} is used twice; give each account its own"
            )));
        }
        let sources = [
            !account.github_token.is_empty(),
            !account.github_token_env.is_empty(),
            account.oauth,
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(PluginError::invalid(format!(
                "plugins.copilot.accounts {label}: set exactly one of github_token, github_token_env, oauth = true"
            )));
        }
        let credential = if account.oauth {
            AccountCredential::OAuth
        } else if !account.github_token.is_empty() {
            AccountCredential::GitHubToken {
                token: Secret::new(account.github_token.expose().trim()),
                from: "github_token".to_owned(),
            }
        } else {
            let token = std::env::var(&account.github_token_env).unwrap_or_default();
            if token.trim().is_empty() {
                return Err(PluginError::invalid(format!(
                    "plugins.copilot.accounts {label}: environment variable {} is empty or unset",
                    account.github_token_env
                )));
            }
            AccountCredential::GitHubToken {
                token: Secret::new(token.trim()),
                from: format!("env {}", account.github_token_env),
            }
        };
        pool.push((label, credential));
    }
    Ok(Some(AccountPool::new(pool, settings.clone())))
}

/// The account chosen for one attempt.
pub(crate) struct Chosen {
    /// The label told to the host (with [`RENEWED`] on the attempt after
    /// a 401).
    pub(crate) label: String,
    /// Wait this long first.
    pub(crate) delay: Option<Duration>,
    /// The Copilot token it sends, from `oauth.copilot`.
    pub(crate) token: Value,
}

/// What to do after the previous attempt: its account, and whether it asks
/// for its Copilot token to be exchanged again and tried once more.
pub(crate) enum Previous<'a> {
    /// A first attempt.
    None,
    /// The account's Copilot API answered 401: its Copilot token is renewed
    /// and the same account tried once more.
    Renew(&'a str),
    /// The account failed: reported to the pool, and the next one tried.
    Failed(&'a str),
}

/// Reads the previous attempt: a first 401 of an account renews its token.
pub(crate) fn previous(attempt: Option<&ProviderAttempt>) -> Previous<'_> {
    let Some(label) = attempt.and_then(|attempt| attempt.previous_account.as_deref()) else {
        return Previous::None;
    };
    let status = attempt.map_or(0, |attempt| attempt.previous_status);
    match label.strip_suffix(RENEWED) {
        Some(label) => Previous::Failed(label),
        None if status == 401 => Previous::Renew(label),
        None => Previous::Failed(label),
    }
}

/// The status an account's failed token exchange counts as: refused (401),
/// no Copilot access (403), or none at all (0: GitHub unreachable or
/// failing, which says nothing of the account).
fn exchange_status(error: &PluginError) -> u16 {
    match error.kind() {
        ErrorKind::Unauthorized => 401,
        ErrorKind::Forbidden => 403,
        _ => 0,
    }
}

/// Notes the previous attempt's failure, then picks the next account whose
/// GitHub token gets a Copilot token (one refused counts as a failed
/// account and the next one is tried). `Ok(Err(..))`: nothing to send, with
/// the message and when to come back.
pub(crate) async fn choose(
    pool: &AccountPool<AccountCredential>,
    ctx: &Context,
    service: &str,
    attempt: Option<&ProviderAttempt>,
) -> Result<Result<Chosen, (String, Option<Duration>)>, PluginError> {
    let mut previous_label = None;
    match previous(attempt) {
        Previous::None => {}
        Previous::Renew(label) => {
            if let Some(account) = pool.get(label) {
                warn!(
                    "account {label}: the Copilot API refused its Copilot token (401); exchanging it again"
                );
                let args = account.credential().service_args();
                ctx.call_service(service, "invalidate", args).await?;
                match token(ctx, service, account.credential()).await {
                    Ok(token) => {
                        return Ok(Ok(Chosen {
                            label: format!("{label}{RENEWED}"),
                            delay: None,
                            token,
                        }));
                    }
                    Err(error) => {
                        warn!("account {label}: no new Copilot token: {}", error.message());
                        pool.report_failure(label, exchange_status(&error), None);
                        previous_label = Some(label.to_owned());
                    }
                }
            }
        }
        Previous::Failed(label) => {
            let attempt = attempt.expect("a previous account comes with an attempt");
            let retry_after = attempt.retry_after_ms.map(Duration::from_millis);
            pool.report_failure(label, attempt.previous_status, retry_after);
            warn!(
                "account {label} failed with {} (attempt {}); trying the next",
                status_text(attempt.previous_status),
                attempt.number.saturating_sub(1)
            );
            previous_label = Some(label.to_owned());
        }
    }
    let mut last_error = None;
    for _ in 0..pool.len() {
        match pool.pick(previous_label.as_deref()) {
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
                match token(ctx, service, account.credential()).await {
                    Ok(token) => {
                        return Ok(Ok(Chosen {
                            label,
                            delay,
                            token,
                        }));
                    }
                    Err(error) => {
                        warn!("account {label} has no Copilot token: {}", error.message());
                        pool.report_failure(&label, exchange_status(&error), None);
                        last_error = Some(error);
                        previous_label = Some(label);
                    }
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| PluginError::unauthorized("no account has a Copilot token")))
}

/// The `access_token` answer of `service` for an account.
async fn token(
    ctx: &Context,
    service: &str,
    credential: &AccountCredential,
) -> Result<Value, PluginError> {
    ctx.call_service(service, "access_token", credential.service_args())
        .await
}

/// What health shows of an account's credential: where its GitHub token
/// comes from and, for a configured one, its masked form.
pub(crate) fn describe(credential: &AccountCredential) -> Value {
    match credential {
        AccountCredential::GitHubToken { token, from } => {
            json!({"kind": "github_token", "from": from, "github_token": mask(token.expose())})
        }
        AccountCredential::OAuth => json!({"kind": "oauth"}),
    }
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no answer".to_owned()
    } else {
        format!("status {status}")
    }
}
