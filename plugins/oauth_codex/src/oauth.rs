//! OpenAI's OAuth endpoints: the authorize URL and the token endpoint (code
//! exchange and refresh, both form-encoded). Every request goes through the
//! host's HTTP client (`Context::http`).

use std::time::Duration;

use ccproxy_plugin_abi::{Context, HttpRequest, PluginError, Value, json, serde_json};
use serde::Deserialize;

use crate::{
    Config, PROVIDER,
    store::{Secret, Tokens},
};

/// The authorize URL for one login attempt, with the parameters the Codex
/// CLI sends, in its order: the two Codex flags make the consent page the
/// one `codex login` shows and put the ChatGPT workspaces in the id token.
pub(crate) fn authorize_url(
    config: &Config,
    state: &str,
    code_challenge: &str,
    redirect_uri: &str,
) -> String {
    let scope = config.scopes.join(" ");
    let parameters = [
        ("response_type", "code"),
        ("client_id", config.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
        ("originator", "codex_cli_rs"),
    ];
    let separator = if config.authorize_url().contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "{}{separator}{}",
        config.authorize_url(),
        form_encode(&parameters)
    )
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

/// `name=value&…`, each side percent-encoded: a query string or an
/// `application/x-www-form-urlencoded` body.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The form body of the authorization-code grant.
pub(crate) fn exchange_form(
    config: &Config,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> String {
    form_encode(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", &config.client_id),
        ("code_verifier", code_verifier),
    ])
}

/// The form body of the refresh grant, with the scopes, as the original sends it.
pub(crate) fn refresh_form(config: &Config, refresh_token: &Secret) -> String {
    form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", &config.client_id),
        ("scope", &config.scopes.join(" ")),
    ])
}

/// The token endpoint's answer (both grants).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenGrant {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
    #[serde(default)]
    pub(crate) id_token: Option<Secret>,
}

impl TokenGrant {
    /// The tokens a fresh login stores.
    pub(crate) fn into_login(self) -> Tokens {
        let mut tokens = Tokens {
            id_token: self.id_token.unwrap_or_default(),
            access_token: self.access_token,
            refresh_token: self.refresh_token.unwrap_or_default(),
            account_id: None,
            other: Default::default(),
        };
        tokens.account_id = tokens.chatgpt_account_id();
        tokens
    }

