//! GitHub Copilot end to end: the real binary with the real `copilot` and
//! `oauth_copilot` libraries against the mock upstream playing GitHub (device
//! flow, Copilot token exchange) and the Copilot API (`github.rs` of the mock).
//!
//! `ccproxy auth login copilot` runs the device flow (pending, slow_down: the
//! next poll waits 5 s longer, success) and stores the GitHub token 0600; the
//! GitHub token falls back to `COPILOT_GITHUB_TOKEN`, `GH_TOKEN`,
//! `GITHUB_TOKEN` in that order; the Copilot token is exchanged once for 50
//! concurrent requests, and refreshed once for 50 after `refresh_in`; a token
//! the Copilot API refuses is exchanged again; every client format reaches the Copilot API as Chat
//! Completions with Copilot's headers, streamed and not; an account without
//! Copilot and an expired token get clear errors in the client's format.
//! Several accounts (`[[plugins.copilot.accounts]]`): one without Copilot and
//! one answering 429 are skipped before the client sees anything, each
//! GitHub token with its own Copilot token; a 401 renews that account's
//! Copilot token once, then counts and moves on; health shows them masked.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Barrier,
    time::Duration,
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox,
    mock::{Mock, sse_events},
    mode,
};
use serde_json::{Value, json};

const EXCHANGE_PATH: &str = "/copilot_internal/v2/token";

/// One HTTP/1.1 request on a new connection: the status and the raw body
/// (not de-chunked; enough for a status or a small JSON answer).
fn raw_request(address: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.as_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

/// Sets the mock's GitHub script and settings (counters reset).
fn github_settings(mock: &Mock, settings: Value) {
    let (status, body) = raw_request(
        mock.address(),
        "POST",
        "/_mock/github",
        settings.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// What the mock's GitHub saw: `{device_codes, polls_ms, exchanges, issued, logins}`.
fn github_seen(mock: &Mock) -> Value {
    let (status, body) = raw_request(mock.address(), "GET", "/_mock/github", b"");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("JSON")
}

/// The environment pointing `oauth_copilot` at the mock's GitHub.
fn github_env(mock: &Mock) -> Vec<(String, String)> {
    let url = mock.url();
    vec![
        (
            "PLUGINS__OAUTH_COPILOT__DEVICE_CODE_URL".to_owned(),
            format!("{url}/login/device/code"),
        ),
        (
            "PLUGINS__OAUTH_COPILOT__TOKEN_URL".to_owned(),
            format!("{url}/login/oauth/access_token"),
        ),
        (
            "PLUGINS__OAUTH_COPILOT__COPILOT_TOKEN_URL".to_owned(),
            format!("{url}{EXCHANGE_PATH}"),
        ),
        (
            "PLUGINS__OAUTH_COPILOT__USAGE_URL".to_owned(),
            format!("{url}/copilot_internal/user"),
        ),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A proxy with only `copilot` and `oauth_copilot`, GitHub at `mock`, and
/// `extra` environment.
fn start_proxy(mock: &Mock, sandbox: Sandbox, extra: &[(&str, &str)]) -> Proxy {
    let env = github_env(mock);
    let mut all = refs(&env);
    all.extend_from_slice(extra);
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["copilot", "oauth_copilot"],
            env: &all,
            ..ProxyOptions::default()
        },
    )
}

fn token_file(sandbox: &Sandbox) -> std::path::PathBuf {
    sandbox
        .root()
        .join("data/ccproxy/plugins/oauth_copilot/github_token.json")
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn responses_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "input": "Say hello"})
}

/// The exchange requests' GitHub tokens, in order.
fn exchange_tokens(mock: &Mock) -> Vec<String> {
    mock.requests_to(EXCHANGE_PATH)
        .iter()
        .map(|request| {
            request["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn device_flow_login_honours_slow_down_and_stores_the_token_privately() {
    let mock = Mock::start(&["--quiet"]);
    github_settings(
        &mock,
        json!({"script": ["pending", "slow_down"], "interval": 1}),
    );
    let sandbox = Sandbox::new();
    let env = github_env(&mock);
    let out = sandbox.run_cli(&["auth", "login", "copilot"], &refs(&env));
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("https://github.com/login/device") && out.stdout.contains("MOCK-1234"),
        "the user code and the verification URL are shown: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("logged in to copilot"),
        "{}",
        out.stdout
    );
    let seen = github_seen(&mock);
    assert_eq!(seen["device_codes"], 1);
    let polls: Vec<u64> = seen["polls_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(polls.len(), 3, "pending, slow_down, success: {seen}");
    let (first_gap, second_gap) = (polls[1] - polls[0], polls[2] - polls[1]);
    assert!(
        (900..3000).contains(&first_gap),
        "after pending the interval (1 s) is kept: {first_gap} ms"
    );
    assert!(
        (5900..9000).contains(&second_gap),
        "after slow_down the interval grows by 5 s (to 6 s): {second_gap} ms"
    );
    // Stored 0600 in the XDG data folder, never printed.
    let file = token_file(&sandbox);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()) & 0o077, 0);
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["github_token"], "gho_mock-github-token-1");
    assert!(
        !out.stdout.contains("gho_mock-github-token-1")
            && !out.stderr.contains("gho_mock-github-token-1")
    );
    let status = sandbox.run_cli(&["auth", "status", "copilot", "--json"], &refs(&env));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).expect("JSON status");
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["source"], "login");
    assert_eq!(status["github_token"], "gho_mo***en-1");

    // The stored login wins over the environment's tokens.
    let proxy = start_proxy(&mock, sandbox, &[("GH_TOKEN", "gho_env-gh-token-0000")]);
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_tokens(&mock), ["Bearer gho_mock-github-token-1"]);
    assert!(!proxy.log().contains("gho_mock-github-token-1"));
}

