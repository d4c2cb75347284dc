//! A mock of the upstream LLM APIs and of the Claude and OpenAI OAuth servers, for the
//! end-to-end tests (Rust) and the SDK tests (Python): one process on
//! `127.0.0.1`, started as `ccproxy-mock-upstream`, that replays the recorded
//! exchanges of `tests/data/samples`, records what it receives, checks it, and
//! misbehaves on demand.
//!
//! It prints `mock upstream listening on http://127.0.0.1:PORT` on stdout once
//! it accepts connections, and stops on `POST /_mock/shutdown`, after
//! `--max-requests N` upstream requests, or after `--idle-exit-seconds S`
//! without a request (so a test that dies leaves nothing behind).
//!
//! # Upstream endpoints
//!
//! | endpoint | answers with |
//! |---|---|
//! | `POST /v1/messages` | `claude_messages*.json`: `_tools` when the request has tools, `_stream` when it streams; a stream synthesized from the complete answer when none was recorded (tools + stream) |
//! | `POST /v1/messages/count_tokens` | `{"input_tokens": N}`, N = characters of the text / 4 |
//! | `POST /responses`, `/v1/responses` | `codex_responses*.json` (`_tools`, `_structured` for a JSON schema, `_stream`) |
//! | `POST /backend-api/codex/responses` | the same, after the Codex backend's own checks (below) |
//! | `POST /chat/completions`, `/v1/chat/completions` | `copilot_chat_completions*.json` |
//! | `GET /v1/models` | a short Anthropic model list |
//! | `POST /v1/oauth/token` | the fake Claude authorization server (JSON grants, below) |
//! | `POST /oauth/token` | the fake OpenAI authorization server (form-encoded grants, below) |
//! | `GET /api/oauth/profile` | a Claude Max account's profile, for any `authorization: Bearer` token |
//! | GitHub's device flow and Copilot token exchange, Copilot's `/embeddings` and `/models` | see `github.rs` (control: `/_mock/github`) |
//!
//! Streams go out as `event: X\ndata: Y\n\n`, one event per body frame. Every
//! answer carries `x-mock-sample: NAME` naming the sample it came from.
//!
//! Each upstream request is checked before it is answered; a wrong one gets a
//! 400 in the endpoint's error format whose message starts `mock upstream:`:
//! the body must be a JSON object with `model` and `messages` (`input` for
//! Responses); every `--expect-header NAME[=VALUE]` must be present (with that
//! value); no `--forbid-header NAME` may be.
//!
//! `/backend-api/codex/responses` (the ChatGPT plan's Codex backend, for
//! `plugins.codex.base_url = http://MOCK/backend-api/codex`) also refuses
//! what the real backend refuses, with its `{"detail": "mock upstream: codex
//! backend: …"}` error body: a request without `authorization: Bearer` (401),
//! `chatgpt-account-id`, `openai-beta: responses=experimental`,
//! `originator` or `session_id`; without `stream: true` or `store: false`;
//! with `metadata`, `temperature`, `top_p`, `max_output_tokens`,
//! `max_tokens` or `max_completion_tokens`; whose `instructions` are not a
//! Codex CLI prompt; whose `input` has an untyped item or a `system` message;
//! whose `function_call_output` answers no earlier `function_call`, or whose
//! `function_call` is unanswered or names no declared tool (a duplicated
//! name like `shellshell`).
//!
//! # TLS
//!
//! `--tls-ca-out FILE` makes a CA at start-up, signs a certificate for
//! `127.0.0.1` and `localhost` with it, and writes the CA's certificate (PEM) to
//! FILE before the listening line, for the client under test to trust (or,
//! left out, to refuse). `--tls-cert FILE --tls-key FILE` use a given chain and
//! key instead. Either turns on HTTPS on the same port, next to plain HTTP: a
//! connection whose first byte is a TLS handshake record gets TLS, any other
//! plain HTTP, so the control API and plain clients keep working unchanged.
//! `--alpn LIST` (default `h2,http/1.1`) is what ALPN offers; after it settles
//! on `h2` the connection speaks only HTTP/2, on `http/1.1` only HTTP/1.1. Each
//! recorded request says how it came: `version` (`HTTP/2.0`, `HTTP/1.1`) and
//! `tls` (`{"alpn": "h2"}`, `{"alpn": null}` without ALPN, `null` for plain
//! HTTP). A refused handshake is logged (`TLS handshake failed: received fatal
//! alert: UnknownCA`) and records nothing.
//!
//! # Control API
//!
//! | request | what it does |
//! |---|---|
//! | `GET /_mock/requests` | every request received since the start or the last reset, in order: `{method, path, query, version, tls, headers: {name: value}, body (JSON or null), body_text, form (the decoded pairs of a form-encoded body, or null), response: {status, sample, body, outcome}}` |
//! | `POST /_mock/reset` | forgets requests, faults and counters |
//! | `POST /_mock/fault` | arms a fault (body below); faults queue and apply in order |
//! | `DELETE /_mock/fault` | disarms every fault |
//! | `GET /_mock/credentials` | requests per credential so far, `{CREDENTIAL: n}` (`x-api-key`, else the token of `authorization: Bearer`): which account a request went out with |
//! | `GET /_mock/cancelled` | `{"cancelled": n, "completed": n, "reset": n}`: streams cut short because the client went away, streams sent to the end, streams broken on purpose |
//! | `GET /_mock/oauth` | `{"authorization_code": n, "refresh_token": n, "issued": [access tokens]}` |
//! | `POST /_mock/quirks` | switches quirk modes on, `{"quirks": [NAME, …]}` (replacing those set before; `--quirk NAME` ones stay): real servers' differences from OpenAI's answers, see `quirks.rs`; `GET` lists them, `DELETE` clears them |
//! | `POST /_mock/agent` | arms the scripted agent, `{"answer": TEXT, "command": CMD}`: it answers Anthropic, Responses and Chat Completions requests itself, calling the client's shell tool with CMD first (see `agent.rs`); `DELETE` disarms it |
//! | `POST /_mock/shutdown` | stops the server (in-flight answers finish first, 5 s at most) |
//!
//! A fault: `{"kind": "delay"|"status"|"reset_mid_stream"|"trickle"|"edit",
//! "status": 429, "body": {...}, "delay_ms": N, "after_events": N, "count": N,
//! "path": "/v1/messages", "retry_after": "7", "credential": "sk-key-a", "event": "response.completed",
//! "pointer": "/response/output", "value": [], "anonymous": true}`; it applies to the next
//! `count` (default 1) upstream requests (those on `path` when given; the
//! token endpoint only when named by `path`; with `credential`, only those
//! sent with that `x-api-key` or bearer token, so one account of several fails):
//! - `delay`: waits `delay_ms` (default 1000) before the response head;
//! - `status`: answers `status` (default 500) with the provider's real error
//!   body (`body` replaces it), plus `retry-after` (`retry_after`, default 1
//!   on a 429);
//! - `reset_mid_stream`: sends `after_events` (default 1) events, then drops the
//!   connection without the terminating chunk (half the body for a JSON answer);
//! - `trickle`: waits `delay_ms` (default 100) between stream events;
//! - `edit`: changes the stream's events named `event` (all without it): sets
//!   `value` at JSON `pointer` in their data, or removes what is there when
//!   `value` is absent, and with `anonymous` sends them without their
//!   `event:` line (the upstream's SSE shape changing under the proxy).
//!
//! # OAuth
//!
//! `POST /v1/oauth/token` takes a JSON body. `authorization_code` needs
//! `code` = `good-code` and non-empty `code_verifier`, `state`, `redirect_uri`
//! and `client_id`; `refresh_token` needs non-empty `refresh_token` and
//! `client_id`, and waits `--oauth-delay-ms` first (to make single flight
//! observable). Both answer `access_token` (`sk-ant-oat01-mock-login-N` or
//! `sk-ant-oat01-mock-refreshed-N`, N counting that grant), `refresh_token`
//! (`sk-ant-ort01-mock-login-N`, `sk-ant-ort01-mock-refreshed-N`),
//! `expires_in` (28800), `token_type`, `scope`, `account` and `organization`.
//! Every token request is counted by its `grant_type` (and a refresh delayed)
//! before a fault armed with `"path": "/v1/oauth/token"` answers it, so a
//! failing refresh is as observable as a good one.
//!
//! `POST /oauth/token` is OpenAI's (the Codex CLI's login, for
//! `plugins.oauth_codex.base_url = http://MOCK`): the same two grants, but
//! `application/x-www-form-urlencoded` only. `authorization_code` needs
//! `code` = `good-code`, `code_verifier`, `redirect_uri` and `client_id`;
//! `refresh_token` needs `refresh_token` and `client_id` (and waits
//! `--oauth-delay-ms`). Both answer JWT-shaped `access_token` and `id_token`
//! (see [`jwt`]; `exp` ten days ahead for the access token, the
//! `https://api.openai.com/auth` claim naming account [`MOCK_ACCOUNT`] on plan
//! `plus`, the signature part `mock-access-login-N` or
//! `mock-access-refreshed-N` base64url-encoded), `refresh_token`
//! (`rt_mock-login-N`, `rt_mock-refreshed-N`), `expires_in`, `token_type` and
//! `scope`. Grants are counted, and faults armed with `"path":
//! "/oauth/token"` apply, as for the Claude endpoint; both share the counters
//! and the `issued` list.

