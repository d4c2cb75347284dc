//! GitHub and GitHub Copilot, for the `oauth_copilot` and `copilot` plugins
//! (`plugins.oauth_copilot.*_url = http://MOCK/…`, `plugins.copilot.base_url
//! = http://MOCK`).
//!
//! | endpoint | answers with |
//! |---|---|
//! | `POST /login/device/code` | `{device_code: "mock-device-code", user_code: "MOCK-1234", verification_uri, expires_in, interval}` (form body with `client_id`) |
//! | `POST /login/oauth/access_token` | the next answer of the script (below); when the script is spent, `{access_token: "gho_mock-github-token-N", …}`. Needs `client_id`, `device_code` = `mock-device-code` and the device grant type |
//! | `GET /copilot_internal/v2/token` | `{token: "tid=mock-copilot-N;exp=UNIX", expires_at, refresh_in, endpoints: {api}}` for `authorization: Bearer|token T`; 403 when T is in `no_copilot` or starts with `gho_no-copilot`; 401 without a token or when T starts with `gho_revoked` |
//! | `GET /copilot_internal/user` | a Copilot individual account's details and quotas |
//! | `POST /chat/completions` with a mock Copilot token | 401 `token expired` when its `exp` has passed; otherwise the recorded Copilot samples answer (the common endpoint) |
//! | `POST /embeddings` | one 3-dimension embedding per input |
//! | `GET /models` | a Copilot model list |
//!
//! Control: `POST /_mock/github` with `{"script": ["pending", "slow_down",
//! "expired", "denied", …], "interval": 1, "expires_in": 1800, "refresh_in":
//! 1500, "exchange_delay_ms": 0, "no_copilot": [tokens], "api": URL,
//! "copilot_tokens": {GITHUB_TOKEN: COPILOT_TOKEN}}` (every
//! key optional; counters and recorded polls are reset). `GET /_mock/github`
//! answers `{"device_codes", "polls_ms": [unix ms of each token poll],
//! "exchanges", "issued"}`. `endpoints.api` is `api` when set, else this
//! mock's own address (from the `host` header). `copilot_tokens` names the
//! Copilot token the exchange answers for a GitHub token (instead of
//! `tid=mock-copilot-N;…`), so a test can arm a fault for one account's
//! Copilot token (`"credential"`); give it an `exp=` far ahead, as
//! `tid=mock-copilot-a;exp=9999999999;sku=mock`.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Method, request::Parts};
use serde_json::{Value, json};

use crate::codex::parse_form;

const DEVICE_CODE: &str = "mock-device-code";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The mock's GitHub state.
#[derive(Default)]
pub(crate) struct GitHub {
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone)]
struct Settings {
    script: VecDeque<String>,
    interval: u64,
    expires_in: i64,
    refresh_in: i64,
    exchange_delay_ms: u64,
    no_copilot: Vec<String>,
    api: Option<String>,
    copilot_tokens: std::collections::HashMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            script: VecDeque::new(),
            interval: 1,
            expires_in: 1800,
            refresh_in: 1500,
            exchange_delay_ms: 0,
            no_copilot: Vec::new(),
            api: None,
            copilot_tokens: std::collections::HashMap::new(),
        }
    }
}