#[test]
fn logout_removes_the_stored_token() {
    let mock = Mock::start(&["--quiet"]);
    github_settings(&mock, json!({"interval": 1}));
    let sandbox = Sandbox::new();
    let env = github_env(&mock);
    let out = sandbox.run_cli(&["auth", "login", "copilot"], &refs(&env));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(token_file(&sandbox).exists());
    let refreshed = sandbox.run_cli(&["auth", "refresh", "copilot"], &refs(&env));
    assert_eq!(refreshed.code, 0, "{}", refreshed.stderr);
    assert_eq!(github_seen(&mock)["exchanges"], 1, "refresh exchanges now");
    let out = sandbox.run_cli(&["auth", "logout", "copilot"], &refs(&env));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!token_file(&sandbox).exists());
    let status = sandbox.run_cli(&["auth", "status", "copilot"], &refs(&env));
    assert_ne!(status.code, 0);
    assert!(status.stdout.contains("not logged in"), "{}", status.stdout);
}

#[test]
fn device_flow_failures_are_clear_and_store_nothing() {
    let mock = Mock::start(&["--quiet"]);
    for (step, words) in [("expired", "device code expired"), ("denied", "cancelled")] {
        github_settings(&mock, json!({"script": [step], "interval": 0}));
        let sandbox = Sandbox::new();
        let env = github_env(&mock);
        let out = sandbox.run_cli(&["auth", "login", "copilot"], &refs(&env));
        assert_ne!(out.code, 0, "{step}: {}", out.stdout);
        assert!(out.stderr.contains(words), "{step}: {}", out.stderr);
        assert!(!token_file(&sandbox).exists(), "{step}: nothing stored");
    }
}

#[test]
fn env_tokens_are_taken_in_order() {
    let mock = Mock::start(&["--quiet"]);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("GITHUB_TOKEN", "gho_env-github-token"),
                ("GH_TOKEN", "gho_env-gh-token"),
                ("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token"),
            ],
            "gho_env-copilot-token",
        ),
        (
            &[
                ("GITHUB_TOKEN", "gho_env-github-token"),
                ("GH_TOKEN", "gho_env-gh-token"),
            ],
            "gho_env-gh-token",
        ),
        (
            &[("GITHUB_TOKEN", "gho_env-github-token")],
            "gho_env-github-token",
        ),
    ];
    for (env, expected) in cases {
        mock.reset();
        github_settings(&mock, json!({}));
        let proxy = start_proxy(&mock, Sandbox::new(), env);
        let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(exchange_tokens(&mock), [format!("Bearer {expected}")]);
    }
    // Without any, a clear 401 in the client's format.
    let proxy = start_proxy(&mock, Sandbox::new(), &[]);
    let reply = proxy.post_json("/copilot/v1/messages", &messages_body(false));
    assert_eq!(reply.status, 401, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ccproxy auth login copilot"), "{message}");
}

