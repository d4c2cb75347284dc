//! An OAuth auth provider's service, the parts every provider shares: the
//! six methods and their dispatch ([`OAuthService`], [`dispatch`]), their
//! arguments ([`AuthorizeArgs`], [`ExchangeArgs`]), the token endpoint
//! ([`request_token`], reported as the host's `oauth.*` hook events) and
//! its errors ([`TokenError`]), and URL encoding.
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `authorize_url` | `state`, `code_challenge` (S256), `redirect_uri`?, `manual`? | `{"url", "redirect_uri"}` |
//! | `exchange` | `code` (or a pasted `code#state`), `state`, `code_verifier`, `redirect_uri`?, `manual`? | status |
//! | `access_token` | – | the token, in clear (the one method that shows it) |
//! | `refresh` | – | status, after a forced refresh |
//! | `status` | – | the login, token masked |
//! | `logout` | – | `{"logged_in": false}` |

use std::{future::Future, time::Duration};

use ccproxy_plugin_abi::{
    Context, ErrorKind, HttpRequest, PluginError, ServiceCall, Value, json, serde_json, warn,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, de::DeserializeOwned};
use subtle::ConstantTimeEq as _;

/// Emitted by a provider after each refresh request: `{"provider", "ok"}`.
pub const REFRESH_EVENT: &str = "custom.oauth.refresh";

/// The answer to a pasted code from another login attempt.
pub const STATE_MISMATCH: &str =
    "state mismatch: the pasted code is from another login attempt; start again";

/// The methods of an auth provider's service, answered by [`dispatch`].
pub trait OAuthService: Sync {
    /// `authorize_url`: the URL that starts a login.
    fn authorize_url(&self, args: AuthorizeArgs) -> Result<Value, PluginError>;
    /// `exchange`: the authorization code for tokens, stored; the status.
    fn exchange(
        &self,
        args: ExchangeArgs,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send;
    /// `access_token`: a valid access token, refreshed first when due.
    fn access_token(&self) -> impl Future<Output = Result<Value, PluginError>> + Send;
    /// `refresh`: a refresh whatever the expiry; the status.
    fn refresh(&self) -> impl Future<Output = Result<Value, PluginError>> + Send;
    /// `status`: the stored login, token masked.
    fn status(&self) -> Result<Value, PluginError>;
    /// `logout`: the login removed.
    fn logout(&self) -> impl Future<Output = Result<Value, PluginError>> + Send;
}

/// Answers `call` to `service`, provided by the plugin `plugin`, with the
/// method of `provider` it names; other services and methods are not found.
pub async fn dispatch<S: OAuthService>(
    plugin: &str,
    service: &str,
    provider: &S,
    call: ServiceCall,
) -> Result<Value, PluginError> {
    if call.service != service {
        return Err(PluginError::not_found(format!(
            "{plugin} provides {service}, not {}",
            call.service
        )));
    }
    match call.method.as_str() {
        "authorize_url" => provider.authorize_url(call.args_as()?),
        "exchange" => provider.exchange(call.args_as()?).await,
        "access_token" => provider.access_token().await,
        "refresh" => provider.refresh().await,
        "status" => provider.status(),
        "logout" => provider.logout().await,
        other => Err(PluginError::not_found(format!(
            "{service} has no method {other} (it has authorize_url, exchange, access_token, refresh, status, logout)"
        ))),
    }
}

/// An error of kind `Unauthorized`: not logged in, or the login is no good.
pub fn unauthorized(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Unauthorized, message)
}

/// Arguments of `authorize_url`.
#[derive(Debug, Deserialize)]
pub struct AuthorizeArgs {
    /// The login attempt's `state`.
    pub state: String,
    /// The PKCE challenge (S256).
    pub code_challenge: String,
    /// Where the authorization server sends the browser back; empty or
    /// missing: the configured one.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The manual flow (the user pastes the code).
    #[serde(default)]
    pub manual: bool,
}

