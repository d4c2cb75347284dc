//! The bundled `metrics` plugin through the real host: requests through
//! `claude_api` and `codex` (complete and streamed) against the mock
//! upstream show in `GET /metrics` with their provider, model and status,
//! the tokens the host read off the recorded answers, and the duration
//! histogram; the endpoint needs no client token; switched off it answers
//! 404; and the Pushgateway task PUTs the same text to a small HTTP server
//! in the test.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::Duration,
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox,
    mock::{
        Mock,
        codex::{self, REFRESH_TOKEN, access_token, auth_json_path, write_auth_json},
    },
    poll,
};
use serde_json::{Value, json};

const CLAUDE_MODEL: &str = "claude-sonnet-4-20250514";
const CODEX_MODEL: &str = "gpt-5";

/// A proxy with `metrics`, `claude_api` in front of `mock` and `codex`
/// (logged in) in front of `codex_mock`, and `env` added.
fn proxy(mock: &Mock, codex_mock: &Mock, env: &[(&str, &str)]) -> Proxy {
    let sandbox = Sandbox::new();
    write_auth_json(
        &auth_json_path(sandbox.root()),
        &access_token(),
        REFRESH_TOKEN,
    );
    let claude_url = mock.url();
    let codex_url = codex_mock.codex_base_url();
    let mut all = vec![
        ("ANTHROPIC_API_KEY", "test-key"),
        ("PLUGINS__CLAUDE_API__BASE_URL", claude_url.as_str()),
        ("PLUGINS__CODEX__BASE_URL", codex_url.as_str()),
    ];
    all.extend_from_slice(env);
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["metrics", "claude_api", "codex", "oauth_codex"],
            env: &all,
            ..ProxyOptions::default()
        },
    )
}

