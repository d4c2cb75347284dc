//! Several accounts per provider (issue 12 item 4): the real host, the real
//! `claude_api` plugin with `[[plugins.claude_api.accounts]]`, and the mock
//! upstream failing one account at a time (`"credential"` faults). An account
//! that answers 429, 529 or 401 is skipped before anything reaches the client,
//! streamed requests included; rested accounts come back; refused keys are
//! disabled; when every account rests the client gets a 429 with
//! `Retry-After` in its own format at once; health shows each account with its
//! key masked.

use std::time::{Duration, Instant};

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, http_get, mock::Mock};
use serde_json::{Value, json};

/// The model of the recorded Anthropic samples.
const MODEL: &str = "claude-sonnet-4-5-20250929";

const KEY_A: &str = "sk-ant-account-a-0000000000000001";
const KEY_B: &str = "sk-ant-account-b-0000000000000002";
const KEY_C: &str = "sk-ant-account-c-0000000000000003";

/// The proxy with `claude_api` holding accounts a, b, c (keys above), and
/// `failover` settings, in front of `mock`.
fn proxy(mock: &Mock, failover: &str) -> Proxy {
    let config = format!(
        r#"
[plugins.claude_api]
base_url = "{}"
cli_path = ""

[[plugins.claude_api.accounts]]
label = "a"
api_key = "{KEY_A}"

[[plugins.claude_api.accounts]]
label = "b"
api_key = "{KEY_B}"

[[plugins.claude_api.accounts]]
label = "c"
api_key_env = "ACCOUNT_C_KEY"

[plugins.claude_api.failover]
{failover}
"#,
        mock.url()
    );
    Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        config_toml: Some(&config),
        env: &[("ACCOUNT_C_KEY", KEY_C)],
        ..ProxyOptions::default()
    })
}

fn mock() -> Mock {
    Mock::start(&["--expect-header", "anthropic-version"])
}

/// Requests per credential the mock has seen.
fn per_key(mock: &Mock) -> Value {
    http_get(mock.address(), "/_mock/credentials")
        .expect("the mock answers /_mock/credentials")
        .json()
}

fn count(per_key: &Value, key: &str) -> u64 {
    per_key[key].as_u64().unwrap_or(0)
}

/// A 429 (or `status`) for the next request sent with `key`, `count` times.
fn fail(mock: &Mock, key: &str, status: u16, retry_after: Option<&str>, times: u64) {
    let mut fault = json!({"kind": "status", "status": status, "credential": key, "count": times, "path": "/v1/messages"});
    if let Some(retry_after) = retry_after {
        fault["retry_after"] = json!(retry_after);
    }
    mock.fault(fault);
}

fn messages(proxy: &Proxy, stream: bool) -> Reply {
    proxy.post_json(
        "/claude/v1/messages",
        &json!({"model": MODEL, "max_tokens": 100, "stream": stream,
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
}

fn chat(proxy: &Proxy) -> Reply {
    proxy.post_json(
        "/claude/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}),
    )
}

fn health_accounts(proxy: &Proxy) -> (Value, String) {
    let reply = proxy.get("/plugins/claude_api/health");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let body = reply.json();
    let accounts = body["details"]["accounts"]["accounts"].clone();
    assert!(accounts.is_array(), "{body:#}");
    (accounts, text)
}

fn state_of<'a>(accounts: &'a Value, label: &str) -> &'a Value {
    accounts
        .as_array()
        .and_then(|all| all.iter().find(|account| account["label"] == label))
        .unwrap_or_else(|| panic!("no account {label} in {accounts:#}"))
}

#[test]
fn an_account_answering_429_is_skipped_and_the_request_succeeds_on_the_next() {
    let mock = mock();
    let proxy = proxy(&mock, "");
    fail(&mock, KEY_A, 429, Some("30"), 1);
    let reply = messages(&proxy, false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["type"], "message");
    let seen = per_key(&mock);
    assert_eq!(
        (
            count(&seen, KEY_A),
            count(&seen, KEY_B),
            count(&seen, KEY_C)
        ),
        (1, 1, 0),
        "{seen}"
    );
    // a rests for its Retry-After: the next request goes straight to b, in
    // any client format.
    let reply = chat(&proxy);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["object"], "chat.completion");
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_A), count(&seen, KEY_B)), (1, 2), "{seen}");

    let (accounts, text) = health_accounts(&proxy);
    let a = state_of(&accounts, "a");
    assert_eq!(a["state"], "cooling", "{accounts:#}");
    assert_eq!(a["last_failure_status"], 429);
    let left = a["cooling_seconds_left"].as_u64().expect("seconds left");
    assert!((25..=30).contains(&left), "{accounts:#}");
    assert_eq!(state_of(&accounts, "b")["state"], "available");
    assert_eq!(state_of(&accounts, "b")["picks"], 2);
    assert_eq!(state_of(&accounts, "c")["kind"], "api_key");
    // Keys are masked, never shown whole.
    for key in [KEY_A, KEY_B, KEY_C] {
        assert!(!text.contains(key), "{text}");
    }
    assert_eq!(a["key"], "sk-ant***0001", "{accounts:#}");
    assert!(!proxy.log().contains(KEY_A), "the log shows a key");
}

