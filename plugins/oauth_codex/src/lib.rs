//! # oauth_codex: OpenAI Codex (ChatGPT plan) OAuth for the `codex` provider
//!
//! Logs in to OpenAI with the Codex CLI's OAuth client (PKCE), stores the
//! tokens, and hands out a valid access token with the ChatGPT account id it
//! belongs to, refreshing the token first when it is about to expire. It
//! proxies nothing: the host CLI drives the login (`ccproxy auth login
//! codex`) and the `codex` provider asks for tokens, both through the service
//! `oauth.codex`.
//!
//! By default the tokens live in the Codex CLI's own file,
//! `~/.codex/auth.json` (`$CODEX_HOME/auth.json` when `CODEX_HOME` is set,
//! as for the Codex CLI; `credentials_file` overrides both), so an existing
//! `codex login` just works, and a refresh by either program is seen by the
//! other: the file is read again whenever it changes, and written atomically
//! (`.tmp`, mode 0600, fsync, rename), keeping keys that are not this
//! plugin's. When the access token expires and which ChatGPT account it is
//! for come from its JWT claims (`exp`, and `chatgpt_account_id` under
//! `https://api.openai.com/auth`); the signature is not verified.
//!
//! ## The service `oauth.codex`
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `authorize_url` | `state`, `code_challenge` (S256), `redirect_uri`?, `manual`? | `{"url", "redirect_uri"}` |
//! | `exchange` | `code` (or a pasted `code#state`), `state`, `code_verifier`, `redirect_uri`?, `manual`? | status |
//! | `access_token` | – | `{"access_token", "account_id", "expires_at_ms", "plan_type"}` |
//! | `refresh` | – | status, after a forced refresh |
//! | `status` | – | `{"logged_in", "expires_at_ms", "expired", "account_id", "subscription_type", "access_token" (masked), "last_refresh", "file"}` |
//! | `logout` | – | `{"logged_in": false}` |
//!
//! `redirect_uri` defaults to the config's `redirect_uri`, or to
//! `manual_redirect_uri` with `manual: true` (and, for `exchange`, when the
//! code was pasted as `code#state`). `access_token` refreshes when the token
//! expires within `refresh_grace_seconds`, once for any number of concurrent
//! callers, and emits `custom.oauth.refresh` (`{"provider": "codex", "ok":
//! bool}`) after each refresh request. Every token request is also reported
//! as the host's hook events `oauth.token.request`/`.response` (a login) or
//! `oauth.refresh.request`/`.response`, and `oauth.error`, without secrets. After a failed refresh it answers with
//! that failure for 10 s rather than ask again on every request (a token that
//! is still valid is served meanwhile). Only `access_token` ever answers with
//! a token in clear; logs never show one.
//!
//! Build it with `cargo build -p ccproxy-plugin-oauth-codex` (the host finds
//! bundled plugins next to its binary), then:
//!
//! ```text
//! ccproxy auth login codex          # browser; the callback listens on localhost:1455
//! ccproxy auth status codex
//! ```
//!
//! and expect at startup:
//!
//! ```text
//! INFO plugin: oauth_codex using /home/ada/.codex/auth.json (logged in) plugin="oauth_codex"
//! ```
#![forbid(unsafe_code)]

mod jwt;
mod oauth;
mod store;

use std::{ffi::OsString, path::PathBuf, time::Duration};

use ccproxy_plugin_abi::{Value, manifest::OAuthSpec, prelude::*};
use ccproxy_plugin_kit::{
    now_ms,
    oauth::{
        self as kit_oauth, AuthorizeArgs, ExchangeArgs, Grant, OAuthService, emit_refresh,
        unauthorized,
    },
    secret_file::{expand_home, home_dir},
    single_flight::{Answered, SingleFlight, TokenSource},
};
use serde::{Deserialize, Serialize};

use crate::store::{CredentialStore, Login, Tokens, iso8601_utc};

/// The service this plugin answers.
const SERVICE: &str = "oauth.codex";
/// The OAuth provider name on the CLI and in events.
pub(crate) const PROVIDER: &str = "codex";
const LOGIN_HINT: &str = "run `ccproxy auth login codex` or `codex login`";
const NOT_LOGGED_IN: &str =
    "not logged in to Codex: run `ccproxy auth login codex` or `codex login`";
/// After a failed refresh, `access_token` answers with that failure for this
/// long instead of asking the token endpoint again on every request (a revoked
/// login would otherwise cost one refresh request per proxied request). A new
/// login or a file refreshed by the Codex CLI is still picked up at once.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);
/// The config section, `[plugins.oauth_codex]`.
const SECTION: &str = "oauth_codex";
/// Where OpenAI's OAuth server lives; `authorize_url` and `token_url` under
/// it follow `base_url` when that is changed.
const DEFAULT_BASE_URL: &str = "https://auth.openai.com";

/// `[plugins.oauth_codex]`, with the original's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// OpenAI's OAuth server.
    base_url: String,
    authorize_url: String,
    token_url: String,
    /// The Codex CLI's OAuth client.
    client_id: String,
    scopes: Vec<String>,
    /// The browser flow's callback (the CLI listens there; the Codex client
    /// is registered for port 1455).
    redirect_uri: String,
    /// The manual flow's redirect, the original's
    /// (`https://platform.openai.com/oauth/callback`, its `oauth_codex`
    /// `cli.manual_redirect_uri`). The address the browser lands on carries
    /// `code` and `state`; `ccproxy auth login codex --manual` takes it pasted
    /// whole and checks the state.
    manual_redirect_uri: String,
    /// Empty: `$CODEX_HOME/auth.json`, else `$HOME/.codex/auth.json`, the
    /// Codex CLI's file.
    credentials_file: String,
    refresh_grace_seconds: u64,
    request_timeout_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            authorize_url: format!("{DEFAULT_BASE_URL}/oauth/authorize"),
            token_url: format!("{DEFAULT_BASE_URL}/oauth/token"),
            client_id: "app_EMoamEEZ73f0CkXaXp7hrann".to_owned(),
            scopes: ["openid", "profile", "email", "offline_access"]
                .map(str::to_owned)
                .to_vec(),
            redirect_uri: "http://localhost:1455/auth/callback".to_owned(),
            manual_redirect_uri: "https://platform.openai.com/oauth/callback".to_owned(),
            credentials_file: String::new(),
            refresh_grace_seconds: 120,
            request_timeout_seconds: 30,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        let urls = [
            ("base_url", self.base_url.as_str()),
            ("authorize_url", &self.authorize_url()),
            ("token_url", &self.token_url()),
            ("redirect_uri", &self.redirect_uri),
            ("manual_redirect_uri", &self.manual_redirect_uri),
        ];
        for (key, url) in urls {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(PluginError::invalid(format!(
                    "{key} must be an http(s) URL, not {url:?}"
                )));
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(PluginError::invalid("client_id must not be empty"));
        }
        if self.scopes.is_empty() {
            return Err(PluginError::invalid("scopes must name at least one scope"));
        }
        if self.request_timeout_seconds == 0 {
            return Err(PluginError::invalid(
                "request_timeout_seconds must be at least 1",
            ));
        }
        Ok(())
    }

    fn authorize_url(&self) -> String {
        self.under_base(&self.authorize_url)
    }

    fn token_url(&self) -> String {
        self.under_base(&self.token_url)
    }

    /// `url` resolved against `base_url`: a path (`/oauth/token`) is
    /// appended to it, and a URL still under the default OpenAI server moves
    /// with a changed `base_url` (so one key points both endpoints at a test
    /// server). Any other URL is used as is.
    fn under_base(&self, url: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        if url.starts_with('/') {
            return format!("{base}{url}");
        }
        match url.strip_prefix(DEFAULT_BASE_URL) {
            Some(path)
                if base != DEFAULT_BASE_URL && (path.is_empty() || path.starts_with('/')) =>
            {
                format!("{base}{path}")
            }
            _ => url.to_owned(),
        }
    }
}