/// Asks Claude for a (complete) answer, which must succeed.
fn ask_claude(proxy: &Proxy) {
    let body = json!({"model": CLAUDE_MODEL, "max_tokens": 100,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The value of the sample line `series` (name and labels exactly as
/// written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Scrapes until `series` reaches `value` (hook events arrive off the
/// request path, a moment after the answer); returns the last text.
fn scrape_until(proxy: &Proxy, series: &str, value: f64) -> String {
    let mut last = String::new();
    poll(Duration::from_secs(10), || {
        let reply = proxy.get("/metrics");
        assert_eq!(reply.status, 200, "{}", reply.text());
        last = reply.text();
        (sample(&last, series) == Some(value)).then_some(())
    })
    .unwrap_or_else(|| panic!("{series} never reached {value}:\n{last}"));
    last
}

#[test]
fn requests_tokens_and_durations_of_each_provider_are_exposed() {
    // Two upstreams: the Codex one insists on the Codex CLI's headers.
    let mock = Mock::start(&[]);
    let codex_mock = codex::start_mock();
    let proxy = proxy(
        &mock,
        &codex_mock,
        &[("SECURITY__AUTH_TOKEN", "client-token")],
    );
    let auth = [
        ("content-type", "application/json"),
        ("authorization", "Bearer client-token"),
    ];
    let send = |path: &str, body: Value| {
        let reply = proxy.request("POST", path, &auth, body.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    };
    for stream in [false, true] {
        send(
            "/claude/v1/messages",
            json!({"model": CLAUDE_MODEL, "max_tokens": 100, "stream": stream,
                   "messages": [{"role": "user", "content": "Hello"}]}),
        );
        send(
            "/codex/v1/responses",
            json!({"model": CODEX_MODEL, "stream": stream, "instructions": "Be brief.",
                   "input": [{"role": "user", "content": "Hello"}]}),
        );
    }

    let claude = format!(r#"provider="claude_api",model="{CLAUDE_MODEL}""#);
    let codex = format!(r#"provider="codex",model="{CODEX_MODEL}""#);
    let requests =
        |labels: &str| format!(r#"ccproxy_requests_total{{{labels},status="200",method="POST"}}"#);
    scrape_until(&proxy, &requests(&claude), 2.0);
    let text = scrape_until(&proxy, &requests(&codex), 2.0);

    // The content type Prometheus expects, and no client token needed.
    let reply = proxy.get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(proxy.get("/plugins/status").status, 401);

    // The recorded answers: Claude 24 tokens in, 40 out complete and 41
    // streamed; Codex 63 in, 2176 read from the cache, 15 out.
    let tokens = |labels: &str, kind: &str| {
        sample(
            &text,
            &format!(r#"ccproxy_tokens_total{{{labels},type="{kind}"}}"#),
        )
    };
    assert_eq!(tokens(&claude, "input"), Some(48.0), "{text}");
    assert_eq!(tokens(&claude, "output"), Some(81.0), "{text}");
    assert_eq!(tokens(&codex, "input"), Some(126.0), "{text}");
    assert_eq!(tokens(&codex, "cache_read"), Some(4352.0), "{text}");
    assert_eq!(tokens(&codex, "output"), Some(30.0), "{text}");

    for labels in [&claude, &codex] {
        let count = format!("ccproxy_request_duration_seconds_count{{{labels}}}");
        assert_eq!(sample(&text, &count), Some(2.0), "{text}");
        let inf = format!(r#"ccproxy_request_duration_seconds_bucket{{{labels},le="+Inf"}}"#);
        assert_eq!(sample(&text, &inf), Some(2.0), "{text}");
        let sum = format!("ccproxy_request_duration_seconds_sum{{{labels}}}");
        assert!(sample(&text, &sum).is_some_and(|s| s > 0.0), "{text}");
    }
    // Both streams ended.
    for provider in ["claude_api", "codex"] {
        let active = format!(r#"ccproxy_active_streams{{provider="{provider}"}}"#);
        assert_eq!(sample(&text, &active), Some(0.0), "{text}");
    }
    // The scrapes themselves: no provider (an earlier scrape is counted once
    // its own request.completed has been delivered).
    let scrapes = r#"ccproxy_requests_total{provider="",model="",status="200",method="GET"}"#;
    let counted = poll(Duration::from_secs(10), || {
        let text = proxy.get("/metrics").text();
        sample(&text, scrapes).filter(|n| *n >= 1.0)
    });
    assert!(counted.is_some(), "{text}");
    assert!(!text.contains("ccproxy_upstream_errors_total{"), "{text}");

    let health = proxy.get_with(
        "/plugins/metrics/health",
        &[("authorization", "Bearer client-token")],
    );
    assert_eq!(health.status, 200, "{}", health.text());
    let health = health.json();
    assert_eq!(health["status"], "healthy", "{health}");
    let families = health["details"]["families"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(families.contains(&json!("requests_total")), "{health}");
    assert!(
        health["details"]["series"].as_u64().is_some_and(|n| n > 20),
        "{health}"
    );
}

#[test]
fn upstream_errors_are_counted_by_kind() {
    let mock = Mock::start(&[]);
    // A port nothing listens on: bound for a moment, then let go.
    let gone = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("http://{}", listener.local_addr().expect("an address"))
    };
    let proxy = proxy(
        &mock,
        &mock,
        &[("PLUGINS__CLAUDE_API__BASE_URL", gone.as_str())],
    );
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[("content-type", "application/json")],
        json!({"model": CLAUDE_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    scrape_until(
        &proxy,
        r#"ccproxy_upstream_errors_total{provider="claude_api",kind="connect"}"#,
        1.0,
    );
    // Counted as a request of its provider and model, with its status (the
    // request's own event may come after the provider's error event).
    let text = scrape_until(
        &proxy,
        &format!(
            r#"ccproxy_requests_total{{provider="claude_api",model="{CLAUDE_MODEL}",status="502",method="POST"}}"#
        ),
        1.0,
    );
    // The failed request's own event did not count the failure again.
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("ccproxy_upstream_errors_total{"))
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn the_endpoint_answers_404_when_switched_off() {
    let mock = Mock::start(&[]);
    let proxy = proxy(
        &mock,
        &mock,
        &[("PLUGINS__METRICS__METRICS_ENDPOINT_ENABLED", "false")],
    );
    assert_eq!(proxy.get("/metrics").status, 404);
    assert_eq!(proxy.get("/plugins/metrics/health").status, 200);
}

/// One PUT the fake Pushgateway received: request line and body.
struct Pushed {
    request_line: String,
    content_type: String,
    body: String,
}

/// A fake Pushgateway on 127.0.0.1: answers each request 200 and sends
/// what it received; stops when the test ends (the listener thread is
/// detached and blocks only in accept).
fn pushgateway() -> (String, mpsc::Receiver<Pushed>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Some(pushed) = receive(stream)
                && sender.send(pushed).is_err()
            {
                return;
            }
        }
    });
    (url, receiver)
}

fn receive(mut stream: TcpStream) -> Option<Pushed> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let (head_end, content_length) = loop {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..read]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while received.len() < head_end + content_length {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Some(Pushed {
        request_line: head.lines().next().unwrap_or_default().to_owned(),
        content_type,
        body: String::from_utf8_lossy(&received[head_end..]).into_owned(),
    })
}

#[test]
fn the_pushgateway_task_puts_the_metrics() {
    let mock = Mock::start(&[]);
    let (url, pushes) = pushgateway();
    let proxy = proxy(
        &mock,
        &mock,
        &[
            ("PLUGINS__METRICS__PUSHGATEWAY_ENABLED", "true"),
            ("PLUGINS__METRICS__PUSHGATEWAY_URL", url.as_str()),
            ("PLUGINS__METRICS__PUSHGATEWAY_JOB", "e2e"),
            ("PLUGINS__METRICS__PUSHGATEWAY_PUSH_INTERVAL", "0.2"),
        ],
    );
    ask_claude(&proxy);
    let series = format!(
        r#"ccproxy_requests_total{{provider="claude_api",model="{CLAUDE_MODEL}",status="200",method="POST"}}"#
    );
    let pushed = poll(Duration::from_secs(10), || {
        let pushed = pushes.recv_timeout(Duration::from_secs(1)).ok()?;
        (sample(&pushed.body, &series) == Some(1.0)).then_some(pushed)
    })
    .unwrap_or_else(|| panic!("no push with {series}; proxy log:\n{}", proxy.log()));
    assert_eq!(pushed.request_line, "PUT /metrics/job/e2e HTTP/1.1");
    assert_eq!(
        pushed.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        pushed
            .body
            .contains("# TYPE ccproxy_request_duration_seconds histogram"),
        "{}",
        pushed.body
    );
    // The plugin records a push once the answer is back, a moment after the
    // server above has read it.
    let health = poll(Duration::from_secs(10), || {
        let health = proxy.get("/plugins/metrics/health").json();
        (health["details"]["pushgateway"]["last_success_at"].is_number()).then_some(health)
    })
    .expect("a successful push shows in health");
    assert_eq!(health["status"], "healthy", "{health}");
    let pushgateway = &health["details"]["pushgateway"];
    assert_eq!(
        pushgateway["url"],
        format!("{url}/metrics/job/e2e"),
        "{health}"
    );
    assert_eq!(pushgateway["failures"], 0, "{health}");
    assert!(
        pushgateway["pushes"].as_u64().is_some_and(|n| n >= 1),
        "{health}"
    );
}

#[test]
fn the_last_counts_are_pushed_at_shutdown() {
    let mock = Mock::start(&[]);
    let (url, pushes) = pushgateway();
    // No periodic push happens during the test.
    let proxy = proxy(
        &mock,
        &mock,
        &[
            ("PLUGINS__METRICS__PUSHGATEWAY_ENABLED", "true"),
            ("PLUGINS__METRICS__PUSHGATEWAY_URL", url.as_str()),
        ],
    );
    ask_claude(&proxy);
    let series = format!(
        r#"ccproxy_requests_total{{provider="claude_api",model="{CLAUDE_MODEL}",status="200",method="POST"}}"#
    );
    // Wait until the request's event is counted, then stop.
    scrape_until(&proxy, &series, 1.0);
    assert!(pushes.try_recv().is_err(), "a push before shutdown");
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");
    let pushed = pushes
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("nothing pushed at shutdown; log:\n{log}"));
    assert_eq!(pushed.request_line, "PUT /metrics/job/ccproxy HTTP/1.1");
    assert_eq!(sample(&pushed.body, &series), Some(1.0), "{}", pushed.body);
}

#[test]
fn the_cost_the_pricing_plugin_adds_is_summed() {
    let mock = Mock::start(&[]);
    let sandbox = Sandbox::new();
    let claude_url = mock.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["metrics", "pricing", "claude_api"],
            env: &[
                ("ANTHROPIC_API_KEY", "test-key"),
                ("PLUGINS__CLAUDE_API__BASE_URL", claude_url.as_str()),
            ],
            ..ProxyOptions::default()
        },
    );
    ask_claude(&proxy);
    ask_claude(&proxy);
    let labels = format!(r#"provider="claude_api",model="{CLAUDE_MODEL}""#);
    let text = scrape_until(
        &proxy,
        &format!(r#"ccproxy_requests_total{{{labels},status="200",method="POST"}}"#),
        2.0,
    );
    // The pricing hook (priority 50) runs before this one (700) and writes
    // `cost_usd` into the event; two answers of 24 tokens in and 40 out at
    // the bundled table's Claude Sonnet 4 prices ($3 and $15 a million).
    let cost = poll(Duration::from_secs(5), || {
        sample(
            &proxy.get("/metrics").text(),
            &format!("ccproxy_cost_usd_total{{{labels}}}"),
        )
    })
    .unwrap_or_else(|| panic!("no cost series:\n{text}"));
    let expected = 2.0 * (24.0 * 3.0 + 40.0 * 15.0) / 1e6;
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
}

#[test]
fn each_plugins_hook_time_comes_from_the_host() {
    let mock = Mock::start(&[]);
    let proxy = proxy(&mock, &mock, &[]);
    ask_claude(&proxy);
    // The metrics hook itself saw the request's events (completed at least).
    let text = poll(Duration::from_secs(10), || {
        let text = proxy.get("/metrics").text();
        sample(
            &text,
            r#"ccproxy_plugin_hook_calls_total{plugin="metrics"}"#,
        )
        .is_some_and(|calls| calls >= 1.0)
        .then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "no hook calls for metrics:\n{}",
            proxy.get("/metrics").text()
        )
    });
    assert!(
        sample(
            &text,
            r#"ccproxy_plugin_hook_seconds_total{plugin="metrics"}"#
        )
        .is_some_and(|seconds| seconds > 0.0),
        "{text}"
    );
    // Plugins without hooks are there too, at zero.
    assert_eq!(
        sample(
            &text,
            r#"ccproxy_plugin_hook_calls_total{plugin="claude_api"}"#
        ),
        Some(0.0),
        "{text}"
    );
}
