//! Hostile web pages and the request pipeline's guards (issue 13, items 3, 6
//! and 8): a `Host` that is not ours (DNS rebinding) and a foreign `Origin`
//! are refused before any plugin code runs; configured origins get CORS,
//! preflight included; provider endpoints take JSON only; with a token set an
//! unknown path is a 401 that plugin middleware never sees; the bearer scheme
//! is case-insensitive; and every debug line of a request carries its own
//! request id, however requests interleave.

use std::time::Duration;

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, mock::Mock};
use serde_json::json;

/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
/// The model of the recorded Anthropic samples.
const MODEL: &str = "claude-sonnet-4-20250514";
/// The origin the CORS tests configure.
const APP_ORIGIN: &str = "http://app.example:3000";

fn mock() -> Mock {
    Mock::start(&[
        "--expect-header",
        &format!("x-api-key={API_KEY}"),
        "--quiet",
    ])
}

/// The proxy with `claude_api` (API key mode) in front of `mock` and the
/// `middleware_probe` test plugin (a security-layer middleware that marks
/// every response it sees with `x-probe: 1`).
fn proxy(mock: &Mock, env: &[(&str, &str)], args: &[&str]) -> Proxy {
    let base_url = mock.url();
    let mut all_env = vec![
        ("PLUGINS__CLAUDE_API__BASE_URL", base_url.as_str()),
        ("ANTHROPIC_API_KEY", API_KEY),
    ];
    all_env.extend_from_slice(env);
    Proxy::start(ProxyOptions {
        plugins: &["test_plugin_middleware_probe"],
        bundled: &["claude_api"],
        env: &all_env,
        args,
        ..ProxyOptions::default()
    })
}

