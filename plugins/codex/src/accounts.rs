//! `[[plugins.codex.accounts]]`: several credentials with failover (issue
//! 12), on `kit::accounts`. Without accounts the plugin keeps its one
//! credential (the `oauth.codex` login) exactly as before.

use std::time::Duration;

use ccproxy_plugin_abi::{Context, PluginError, ProviderAttempt, Value, json, warn};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Pick},
    mask::{Secret, mask},
};
use serde::{Deserialize, Serialize};

use crate::{auth, auth::Credential, config::Config};

/// One entry of `[[plugins.codex.accounts]]`: exactly one of
/// `access_token`, `access_token_env`, `oauth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AccountConfig {
    /// Shown in health and logs; default `account-N` (from 1).
    pub(crate) label: String,
    /// A bearer token for the backend (an API key, or a ChatGPT access
    /// token kept up to date elsewhere).
    pub(crate) access_token: Secret,
    /// The environment variable holding the token.
    pub(crate) access_token_env: String,
    /// The ChatGPT account (workspace) sent as `chatgpt-account-id` with a
    /// token; empty: none.
    pub(crate) account_id: String,
    /// The `ccproxy auth login codex` login (the `oauth.codex` service).
    pub(crate) oauth: bool,
}

/// Where one account's credential comes from.
#[derive(Debug, Clone)]
pub(crate) enum AccountCredential {
    /// A token read at start, with its ChatGPT account.
    Token(Secret, Option<String>),
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
                "plugins.codex.accounts: label {label:?} is used twice; give each account its own"
            )));
        }
        let sources = [
            !account.access_token.is_empty(),
            !account.access_token_env.is_empty(),
            account.oauth,
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(PluginError::invalid(format!(
                "plugins.codex.accounts {label}: set exactly one of access_token, access_token_env, oauth = true"
            )));
        }
        let account_id = Some(account.account_id.trim().to_owned()).filter(|id| !id.is_empty());
        let credential = if account.oauth {
            AccountCredential::OAuth
        } else if !account.access_token.is_empty() {
            AccountCredential::Token(account.access_token.clone(), account_id)
        } else {
            let token = std::env::var(&account.access_token_env).unwrap_or_default();
            if token.trim().is_empty() {
                return Err(PluginError::invalid(format!(
                    "plugins.codex.accounts {label}: environment variable {} is empty or unset",
                    account.access_token_env
                )));
            }
            AccountCredential::Token(Secret::new(token), account_id)
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
/// refused credential). `Ok(Err(..))`: nothing to send, with the message and
/// when to come back.
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
            if attempt.previous_status == 0 {
                "no answer".to_owned()
            } else {
                format!("status {}", attempt.previous_status)
            },
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
                let resolved = match account.credential() {
                    AccountCredential::Token(token, account_id) => Ok(Credential {
                        access_token: token.clone(),
                        account_id: account_id.clone(),
                    }),
                    AccountCredential::OAuth => auth::resolve(ctx).await,
                };
                match resolved {
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

/// What health shows of an account's credential: its kind and, for a
/// token, the masked form.
pub(crate) fn describe(credential: &AccountCredential) -> Value {
    match credential {
        AccountCredential::Token(token, account_id) => json!({"kind": "token",
            "token": mask(token.expose()), "chatgpt_account": account_id.is_some()}),
        AccountCredential::OAuth => json!({"kind": "oauth"}),
    }
}