impl AuthorizeArgs {
    /// The redirect URI of this login: the one asked for, else
    /// `manual_redirect_uri` in the manual flow, else `redirect_uri`. An
    /// error when `state` or `code_challenge` is empty.
    pub fn redirect_uri(
        &self,
        redirect_uri: &str,
        manual_redirect_uri: &str,
    ) -> Result<String, PluginError> {
        if self.state.is_empty() || self.code_challenge.is_empty() {
            return Err(PluginError::invalid(
                "authorize_url needs a non-empty state and code_challenge",
            ));
        }
        Ok(
            match self.redirect_uri.as_deref().filter(|uri| !uri.is_empty()) {
                Some(uri) => uri.to_owned(),
                None if self.manual => manual_redirect_uri.to_owned(),
                None => redirect_uri.to_owned(),
            },
        )
    }
}

/// Arguments of `exchange`.
#[derive(Deserialize)]
pub struct ExchangeArgs {
    /// The authorization code, or `code#state` as a manual flow's callback
    /// page shows it.
    pub code: String,
    /// The login attempt's `state`.
    pub state: String,
    /// The PKCE verifier.
    pub code_verifier: String,
    /// The redirect URI the login used; empty or missing: the configured one.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The manual flow.
    #[serde(default)]
    pub manual: bool,
}

/// A checked [`ExchangeArgs`]: the code and the redirect URI to send with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Exchange<'a> {
    /// The authorization code, without a pasted `#state`.
    pub code: &'a str,
    /// The redirect URI of the login.
    pub redirect_uri: String,
}

impl ExchangeArgs {
    /// The code (a pasted `code#state` split, its state checked against
    /// `state`) and the redirect URI: the one given, else
    /// `manual_redirect_uri` for the manual flow or a pasted `code#state`
    /// (which comes from the manual flow's page), else `redirect_uri`.
    pub fn check(
        &self,
        redirect_uri: &str,
        manual_redirect_uri: &str,
    ) -> Result<Exchange<'_>, PluginError> {
        let pasted = self.code.trim();
        let (code, pasted_state) = match pasted.split_once('#') {
            Some((code, state)) => (code.trim(), Some(state.trim())),
            None => (pasted, None),
        };
        if code.is_empty() {
            return Err(PluginError::invalid("the authorization code is empty"));
        }
        if self.state.is_empty() || self.code_verifier.is_empty() {
            return Err(PluginError::invalid(
                "exchange needs the login's state and code_verifier",
            ));
        }
        // In constant time, as every comparison with a secret.
        if pasted_state.is_some_and(|pasted_state| {
            !bool::from(pasted_state.as_bytes().ct_eq(self.state.as_bytes()))
        }) {
            return Err(PluginError::invalid(STATE_MISMATCH));
        }
        let redirect_uri = match self.redirect_uri.as_deref().filter(|uri| !uri.is_empty()) {
            Some(uri) => uri.to_owned(),
            None if self.manual || pasted_state.is_some() => manual_redirect_uri.to_owned(),
            None => redirect_uri.to_owned(),
        };
        Ok(Exchange { code, redirect_uri })
    }
}

/// Every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// space is `%20` and `:` is `%3A`.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// `name=value&…`, each side percent-encoded: a query string or an
/// `application/x-www-form-urlencoded` body.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `base` with `parameters` as its query, in their order, after the query
/// `base` already has.
pub fn url_with_query(base: &str, parameters: &[(&str, &str)]) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", form_encode(parameters))
}

/// A one-line reason from an error body, at most 200 characters: the first
/// non-empty string among `fields` (JSON pointers, such as
/// `/error_description` or `/error/message`), or the text itself.
pub fn upstream_message(body: &[u8], fields: &[&str]) -> String {
    const LIMIT: usize = 200;
    let from_json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            fields
                .iter()
                .find_map(|field| {
                    value
                        .pointer(field)
                        .and_then(Value::as_str)
                        .filter(|text| !text.is_empty())
                })
                .map(str::to_owned)
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "no message".to_owned();
    }
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Why a token request failed; never carries a token.
#[derive(Debug)]
pub enum TokenError {
    /// The endpoint answered with a non-2xx status.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The reason, from [`upstream_message`].
        message: String,
        /// The token endpoint's URL.
        url: String,
    },
    /// The request did not get an answer (connection, timeout).
    Transport(PluginError),
    /// A 2xx answer the plugin cannot read.
    Malformed(String),
}