mod agent;
mod codex;
mod github;
pub mod quirks;
mod samples;
mod server;
mod tls;

use std::{path::PathBuf, time::Duration};

pub use codex::{MOCK_ACCOUNT, base64url, jwt};
pub use samples::{Event, Format, Reply, Samples, Selected, synthesize};
pub use server::{listening_address, serve};
pub use tls::{ALPN_PROTOCOLS, Identity, TlsOptions};

/// A required request header: `NAME` or `NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHeader {
    /// Lower-case name.
    pub name: String,
    /// The exact value, when one is required.
    pub value: Option<String>,
}

impl std::str::FromStr for ExpectedHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (text, None),
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!(
                "{text:?} has no header name; use NAME or NAME=VALUE"
            ));
        }
        Ok(Self { name, value })
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The folder of recorded samples.
    pub samples: PathBuf,
    /// Headers every upstream request must carry.
    pub expect_headers: Vec<ExpectedHeader>,
    /// Headers no upstream request may carry (lower case).
    pub forbid_headers: Vec<String>,
    /// Stop after this many upstream requests.
    pub max_requests: Option<u64>,
    /// Stop after this long without a request.
    pub idle_exit: Option<Duration>,
    /// Wait this long before answering a refresh grant.
    pub oauth_delay: Duration,
    /// Log nothing per request on stderr.
    pub quiet: bool,
    /// Serve HTTPS too (see the crate docs); `None` serves plain HTTP only.
    pub tls: Option<TlsOptions>,
    /// Quirk modes in force for the whole run (`--quirk`).
    pub quirks: quirks::Quirks,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            samples: default_samples_dir(),
            expect_headers: Vec::new(),
            forbid_headers: Vec::new(),
            max_requests: None,
            idle_exit: None,
            oauth_delay: Duration::ZERO,
            quiet: false,
            tls: None,
            quirks: quirks::Quirks::default(),
        }
    }
}

/// `tests/data/samples` of this source tree.
pub fn default_samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("data")
        .join("samples")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_headers_parse() {
        let check = |text: &str, name: &str, value: Option<&str>| {
            let parsed: ExpectedHeader = text.parse().unwrap();
            assert_eq!(
                (parsed.name.as_str(), parsed.value.as_deref()),
                (name, value)
            );
        };
        check("x-api-key=test-key", "x-api-key", Some("test-key"));
        check("Anthropic-Version", "anthropic-version", None);
        check("x-empty=", "x-empty", Some(""));
        assert!("=value".parse::<ExpectedHeader>().is_err());
    }
}
