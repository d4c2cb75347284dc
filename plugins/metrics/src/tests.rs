//! The plugin against the SDK's mock host: events in, exposition lines out.

use std::sync::{Arc, Mutex};

use ccproxy_plugin_abi::testing::{MockHost, TestPlugin, request};

use super::*;

fn start(config: Value) -> (MockHost, TestPlugin) {
    let host = MockHost::new().config(config);
    let plugin = host.start::<MetricsPlugin>().expect("metrics starts");
    (host, plugin)
}

/// The body of `GET /metrics`, checking its status and content type.
fn scrape(plugin: &TestPlugin) -> String {
    let response = plugin.route(request("GET", "/metrics")).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        response.headers.get("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    String::from_utf8(response.body).unwrap()
}

/// The sample lines of `text` whose name is `name` (labels and value).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn hook(plugin: &TestPlugin, event: HookEvent, request_id: &str, data: Value) {
    plugin
        .hook_with(HookContext {
            hook: "metrics".into(),
            event,
            timestamp_ms: 1_700_000_000_000,
            request_id: Some(request_id.into()),
            data,
            body: Vec::new(),
        })
        .unwrap();
}

fn completed(request_id: &str, status: u16, duration_ms: f64, extra: Value) -> (String, Value) {
    let mut data = json!({
        "request_id": request_id, "method": "POST", "path": "/claude/v1/messages", "query": "",
        "url": "/claude/v1/messages", "status_code": status, "response_status": status,
        "duration_ms": duration_ms, "client_ip": "127.0.0.1", "user_agent": "test", "bytes_sent": 10,
        "streaming": false, "provider": "claude_api", "model": "claude-sonnet-4", "usage": null,
        "error": null, "http_version": "HTTP/1.1",
        "headers": {"authorization": "***", "content-type": "application/json"},
    });
    for (key, value) in extra.as_object().unwrap() {
        data[key] = value.clone();
    }
    (request_id.to_owned(), data)
}

fn send_completed(plugin: &TestPlugin, (request_id, data): (String, Value)) {
    hook(plugin, HookEvent::RequestCompleted, &request_id, data);
}

#[test]
fn requests_are_counted_by_provider_model_status_and_method() {
    let (_host, plugin) = start(json!({}));
    send_completed(&plugin, completed("a", 200, 120.0, json!({})));
    send_completed(&plugin, completed("b", 200, 80.0, json!({})));
    send_completed(
        &plugin,
        completed("c", 429, 5.0, json!({"model": "claude-opus-4"})),
    );
    // Not a provider request: empty provider and model.
    send_completed(
        &plugin,
        completed(
            "d",
            200,
            1.0,
            json!({"method": "GET", "path": "/health", "provider": null, "model": null}),
        ),
    );
    let text = scrape(&plugin);
    let mut lines = samples(&text, "ccproxy_requests_total");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"ccproxy_requests_total{provider="",model="",status="200",method="GET"} 1"#,
            r#"ccproxy_requests_total{provider="claude_api",model="claude-opus-4",status="429",method="POST"} 1"#,
            r#"ccproxy_requests_total{provider="claude_api",model="claude-sonnet-4",status="200",method="POST"} 2"#,
        ],
        "{text}"
    );
    assert!(
        text.contains("# TYPE ccproxy_requests_total counter\n"),
        "{text}"
    );
}