impl TokenError {
    /// `400: Invalid refresh token`, or the transport error's message.
    pub fn describe(&self) -> String {
        match self {
            TokenError::Refused {
                status, message, ..
            } => format!("{status}: {message}"),
            TokenError::Transport(error) => error.message().to_owned(),
            TokenError::Malformed(message) => message.clone(),
        }
    }

    /// The failure of a login's code exchange: unauthorized when refused,
    /// the transport error's kind when unanswered, an upstream error when
    /// unreadable.
    pub fn exchange_error(self) -> PluginError {
        let message = format!(
            "token exchange failed ({}); start the login again",
            self.describe()
        );
        match self {
            TokenError::Refused { .. } => unauthorized(message),
            TokenError::Transport(error) => PluginError::new(error.kind(), message),
            TokenError::Malformed(_) => PluginError::new(ErrorKind::Upstream, message),
        }
    }

    /// The failure of a refresh, logged as a warning (`<display> token
    /// refresh failed (…)`). When the endpoint refused the refresh token (a
    /// 4xx but 429) the login is over: unauthorized, saying how to log in
    /// again (`login_hint`). When the endpoint failed (5xx, 429, no answer,
    /// an unreadable one) the login may still be good: an upstream error
    /// (502) naming the endpoint, so nobody logs in again for an outage.
    pub fn refresh_error(&self, display: &str, login_hint: &str) -> PluginError {
        let reason = self.describe();
        warn!("{display} token refresh failed ({reason})");
        match self {
            TokenError::Refused { status, url, .. } if *status >= 500 || *status == 429 => {
                PluginError::new(
                    ErrorKind::Upstream,
                    format!(
                        "token refresh failed: the token endpoint {url} answered {reason}; the login is kept, try again later"
                    ),
                )
            }
            TokenError::Refused { .. } => {
                unauthorized(format!("token refresh failed ({reason}); {login_hint}"))
            }
            TokenError::Transport(error) => PluginError::new(
                error.kind(),
                format!(
                    "token refresh failed: the token endpoint did not answer ({reason}); the login is kept, try again later"
                ),
            ),
            TokenError::Malformed(_) => PluginError::new(
                ErrorKind::Upstream,
                format!("token refresh failed: {reason}; the login is kept, try again later"),
            ),
        }
    }
}

/// A token endpoint's answer, as a provider reads it.
pub trait TokenAnswer: DeserializeOwned {
    /// Whether the answer carries an access token (an answer without one is
    /// [`TokenError::Malformed`]).
    fn has_access_token(&self) -> bool;
}

/// Which grant a token request is for, as the host's `oauth.*` hook events
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The authorization-code exchange of a login (`oauth.token.*`).
    Login,
    /// A refresh (`oauth.refresh.*`).
    Refresh,
}

impl Grant {
    fn event_kind(self) -> &'static str {
        match self {
            Grant::Login => "token",
            Grant::Refresh => "refresh",
        }
    }
}

/// A token request's body.
#[derive(Debug, Clone)]
pub enum TokenBody {
    /// Sent as `application/json`.
    Json(Value),
    /// Sent as `application/x-www-form-urlencoded` (see [`form_encode`]).
    Form(String),
}

/// Where token requests go.
#[derive(Debug, Clone)]
pub struct TokenEndpoint<'a> {
    /// The OAuth provider name in the hook events.
    pub provider: &'a str,
    /// The token endpoint.
    pub url: String,
    /// The timeout of each request.
    pub timeout: Duration,
    /// Where [`upstream_message`] looks for the reason of a refusal.
    pub message_fields: &'a [&'a str],
}

