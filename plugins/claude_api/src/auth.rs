//! Credentials and the upstream request headers built from them.
//!
//! Headers are built from scratch rather than filtered from the client's:
//! only the two Anthropic protocol headers a client legitimately sets
//! (`anthropic-beta`, `anthropic-version`) are taken from it, and in OAuth
//! mode the Claude CLI's identity headers of a Claude Code client, so its
//! own credentials, cookies and hop-by-hop headers cannot leak upstream.

use ccproxy_plugin_abi::{Context, ErrorKind, Headers, PluginError, Value, json, serde_json};
use serde::Deserialize;

use crate::config::{AuthMode, Secret};

/// The service the `oauth_claude` plugin provides.
pub(crate) const OAUTH_SERVICE: &str = "oauth.claude-api";

/// Betas Anthropic requires with a subscription (OAuth) token.
pub(crate) const OAUTH_BETAS: [&str; 2] = ["claude-code-20250219", "oauth-2025-04-20"];

/// What this plugin calls itself upstream with an API key.
pub(crate) const USER_AGENT: &str = concat!("ccproxy/", env!("CARGO_PKG_VERSION"));

/// The headers by which the Claude CLI (Claude Code) identifies itself,
/// besides every `x-stainless-*` one (its Anthropic SDK's).
const CLAUDE_CLI_IDENTITY: [&str; 6] = [
    "accept",
    "accept-language",
    "anthropic-dangerous-direct-browser-access",
    "sec-fetch-mode",
    "user-agent",
    "x-app",
];

