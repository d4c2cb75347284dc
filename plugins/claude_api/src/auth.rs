//! Credentials and the upstream request headers built from them.
//!
//! Headers are built from scratch rather than filtered from the client's:
//! only the two Anthropic protocol headers a client legitimately sets
//! (`anthropic-beta`, `anthropic-version`) are taken from it, so its own
//! credentials, cookies and hop-by-hop headers cannot leak upstream.

use ccproxy_plugin_abi::{Context, ErrorKind, Headers, PluginError, Value, json, serde_json};
use serde::Deserialize;

use crate::config::{AuthMode, Secret};

/// The service the `oauth_claude` plugin provides.
pub(crate) const OAUTH_SERVICE: &str = "oauth.claude-api";

/// Betas Anthropic requires with a subscription (OAuth) token.
pub(crate) const OAUTH_BETAS: [&str; 2] = ["claude-code-20250219", "oauth-2025-04-20"];

/// What this plugin calls itself upstream.
pub(crate) const USER_AGENT: &str = concat!("ccproxy/", env!("CARGO_PKG_VERSION"));

/// A credential for the upstream.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// An Anthropic API key, sent as `x-api-key`.
    ApiKey(Secret),
    /// A subscription access token, sent as `authorization: Bearer`.
    OAuth(Secret),
}

impl Credential {
    /// `api_key` or `oauth`, for health details and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey(_) => "api_key",
            Credential::OAuth(_) => "oauth",
        }
    }
}

/// The `access_token` answer of [`OAUTH_SERVICE`]; other fields are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Secret,
}

/// Where the credential comes from, fixed at init.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// `auth_mode`.
    pub(crate) mode: AuthMode,
    /// The configured or environment API key; may be empty.
    pub(crate) api_key: Secret,
    /// The environment variable named in messages.
    pub(crate) api_key_env: String,
}

impl Credentials {
    /// The credential for one request: the API key (unless `auth_mode` is
    /// `oauth`), else a token from [`OAUTH_SERVICE`]. Without either:
    /// `Unauthorized`, saying what to do.
    pub(crate) async fn resolve(&self, ctx: &Context) -> Result<Credential, PluginError> {
        if self.mode != AuthMode::OAuth && !self.api_key.is_empty() {
            return Ok(Credential::ApiKey(self.api_key.clone()));
        }
        if self.mode == AuthMode::ApiKey {
            return Err(self.missing("auth_mode is \"api_key\", so OAuth is not tried"));
        }
        let answer = ctx
            .call_service(OAUTH_SERVICE, "access_token", json!({}))
            .await;
        match answer {
            Ok(value) => {
                let token = token_of(value);
                if token.is_empty() {
                    Err(self.missing(&format!("{OAUTH_SERVICE} answered without an access token")))
                } else {
                    Ok(Credential::OAuth(token))
                }
            }
            Err(error) => Err(match error.kind() {
                // The service is there but could not get a token right now
                // (refresh failed, timed out): not the user's missing login.
                ErrorKind::Upstream
                | ErrorKind::Timeout
                | ErrorKind::RateLimited
                | ErrorKind::Internal
                | ErrorKind::Panicked => PluginError::new(
                    error.kind(),
                    format!("{OAUTH_SERVICE} could not provide a token: {error}"),
                ),
                _ => self.missing(&format!("{OAUTH_SERVICE}: {error}")),
            }),
        }
    }

    /// The missing-credentials error, with `detail` on why.
    fn missing(&self, detail: &str) -> PluginError {
        PluginError::new(
            ErrorKind::Unauthorized,
            format!(
                "no Anthropic credentials: set {} or [plugins.claude_api] api_key, or run `ccproxy auth login claude-api` ({detail})",
                self.api_key_env
            ),
        )
    }
}

fn token_of(value: Value) -> Secret {
    serde_json::from_value::<TokenAnswer>(value)
        .map(|answer| answer.access_token)
        .unwrap_or_default()
}

/// The client's `anthropic-beta` tags (every such header, comma-separated),
/// then `required`, each once, in first-seen order; `None` when empty.
pub(crate) fn merge_betas(client: &Headers, required: &[&str]) -> Option<String> {
    let client_tags = client
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("anthropic-beta"))
        .flat_map(|(_, value)| value.split(','));
    let mut tags: Vec<&str> = Vec::new();
    for tag in client_tags.chain(required.iter().copied()).map(str::trim) {
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    (!tags.is_empty()).then(|| tags.join(","))
}

/// The upstream headers for `credential`: content type, version (the
/// client's if it sent one), credential, merged betas (the OAuth ones only
/// with an OAuth token: never betas the client did not ask for otherwise,
/// ccproxy-api #54/#56/#60) and our user agent.
pub(crate) fn upstream_headers(
    credential: &Credential,
    client: &Headers,
    default_version: &str,
) -> Headers {
    let mut headers = Headers::default();
    headers.set("content-type", "application/json");
    let version = client
        .get("anthropic-version")
        .map(str::trim)
        .filter(|version| !version.is_empty())
        .unwrap_or(default_version);
    headers.set("anthropic-version", version);
    let required: &[&str] = match credential {
        Credential::ApiKey(key) => {
            headers.set("x-api-key", key.expose());
            &[]
        }
        Credential::OAuth(token) => {
            headers.set("authorization", format!("Bearer {}", token.expose()));
            &OAUTH_BETAS
        }
    };
    if let Some(betas) = merge_betas(client, required) {
        headers.set("anthropic-beta", betas);
    }
    headers.set("user-agent", USER_AGENT);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn betas_merge_in_order_without_duplicates() {
        let client = headers(&[
            (
                "Anthropic-Beta",
                "interleaved-thinking-2025-05-14, oauth-2025-04-20",
            ),
            (
                "anthropic-beta",
                "context-1m-2025-08-07,,interleaved-thinking-2025-05-14",
            ),
        ]);
        assert_eq!(
            merge_betas(&client, &OAUTH_BETAS).as_deref(),
            Some(
                "interleaved-thinking-2025-05-14,oauth-2025-04-20,context-1m-2025-08-07,claude-code-20250219"
            )
        );
        assert_eq!(merge_betas(&Headers::default(), &[]), None);
        assert_eq!(
            merge_betas(&Headers::default(), &OAUTH_BETAS).as_deref(),
            Some("claude-code-20250219,oauth-2025-04-20")
        );
    }

    #[test]
    fn api_key_headers() {
        let built = upstream_headers(
            &Credential::ApiKey(Secret::new("sk-ant-key")),
            &headers(&[("anthropic-version", "2024-01-01")]),
            "2023-06-01",
        );
        assert_eq!(
            built,
            headers(&[
                ("content-type", "application/json"),
                ("anthropic-version", "2024-01-01"),
                ("x-api-key", "sk-ant-key"),
                ("user-agent", USER_AGENT),
            ])
        );
    }

    #[test]
    fn oauth_headers() {
        let built = upstream_headers(
            &Credential::OAuth(Secret::new("tok")),
            &Headers::default(),
            "2023-06-01",
        );
        assert_eq!(
            built,
            headers(&[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("authorization", "Bearer tok"),
                ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"),
                ("user-agent", USER_AGENT),
            ])
        );
    }

    #[test]
    fn credentials_do_not_print() {
        let printed = format!("{:?}", Credential::OAuth(Secret::new("tok-secret")));
        assert!(!printed.contains("tok-secret"), "{printed}");
    }
}
