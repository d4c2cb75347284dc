//! The plugin through the SDK's mock host: config checks, prepared
//! requests per upstream format, credentials, model lists, health.

use ccproxy_plugin_abi::testing::{Level, MockHost, TestPlugin, json_request, request};

use super::*;

/// A variable nobody sets, so the developer's shell cannot change a test.
const NO_SUCH_ENV: &str = "CCPROXY_COMPAT_TEST_NO_SUCH_VARIABLE";

fn two_upstreams() -> Value {
    json!({"upstreams": {
        "router": {
            "base_url": "http://127.0.0.1:9/api/v1/",
            "format": "openai.chat_completions",
            "api_key_env": "PATH",
            "headers": {"HTTP-Referer": "https://example.org"},
            "rename": {"claude-sonnet-4-5": "anthropic/claude-sonnet-4.5"},
            "max_tokens": {"anthropic/claude-sonnet-4.5": 1000},
            "timeout_seconds": 42,
        },
        "anthro": {
            "base_url": "http://127.0.0.1:9",
            "format": "anthropic.messages",
            "models": ["glm-4.6"],
            "default_model": "glm-4.6",
        },
    }})
}

/// A started plugin and its config. The mock host's `prepare_upstream`
/// knows only manifest endpoints, not configured ones, so
/// [`Started::prepare_upstream`] asks the upstream `init` would build from
/// the same config (the real host's path is in tests/e2e/compat.rs).
struct Started {
    plugin: TestPlugin,
    config: Value,
}

impl std::ops::Deref for Started {
    type Target = TestPlugin;

    fn deref(&self) -> &TestPlugin {
        &self.plugin
    }
}

impl Started {
    fn prepare_upstream(&self, req: ProviderRequest) -> Result<UpstreamRequest, PluginError> {
        let config: Config = serde_json::from_value(self.config.clone()).unwrap();
        let name = req
            .endpoint
            .split('/')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let upstream = config
            .upstreams
            .into_iter()
            .find(|(upstream, _)| *upstream == name)
            .map(|(name, config)| Upstream::new(&name, config).unwrap())
            .ok_or_else(|| PluginError::not_found(format!("no upstream {name}")))?;
        // The plugin serves the endpoint (what the host mounts).
        assert!(
            self.plugin
                .configured_endpoints()
                .provider_endpoints
                .iter()
                .any(|endpoint| endpoint.path == req.endpoint
                    && endpoint.native_format.as_deref() == Some(upstream.format.as_str())),
            "{} is not served",
            req.endpoint
        );
        upstream.prepare(req)
    }
}

fn start(config: Value) -> Started {
    started(MockHost::new().config(config.clone()), config)
}

fn started(host: MockHost, config: Value) -> Started {
    Started {
        plugin: host.start::<Compat>().expect("plugin starts"),
        config,
    }
}

fn provider_request(endpoint: &str, body: &Value, headers: &[(&str, &str)]) -> ProviderRequest {
    ProviderRequest {
        endpoint: endpoint.into(),
        client_format: "openai.chat_completions".into(),
        native_format: String::new(),
        stream: body["stream"].as_bool().unwrap_or(false),
        model: body["model"].as_str().map(str::to_owned),
        headers: Headers(
            headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        ),
        query: String::new(),
        body: body.to_string().into_bytes(),
        request_id: "req-1".into(),
        attempt: None,
        body_members: Vec::new(),
    }
}

fn sent(upstream: &UpstreamRequest) -> Value {
    serde_json::from_slice(&upstream.body).expect("upstream body is JSON")
}

