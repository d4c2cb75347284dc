//! Hooks (DESIGN decision 6): observing hooks run off the request path, so a
//! slow observer adds no latency; their time is measured per plugin; an event
//! of a request that was answered is delivered before the plugin is shut down;
//! a full queue drops events and counts them. Every event the host declares
//! is emitted where it happens, and mutating hooks run inline, in priority
//! order, see credentials masked, and change what reaches the upstream.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock, poll};
use serde_json::{Value, json};

fn proxy() -> Proxy {
    Proxy::start(ProxyOptions {
        plugins: &["test_plugin_middleware_probe"],
        ..ProxyOptions::default()
    })
}

#[test]
fn a_slow_observer_adds_no_latency_and_its_time_is_measured() {
    let proxy = proxy();
    let started = Instant::now();
    let reply = proxy.get_with(
        "/health/live",
        &[("x-slow-hook", "600"), ("x-request-id", "slow-observed")],
    );
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(
        took < Duration::from_millis(400),
        "the response waited for the hook: {took:?}"
    );

    proxy.wait_for_log(
        "probe hook finished for slow-observed",
        Duration::from_secs(5),
    );
    let measured = poll(Duration::from_secs(2), || {
        let status = proxy.get("/plugins/status").json();
        let probe = status["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "middleware_probe")?
            .clone();
        let hook_ms = probe["hook_time_ms"].as_f64()?;
        (hook_ms >= 600.0).then_some(hook_ms)
    });
    assert!(
        measured.is_some(),
        "hook_time_ms does not include the 600 ms hook: {}",
        proxy.get("/plugins/status").text()
    );
}

#[test]
fn events_of_answered_requests_are_delivered_before_plugins_stop() {
    let proxy = proxy();
    let reply = proxy.get_with(
        "/health/live",
        &[("x-slow-hook", "300"), ("x-request-id", "last-words")],
    );
    assert_eq!(reply.status, 200);
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert_eq!(exit.code(), Some(0), "log:\n{log}");

    // Regression (hooks-drain): shutdown waits for the event the observer task
    // is delivering, not only for the queue to empty, so the last request's
    // observers (an access log's last line) are not lost.
    let finished = log
        .lines()
        .position(|line| line.contains("probe hook finished for last-words"));
    let stopped = log
        .lines()
        .position(|line| line.contains("plugin stopped") && line.contains("middleware_probe"));
    assert!(
        finished.is_some(),
        "the hook of the last request never finished; log:\n{log}"
    );
    assert!(
        finished < stopped,
        "the hook finished after its plugin stopped; log:\n{log}"
    );
}

#[test]
fn a_full_queue_drops_events_counts_them_and_health_warns() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_middleware_probe"],
        env: &[("HOOKS__OBSERVER_QUEUE_CAPACITY", "1")],
        ..ProxyOptions::default()
    });
    // Each request's event keeps the one observer busy for 300 ms; with room
    // for one event in the queue, most of the eight are dropped.
    for _ in 0..8 {
        let reply = proxy.get_with("/health/live", &[("x-slow-hook", "300")]);
        assert_eq!(reply.status, 200);
    }
    let hooks = proxy.get("/plugins/status").json()["hooks"].clone();
    let dropped = hooks["dropped"].as_u64().unwrap_or(0);
    assert!(dropped >= 4, "{hooks}");
    assert!(hooks["queued"].as_u64().unwrap_or(0) >= 1, "{hooks}");
    let health = proxy.get("/health").json();
    let check = &health["checks"]["hooks:dropped"][0];
    assert_eq!(check["status"], "warn", "{health:#}");
    assert!(
        check["observedValue"].as_u64() >= Some(dropped),
        "{health:#}"
    );
    assert!(
        check["output"]
            .as_str()
            .is_some_and(|o| o.contains("hooks.observer_queue_capacity")),
        "{health:#}"
    );
    assert_eq!(health["status"], "warn", "{health:#}");
}

#[test]
fn a_burst_fits_the_default_queue() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_middleware_probe"],
        ..ProxyOptions::default()
    });
    // 3,000 requests at once, each of whose events keeps the observer busy for
    // at least a millisecond: far more than 1,024 events wait at the peak.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..500 {
                    let reply = proxy.get_with("/health/live", &[("x-slow-hook", "1")]);
                    assert_eq!(reply.status, 200);
                }
            });
        }
    });
    // An event is queued or dropped as its request is answered: the counts
    // are final once every request has its answer.
    let delivered = proxy.get("/plugins/status").json()["hooks"].clone();
    assert_eq!(delivered["dropped"], 0, "{delivered}");
    assert!(
        delivered["queued"].as_u64().unwrap_or(0) >= 3000,
        "{delivered}"
    );
    let health = proxy.get("/health").json();
    assert_eq!(
        health["checks"]["hooks:dropped"][0]["status"], "pass",
        "{health:#}"
    );
}

