//! `[[plugins.claude_api.accounts]]`: several credentials with failover
//! (issue 12), on `kit::accounts`. Without accounts the plugin keeps its
//! one credential (`api_key`, `auth_mode`) exactly as before.

use ccproxy_plugin_abi::{Context, PluginError, ProviderAttempt, Value, json};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Chosen, Exhausted, Source, Unresolved, entry_source},
    mask::mask,
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Credential, Credentials},
    config::{AuthMode, Config, Secret},
};

/// Where errors about the entries point.
const SECTION: &str = "plugins.claude_api.accounts";

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
    let entries = config
        .accounts
        .iter()
        .map(|account| (account.label.as_str(), account));
    AccountPool::from_entries(
        SECTION,
        entries,
        config.failover.clone(),
        |label, account| {
            let source = entry_source(
                SECTION,
                label,
                ["api_key", "api_key_env"],
                !account.api_key.is_empty(),
                &account.api_key_env,
                account.oauth,
            )?;
            Ok(match source {
                Source::OAuth => AccountCredential::OAuth,
                Source::Inline => AccountCredential::ApiKey(account.api_key.clone()),
                Source::Env(key) => AccountCredential::ApiKey(Secret::new(key)),
            })
        },
    )
}

/// Notes the previous attempt's failure, then picks the next account whose
/// credential can be had (an OAuth account without a login counts as a
/// refused credential and the next one is tried). `Ok(Err(..))`: nothing to
/// send, with the message and when to come back.
pub(crate) async fn choose(
    pool: &AccountPool<AccountCredential>,
    ctx: &Context,
    attempt: Option<&ProviderAttempt>,
) -> Result<Result<Chosen<Credential>, Exhausted>, PluginError> {
    pool.choose(attempt, "credential", |credential| {
        let credential = credential.clone();
        async move { resolve(&credential, ctx).await.map_err(Unresolved::refused) }
    })
    .await
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
