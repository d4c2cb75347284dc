//! `[[plugins.claude_api.accounts]]`: several credentials with failover
//! (issue 12), on `kit::accounts`. Without accounts the plugin keeps its
//! one credential (`api_key`, `auth_mode`) exactly as before.

use std::time::Duration;

use ccproxy_plugin_abi::{Context, PluginError, ProviderAttempt, Value, json, warn};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Pick},
    mask::mask,
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Credential, Credentials},
    config::{AuthMode, Config, Secret},
};

/// One entry of `[[plugins.claude_api.accounts]]`: exactly one of
/// `api_key`, `api_key_env`, `oauth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AccountConfig {
    /// Shown in health and logs; default `account-N` (from 1).
    pub(crate) label: String,
    /// An Anthropic API key.
    pub(crate) api_key: Secret,
    /// The environment variable holding the API key.
    pub(crate) api_key_env: String,
    /// The `ccproxy auth login claude-api` login (the `oauth.claude-api` service).
    pub(crate) oauth: bool,
}

/// Where one account's credential comes from.
#[derive(Debug, Clone)]
pub(crate) enum AccountCredential {
    /// An API key, read at start.
    ApiKey(Secret),
    /// The OAuth login, asked for a token per request.
    OAuth,
}

/// The pool, or `None` when no accounts are configured.
pub(crate) fn pool(config: &Config) -> Result<Option<AccountPool<AccountCredential>>, PluginError> {
    if config.accounts.is_empty() {
        return Ok(None);
    }
    let mut accounts = Vec::with_capacity(config.accounts.len());
    for (index, account) in config.accounts.iter().enumerate() {
        let label = if account.label.trim().is_empty() {
            format!("account-{}", index + 1)
        } else {
            account.label.trim().to_owned()
        };
        if accounts.iter().any(|(seen, _)| *seen == label) {
            return Err(PluginError::invalid(format!(
                "plugins.claude_api.accounts: label {label:?} is used twice; give each account its own"
            )));
        }
        let sources = [
            !account.api_key.is_empty(),
            !account.api_key_env.is_empty(),
            account.oauth,
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(PluginError::invalid(format!(
                "plugins.claude_api.accounts {label}: set exactly one of api_key, api_key_env, oauth = true"
            )));
        }
        let credential = if account.oauth {
            AccountCredential::OAuth
        } else if !account.api_key.is_empty() {
            AccountCredential::ApiKey(account.api_key.clone())
        } else {
            let key = std::env::var(&account.api_key_env).unwrap_or_default();
            if key.trim().is_empty() {
                return Err(PluginError::invalid(format!(
                    "plugins.claude_api.accounts {label}: environment variable {} is empty or unset",
                    account.api_key_env
                )));
            }
            AccountCredential::ApiKey(Secret::new(key))
        };
        accounts.push((label, credential));
    }
    Ok(Some(AccountPool::new(accounts, config.failover.clone())))
}

/// The credential, account label and wait chosen for one attempt.
pub(crate) struct Chosen {
    pub(crate) credential: Credential,
    pub(crate) label: String,
    pub(crate) delay: Option<Duration>,
}

/// Notes the previous attempt's failure, then picks the next account whose
/// credential can be had (an OAuth account without a login counts as a
/// refused credential and the next one is tried). `Ok(Err(..))`: nothing to
/// send, with the message and when to come back.
pub(crate) async fn choose(
    pool: &AccountPool<AccountCredential>,
    ctx: &Context,
    attempt: Option<&ProviderAttempt>,
) -> Result<Result<Chosen, (String, Option<Duration>)>, PluginError> {
    let mut previous = None;
    if let Some(attempt) = attempt
        && let Some(label) = attempt.previous_account.as_deref()
    {
        let retry_after = attempt.retry_after_ms.map(Duration::from_millis);
        pool.report_failure(label, attempt.previous_status, retry_after);
        warn!(
            "account {label} failed with {} (attempt {}); trying the next",
            status_text(attempt.previous_status),
            attempt.number.saturating_sub(1)
        );
        previous = Some(label.to_owned());
    }
    let mut last_error = None;
    for _ in 0..pool.len() {
        match pool.pick(previous.as_deref()) {
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
                match resolve(account.credential(), ctx).await {
                    Ok(credential) => {
                        return Ok(Ok(Chosen {
                            credential,
                            label,
                            delay,
                        }));
                    }
                    Err(error) => {
                        warn!("account {label} has no credential: {}", error.message());
                        pool.report_failure(&label, 401, None);
                        last_error = Some(error);
                        previous = Some(label);
                    }
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| PluginError::unauthorized("no account has a credential")))
}

/// An account's credential for one request.
async fn resolve(credential: &AccountCredential, ctx: &Context) -> Result<Credential, PluginError> {
    match credential {
        AccountCredential::ApiKey(key) => Ok(Credential::ApiKey(key.clone())),
        AccountCredential::OAuth => {
            Credentials {
                mode: AuthMode::OAuth,
                api_key: Secret::default(),
                api_key_env: String::new(),
            }
            .resolve(ctx)
            .await
        }
    }
}

/// What health shows of an account's credential: its kind and, for a key,
/// the masked form.
pub(crate) fn describe(credential: &AccountCredential) -> Value {
    match credential {
        AccountCredential::ApiKey(key) => json!({"kind": "api_key", "key": mask(key.expose())}),
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
