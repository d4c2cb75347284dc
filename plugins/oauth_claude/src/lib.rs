//! # oauth_claude: Claude OAuth for the providers that need it
//!
//! Logs in to Claude (claude.ai OAuth with PKCE), stores the tokens, and hands
//! out a valid access token, refreshing it first when it is about to expire.
//! It proxies nothing: the host CLI drives the login (`ccproxy auth login
//! claude-api`) and the `claude_api` provider asks for tokens, both through
//! the service `oauth.claude-api`.
//!
//! By default the tokens live in the Claude CLI's own file,
//! `~/.claude/.credentials.json` (`credentials_file`), so an existing `claude`
//! login just works, and a refresh by either program is seen by the other: the
//! file is read again whenever it changes, and written atomically (`.tmp`,
//! mode 0600, fsync, rename), keeping keys that are not this plugin's.
//!
//! ## The service `oauth.claude-api`
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `authorize_url` | `state`, `code_challenge` (S256), `redirect_uri`?, `manual`? | `{"url", "redirect_uri"}` |
//! | `exchange` | `code` (or a pasted `code#state`), `state`, `code_verifier`, `redirect_uri`?, `manual`? | status |
//! | `access_token` | – | `{"access_token", "expires_at_ms", "subscription_type"}` |
//! | `refresh` | – | status, after a forced refresh |
//! | `status` | – | `{"logged_in", "expires_at_ms", "expired", "subscription_type", "scopes", "access_token" (masked), "file"}` |
//! | `logout` | – | `{"logged_in": false}` |
//!
//! `redirect_uri` defaults to the config's `redirect_uri`, or to
//! `manual_redirect_uri` with `manual: true` (and, for `exchange`, when the
//! code was pasted as `code#state`). `access_token` refreshes when the token
//! expires within `refresh_grace_seconds`, once for any number of concurrent
//! callers, and emits `custom.oauth.refresh` (`{"provider": "claude-api",
//! "ok": bool}`) after each refresh request. After a failed refresh it answers
//! with that failure for 10 s rather than ask again on every request (a token
//! that is still valid is served meanwhile). Only `access_token` ever answers
//! with a token in clear; logs never show one.
//!
//! Build it with `cargo build -p ccproxy-plugin-oauth-claude` (the host finds
//! bundled plugins next to its binary), then:
//!
//! ```text
//! ccproxy auth login claude-api
//! ccproxy auth status claude-api
//! ```
//!
//! and expect at startup:
//!
//! ```text
//! INFO plugin: oauth_claude using /home/ada/.claude/.credentials.json (logged in) plugin="oauth_claude"
//! ```
#![forbid(unsafe_code)]

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

use crate::store::{CredentialStore, OAuthCredentials};

/// The service this plugin answers.
const SERVICE: &str = "oauth.claude-api";
/// The OAuth provider name on the CLI and in events.
pub(crate) const PROVIDER: &str = "claude-api";
const LOGIN_HINT: &str = "run `ccproxy auth login claude-api`";
const NOT_LOGGED_IN: &str =
    "not logged in to Claude: run `ccproxy auth login claude-api` or `claude /login`";
/// After a failed refresh, `access_token` answers with that failure for this
/// long instead of asking the token endpoint again on every request (a revoked
/// login would otherwise cost one refresh request per proxied request). A new
/// login or a file refreshed by the Claude CLI is still picked up at once.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);
/// The config section, `[plugins.oauth_claude]`.
const SECTION: &str = "oauth_claude";

