//! `[[plugins.copilot.accounts]]`: several GitHub accounts with failover
//! (issue 12), on `kit::accounts`. Each account is a GitHub token; the
//! `oauth_copilot` plugin exchanges each for its own Copilot token (cached,
//! refreshed, single flight per GitHub token). Without accounts the plugin
//! keeps its one login (the stored one, else `COPILOT_GITHUB_TOKEN`,
//! `GH_TOKEN`, `GITHUB_TOKEN`) exactly as before.

use ccproxy_plugin_abi::{Context, ErrorKind, PluginError, ProviderAttempt, Value, json, warn};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Chosen, Exhausted, Source, Unresolved, entry_source},
    mask::{Secret, mask},
};
use serde::{Deserialize, Serialize};

/// Added to an account's label for the attempt that follows its 401 with a
/// freshly exchanged Copilot token: a 401 of that attempt is the account's
/// failure, not an expired token.
pub(crate) const RENEWED: &str = "#renewed";

/// Where errors about the entries point.
const SECTION: &str = "plugins.copilot.accounts";

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
    let entries = accounts
        .iter()
        .map(|account| (account.label.as_str(), account));
    AccountPool::from_entries(SECTION, entries, settings.clone(), |label, account| {
        if label.contains(RENEWED) {
            return Err(PluginError::invalid(format!(
                "{SECTION}: label {label:?} may not contain {RENEWED:?}"
            )));
        }
        let source = entry_source(
            SECTION,
            label,
            ["github_token", "github_token_env"],
            !account.github_token.is_empty(),
            &account.github_token_env,
            account.oauth,
        )?;
        Ok(match source {
            Source::OAuth => AccountCredential::OAuth,
            Source::Inline => AccountCredential::GitHubToken {
                token: Secret::new(account.github_token.expose().trim()),
                from: "github_token".to_owned(),
            },
            Source::Env(token) => AccountCredential::GitHubToken {
                token: Secret::new(token.trim()),
                from: format!("env {}", account.github_token_env),
            },
        })
    })
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
/// the message and when to come back. The chosen label has [`RENEWED`] on
/// the attempt after a 401; its credential is the `oauth.copilot` answer.
pub(crate) async fn choose(
    pool: &AccountPool<AccountCredential>,
    ctx: &Context,
    service: &str,
    attempt: Option<&ProviderAttempt>,
) -> Result<Result<Chosen<Value>, Exhausted>, PluginError> {
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
                            credential: token,
                            delay: None,
                        }));
                    }
                    Err(error) => {
                        warn!("account {label}: no new Copilot token: {}", error.message());
                        pool.report_failure(label, exchange_status(&error), None);
                        previous_label = Some(label);
                    }
                }
            }
        }
        Previous::Failed(label) => {
            let attempt = attempt.expect("a previous account comes with an attempt");
            pool.report_attempt(label, attempt);
            previous_label = Some(label);
        }
    }
    pool.choose_after(previous_label, "Copilot token", |credential| {
        let credential = credential.clone();
        async move {
            token(ctx, service, &credential)
                .await
                .map_err(|error| Unresolved {
                    status: exchange_status(&error),
                    error,
                })
        }
    })
    .await
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