/// Where the credentials live: `configured` with `~` expanded, else the
/// Codex CLI's file: `$CODEX_HOME/auth.json`, or `~/.codex/auth.json`.
fn credentials_path(
    configured: &str,
    home: Option<OsString>,
    codex_home: Option<OsString>,
) -> Result<PathBuf, PluginError> {
    if let Some(path) = expand_home(configured, home.as_deref(), SECTION)? {
        return Ok(path);
    }
    if let Some(codex_home) = codex_home.filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(codex_home).join("auth.json"));
    }
    Ok(home_dir(home.as_deref(), SECTION)?
        .join(".codex")
        .join("auth.json"))
}

/// The plugin.
struct OAuthCodex {
    ctx: Context,
    config: Config,
    store: CredentialStore,
    /// One refresh request at a time, its outcome shared; also held while a
    /// login or logout changes the stored credentials.
    flight: SingleFlight,
}

fn token_answer(login: &Login) -> Value {
    json!({
        "access_token": login.tokens.access_token.expose(),
        "account_id": login.tokens.chatgpt_account_id(),
        "expires_at_ms": login.expires_at_ms,
        "plan_type": login.tokens.plan_type(),
    })
}

impl OAuthCodex {
    fn grace_ms(&self) -> u64 {
        self.config.refresh_grace_seconds.saturating_mul(1000)
    }

    fn logged_in(&self) -> Result<Login, PluginError> {
        self.store
            .load()?
            .ok_or_else(|| unauthorized(NOT_LOGGED_IN))
    }

    /// Sends the refresh request and stores the answer. Called by the
    /// single flight, which holds its lock.
    async fn refresh_locked(
        &self,
        current: &Login,
        answered: Answered<'_>,
    ) -> Result<Login, PluginError> {
        if current.tokens.refresh_token.is_empty() {
            return Err(unauthorized(format!(
                "the stored Codex login has no refresh token; {LOGIN_HINT}"
            )));
        }
        let body = oauth::refresh_form(&self.config, &current.tokens.refresh_token);
        let answer = oauth::request_token(&self.ctx, &self.config, Grant::Refresh, body).await;
        answered.now();
        match answer {
            Ok(grant) => {
                emit_refresh(&self.ctx, PROVIDER, true);
                let tokens: Tokens = grant.into_refreshed(&current.tokens);
                let last_refresh = iso8601_utc(now_ms());
                let saved = self.store.save(&tokens, &last_refresh, false);
                let refreshed = Login::new(tokens, Some(last_refresh));
                match saved {
                    Ok(()) => info!(
                        "refreshed the Codex access token; it is valid for {} s",
                        refreshed
                            .expires_at_ms
                            .map_or(0, |at| at.saturating_sub(now_ms()) / 1000)
                    ),
                    // The new token still serves this call. OpenAI rotates
                    // refresh tokens, so the next refresh (with the old one)
                    // will fail and ask for a new login: say so now.
                    Err(error) => error!(
                        "refreshed the Codex access token but could not store it ({error}); the next refresh will need a new login"
                    ),
                }
                Ok(refreshed)
            }
            Err(failure) => {
                emit_refresh(&self.ctx, PROVIDER, false);
                Err(failure.refresh_error("Codex", LOGIN_HINT))
            }
        }
    }

    /// The status object; the token is masked.
    fn status_of(&self, login: Option<&Login>) -> Value {
        let file = self.store.path().display().to_string();
        match login {
            Some(login) => json!({
                "logged_in": true,
                "expires_at_ms": login.expires_at_ms,
                "expired": login.expires_within(now_ms(), 0),
                "account_id": login.tokens.chatgpt_account_id(),
                "subscription_type": login.tokens.plan_type(),
                "access_token": login.tokens.access_token.masked(),
                "last_refresh": login.last_refresh,
                "file": file,
            }),
            None => json!({
                "logged_in": false,
                "expires_at_ms": null,
                "expired": false,
                "account_id": null,
                "subscription_type": null,
                "access_token": null,
                "last_refresh": null,
                "file": file,
            }),
        }
    }
}

impl TokenSource for OAuthCodex {
    type Login = Login;

    fn load_login(&self) -> Result<Login, PluginError> {
        self.logged_in()
    }

    fn needs_refresh(&self, login: &Login) -> bool {
        login.expires_within(now_ms(), self.grace_ms())
    }

    fn still_valid(&self, login: &Login) -> bool {
        !login.expires_within(now_ms(), 0)
    }

    async fn refresh(&self, current: &Login, answered: Answered<'_>) -> Result<Login, PluginError> {
        self.refresh_locked(current, answered).await
    }
}

impl OAuthService for OAuthCodex {
    fn authorize_url(&self, args: AuthorizeArgs) -> Result<Value, PluginError> {
        let redirect_uri =
            args.redirect_uri(&self.config.redirect_uri, &self.config.manual_redirect_uri)?;
        let url = oauth::authorize_url(
            &self.config,
            &args.state,
            &args.code_challenge,
            &redirect_uri,
        );
        Ok(json!({ "url": url, "redirect_uri": redirect_uri }))
    }

    async fn exchange(&self, args: ExchangeArgs) -> Result<Value, PluginError> {
        let exchange = args.check(&self.config.redirect_uri, &self.config.manual_redirect_uri)?;
        let _writer = self.flight.exclusive().await;
        let body = oauth::exchange_form(
            &self.config,
            exchange.code,
            &exchange.redirect_uri,
            &args.code_verifier,
        );
        let grant = oauth::request_token(&self.ctx, &self.config, Grant::Login, body)
            .await
            .map_err(kit_oauth::TokenError::exchange_error)?;
        let tokens = grant.into_login();
        let last_refresh = iso8601_utc(now_ms());
        self.store.save(&tokens, &last_refresh, true)?;
        let login = Login::new(tokens, Some(last_refresh));
        info!(
            "logged in to Codex (ChatGPT plan {}); credentials stored in {}",
            login.tokens.plan_type().as_deref().unwrap_or("unknown"),
            self.store.path().display()
        );
        Ok(self.status_of(Some(&login)))
    }