#[test]
fn every_format_reaches_copilot_as_chat_completions_streamed_and_not() {
    let mock = Mock::start(&["--quiet"]);
    github_settings(&mock, json!({}));
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000")],
    );
    for (path, body) in [
        ("/copilot/v1/chat/completions", chat_body(false)),
        ("/copilot/v1/messages", messages_body(false)),
        ("/copilot/v1/responses", responses_body(false)),
    ] {
        let reply = proxy.request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer client-secret"),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let answer = reply.json();
        match path {
            // Copilot's own answer, passed through (it has no `object`).
            "/copilot/v1/chat/completions" => assert!(
                answer["choices"][0]["message"]["content"].is_string(),
                "{answer}"
            ),
            "/copilot/v1/messages" => assert_eq!(answer["type"], "message", "{answer}"),
            _ => assert_eq!(answer["object"], "response", "{answer}"),
        }
    }
    for (path, body, last) in [
        ("/copilot/v1/chat/completions", chat_body(true), None),
        (
            "/copilot/v1/messages",
            messages_body(true),
            Some("message_stop"),
        ),
        (
            "/copilot/v1/responses",
            responses_body(true),
            Some("response.completed"),
        ),
    ] {
        let reply = proxy.post_json(path, &body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let events = sse_events(&reply.body);
        assert!(events.len() > 2, "{path}: {}", reply.text());
        if let Some(last) = last {
            assert!(
                events.iter().any(|(name, _)| name.as_deref() == Some(last)),
                "{path}: no {last}: {}",
                reply.text()
            );
        }
    }
    let upstream = mock.requests_to("/chat/completions");
    assert_eq!(upstream.len(), 6);
    for request in &upstream {
        let headers = &request["headers"];
        assert!(
            headers["authorization"]
                .as_str()
                .is_some_and(|a| a.starts_with("Bearer tid=mock-copilot-1;")),
            "{headers}"
        );
        assert_eq!(headers["copilot-integration-id"], "vscode-chat");
        assert_eq!(headers["editor-version"], "vscode/1.85.0");
        assert_eq!(headers["editor-plugin-version"], "copilot-chat/0.26.7");
        assert_eq!(headers["user-agent"], "GitHubCopilotChat/0.26.7");
        assert_eq!(headers["x-github-api-version"], "2025-04-01");
        assert!(
            request["body"]["messages"].is_array(),
            "Chat Completions: {request}"
        );
    }
    assert_eq!(github_seen(&mock)["exchanges"], 1, "one exchange, cached");

    // The plain routes.
    let embeddings = proxy.post_json(
        "/copilot/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    );
    assert_eq!(embeddings.status, 200, "{}", embeddings.text());
    assert_eq!(embeddings.json()["data"].as_array().map(Vec::len), Some(2));
    let models = proxy.get("/copilot/v1/models");
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["data"][0]["id"], "gpt-4o");
    let usage = proxy.get("/copilot/usage");
    assert_eq!(usage.status, 200, "{}", usage.text());
    assert_eq!(usage.json()["copilot_plan"], "individual");
    let token = proxy.get("/copilot/token");
    assert_eq!(token.status, 200, "{}", token.text());
    assert!(
        !token.text().contains("tid=mock-copilot-1;exp"),
        "masked: {}",
        token.text()
    );
    assert_eq!(token.json()["expired"], false);
    let health = proxy.get("/copilot/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let plugin_health = proxy.get("/plugins/copilot/health");
    assert_eq!(plugin_health.status, 200, "{}", plugin_health.text());
    assert!(!plugin_health.text().contains("tid=mock-copilot-1;exp"));
    let log = proxy.log();
    assert!(!log.contains("tid=mock-copilot-1;exp") && !log.contains("gho_env-copilot-token-0000"));
}

/// Sends 50 chat requests at once; every one must succeed.
fn fifty_at_once(proxy: &Proxy) {
    let address = proxy.address();
    let barrier = Barrier::new(50);
    let body = chat_body(false).to_string();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    raw_request(
                        address,
                        "POST",
                        "/copilot/v1/chat/completions",
                        body.as_bytes(),
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[test]
fn one_exchange_and_one_refresh_for_fifty_concurrent_requests() {
    let mock = Mock::start(&["--quiet"]);
    // Each exchange takes 500 ms, so the 50 requests really overlap it; each
    // token is due for a refresh 3 s after it was issued (`refresh_in`).
    github_settings(&mock, json!({"exchange_delay_ms": 500, "refresh_in": 3}));
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000")],
    );
    fifty_at_once(&proxy);
    assert_eq!(github_seen(&mock)["exchanges"], 1);
    std::thread::sleep(Duration::from_millis(3200));
    fifty_at_once(&proxy);
    assert_eq!(
        github_seen(&mock)["exchanges"],
        2,
        "one refresh for the 50 requests after refresh_in"
    );
    let tokens: Vec<String> = mock
        .requests_to("/chat/completions")
        .iter()
        .map(|r| {
            r["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 100);
    assert!(
        tokens[50..]
            .iter()
            .all(|t| t.starts_with("Bearer tid=mock-copilot-2;"))
    );
}

#[test]
fn no_copilot_access_and_expired_tokens_are_clear_errors() {
    let mock = Mock::start(&["--quiet"]);
    github_settings(&mock, json!({}));
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_no-copilot-account-0000")],
    );
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 403, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("no GitHub Copilot access"), "{message}");
    let reply = proxy.post_json("/copilot/v1/messages", &messages_body(true));
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(
        reply.json()["type"],
        "error",
        "Anthropic's shape: {}",
        reply.text()
    );
    assert!(mock.requests_to("/chat/completions").is_empty());

    // A GitHub token GitHub refuses: a 401 saying to log in again.
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_revoked-token-0000")],
    );
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 401, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("GitHub refused the GitHub token")
            && message.contains("ccproxy auth login copilot"),
        "{message}"
    );

    // GitHub hands out an already expired token: exchanged once, then a 401.
    github_settings(&mock, json!({"expires_in": -60}));
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000")],
    );
    let reply = proxy.post_json("/copilot/v1/responses", &responses_body(false));
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.text().contains("expired"), "{}", reply.text());
    assert_eq!(github_seen(&mock)["exchanges"], 1);
}

