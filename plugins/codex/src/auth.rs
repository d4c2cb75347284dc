//! Credentials (the ChatGPT plan's OAuth token and account, from the
//! `oauth.codex` service of the `oauth_codex` plugin) and the upstream
//! request headers built from them.
//!
//! Headers are built from scratch, modelled on the Codex CLI's own request
//! (`tests/data/codex_cli_request_capture.json`), rather than filtered from
//! the client's: the client's credentials, cookies and hop-by-hop headers
//! cannot leak upstream. Only the conversation headers (`session_id`,
//! `conversation_id`) and, from a Codex CLI client, its `version` are read
//! from the client.

use ccproxy_plugin_abi::{Context, ErrorKind, Headers, PluginError, json, serde_json};
/// A token. `Debug` prints `***`; [`Secret::expose`] is the one way out.
pub(crate) use ccproxy_plugin_kit::mask::Secret;
use serde::Deserialize;

/// The service the `oauth_codex` plugin provides.
pub(crate) const OAUTH_SERVICE: &str = "oauth.codex";

/// What the Codex CLI calls itself in `originator`.
pub(crate) const ORIGINATOR: &str = "codex_cli_rs";

/// The error of a request without a Codex login; the `oauth_codex` plugin
/// answers with the same words.
pub(crate) const NOT_LOGGED_IN: &str =
    "not logged in to Codex: run `ccproxy auth login codex` or `codex login`";

/// What one upstream request is sent with.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    /// The OAuth access token, sent as `authorization: Bearer`.
    pub(crate) access_token: Secret,
    /// The ChatGPT account (workspace), sent as `chatgpt-account-id`.
    pub(crate) account_id: Option<String>,
}

/// The `access_token` answer of [`OAUTH_SERVICE`]; other fields are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Secret,
    #[serde(default)]
    account_id: Option<String>,
}

/// The credential for one request, from [`OAUTH_SERVICE`]. Without a login,
/// or without the service: `Unauthorized`, saying what to do.
pub(crate) async fn resolve(ctx: &Context) -> Result<Credential, PluginError> {
    let answer = ctx
        .call_service(OAUTH_SERVICE, "access_token", json!({}))
        .await;
    match answer {
        Ok(value) => {
            let answer: TokenAnswer = serde_json::from_value(value).map_err(|error| {
                PluginError::internal(format!(
                    "{OAUTH_SERVICE} answered access_token in an unknown shape: {error}"
                ))
            })?;
            if answer.access_token.expose().trim().is_empty() {
                return Err(not_logged_in(&format!(
                    "{OAUTH_SERVICE} answered without an access token"
                )));
            }
            Ok(Credential {
                access_token: answer.access_token,
                account_id: answer.account_id.filter(|id| !id.trim().is_empty()),
            })
        }
        Err(error) => Err(match error.kind() {
            // The service says why and what to do (not logged in, refresh
            // refused: log in again).
            ErrorKind::Unauthorized | ErrorKind::Forbidden => {
                PluginError::new(ErrorKind::Unauthorized, error.message())
            }
            // No service: the auth plugin is not installed or not enabled.
            ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::Unsupported => {
                not_logged_in(&format!(
                    "{OAUTH_SERVICE} is not available: enable the oauth_codex plugin ({error})"
                ))
            }
            // The service is there but could not get a token right now
            // (refresh timed out, token endpoint down): not the user's
            // missing login.
            _ => PluginError::new(
                error.kind(),
                format!("{OAUTH_SERVICE} could not provide a token: {error}"),
            ),
        }),
    }
}

fn not_logged_in(detail: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unauthorized,
        format!("{NOT_LOGGED_IN} ({detail})"),
    )
}

/// Whether the client is a Codex CLI (it names itself in `originator` or
/// its user agent), which brings its own instructions and version.
pub(crate) fn is_codex_client(client: &Headers) -> bool {
    let names_codex = |value: Option<&str>| {
        value.is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("codex"))
    };
    names_codex(client.get("originator")) || names_codex(client.get("user-agent"))
}

/// The version to identify as: a Codex CLI client's own (the backend gates
/// models on it, and the client knows its version best), from its `version`
/// header or, as Codex CLI 0.171 sends none, its user agent
/// (`codex_exec/0.171.0 (…)`); else `configured`.
pub(crate) fn client_version(client: &Headers, configured: &str) -> String {
    let looks_like_a_version = |version: &&str| {
        (1..=32).contains(&version.len())
            && version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    };
    let from_user_agent = || {
        let agent = client.get("user-agent")?.trim_start();
        let (name, rest) = agent.split_once('/')?;
        name.to_ascii_lowercase()
            .starts_with("codex")
            .then_some(())?;
        rest.split([' ', '(']).next()
    };
    client
        .get("version")
        .map(str::trim)
        .filter(|_| is_codex_client(client))
        .filter(looks_like_a_version)
        .or_else(|| from_user_agent().filter(looks_like_a_version))
        .unwrap_or(configured)
        .to_owned()
}