#[test]
fn a_client_that_leaves_before_the_answer_still_ends_its_request() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_middleware_probe", "test_plugin_event_recorder"],
        ..ProxyOptions::default()
    });
    // The route answers after 2 s; the client leaves after 200 ms.
    let mut stream = proxy.connect();
    std::io::Write::write_all(
        &mut stream,
        b"GET /probe/slow?ms=2000 HTTP/1.1\r\nhost: localhost\r\nx-request-id: gone-early\r\n\r\n",
    )
    .expect("the request can be written");
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);
    let failed = poll(Duration::from_secs(5), || {
        let recorded = proxy.get("/recorder/events").json();
        recorded["events"].as_array().and_then(|events| {
            events
                .iter()
                .find(|e| e["event"] == "request.failed" && e["request_id"] == "gone-early")
                .cloned()
        })
    })
    .expect("request.failed is emitted for the request whose client left");
    let data = &failed["data"];
    assert_eq!(data["status_code"], 499, "{failed:#}");
    assert_eq!(data["path"], "/probe/slow", "{failed:#}");
    assert!(
        data["error"]
            .as_str()
            .is_some_and(|e| e.contains("went away before the answer began")),
        "{failed:#}"
    );
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
    listener.local_addr().expect("a bound address").port()
}

/// What the mock's token endpoint issues on a refresh (see tests/mock_upstream).
const REFRESHED_ACCESS: &str = "sk-ant-oat01-mock-refreshed-1";