#[test]
fn durations_fill_the_original_buckets() {
    let (_host, plugin) = start(json!({}));
    send_completed(&plugin, completed("a", 200, 120.0, json!({})));
    send_completed(&plugin, completed("b", 200, 3000.0, json!({})));
    send_completed(&plugin, completed("c", 200, 30_000.0, json!({})));
    let text = scrape(&plugin);
    let labels = r#"provider="claude_api",model="claude-sonnet-4""#;
    let expected: Vec<String> = [
        ("0.01", 0),
        ("0.05", 0),
        ("0.1", 0),
        ("0.25", 1),
        ("0.5", 1),
        ("1", 1),
        ("2.5", 1),
        ("5", 2),
        ("10", 2),
        ("25", 2),
        ("+Inf", 3),
    ]
    .iter()
    .map(|(le, count)| {
        format!(r#"ccproxy_request_duration_seconds_bucket{{{labels},le="{le}"}} {count}"#)
    })
    .collect();
    assert_eq!(
        samples(&text, "ccproxy_request_duration_seconds_bucket"),
        expected,
        "{text}"
    );
    assert_eq!(
        samples(&text, "ccproxy_request_duration_seconds_count"),
        [format!(
            "ccproxy_request_duration_seconds_count{{{labels}}} 3"
        )]
    );
    assert_eq!(
        samples(&text, "ccproxy_request_duration_seconds_sum"),
        [format!(
            "ccproxy_request_duration_seconds_sum{{{labels}}} 33.12"
        )]
    );
    assert!(
        text.contains("# TYPE ccproxy_request_duration_seconds histogram\n"),
        "{text}"
    );
    // No answer said when its first byte left.
    assert!(
        samples(&text, "ccproxy_time_to_first_byte_seconds_count").is_empty(),
        "{text}"
    );
}

#[test]
fn configured_buckets_and_time_to_first_byte() {
    let (_host, plugin) = start(json!({"histogram_buckets": [0.1, 1.0]}));
    send_completed(
        &plugin,
        completed("a", 200, 900.0, json!({"ttfb_ms": 50.0})),
    );
    let text = scrape(&plugin);
    assert_eq!(
        samples(&text, "ccproxy_time_to_first_byte_seconds_bucket"),
        [
            r#"ccproxy_time_to_first_byte_seconds_bucket{provider="claude_api",model="claude-sonnet-4",le="0.1"} 1"#,
            r#"ccproxy_time_to_first_byte_seconds_bucket{provider="claude_api",model="claude-sonnet-4",le="1"} 1"#,
            r#"ccproxy_time_to_first_byte_seconds_bucket{provider="claude_api",model="claude-sonnet-4",le="+Inf"} 1"#,
        ],
        "{text}"
    );
    assert_eq!(
        samples(&text, "ccproxy_request_duration_seconds_bucket").len(),
        3,
        "{text}"
    );
}

#[test]
fn tokens_are_counted_by_type_and_unused_types_add_no_series() {
    let (_host, plugin) = start(json!({}));
    let usage = json!({"usage": {"input_tokens": 24, "output_tokens": 41, "cache_read_input_tokens": 2176,
                                 "cache_creation_input_tokens": 0, "reasoning_tokens": 9}});
    send_completed(&plugin, completed("a", 200, 10.0, usage.clone()));
    send_completed(&plugin, completed("b", 200, 10.0, usage));
    let text = scrape(&plugin);
    let mut lines = samples(&text, "ccproxy_tokens_total");
    lines.sort_unstable();
    let series = |kind: &str, value: u64| {
        format!(
            r#"ccproxy_tokens_total{{provider="claude_api",model="claude-sonnet-4",type="{kind}"}} {value}"#
        )
    };
    assert_eq!(
        lines,
        [
            series("cache_read", 4352),
            series("input", 48),
            series("output", 82),
            series("reasoning", 18),
        ],
        "{text}"
    );
}

#[test]
fn cost_comes_from_the_pricing_plugin_when_present() {
    let (_host, plugin) = start(json!({}));
    send_completed(
        &plugin,
        completed("a", 200, 10.0, json!({"cost_usd": 0.25})),
    );
    send_completed(&plugin, completed("b", 200, 10.0, json!({"cost_usd": 0.5})));
    send_completed(&plugin, completed("c", 200, 10.0, json!({})));
    let text = scrape(&plugin);
    assert_eq!(
        samples(&text, "ccproxy_cost_usd_total"),
        [r#"ccproxy_cost_usd_total{provider="claude_api",model="claude-sonnet-4"} 0.75"#],
        "{text}"
    );
}

#[test]
fn upstream_errors_are_counted_once_per_failure() {
    let (_host, plugin) = start(json!({}));
    // The upstream answered 529; the request then failed.
    hook(
        &plugin,
        HookEvent::ProviderError,
        "a",
        json!({"request_id": "a", "provider": "claude_api", "url": "http://x/", "status_code": 529,
               "error": "overloaded", "phase": "response"}),
    );
    hook(
        &plugin,
        HookEvent::RequestFailed,
        "a",
        completed(
            "a",
            529,
            10.0,
            json!({"error": "provider claude_api: overloaded"}),
        )
        .1,
    );
    // Unreachable.
    hook(
        &plugin,
        HookEvent::ProviderError,
        "b",
        json!({"request_id": "b", "provider": "codex", "url": "http://x/", "error": "refused", "phase": "connect"}),
    );
    // The client left mid-stream: no provider.error.
    hook(
        &plugin,
        HookEvent::RequestFailed,
        "c",
        completed(
            "c",
            200,
            10.0,
            json!({"error": "the client went away before the response ended"}),
        )
        .1,
    );
    // A plain route's failure is no upstream error.
    hook(
        &plugin,
        HookEvent::RequestFailed,
        "d",
        completed(
            "d",
            500,
            1.0,
            json!({"provider": null, "model": null, "error": "plugin x panicked"}),
        )
        .1,
    );
    let text = scrape(&plugin);
    let mut lines = samples(&text, "ccproxy_upstream_errors_total");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"ccproxy_upstream_errors_total{provider="claude_api",kind="client_disconnected"} 1"#,
            r#"ccproxy_upstream_errors_total{provider="claude_api",kind="http_529"} 1"#,
            r#"ccproxy_upstream_errors_total{provider="codex",kind="connect"} 1"#,
        ],
        "{text}"
    );
    // Failed requests still count as requests, with their status.
    assert!(
        text.contains(
            r#"ccproxy_requests_total{provider="",model="",status="500",method="POST"} 1"#
        ),
        "{text}"
    );
}

