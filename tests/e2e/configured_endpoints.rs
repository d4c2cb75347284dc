//! Provider endpoints from a plugin's config (plugin API 1.3), end to end: the
//! real binary with the test plugin `configured_provider`, configured with two
//! upstreams on the mock that speak different formats. Each upstream gets its
//! own endpoints, converted to its own format by the host, and its own
//! `/models` route; `/plugins/status` lists what the config added.

use ccproxy_e2e::{Proxy, ProxyOptions, mock::Mock};
use serde_json::json;

const PLUGIN: &[&str] = &["test_plugin_configured_provider"];

fn proxy(mock: &Mock) -> Proxy {
    let config = format!(
        r#"
[[plugins.configured_provider.upstreams]]
name = "alpha"
base_url = "{url}"
format = "anthropic.messages"

[[plugins.configured_provider.upstreams]]
name = "beta"
base_url = "{url}"
format = "openai.chat_completions"
"#,
        url = mock.url()
    );
    Proxy::start(ProxyOptions {
        plugins: PLUGIN,
        config_toml: Some(&config),
        ..ProxyOptions::default()
    })
}

#[test]
fn each_configured_upstream_is_served_in_its_own_format() {
    let mock = Mock::start(&[]);
    let proxy = proxy(&mock);

    // A Chat Completions client on the Anthropic upstream.
    let chat = proxy.post_json(
        "/alpha/v1/chat/completions",
        &json!({"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Say hello"}]}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let answer = chat.json();
    assert_eq!(answer["object"], "chat.completion", "{answer:#}");
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{answer:#}"
    );
    let sent = mock.requests_to("/v1/messages");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["headers"]["x-configured-upstream"], "alpha");
    assert_eq!(sent[0]["body"]["messages"][0]["role"], "user");

    // An Anthropic client on the Chat Completions upstream.
    let messages = proxy.post_json(
        "/beta/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(messages.status, 200, "{}", messages.text());
    let answer = messages.json();
    assert_eq!(answer["type"], "message", "{answer:#}");
    assert_eq!(answer["content"][0]["type"], "text", "{answer:#}");
    let sent = mock.requests_to("/v1/chat/completions");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["headers"]["x-configured-upstream"], "beta");
    assert_eq!(sent[0]["body"]["messages"][0]["content"], "Hello");

    // The routes the config added.
    let models = proxy.get("/beta/v1/models");
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["upstream"], "beta");
    assert_eq!(proxy.get("/gamma/v1/models").status, 404);

    let entry = proxy.plugin_entry("configured_provider");
    let endpoints = entry["provider_endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 4, "{entry:#}");
    assert!(endpoints.contains(&json!({"path": "/beta/v1/messages", "format": "anthropic.messages", "native_format": "openai.chat_completions"})), "{entry:#}");
    assert!(
        entry["routes"]
            .as_array()
            .is_some_and(|routes| routes.contains(&json!("GET /alpha/v1/models"))),
        "{entry:#}"
    );
}

/// The host's index of a client's body reaches the provider with the body
/// (`ProviderRequest::body_top_level`, plugin API 1.3) when the body goes
/// as the client wrote it, and not when the host converted it or could
/// not index it (a key written with an escape).
#[test]
fn the_provider_gets_the_hosts_index_of_an_unconverted_body() {
    let mock = Mock::start(&[]);
    let proxy = proxy(&mock);
    let sent_header = |path: &str| {
        let sent = mock.requests_to(path);
        sent.last().unwrap()["headers"]["x-body-top-level"].clone()
    };
    // A body as the client wrote it, on the Anthropic endpoint: the keys the
    // provider was handed.
    let handed = |body: &[u8]| {
        let reply = proxy.request(
            "POST",
            "/alpha/v1/messages",
            &[("content-type", "application/json")],
            body,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        sent_header("/v1/messages")
    };
    let spaced = br#" { "model" : "claude-sonnet-4-20250514" ,
        "max_tokens":64, "messages": [{"role": "user", "content": "a \"quoted\" hi"}] } "#;
    assert_eq!(handed(spaced), "model,max_tokens,messages");
    let escaped = br#"{"mod\u0065l": "claude-sonnet-4-20250514", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}"#;
    assert_eq!(handed(escaped), "none");

    let chat = proxy.post_json(
        "/alpha/v1/chat/completions",
        &json!({"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Say hello"}]}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    assert_eq!(sent_header("/v1/messages"), "none");
}