/// The Claude CLI identity sent in OAuth mode for a client that is not
/// Claude Code: what claude-cli 1.0.113 sends (`tests/data/claude_cli_request_capture.json`),
/// the original's fallback when no Claude CLI is installed to copy
/// (`ccproxy/data/claude_headers_fallback.json`). Its `connection`,
/// `accept-encoding`, `host` and `content-length` are left to the host's
/// HTTP client.
pub(crate) const CLAUDE_CLI_DEFAULTS: [(&str, &str); 14] = [
    ("accept", "application/json"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-timeout", "600"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "0.60.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.17.0"),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("x-app", "cli"),
    ("user-agent", "claude-cli/1.0.113 (external, sdk-cli)"),
    ("accept-language", "*"),
    ("sec-fetch-mode", "cors"),
];

/// Whether `name` (lower case) is one of the Claude CLI's identity headers.
pub(crate) fn is_identity_header(name: &str) -> bool {
    CLAUDE_CLI_IDENTITY.contains(&name) || name.starts_with("x-stainless-")
}

/// Whether `client` is Claude Code: its user agent is `claude-cli/…`.
fn is_claude_code(client: &Headers) -> bool {
    client.get("user-agent").is_some_and(|agent| {
        agent
            .trim_start()
            .get(.."claude-cli/".len())
            .is_some_and(|head| head.eq_ignore_ascii_case("claude-cli/"))
    })
}

/// The Claude CLI identity headers for an OAuth request: a Claude Code
/// client's own (those of [`CLAUDE_CLI_IDENTITY`] and `x-stainless-*` it
/// sent, in its order), so Anthropic sees the version actually talking;
/// for any other client, those `detected` from the installed Claude CLI
/// (`detect.rs`), else [`CLAUDE_CLI_DEFAULTS`] (as the original, which
/// sends the detected or fallback Claude CLI headers in OAuth mode).
pub(crate) fn claude_cli_identity(
    client: &Headers,
    detected: Option<&[(String, String)]>,
) -> Vec<(String, String)> {
    if !is_claude_code(client) {
        if let Some(detected) = detected.filter(|headers| !headers.is_empty()) {
            return detected.to_vec();
        }
        return CLAUDE_CLI_DEFAULTS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
    }
    let mut identity: Vec<(String, String)> = Vec::new();
    for (name, value) in client.iter() {
        let name = name.to_ascii_lowercase();
        if is_identity_header(&name) && !identity.iter().any(|(seen, _)| *seen == name) {
            identity.push((name, value.to_owned()));
        }
    }
    identity
}

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
/// ccproxy-api #54/#56/#60), then who is calling: with an API key our user
/// agent, with an OAuth token the Claude CLI's identity
/// ([`claude_cli_identity`]), which a subscription token is issued for.
pub(crate) fn upstream_headers(
    credential: &Credential,
    client: &Headers,
    default_version: &str,
    detected: Option<&[(String, String)]>,
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
    match credential {
        Credential::ApiKey(_) => headers.set("user-agent", USER_AGENT),
        Credential::OAuth(_) => {
            for (name, value) in claude_cli_identity(client, detected) {
                headers.set(&name, value);
            }
        }
    }
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
            None,
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
    fn oauth_headers_carry_the_claude_cli_identity() {
        // Not Claude Code: the Claude CLI's defaults, never the client's
        // own identity or credentials.
        let client = headers(&[
            ("user-agent", "Anthropic/Python 0.40.0"),
            ("x-stainless-lang", "python"),
            ("authorization", "Bearer client-token"),
            ("x-api-key", "client-key"),
        ]);
        let built = upstream_headers(
            &Credential::OAuth(Secret::new("tok")),
            &client,
            "2023-06-01",
            None,
        );
        let mut expected = headers(&[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
            ("authorization", "Bearer tok"),
            ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"),
        ]);
        expected.0.extend(
            CLAUDE_CLI_DEFAULTS
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        assert_eq!(built, expected);
        assert_eq!(
            built.get("user-agent"),
            Some("claude-cli/1.0.113 (external, sdk-cli)")
        );
        assert_eq!(built.get("x-app"), Some("cli"));
        assert_eq!(built.get("x-stainless-lang"), Some("js"));
    }

    #[test]
    fn detected_claude_cli_headers_replace_the_bundled_snapshot() {
        let detected = vec![
            ("x-app".to_owned(), "cli".to_owned()),
            (
                "user-agent".to_owned(),
                "claude-cli/2.1.332 (external, sdk-cli)".to_owned(),
            ),
        ];
        let other = headers(&[("user-agent", "curl/8")]);
        let built = upstream_headers(
            &Credential::OAuth(Secret::new("tok")),
            &other,
            "2023-06-01",
            Some(&detected),
        );
        assert_eq!(
            built.get("user-agent"),
            Some("claude-cli/2.1.332 (external, sdk-cli)")
        );
        assert_eq!(built.get("x-stainless-lang"), None, "no 1.0.113 leftovers");
        // A Claude Code client still speaks for itself.
        let claude_code = headers(&[("user-agent", "claude-cli/2.1.400 (external, cli)")]);
        assert_eq!(
            claude_cli_identity(&claude_code, Some(&detected)),
            [(
                "user-agent".to_owned(),
                "claude-cli/2.1.400 (external, cli)".to_owned()
            )]
        );
    }

    #[test]
    fn a_claude_code_clients_own_identity_is_forwarded() {
        let client = headers(&[
            ("Host", "127.0.0.1:8000"),
            ("Connection", "keep-alive"),
            ("Accept", "application/json"),
            ("X-Stainless-Retry-Count", "1"),
            ("X-Stainless-Lang", "js"),
            ("X-Stainless-Package-Version", "0.70.1"),
            ("X-Stainless-Helper-Method", "stream"),
            ("Authorization", "Bearer proxy-token"),
            ("x-api-key", "client-key"),
            ("cookie", "a=b"),
            ("X-App", "cli"),
            ("User-Agent", "claude-cli/2.0.14 (external, cli)"),
            ("anthropic-dangerous-direct-browser-access", "true"),
            ("accept-encoding", "gzip, deflate"),
            ("content-length", "10"),
        ]);
        assert_eq!(
            claude_cli_identity(&client, None),
            [
                ("accept", "application/json"),
                ("x-stainless-retry-count", "1"),
                ("x-stainless-lang", "js"),
                ("x-stainless-package-version", "0.70.1"),
                ("x-stainless-helper-method", "stream"),
                ("x-app", "cli"),
                ("user-agent", "claude-cli/2.0.14 (external, cli)"),
                ("anthropic-dangerous-direct-browser-access", "true"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
        let built = upstream_headers(
            &Credential::OAuth(Secret::new("tok")),
            &client,
            "2023-06-01",
            None,
        );
        assert_eq!(built.get("authorization"), Some("Bearer tok"));
        for absent in [
            "x-api-key",
            "cookie",
            "host",
            "connection",
            "content-length",
            "accept-encoding",
        ] {
            assert_eq!(built.get(absent), None, "{absent}");
        }
        // The API key path keeps our own user agent and no client identity.
        let built = upstream_headers(
            &Credential::ApiKey(Secret::new("sk-ant-key")),
            &client,
            "2023-06-01",
            None,
        );
        assert_eq!(built.get("user-agent"), Some(USER_AGENT));
        assert_eq!(built.get("x-app"), None);
        assert_eq!(built.get("x-stainless-lang"), None);
    }

    #[test]
    fn credentials_do_not_print() {
        let printed = format!("{:?}", Credential::OAuth(Secret::new("tok-secret")));
        assert!(!printed.contains("tok-secret"), "{printed}");
    }
}
