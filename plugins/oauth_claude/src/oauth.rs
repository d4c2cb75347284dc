//! Claude's OAuth endpoints: the authorize URL, the token endpoint (code
//! exchange and refresh, JSON bodies) and the profile (subscription type).
//! Every request goes through the host's HTTP client (`Context::http`).

use std::time::Duration;

use ccproxy_plugin_abi::{Context, HttpRequest, PluginError, Value, debug, json, serde_json};
use serde::Deserialize;

use crate::{
    Config, PROVIDER,
    store::{OAuthCredentials, Secret},
};

/// The authorize URL for one login attempt, parameters in the original's order.
pub(crate) fn authorize_url(
    config: &Config,
    state: &str,
    code_challenge: &str,
    redirect_uri: &str,
) -> String {
    let scope = config.scopes.join(" ");
    let parameters = [
        ("code", "true"),
        ("client_id", config.client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
    ];
    let query: Vec<String> = parameters
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect();
    let separator = if config.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{separator}{}", config.authorize_url, query.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// space is `%20` and `:` is `%3A`.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The token endpoint's answer (both grants).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenGrant {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
    /// Seconds.
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
    /// Space-separated.
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

impl TokenGrant {
    fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.expires_in
            .map(|seconds| now_ms.saturating_add(seconds.saturating_mul(1000)))
    }

    fn scopes(&self) -> Option<Vec<String>> {
        self.scope
            .as_deref()
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
            .filter(|scopes: &Vec<String>| !scopes.is_empty())
    }

    /// The credentials a fresh login stores; `claudeAiOauth` holds exactly
    /// these five keys afterwards.
    pub(crate) fn into_login(
        self,
        now_ms: u64,
        requested_scopes: &[String],
        subscription_type: Option<String>,
    ) -> OAuthCredentials {
        OAuthCredentials {
            expires_at: self.expires_at(now_ms),
            scopes: self.scopes().unwrap_or_else(|| requested_scopes.to_vec()),
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            subscription_type,
            other: Default::default(),
        }
    }

    /// `current` after a refresh: a new access token and expiry; the refresh
    /// token when the endpoint rotated it; everything else kept.
    pub(crate) fn into_refreshed(
        self,
        now_ms: u64,
        current: &OAuthCredentials,
    ) -> OAuthCredentials {
        OAuthCredentials {
            expires_at: self.expires_at(now_ms),
            scopes: self.scopes().unwrap_or_else(|| current.scopes.clone()),
            access_token: self.access_token,
            refresh_token: self.refresh_token.or_else(|| current.refresh_token.clone()),
            subscription_type: current.subscription_type.clone(),
            other: current.other.clone(),
        }
    }
}

/// Why a token request failed; never carries a token.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// The endpoint answered with a non-2xx status.
    Refused { status: u16, message: String },
    /// The request did not get an answer (connection, timeout).
    Transport(PluginError),
    /// A 2xx answer this plugin cannot read.
    Malformed(String),
}

impl TokenError {
    /// `400: Invalid refresh token`, or the transport error's message.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenError::Refused { status, message } => format!("{status}: {message}"),
            TokenError::Transport(error) => error.message().to_owned(),
            TokenError::Malformed(message) => message.clone(),
        }
    }
}

/// POSTs `body` as JSON to the token endpoint.
pub(crate) async fn request_token(
    ctx: &Context,
    config: &Config,
    body: &Value,
) -> Result<TokenGrant, TokenError> {
    // The host's `oauth.*` hook events: request, then response or error. No secrets.
    let kind = if body["grant_type"] == "refresh_token" {
        "refresh"
    } else {
        "token"
    };
    ctx.emit(
        &format!("oauth.{kind}.request"),
        json!({"provider": PROVIDER, "url": config.token_url}),
    );
    let result = send_token_request(ctx, config, body).await;
    match &result {
        Ok(_) => ctx.emit(
            &format!("oauth.{kind}.response"),
            json!({"provider": PROVIDER, "ok": true}),
        ),
        Err(error) => ctx.emit(
            "oauth.error",
            json!({"provider": PROVIDER, "phase": kind, "error": error.describe()}),
        ),
    }
    result
}

async fn send_token_request(
    ctx: &Context,
    config: &Config,
    body: &Value,
) -> Result<TokenGrant, TokenError> {
    let request = HttpRequest {
        timeout: Some(Duration::from_secs(config.request_timeout_seconds)),
        ..HttpRequest::post(config.token_url.clone(), body.to_string())
            .header("content-type", "application/json")
            .header("accept", "application/json")
    };
    let response = ctx.http(request).await.map_err(TokenError::Transport)?;
    if !(200..300).contains(&response.status) {
        return Err(TokenError::Refused {
            status: response.status,
            message: upstream_message(&response.body),
        });
    }
    let grant: TokenGrant = serde_json::from_slice(&response.body).map_err(|error| {
        TokenError::Malformed(format!(
            "the token endpoint answered {} with an unreadable body: {error}",
            response.status
        ))
    })?;
    if grant.access_token.expose().is_empty() {
        return Err(TokenError::Malformed(
            "the token endpoint answered without an access token".to_owned(),
        ));
    }
    Ok(grant)
}