/// `[plugins.oauth_claude]`, with the original's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    authorize_url: String,
    token_url: String,
    /// Where the subscription type comes from after a login; empty: not asked.
    profile_url: String,
    client_id: String,
    /// The browser flow's callback (the CLI listens there).
    redirect_uri: String,
    /// The manual flow's callback page, which shows `code#state` to paste.
    manual_redirect_uri: String,
    scopes: Vec<String>,
    /// Empty: `$HOME/.claude/.credentials.json`, the Claude CLI's file.
    credentials_file: String,
    refresh_grace_seconds: u64,
    request_timeout_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            authorize_url: "https://claude.ai/oauth/authorize".to_owned(),
            token_url: "https://console.anthropic.com/v1/oauth/token".to_owned(),
            profile_url: "https://api.anthropic.com/api/oauth/profile".to_owned(),
            client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".to_owned(),
            redirect_uri: "http://localhost:54545/callback".to_owned(),
            manual_redirect_uri: "https://console.anthropic.com/oauth/code/callback".to_owned(),
            scopes: ["org:create_api_key", "user:profile", "user:inference"]
                .map(str::to_owned)
                .to_vec(),
            credentials_file: String::new(),
            refresh_grace_seconds: 120,
            request_timeout_seconds: 30,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        let urls = [
            ("authorize_url", &self.authorize_url),
            ("token_url", &self.token_url),
            ("redirect_uri", &self.redirect_uri),
            ("manual_redirect_uri", &self.manual_redirect_uri),
            ("profile_url", &self.profile_url),
        ];
        for (key, url) in urls {
            let is_http = url.starts_with("https://") || url.starts_with("http://");
            let may_be_empty = key == "profile_url";
            if !(is_http || may_be_empty && url.is_empty()) {
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
}

/// Where the credentials live: `configured` with `~` expanded, or the Claude
/// CLI's file under `home` when `configured` is empty.
fn credentials_path(configured: &str, home: Option<OsString>) -> Result<PathBuf, PluginError> {
    match expand_home(configured, home.as_deref(), SECTION)? {
        Some(path) => Ok(path),
        None => Ok(home_dir(home.as_deref(), SECTION)?
            .join(".claude")
            .join(".credentials.json")),
    }
}

/// The plugin.
struct OAuthClaude {
    ctx: Context,
    config: Config,
    store: CredentialStore,
    /// One refresh request at a time, its outcome shared; also held while a
    /// login or logout changes the stored credentials.
    flight: SingleFlight,
}

fn token_answer(credentials: &OAuthCredentials) -> Value {
    json!({
        "access_token": credentials.access_token.expose(),
        "expires_at_ms": credentials.expires_at,
        "subscription_type": credentials.subscription_type,
    })
}

impl OAuthClaude {
    fn grace_ms(&self) -> u64 {
        self.config.refresh_grace_seconds.saturating_mul(1000)
    }

    fn logged_in(&self) -> Result<OAuthCredentials, PluginError> {
        self.store
            .load()?
            .ok_or_else(|| unauthorized(NOT_LOGGED_IN))
    }

    /// Sends the refresh request and stores the answer. Called by the
    /// single flight, which holds its lock.
    async fn refresh_locked(
        &self,
        current: &OAuthCredentials,
        answered: Answered<'_>,
    ) -> Result<OAuthCredentials, PluginError> {
        let Some(refresh_token) = &current.refresh_token else {
            return Err(unauthorized(format!(
                "the stored Claude login has no refresh token; {LOGIN_HINT}"
            )));
        };
        let body = oauth::refresh_body(&self.config, refresh_token);
        let answer = oauth::request_token(&self.ctx, &self.config, Grant::Refresh, body).await;
        answered.now();
        match answer {
            Ok(grant) => {
                emit_refresh(&self.ctx, PROVIDER, true);
                let refreshed = grant.into_refreshed(now_ms(), current);
                match self.store.save(&refreshed) {
                    Ok(()) => info!(
                        "refreshed the Claude access token; it is valid for {} s",
                        refreshed
                            .expires_at
                            .map_or(0, |at| at.saturating_sub(now_ms()) / 1000)
                    ),
                    // The new token still serves this call; the next refresh
                    // uses the old refresh token, which may have been rotated.
                    Err(error) => {
                        error!("refreshed the Claude access token but could not store it: {error}")
                    }
                }
                Ok(refreshed)
            }
            Err(failure) => {
                emit_refresh(&self.ctx, PROVIDER, false);
                Err(failure.refresh_error("Claude", LOGIN_HINT))
            }
        }
    }

    /// The status object; the token is masked.
    fn status_of(&self, credentials: Option<&OAuthCredentials>) -> Value {
        let file = self.store.path().display().to_string();
        match credentials {
            Some(credentials) => json!({
                "logged_in": true,
                "expires_at_ms": credentials.expires_at,
                "expired": credentials.expires_within(now_ms(), 0),
                "subscription_type": credentials.subscription_type,
                "scopes": credentials.scopes,
                "access_token": credentials.access_token.masked(),
                "file": file,
            }),
            None => json!({
                "logged_in": false,
                "expires_at_ms": null,
                "expired": false,
                "subscription_type": null,
                "scopes": [],
                "access_token": null,
                "file": file,
            }),
        }
    }
}

impl TokenSource for OAuthClaude {
    type Login = OAuthCredentials;

    fn load_login(&self) -> Result<OAuthCredentials, PluginError> {
        self.logged_in()
    }

    fn needs_refresh(&self, credentials: &OAuthCredentials) -> bool {
        credentials.expires_within(now_ms(), self.grace_ms())
    }

    fn still_valid(&self, credentials: &OAuthCredentials) -> bool {
        !credentials.expires_within(now_ms(), 0)
    }

    async fn refresh(
        &self,
        current: &OAuthCredentials,
        answered: Answered<'_>,
    ) -> Result<OAuthCredentials, PluginError> {
        self.refresh_locked(current, answered).await
    }
}

impl OAuthService for OAuthClaude {
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
        let body = oauth::exchange_body(
            &self.config,
            exchange.code,
            &args.state,
            &exchange.redirect_uri,
            &args.code_verifier,
        );
        let grant = oauth::request_token(&self.ctx, &self.config, Grant::Login, body)
            .await
            .map_err(kit_oauth::TokenError::exchange_error)?;
        let subscription_type =
            oauth::subscription_type(&self.ctx, &self.config, &grant.access_token).await;
        let credentials = grant.into_login(now_ms(), &self.config.scopes, subscription_type);
        self.store.save(&credentials)?;
        info!(
            "logged in to Claude (subscription {}); credentials stored in {}",
            credentials
                .subscription_type
                .as_deref()
                .unwrap_or("unknown"),
            self.store.path().display()
        );
        Ok(self.status_of(Some(&credentials)))
    }

    /// A valid access token, refreshed first when it expires within the grace
    /// period. Single flight: concurrent callers wait for one refresh request.
    async fn access_token(&self) -> Result<Value, PluginError> {
        let credentials = self.flight.get(self).await?;
        Ok(token_answer(&credentials))
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
            "logged out of Claude: removed the credentials from {}",
            self.store.path().display()
        );
        Ok(json!({ "logged_in": false }))
    }
}