/// The user agent, in the Codex CLI's shape (`codex_cli_rs/0.34.0 (NixOS
/// 25.11.0; x86_64) tmux/3.5a` in the capture), naming this proxy where the
/// CLI names its terminal.
pub(crate) fn user_agent(version: &str) -> String {
    format!(
        "{ORIGINATOR}/{version} ({}; {}) ccproxy/{}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

/// The client's conversation id header (`session_id`, `session-id` as Codex
/// CLI 0.171 spells it, else `conversation_id`), when it sends a usable one.
pub(crate) fn client_conversation_id(client: &Headers) -> Option<String> {
    ["session_id", "session-id", "conversation_id"]
        .into_iter()
        .filter_map(|name| client.get(name))
        .map(str::trim)
        .find(|id| !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
}

/// The upstream headers: the credential, the conversation id (as both
/// `session_id` and `conversation_id`, as the Codex CLI sends it) and the
/// Codex CLI's protocol headers. The answer is always a stream.
pub(crate) fn upstream_headers(
    credential: &Credential,
    conversation_id: &str,
    version: &str,
) -> Headers {
    let mut headers = Headers::default();
    headers.set("content-type", "application/json");
    headers.set("accept", "text/event-stream");
    headers.set(
        "authorization",
        format!("Bearer {}", credential.access_token.expose()),
    );
    if let Some(account_id) = &credential.account_id {
        headers.set("chatgpt-account-id", account_id.as_str());
    }
    headers.set("openai-beta", "responses=experimental");
    headers.set("originator", ORIGINATOR);
    headers.set("version", version);
    headers.set("user-agent", user_agent(version));
    headers.set("session_id", conversation_id);
    headers.set("conversation_id", conversation_id);
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
    fn upstream_headers_follow_the_codex_cli() {
        let credential = Credential {
            access_token: Secret::new("tok"),
            account_id: Some("acc-1".to_owned()),
        };
        let built = upstream_headers(&credential, "conv-1", "0.114.0");
        assert_eq!(
            built,
            headers(&[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
                ("authorization", "Bearer tok"),
                ("chatgpt-account-id", "acc-1"),
                ("openai-beta", "responses=experimental"),
                ("originator", "codex_cli_rs"),
                ("version", "0.114.0"),
                ("user-agent", &user_agent("0.114.0")),
                ("session_id", "conv-1"),
                ("conversation_id", "conv-1"),
            ])
        );
        let without_account = upstream_headers(
            &Credential {
                account_id: None,
                ..credential
            },
            "c",
            "1",
        );
        assert_eq!(without_account.get("chatgpt-account-id"), None);
    }

    #[test]
    fn user_agent_has_the_codex_cli_shape() {
        let agent = user_agent("0.114.0");
        assert!(agent.starts_with("codex_cli_rs/0.114.0 ("), "{agent}");
        assert!(
            agent.ends_with(&format!(") ccproxy/{}", env!("CARGO_PKG_VERSION"))),
            "{agent}"
        );
        assert!(agent.contains(std::env::consts::ARCH), "{agent}");
    }

    #[test]
    fn a_codex_cli_client_brings_its_version() {
        let codex = headers(&[("originator", "codex_cli_rs"), ("version", "0.130.1")]);
        assert!(is_codex_client(&codex));
        assert_eq!(client_version(&codex, "0.114.0"), "0.130.1");
        let exec = headers(&[
            ("user-agent", "codex_exec/0.131.0 (Linux)"),
            ("version", "0.131.0"),
        ]);
        assert_eq!(client_version(&exec, "0.114.0"), "0.131.0");
        // Anyone else's `version` header is not trusted.
        let other = headers(&[("user-agent", "curl/8"), ("version", "9.9.9")]);
        assert!(!is_codex_client(&other));
        assert_eq!(client_version(&other, "0.114.0"), "0.114.0");
        let junk = headers(&[("originator", "codex_cli_rs"), ("version", "1.0\r\nx: y")]);
        assert_eq!(client_version(&junk, "0.114.0"), "0.114.0");
        // Codex CLI 0.171 sends no `version`; its user agent says it.
        let exec = headers(&[
            ("originator", "codex_exec"),
            (
                "user-agent",
                "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
            ),
        ]);
        assert_eq!(client_version(&exec, "0.114.0"), "0.171.0");
        let not_codex = headers(&[("user-agent", "claude-cli/2.1.332 (external, sdk-cli)")]);
        assert_eq!(client_version(&not_codex, "0.114.0"), "0.114.0");
        let absent = headers(&[("originator", "codex_cli_rs")]);
        assert_eq!(client_version(&absent, "0.114.0"), "0.114.0");
    }

    #[test]
    fn the_client_conversation_id_comes_from_either_header() {
        assert_eq!(
            client_conversation_id(&headers(&[("session_id", " s-1 ")])).as_deref(),
            Some("s-1")
        );
        assert_eq!(
            client_conversation_id(&headers(&[("conversation_id", "c-1")])).as_deref(),
            Some("c-1")
        );
        assert_eq!(
            client_conversation_id(&headers(&[("session_id", ""), ("conversation_id", "c-2")]))
                .as_deref(),
            Some("c-2")
        );
        assert_eq!(
            client_conversation_id(&headers(&[("session_id", "é")])),
            None
        );
        assert_eq!(
            client_conversation_id(&headers(&[("session_id", "a\r\nb")])),
            None
        );
        assert_eq!(client_conversation_id(&Headers::default()), None);
        // Codex CLI 0.171 (tests/data/clients/codex_cli_0.171.0.json).
        assert_eq!(
            client_conversation_id(&headers(&[("session-id", "01a24cd9-a198")])).as_deref(),
            Some("01a24cd9-a198")
        );
    }

    #[test]
    fn credentials_do_not_print() {
        let credential = Credential {
            access_token: Secret::new("tok-secret"),
            account_id: None,
        };
        let printed = format!("{credential:?}");
        assert!(!printed.contains("tok-secret"), "{printed}");
    }
}