#[test]
fn a_streamed_request_fails_over_before_the_first_byte() {
    let mock = mock();
    let proxy = proxy(&mock, "");
    // Overloaded (529) on a, then a 500 on b: c answers the stream.
    fail(&mock, KEY_A, 529, None, 1);
    fail(&mock, KEY_B, 500, None, 1);
    let reply = messages(&proxy, true);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/event-stream")),
        "{:?}",
        reply.headers
    );
    let text = reply.text();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(!text.contains("error"), "{text}");
    let seen = per_key(&mock);
    assert_eq!(
        (
            count(&seen, KEY_A),
            count(&seen, KEY_B),
            count(&seen, KEY_C)
        ),
        (1, 1, 1),
        "{seen}"
    );
    // A server error says nothing about b's key: it stays available; a is
    // resting after its 529.
    let (accounts, _) = health_accounts(&proxy);
    assert_eq!(state_of(&accounts, "a")["state"], "cooling");
    assert_eq!(state_of(&accounts, "b")["state"], "available");
    assert_eq!(state_of(&accounts, "b")["last_failure_status"], 500);
}

#[test]
fn a_rested_account_comes_back_and_a_refused_key_is_disabled_after_two_failures() {
    let mock = mock();
    let proxy = proxy(
        &mock,
        "cooldown_seconds = 1\nmax_failures_before_disable = 2",
    );
    fail(&mock, KEY_A, 401, None, 2);
    assert_eq!(messages(&proxy, false).status, 200);
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_A), count(&seen, KEY_B)), (1, 2), "{seen}");
    // The cooldown over, a is tried first again (failover order): its second
    // 401 disables it.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_A), count(&seen, KEY_B)), (2, 3), "{seen}");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_A), count(&seen, KEY_B)), (2, 4), "{seen}");
    let (accounts, _) = health_accounts(&proxy);
    let a = state_of(&accounts, "a");
    assert_eq!(a["state"], "disabled", "{accounts:#}");
    assert_eq!(a["failures"], 2);

    // A rate-limited account comes back by itself once its Retry-After is over.
    fail(&mock, KEY_B, 429, Some("1"), 1);
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_B), count(&seen, KEY_C)), (5, 1), "{seen}");
    assert_eq!(messages(&proxy, false).status, 200);
    assert_eq!(count(&per_key(&mock), KEY_C), 2, "b is still resting");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_B), count(&seen, KEY_C)), (6, 2), "{seen}");
    assert!(
        proxy.log().contains("account a failed with status 401"),
        "{}",
        proxy.log()
    );
}

#[test]
fn when_every_account_rests_the_client_gets_a_429_with_retry_after_at_once() {
    let mock = mock();
    let proxy = proxy(&mock, "");
    for key in [KEY_A, KEY_B, KEY_C] {
        fail(&mock, key, 429, Some("30"), 1);
    }
    // Each account is tried once; the last answer is the client's, in its format.
    let started = Instant::now();
    let reply = messages(&proxy, true);
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json()["type"], "error", "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("30"));
    let seen = per_key(&mock);
    assert_eq!(
        (
            count(&seen, KEY_A),
            count(&seen, KEY_B),
            count(&seen, KEY_C)
        ),
        (1, 1, 1),
        "{seen}"
    );
    // Now nothing is sent: a 429 in the OpenAI client's format, saying why
    // and when to come back.
    let reply = chat(&proxy);
    assert_eq!(reply.status, 429, "{}", reply.text());
    let body = reply.json();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cooling down"), "{body}");
    assert!(message.contains("a, b, c"), "{body}");
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((28..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(mock.requests_to("/v1/messages").len(), 3, "nothing sent");
    assert!(started.elapsed() < Duration::from_secs(10), "nothing hangs");
    let health = proxy.get("/plugins/claude_api/health").json();
    assert_eq!(health["status"], "degraded", "{health:#}");
}

#[test]
fn a_single_key_config_is_not_retried() {
    // No accounts: the one api_key as before, a 429 passed straight back.
    let mock = mock();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &mock.url()),
            ("PLUGINS__CLAUDE_API__CLI_PATH", ""),
            ("ANTHROPIC_API_KEY", KEY_A),
        ],
        ..ProxyOptions::default()
    });
    fail(&mock, KEY_A, 429, Some("5"), 1);
    let reply = messages(&proxy, false);
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(mock.requests_to("/v1/messages").len(), 1);
    assert_eq!(messages(&proxy, false).status, 200);
    let health = proxy.get("/plugins/claude_api/health").json();
    assert!(health["details"].get("accounts").is_none(), "{health:#}");
}