#[test]
fn every_declared_event_is_emitted_and_mutating_hooks_shape_the_upstream_request() {
    let mock = Mock::start(&[]);
    let sandbox = Sandbox::new();
    for stem in [
        "test_plugin_event_recorder",
        "test_plugin_panicky",
        // Refused at start-up: a plugin.error.
        "test_plugin_not_a_plugin",
    ] {
        sandbox.install(stem);
    }
    // claude_api in OAuth mode with an expired token: the first request
    // refreshes it through oauth_claude (the oauth.refresh.* events).
    let credentials = sandbox.root().join("claude-credentials.json");
    std::fs::write(
        &credentials,
        json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-expired-0000",
            "refreshToken": "sk-ant-ort01-old-refresh",
            "expiresAt": now_ms() - 60_000,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }})
        .to_string(),
    )
    .expect("the sandbox is writable");
    ccproxy_e2e::set_mode(&credentials, 0o600);
    let token_url = format!("{}/v1/oauth/token", mock.url());
    let profile_url = format!("{}/api/oauth/profile", mock.url());
    let credentials_file = credentials.display().to_string();
    let base_url = mock.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["oauth_claude", "claude_api"],
            env: &[
                ("PLUGINS__OAUTH_CLAUDE__TOKEN_URL", &token_url),
                ("PLUGINS__OAUTH_CLAUDE__PROFILE_URL", &profile_url),
                ("PLUGINS__OAUTH_CLAUDE__CREDENTIALS_FILE", &credentials_file),
                ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
            ],
            ..ProxyOptions::default()
        },
    );
    let message = |stream: bool| {
        json!({"model": "claude-sonnet-4-20250514", "max_tokens": 50, "stream": stream,
               "messages": [{"role": "user", "content": "Hello"}]})
    };

    // A complete answer, then a stream.
    let plain = proxy.post_json("/claude/v1/messages", &message(false));
    assert_eq!(plain.status, 200, "{}", plain.text());
    let streamed = proxy.post_json("/claude/v1/messages", &message(true));
    assert_eq!(streamed.status, 200, "{}", streamed.text());

    // The two mutating hooks ran in priority order on the request that went
    // out, and the real token reached the upstream.
    let sent = mock.requests_to("/v1/messages");
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for request in &sent {
        assert_eq!(
            request["headers"]["x-hook-order"], "first,second",
            "{request:#}"
        );
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {REFRESHED_ACCESS}"),
            "{request:#}"
        );
    }

    // An upstream error, a panicking route, a custom event and a failed call
    // through the host's client.
    mock.fault(json!({"kind": "status", "status": 500, "count": 1, "path": "/v1/messages"}));
    let failed = proxy.post_json("/claude/v1/messages", &message(false));
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert_eq!(proxy.get("/panicky/boom").status, 500);
    assert_eq!(
        proxy.request("POST", "/recorder/emit", &[], b"").status,
        200
    );
    let closed = proxy.request(
        "POST",
        &format!("/recorder/http-closed?port={}", closed_port()),
        &[],
        b"",
    );
    assert_eq!(closed.json()["failed"], true, "{}", closed.text());

    // Everything the recorder heard while serving (observers run off the
    // request path: poll until the last of them arrived).
    let wanted_while_serving: BTreeSet<&str> = [
        "app.startup",
        "app.ready",
        "plugin.loaded",
        "plugin.error",
        "request.started",
        "request.completed",
        "request.failed",
        "provider.request.prepared",
        "provider.request.sent",
        "provider.response.received",
        "provider.error",
        "provider.stream.start",
        "provider.stream.chunk",
        "provider.stream.end",
        "http.request",
        "http.response",
        "http.error",
        "oauth.refresh.request",
        "oauth.refresh.response",
        "custom.event",
        "custom.recorder",
    ]
    .into_iter()
    .collect();
    let heard = |proxy: &Proxy| -> (BTreeSet<String>, Value) {
        let recorded = proxy.get("/recorder/events").json();
        let names = recorded["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e["event"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (names, recorded)
    };
    let complete = poll(Duration::from_secs(5), || {
        let (names, _) = heard(&proxy);
        wanted_while_serving
            .iter()
            .all(|event| names.contains(*event))
            .then_some(())
    });
    let (names, recorded) = heard(&proxy);
    assert!(
        complete.is_some(),
        "not heard: {:?}; heard: {names:?}",
        wanted_while_serving
            .iter()
            .filter(|event| !names.contains(**event))
            .collect::<Vec<_>>()
    );

    // Hooks were shown the credentials masked, never in clear.
    let shown = recorded["credentials_shown_to_hooks"].to_string();
    assert!(!shown.contains(REFRESHED_ACCESS), "{shown}");
    assert!(shown.contains("Bearer ***ed-1"), "{shown}");
    // No event data carries a token in clear.
    assert!(
        !recorded.to_string().contains(REFRESHED_ACCESS),
        "an event carries the token"
    );

    // Events carry what they are about.
    let events = recorded["events"].as_array().expect("events is an array");
    let first = |name: &str| -> &Value {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(first("provider.error")["data"]["status_code"], 500);
    assert_eq!(first("request.failed")["data"]["path"], "/panicky/boom");
    assert_eq!(first("custom.recorder")["data"]["data"]["n"], 1);
    assert_eq!(first("custom.recorder")["data"]["plugin"], "event_recorder");
    assert_eq!(first("oauth.refresh.response")["data"]["data"]["ok"], true);
    assert_eq!(
        first("oauth.refresh.response")["data"]["plugin"],
        "oauth_claude"
    );
    let refused = events
        .iter()
        .find(|e| {
            e["event"] == "plugin.error"
                && e["data"]["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("libtest_plugin_not_a_plugin.so"))
        })
        .unwrap_or_else(|| panic!("no plugin.error for the refused file: {recorded:#}"));
    assert_eq!(refused["data"]["status"], "refused", "{refused}");
    let panicked = events
        .iter()
        .find(|e| e["event"] == "plugin.error" && e["data"]["plugin"] == "panicky")
        .unwrap_or_else(|| panic!("no plugin.error for the panic: {recorded:#}"));
    assert_eq!(panicked["data"]["route"], "/panicky/boom", "{panicked}");

    // What happens at shutdown is heard too, before the recorder stops.
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");
    for event in ["app.shutdown", "plugin.unloaded"] {
        assert!(
            log.contains(&format!("event_recorder heard {event}")),
            "{event} not heard; log:\n{log}"
        );
    }
}

/// The data keys of `request.completed` as recorded in the proxy's run.
fn completed_data(proxy: &Proxy, request_id: &str) -> Value {
    poll(Duration::from_secs(5), || {
        proxy.get("/recorder/events").json()["events"]
            .as_array()
            .and_then(|events| {
                events
                    .iter()
                    .find(|e| e["event"] == "request.completed" && e["request_id"] == request_id)
                    .map(|e| e["data"].clone())
            })
    })
    .expect("request.completed is recorded")
}

/// Plugin API 1.3: when every subscriber of an event names the data keys it
/// reads, the host leaves out the client's headers none of them reads (a
/// hook that reads nothing at all included); one subscriber that names none
/// (the recorder by default) gets them.
#[test]
fn the_headers_are_left_out_when_no_subscriber_reads_them() {
    let ask = |proxy: &Proxy, request_id: &str| {
        let mut stream = proxy.connect();
        let request = format!(
            "GET /recorder/events HTTP/1.1\r\nhost: localhost\r\nx-request-id: {request_id}\r\nx-custom: seen\r\nconnection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).expect("the request is sent");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("the answer is read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    };

    let naming = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_event_recorder"],
        env: &[(
            "CCPROXY_TEST_RECORDER_READS",
            "request_id,status_code,path,method",
        )],
        ..ProxyOptions::default()
    });
    ask(&naming, "keys-named");
    let data = completed_data(&naming, "keys-named");
    assert_eq!(data["status_code"], 200, "{data:#}");
    assert_eq!(data["path"], "/recorder/events", "{data:#}");
    assert!(
        data.get("headers").is_none(),
        "headers sent anyway: {data:#}"
    );

    // A hook that reads nothing still gets the event and its cheap members.
    let reading_nothing = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_event_recorder"],
        env: &[("CCPROXY_TEST_RECORDER_READS", "none")],
        ..ProxyOptions::default()
    });
    ask(&reading_nothing, "keys-none");
    let data = completed_data(&reading_nothing, "keys-none");
    assert_eq!(data["status_code"], 200, "{data:#}");
    assert!(
        data.get("headers").is_none(),
        "headers sent anyway: {data:#}"
    );

    let reading_all = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_event_recorder"],
        ..ProxyOptions::default()
    });
    ask(&reading_all, "keys-all");
    let data = completed_data(&reading_all, "keys-all");
    assert_eq!(data["headers"]["x-custom"], "seen", "{data:#}");
}
