//! Claude's OAuth endpoints: the authorize URL, the token endpoint (code
//! exchange and refresh, JSON bodies) and the profile (subscription type).
//! Every request goes through the host's HTTP client (`Context::http`).

use std::time::Duration;

use ccproxy_plugin_abi::{Context, HttpRequest, Value, debug, json, serde_json};
use ccproxy_plugin_kit::oauth::{
    self, Grant, TokenAnswer, TokenBody, TokenEndpoint, TokenError, url_with_query,
};
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
    url_with_query(&config.authorize_url, &parameters)
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

impl TokenAnswer for TokenGrant {
    fn has_access_token(&self) -> bool {
        !self.access_token.expose().is_empty()
    }
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

/// Where an error body's reason is: OAuth's `error_description` or `error`,
/// Anthropic's `error.message`, or a `message`.
const MESSAGE_FIELDS: &[&str] = &["/error_description", "/error/message", "/error", "/message"];

/// POSTs `body` as JSON to the token endpoint, reported as the host's
/// `oauth.*` hook events.
pub(crate) async fn request_token(
    ctx: &Context,
    config: &Config,
    grant: Grant,
    body: Value,
) -> Result<TokenGrant, TokenError> {
    let endpoint = TokenEndpoint {
        provider: PROVIDER,
        url: config.token_url.clone(),
        timeout: Duration::from_secs(config.request_timeout_seconds),
        message_fields: MESSAGE_FIELDS,
    };
    oauth::request_token(ctx, &endpoint, grant, TokenBody::Json(body)).await
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