/// POSTs `body` to the token endpoint through the host's HTTP client,
/// reporting it as the host's `oauth.*` hook events: `oauth.<kind>.request`,
/// then `oauth.<kind>.response` or `oauth.error`. The events carry no
/// secrets.
pub async fn request_token<G: TokenAnswer>(
    ctx: &Context,
    endpoint: &TokenEndpoint<'_>,
    grant: Grant,
    body: TokenBody,
) -> Result<G, TokenError> {
    let kind = grant.event_kind();
    let provider = endpoint.provider;
    ctx.emit(
        &format!("oauth.{kind}.request"),
        json!({"provider": provider, "url": endpoint.url}),
    );
    let result = send_token_request(ctx, endpoint, body).await;
    match &result {
        Ok(_) => ctx.emit(
            &format!("oauth.{kind}.response"),
            json!({"provider": provider, "ok": true}),
        ),
        Err(error) => ctx.emit(
            "oauth.error",
            json!({"provider": provider, "phase": kind, "error": error.describe()}),
        ),
    }
    result
}

async fn send_token_request<G: TokenAnswer>(
    ctx: &Context,
    endpoint: &TokenEndpoint<'_>,
    body: TokenBody,
) -> Result<G, TokenError> {
    let (content_type, body) = match body {
        TokenBody::Json(body) => ("application/json", body.to_string()),
        TokenBody::Form(body) => ("application/x-www-form-urlencoded", body),
    };
    let request = HttpRequest {
        timeout: Some(endpoint.timeout),
        ..HttpRequest::post(endpoint.url.clone(), body)
            .header("content-type", content_type)
            .header("accept", "application/json")
    };
    let response = ctx.http(request).await.map_err(TokenError::Transport)?;
    if !(200..300).contains(&response.status) {
        return Err(TokenError::Refused {
            status: response.status,
            message: upstream_message(&response.body, endpoint.message_fields),
            url: endpoint.url.clone(),
        });
    }
    let grant: G = serde_json::from_slice(&response.body).map_err(|error| {
        TokenError::Malformed(format!(
            "the token endpoint answered {} with an unreadable body: {error}",
            response.status
        ))
    })?;
    if !grant.has_access_token() {
        return Err(TokenError::Malformed(
            "the token endpoint answered without an access token".to_owned(),
        ));
    }
    Ok(grant)
}