#[test]
fn codex_fails_over_between_tokens_in_turn() {
    const TOKEN_A: &str = "codex-token-a-00000000000000000001";
    const TOKEN_B: &str = "codex-token-b-00000000000000000002";
    let mock = Mock::start(&[]);
    let config = format!(
        r#"
[plugins.codex]
base_url = "{}"
cli_path = ""

[[plugins.codex.accounts]]
label = "first"
access_token = "{TOKEN_A}"
account_id = "acct-a"

[[plugins.codex.accounts]]
label = "second"
access_token_env = "CODEX_SECOND_TOKEN"
account_id = "acct-b"

[plugins.codex.failover]
strategy = "round_robin"
"#,
        mock.codex_base_url()
    );
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["codex"],
        config_toml: Some(&config),
        env: &[("CODEX_SECOND_TOKEN", TOKEN_B)],
        ..ProxyOptions::default()
    });
    let ask = || {
        proxy.post_json(
            "/codex/v1/responses",
            &json!({"model": "gpt-5", "input": "Hello", "stream": true}),
        )
    };
    // In turn: first, second.
    assert_eq!(ask().status, 200);
    assert_eq!(ask().status, 200);
    let seen = per_key(&mock);
    assert_eq!(
        (count(&seen, TOKEN_A), count(&seen, TOKEN_B)),
        (1, 1),
        "{seen}"
    );
    // first's turn, but it is rate-limited: second answers, with its own account id.
    mock.fault(
        json!({"kind": "status", "status": 429, "retry_after": "60", "credential": TOKEN_A,
        "path": "/backend-api/codex/responses"}),
    );
    let reply = ask();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("response.completed"),
        "{}",
        reply.text()
    );
    let seen = per_key(&mock);
    assert_eq!(
        (count(&seen, TOKEN_A), count(&seen, TOKEN_B)),
        (2, 2),
        "{seen}"
    );
    let last = mock.codex_requests().pop().expect("a backend request");
    assert_eq!(last["headers"]["chatgpt-account-id"], "acct-b");
    // first rests, so second takes every request now.
    assert_eq!(ask().status, 200);
    assert_eq!(count(&per_key(&mock), TOKEN_B), 3);
    let health = proxy.get("/plugins/codex/health");
    let text = health.text();
    assert!(!text.contains(TOKEN_A) && !text.contains(TOKEN_B), "{text}");
    let accounts = health.json()["details"]["accounts"]["accounts"].clone();
    assert_eq!(
        state_of(&accounts, "first")["state"],
        "cooling",
        "{accounts:#}"
    );
    assert_eq!(state_of(&accounts, "second")["kind"], "token");
}

