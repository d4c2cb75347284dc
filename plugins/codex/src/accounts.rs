//! `[[plugins.codex.accounts]]`: several credentials with failover (issue
//! 12), on `kit::accounts`. Without accounts the plugin keeps its one
//! credential (the `oauth.codex` login) exactly as before.

use ccproxy_plugin_abi::{Context, PluginError, ProviderAttempt, Value, json};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Chosen, Exhausted, Source, Unresolved, entry_source},
    mask::{Secret, mask},
};
use serde::{Deserialize, Serialize};

use crate::{auth, auth::Credential, config::Config};

/// Where errors about the entries point.
const SECTION: &str = "plugins.codex.accounts";

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
                ["access_token", "access_token_env"],
                !account.access_token.is_empty(),
                &account.access_token_env,
                account.oauth,
            )?;
            let account_id = Some(account.account_id.trim().to_owned()).filter(|id| !id.is_empty());
            Ok(match source {
                Source::OAuth => AccountCredential::OAuth,
                Source::Inline => {
                    AccountCredential::Token(account.access_token.clone(), account_id)
                }
                Source::Env(token) => AccountCredential::Token(Secret::new(token), account_id),
            })
        },
    )
}

/// Notes the previous attempt's failure, then picks the next account whose
/// credential can be had (an OAuth account without a login counts as a
/// refused credential). `Ok(Err(..))`: nothing to send, with the message and
/// when to come back.
pub(crate) async fn choose(
    pool: &AccountPool<AccountCredential>,
    ctx: &Context,
    attempt: Option<&ProviderAttempt>,
) -> Result<Result<Chosen<Credential>, Exhausted>, PluginError> {
    pool.choose(attempt, "credential", |credential| {
        let credential = credential.clone();
        async move {
            match credential {
                AccountCredential::Token(access_token, account_id) => Ok(Credential {
                    access_token,
                    account_id,
                }),
                AccountCredential::OAuth => auth::resolve(ctx).await.map_err(Unresolved::refused),
            }
        }
    })
    .await
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