#[test]
fn an_explicit_base_url_wins_over_the_exchanges_api() {
    let mock = Mock::start(&["--quiet"]);
    // The exchange names an API nobody listens on.
    github_settings(&mock, json!({"api": "http://127.0.0.1:9"}));
    let base = mock.url();
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[
            ("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000"),
            ("PLUGINS__COPILOT__BASE_URL", base.as_str()),
        ],
    );
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(mock.requests_to("/chat/completions").len(), 1);
    // Left at its default, the exchange's API is used.
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000")],
    );
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(
        reply.status,
        502,
        "http://127.0.0.1:9 refuses: {}",
        reply.text()
    );
}

#[test]
fn a_copilot_token_the_api_refuses_is_exchanged_again() {
    let mock = Mock::start(&["--quiet"]);
    github_settings(&mock, json!({}));
    let proxy = start_proxy(
        &mock,
        Sandbox::new(),
        &[("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000")],
    );
    mock.fault(json!({"kind": "status", "status": 401, "path": "/chat/completions"}));
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(github_seen(&mock)["exchanges"], 1);
    // The hook drops the refused token (after the answer): a later request
    // exchanges again, once.
    let exchanged = ccproxy_e2e::poll(Duration::from_secs(5), || {
        let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
        assert_eq!(reply.status, 200, "{}", reply.text());
        (github_seen(&mock)["exchanges"] == 2).then_some(())
    });
    assert!(
        exchanged.is_some(),
        "no new exchange after the 401: {}",
        github_seen(&mock)
    );
    let tokens: Vec<String> = mock
        .requests_to("/chat/completions")
        .iter()
        .map(|r| {
            r["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        tokens
            .last()
            .unwrap()
            .starts_with("Bearer tid=mock-copilot-2;"),
        "{tokens:?}"
    );
}

#[test]
fn an_unreachable_github_is_a_quick_clear_error() {
    let sandbox = Sandbox::new();
    let closed = "http://127.0.0.1:9";
    let env = [
        ("PLUGINS__OAUTH_COPILOT__DEVICE_CODE_URL", closed),
        ("PLUGINS__OAUTH_COPILOT__COPILOT_TOKEN_URL", closed),
        ("COPILOT_GITHUB_TOKEN", "gho_env-copilot-token-0000"),
    ];
    let started = std::time::Instant::now();
    let out = sandbox.run_cli(&["auth", "login", "copilot"], &env);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("could not be reached"),
        "{}",
        out.stderr
    );
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["copilot", "oauth_copilot"],
            env: &env,
            ..ProxyOptions::default()
        },
    );
    let reply = proxy.post_json("/copilot/v1/messages", &messages_body(false));
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["type"], "error", "{}", reply.text());
    assert!(
        reply.text().contains("Copilot token exchange"),
        "{}",
        reply.text()
    );
    assert!(started.elapsed() < Duration::from_secs(20), "nothing hangs");
}

