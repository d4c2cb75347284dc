//! The bundled `pricing` plugin through the real host: its health says where
//! the price table came from (the bundled snapshot, a `source_file` merged
//! over it, or the bundled one kept when the file is bad), and with the
//! access log loaded each answer's structured line carries its `cost_usd`
//! (the pricing hook runs before the access log and, from plugin API 1.2,
//! its changed data reaches the hooks after it).

use std::fs;

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock};
use serde_json::{Value, json};

const MODEL: &str = "claude-sonnet-4-20250514";

fn health(proxy: &Proxy) -> Value {
    let reply = proxy.get("/plugins/pricing/health");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[test]
fn the_bundled_table_works_offline() {
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["pricing"],
        ..ProxyOptions::default()
    });
    let health = health(&proxy);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["details"]["source"], "bundled", "{health}");
    assert!(
        health["details"]["models"]
            .as_u64()
            .is_some_and(|n| n >= 40),
        "{health}"
    );
    assert_eq!(health["details"]["source_url"], Value::Null, "{health}");
}

#[test]
fn a_source_file_is_merged_and_a_bad_one_degrades_health() {
    // Outside the sandboxes, which go with their proxies.
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let file = scratch.path().join("prices.json");
    fs::write(
        &file,
        json!({"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                            "litellm_provider": "openai"}})
        .to_string(),
    )
    .unwrap();
    let file_text = file.display().to_string();
    let start = || {
        Proxy::start_in(
            Sandbox::new(),
            ProxyOptions {
                bundled: &["pricing"],
                env: &[("PLUGINS__PRICING__SOURCE_FILE", &file_text)],
                ..ProxyOptions::default()
            },
        )
    };
    let proxy = start();
    let merged = health(&proxy);
    assert_eq!(merged["status"], "healthy", "{merged}");
    assert_eq!(merged["details"]["source"], "file", "{merged}");
    assert_eq!(
        merged["details"]["models"].as_u64(),
        merged["details"]["bundled_models"].as_u64().map(|n| n + 1),
        "{merged}"
    );
    drop(proxy);

    fs::write(&file, "{ this is not json").unwrap();
    let proxy = start();
    let degraded = health(&proxy);
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    assert_eq!(degraded["details"]["source"], "bundled", "{degraded}");
    assert!(
        degraded["details"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("not a LiteLLM price table")),
        "{degraded}"
    );
}

/// Passes once the host hands an observing hook's `Modify` answer to the
/// later hooks of the same event (plugin API 1.2, issue 10); before that the
/// access log never sees `cost_usd`.
#[test]
fn each_answer_is_logged_with_its_cost() {
    let mock = Mock::start(&[]);
    let logs = tempfile::tempdir().expect("a scratch folder");
    let client_log = logs.path().join("access.log");
    let client_log_text = client_log.display().to_string();
    let base_url = mock.url();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["pricing", "access_log", "claude_api"],
        env: &[
            ("ANTHROPIC_API_KEY", "test-key"),
            ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
            ("PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE", &client_log_text),
        ],
        ..ProxyOptions::default()
    });
    let body = json!({"model": MODEL, "max_tokens": 100,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let reply = proxy.post_json("/claude/v1/messages", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");

    let text = fs::read_to_string(&client_log)
        .unwrap_or_else(|error| panic!("{}: {error}; log:\n{log}", client_log.display()));
    let line: Value = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["path"] == "/claude/v1/messages")
        .unwrap_or_else(|| panic!("no line for the request:\n{text}"));
    let tokens = |key: &str| line[key].as_f64().unwrap_or(0.0);
    // claude-sonnet-4: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
    let expected = tokens("tokens_input") * 3e-6
        + tokens("tokens_output") * 15e-6
        + tokens("cache_read_tokens") * 0.3e-6
        + tokens("cache_write_tokens") * 3.75e-6;
    assert!(expected > 0.0, "{line}");
    let cost = line["cost_usd"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cost_usd in the access log line: {line}"));
    assert!(
        (cost - expected).abs() < 1e-12,
        "{cost} != {expected}: {line}"
    );
}