#[test]
fn active_streams_go_up_and_down_and_close_with_their_request() {
    let (_host, plugin) = start(json!({}));
    let stream = json!({"provider": "codex", "request_id": "x"});
    for request_id in ["a", "b", "c"] {
        hook(
            &plugin,
            HookEvent::ProviderStreamStart,
            request_id,
            stream.clone(),
        );
    }
    assert_eq!(
        samples(&scrape(&plugin), "ccproxy_active_streams"),
        [r#"ccproxy_active_streams{provider="codex"} 3"#]
    );
    hook(
        &plugin,
        HookEvent::ProviderStreamEnd,
        "a",
        json!({"provider": "codex", "total_chunks": 3, "total_bytes": 10, "usage": null}),
    );
    // A stream that broke has no end event: its request's end closes it,
    // and a request's end after its stream's end changes nothing.
    send_completed(
        &plugin,
        completed("a", 200, 1.0, json!({"provider": "codex"})),
    );
    hook(
        &plugin,
        HookEvent::RequestFailed,
        "b",
        completed("b", 200, 1.0, json!({"provider": "codex", "error": "gone"})).1,
    );
    assert_eq!(
        samples(&scrape(&plugin), "ccproxy_active_streams"),
        [r#"ccproxy_active_streams{provider="codex"} 1"#]
    );
}

#[test]
fn switches_turn_families_off() {
    let (_host, plugin) = start(json!({
        "collect_request_metrics": false, "collect_token_metrics": false,
        "collect_cost_metrics": false, "collect_error_metrics": false, "collect_pool_metrics": false,
    }));
    send_completed(
        &plugin,
        completed(
            "a",
            502,
            1.0,
            json!({"usage": {"input_tokens": 1, "output_tokens": 1}, "cost_usd": 1.0, "error": "x"}),
        ),
    );
    hook(
        &plugin,
        HookEvent::ProviderStreamStart,
        "b",
        json!({"provider": "codex"}),
    );
    assert_eq!(scrape(&plugin), "");
    let health = plugin.health().unwrap();
    assert_eq!(health.details["families"], json!([]));
    assert_eq!(health.details["series"], 0);

    // One switch off leaves the others on.
    let (_host, plugin) = start(json!({"collect_token_metrics": false}));
    send_completed(
        &plugin,
        completed(
            "a",
            200,
            1.0,
            json!({"usage": {"input_tokens": 1, "output_tokens": 1}}),
        ),
    );
    let text = scrape(&plugin);
    assert!(!text.contains("ccproxy_tokens_total"), "{text}");
    assert_eq!(samples(&text, "ccproxy_requests_total").len(), 1, "{text}");
}

#[test]
fn the_namespace_prefixes_every_family() {
    let (_host, plugin) = start(json!({"namespace": "proxy"}));
    send_completed(&plugin, completed("a", 200, 1.0, json!({})));
    let text = scrape(&plugin);
    assert_eq!(samples(&text, "proxy_requests_total").len(), 1, "{text}");
    assert!(!text.contains("ccproxy_"), "{text}");
}

#[test]
fn the_endpoint_answers_404_when_switched_off() {
    let (_host, plugin) = start(json!({"metrics_endpoint_enabled": false}));
    for path in ["/metrics", "/metrics/health"] {
        assert_eq!(plugin.route(request("GET", path)).unwrap().status, 404);
    }
}

#[test]
fn the_original_health_route_shows_the_families() {
    let (_host, plugin) = start(json!({}));
    send_completed(&plugin, completed("a", 200, 1.0, json!({})));
    let response = plugin.route(request("GET", "/metrics/health")).unwrap();
    assert_eq!(response.status, 200);
    let details: Value = ccproxy_plugin_abi::serde_json::from_slice(&response.body).unwrap();
    assert_eq!(details["namespace"], "ccproxy");
    assert_eq!(details["events"], 1);
    // requests_total, 11 buckets + sum + count of the duration histogram.
    assert_eq!(details["series"], 14);
    assert_eq!(details["pushgateway"], Value::Null);
    assert!(
        details["families"]
            .as_array()
            .unwrap()
            .contains(&json!("requests_total"))
    );
}

/// A mock host whose HTTP handler records what reaches it and answers `status`.
fn pushing_host(status: u16, config: Value) -> (MockHost, Arc<Mutex<Vec<HttpRequest>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let host = MockHost::new().config(config).http(move |req| {
        seen.lock().unwrap().push(req);
        Ok(HttpResponse {
            status,
            ..HttpResponse::default()
        })
    });
    (host, received)
}

#[test]
fn the_pushgateway_task_puts_the_exposition() {
    let (host, received) = pushing_host(
        200,
        json!({"pushgateway_enabled": true, "pushgateway_url": "http://127.0.0.1:9091/",
               "pushgateway_job": "proxy one"}),
    );
    let plugin = host.start::<MetricsPlugin>().unwrap();
    send_completed(&plugin, completed("a", 200, 1.0, json!({})));
    plugin.task(PUSH_TASK).unwrap();
    let sent = received.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "PUT");
    assert_eq!(sent[0].url, "http://127.0.0.1:9091/metrics/job/proxy%20one");
    assert_eq!(
        sent[0].headers.get("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = String::from_utf8(sent[0].body.clone()).unwrap();
    assert_eq!(body, scrape(&plugin));
    assert!(body.contains("ccproxy_requests_total{"), "{body}");
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.details["pushgateway"]["pushes"], 1);
    assert_eq!(health.details["pushgateway"]["failures"], 0);
    assert!(
        health.details["pushgateway"]["last_success_at"]
            .as_f64()
            .is_some()
    );
    // And once more at shutdown, as the original.
    plugin.shutdown().unwrap();
    assert_eq!(received.lock().unwrap().len(), 2);
}

#[test]
fn failed_pushes_are_counted_and_degrade_health_until_one_succeeds() {
    let (host, _received) = pushing_host(
        500,
        json!({"pushgateway_enabled": true, "pushgateway_url": "http://user:secret@push.test:9091"}),
    );
    let plugin = host.start::<MetricsPlugin>().unwrap();
    plugin.task(PUSH_TASK).unwrap();
    plugin.task(PUSH_TASK).unwrap();
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    let pushgateway = &health.details["pushgateway"];
    assert_eq!(pushgateway["failures"], 2);
    assert_eq!(
        pushgateway["url"],
        "http://***@push.test:9091/metrics/job/ccproxy"
    );
    let reason = health.details["reason"].as_str().unwrap();
    assert!(reason.contains("answered 500"), "{reason}");
    assert!(!health.details.to_string().contains("secret"));
    // Logged once, not once per failure.
    let warnings = host
        .logs()
        .iter()
        .filter(|(_, line)| line.contains("metrics push failed"))
        .count();
    assert_eq!(warnings, 1);

    // A transport failure is a failure too.
    let host = MockHost::new()
        .config(json!({"pushgateway_enabled": true, "pushgateway_url": "http://push.test"}))
        .http(|_| Err(PluginError::upstream("connection refused")));
    let plugin = host.start::<MetricsPlugin>().unwrap();
    plugin.task(PUSH_TASK).unwrap();
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.details["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
}

#[test]
fn enabled_without_a_url_degrades_health() {
    let (host, plugin) = start(json!({"pushgateway_enabled": true}));
    assert!(host.logged("without a pushgateway_url"));
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(
        health.details["reason"],
        "pushgateway_enabled is set without a pushgateway_url: nothing is pushed"
    );
}

#[test]
fn nothing_is_pushed_unless_enabled_with_a_url() {
    for config in [
        json!({}),
        json!({"pushgateway_url": "http://push.test"}),
        json!({"pushgateway_enabled": true}),
    ] {
        let (host, received) = pushing_host(200, config.clone());
        let plugin = host.start::<MetricsPlugin>().unwrap();
        plugin.task(PUSH_TASK).unwrap();
        plugin.shutdown().unwrap();
        assert!(received.lock().unwrap().is_empty(), "{config}");
    }
}

#[test]
fn manifest_and_defaults_match_the_original() {
    let (_host, plugin) = start(json!({}));
    let manifest = plugin.manifest();
    assert_eq!(manifest.name, "metrics");
    assert_eq!(manifest.hooks[0].name, "metrics");
    assert_eq!(manifest.hooks[0].priority, 700);
    assert_eq!(
        manifest.hooks[0].events,
        [
            "request.completed",
            "request.failed",
            "provider.error",
            "provider.stream.start",
            "provider.stream.end"
        ]
    );
    let paths: Vec<String> = manifest.routes[0]
        .routes
        .iter()
        .map(|route| manifest.routes[0].full_path(route))
        .collect();
    assert_eq!(paths, ["/metrics", "/metrics/health"]);
    assert_eq!(manifest.tasks[0].name, "metrics_pushgateway");
    assert_eq!(
        manifest.tasks[0].interval_key.as_deref(),
        Some("pushgateway_push_interval")
    );
    assert_eq!(
        manifest.config.defaults,
        json!({
            "namespace": "ccproxy", "metrics_endpoint_enabled": true,
            "pushgateway_enabled": false, "pushgateway_url": null, "pushgateway_job": "ccproxy",
            "pushgateway_push_interval": 60.0,
            "collect_request_metrics": true, "collect_token_metrics": true,
            "collect_cost_metrics": true, "collect_error_metrics": true, "collect_pool_metrics": true,
            "histogram_buckets": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0],
        })
    );
}

#[test]
fn bad_config_is_refused() {
    for config in [
        json!({"namespace": "9lives"}),
        json!({"namespace": "cc-proxy"}),
        json!({"histogram_buckets": []}),
        json!({"histogram_buckets": [1.0, 0.5]}),
        json!({"pushgateway_push_interval": 0}),
        json!({"pushgateway_enabled": true, "pushgateway_url": "push.test:9091"}),
        json!({"pushgateway_interval": 5}),
    ] {
        let error = MockHost::new()
            .config(config.clone())
            .start::<MetricsPlugin>()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
    }
}

#[test]
fn plugin_hook_times_come_from_the_plugins_status_document() {
    let status = json!({
        "plugins": [
            {"name": "access_log", "status": "active", "hook_calls": 3, "hook_time_ms": 500.0, "hook_mean_us": 1.0},
            {"name": "metrics", "status": "active", "hook_calls": 0, "hook_time_ms": 0.0},
            // A plugin that is not running has no counters.
            {"name": "codex", "status": "disabled"},
        ],
        "hooks": {"queued": 0, "dropped": 0, "failed": 0},
    });
    let times = hook_times_from_status(&status);
    assert_eq!(
        times,
        [
            PluginHookTime {
                plugin: "access_log".into(),
                hook_calls: 3,
                hook_seconds: 0.5
            },
            PluginHookTime {
                plugin: "metrics".into(),
                hook_calls: 0,
                hook_seconds: 0.0
            },
        ]
    );
    assert!(hook_times_from_status(&json!({})).is_empty());
    // Seconds, when the host writes them, win over milliseconds.
    assert_eq!(
        hook_times_from_status(&json!({"plugins": [
            {"name": "a", "hook_calls": 1, "hook_seconds": 2.5, "hook_time_ms": 1.0},
        ]}))[0]
            .hook_seconds,
        2.5
    );

    let metrics = Metrics::new(&Config::default().settings());
    metrics.set_plugin_hook_times(times);
    let text = metrics.encode();
    assert_eq!(
        samples(&text, "ccproxy_plugin_hook_seconds_total"),
        [
            r#"ccproxy_plugin_hook_seconds_total{plugin="access_log"} 0.5"#,
            r#"ccproxy_plugin_hook_seconds_total{plugin="metrics"} 0.0"#,
        ],
        "{text}"
    );
    assert_eq!(
        samples(&text, "ccproxy_plugin_hook_calls_total"),
        [
            r#"ccproxy_plugin_hook_calls_total{plugin="access_log"} 3"#,
            r#"ccproxy_plugin_hook_calls_total{plugin="metrics"} 0"#,
        ],
        "{text}"
    );
    assert!(
        text.contains("# TYPE ccproxy_plugin_hook_seconds_total counter\n"),
        "{text}"
    );
}

#[test]
fn without_the_hosts_plugin_status_the_hook_families_are_absent() {
    // A host before plugin API 1.2, and one that offers the capability but
    // fails the call: the scrape still answers, without the two families.
    for host in [
        MockHost::new(),
        MockHost::new().capabilities([capability::HTTP, capability::PLUGINS_STATUS]),
    ] {
        let plugin = host.start::<MetricsPlugin>().unwrap();
        send_completed(&plugin, completed("a", 200, 1.0, json!({})));
        let text = scrape(&plugin);
        assert!(!text.contains("plugin_hook"), "{text}");
        assert_eq!(samples(&text, "ccproxy_requests_total").len(), 1, "{text}");
    }
}

#[test]
fn the_metrics_routes_need_no_client_token() {
    let (_host, plugin) = start(json!({}));
    let group = &plugin.manifest().routes[0];
    assert!(group.routes.iter().all(|route| route.public), "{group:?}");
}