#[test]
fn each_upstream_gets_its_url_credential_headers_and_rules() {
    let plugin = start(two_upstreams());
    let path = std::env::var("PATH").expect("PATH is set in tests");
    let body = json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5000, "stream": true});
    let prepared = plugin
        .prepare_upstream(provider_request(
            "/router/v1/chat/completions",
            &body,
            &[("authorization", "Bearer client-secret")],
        ))
        .unwrap();
    assert_eq!(prepared.url, "http://127.0.0.1:9/api/v1/chat/completions");
    assert_eq!(
        prepared.headers.get("authorization"),
        Some(format!("Bearer {path}").as_str())
    );
    assert_eq!(
        prepared.headers.get("http-referer"),
        Some("https://example.org")
    );
    assert_eq!(prepared.timeout, Some(Duration::from_secs(42)));
    assert!(prepared.stream);
    assert_eq!(prepared.model_alias.as_deref(), Some("claude-sonnet-4-5"));
    let body = sent(&prepared);
    assert_eq!(body["model"], "anthropic/claude-sonnet-4.5");
    assert_eq!(body["max_completion_tokens"], 1000);
    assert_eq!(body["stream_options"]["include_usage"], true);

    let body =
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let prepared = plugin
        .prepare_upstream(provider_request(
            "/anthro/v1/messages",
            &body,
            &[
                ("x-api-key", "client-secret"),
                ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ],
        ))
        .unwrap();
    assert_eq!(prepared.url, "http://127.0.0.1:9/v1/messages");
    // No credential configured: none sent, and the client's never.
    assert_eq!(prepared.headers.get("x-api-key"), None);
    assert_eq!(prepared.headers.get("authorization"), None);
    assert_eq!(
        prepared.headers.get("anthropic-version"),
        Some("2023-06-01")
    );
    assert_eq!(
        prepared.headers.get("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    assert_eq!(prepared.timeout, None);
    let body = sent(&prepared);
    assert_eq!(body["model"], "glm-4.6");
    assert_eq!(body["max_tokens"], 8192);
    assert_eq!(prepared.model_alias.as_deref(), Some("claude-haiku-4-5"));
}

#[test]
fn anthropic_style_upstreams_get_x_api_key_unless_told_otherwise() {
    let mut config = two_upstreams();
    config["upstreams"]["anthro"]["api_key_env"] = json!("PATH");
    let plugin = start(config.clone());
    let body = json!({"model": "glm-4.6", "messages": []});
    let prepared = plugin
        .prepare_upstream(provider_request("/anthro/v1/messages", &body, &[]))
        .unwrap();
    let path = std::env::var("PATH").unwrap();
    assert_eq!(prepared.headers.get("x-api-key"), Some(path.as_str()));
    assert_eq!(prepared.headers.get("authorization"), None);
    config["upstreams"]["anthro"]["auth"] = json!("bearer");
    let prepared = start(config)
        .prepare_upstream(provider_request("/anthro/v1/messages", &body, &[]))
        .unwrap();
    assert_eq!(prepared.headers.get("x-api-key"), None);
    assert_eq!(
        prepared.headers.get("authorization"),
        Some(format!("Bearer {path}").as_str())
    );
}

#[test]
fn a_missing_credential_variable_is_named_and_leaves_the_other_upstreams_serving() {
    let mut config = two_upstreams();
    config["upstreams"]["router"]["api_key_env"] = json!(NO_SUCH_ENV);
    let host = MockHost::new().config(config.clone());
    let plugin = started(host.clone(), config);
    assert!(
        host.logs().iter().any(|(level, line)| *level == Level::Warn
            && line.contains(NO_SUCH_ENV)
            && line.contains("upstream router")),
        "{:?}",
        host.logs()
    );
    let body = json!({"model": "m", "messages": []});
    let error = plugin
        .prepare_upstream(provider_request("/router/v1/chat/completions", &body, &[]))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(error.message().contains(NO_SUCH_ENV), "{}", error.message());
    assert!(
        error.message().contains("upstream router"),
        "{}",
        error.message()
    );
    plugin
        .prepare_upstream(provider_request("/anthro/v1/messages", &body, &[]))
        .expect("the other upstream serves");
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    let details = &health.details["upstreams"];
    assert_eq!(details["router"]["ready"], false);
    assert!(
        details["router"]["problem"]
            .as_str()
            .unwrap()
            .contains(NO_SUCH_ENV)
    );
    assert_eq!(details["anthro"]["ready"], true);
}

#[test]
fn a_key_file_is_used_and_only_masked_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("router.key");
    let key = "sk-or-v1-0123456789abcdefghijklmnop";
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let mut config = two_upstreams();
    let router = config["upstreams"]["router"].as_object_mut().unwrap();
    router.remove("api_key_env");
    router.insert("api_key_file".into(), json!(file.display().to_string()));
    let plugin = start(config);
    let body = json!({"model": "m", "messages": []});
    let prepared = plugin
        .prepare_upstream(provider_request("/router/v1/chat/completions", &body, &[]))
        .unwrap();
    assert_eq!(
        prepared.headers.get("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    let text = health.details.to_string();
    assert!(!text.contains(key), "{text}");
    assert_eq!(
        health.details["upstreams"]["router"]["key"],
        "sk-or-***mnop"
    );
}

#[test]
fn bad_configs_fail_with_the_key_named() {
    let cases = [
        (
            json!({"up": {"base_url": "http://x"}}),
            "plugins.compat.upstreams.up.format is missing",
        ),
        (
            json!({"up": {"base_url": "x", "format": "openai.responses"}}),
            "base_url must be an http",
        ),
        (
            json!({"a/b": {"base_url": "http://x", "format": "openai.responses"}}),
            "may hold only",
        ),
        (
            json!({"claude": {"base_url": "http://x", "format": "openai.responses"}}),
            "taken",
        ),
        (
            json!({"up": {"base_url": "http://x", "format": "openai.responses", "api_key_env": "A", "api_key_file": "/f"}}),
            "not both",
        ),
        (
            json!({"up": {"base_url": "http://x", "format": "openai.responses", "model_mappings": [{"kind": "regex", "pattern": "(", "target": "m"}]}}),
            "invalid regex",
        ),
        (
            json!({"up": {"base_url": "http://x", "format": "openai.responses", "headers": {"bad header": "v"}}}),
            "not a valid header",
        ),
    ];
    for (upstreams, expected) in cases {
        let error = MockHost::new()
            .config(json!({"upstreams": upstreams}))
            .start::<Compat>()
            .err()
            .unwrap_or_else(|| panic!("{upstreams} should be refused"));
        assert!(error.message().contains(expected), "{}", error.message());
    }
    let Err(error) = MockHost::new()
        .config(
            json!({"upstreams": {"up": {"base_url": "http://x", "format": "openai.completions"}}}),
        )
        .start::<Compat>()
    else {
        panic!("an unknown format is refused")
    };
    assert!(
        error.message().contains("openai.completions"),
        "{}",
        error.message()
    );
}

#[test]
fn no_upstreams_is_a_quiet_healthy_plugin() {
    let plugin = start(json!({}));
    assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
}

#[test]
fn configured_models_are_listed_for_both_families() {
    let plugin = start(two_upstreams());
    for path in ["/anthro/v1/models", "/anthro/models/"] {
        let answer = plugin.route(request("GET", path)).unwrap();
        assert_eq!(answer.status, 200);
        let list: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(list["data"][0]["id"], "glm-4.6");
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(list["data"][0]["type"], "model");
    }
    let missing = plugin
        .route(request("GET", "/nobody/v1/models"))
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[test]
fn an_upstream_model_list_is_fetched_once_and_cached() {
    let host = MockHost::new().config(two_upstreams()).http(|request| {
        assert_eq!(request.url, "http://127.0.0.1:9/api/v1/models");
        assert!(request.headers.get("authorization").is_some());
        Ok(HttpResponse {
            status: 200,
            headers: Headers::default(),
            body: br#"{"object":"list","data":[{"id":"a/one"},{"id":"b/two"}]}"#.to_vec(),
        })
    });
    let plugin = host.start::<Compat>().unwrap();
    for _ in 0..2 {
        let answer = plugin.route(request("GET", "/router/v1/models")).unwrap();
        let list: Value = serde_json::from_slice(&answer.body).unwrap();
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a/one", "b/two"]);
    }
    assert_eq!(host.http_requests().len(), 1);
}

#[test]
fn a_model_list_that_fails_names_the_upstream() {
    let host = MockHost::new().config(two_upstreams()).http(|_| {
        Ok(HttpResponse {
            status: 502,
            headers: Headers::default(),
            body: b"<html><body>Bad Gateway</body></html>".to_vec(),
        })
    });
    let plugin = host.start::<Compat>().unwrap();
    let answer = plugin.route(request("GET", "/router/v1/models")).unwrap();
    assert_eq!(answer.status, 502);
    let error: Value = serde_json::from_slice(&answer.body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("upstream router"), "{message}");
    assert!(message.contains("Bad Gateway"), "{message}");
}

#[test]
fn each_upstream_is_served_in_every_client_format_under_its_prefix() {
    let plugin = start(two_upstreams());
    assert!(
        plugin
            .manifest()
            .provider
            .as_ref()
            .is_some_and(|p| p.configured)
    );
    let served = plugin.configured_endpoints();
    let endpoints: Vec<(&str, &str, Option<&str>)> = served
        .provider_endpoints
        .iter()
        .map(|e| {
            (
                e.path.as_str(),
                e.format.as_str(),
                e.native_format.as_deref(),
            )
        })
        .collect();
    let chat = Some("openai.chat_completions");
    let anthropic = Some("anthropic.messages");
    assert_eq!(
        endpoints,
        [
            ("/anthro/v1/messages", "anthropic.messages", anthropic),
            (
                "/anthro/v1/chat/completions",
                "openai.chat_completions",
                anthropic
            ),
            ("/anthro/v1/responses", "openai.responses", anthropic),
            (
                "/anthro/chat/completions",
                "openai.chat_completions",
                anthropic
            ),
            ("/anthro/responses", "openai.responses", anthropic),
            ("/router/v1/messages", "anthropic.messages", chat),
            (
                "/router/v1/chat/completions",
                "openai.chat_completions",
                chat
            ),
            ("/router/v1/responses", "openai.responses", chat),
            ("/router/chat/completions", "openai.chat_completions", chat),
            ("/router/responses", "openai.responses", chat),
        ]
    );
    let routes: Vec<String> = served
        .routes
        .iter()
        .flat_map(|group| group.routes.iter().map(|route| group.full_path(route)))
        .collect();
    assert_eq!(
        routes,
        [
            "/anthro/v1/models",
            "/anthro/models",
            "/anthro/v1/messages/count_tokens",
            "/router/v1/models",
            "/router/models",
            "/router/v1/messages/count_tokens",
        ]
    );
    assert!(start(json!({})).configured_endpoints().is_empty());
}

#[test]
fn token_counts_are_the_upstreams_own_or_an_estimate() {
    let mut config = two_upstreams();
    config["upstreams"]["anthro"]["api_key_env"] = json!("PATH");
    let host = MockHost::new().config(config).http(|request| {
        assert_eq!(request.url, "http://127.0.0.1:9/v1/messages/count_tokens");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        // Only what a count takes; the model mapped by the rules.
        assert_eq!(
            body,
            json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]})
        );
        assert!(request.headers.get("x-api-key").is_some());
        Ok(HttpResponse {
            status: 200,
            headers: Headers::default(),
            body: br#"{"input_tokens":42}"#.to_vec(),
        })
    });
    let plugin = host.start::<Compat>().unwrap();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let counted = plugin
        .route(json_request(
            "POST",
            "/anthro/v1/messages/count_tokens",
            &body,
        ))
        .unwrap();
    assert_eq!(counted.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&counted.body).unwrap(),
        json!({"input_tokens": 42})
    );
    // The Chat Completions upstream has no count: an estimate, no request.
    let estimated = plugin
        .route(json_request(
            "POST",
            "/router/v1/messages/count_tokens",
            &body,
        ))
        .unwrap();
    let estimate: Value = serde_json::from_slice(&estimated.body).unwrap();
    assert_eq!(estimate, json!({"input_tokens": 2}));
    assert_eq!(host.http_requests().len(), 1);
    let bad = plugin
        .route(json_request(
            "POST",
            "/router/v1/messages/count_tokens",
            &json!([1]),
        ))
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&bad.body).unwrap()["type"],
        "error"
    );
}