#[test]
fn a_provider_that_fails_falls_back_to_another_provider_in_the_clients_format() {
    const CODEX_TOKEN: &str = "codex-fallback-token-000000000001";
    let mock = Mock::start(&[]);
    let config = format!(
        r#"
[routing]
fallback = ["claude_api=codex"]

[plugins.claude_api]
base_url = "{}"
cli_path = ""
api_key = "{KEY_A}"

[plugins.codex]
base_url = "{}"
cli_path = ""

[[plugins.codex.accounts]]
access_token = "{CODEX_TOKEN}"
account_id = "acct-fallback"
"#,
        mock.url(),
        mock.codex_base_url()
    );
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api", "codex"],
        config_toml: Some(&config),
        ..ProxyOptions::default()
    });
    // Anthropic is overloaded: the Claude client's request is answered by
    // Codex, in the Anthropic format it asked for, streamed or not.
    fail(&mock, KEY_A, 529, None, 2);
    let reply = messages(&proxy, false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant", "{body}");
    let reply = messages(&proxy, true);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    let seen = per_key(&mock);
    assert_eq!(
        (count(&seen, KEY_A), count(&seen, CODEX_TOKEN)),
        (2, 2),
        "{seen}"
    );
    assert!(
        proxy.log().contains("sending the request to its fallback"),
        "{}",
        proxy.log()
    );
    // A request Anthropic answers stays there.
    assert_eq!(messages(&proxy, false).status, 200);
    let seen = per_key(&mock);
    assert_eq!(
        (count(&seen, KEY_A), count(&seen, CODEX_TOKEN)),
        (3, 2),
        "{seen}"
    );
    // A client error is no reason to fall back.
    mock.fault(
        json!({"kind": "status", "status": 400, "credential": KEY_A, "path": "/v1/messages"}),
    );
    assert_eq!(messages(&proxy, false).status, 400);
    assert_eq!(count(&per_key(&mock), CODEX_TOKEN), 2);
}

#[test]
fn an_overloaded_model_is_retried_as_the_fallback_model() {
    let mock = mock();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &mock.url()),
            ("PLUGINS__CLAUDE_API__CLI_PATH", ""),
            ("ANTHROPIC_API_KEY", KEY_A),
        ],
        config_toml: Some("[plugins.claude_api.failover]\nfallback_model = \"claude-haiku-4-5\"\n"),
        ..ProxyOptions::default()
    });
    fail(&mock, KEY_A, 529, None, 1);
    let reply = messages(&proxy, false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent: Vec<Value> = mock
        .requests_to("/v1/messages")
        .into_iter()
        .map(|request| request["body"]["model"].clone())
        .collect();
    assert_eq!(sent, [json!(MODEL), json!("claude-haiku-4-5")]);
    // A request that succeeds keeps the client's model.
    assert_eq!(messages(&proxy, false).status, 200);
    let last = mock.requests_to("/v1/messages").pop().expect("a request");
    assert_eq!(last["body"]["model"], MODEL);
}

#[test]
fn compat_fails_over_between_the_keys_of_one_upstream() {
    let mock = mock();
    let config = format!(
        r#"
[plugins.compat.upstreams.anthup]
base_url = "{}"
format = "anthropic.messages"
api_key_envs = ["ANTHUP_KEY_ONE", "ANTHUP_KEY_TWO"]
"#,
        mock.url()
    );
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        config_toml: Some(&config),
        env: &[("ANTHUP_KEY_ONE", KEY_A), ("ANTHUP_KEY_TWO", KEY_B)],
        ..ProxyOptions::default()
    });
    fail(&mock, KEY_A, 429, Some("30"), 1);
    let reply = proxy.post_json(
        "/anthup/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["object"], "chat.completion");
    let seen = per_key(&mock);
    assert_eq!((count(&seen, KEY_A), count(&seen, KEY_B)), (1, 1), "{seen}");
    let health = proxy.get("/plugins/compat/health");
    let text = health.text();
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
    let accounts = health.json()["details"]["upstreams"]["anthup"]["accounts"]["accounts"].clone();
    assert_eq!(
        state_of(&accounts, "ANTHUP_KEY_ONE")["state"],
        "cooling",
        "{accounts:#}"
    );
    assert_eq!(state_of(&accounts, "ANTHUP_KEY_TWO")["state"], "available");
}

#[test]
fn when_every_account_is_disabled_the_client_gets_a_503_saying_so() {
    let mock = mock();
    let config = format!(
        r#"
[plugins.claude_api]
base_url = "{}"
cli_path = ""

[[plugins.claude_api.accounts]]
label = "only"
api_key = "{KEY_A}"

[plugins.claude_api.failover]
max_failures_before_disable = 1
"#,
        mock.url()
    );
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        config_toml: Some(&config),
        ..ProxyOptions::default()
    });
    fail(&mock, KEY_A, 401, None, 1);
    // The refusal itself reaches the client as the upstream said it.
    let reply = messages(&proxy, false);
    assert_eq!(reply.status, 401, "{}", reply.text());
    // Then nothing is sent: a 503 in the client's format naming the reason.
    let reply = chat(&proxy);
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_none());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("disabled") && message.contains("only"),
        "{message}"
    );
    assert_eq!(mock.requests_to("/v1/messages").len(), 1);
}
