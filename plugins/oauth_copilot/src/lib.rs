//! # oauth_copilot: GitHub Copilot credentials for the `copilot` provider
//!
//! Logs in to GitHub with the device flow (`ccproxy auth login copilot`: the
//! CLI shows a code to enter at GitHub's verification page and polls until
//! the user has entered it), stores the GitHub token, and exchanges it for the
//! short-lived Copilot token the Copilot API takes (GET `copilot_token_url`
//! with the GitHub token → `{token, expires_at, refresh_in, endpoints:
//! {api}}`). The Copilot token is kept in memory and exchanged again
//! `refresh_in` seconds after it was issued, or `refresh_grace_seconds`
//! before it expires, whichever comes first: once for any number of
//! concurrent requests (single flight).
//!
//! Without a stored login, the GitHub token comes from `COPILOT_GITHUB_TOKEN`,
//! then `GH_TOKEN`, then `GITHUB_TOKEN`, so a headless box needs no login.
//!
//! The GitHub token is stored in
//! `$XDG_DATA_HOME/ccproxy/plugins/oauth_copilot/github_token.json` (folder
//! 0700, file 0600, replaced atomically, never read or written through a
//! symlink). The original keeps it in `~/.config/copilot/credentials.json`;
//! this plugin keeps its files under the XDG data folder the host gives it.
//!
//! ## The service `oauth.copilot`
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `device_code` | – | `{"device_code", "user_code", "verification_uri", "expires_in", "interval"}` |
//! | `device_poll` | `device_code` | `{"status": "pending"}`, `{"status": "slow_down", "interval"}`, or the status with `"status": "ok"` (the token is stored) |
//! | `access_token` | `github_token` (optional) | `{"access_token" (the Copilot token), "api_base", "expires_at_ms"}`; with `github_token`, for that GitHub token instead of the login (an account of the `copilot` plugin's `[[accounts]]`) |
//! | `refresh` | – | status, after a forced exchange |
//! | `status` | – | `{"logged_in", "source", "github_token" (masked), "copilot_token" (masked), "expires_at_ms", "api_base", "file"}` |
//! | `token` | – | the Copilot token's facts, token masked (for `/copilot/token`) |
//! | `usage` | – | GitHub's `copilot_internal/user` answer (for `/copilot/usage`) |
//! | `invalidate` | `github_token` (optional) | `{"invalidated": true}`: the cached Copilot token (of that GitHub token) is dropped (the Copilot API refused it) |
//! | `logout` | – | `{"logged_in": false}` |
//!
//! `device_poll` fails with a clear message when GitHub answers
//! `expired_token` (the code expired: start again) or `access_denied` (the
//! user cancelled). The CLI owns the polling loop (its `interval`, +5 s on
//! `slow_down`). Only `access_token` ever answers with a token in clear; logs
//! never show one.
//!
//! A GitHub token given with `access_token` (the `copilot` plugin's accounts)
//! gets its own Copilot token, cached and exchanged again on the same terms
//! as the login's, with its own single flight: one account's slow or refused
//! exchange holds up no other. They are kept in memory only, by a
//! fingerprint of the GitHub token.
#![forbid(unsafe_code)]

mod store;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ccproxy_plugin_abi::{manifest::OAuthSpec, prelude::*, serde_json};
use ccproxy_plugin_kit::{
    mask::Secret,
    now_ms,
    oauth::{emit_refresh, form_encode, unauthorized, upstream_message},
    single_flight::{Answered, SingleFlight, TokenSource},
};
use serde::{Deserialize, Serialize};

use crate::store::TokenStore;