/// Asks the profile endpoint which plan the account has: `max`, `pro`, or
/// `None` when it has neither or the endpoint does not answer (the login
/// works without it).
pub(crate) async fn subscription_type(
    ctx: &Context,
    config: &Config,
    access_token: &Secret,
) -> Option<String> {
    if config.profile_url.is_empty() {
        return None;
    }
    let request = HttpRequest {
        timeout: Some(Duration::from_secs(config.request_timeout_seconds)),
        ..HttpRequest::get(config.profile_url.clone())
            .header("authorization", format!("Bearer {}", access_token.expose()))
            .header("anthropic-beta", "oauth-2025-04-20")
            .header("accept", "application/json")
    };
    let response = match ctx.http(request).await {
        Ok(response) if (200..300).contains(&response.status) => response,
        Ok(response) => {
            debug!("profile endpoint answered {}", response.status);
            return None;
        }
        Err(error) => {
            debug!("profile endpoint unreachable: {error}");
            return None;
        }
    };
    let profile: Value = serde_json::from_slice(&response.body).ok()?;
    let flag = |name: &str| profile["account"][name].as_bool().unwrap_or(false);
    if flag("has_claude_max") {
        Some("max".to_owned())
    } else if flag("has_claude_pro") {
        Some("pro".to_owned())
    } else {
        None
    }
}

/// A one-line reason from an error body: OAuth's `error_description` or
/// `error`, Anthropic's `error.message`, a `message`, or the text itself.
pub(crate) fn upstream_message(body: &[u8]) -> String {
    const LIMIT: usize = 200;
    let from_json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            [
                &value["error_description"],
                &value["error"]["message"],
                &value["error"],
                &value["message"],
            ]
            .into_iter()
            .find_map(|candidate| candidate.as_str().filter(|text| !text.is_empty()))
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

/// The JSON body of the authorization-code grant (`state` is non-standard,
/// but Claude's endpoint wants it).
pub(crate) fn exchange_body(
    config: &Config,
    code: &str,
    state: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Value {
    json!({
        "grant_type": "authorization_code",
        "code": code,
        "state": state,
        "redirect_uri": redirect_uri,
        "client_id": config.client_id,
        "code_verifier": code_verifier,
    })
}

/// The JSON body of the refresh grant.
pub(crate) fn refresh_body(config: &Config, refresh_token: &Secret) -> Value {
    json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "client_id": config.client_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode("org:create_api_key user:profile"),
            "org%3Acreate_api_key%20user%3Aprofile"
        );
        assert_eq!(
            percent_encode("http://localhost:54545/callback"),
            "http%3A%2F%2Flocalhost%3A54545%2Fcallback"
        );
        assert_eq!(percent_encode("a+b=c&d#é"), "a%2Bb%3Dc%26d%23%C3%A9");
    }

    #[test]
    fn authorize_url_appends_to_an_existing_query() {
        let config = Config {
            authorize_url: "https://login.test/authorize?tenant=x".to_owned(),
            ..Config::default()
        };
        let url = authorize_url(&config, "s", "c", "r");
        assert!(
            url.starts_with("https://login.test/authorize?tenant=x&code=true&"),
            "{url}"
        );
    }

    #[test]
    fn upstream_message_finds_the_reason() {
        let check =
            |body: &str, expected: &str| assert_eq!(upstream_message(body.as_bytes()), expected);
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
        check("Bad Gateway\n", "Bad Gateway");
        check("", "no message");
        let long = "x".repeat(500);
        assert_eq!(upstream_message(long.as_bytes()).chars().count(), 201);
    }

    #[test]
    fn refreshed_credentials_keep_what_the_endpoint_did_not_send() {
        let mut current = TokenGrant {
            access_token: Secret::new("old"),
            refresh_token: Some(Secret::new("refresh-old")),
            expires_in: Some(10),
            scope: Some("user:inference user:profile".to_owned()),
        }
        .into_login(0, &[], Some("max".to_owned()));
        current
            .other
            .insert("rateLimitTier".to_owned(), json!("tier"));
        let grant = TokenGrant {
            access_token: Secret::new("new"),
            refresh_token: None,
            expires_in: Some(3600),
            scope: None,
        };
        let refreshed = grant.into_refreshed(1_000, &current);
        assert_eq!(refreshed.access_token.expose(), "new");
        assert_eq!(refreshed.refresh_token, Some(Secret::new("refresh-old")));
        assert_eq!(refreshed.expires_at, Some(3_601_000));
        assert_eq!(refreshed.scopes, ["user:inference", "user:profile"]);
        assert_eq!(refreshed.subscription_type.as_deref(), Some("max"));
        assert_eq!(refreshed.other["rateLimitTier"], json!("tier"));
    }
}