#[derive(Default)]
struct Inner {
    settings: Settings,
    device_codes: u64,
    polls_ms: Vec<u64>,
    exchanges: u64,
    logins: u64,
    issued: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl GitHub {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bearer (or `token`) credential of a request.
fn credential(parts: &Parts) -> Option<String> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

fn oauth_error(error: &str, description: &str) -> (u16, Value) {
    (
        200,
        json!({"error": error, "error_description": description, "error_uri": "https://docs.github.com"}),
    )
}

/// Answers GitHub's and Copilot's own endpoints; `None` for any other request.
pub(crate) async fn upstream(
    github: &GitHub,
    parts: &Parts,
    path: &str,
    body: &Bytes,
) -> Option<(u16, Value)> {
    let method = &parts.method;
    match (method, path) {
        (&Method::POST, "/login/device/code") => {
            let form = parse_form(body);
            if form
                .get("client_id")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Some((400, json!({"error": "mock upstream: github: no client_id"})));
            }
            let mut inner = github.inner();
            inner.device_codes += 1;
            Some((
                200,
                json!({"device_code": DEVICE_CODE, "user_code": "MOCK-1234",
                       "verification_uri": "https://github.com/login/device",
                       "expires_in": 900, "interval": inner.settings.interval}),
            ))
        }
        (&Method::POST, "/login/oauth/access_token") => {
            let form = parse_form(body);
            let field = |key: &str| form.get(key).and_then(Value::as_str).unwrap_or("");
            let mut inner = github.inner();
            inner.polls_ms.push(now_ms());
            if field("client_id").is_empty() || field("grant_type") != DEVICE_GRANT {
                return Some(oauth_error(
                    "unsupported_grant_type",
                    "mock upstream: github: client_id and the device grant type are required",
                ));
            }
            if field("device_code") != DEVICE_CODE {
                return Some(oauth_error(
                    "incorrect_device_code",
                    "The device_code provided is not valid.",
                ));
            }
            let interval = inner.settings.interval;
            match inner.settings.script.pop_front().as_deref() {
                Some("pending") => Some(oauth_error(
                    "authorization_pending",
                    "The authorization request is still pending.",
                )),
                Some("slow_down") => Some((
                    200,
                    json!({"error": "slow_down", "error_description": "Too many requests have been made in the same timeframe.", "interval": interval + 5}),
                )),
                Some("expired") => {
                    Some(oauth_error("expired_token", "The device_code has expired."))
                }
                Some("denied") => Some(oauth_error(
                    "access_denied",
                    "The authorization request was denied.",
                )),
                _ => {
                    inner.logins += 1;
                    Some((
                        200,
                        json!({"access_token": format!("gho_mock-github-token-{}", inner.logins),
                               "token_type": "bearer", "scope": "read:user"}),
                    ))
                }
            }
        }
        (&Method::GET, "/copilot_internal/v2/token") => {
            let settings = {
                let mut inner = github.inner();
                inner.exchanges += 1;
                inner.settings.clone()
            };
            tokio::time::sleep(Duration::from_millis(settings.exchange_delay_ms)).await;
            let Some(token) = credential(parts) else {
                return Some((
                    401,
                    json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                ));
            };
            if token.starts_with("gho_revoked") {
                return Some((
                    401,
                    json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                ));
            }
            if token.starts_with("gho_no-copilot") || settings.no_copilot.contains(&token) {
                return Some((
                    403,
                    json!({"message": "Resource not accessible by integration", "error_details": {"message": "mock upstream: github: this account has no Copilot subscription"}}),
                ));
            }
            let mut inner = github.inner();
            let n = inner.issued.len() + 1;
            let expires_at = i64::try_from(now_ms() / 1000).unwrap_or(0) + settings.expires_in;
            let issued = settings
                .copilot_tokens
                .get(&token)
                .cloned()
                .unwrap_or_else(|| format!("tid=mock-copilot-{n};exp={expires_at};sku=mock"));
            inner.issued.push(issued.clone());
            let api = settings.api.clone().unwrap_or_else(|| {
                let host = parts
                    .headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                format!("http://{host}")
            });
            Some((
                200,
                json!({"token": issued, "expires_at": expires_at, "refresh_in": settings.refresh_in,
                       "endpoints": {"api": api, "proxy": api, "telemetry": api}, "sku": "mock"}),
            ))
        }
        (&Method::GET, "/copilot_internal/user") => {
            credential(parts)?;
            Some((
                200,
                json!({"login": "mock-user", "copilot_plan": "individual", "access_type_sku": "mock",
                       "quota_snapshots": {"chat": {"entitlement": 300, "remaining": 299, "unlimited": false}}}),
            ))
        }
        (&Method::POST, "/chat/completions") => {
            let token = credential(parts)?;
            let exp = token
                .strip_prefix("tid=mock-copilot-")?
                .split(';')
                .find_map(|part| part.strip_prefix("exp="))?
                .parse::<u64>()
                .ok()?;
            (exp * 1000 <= now_ms()).then(|| {
                (
                    401,
                    json!({"error": {"message": "token expired", "code": "token_expired", "type": "invalid_request_error"}}),
                )
            })
        }
        (&Method::POST, "/embeddings") => {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let inputs = match &request["input"] {
                Value::Array(items) => items.len(),
                Value::Null => 0,
                _ => 1,
            };
            if inputs == 0 || request["model"].as_str().is_none() {
                return Some((
                    400,
                    json!({"error": {"message": "mock upstream: embeddings need model and input", "type": "invalid_request_error"}}),
                ));
            }
            let data: Vec<Value> = (0..inputs)
                .map(|index| json!({"object": "embedding", "index": index, "embedding": [0.25, -0.5, 0.75]}))
                .collect();
            Some((
                200,
                json!({"object": "list", "data": data, "model": request["model"],
                       "usage": {"prompt_tokens": 3 * inputs, "total_tokens": 3 * inputs}}),
            ))
        }
        (&Method::GET, "/models") => Some((
            200,
            json!({"object": "list", "data": [
                {"id": "gpt-4o", "object": "model", "vendor": "Azure OpenAI", "capabilities": {"type": "chat"}},
                {"id": "claude-sonnet-4", "object": "model", "vendor": "Anthropic", "capabilities": {"type": "chat"}},
                {"id": "text-embedding-3-small", "object": "model", "vendor": "Azure OpenAI", "capabilities": {"type": "embeddings"}}
            ]}),
        )),
        _ => None,
    }
}

/// `POST /_mock/github` (settings) and `GET /_mock/github` (what happened).
pub(crate) fn control(github: &GitHub, method: &Method, body: &Bytes) -> (u16, Value) {
    if method == Method::GET {
        let inner = github.inner();
        return (
            200,
            json!({"device_codes": inner.device_codes, "polls_ms": inner.polls_ms,
                   "exchanges": inner.exchanges, "issued": inner.issued, "logins": inner.logins}),
        );
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            return (
                400,
                json!({"error": "mock upstream: /_mock/github takes a JSON object"}),
            );
        }
    };
    let mut settings = Settings::default();
    if let Some(script) = request["script"].as_array() {
        settings.script = script
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    if let Some(interval) = request["interval"].as_u64() {
        settings.interval = interval;
    }
    if let Some(expires_in) = request["expires_in"].as_i64() {
        settings.expires_in = expires_in;
    }
    if let Some(refresh_in) = request["refresh_in"].as_i64() {
        settings.refresh_in = refresh_in;
    }
    if let Some(delay) = request["exchange_delay_ms"].as_u64() {
        settings.exchange_delay_ms = delay;
    }
    if let Some(tokens) = request["no_copilot"].as_array() {
        settings.no_copilot = tokens
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    settings.api = request["api"].as_str().map(str::to_owned);
    if let Some(tokens) = request["copilot_tokens"].as_object() {
        settings.copilot_tokens = tokens
            .iter()
            .filter_map(|(github, copilot)| Some((github.clone(), copilot.as_str()?.to_owned())))
            .collect();
    }
    *github.inner() = Inner {
        settings,
        ..Inner::default()
    };
    (200, json!({"github": "set"}))
}