/// The service this plugin answers.
const SERVICE: &str = "oauth.copilot";
/// The OAuth provider name on the CLI and in events.
const PROVIDER: &str = "copilot";
const LOGIN_HINT: &str = "run `ccproxy auth login copilot`, or set COPILOT_GITHUB_TOKEN";
const NOT_LOGGED_IN: &str = "not logged in to GitHub Copilot: run `ccproxy auth login copilot`, or set COPILOT_GITHUB_TOKEN (or GH_TOKEN, GITHUB_TOKEN) to a GitHub token with Copilot access";
/// The variables a GitHub token is read from when no login is stored, in order.
pub const TOKEN_VARIABLES: [&str; 3] = ["COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"];
/// After a failed exchange, `access_token` answers with that failure for
/// this long instead of asking GitHub again on every request.
const RETRY_EXCHANGE_AFTER: Duration = Duration::from_secs(10);
/// The device flow's grant type (RFC 8628).
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `[plugins.oauth_copilot]`, with the original's defaults (its
/// `CopilotOAuthConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The Copilot editor plugins' GitHub OAuth app.
    pub(crate) client_id: String,
    /// Where the device flow starts.
    pub(crate) device_code_url: String,
    /// The original's name for `device_code_url`; wins when not empty. (Not
    /// a serde alias: the host knows a plugin's keys by its defaults.)
    pub(crate) authorize_url: String,
    /// Where the device code is polled for the GitHub token.
    pub(crate) token_url: String,
    /// Where the GitHub token is exchanged for a Copilot token.
    pub(crate) copilot_token_url: String,
    /// The Copilot account's details and quotas (`/copilot/usage`).
    pub(crate) usage_url: String,
    pub(crate) scopes: Vec<String>,
    /// Exchange again this long before the Copilot token expires (when
    /// GitHub's `refresh_in` has not come first).
    pub(crate) refresh_grace_seconds: u64,
    pub(crate) request_timeout_seconds: u64,
    /// The headers sent with the exchange, as the Copilot editor plugin.
    pub(crate) editor_version: String,
    pub(crate) editor_plugin_version: String,
    pub(crate) user_agent: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_id: "Iv1.b507a08c87ecfe98".to_owned(),
            device_code_url: "https://github.com/login/device/code".to_owned(),
            authorize_url: String::new(),
            token_url: "https://github.com/login/oauth/access_token".to_owned(),
            copilot_token_url: "https://api.github.com/copilot_internal/v2/token".to_owned(),
            usage_url: "https://api.github.com/copilot_internal/user".to_owned(),
            scopes: vec!["read:user".to_owned()],
            refresh_grace_seconds: 120,
            request_timeout_seconds: 30,
            editor_version: "vscode/1.85.0".to_owned(),
            editor_plugin_version: "copilot-chat/0.26.7".to_owned(),
            user_agent: "GitHubCopilotChat/0.26.7".to_owned(),
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        for (key, url) in [
            ("device_code_url", &self.device_code_url()),
            ("token_url", &self.token_url),
            ("copilot_token_url", &self.copilot_token_url),
            ("usage_url", &self.usage_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(PluginError::invalid(format!(
                    "plugins.oauth_copilot.{key} must be an http(s) URL, not {url:?}"
                )));
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(PluginError::invalid(
                "plugins.oauth_copilot.client_id must not be empty",
            ));
        }
        if self.request_timeout_seconds == 0 {
            return Err(PluginError::invalid(
                "plugins.oauth_copilot.request_timeout_seconds must be at least 1",
            ));
        }
        Ok(())
    }

    /// `authorize_url` when set, else `device_code_url`.
    fn device_code_url(&self) -> String {
        if self.authorize_url.trim().is_empty() {
            self.device_code_url.clone()
        } else {
            self.authorize_url.clone()
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

/// Where the GitHub token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `ccproxy auth login copilot`.
    Login,
    /// An environment variable (its name).
    Env(&'static str),
    /// A GitHub token given with `access_token` (a `copilot` account).
    Given,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Login => "login".to_owned(),
            Source::Env(name) => format!("env {name}"),
            Source::Given => "given".to_owned(),
        }
    }
}

/// A Copilot token from the exchange.
#[derive(Debug, Clone)]
struct CopilotToken {
    token: Secret,
    expires_at_ms: u64,
    /// When to exchange again (GitHub's `refresh_in` after issue).
    refresh_at_ms: u64,
    /// `endpoints.api`: the Copilot API for this account.
    api_base: Option<String>,
    /// The GitHub token it was exchanged for (a new login drops it).
    github_fingerprint: String,
}

/// The GitHub token, and the Copilot token exchanged for it when there is one.
#[derive(Debug, Clone)]
struct Login {
    github: Secret,
    source: Source,
    copilot: Option<CopilotToken>,
}