// Several GitHub accounts (`[[plugins.copilot.accounts]]`, issue 12 item 4):
// each GitHub token gets its own Copilot token (the mock's `copilot_tokens`
// names them, so a fault can hit one account's).

const GITHUB_A: &str = "gho_account-a-0000000000000001";
const GITHUB_B: &str = "gho_account-b-0000000000000002";
const GITHUB_NO_COPILOT: &str = "gho_no-copilot-account-0000003";
const COPILOT_A: &str = "tid=mock-copilot-a;exp=9999999999;sku=mock";
const COPILOT_B: &str = "tid=mock-copilot-b;exp=9999999999;sku=mock";

/// The proxy with `copilot` holding `accounts` (TOML of
/// `[[plugins.copilot.accounts]]` entries), GitHub at `mock`, and account
/// b's token in `ACCOUNT_B_GITHUB_TOKEN`.
fn accounts_proxy(mock: &Mock, accounts: &str) -> Proxy {
    github_settings(
        mock,
        json!({"copilot_tokens": {GITHUB_A: COPILOT_A, GITHUB_B: COPILOT_B}}),
    );
    let config = format!("[plugins.copilot]\n{accounts}\n");
    let env = github_env(mock);
    let mut all = refs(&env);
    all.push(("ACCOUNT_B_GITHUB_TOKEN", GITHUB_B));
    Proxy::start_in(
        Sandbox::new(),
        ProxyOptions {
            bundled: &["copilot", "oauth_copilot"],
            config_toml: Some(&config),
            env: &all,
            ..ProxyOptions::default()
        },
    )
}

/// Chat requests per Copilot token the mock has seen.
fn sent_with(mock: &Mock, copilot_token: &str) -> usize {
    mock.requests_to("/chat/completions")
        .iter()
        .filter(|request| {
            request["headers"]["authorization"].as_str() == Some(&format!("Bearer {copilot_token}"))
        })
        .count()
}

fn account<'a>(health: &'a Value, label: &str) -> &'a Value {
    health["details"]["accounts"]["accounts"]
        .as_array()
        .and_then(|all| all.iter().find(|account| account["label"] == label))
        .unwrap_or_else(|| panic!("no account {label} in {health:#}"))
}