impl Plugin for OAuthClaude {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("oauth_claude", env!("CARGO_PKG_VERSION"))
            .description("Claude OAuth: login, tokens shared with the Claude CLI, single-flight refresh")
            .kind(PluginKind::AuthProvider)
            .cli_safe()
            .oauth(OAuthSpec {
                provider_name: PROVIDER.to_owned(),
                display_name: "Claude API".to_owned(),
                supports_pkce: true,
                supports_refresh: true,
                scopes: Config::default().scopes,
            })
            .provides(SERVICE)
            .config_key("authorize_url", "Claude's OAuth authorize page")
            .config_key("token_url", "the token endpoint (code exchange and refresh)")
            .config_key("profile_url", "asked for the subscription type after a login; empty: not asked")
            .config_key("client_id", "the OAuth client id (the Claude CLI's)")
            .config_key("redirect_uri", "the browser flow's callback, where the CLI listens")
            .config_key("manual_redirect_uri", "the manual flow's callback page, which shows code#state to paste")
            .config_key("scopes", "scopes requested at login")
            .config_key("credentials_file", "where tokens are stored; empty: ~/.claude/.credentials.json, shared with the Claude CLI")
            .config_key("refresh_grace_seconds", "refresh a token this many seconds before it expires")
            .config_key("request_timeout_seconds", "timeout of each request to the OAuth endpoints")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        config.validate()?;
        let path = credentials_path(&config.credentials_file, std::env::var_os("HOME"))?;
        let store = CredentialStore::new(path);
        let state = match store.load() {
            Ok(Some(_)) => "logged in",
            Ok(None) => "not logged in",
            Err(error) => {
                warn!("{error}");
                "unreadable"
            }
        };
        info!("oauth_claude using {} ({state})", store.path().display());
        Ok(Self {
            ctx,
            config,
            store,
            flight: SingleFlight::new(RETRY_REFRESH_AFTER),
        })
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        kit_oauth::dispatch("oauth_claude", SERVICE, self, call).await
    }

    async fn on_health(&self) -> Health {
        let file = self.store.path().display().to_string();
        match self.store.load() {
            Ok(Some(credentials)) if !credentials.expires_within(now_ms(), 0) => Health::with(
                HealthStatus::Healthy,
                json!({
                    "logged_in": true,
                    "expires_at_ms": credentials.expires_at,
                    "subscription_type": credentials.subscription_type,
                    "file": file,
                }),
            ),
            Ok(Some(credentials)) => Health::with(
                HealthStatus::Degraded,
                json!({
                    "logged_in": true,
                    "expires_at_ms": credentials.expires_at,
                    "reason": "the Claude access token has expired; the next request refreshes it",
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

export_plugin!(OAuthClaude);

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

    const ACCESS: &str = "sk-ant-oat01-old-access-token-0000-ABCD";
    const REFRESH: &str = "sk-ant-ort01-old-refresh-token-0000-EFGH";
    const NEW_ACCESS: &str = "sk-ant-oat01-new-access-token-1111-WXYZ";
    const NEW_REFRESH: &str = "sk-ant-ort01-new-refresh-token-1111-QRST";
    const TOKEN_URL: &str = "https://console.anthropic.com/v1/oauth/token";
    const PROFILE_URL: &str = "https://api.anthropic.com/api/oauth/profile";
    const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
    /// The PKCE example of RFC 7636, appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    /// A scratch directory for the credentials file: tests never touch the
    /// real `~/.claude`.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Self {
            Self(tempfile::tempdir().expect("a temporary directory"))
        }
        fn file(&self) -> PathBuf {
            self.0.path().join("claude").join(".credentials.json")
        }
        fn write(&self, document: &Value) {
            let file = self.file();
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            // As the Claude CLI does: a new file renamed over the old one.
            let tmp = self.0.path().join("claude-cli-write.tmp");
            fs::write(&tmp, document.to_string()).unwrap();
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

    /// A Claude CLI login whose access token expires `expires_in_ms` from
    /// now, next to a key of another program.
    fn cli_login(expires_in_ms: i64) -> Value {
        json!({
            "claudeAiOauth": {
                "accessToken": ACCESS,
                "refreshToken": REFRESH,
                "expiresAt": now_ms().saturating_add_signed(expires_in_ms),
                "scopes": ["user:inference", "user:profile"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "mcpOAuth": { "keep": "me" },
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
                "access_token": NEW_ACCESS,
                "refresh_token": NEW_REFRESH,
                "expires_in": 28800,
                "scope": "user:inference user:profile",
            }),
        )
    }

    fn refused() -> HttpResponse {
        json_response(
            400,
            &json!({"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}),
        )
    }

    fn body_of(req: &HttpRequest) -> Value {
        serde_json::from_slice(&req.body).expect("a JSON body")
    }

    fn start(host: &MockHost) -> TestPlugin {
        let plugin = host.start::<OAuthClaude>().expect("the plugin starts");
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

    /// No log line, emitted event or status carries a token.
    fn assert_no_secret_leaked(host: &MockHost) {
        let emitted = format!("{:?}", host.emitted());
        for (_, line) in host.logs() {
            for secret in [ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH] {
                assert!(!line.contains(secret), "a token was logged: {line}");
                assert!(!emitted.contains(secret), "a token was emitted: {emitted}");
            }
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

    #[test]
    fn manifest_declares_a_cli_safe_auth_provider() {
        let manifest = OAuthClaude::manifest();
        assert_eq!(manifest.name, "oauth_claude");
        assert_eq!(manifest.kind, PluginKind::AuthProvider);
        assert!(manifest.cli_safe);
        assert_eq!(manifest.provides, [SERVICE]);
        assert_eq!(
            manifest.oauth,
            Some(OAuthSpec {
                provider_name: "claude-api".into(),
                display_name: "Claude API".into(),
                supports_pkce: true,
                supports_refresh: true,
                scopes: vec![
                    "org:create_api_key".into(),
                    "user:profile".into(),
                    "user:inference".into()
                ],
            })
        );
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
        assert_eq!(base, "https://claude.ai/oauth/authorize");
        let expected = [
            ("code", "true"),
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:54545/callback"),
            ("scope", "org:create_api_key user:profile user:inference"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "state-123"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        assert_eq!(query_pairs(query), expected);
        assert!(
            query.contains("&scope=org%3Acreate_api_key%20user%3Aprofile%20user%3Ainference&"),
            "{query}"
        );
        assert_eq!(answer["redirect_uri"], "http://localhost:54545/callback");
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
                json!({"state": "s", "code_challenge": "c", "redirect_uri": "http://127.0.0.1:9/cb"})
            ),
            "http://127.0.0.1:9/cb"
        );
        assert_eq!(
            redirect_of(json!({"state": "s", "code_challenge": "c", "manual": true})),
            "https://console.anthropic.com/oauth/code/callback"
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
    fn exchange_stores_the_login_0600_in_the_cli_shape_and_keeps_other_keys() {
        let scratch = Scratch::new();
        scratch.write(&json!({
            "mcpOAuth": {"keep": "me"},
            "claudeAiOauth": {"accessToken": "stale", "rateLimitTier": "from-an-old-login"},
        }));
        let host = scratch.host().http(|req| {
            Ok(match req.url.as_str() {
                TOKEN_URL => granted(),
                PROFILE_URL => json_response(
                    200,
                    &json!({"account": {"has_claude_max": true, "has_claude_pro": false}}),
                ),
                other => panic!("unexpected request to {other}"),
            })
        });
        let plugin = start(&host);
        let before = now_ms();
        let status = call(
            &plugin,
            "exchange",
            json!({"code": "auth-code", "state": "state-123", "code_verifier": "verifier-456"}),
        )
        .unwrap();

        let requests = host.http_requests();
        assert_eq!(requests.len(), 2);
        let token = &requests[0];
        assert_eq!(
            (token.method.as_str(), token.url.as_str()),
            ("POST", TOKEN_URL)
        );
        assert_eq!(token.headers.get("content-type"), Some("application/json"));
        assert_eq!(token.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            body_of(token),
            json!({
                "grant_type": "authorization_code",
                "code": "auth-code",
                "state": "state-123",
                "redirect_uri": "http://localhost:54545/callback",
                "client_id": CLIENT_ID,
                "code_verifier": "verifier-456",
            })
        );
        let profile = &requests[1];
        assert_eq!(
            (profile.method.as_str(), profile.url.as_str()),
            ("GET", PROFILE_URL)
        );
        assert_eq!(
            profile.headers.get("authorization"),
            Some(format!("Bearer {NEW_ACCESS}").as_str())
        );

        assert_eq!(scratch.mode(), 0o600);
        let mut document = scratch.read();
        let expires_at = document["claudeAiOauth"]["expiresAt"].as_u64().unwrap();
        assert!(
            (before + 28_800_000..=now_ms() + 28_800_000).contains(&expires_at),
            "{expires_at}"
        );
        document["claudeAiOauth"]["expiresAt"] = json!("checked");
        assert_eq!(
            document,
            json!({
                "mcpOAuth": {"keep": "me"},
                "claudeAiOauth": {
                    "accessToken": NEW_ACCESS,
                    "refreshToken": NEW_REFRESH,
                    "expiresAt": "checked",
                    "scopes": ["user:inference", "user:profile"],
                    "subscriptionType": "max",
                },
            })
        );
        assert_eq!(status["logged_in"], true);
        assert_eq!(status["subscription_type"], "max");
        assert_eq!(status["access_token"], "sk-ant***WXYZ");
        assert_no_secret_leaked(&host);
    }

    #[test]
    fn exchange_creates_the_directory_0700_and_survives_a_failing_profile() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|req| {
            Ok(match req.url.as_str() {
                TOKEN_URL => granted(),
                _ => json_response(500, &json!({"error": "boom"})),
            })
        });
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
        assert_eq!(document["claudeAiOauth"]["subscriptionType"], Value::Null);
        assert_eq!(document["claudeAiOauth"]["accessToken"], NEW_ACCESS);
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
        let body = body_of(&host.http_requests()[0]);
        assert_eq!(body["code"], "pasted-code");
        assert_eq!(body["state"], "state-123");
        // The manual flow's page produced it, so its redirect is the manual one.
        assert_eq!(
            body["redirect_uri"],
            "https://console.anthropic.com/oauth/code/callback"
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
    }

    #[test]
    fn access_token_is_served_without_a_refresh_before_the_grace_period() {
        let scratch = Scratch::new();
        // 150 s left: outside the 120 s grace period.
        scratch.write(&cli_login(150_000));
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        let answer = call(&plugin, "access_token", json!({})).unwrap();
        assert_eq!(answer["access_token"], ACCESS);
        assert_eq!(answer["subscription_type"], "max");
        assert_eq!(
            answer["expires_at_ms"],
            scratch.read()["claudeAiOauth"]["expiresAt"]
        );
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
        assert_eq!(answer["access_token"], NEW_ACCESS);

        let requests = host.http_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            (requests[0].method.as_str(), requests[0].url.as_str()),
            ("POST", TOKEN_URL)
        );
        assert_eq!(
            body_of(&requests[0]),
            json!({"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": CLIENT_ID})
        );
        let document = scratch.read();
        let stored = &document["claudeAiOauth"];
        assert_eq!(stored["accessToken"], NEW_ACCESS);
        assert_eq!(stored["refreshToken"], NEW_REFRESH);
        assert!(stored["expiresAt"].as_u64().unwrap() > now_ms() + 28_000_000);
        assert_eq!(stored["subscriptionType"], "max");
        assert_eq!(stored["rateLimitTier"], "default_claude_max_20x");
        assert_eq!(document["mcpOAuth"], json!({"keep": "me"}));
        assert_eq!(scratch.mode(), 0o600);
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "claude-api", "ok": true})]
        );

        // Fresh now: no second request.
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            NEW_ACCESS
        );
        assert_eq!(host.http_requests().len(), 1);
        assert_no_secret_leaked(&host);
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
            assert_eq!(answer.unwrap()["access_token"], NEW_ACCESS);
        }
        assert_eq!(refresh_events(&host).len(), 1);
        assert_eq!(scratch.read()["claudeAiOauth"]["refreshToken"], NEW_REFRESH);
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
                error.message().starts_with("token refresh failed (400: "),
                "{error}"
            );
        }
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "claude-api", "ok": false})]
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
            "token refresh failed (400: Refresh token not found or invalid); run `ccproxy auth login claude-api`"
        );
        assert_eq!(
            refresh_events(&host),
            [json!({"provider": "claude-api", "ok": false})]
        );
        assert_eq!(scratch.read(), stored_before);
        assert_no_secret_leaked(&host);
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
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            ACCESS
        );
        assert!(host.logged("Claude token refresh failed (503: {})"));
        // Within RETRY_REFRESH_AFTER the failure is not asked again.
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            ACCESS
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
                error.message().starts_with("token refresh failed (400: "),
                "{error}"
            );
        }
        assert_eq!(host.http_requests().len(), 1);
        // An explicit `refresh` asks at once, and its success ends the wait.
        failing.store(false, Ordering::SeqCst);
        call(&plugin, "refresh", json!({})).unwrap();
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            NEW_ACCESS
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
        // `claude /login` writes a fresh token.
        scratch.write(&cli_login(3_600_000));
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            ACCESS
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
                "not logged in to Claude: run `ccproxy auth login claude-api` or `claude /login`"
            );
        }
        assert_eq!(
            call(&plugin, "status", json!({})).unwrap(),
            json!({
                "logged_in": false,
                "expires_at_ms": null,
                "expired": false,
                "subscription_type": null,
                "scopes": [],
                "access_token": null,
                "file": scratch.file(),
            })
        );
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn a_login_or_refresh_by_the_claude_cli_is_picked_up() {
        let scratch = Scratch::new();
        let host = scratch.host().http(|_| Ok(granted()));
        let plugin = start(&host);
        // `claude /login` after the proxy started.
        scratch.write(&cli_login(3_600_000));
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            ACCESS
        );
        // The Claude CLI refreshes the file behind our back.
        let mut refreshed = cli_login(7_200_000);
        refreshed["claudeAiOauth"]["accessToken"] = json!("sk-ant-oat01-refreshed-by-the-cli");
        scratch.write(&refreshed);
        assert_eq!(
            call(&plugin, "access_token", json!({})).unwrap()["access_token"],
            "sk-ant-oat01-refreshed-by-the-cli"
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
        assert_eq!(status["access_token"], "sk-ant***ABCD");
        assert_eq!(status["subscription_type"], "max");
        assert_eq!(status["scopes"], json!(["user:inference", "user:profile"]));
        assert_eq!(status["file"], json!(scratch.file()));
        assert_eq!(
            status["expires_at_ms"],
            scratch.read()["claudeAiOauth"]["expiresAt"]
        );
        let text = status.to_string();
        assert!(!text.contains(ACCESS) && !text.contains(REFRESH), "{text}");

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
        assert_eq!(status["access_token"], "sk-ant***WXYZ");
        assert_eq!(status["logged_in"], true);
        assert_eq!(scratch.read()["claudeAiOauth"]["accessToken"], NEW_ACCESS);
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
        assert_eq!(scratch.read(), json!({"mcpOAuth": {"keep": "me"}}));
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
        login.as_object_mut().unwrap().remove("mcpOAuth");
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
        assert_eq!(health.details["subscription_type"], "max");
        assert!(!health.details.to_string().contains(ACCESS));

        scratch.write(&cli_login(-1_000));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(
            health.details["reason"]
                .as_str()
                .unwrap()
                .contains("expired")
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
    }

    #[test]
    fn config_is_checked() {
        let scratch = Scratch::new();
        let refused = |config: Value| {
            MockHost::new()
                .config(config)
                .start::<OAuthClaude>()
                .unwrap_err()
        };
        refused(json!({"credentials_file": scratch.file(), "token_urll": "x"}));
        let error =
            refused(json!({"credentials_file": scratch.file(), "request_timeout_seconds": 0}));
        assert!(
            error.message().contains("request_timeout_seconds"),
            "{error}"
        );
        let error = refused(
            json!({"credentials_file": scratch.file(), "token_url": "console.anthropic.com"}),
        );
        assert!(error.message().contains("token_url"), "{error}");
        let plugin = MockHost::new()
            .config(json!({"credentials_file": scratch.file(), "profile_url": "", "refresh_grace_seconds": 0}))
            .start::<OAuthClaude>();
        assert!(plugin.is_ok());
    }

    #[test]
    fn credentials_path_defaults_to_the_claude_cli_file() {
        let home = Some(OsString::from("/home/ada"));
        assert_eq!(
            credentials_path("", home.clone()).unwrap(),
            PathBuf::from("/home/ada/.claude/.credentials.json")
        );
        assert_eq!(
            credentials_path("~/creds/claude.json", home.clone()).unwrap(),
            PathBuf::from("/home/ada/creds/claude.json")
        );
        assert_eq!(
            credentials_path("/etc/ccproxy/claude.json", None).unwrap(),
            PathBuf::from("/etc/ccproxy/claude.json")
        );
        let error = credentials_path("", None).unwrap_err();
        assert!(error.message().contains("credentials_file"), "{error}");
    }
}