    /// A valid access token, refreshed first when it expires within the grace
    /// period. Single flight: concurrent callers wait for one refresh request.
    async fn access_token(&self) -> Result<Value, PluginError> {
        let login = self.flight.get(self).await?;
        Ok(token_answer(&login))
    }

    /// `refresh`: a refresh request whatever the expiry.
    async fn refresh(&self) -> Result<Value, PluginError> {
        let refreshed = self.flight.force(self).await?;
        Ok(self.status_of(Some(&refreshed)))
    }

    fn status(&self) -> Result<Value, PluginError> {
        Ok(self.status_of(self.store.load()?.as_ref()))
    }

    async fn logout(&self) -> Result<Value, PluginError> {
        let _writer = self.flight.exclusive().await;
        self.store.remove()?;
        info!(
            "logged out of Codex: removed the credentials from {}",
            self.store.path().display()
        );
        Ok(json!({ "logged_in": false }))
    }
}

impl Plugin for OAuthCodex {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("oauth_codex", env!("CARGO_PKG_VERSION"))
            .description("OpenAI Codex OAuth (ChatGPT plan): login, tokens shared with the Codex CLI, single-flight refresh")
            .kind(PluginKind::AuthProvider)
            .cli_safe()
            .oauth(OAuthSpec {
                provider_name: PROVIDER.to_owned(),
                display_name: "OpenAI Codex".to_owned(),
                supports_pkce: true,
                supports_refresh: true,
                scopes: Config::default().scopes,
            })
            .provides(SERVICE)
            .config_key("base_url", "OpenAI's OAuth server; authorize_url and token_url under the default server follow it")
            .config_key("authorize_url", "the OAuth authorize page (a path is taken under base_url)")
            .config_key("token_url", "the token endpoint, for the code exchange and refresh (a path is taken under base_url)")
            .config_key("client_id", "the OAuth client id (the Codex CLI's)")
            .config_key("redirect_uri", "the browser flow's callback, where the CLI listens (the Codex client allows port 1455)")
            .config_key("manual_redirect_uri", "the manual flow's redirect; paste the address the browser lands on")
            .config_key("scopes", "scopes requested at login and refresh")
            .config_key("credentials_file", "where tokens are stored; empty: $CODEX_HOME/auth.json or ~/.codex/auth.json, shared with the Codex CLI")
            .config_key("refresh_grace_seconds", "refresh a token this many seconds before it expires")
            .config_key("request_timeout_seconds", "timeout of each request to the token endpoint")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        config.validate()?;
        let path = credentials_path(
            &config.credentials_file,
            std::env::var_os("HOME"),
            std::env::var_os("CODEX_HOME"),
        )?;
        let store = CredentialStore::new(path);
        let state = match store.load() {
            Ok(Some(_)) => "logged in",
            Ok(None) => "not logged in",
            Err(error) => {
                warn!("{error}");
                "unreadable"
            }
        };
        info!("oauth_codex using {} ({state})", store.path().display());
        Ok(Self {
            ctx,
            config,
            store,
            flight: SingleFlight::new(RETRY_REFRESH_AFTER),
        })
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        kit_oauth::dispatch("oauth_codex", SERVICE, self, call).await
    }

    async fn on_health(&self) -> Health {
        let file = self.store.path().display().to_string();
        match self.store.load() {
            Ok(Some(login)) if !login.expires_within(now_ms(), 0) => Health::with(
                HealthStatus::Healthy,
                json!({
                    "logged_in": true,
                    "expires_at_ms": login.expires_at_ms,
                    "account_id": login.tokens.chatgpt_account_id(),
                    "subscription_type": login.tokens.plan_type(),
                    "file": file,
                }),
            ),
            Ok(Some(login)) => Health::with(
                HealthStatus::Degraded,
                json!({
                    "logged_in": true,
                    "expires_at_ms": login.expires_at_ms,
                    "reason": "the Codex access token has expired; the next request refreshes it",
                    "file": file,
                }),
            ),
            // Not being logged in is normal for an auth provider until the
            // user logs in: degraded, not unhealthy.
            Ok(None) => Health::with(
                HealthStatus::Degraded,
                json!({ "logged_in": false, "reason": NOT_LOGGED_IN, "file": file }),
            ),
            Err(error) => Health::with(
                HealthStatus::Degraded,
                json!({ "logged_in": false, "reason": error.message(), "file": file }),
            ),
        }
    }
}