#[test]
fn accounts_without_copilot_or_rate_limited_are_skipped_before_the_client_sees_them() {
    let mock = Mock::start(&["--quiet"]);
    let proxy = accounts_proxy(
        &mock,
        &format!(
            r#"
[[plugins.copilot.accounts]]
label = "no-access"
github_token = "{GITHUB_NO_COPILOT}"

[[plugins.copilot.accounts]]
label = "a"
github_token = "{GITHUB_A}"

[[plugins.copilot.accounts]]
label = "b"
github_token_env = "ACCOUNT_B_GITHUB_TOKEN"
"#
        ),
    );
    mock.fault(json!({"kind": "status", "status": 429, "retry_after": "30", "credential": COPILOT_A, "path": "/chat/completions"}));
    let reply = proxy.post_json("/copilot/v1/messages", &messages_body(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["type"], "message", "{}", reply.text());
    assert_eq!(
        exchange_tokens(&mock),
        [
            format!("Bearer {GITHUB_NO_COPILOT}"),
            format!("Bearer {GITHUB_A}"),
            format!("Bearer {GITHUB_B}"),
        ],
        "each account exchanges its own GitHub token"
    );
    assert_eq!(
        (sent_with(&mock, COPILOT_A), sent_with(&mock, COPILOT_B)),
        (1, 1)
    );

    // Both failed accounts rest: the next request, streamed, goes to b at once.
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(true));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        !sse_events(reply.text().as_bytes()).is_empty(),
        "{}",
        reply.text()
    );
    assert_eq!(
        (sent_with(&mock, COPILOT_A), sent_with(&mock, COPILOT_B)),
        (1, 2)
    );
    assert_eq!(
        github_seen(&mock)["exchanges"],
        3,
        "Copilot tokens are cached per account"
    );

    let health = proxy.get("/plugins/copilot/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let text = health.text();
    let health = health.json();
    assert_eq!(health["details"]["credentials"], "accounts", "{health:#}");
    let no_access = account(&health, "no-access");
    assert_eq!(no_access["state"], "cooling", "{health:#}");
    assert_eq!(no_access["last_failure_status"], 403);
    let a = account(&health, "a");
    assert_eq!(a["state"], "cooling", "{health:#}");
    assert_eq!(a["last_failure_status"], 429);
    assert!(
        a["cooling_seconds_left"]
            .as_u64()
            .is_some_and(|left| left <= 30)
    );
    let b = account(&health, "b");
    assert_eq!(b["state"], "available");
    assert_eq!(b["from"], "env ACCOUNT_B_GITHUB_TOKEN");
    for secret in [GITHUB_A, GITHUB_B, GITHUB_NO_COPILOT, COPILOT_A, COPILOT_B] {
        assert!(!text.contains(secret), "health shows a secret: {text}");
    }
    let logs = proxy.log();
    for secret in [GITHUB_A, GITHUB_B, COPILOT_A, COPILOT_B] {
        assert!(!logs.contains(secret), "the log shows a secret");
    }
}

#[test]
fn a_401_renews_that_accounts_copilot_token_once_then_the_next_account_answers() {
    let mock = Mock::start(&["--quiet"]);
    let proxy = accounts_proxy(
        &mock,
        &format!(
            r#"
[[plugins.copilot.accounts]]
label = "a"
github_token = "{GITHUB_A}"

[[plugins.copilot.accounts]]
label = "b"
github_token_env = "ACCOUNT_B_GITHUB_TOKEN"
"#
        ),
    );
    // An expired Copilot token: exchanged again, and the same account answers.
    mock.fault(json!({"kind": "status", "status": 401, "credential": COPILOT_A, "path": "/chat/completions"}));
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        (sent_with(&mock, COPILOT_A), sent_with(&mock, COPILOT_B)),
        (2, 0)
    );
    assert_eq!(
        exchange_tokens(&mock),
        [format!("Bearer {GITHUB_A}"), format!("Bearer {GITHUB_A}")]
    );
    // Refused again after the renewal: a's failure, b answers.
    mock.fault(json!({"kind": "status", "status": 401, "count": 2, "credential": COPILOT_A, "path": "/chat/completions"}));
    let reply = proxy.post_json("/copilot/v1/chat/completions", &chat_body(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        (sent_with(&mock, COPILOT_A), sent_with(&mock, COPILOT_B)),
        (4, 1)
    );
    let health = proxy.get("/plugins/copilot/health").json();
    let a = account(&health, "a");
    assert_eq!(a["failures"], 1, "{health:#}");
    assert_eq!(a["last_failure_status"], 401);
    assert_eq!(account(&health, "b")["state"], "available");
}
