//! A stuck plugin cannot stall the server (issue 13 item 5): plugin code runs
//! on the plugin runtime, so a plugin that blocks its thread leaves the
//! server's workers free for `/health*`; every plugin call on the request path
//! has a timeout that answers 504 naming the plugin and the operation; and
//! `/health*` never passes through plugin middleware.

use std::{
    thread,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, http_get, mock::Mock};

const STUCK: &str = "test_plugin_stuck";

fn error_message(reply: &ccproxy_e2e::Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The proxy gave up on the plugin: a 504 saying `message`.
fn assert_gave_up(reply: &ccproxy_e2e::Reply, message: &str) {
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(error_message(reply), message);
}

#[test]
fn plugins_blocking_their_threads_leave_health_answering() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[STUCK],
        ..ProxyOptions::default()
    });
    let address = proxy.address();
    // As many blocked plugin calls as the machine may have cores (at least
    // two): today each holds a server worker for 3 s.
    let blocked = thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let blockers: Vec<_> = (0..blocked)
        .map(|_| thread::spawn(move || http_get(address, "/stuck/block?ms=3000")))
        .collect();
    // Let the blocking calls start.
    thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let started = Instant::now();
        let live = proxy.get("/health/live");
        let took = started.elapsed();
        assert_eq!(live.status, 200, "{}", live.text());
        assert!(
            took < Duration::from_secs(1),
            "/health/live took {took:?} while plugin calls blocked their threads"
        );
    }
    for blocker in blockers {
        let reply = blocker
            .join()
            .expect("the client thread ends")
            .expect("the blocked request is answered");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["blocked_ms"], 3000);
    }
}

#[test]
fn a_middleware_that_never_answers_times_out_and_health_bypasses_it() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[STUCK],
        env: &[
            ("PLUGINS__STUCK__HANG_MIDDLEWARE", "true"),
            ("SERVER__PLUGIN_CALL_TIMEOUT_SECONDS", "1"),
        ],
        ..ProxyOptions::default()
    });
    // /health* never goes through plugin middleware.
    for path in ["/health", "/health/live", "/health/ready"] {
        let started = Instant::now();
        let reply = proxy.get(path);
        assert!(
            reply.status == 200 || reply.status == 503,
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} took {:?} behind a middleware that never answers",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let reply = proxy.get("/stuck/block?ms=1");
    let took = started.elapsed();
    assert_gave_up(
        &reply,
        "plugin stuck did not answer middleware.request within 1 s",
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "the timeout took {took:?}"
    );
}

#[test]
fn a_provider_prepare_that_never_answers_is_a_504_in_the_clients_format() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[STUCK],
        env: &[("SERVER__PLUGIN_CALL_TIMEOUT_SECONDS", "1")],
        ..ProxyOptions::default()
    });
    let started = Instant::now();
    let reply = proxy.post_json(
        "/stuck/v1/messages",
        &serde_json::json!({
            "model": "claude-test",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }),
    );
    let took = started.elapsed();
    assert_gave_up(
        &reply,
        "plugin stuck did not answer provider.prepare within 1 s",
    );
    let body = reply.json();
    // Anthropic's error shape: {"type": "error", "error": {"type", "message"}}.
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(took < Duration::from_secs(3), "the timeout took {took:?}");

    // Counted, and shown in the plugin's health.
    let health = proxy.get("/plugins/stuck/health").json();
    assert_eq!(health["details"]["timeouts"], 1, "{health:#}");
    assert_eq!(
        health["details"]["last_timeout"],
        "plugin stuck did not answer provider.prepare within 1 s",
        "{health:#}"
    );
    assert_eq!(health["status"], "degraded", "{health:#}");
}

#[test]
fn a_route_that_never_answers_times_out_at_the_request_timeout() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[STUCK],
        env: &[("SERVER__REQUEST_TIMEOUT_SECONDS", "1")],
        ..ProxyOptions::default()
    });
    let reply = proxy.get("/stuck/hang");
    assert_gave_up(
        &reply,
        "plugin stuck did not answer route.handle within 1 s",
    );
    assert_eq!(reply.json()["error"]["type"], "timeout_error");
    // The server is still serving.
    assert_eq!(proxy.get("/health/live").status, 200);
}

#[test]
fn an_inline_hook_blocking_its_thread_fails_the_request_at_the_deadline_not_the_server() {
    // `provider.prepare` and the `provider.request.prepared` hooks run in one
    // task on the plugin runtime; a hook that blocks that thread is given up
    // by the caller after the call's timeout plus the hooks' (1 s + 5 s + 1 s).
    let mock = Mock::start(&["--quiet"]);
    let base_url = mock.url();
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[STUCK],
        bundled: &["claude_api"],
        env: &[
            ("SERVER__PLUGIN_CALL_TIMEOUT_SECONDS", "1"),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
            ("PLUGINS__STUCK__BLOCK_PREPARED_HOOK_MS", "9000"),
        ],
        ..ProxyOptions::default()
    });
    let address = proxy.address();
    let started = Instant::now();
    let request = thread::spawn(move || {
        let body = serde_json::json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]});
        ccproxy_e2e::http_post_json(address, "/claude/v1/messages", &body)
    });
    thread::sleep(Duration::from_millis(500));
    // The server answers meanwhile.
    let live = proxy.get("/health/live");
    assert_eq!(live.status, 200, "{}", live.text());
    let reply = request
        .join()
        .expect("the client thread ends")
        .expect("the request is answered");
    let took = started.elapsed();
    assert_gave_up(
        &reply,
        "provider claude_api: preparing the request did not finish within 7 s (a plugin blocks its thread)",
    );
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(9),
        "answered after {took:?}"
    );
    // Nothing was sent upstream.
    assert!(mock.requests_to("/v1/messages").is_empty());
}
