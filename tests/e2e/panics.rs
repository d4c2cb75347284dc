//! A plugin can never take the host down by panicking (DESIGN decision 3): a
//! panicking route fails that one request with a 500 naming the plugin and the
//! panic, the server keeps serving, hook panics are counted, and the plugin is
//! reported unhealthy.

use std::time::Duration;

use ccproxy_e2e::{Proxy, ProxyOptions, poll};
use serde_json::Value;

fn panicky_status(proxy: &Proxy) -> (Value, Value) {
    let status = proxy.get("/plugins/status").json();
    let plugin = status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "panicky"))
        .cloned()
        .unwrap_or_else(|| panic!("panicky is not in /plugins/status: {status:#}"));
    (status["hooks"].clone(), plugin)
}

#[test]
fn a_panicking_plugin_fails_one_request_and_the_server_keeps_serving() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &["test_plugin_panicky"],
        ..ProxyOptions::default()
    });

    // The panicking route: a 500 with a JSON body naming the plugin and the panic.
    let boom = proxy.get("/panicky/boom");
    assert_eq!(boom.status, 500, "{}", boom.text());
    assert!(
        boom.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        boom.headers
    );
    let error = &boom.json()["error"];
    assert_eq!(error["type"], "plugin_panicked", "{error:#}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("plugin panicky"), "{message}");
    assert!(
        message.contains("boom at /panicky/boom"),
        "the panic message is passed on: {message}"
    );

    // The same plugin's other route, and the host, still answer; many times over.
    for _ in 0..10 {
        assert_eq!(proxy.get("/panicky/boom").status, 500);
    }
    let ok = proxy.get("/panicky/ok");
    assert_eq!((ok.status, ok.text().as_str()), (200, "still fine"));
    assert_eq!(proxy.get("/health").status, 200);

    // The hook panics on every request.completed: counted as failed hook calls
    // and as panics of the plugin (off the request path, so poll).
    let counted = poll(Duration::from_secs(5), || {
        let (hooks, plugin) = panicky_status(&proxy);
        let failed = hooks["failed"].as_u64().unwrap_or(0);
        let panics = plugin["panics"].as_u64().unwrap_or(0);
        // 11 route panics, and at least one hook panic per completed request.
        (failed >= 12 && panics >= 11 + failed).then_some((failed, panics))
    });
    assert!(
        counted.is_some(),
        "hook panics not counted: {:#?}; log:\n{}",
        panicky_status(&proxy),
        proxy.log()
    );

    // The plugin's health: 503 unhealthy, with the last panic.
    let health = proxy.get("/plugins/panicky/health");
    assert_eq!(health.status, 503, "{}", health.text());
    let health = health.json();
    assert_eq!(health["status"], "unhealthy", "{health:#}");
    let last_panic = health["details"]["last_panic"].as_str().unwrap_or_default();
    assert!(last_panic.contains("panicked"), "no last_panic: {health:#}");
    assert!(
        health["details"]["panics"].as_u64().unwrap_or(0) >= 11,
        "{health:#}"
    );

    // The host's health: up, but warning about the plugin.
    let host_health = proxy.get("/health");
    assert_eq!(host_health.status, 200);
    let host_health = host_health.json();
    assert_eq!(host_health["status"], "warn", "{host_health:#}");
    let output = host_health["checks"]["plugins:active"][0]["output"]
        .as_str()
        .unwrap_or_default();
    assert!(
        output.contains("recent panics in: panicky"),
        "{host_health:#}"
    );

    // The panic reached the host's log through the SDK, with its location.
    proxy.wait_for_log("boom at /panicky/boom", Duration::from_secs(2));
    let log = proxy.log();
    assert!(
        log.lines().any(|line| line.contains("panic at")
            && line.contains("panicky")
            && line.contains("boom at")),
        "no log line with the panic's location; log:\n{log}"
    );
    assert!(
        log.contains("hook panicked on request.completed"),
        "log:\n{log}"
    );

    // And it still stops cleanly.
    let (exit, log) = proxy.stop_with(libc::SIGINT);
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
}