/// GitHub's exchange answer.
#[derive(Deserialize)]
struct ExchangeAnswer {
    #[serde(default)]
    token: Secret,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    refresh_in: Option<i64>,
    #[serde(default)]
    endpoints: Option<Endpoints>,
}

#[derive(Deserialize)]
struct Endpoints {
    #[serde(default)]
    api: Option<String>,
}

/// The plugin.
struct OAuthCopilot {
    ctx: Context,
    config: Config,
    store: TokenStore,
    /// The GitHub token from the environment, by [`TOKEN_VARIABLES`] order.
    env_token: Option<(&'static str, Secret)>,
    /// The last Copilot token, in memory only.
    copilot: Mutex<Option<CopilotToken>>,
    flight: SingleFlight,
    /// The Copilot tokens of GitHub tokens given with `access_token`, by
    /// [`fingerprint`].
    given: Mutex<HashMap<String, Arc<GivenAccount>>>,
}

/// A GitHub token given with `access_token` and its Copilot token.
struct GivenAccount {
    github: Secret,
    copilot: Mutex<Option<CopilotToken>>,
    flight: SingleFlight,
}

/// [`TokenSource`] of a given GitHub token: exchanged as the login's is.
struct GivenSource<'a> {
    plugin: &'a OAuthCopilot,
    account: &'a GivenAccount,
}

/// The `github_token` argument of `access_token` and `invalidate`, when given.
fn given_token(args: &Value) -> Option<Secret> {
    args.get("github_token")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(Secret::new)
}

