//! The example plugins, loaded by the real host: `hello_system` (route group,
//! hook, service, task, typed config) and `provider_shaped` (depends on it,
//! calls its service and the host's HTTP client). Also what the config layers
//! do to them: TOML, environment over TOML, unknown keys.

use std::{net::TcpListener, time::Duration};

use ccproxy_e2e::{MockUpstream, Proxy, ProxyOptions, Sandbox, poll};
use serde_json::{Value, json};

const EXAMPLES: &[&str] = &["example_hello_system", "example_provider_shaped"];

fn stats(proxy: &Proxy) -> Value {
    let reply = proxy.get("/hello/stats");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
    listener.local_addr().expect("a bound address").port()
}

#[test]
fn hello_system_and_provider_shaped_work_together() {
    let upstream = MockUpstream::start(4, 200, "text/plain", "upstream ok");
    let config = format!(
        "[plugins.hello_system]\ngreeting = \"Howdy\"\ntick_seconds = 0.2\n\n[plugins.provider_shaped]\nupstream_url = \"{}/probe\"\n",
        upstream.url()
    );
    let proxy = Proxy::start(ProxyOptions {
        plugins: EXAMPLES,
        config_toml: Some(&config),
        // The environment wins over the file, key by key.
        env: &[("PLUGINS__HELLO_SYSTEM__GREETING", "Hi")],
        args: &["--log-level", "info,plugin=debug"],
        ..ProxyOptions::default()
    });
    assert_eq!(
        proxy.get("/plugins/status").json()["initialization_order"],
        json!(["hello_system", "provider_shaped"]),
        "the dependency starts first"
    );

    // The route, with the greeting from the environment, not the file.
    let greet = proxy.get("/hello/greet?name=Ada");
    assert_eq!(greet.status, 200, "{}", greet.text());
    assert_eq!(greet.json(), json!({"message": "Hi, Ada!"}));
    let effective = proxy.plugin_entry("hello_system");
    assert_eq!(effective["status"], "active", "{effective:#}");

    // The service, through provider_shaped's route, and the host's HTTP client
    // to the mock upstream.
    let echo = proxy.post_json("/provider_shaped/v1/echo", &json!({"name": "Bo"}));
    assert_eq!(echo.status, 200, "{}", echo.text());
    let echo = echo.json();
    assert_eq!(echo["greeting"], "Hi, Bo!", "{echo:#}");
    assert_eq!(echo["upstream"]["status"], 200, "{echo:#}");
    assert_eq!(
        echo["upstream"]["body_bytes"],
        "upstream ok".len(),
        "{echo:#}"
    );
    let received = upstream.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(
        (received[0].method.as_str(), received[0].target.as_str()),
        ("GET", "/probe")
    );
    assert_eq!(stats(&proxy)["service_calls"], 1);

    // The hook counts completed requests, off the request path: poll.
    let seen = poll(Duration::from_secs(5), || {
        let seen = stats(&proxy)["requests_seen"].as_u64().unwrap_or(0);
        (seen >= 4).then_some(seen)
    });
    assert!(
        seen.is_some(),
        "the hook did not count requests: {}; log:\n{}",
        stats(&proxy),
        proxy.log()
    );
    proxy.wait_for_log("hello_system saw request", Duration::from_secs(2));

    // The task runs on its own at the configured interval, and logs at debug.
    // tick_seconds = 0.2 comes from the config through the task's interval_key.
    let window = Duration::from_secs(2);
    let runs = poll(window, || {
        let runs = stats(&proxy)["task_runs"].as_u64().unwrap_or(0);
        (runs >= 2).then_some(runs)
    });
    assert!(
        runs.is_some(),
        "hello_tick did not run twice within {window:?}: {}; log:\n{}",
        stats(&proxy),
        proxy.log()
    );
    proxy.wait_for_log("hello_tick run 2", Duration::from_secs(1));
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|line| line.contains("DEBUG") && line.contains("hello_tick run 1")),
        "no debug line for the task; log:\n{log}"
    );
}

#[test]
fn toml_config_applies_and_an_unreachable_upstream_is_a_502() {
    let config = format!(
        "[plugins.hello_system]\ngreeting = \"Howdy\"\n\n[plugins.provider_shaped]\nupstream_url = \"http://127.0.0.1:{}/gone\"\n",
        closed_port()
    );
    let proxy = Proxy::start(ProxyOptions {
        plugins: EXAMPLES,
        config_toml: Some(&config),
        ..ProxyOptions::default()
    });
    assert_eq!(
        proxy.get("/hello/greet?name=Ada").json(),
        json!({"message": "Howdy, Ada!"})
    );

    let echo = proxy.post_json("/provider_shaped/v1/echo", &json!({"name": "Bo"}));
    assert_eq!(echo.status, 502, "{}", echo.text());
    let message = echo.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("/gone"),
        "the message names the upstream: {message}"
    );
    assert!(message.contains("upstream"), "{message}");
    // One failed upstream is one failed request: the server goes on.
    assert_eq!(proxy.get("/hello/greet").status, 200);
}

#[test]
fn an_unknown_plugin_key_disables_the_plugin_and_names_the_key() {
    let sandbox = Sandbox::new();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            plugins: EXAMPLES,
            config_toml: Some("[plugins.hello_system]\ngreting = \"typo\"\n"),
            ..ProxyOptions::default()
        },
    );
    let hello = proxy.plugin_entry("hello_system");
    assert_eq!(hello["status"], "disabled", "{hello:#}");
    let reason = hello["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("greting"),
        "the reason names the key: {reason}"
    );
    // Its dependent cannot run without it.
    let provider = proxy.plugin_entry("provider_shaped");
    assert_eq!(provider["status"], "disabled", "{provider:#}");
    assert!(
        provider["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("hello_system"),
        "{provider:#}"
    );
    assert_eq!(proxy.get("/hello/greet").status, 404);
    assert_eq!(
        proxy.get("/health").status,
        200,
        "the server runs without them"
    );

    let listed = proxy.sandbox().run_cli(&["plugins", "list", "--json"], &[]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|e| panic!("{e}: {listed:?}"));
    let hello = listed["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "hello_system"))
        .cloned()
        .unwrap_or_else(|| panic!("hello_system not listed: {listed:#}"));
    assert_eq!(hello["status"], "disabled", "{hello:#}");
    assert!(
        hello["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("greting"),
        "{hello:#}"
    );
}

#[test]
fn an_unknown_core_key_stops_serve_with_exit_code_2() {
    let sandbox = Sandbox::new();
    sandbox.write_config("[server]\nprot = 1\n");
    let serve = sandbox.run_cli(&["serve", "--port", "0"], &[]);
    assert_eq!(serve.code, 2, "{serve:?}");
    assert!(
        serve.stderr.contains("server.prot"),
        "stderr names the key: {serve:?}"
    );
    assert!(!serve.stderr.contains("listening on"), "{serve:?}");
}