fn anthropic_body() -> Vec<u8> {
    json!({"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]})
        .to_string()
        .into_bytes()
}

fn post_messages(proxy: &Proxy, headers: &[(&str, &str)]) -> Reply {
    proxy.request("POST", "/claude/v1/messages", headers, &anthropic_body())
}

/// An Anthropic error with `status`; returns its message.
fn anthropic_error(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_owned()
}

/// A request with exactly the `Host` header given (the harness client always
/// sends the address): `(status, headers, body)`.
fn with_host(proxy: &Proxy, method: &str, path: &str, host: &str, extra: &str) -> Reply {
    let body = if method == "POST" {
        anthropic_body()
    } else {
        Vec::new()
    };
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    let answer = proxy.raw(&bytes);
    parse(&answer)
}

fn parse(answer: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Reply {
        version: "HTTP/1.1".to_owned(),
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn a_host_that_is_not_ours_is_refused_before_any_plugin_runs() {
    let mock = mock();
    let proxy = proxy(&mock, &[], &[]);
    let port = proxy.address().port();

    // DNS rebinding: a page on evil.example whose name now resolves to
    // 127.0.0.1 sends `Host: evil.example:PORT`.
    let evil = format!("evil.example:{port}");
    let refused = with_host(&proxy, "POST", "/claude/v1/messages", &evil, "");
    let message = anthropic_error(&refused, 403);
    assert!(
        message.contains("evil.example") && message.contains("server.allowed_hosts"),
        "{message}"
    );
    assert_eq!(
        refused.header("x-probe"),
        None,
        "plugin middleware saw it: {:?}",
        refused.headers
    );
    assert!(mock.requests().is_empty(), "it reached the upstream");
    let refused = with_host(&proxy, "GET", "/plugins", "evil.example", "");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"]["type"], "host_not_allowed");

    // Our own names and any IP address pass, with or without the port.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("LocalHost.:{port}"),
        format!("[::1]:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let reply = with_host(&proxy, "GET", "/plugins", &host, "");
        assert_eq!(reply.status, 200, "{host}: {}", reply.text());
    }
    let reply = with_host(&proxy, "POST", "/claude/v1/messages", "localhost", "");
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Health answers whatever the name (documented: nothing to steal, and
    // container health checks use all sorts of names).
    let health = with_host(&proxy, "GET", "/health/live", "evil.example", "");
    assert_eq!(health.status, 200, "{}", health.text());
}

#[test]
fn a_foreign_origin_is_refused_and_a_configured_one_gets_cors() {
    let mock = mock();
    let proxy = proxy(
        &mock,
        &[
            ("SERVER__CORS_ORIGINS", APP_ORIGIN),
            ("SERVER__ALLOWED_HOSTS", "ccproxy.internal"),
            ("SECURITY__AUTH_TOKEN", "client-token"),
        ],
        &[],
    );
    let token = ("authorization", "Bearer client-token");
    let json_type = ("content-type", "application/json");

    // Any page's fetch carries its origin: a foreign one is refused.
    let refused = post_messages(
        &proxy,
        &[json_type, token, ("origin", "http://evil.example")],
    );
    let message = anthropic_error(&refused, 403);
    assert!(
        message.contains("http://evil.example") && message.contains("server.cors_origins"),
        "{message}"
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.header("x-probe"), None, "plugin middleware saw it");
    // A sandboxed frame or a file: page sends `null`.
    let refused = post_messages(&proxy, &[json_type, token, ("origin", "null")]);
    anthropic_error(&refused, 403);
    assert!(mock.requests().is_empty(), "it reached the upstream");

    // The same origin is no cross-origin request.
    let same = format!("http://{}", proxy.address());
    let reply = post_messages(&proxy, &[json_type, token, ("origin", &same)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("access-control-allow-origin"), None);

    // A configured origin's preflight: 204, no token needed (browsers send
    // none with a preflight), and what the page asked for allowed.
    let preflight = proxy.request(
        "OPTIONS",
        "/claude/v1/messages",
        &[
            ("origin", APP_ORIGIN),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-api-key,anthropic-version",
            ),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type,x-api-key,anthropic-version")
    );
    assert!(preflight.header("access-control-max-age").is_some());
    assert!(
        preflight
            .header("vary")
            .is_some_and(|vary| vary.to_ascii_lowercase().contains("origin")),
        "{:?}",
        preflight.headers
    );
    assert_eq!(
        preflight.header("x-probe"),
        None,
        "plugin middleware saw it"
    );
    // An unconfigured origin's preflight is refused, without CORS headers,
    // so the browser never sends the request.
    let preflight = proxy.request(
        "OPTIONS",
        "/claude/v1/messages",
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 403, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin"), None);

    // The configured origin's requests carry CORS headers, answers and
    // refusals alike (so the page can read why).
    let reply = post_messages(&proxy, &[json_type, token, ("origin", APP_ORIGIN)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(reply.header("vary").is_some_and(|v| v.contains("Origin")));
    let unauthenticated = post_messages(&proxy, &[json_type, ("origin", APP_ORIGIN)]);
    anthropic_error(&unauthenticated, 401);
    assert_eq!(
        unauthenticated.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );

    // A configured name passes the Host check.
    let port = proxy.address().port();
    let named = with_host(
        &proxy,
        "GET",
        "/plugins",
        &format!("CCProxy.Internal:{port}"),
        "authorization: Bearer client-token\r\n",
    );
    assert_eq!(named.status, 200, "{}", named.text());
    // Same origin through a configured name.
    let named = with_host(
        &proxy,
        "POST",
        "/claude/v1/messages",
        &format!("ccproxy.internal:{port}"),
        &format!(
            "authorization: Bearer client-token\r\norigin: http://ccproxy.internal:{port}\r\n"
        ),
    );
    assert_eq!(named.status, 200, "{}", named.text());
}

#[test]
fn provider_endpoints_take_json_only() {
    let mock = mock();
    let proxy = proxy(&mock, &[], &[]);

    // A form or `text/plain` post needs no preflight in a browser.
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|value| ("content-type", value))
            .into_iter()
            .collect();
        let reply = post_messages(&proxy, &headers);
        let message = anthropic_error(&reply, 415);
        assert!(message.contains("application/json"), "{message}");
    }
    // In the client's own format on OpenAI endpoints.
    let reply = proxy.request(
        "POST",
        "/claude/v1/chat/completions",
        &[("content-type", "text/plain")],
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 415, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("type").is_none(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(mock.requests().is_empty(), "it reached the upstream");

    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.anthropic+json",
    ] {
        let reply = post_messages(&proxy, &[("content-type", content_type)]);
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.text());
    }
}

#[test]
fn with_a_token_unknown_paths_are_401_and_never_reach_middleware() {
    let mock = mock();
    let proxy = proxy(&mock, &[("SECURITY__AUTH_TOKEN", "client-token")], &[]);

    let unknown = proxy.get("/nonexistent");
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    assert_eq!(unknown.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        unknown.header("x-probe"),
        None,
        "middleware_probe ran for an unauthenticated request: {:?}",
        unknown.headers
    );
    // The probe answers `x-block: 1` itself: it must not get the chance.
    let blocked = proxy.get_with("/nonexistent", &[("x-block", "1")]);
    assert_eq!(blocked.status, 401, "{}", blocked.text());
    // A wrong method on a known path, and a wrong token, too.
    let wrong = proxy.request("DELETE", "/plugins", &[], b"");
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(wrong.header("x-probe"), None);
    let wrong = proxy.get_with("/nonexistent", &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(wrong.header("x-probe"), None);

    // With the token the middleware runs and the path is simply unknown.
    let known = proxy.get_with("/nonexistent", &[("authorization", "Bearer client-token")]);
    assert_eq!(known.status, 404, "{}", known.text());
    assert_eq!(known.header("x-probe"), Some("1"));
    // Health needs no token; middleware still wraps it.
    let health = proxy.get("/health/live");
    assert_eq!(health.status, 200, "{}", health.text());
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let mock = mock();
    let proxy = proxy(&mock, &[("SECURITY__AUTH_TOKEN", "client-token")], &[]);
    for value in [
        "Bearer client-token",
        "BEARER client-token",
        "bearer client-token",
        "bEaReR  client-token",
    ] {
        let reply = proxy.get_with("/plugins", &[("authorization", value)]);
        assert_eq!(reply.status, 200, "{value}: {}", reply.text());
    }
    for value in ["Basic client-token", "Bearerclient-token", "BEARER other"] {
        let reply = proxy.get_with("/plugins", &[("authorization", value)]);
        assert_eq!(reply.status, 401, "{value}: {}", reply.text());
    }
}

/// The `request_id=` values in one log line.
fn request_ids(line: &str) -> Vec<&str> {
    line.match_indices("request_id=")
        .map(|(at, key)| {
            line[at + key.len()..]
                .split(|c: char| c.is_whitespace() || c == '}' || c == ',')
                .next()
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn every_debug_line_of_a_request_carries_its_own_request_id() {
    const REQUESTS: usize = 6;
    let mock = mock();
    let proxy = proxy(&mock, &[], &["--log-level", "debug"]);
    // Every request waits for the upstream, so all are in flight at once and
    // each one's handling awaits while the others run on the same workers.
    mock.fault(json!({"kind": "delay", "delay_ms": 1000, "count": REQUESTS}));
    let ids: Vec<String> = (0..REQUESTS).map(|n| format!("overlap-{n}")).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let proxy = &proxy;
                // Half stream: a stream's last line is logged when its body
                // ends, outside the request's future.
                let body = json!({"model": MODEL, "max_tokens": 100, "stream": n % 2 == 1,
                                  "messages": [{"role": "user", "content": "Hello"}]});
                scope.spawn(move || {
                    proxy.request(
                        "POST",
                        "/claude/v1/messages",
                        &[("content-type", "application/json"), ("x-request-id", id)],
                        body.to_string().as_bytes(),
                    )
                })
            })
            .collect();
        for handle in handles {
            let reply = handle.join().expect("the client thread does not panic");
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    });
    // The last line of each request ("request done") is logged before its
    // answer (or a stream's end) is sent; a moment for the log reader.
    std::thread::sleep(Duration::from_millis(200));
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|line| line.contains("plugin: request overlap-")),
        "the plugin's debug lines are in the log too; log:\n{log}"
    );

    for line in log.lines() {
        let found = request_ids(line);
        assert!(
            found.len() <= 1,
            "a line in two requests' spans: {line}\nlog:\n{log}"
        );
        // claude_api names the request in its own words: the span must agree.
        if let Some(named) = line
            .split("plugin: request ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
        {
            assert_eq!(found, [named], "{line}\nlog:\n{log}");
        }
    }
    for id in &ids {
        let done: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("request done"))
            .filter(|line| request_ids(line) == [id.as_str()])
            .collect();
        assert_eq!(
            done.len(),
            1,
            "{id} has no `request done` line of its own; log:\n{log}"
        );
    }
    let done_lines = log
        .lines()
        .filter(|line| line.contains("request done"))
        .count();
    let unattributed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("request done") && request_ids(line).is_empty())
        .collect();
    assert!(
        unattributed.is_empty(),
        "`request done` lines without a request id ({done_lines} in all): {unattributed:?}"
    );
}