/// Emits [`REFRESH_EVENT`] for `provider`.
pub fn emit_refresh(ctx: &Context, provider: &str, ok: bool) {
    ctx.emit(REFRESH_EVENT, json!({ "provider": provider, "ok": ok }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &[
        "/error_description",
        "/error/message",
        "/error",
        "/message",
        "/detail",
    ];

    #[test]
    fn percent_encode_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode("org:create_api_key user:profile"),
            "org%3Acreate_api_key%20user%3Aprofile"
        );
        assert_eq!(
            percent_encode("http://localhost:1455/auth/callback"),
            "http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback"
        );
        assert_eq!(percent_encode("a+b=c&d#é"), "a%2Bb%3Dc%26d%23%C3%A9");
    }

    #[test]
    fn urls_append_to_an_existing_query() {
        assert_eq!(
            url_with_query("https://login.test/authorize?tenant=x", &[("a", "1 2")]),
            "https://login.test/authorize?tenant=x&a=1%202"
        );
        assert_eq!(
            url_with_query("https://login.test/authorize", &[("a", "b"), ("c", "d")]),
            "https://login.test/authorize?a=b&c=d"
        );
    }

    #[test]
    fn upstream_message_finds_the_reason() {
        let check = |body: &str, expected: &str| {
            assert_eq!(upstream_message(body.as_bytes(), FIELDS), expected);
        };
        check(
            r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#,
            "Refresh token not found or invalid",
        );
        check(r#"{"error":"invalid_grant"}"#, "invalid_grant");
        check(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Invalid code"}}"#,
            "Invalid code",
        );
        check(r#"{"message":"nope"}"#, "nope");
        check(r#"{"detail":"Unauthorized"}"#, "Unauthorized");
        check("Bad Gateway\n", "Bad Gateway");
        check("", "no message");
        // A field not asked for is not looked at.
        assert_eq!(
            upstream_message(br#"{"detail":"x"}"#, &FIELDS[..4]),
            r#"{"detail":"x"}"#
        );
        let long = "x".repeat(500);
        assert_eq!(
            upstream_message(long.as_bytes(), FIELDS).chars().count(),
            201
        );
    }

    #[test]
    fn token_errors_say_what_failed() {
        let refused = TokenError::Refused {
            status: 400,
            message: "bad".to_owned(),
            url: "https://auth.example/token".to_owned(),
        };
        assert_eq!(refused.describe(), "400: bad");
        let error = refused.refresh_error("Claude", "log in again");
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            error.message(),
            "token refresh failed (400: bad); log in again"
        );
        // An outage of the endpoint is no reason to log in again.
        for status in [500, 503, 429] {
            let failed = TokenError::Refused {
                status,
                message: "down".to_owned(),
                url: "https://auth.example/token".to_owned(),
            };
            let error = failed.refresh_error("Claude", "log in again");
            assert_eq!(error.kind(), ErrorKind::Upstream, "{status}");
            assert!(
                error.message().contains("https://auth.example/token"),
                "{error}"
            );
            assert!(!error.message().contains("log in again"), "{error}");
        }
        let error = TokenError::Transport(PluginError::new(ErrorKind::Timeout, "slow"))
            .refresh_error("Claude", "log in again");
        assert_eq!(error.kind(), ErrorKind::Timeout);
        let error =
            TokenError::Transport(PluginError::new(ErrorKind::Timeout, "slow")).exchange_error();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(
            error.message(),
            "token exchange failed (slow); start the login again"
        );
        let error = TokenError::Malformed("odd".to_owned()).exchange_error();
        assert_eq!(error.kind(), ErrorKind::Upstream);
    }

    fn exchange(code: &str, redirect_uri: Option<&str>, manual: bool) -> ExchangeArgs {
        ExchangeArgs {
            code: code.to_owned(),
            state: "s1".to_owned(),
            code_verifier: "v".to_owned(),
            redirect_uri: redirect_uri.map(str::to_owned),
            manual,
        }
    }

    #[test]
    fn exchange_args_split_a_pasted_code_and_pick_the_redirect() {
        let checked = |args: &ExchangeArgs| {
            args.check("http://cb", "https://manual")
                .unwrap()
                .redirect_uri
        };
        assert_eq!(checked(&exchange("c", None, false)), "http://cb");
        assert_eq!(checked(&exchange("c", None, true)), "https://manual");
        assert_eq!(
            checked(&exchange(" c # s1 ", None, false)),
            "https://manual"
        );
        assert_eq!(
            checked(&exchange("c#s1", Some("http://x"), false)),
            "http://x"
        );
        assert_eq!(checked(&exchange("c", Some(""), false)), "http://cb");
        assert_eq!(
            exchange(" c # s1 ", None, false)
                .check("a", "b")
                .unwrap()
                .code,
            "c"
        );
        let refused = |args: ExchangeArgs| args.check("a", "b").unwrap_err().message().to_owned();
        assert_eq!(refused(exchange("c#other", None, false)), STATE_MISMATCH);
        assert_eq!(
            refused(exchange(" #s1", None, false)),
            "the authorization code is empty"
        );
        let mut no_verifier = exchange("c", None, false);
        no_verifier.code_verifier.clear();
        assert_eq!(
            refused(no_verifier),
            "exchange needs the login's state and code_verifier"
        );
    }

    #[test]
    fn authorize_args_pick_the_redirect() {
        let args = |redirect_uri: Option<&str>, manual: bool| AuthorizeArgs {
            state: "s".to_owned(),
            code_challenge: "c".to_owned(),
            redirect_uri: redirect_uri.map(str::to_owned),
            manual,
        };
        assert_eq!(args(None, false).redirect_uri("a", "m").unwrap(), "a");
        assert_eq!(args(None, true).redirect_uri("a", "m").unwrap(), "m");
        assert_eq!(args(Some("x"), true).redirect_uri("a", "m").unwrap(), "x");
        let mut empty = args(None, false);
        empty.state.clear();
        assert_eq!(
            empty.redirect_uri("a", "m").unwrap_err().message(),
            "authorize_url needs a non-empty state and code_challenge"
        );
    }
}