    /// `current` after a refresh: the new access token; the refresh and id
    /// tokens when the endpoint sent new ones (OpenAI rotates the refresh
    /// token: the old one is spent); the account id from the new claims,
    /// else the old one; everything else kept.
    pub(crate) fn into_refreshed(self, current: &Tokens) -> Tokens {
        let mut tokens = Tokens {
            id_token: self
                .id_token
                .filter(|token| !token.is_empty())
                .unwrap_or_else(|| current.id_token.clone()),
            access_token: self.access_token,
            refresh_token: self
                .refresh_token
                .filter(|token| !token.is_empty())
                .unwrap_or_else(|| current.refresh_token.clone()),
            account_id: None,
            other: current.other.clone(),
        };
        tokens.account_id = tokens
            .chatgpt_account_id()
            .or_else(|| current.account_id.clone());
        tokens
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

/// Which grant a token request is for, as the host's `oauth.*` hook events
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
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

/// POSTs the form `body` to the token endpoint, reporting it as the host's
/// `oauth.*` hook events: the request, then its response or error. The
/// events carry no secrets.
pub(crate) async fn request_token(
    ctx: &Context,
    config: &Config,
    grant: Grant,
    body: String,
) -> Result<TokenGrant, TokenError> {
    let kind = grant.event_kind();
    ctx.emit(
        &format!("oauth.{kind}.request"),
        json!({"provider": PROVIDER, "url": config.token_url()}),
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
    body: String,
) -> Result<TokenGrant, TokenError> {
    let request = HttpRequest {
        timeout: Some(Duration::from_secs(config.request_timeout_seconds)),
        ..HttpRequest::post(config.token_url(), body)
            .header("content-type", "application/x-www-form-urlencoded")
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
    if grant.access_token.is_empty() {
        return Err(TokenError::Malformed(
            "the token endpoint answered without an access token".to_owned(),
        ));
    }
    Ok(grant)
}

/// A one-line reason from an error body: OAuth's `error_description`,
/// OpenAI's `error.message`, `error` as a string, a `message` or `detail`,
/// or the text itself.
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
                &value["detail"],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::tests::jwt;

    #[test]
    fn percent_encode_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode("openid profile email offline_access"),
            "openid%20profile%20email%20offline_access"
        );
        assert_eq!(
            percent_encode("http://localhost:1455/auth/callback"),
            "http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback"
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
            url.starts_with("https://login.test/authorize?tenant=x&response_type=code&"),
            "{url}"
        );
    }

    #[test]
    fn forms_are_url_encoded() {
        let config = Config::default();
        assert_eq!(
            exchange_form(
                &config,
                "c/1+2",
                "http://localhost:1455/auth/callback",
                "v~"
            ),
            "grant_type=authorization_code&code=c%2F1%2B2&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&client_id=app_EMoamEEZ73f0CkXaXp7hrann&code_verifier=v~"
        );
        assert_eq!(
            refresh_form(&config, &Secret::new("rt_a=b")),
            "grant_type=refresh_token&refresh_token=rt_a%3Db&client_id=app_EMoamEEZ73f0CkXaXp7hrann&scope=openid%20profile%20email%20offline_access"
        );
    }

    #[test]
    fn upstream_message_finds_the_reason() {
        let check =
            |body: &str, expected: &str| assert_eq!(upstream_message(body.as_bytes()), expected);
        check(
            r#"{"error":"invalid_grant","error_description":"Refresh token has already been used"}"#,
            "Refresh token has already been used",
        );
        check(r#"{"error":"invalid_grant"}"#, "invalid_grant");
        check(
            r#"{"error":{"message":"Could not validate your refresh token.","type":"invalid_request_error","code":"refresh_token_reused"}}"#,
            "Could not validate your refresh token.",
        );
        check(r#"{"detail":"Unauthorized"}"#, "Unauthorized");
        check("Bad Gateway\n", "Bad Gateway");
        check("", "no message");
        let long = "x".repeat(500);
        assert_eq!(upstream_message(long.as_bytes()).chars().count(), 201);
    }

    #[test]
    fn a_login_takes_the_account_from_the_id_token() {
        let grant = TokenGrant {
            access_token: Secret::new("opaque"),
            refresh_token: Some(Secret::new("rt")),
            id_token: Some(Secret::new(jwt(
                &json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-1"}}),
            ))),
        };
        let tokens = grant.into_login();
        assert_eq!(tokens.account_id.as_deref(), Some("acc-1"));
        assert_eq!(tokens.refresh_token.expose(), "rt");
        let bare = TokenGrant {
            access_token: Secret::new("opaque"),
            refresh_token: None,
            id_token: None,
        }
        .into_login();
        assert_eq!(bare.account_id, None);
        assert!(bare.id_token.is_empty() && bare.refresh_token.is_empty());
    }

    #[test]
    fn refreshed_tokens_keep_what_the_endpoint_did_not_send() {
        let mut current = Tokens {
            id_token: Secret::new("id-old"),
            access_token: Secret::new("old"),
            refresh_token: Secret::new("refresh-old"),
            account_id: Some("acc-old".to_owned()),
            other: Default::default(),
        };
        current.other.insert("future".to_owned(), json!(1));
        let refreshed = TokenGrant {
            access_token: Secret::new("new"),
            refresh_token: None,
            id_token: Some(Secret::new("")),
        }
        .into_refreshed(&current);
        assert_eq!(refreshed.access_token.expose(), "new");
        assert_eq!(refreshed.refresh_token.expose(), "refresh-old");
        assert_eq!(refreshed.id_token.expose(), "id-old");
        assert_eq!(refreshed.account_id.as_deref(), Some("acc-old"));
        assert_eq!(refreshed.other["future"], json!(1));

        let access =
            jwt(&json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-new"}}));
        let rotated = TokenGrant {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new("refresh-new")),
            id_token: None,
        }
        .into_refreshed(&current);
        assert_eq!(rotated.refresh_token.expose(), "refresh-new");
        assert_eq!(rotated.account_id.as_deref(), Some("acc-new"));
    }
}