export_plugin!(OAuthCodex);

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::PermissionsExt,
        path::PathBuf,
        sync::{
            Arc, Barrier,
            atomic::{AtomicUsize, Ordering},
        },
        thread,
        time::Duration,
    };

    use ccproxy_plugin_abi::{
        HttpRequest, HttpResponse, serde_json,
        testing::{MockHost, TestPlugin},
    };
    use ccproxy_plugin_kit::oauth::REFRESH_EVENT;

    use super::*;
    use crate::jwt::tests::signed_jwt;

    /// The signatures of the test tokens: a token that leaks carries its
    /// signature, a masked one shows only its last 4 characters.
    const ACCESS_SIGNATURE: &str = "old-access-signature-0000-ABCD";
    const NEW_ACCESS_SIGNATURE: &str = "new-access-signature-1111-WXYZ";
    const REFRESH: &str = "rt_old-refresh-token-0000-EFGH";
    const NEW_REFRESH: &str = "rt_new-refresh-token-1111-QRST";
    const ID_SIGNATURE: &str = "old-id-token-signature-0000";
    const NEW_ID_SIGNATURE: &str = "new-id-token-signature-1111";
    const TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
    const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
    const ACCOUNT: &str = "5f1c0a2e-7b3d-4c8a-9e21-acc000000001";
    const NEW_ACCOUNT: &str = "5f1c0a2e-7b3d-4c8a-9e21-acc000000002";
    /// 2100-01-01: the refreshed token's expiry, in seconds.
    const NEW_EXP: u64 = 4_102_444_800;
    /// The PKCE example of RFC 7636, appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn auth_claim(account: &str, plan: &str) -> Value {
        json!({"chatgpt_account_id": account, "chatgpt_plan_type": plan, "chatgpt_user_id": "user-1"})
    }

    /// The access token of the existing login, expiring `expires_in_ms`
    /// from now (JWT `exp` is in whole seconds).
    fn access_token(expires_in_ms: i64) -> String {
        let exp = now_ms().saturating_add_signed(expires_in_ms) / 1000;
        signed_jwt(
            &json!({"exp": exp, "https://api.openai.com/auth": auth_claim(ACCOUNT, "plus")}),
            ACCESS_SIGNATURE,
        )
    }

    fn new_access_token() -> String {
        signed_jwt(
            &json!({"exp": NEW_EXP, "https://api.openai.com/auth": auth_claim(NEW_ACCOUNT, "pro")}),
            NEW_ACCESS_SIGNATURE,
        )
    }

    fn id_token(account: &str, signature: &str) -> String {
        signed_jwt(
            &json!({"email": "ada@example.invalid", "https://api.openai.com/auth": auth_claim(account, "plus")}),
            signature,
        )
    }

    /// A scratch directory for the credentials file: tests never touch the
    /// real `~/.codex`.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Self {
            Self(tempfile::tempdir().expect("a temporary directory"))
        }
        fn file(&self) -> PathBuf {
            self.0.path().join("codex").join("auth.json")
        }
        fn write(&self, document: &Value) {
            let file = self.file();
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            // As the Codex CLI does: a new file renamed over the old one.
            let tmp = self.0.path().join("codex-cli-write.tmp");
            fs::write(&tmp, serde_json::to_vec_pretty(document).unwrap()).unwrap();
            fs::rename(tmp, file).unwrap();
        }
        fn read(&self) -> Value {
            serde_json::from_slice(&fs::read(self.file()).unwrap()).unwrap()
        }
        fn mode(&self) -> u32 {
            fs::metadata(self.file()).unwrap().permissions().mode() & 0o777
        }
        fn host(&self) -> MockHost {
            MockHost::new().config(json!({ "credentials_file": self.file() }))
        }
    }

    /// A `codex login` whose access token expires `expires_in_ms` from now,
    /// with keys of the Codex CLI this plugin does not own.
    fn cli_login(expires_in_ms: i64) -> Value {
        json!({
            "OPENAI_API_KEY": null,
            "auth_mode": "chatgpt",
            "tokens": {
                "id_token": id_token(ACCOUNT, ID_SIGNATURE),
                "access_token": access_token(expires_in_ms),
                "refresh_token": REFRESH,
                "account_id": ACCOUNT,
            },
            "last_refresh": "2025-09-15T14:28:00.644167Z",
            "agent_identity": {"keep": "me"},
        })
    }

    fn json_response(status: u16, body: &Value) -> HttpResponse {
        HttpResponse {
            status,
            body: body.to_string().into_bytes(),
            ..HttpResponse::default()
        }
    }

    fn granted() -> HttpResponse {
        json_response(
            200,
            &json!({
                "token_type": "Bearer",
                "access_token": new_access_token(),
                "refresh_token": NEW_REFRESH,
                "id_token": id_token(NEW_ACCOUNT, NEW_ID_SIGNATURE),
                "expires_in": 864_000,
                "scope": "openid profile email offline_access",
            }),
        )
    }

    fn refused() -> HttpResponse {
        json_response(
            401,
            &json!({"error": {"message": "Your refresh token has already been used to generate a new access token.", "type": "invalid_request_error", "code": "refresh_token_reused"}}),
        )
    }

    /// The form fields of a form-encoded body, decoded, in order.
    fn form_of(req: &HttpRequest) -> Vec<(String, String)> {
        query_pairs(std::str::from_utf8(&req.body).expect("a text body"))
    }

    fn start(host: &MockHost) -> TestPlugin {
        let plugin = host.start::<OAuthCodex>().expect("the plugin starts");
        report_test_panics();
        plugin
    }

    /// The SDK installs a panic hook once per process (at the first plugin
    /// start) that sends panic messages to the host's log, the mock host's in
    /// tests, so a failing assertion would report nothing but `FAILED`. Put a
    /// printing hook back after each start.
    fn report_test_panics() {
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    }

    fn call(plugin: &TestPlugin, method: &str, args: Value) -> Result<Value, PluginError> {
        plugin.service(SERVICE, method, args)
    }

    /// No log line, emitted event or stored status carries a token.
    fn assert_no_secret_leaked(host: &MockHost) {
        let emitted = format!("{:?}", host.emitted());
        let secrets = [
            ACCESS_SIGNATURE,
            NEW_ACCESS_SIGNATURE,
            REFRESH,
            NEW_REFRESH,
            ID_SIGNATURE,
            NEW_ID_SIGNATURE,
        ];
        for (_, line) in host.logs() {
            for secret in secrets {
                assert!(!line.contains(secret), "a token was logged: {line}");
            }
        }
        for secret in secrets {
            assert!(!emitted.contains(secret), "a token was emitted: {emitted}");
        }
    }

    fn refresh_events(host: &MockHost) -> Vec<Value> {
        host.emitted()
            .into_iter()
            .filter(|(event, _)| event == REFRESH_EVENT)
            .map(|(_, data)| data)
            .collect()
    }

    fn query_pairs(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn manifest_declares_a_cli_safe_auth_provider() {
        let scratch = Scratch::new();
        let plugin = start(&scratch.host());
        let manifest = plugin.manifest();
        assert_eq!(manifest.name, "oauth_codex");
        assert_eq!(manifest.kind, PluginKind::AuthProvider);
        assert!(manifest.cli_safe);
        assert_eq!(manifest.provides, [SERVICE]);
        assert_eq!(
            manifest.oauth,
            Some(OAuthSpec {
                provider_name: "codex".into(),
                display_name: "OpenAI Codex".into(),
                supports_pkce: true,
                supports_refresh: true,
                scopes: vec![
                    "openid".into(),
                    "profile".into(),
                    "email".into(),
                    "offline_access".into()
                ],
            })
        );
        let defaults = &manifest.config.defaults;
        // The host's auth CLI reads these two to run the login.
        assert_eq!(
            defaults["redirect_uri"],
            "http://localhost:1455/auth/callback"
        );
        assert_eq!(
            defaults["manual_redirect_uri"],
            "https://platform.openai.com/oauth/callback"
        );
        assert_eq!(defaults["base_url"], "https://auth.openai.com");
        assert_eq!(
            defaults["authorize_url"],
            "https://auth.openai.com/oauth/authorize"
        );
        assert_eq!(defaults["token_url"], TOKEN_URL);
        assert_eq!(defaults["client_id"], CLIENT_ID);
        assert_eq!(defaults["credentials_file"], "");
        assert_eq!(defaults["refresh_grace_seconds"], 120);
        let documented: Vec<&str> = manifest
            .config
            .descriptions
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        for key in defaults.as_object().expect("a table").keys() {
            assert!(documented.contains(&key.as_str()), "{key} is undocumented");
        }
    }

    #[test]
    fn authorize_url_carries_every_parameter_and_the_challenge() {
        let scratch = Scratch::new();
        let plugin = start(&scratch.host());
        let answer = call(
            &plugin,
            "authorize_url",
            json!({"state": "state-123", "code_challenge": CHALLENGE}),
        )
        .unwrap();
        let url = answer["url"].as_str().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://auth.openai.com/oauth/authorize");
        assert_eq!(
            query_pairs(query),
            pairs(&[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", "http://localhost:1455/auth/callback"),
                ("scope", "openid profile email offline_access"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("id_token_add_organizations", "true"),
                ("codex_cli_simplified_flow", "true"),
                ("state", "state-123"),
                ("originator", "codex_cli_rs"),
            ])
        );
        assert!(
            query.contains("&scope=openid%20profile%20email%20offline_access&"),
            "{query}"
        );
        assert_eq!(
            answer["redirect_uri"],
            "http://localhost:1455/auth/callback"
        );
        assert!(plugin.host().http_requests().is_empty());
    }

    #[test]
    fn authorize_url_takes_a_redirect_uri_or_the_manual_one() {
        let scratch = Scratch::new();
        let plugin = start(&scratch.host());
        let redirect_of = |args: Value| {
            let answer = call(&plugin, "authorize_url", args).unwrap();
            let (_, query) = answer["url"].as_str().unwrap().split_once('?').unwrap();
            let pairs = query_pairs(query);
            let in_url = pairs
                .iter()
                .find(|(name, _)| name == "redirect_uri")
                .unwrap();
            assert_eq!(answer["redirect_uri"], in_url.1.as_str());
            in_url.1.clone()
        };
        assert_eq!(
            redirect_of(
                json!({"state": "s", "code_challenge": "c", "redirect_uri": "http://localhost:1457/auth/callback"})
            ),
            "http://localhost:1457/auth/callback"
        );
        assert_eq!(
            redirect_of(json!({"state": "s", "code_challenge": "c", "manual": true})),
            "https://platform.openai.com/oauth/callback"
        );
        let error = call(&plugin, "authorize_url", json!({"state": "s"})).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        let error = call(
            &plugin,
            "authorize_url",
            json!({"state": "", "code_challenge": "c"}),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn exchange_posts_a_form_and_stores_the_codex_cli_shape_0600() {
        let scratch = Scratch::new();
        scratch.write(&json!({
            "OPENAI_API_KEY": null,
            "auth_mode": "apikey",
            "tokens": {"access_token": "stale", "refresh_token": "stale"},
            "agent_identity": {"keep": "me"},
        }));
        let host = scratch.host().http(|req| {
            Ok(match req.url.as_str() {
                TOKEN_URL => granted(),
                other => panic!("unexpected request to {other}"),
            })
        });
        let plugin = start(&host);
        let before = iso8601_utc(now_ms());
        let status = call(
            &plugin,
            "exchange",
            json!({"code": "ac_auth-code", "state": "state-123", "code_verifier": "verifier-456",
                   "redirect_uri": "http://localhost:1455/auth/callback"}),
        )
        .unwrap();

        let requests = host.http_requests();
        assert_eq!(requests.len(), 1);
        let token = &requests[0];
        assert_eq!(
            (token.method.as_str(), token.url.as_str()),
            ("POST", TOKEN_URL)
        );
        assert_eq!(
            token.headers.get("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(token.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            form_of(token),
            pairs(&[
                ("grant_type", "authorization_code"),
                ("code", "ac_auth-code"),
                ("redirect_uri", "http://localhost:1455/auth/callback"),
                ("client_id", CLIENT_ID),
                ("code_verifier", "verifier-456"),
            ])
        );

        assert_eq!(scratch.mode(), 0o600);
        let mut document = scratch.read();
        let last_refresh = document["last_refresh"].as_str().unwrap().to_owned();
        assert!(
            last_refresh >= before && last_refresh <= iso8601_utc(now_ms()),
            "{last_refresh}"
        );
        document["last_refresh"] = json!("checked");
        assert_eq!(
            document,
            json!({
                "OPENAI_API_KEY": null,
                "auth_mode": "chatgpt",
                "tokens": {
                    "id_token": id_token(NEW_ACCOUNT, NEW_ID_SIGNATURE),
                    "access_token": new_access_token(),
                    "refresh_token": NEW_REFRESH,
                    "account_id": NEW_ACCOUNT,
                },
                "last_refresh": "checked",
                "agent_identity": {"keep": "me"},
            })
        );
        assert_eq!(status["logged_in"], true);
        assert_eq!(status["account_id"], NEW_ACCOUNT);
        assert_eq!(status["subscription_type"], "pro");
        assert_eq!(status["expires_at_ms"], NEW_EXP * 1000);
        assert_eq!(status["access_token"], "eyJhbG***WXYZ");
        assert_no_secret_leaked(&host);
        assert!(host.logged("logged in to Codex (ChatGPT plan pro)"));
    }

    #[test]
    fn exchange_creates_the_directory_0700() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        call(
            &plugin,
            "exchange",
            json!({"code": "c", "state": "s", "code_verifier": "v"}),
        )
        .unwrap();
        let directory = scratch.file().parent().unwrap().to_owned();
        assert_eq!(
            fs::metadata(directory).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(scratch.mode(), 0o600);
        let document = scratch.read();
        assert_eq!(document["tokens"]["access_token"], new_access_token());
        assert_eq!(document["OPENAI_API_KEY"], Value::Null);
        // Without a redirect_uri argument, the configured one is used.
        let form = form_of(&host.http_requests()[0]);
        assert!(form.contains(&(
            "redirect_uri".to_owned(),
            "http://localhost:1455/auth/callback".to_owned()
        )));
    }

    #[test]
    fn exchange_splits_a_pasted_code_and_state() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        call(
            &plugin,
            "exchange",
            json!({"code": " pasted-code#state-123\n", "state": "state-123", "code_verifier": "v"}),
        )
        .unwrap();
        let form = form_of(&host.http_requests()[0]);
        assert_eq!(form[1], ("code".to_owned(), "pasted-code".to_owned()));
        // The manual flow produced it, so its redirect is the manual one.
        assert_eq!(
            form[2],
            (
                "redirect_uri".to_owned(),
                "https://platform.openai.com/oauth/callback".to_owned()
            )
        );
    }

    #[test]
    fn exchange_refuses_a_code_from_another_login() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let error = call(
            &plugin,
            "exchange",
            json!({"code": "pasted-code#other-state", "state": "state-123", "code_verifier": "v"}),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert_eq!(
            error.message(),
            "state mismatch: the pasted code is from another login attempt; start again"
        );
        assert!(host.http_requests().is_empty());
        assert!(!scratch.file().exists());
        for args in [
            json!({"code": " ", "state": "s", "code_verifier": "v"}),
            json!({"code": "c", "state": "s", "code_verifier": ""}),
        ] {
            let error = call(&plugin, "exchange", args).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid);
        }
    }

    #[test]
    fn exchange_failure_says_what_to_do_and_stores_nothing() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| {
            Ok(json_response(
                400,
                &json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}),
            ))
        });
        let plugin = start(&host);
        let error = call(
            &plugin,
            "exchange",
            json!({"code": "c", "state": "s", "code_verifier": "v"}),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            error.message(),
            "token exchange failed (400: Invalid authorization code); start the login again"
        );
        assert!(!scratch.file().exists());

        let host = scratch
            .host()
            .http(|_| Ok(json_response(200, &json!({"token_type": "Bearer"}))));
        let error = call(
            &start(&host),
            "exchange",
            json!({"code": "c", "state": "s", "code_verifier": "v"}),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Upstream);
        assert!(error.message().contains("unreadable body"), "{error}");
        assert!(!scratch.file().exists());
    }

    #[test]
    fn access_token_answers_the_token_and_its_account_before_the_grace_period() {
        let scratch = Scratch::new();
        // 150 s left: outside the 120 s grace period.
        scratch.write(&cli_login(150_000));
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let answer = call(&plugin, "access_token", json!({})).unwrap();
        let stored = scratch.read();
        assert_eq!(answer["access_token"], stored["tokens"]["access_token"]);
        assert_eq!(answer["account_id"], ACCOUNT);
        assert_eq!(answer["plan_type"], "plus");
        let exp_ms = crate::jwt::expires_at_ms(answer["access_token"].as_str().unwrap());
        assert_eq!(answer["expires_at_ms"], json!(exp_ms));
        assert!(host.http_requests().is_empty());
        assert!(refresh_events(&host).is_empty());
    }

    #[test]
    fn access_token_refreshes_within_the_grace_period() {
        let scratch = Scratch::new();
        // 60 s left: inside the 120 s grace period.
        scratch.write(&cli_login(60_000));
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let answer = call(&plugin, "access_token", json!({})).unwrap();
        assert_eq!(answer["access_token"], new_access_token());
        assert_eq!(answer["account_id"], NEW_ACCOUNT);
        assert_eq!(answer["expires_at_ms"], NEW_EXP * 1000);

        let requests = host.http_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            (requests[0].method.as_str(), requests[0].url.as_str()),
            ("POST", TOKEN_URL)
        );
        assert_eq!(
            requests[0].headers.get("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            form_of(&requests[0]),
            pairs(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", REFRESH),
                ("client_id", CLIENT_ID),
                ("scope", "openid profile email offline_access"),
            ])
        );
        let document = scratch.read();
        let tokens = &document["tokens"];
        assert_eq!(tokens["access_token"], new_access_token());
        assert_eq!(tokens["refresh_token"], NEW_REFRESH);
        assert_eq!(tokens["id_token"], id_token(NEW_ACCOUNT, NEW_ID_SIGNATURE));
        assert_eq!(tokens["account_id"], NEW_ACCOUNT);
        assert_ne!(document["last_refresh"], "2025-09-15T14:28:00.644167Z");
        assert_eq!(document["agent_identity"], json!({"keep": "me"}));
        assert_eq!(document["auth_mode"], "chatgpt");
        assert_eq!(scratch.mode(), 0o600);
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "codex", "ok": true})]
        );

        // Fresh now: no second request.
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            new_access_token()
        );
        assert_eq!(host.http_requests().len(), 1);
        assert_no_secret_leaked(&host);
    }

    #[test]
    fn token_requests_are_reported_as_oauth_hook_events() {
        let oauth_events = |host: &MockHost| -> Vec<(String, Value)> {
            host.emitted()
                .into_iter()
                .filter(|(event, _)| event.starts_with("oauth."))
                .collect()
        };
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        call(&plugin, "access_token", json!({})).unwrap();
        call(
            &plugin,
            "exchange",
            json!({"code": "c", "state": "s", "code_verifier": "v"}),
        )
        .unwrap();
        assert_eq!(
            oauth_events(&host),
            [
                (
                    "oauth.refresh.request".to_owned(),
                    json!({"provider": "codex", "url": TOKEN_URL})
                ),
                (
                    "oauth.refresh.response".to_owned(),
                    json!({"provider": "codex", "ok": true})
                ),
                (
                    "oauth.token.request".to_owned(),
                    json!({"provider": "codex", "url": TOKEN_URL})
                ),
                (
                    "oauth.token.response".to_owned(),
                    json!({"provider": "codex", "ok": true})
                ),
            ]
        );

        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let host = scratch.host().http(|_| Ok(refused()));
        call(&start(&host), "access_token", json!({})).unwrap_err();
        assert_eq!(
            oauth_events(&host),
            [
                (
                    "oauth.refresh.request".to_owned(),
                    json!({"provider": "codex", "url": TOKEN_URL})
                ),
                (
                    "oauth.error".to_owned(),
                    json!({"provider": "codex", "phase": "refresh",
                           "error": "401: Your refresh token has already been used to generate a new access token."})
                ),
            ]
        );
        assert_no_secret_leaked(&host);
    }

    #[test]
    fn a_token_without_an_expiry_is_served_as_is() {
        let scratch = Scratch::new();
        let mut login = cli_login(0);
        login["tokens"]["access_token"] = json!("opaque-access-token-without-claims");
        scratch.write(&login);
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let answer = call(&plugin, "access_token", json!({})).unwrap();
        assert_eq!(answer["access_token"], "opaque-access-token-without-claims");
        assert_eq!(answer["expires_at_ms"], Value::Null);
        // The account comes from the id token then.
        assert_eq!(answer["account_id"], ACCOUNT);
        assert!(host.http_requests().is_empty());
    }

    /// Runs `access_token` from `callers` threads released at once (the host
    /// calls plugins from every runtime thread); the SDK's mock host runs one
    /// call per thread, so threads give the concurrency.
    fn concurrent_access_tokens(
        plugin: &TestPlugin,
        callers: usize,
    ) -> Vec<Result<Value, PluginError>> {
        let start = Barrier::new(callers);
        thread::scope(|scope| {
            let handles: Vec<_> = (0..callers)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        call(plugin, "access_token", json!({}))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a caller thread"))
                .collect()
        })
    }

    /// A token endpoint that counts requests and takes `delay` to answer, so
    /// the other callers pile up behind the first refresh.
    fn slow_endpoint(
        requests: &Arc<AtomicUsize>,
        answer: fn() -> HttpResponse,
    ) -> impl Fn(HttpRequest) -> Result<HttpResponse, PluginError> + Send + Sync + 'static {
        let requests = requests.clone();
        move |_| {
            requests.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(200));
            Ok(answer())
        }
    }

    #[test]
    fn fifty_concurrent_callers_cause_exactly_one_refresh() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(30_000));
        let requests = Arc::new(AtomicUsize::new(0));
        let host = scratch.host().http(slow_endpoint(&requests, granted));
        let plugin = start(&host);
        let answers = concurrent_access_tokens(&plugin, 50);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert_eq!(answers.len(), 50);
        for answer in answers {
            let answer = answer.unwrap();
            assert_eq!(answer["access_token"], new_access_token());
            assert_eq!(answer["account_id"], NEW_ACCOUNT);
        }
        assert_eq!(refresh_events(&host).len(), 1);
        // The rotated refresh token was stored once, not spent twice.
        assert_eq!(scratch.read()["tokens"]["refresh_token"], NEW_REFRESH);
    }

    #[test]
    fn fifty_concurrent_callers_share_one_failed_refresh() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let requests = Arc::new(AtomicUsize::new(0));
        let host = scratch.host().http(slow_endpoint(&requests, refused));
        let plugin = start(&host);
        let answers = concurrent_access_tokens(&plugin, 50);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        for answer in answers {
            let error = answer.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthorized);
            assert!(
                error.message().starts_with("token refresh failed (401: "),
                "{error}"
            );
        }
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "codex", "ok": false})]
        );
    }

    #[test]
    fn failed_refresh_says_what_to_do() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let stored_before = scratch.read();
        let host = scratch.host().http(|_| Ok(refused()));
        let plugin = start(&host);
        let error = call(&plugin, "access_token", json!({})).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            error.message(),
            "token refresh failed (401: Your refresh token has already been used to generate a new access token.); run `ccproxy auth login codex` or `codex login`"
        );
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "codex", "ok": false})]
        );
        assert_eq!(scratch.read(), stored_before);
        assert_no_secret_leaked(&host);
    }

    #[test]
    fn a_login_without_a_refresh_token_says_what_to_do() {
        let scratch = Scratch::new();
        let mut login = cli_login(-1_000);
        login["tokens"]["refresh_token"] = json!("");
        scratch.write(&login);
        let host = scratch.host().http(|_| Ok(granted()));
        let error = call(&start(&host), "access_token", json!({})).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            error.message(),
            "the stored Codex login has no refresh token; run `ccproxy auth login codex` or `codex login`"
        );
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn unreachable_token_endpoint_says_why() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let host = scratch
            .host()
            .http(|_| Err(PluginError::new(ErrorKind::Timeout, "timed out after 30 s")));
        let plugin = start(&host);
        let error = call(&plugin, "access_token", json!({})).unwrap_err();
        // An endpoint that did not answer is no reason to log in again.
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(
            error.message(),
            "token refresh failed: the token endpoint did not answer (timed out after 30 s); the login is kept, try again later"
        );
    }

    #[test]
    fn failed_refresh_of_a_still_valid_token_serves_it() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(60_000));
        let host = scratch.host().http(|_| Ok(json_response(503, &json!({}))));
        let plugin = start(&host);
        let stored = scratch.read()["tokens"]["access_token"].clone();
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            stored
        );
        assert!(host.logged("Codex token refresh failed (503: {})"));
        // Within RETRY_REFRESH_AFTER the failure is not asked again.
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            stored
        );
        assert_eq!(host.http_requests().len(), 1);
    }

    #[test]
    fn after_a_failed_refresh_callers_wait_before_asking_again_unless_forced() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let host = scratch.host().http({
            let failing = failing.clone();
            move |_| {
                Ok(if failing.load(Ordering::SeqCst) {
                    refused()
                } else {
                    granted()
                })
            }
        });
        let plugin = start(&host);
        for _ in 0..3 {
            let error = call(&plugin, "access_token", json!({})).unwrap_err();
            assert!(
                error.message().starts_with("token refresh failed (401: "),
                "{error}"
            );
        }
        assert_eq!(host.http_requests().len(), 1);
        // An explicit `refresh` asks at once, and its success ends the wait.
        failing.store(false, Ordering::SeqCst);
        call(&plugin, "refresh", json!({})).unwrap();
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            new_access_token()
        );
        assert_eq!(host.http_requests().len(), 2);
    }

    #[test]
    fn after_a_failed_refresh_a_new_login_in_the_file_is_used_at_once() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let host = scratch.host().http(|_| Ok(refused()));
        let plugin = start(&host);
        call(&plugin, "access_token", json!({})).unwrap_err();
        // `codex login` writes a fresh token.
        let fresh = cli_login(3_600_000);
        scratch.write(&fresh);
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            fresh["tokens"]["access_token"]
        );
        assert_eq!(host.http_requests().len(), 1);
    }

    #[test]
    fn not_logged_in_says_how_to_log_in() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        for method in ["access_token", "refresh"] {
            let error = call(&plugin, method, json!({})).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthorized);
            assert_eq!(
                error.message(),
                "not logged in to Codex: run `ccproxy auth login codex` or `codex login`"
            );
        }
        assert_eq!(
            call(&plugin, "status", json!({})).unwrap(),
            json!({
                "logged_in": false,
                "expires_at_ms": null,
                "expired": false,
                "account_id": null,
                "subscription_type": null,
                "access_token": null,
                "last_refresh": null,
                "file": scratch.file(),
            })
        );
        // An API-key-only Codex login is not an OAuth login.
        scratch.write(&json!({"OPENAI_API_KEY": "sk-proj-x", "tokens": null}));
        let error = call(&plugin, "access_token", json!({})).unwrap_err();
        assert_eq!(error.message(), NOT_LOGGED_IN);
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn a_login_or_refresh_by_the_codex_cli_is_picked_up() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        // `codex login` after the proxy started.
        let login = cli_login(3_600_000);
        scratch.write(&login);
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            login["tokens"]["access_token"]
        );
        // The Codex CLI refreshes the file behind our back.
        let mut refreshed = cli_login(7_200_000);
        refreshed["tokens"]["access_token"] = json!(signed_jwt(
            &json!({"exp": NEW_EXP, "https://api.openai.com/auth": auth_claim(ACCOUNT, "plus")}),
            "refreshed-by-the-codex-cli"
        ));
        scratch.write(&refreshed);
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            refreshed["tokens"]["access_token"]
        );
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn status_masks_the_token() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(3_600_000));
        let plugin = start(&scratch.host());
        let status = call(&plugin, "status", json!({})).unwrap();
        assert_eq!(status["logged_in"], true);
        assert_eq!(status["expired"], false);
        assert_eq!(status["access_token"], "eyJhbG***ABCD");
        assert_eq!(status["account_id"], ACCOUNT);
        assert_eq!(status["subscription_type"], "plus");
        assert_eq!(status["last_refresh"], "2025-09-15T14:28:00.644167Z");
        assert_eq!(status["file"], json!(scratch.file()));
        let exp =
            crate::jwt::expires_at_ms(scratch.read()["tokens"]["access_token"].as_str().unwrap());
        assert_eq!(status["expires_at_ms"], json!(exp));
        let text = status.to_string();
        for secret in [ACCESS_SIGNATURE, REFRESH, ID_SIGNATURE] {
            assert!(!text.contains(secret), "{text}");
        }

        scratch.write(&cli_login(-1_000));
        assert_eq!(call(&plugin, "status", json!({})).unwrap()["expired"], true);
    }

    #[test]
    fn forced_refresh_answers_the_masked_status() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(3_600_000));
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let status = call(&plugin, "refresh", json!({})).unwrap();
        assert_eq!(host.http_requests().len(), 1);
        assert_eq!(status["access_token"], "eyJhbG***WXYZ");
        assert_eq!(status["logged_in"], true);
        assert_eq!(status["account_id"], NEW_ACCOUNT);
        assert_eq!(scratch.read()["tokens"]["access_token"], new_access_token());
        assert_no_secret_leaked(&host);
    }

    #[test]
    fn logout_removes_the_login_and_keeps_other_keys() {
        let scratch = Scratch::new();
        scratch.write(&cli_login(3_600_000));
        let plugin = start(&scratch.host());
        assert_eq!(
            call(&plugin, "logout", json!({})).unwrap(),
            json!({"logged_in": false})
        );
        assert_eq!(
            scratch.read(),
            json!({"OPENAI_API_KEY": null, "agent_identity": {"keep": "me"}})
        );
        assert_eq!(scratch.mode(), 0o600);
        assert_eq!(
            call(&plugin, "status", json!({})).unwrap()["logged_in"],
            false
        );
        assert_eq!(
            call(&plugin, "access_token", json!({}))
                .unwrap_err()
                .message(),
            NOT_LOGGED_IN
        );
    }

    #[test]
    fn logout_deletes_a_file_left_empty() {
        let scratch = Scratch::new();
        let mut login = cli_login(3_600_000);
        login.as_object_mut().unwrap().remove("agent_identity");
        scratch.write(&login);
        let plugin = start(&scratch.host());
        call(&plugin, "logout", json!({})).unwrap();
        assert!(!scratch.file().exists());
        // Logging out twice is fine.
        call(&plugin, "logout", json!({})).unwrap();
    }

    #[test]
    fn health_is_degraded_unless_logged_in_with_a_valid_token() {
        let scratch = Scratch::new();
        let plugin = start(&scratch.host());
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert_eq!(health.details["reason"], NOT_LOGGED_IN);

        scratch.write(&cli_login(3_600_000));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.details["account_id"], ACCOUNT);
        assert_eq!(health.details["subscription_type"], "plus");
        assert!(!health.details.to_string().contains(ACCESS_SIGNATURE));

        scratch.write(&cli_login(-1_000));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(
            health.details["reason"]
                .as_str()
                .unwrap()
                .contains("expired")
        );

        fs::write(scratch.file(), "{broken").unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(
            health.details["reason"]
                .as_str()
                .unwrap()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn unknown_methods_and_services_are_not_found() {
        let scratch = Scratch::new();
        let plugin = start(&scratch.host());
        let error = call(&plugin, "revoke", json!({})).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(
            error
                .message()
                .contains("authorize_url, exchange, access_token"),
            "{error}"
        );
        let error = plugin
            .service("oauth.claude-api", "status", json!({}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn config_is_checked() {
        let scratch = Scratch::new();
        let refused = |config: Value| {
            MockHost::new()
                .config(config)
                .start::<OAuthCodex>()
                .unwrap_err()
        };
        refused(json!({"credentials_file": scratch.file(), "token_urll": "x"}));
        let error =
            refused(json!({"credentials_file": scratch.file(), "request_timeout_seconds": 0}));
        assert!(
            error.message().contains("request_timeout_seconds"),
            "{error}"
        );
        let error =
            refused(json!({"credentials_file": scratch.file(), "token_url": "auth.openai.com"}));
        assert!(error.message().contains("token_url"), "{error}");
        let error = refused(json!({"credentials_file": scratch.file(), "scopes": []}));
        assert!(error.message().contains("scopes"), "{error}");
        let plugin = MockHost::new()
            .config(json!({"credentials_file": scratch.file(), "refresh_grace_seconds": 0}))
            .start::<OAuthCodex>();
        assert!(plugin.is_ok());
    }

    #[test]
    fn base_url_moves_the_default_endpoints() {
        let moved = Config {
            base_url: "http://127.0.0.1:4010/".to_owned(),
            ..Config::default()
        };
        assert_eq!(moved.token_url(), "http://127.0.0.1:4010/oauth/token");
        assert_eq!(
            moved.authorize_url(),
            "http://127.0.0.1:4010/oauth/authorize"
        );
        let relative = Config {
            base_url: "http://127.0.0.1:4010".to_owned(),
            token_url: "/token".to_owned(),
            authorize_url: "https://idp.test/authorize".to_owned(),
            ..Config::default()
        };
        assert_eq!(relative.token_url(), "http://127.0.0.1:4010/token");
        assert_eq!(relative.authorize_url(), "https://idp.test/authorize");
        let defaults = Config::default();
        assert_eq!(defaults.token_url(), TOKEN_URL);

        // And the requests go there.
        let scratch = Scratch::new();
        scratch.write(&cli_login(-1_000));
        let host = MockHost::new()
            .config(
                json!({"credentials_file": scratch.file(), "base_url": "http://127.0.0.1:4010"}),
            )
            .http(|_| Ok(granted()));
        call(&start(&host), "access_token", json!({})).unwrap();
        assert_eq!(
            host.http_requests()[0].url,
            "http://127.0.0.1:4010/oauth/token"
        );
    }

    #[test]
    fn credentials_path_defaults_to_the_codex_cli_file() {
        let home = Some(OsString::from("/home/ada"));
        assert_eq!(
            credentials_path("", home.clone(), None).unwrap(),
            PathBuf::from("/home/ada/.codex/auth.json")
        );
        assert_eq!(
            credentials_path("", home.clone(), Some(OsString::from("/srv/codex"))).unwrap(),
            PathBuf::from("/srv/codex/auth.json")
        );
        assert_eq!(
            credentials_path("", home.clone(), Some(OsString::new())).unwrap(),
            PathBuf::from("/home/ada/.codex/auth.json")
        );
        assert_eq!(
            credentials_path("~/creds/codex.json", home.clone(), None).unwrap(),
            PathBuf::from("/home/ada/creds/codex.json")
        );
        assert_eq!(
            credentials_path("/etc/ccproxy/codex.json", None, None).unwrap(),
            PathBuf::from("/etc/ccproxy/codex.json")
        );
        let error = credentials_path("", None, None).unwrap_err();
        assert!(error.message().contains("credentials_file"), "{error}");
    }
}