/// A short, non-secret tag of a token, to tell whether a cached Copilot
/// token belongs to the current GitHub token.
fn fingerprint(token: &Secret) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in token.expose().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The first of [`TOKEN_VARIABLES`] that is set and not blank, read by `get`.
fn token_from_env(get: impl Fn(&str) -> Option<String>) -> Option<(&'static str, Secret)> {
    TOKEN_VARIABLES.iter().find_map(|name| {
        get(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(|value| (*name, Secret::new(value)))
    })
}

impl OAuthCopilot {
    fn cached(&self) -> Option<CopilotToken> {
        self.copilot.lock().ok().and_then(|cached| cached.clone())
    }

    fn set_cached(&self, token: Option<CopilotToken>) {
        if let Ok(mut cached) = self.copilot.lock() {
            *cached = token;
        }
    }

    /// The GitHub token: the stored login, else the environment's.
    fn github_token(&self) -> Result<(Secret, Source), PluginError> {
        if let Some(token) = self.store.load()? {
            return Ok((token, Source::Login));
        }
        self.env_token
            .clone()
            .map(|(name, token)| (token, Source::Env(name)))
            .ok_or_else(|| unauthorized(NOT_LOGGED_IN))
    }

    fn github_headers(&self, request: HttpRequest, github: &Secret) -> HttpRequest {
        HttpRequest {
            timeout: Some(self.config.timeout()),
            ..request
                .header("authorization", format!("Bearer {}", github.expose()))
                .header("accept", "application/json")
                .header("editor-version", self.config.editor_version.clone())
                .header(
                    "editor-plugin-version",
                    self.config.editor_plugin_version.clone(),
                )
                .header("user-agent", self.config.user_agent.clone())
        }
    }

    /// GET `copilot_token_url` with the GitHub token.
    async fn exchange(&self, github: &Secret) -> Result<CopilotToken, PluginError> {
        let request = self.github_headers(
            HttpRequest::get(self.config.copilot_token_url.clone()),
            github,
        );
        let response = self.ctx.http(request).await.map_err(|error| {
            PluginError::new(
                ErrorKind::Upstream,
                format!(
                    "the Copilot token exchange at {} failed: {}",
                    self.config.copilot_token_url,
                    error.message()
                ),
            )
        })?;
        let reason = || {
            upstream_message(
                &response.body,
                &[
                    "/message",
                    "/error_details/message",
                    "/error/message",
                    "/error",
                ],
            )
        };
        match response.status {
            200..=299 => {}
            401 => {
                return Err(unauthorized(format!(
                    "GitHub refused the GitHub token (401: {}): it is invalid or revoked; {LOGIN_HINT}",
                    reason()
                )));
            }
            403 | 404 => {
                return Err(PluginError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "this GitHub account has no GitHub Copilot access (GitHub answered {}: {}): subscribe to Copilot at https://github.com/features/copilot, or log in with an account that has it (`ccproxy auth login copilot`)",
                        response.status,
                        reason()
                    ),
                ));
            }
            status => {
                return Err(PluginError::new(
                    ErrorKind::Upstream,
                    format!(
                        "the Copilot token exchange answered {status}: {}; try again later",
                        reason()
                    ),
                ));
            }
        }
        let answer: ExchangeAnswer = serde_json::from_slice(&response.body).map_err(|error| {
            PluginError::new(
                ErrorKind::Upstream,
                format!("the Copilot token exchange answered an unreadable body: {error}"),
            )
        })?;
        if answer.token.expose().trim().is_empty() {
            return Err(PluginError::new(
                ErrorKind::Upstream,
                "the Copilot token exchange answered without a token",
            ));
        }
        let now = now_ms();
        let expires_at_ms = answer.expires_at.map_or(now + 25 * 60_000, |at| {
            u64::try_from(at).unwrap_or(0) * 1000
        });
        let refresh_at_ms = match answer.refresh_in {
            Some(seconds) => now.saturating_add_signed(seconds.saturating_mul(1000)),
            None => expires_at_ms,
        };
        Ok(CopilotToken {
            token: answer.token,
            expires_at_ms,
            refresh_at_ms,
            api_base: answer
                .endpoints
                .and_then(|endpoints| endpoints.api)
                .map(|api| api.trim_end_matches('/').to_owned())
                .filter(|api| !api.is_empty()),
            github_fingerprint: fingerprint(github),
        })
    }

    fn status_of(&self) -> Value {
        let file = self.store.path().display().to_string();
        match self.github_token() {
            Ok((github, source)) => {
                let copilot = self
                    .cached()
                    .filter(|token| token.github_fingerprint == fingerprint(&github));
                json!({
                    "logged_in": true,
                    "source": source.describe(),
                    "github_token": github.masked(),
                    "copilot_token": copilot.as_ref().map(|token| token.token.masked()),
                    "expires_at_ms": copilot.as_ref().map(|token| token.expires_at_ms),
                    "api_base": copilot.as_ref().and_then(|token| token.api_base.clone()),
                    // Where the token is stored: only a login is.
                    "file": (source == Source::Login).then_some(file),
                })
            }
            Err(_) => json!({
                "logged_in": false,
                "source": null,
                "github_token": null,
                "copilot_token": null,
                "expires_at_ms": null,
                "api_base": null,
                "file": file,
            }),
        }
    }

    /// `device_code`: starts the device flow.
    async fn device_code(&self) -> Result<Value, PluginError> {
        let body = form_encode(&[
            ("client_id", &self.config.client_id),
            ("scope", &self.config.scopes.join(" ")),
        ]);
        let response = self.post_form(&self.config.device_code_url(), body).await?;
        if !(200..300).contains(&response.status) {
            return Err(PluginError::new(
                ErrorKind::Upstream,
                format!(
                    "GitHub refused to start the device flow ({}: {})",
                    response.status,
                    upstream_message(
                        &response.body,
                        &["/error_description", "/error", "/message"]
                    )
                ),
            ));
        }
        let answer: Value = serde_json::from_slice(&response.body).map_err(|error| {
            PluginError::upstream(format!(
                "GitHub's device code answer is unreadable: {error}"
            ))
        })?;
        for key in ["device_code", "user_code", "verification_uri"] {
            if !answer[key].is_string() {
                return Err(PluginError::upstream(format!(
                    "GitHub's device code answer has no {key}"
                )));
            }
        }
        Ok(json!({
            "device_code": answer["device_code"],
            "user_code": answer["user_code"],
            "verification_uri": answer["verification_uri"],
            "expires_in": answer["expires_in"].as_u64().unwrap_or(900),
            "interval": answer["interval"].as_u64().unwrap_or(5),
        }))
    }

    /// `device_poll`: asks once whether the user has entered the code.
    async fn device_poll(&self, args: Value) -> Result<Value, PluginError> {
        let device_code = args["device_code"]
            .as_str()
            .filter(|code| !code.is_empty())
            .ok_or_else(|| PluginError::invalid("device_poll needs a device_code"))?;
        let body = form_encode(&[
            ("client_id", &self.config.client_id),
            ("device_code", device_code),
            ("grant_type", DEVICE_GRANT),
        ]);
        self.ctx.emit(
            "oauth.token.request",
            json!({"provider": PROVIDER, "url": self.config.token_url}),
        );
        let response = self.post_form(&self.config.token_url, body).await?;
        let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if let Some(token) = answer["access_token"].as_str().filter(|t| !t.is_empty()) {
            let _writer = self.flight.exclusive().await;
            self.store.save(&Secret::new(token))?;
            self.set_cached(None);
            self.ctx.emit(
                "oauth.token.response",
                json!({"provider": PROVIDER, "ok": true}),
            );
            info!(
                "logged in to GitHub for Copilot; the GitHub token is stored in {}",
                self.store.path().display()
            );
            let mut status = self.status_of();
            status["status"] = json!("ok");
            return Ok(status);
        }
        let error = answer["error"].as_str().unwrap_or("");
        let description = answer["error_description"].as_str().unwrap_or("");
        match error {
            "authorization_pending" => Ok(json!({"status": "pending"})),
            "slow_down" => Ok(json!({"status": "slow_down", "interval": answer["interval"]})),
            _ => {
                let message = match error {
                    "expired_token" => "the device code expired before it was entered; run `ccproxy auth login copilot` again".to_owned(),
                    "access_denied" => "the login was cancelled at GitHub (access_denied); nothing was stored".to_owned(),
                    "" => format!(
                        "GitHub's token endpoint answered {} without a token: {}",
                        response.status,
                        upstream_message(&response.body, &["/message", "/error"])
                    ),
                    other if description.is_empty() => {
                        format!("GitHub refused the device login: {other}")
                    }
                    other => format!("GitHub refused the device login: {other} ({description})"),
                };
                self.ctx.emit(
                    "oauth.error",
                    json!({"provider": PROVIDER, "phase": "token", "error": error}),
                );
                Err(unauthorized(message))
            }
        }
    }

    async fn post_form(&self, url: &str, body: String) -> Result<HttpResponse, PluginError> {
        let request = HttpRequest {
            timeout: Some(self.config.timeout()),
            ..HttpRequest::post(url.to_owned(), body)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .header("user-agent", self.config.user_agent.clone())
        };
        self.ctx.http(request).await.map_err(|error| {
            PluginError::new(
                ErrorKind::Upstream,
                format!("GitHub at {url} could not be reached: {}", error.message()),
            )
        })
    }

    /// The entry of a given GitHub token, made on first use.
    fn given_account(&self, github: &Secret) -> Arc<GivenAccount> {
        let mut given = self
            .given
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        given
            .entry(fingerprint(github))
            .or_insert_with(|| {
                Arc::new(GivenAccount {
                    github: github.clone(),
                    copilot: Mutex::new(None),
                    flight: SingleFlight::new(RETRY_EXCHANGE_AFTER),
                })
            })
            .clone()
    }

    /// `access_token`: a Copilot token that is not due for an exchange, of
    /// the login or of the GitHub token in `args`.
    async fn access_token(&self, args: &Value) -> Result<Value, PluginError> {
        let login = match given_token(args) {
            Some(github) => {
                let account = self.given_account(&github);
                let source = GivenSource {
                    plugin: self,
                    account: &account,
                };
                account.flight.get(&source).await?
            }
            None => self.flight.get(self).await?,
        };
        let copilot = login
            .copilot
            .ok_or_else(|| PluginError::internal("the Copilot token exchange left no token"))?;
        if copilot.expires_at_ms <= now_ms() {
            return Err(unauthorized(format!(
                "the Copilot token has expired and the exchange just made gave an expired one again (expires_at {} s); check this machine's clock, or {LOGIN_HINT}",
                copilot.expires_at_ms / 1000
            )));
        }
        Ok(json!({
            "access_token": copilot.token.expose(),
            "api_base": copilot.api_base,
            "expires_at_ms": copilot.expires_at_ms,
        }))
    }

    /// `token`: the Copilot token's facts, masked (exchanged first if due).
    async fn token_info(&self) -> Result<Value, PluginError> {
        let login = self.flight.get(self).await?;
        let copilot = login.copilot.as_ref();
        Ok(json!({
            "source": login.source.describe(),
            "github_token": login.github.masked(),
            "token": copilot.map(|token| token.token.masked()),
            "expires_at": copilot.map(|token| token.expires_at_ms / 1000),
            "refresh_at": copilot.map(|token| token.refresh_at_ms / 1000),
            "expired": copilot.is_none_or(|token| token.expires_at_ms <= now_ms()),
            "api_base": copilot.and_then(|token| token.api_base.clone()),
        }))
    }

    /// `usage`: GitHub's account and quota answer, as it is.
    async fn usage(&self) -> Result<Value, PluginError> {
        let (github, _) = self.github_token()?;
        let request = self.github_headers(HttpRequest::get(self.config.usage_url.clone()), &github);
        let response = self.ctx.http(request).await.map_err(|error| {
            PluginError::upstream(format!(
                "GitHub at {} could not be reached: {}",
                self.config.usage_url,
                error.message()
            ))
        })?;
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        match response.status {
            200..=299 => Ok(body),
            401 => Err(unauthorized(format!(
                "GitHub refused the GitHub token (401); {LOGIN_HINT}"
            ))),
            403 | 404 => Err(PluginError::new(
                ErrorKind::Forbidden,
                format!(
                    "this GitHub account has no GitHub Copilot access (GitHub answered {})",
                    response.status
                ),
            )),
            status => Err(PluginError::upstream(format!(
                "GitHub's Copilot usage answered {status}"
            ))),
        }
    }
}

