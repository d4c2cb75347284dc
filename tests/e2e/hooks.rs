//! Observing hooks (DESIGN decision 6): they run off the request path, so a slow
//! observer adds no latency; their time is measured per plugin; and an event of
//! a request that was answered is delivered before the plugin is shut down.

use std::time::{Duration, Instant};

use ccproxy_e2e::{Proxy, ProxyOptions, poll};

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
