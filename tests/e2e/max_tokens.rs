//! The bundled `max_tokens` plugin through the real host: its inline hook on
//! `provider.request.prepared` changes the body claude_api prepared before
//! it reaches the upstream (the mock): a limit above the model's is
//! clamped, one within it arrives as the client sent it, and in enforce mode
//! a request without one (claude_api's default 4096 filled in) arrives with
//! the model's limit. Limits come from the bundled token_limits.json, or
//! from the pricing plugin's table when it is loaded.

use ccproxy_e2e::{Proxy, ProxyOptions, mock::Mock};
use serde_json::{Value, json};

/// In the bundled token_limits.json: 64 000 output tokens.
const MODEL: &str = "claude-sonnet-4-5-20250929";

fn proxy(mock: &Mock, extra_env: &[(&str, &str)]) -> Proxy {
    proxy_with(mock, &["max_tokens", "claude_api"], extra_env)
}

fn proxy_with(mock: &Mock, bundled: &[&str], extra_env: &[(&str, &str)]) -> Proxy {
    let base_url = mock.url();
    let mut env = vec![
        ("ANTHROPIC_API_KEY", "test-key"),
        ("PLUGINS__CLAUDE_API__BASE_URL", base_url.as_str()),
    ];
    env.extend_from_slice(extra_env);
    Proxy::start(ProxyOptions {
        bundled,
        env: &env,
        ..ProxyOptions::default()
    })
}

/// Sends an Anthropic request with `max_tokens` (left out when `None`) and
/// returns the body the upstream received.
fn upstream_body(proxy: &Proxy, mock: &Mock, max_tokens: Option<Value>) -> Value {
    upstream_body_for(proxy, mock, MODEL, max_tokens)
}

fn upstream_body_for(proxy: &Proxy, mock: &Mock, model: &str, max_tokens: Option<Value>) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]});
    if let Some(max_tokens) = max_tokens {
        body["max_tokens"] = max_tokens;
    }
    mock.reset();
    let reply = proxy.post_json("/claude/v1/messages", &body);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let received = mock.requests_to("/v1/messages");
    assert_eq!(received.len(), 1, "{received:?}");
    received[0]["body"].clone()
}

#[test]
fn a_limit_above_the_models_is_clamped_and_one_within_it_is_kept() {
    let mock = Mock::start(&[]);
    let proxy = proxy(&mock, &[]);
    let clamped = upstream_body(&proxy, &mock, Some(json!(100_000)));
    assert_eq!(clamped["max_tokens"], 64_000, "{clamped}");
    assert_eq!(clamped["messages"][0]["content"], "Hello");
    proxy.wait_for_log(
        &format!("max_tokens: {MODEL}: max_tokens 100000 -> 64000"),
        std::time::Duration::from_secs(5),
    );

    let kept = upstream_body(&proxy, &mock, Some(json!(1000)));
    assert_eq!(kept["max_tokens"], 1000, "{kept}");
    let invalid = upstream_body(&proxy, &mock, Some(json!(0)));
    assert_eq!(invalid["max_tokens"], 64_000, "{invalid}");
}

#[test]
fn enforce_mode_gives_a_request_without_a_limit_the_models() {
    let mock = Mock::start(&[]);
    let proxy = proxy(&mock, &[("PLUGINS__MAX_TOKENS__ENFORCE_MODE", "true")]);
    let body = upstream_body(&proxy, &mock, None);
    assert_eq!(body["max_tokens"], 64_000, "{body}");
    let lowered = upstream_body(&proxy, &mock, Some(json!(10)));
    assert_eq!(lowered["max_tokens"], 64_000, "{lowered}");
}

#[test]
fn with_the_pricing_plugin_newer_models_get_their_limit_from_its_table() {
    // Not in token_limits.json; 64 000 in the pricing plugin's table.
    const HAIKU: &str = "claude-haiku-4-5-20251001";
    let mock = Mock::start(&[]);
    let alone = proxy(&mock, &[]);
    let unknown = upstream_body_for(&alone, &mock, HAIKU, Some(json!(100_000)));
    assert_eq!(
        unknown["max_tokens"], 100_000,
        "an unknown model is not clamped"
    );
    drop(alone);

    let with_pricing = proxy_with(&mock, &["pricing", "max_tokens", "claude_api"], &[]);
    let clamped = upstream_body_for(&with_pricing, &mock, HAIKU, Some(json!(100_000)));
    assert_eq!(clamped["max_tokens"], 64_000, "{clamped}");
}