impl TokenSource for OAuthCopilot {
    type Login = Login;

    fn load_login(&self) -> Result<Login, PluginError> {
        let (github, source) = self.github_token()?;
        let copilot = self
            .cached()
            .filter(|token| token.github_fingerprint == fingerprint(&github));
        Ok(Login {
            github,
            source,
            copilot,
        })
    }

    fn needs_refresh(&self, login: &Login) -> bool {
        let now = now_ms();
        login.copilot.as_ref().is_none_or(|token| {
            now >= token.refresh_at_ms
                || token.expires_at_ms <= now + self.config.refresh_grace_seconds * 1000
        })
    }

    fn still_valid(&self, login: &Login) -> bool {
        login
            .copilot
            .as_ref()
            .is_some_and(|token| token.expires_at_ms > now_ms())
    }

    async fn refresh(&self, current: &Login, answered: Answered<'_>) -> Result<Login, PluginError> {
        let result = self.exchange(&current.github).await;
        answered.now();
        emit_refresh(&self.ctx, PROVIDER, result.is_ok());
        let token = result?;
        info!(
            "exchanged the GitHub token for a Copilot token valid for {} s",
            token.expires_at_ms.saturating_sub(now_ms()) / 1000
        );
        self.set_cached(Some(token.clone()));
        Ok(Login {
            copilot: Some(token),
            ..current.clone()
        })
    }
}

impl TokenSource for GivenSource<'_> {
    type Login = Login;

    fn load_login(&self) -> Result<Login, PluginError> {
        let copilot = self
            .account
            .copilot
            .lock()
            .ok()
            .and_then(|cached| cached.clone());
        Ok(Login {
            github: self.account.github.clone(),
            source: Source::Given,
            copilot,
        })
    }

    fn needs_refresh(&self, login: &Login) -> bool {
        self.plugin.needs_refresh(login)
    }

    fn still_valid(&self, login: &Login) -> bool {
        self.plugin.still_valid(login)
    }

    async fn refresh(&self, current: &Login, answered: Answered<'_>) -> Result<Login, PluginError> {
        let result = self.plugin.exchange(&current.github).await;
        answered.now();
        emit_refresh(&self.plugin.ctx, PROVIDER, result.is_ok());
        let token = result?;
        debug!(
            "exchanged a configured GitHub token ({}) for a Copilot token valid for {} s",
            current.github.masked(),
            token.expires_at_ms.saturating_sub(now_ms()) / 1000
        );
        if let Ok(mut cached) = self.account.copilot.lock() {
            *cached = Some(token.clone());
        }
        Ok(Login {
            copilot: Some(token),
            ..current.clone()
        })
    }
}

impl Plugin for OAuthCopilot {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("oauth_copilot", env!("CARGO_PKG_VERSION"))
            .description("GitHub Copilot credentials: GitHub device-flow login, GitHub token storage, single-flight Copilot token exchange")
            .kind(PluginKind::AuthProvider)
            .cli_safe()
            .oauth(OAuthSpec {
                provider_name: PROVIDER.to_owned(),
                display_name: "GitHub Copilot".to_owned(),
                supports_pkce: false,
                supports_refresh: true,
                scopes: Config::default().scopes,
            })
            .provides(SERVICE)
            .config_key("client_id", "the GitHub OAuth app of the device flow (the Copilot editor plugins')")
            .config_key("device_code_url", "where the device flow starts")
            .config_key("authorize_url", "the original's name for device_code_url; wins when not empty")
            .config_key("token_url", "where the device code is polled for the GitHub token")
            .config_key("copilot_token_url", "where the GitHub token is exchanged for a Copilot token")
            .config_key("usage_url", "the Copilot account and quota answer served at /copilot/usage")
            .config_key("scopes", "scopes asked for at login")
            .config_key("refresh_grace_seconds", "exchange again this many seconds before the Copilot token expires")
            .config_key("request_timeout_seconds", "timeout of each request to GitHub")
            .config_key("editor_version", "editor-version header of the exchange")
            .config_key("editor_plugin_version", "editor-plugin-version header of the exchange")
            .config_key("user_agent", "user-agent of requests to GitHub")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        config.validate()?;
        let store = TokenStore::new(ctx.data_dir().join("github_token.json"));
        let env_token = token_from_env(|name| std::env::var(name).ok());
        let state = match store.load() {
            Ok(Some(_)) => "logged in".to_owned(),
            Ok(None) => match &env_token {
                Some((name, _)) => format!("not logged in; using the GitHub token in {name}"),
                None => "not logged in".to_owned(),
            },
            Err(error) => {
                warn!("{error}");
                "unreadable".to_owned()
            }
        };
        info!("oauth_copilot using {} ({state})", store.path().display());
        Ok(Self {
            ctx,
            config,
            store,
            env_token,
            copilot: Mutex::new(None),
            flight: SingleFlight::new(RETRY_EXCHANGE_AFTER),
            given: Mutex::new(HashMap::new()),
        })
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        if call.service != SERVICE {
            return Err(PluginError::not_found(format!(
                "oauth_copilot provides {SERVICE}, not {}",
                call.service
            )));
        }
        match call.method.as_str() {
            "device_code" => self.device_code().await,
            "device_poll" => self.device_poll(call.args).await,
            "access_token" => self.access_token(&call.args).await,
            "refresh" => {
                self.flight.force(self).await?;
                Ok(self.status_of())
            }
            "status" => Ok(self.status_of()),
            // The Copilot API refused the token: the next `access_token`
            // exchanges again (through the single flight).
            "invalidate" => {
                match given_token(&call.args) {
                    Some(github) => {
                        if let Some(account) = self
                            .given
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .get(&fingerprint(&github))
                            && let Ok(mut cached) = account.copilot.lock()
                        {
                            *cached = None;
                        }
                    }
                    None => self.set_cached(None),
                }
                Ok(json!({"invalidated": true}))
            }
            "token" => self.token_info().await,
            "usage" => self.usage().await,
            "logout" => {
                let _writer = self.flight.exclusive().await;
                self.store.remove()?;
                self.set_cached(None);
                info!(
                    "logged out of GitHub Copilot: removed {}",
                    self.store.path().display()
                );
                Ok(json!({ "logged_in": false }))
            }
            "authorize_url" | "exchange" => Err(PluginError::invalid(
                "GitHub Copilot logs in with GitHub's device flow, not a browser callback: run `ccproxy auth login copilot`",
            )),
            other => Err(PluginError::not_found(format!(
                "{SERVICE} has no method {other} (it has device_code, device_poll, access_token, refresh, status, invalidate, token, usage, logout)"
            ))),
        }
    }

    async fn on_health(&self) -> Health {
        let status = self.status_of();
        if status["logged_in"] == true {
            Health::with(HealthStatus::Healthy, status)
        } else {
            let mut status = status;
            status["reason"] = json!(NOT_LOGGED_IN);
            Health::with(HealthStatus::Degraded, status)
        }
    }
}

export_plugin!(OAuthCopilot);

#[cfg(test)]
mod tests;
