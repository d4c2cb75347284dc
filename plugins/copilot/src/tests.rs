use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

use super::*;

const COPILOT_TOKEN: &str = "tid=unit-copilot-token;exp=1;sku=x-WXYZ";

fn start(host: &MockHost) -> TestPlugin {
    let plugin = host.start::<Copilot>().expect("the plugin starts");
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    plugin
}

fn provider_request(stream: bool) -> ProviderRequest {
    ProviderRequest {
        endpoint: "/copilot/v1/chat/completions".to_owned(),
        client_format: "openai.chat_completions".to_owned(),
        native_format: "openai.chat_completions".to_owned(),
        stream,
        model: Some("gpt-4o".to_owned()),
        headers: Headers(vec![("authorization".to_owned(), "Bearer client-secret".to_owned())]),
        query: String::new(),
        body: br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#.to_vec(),
        request_id: "req-1".to_owned(),
    }
}

fn with_token(api_base: Option<&'static str>) -> MockHost {
    MockHost::new().service(OAUTH_SERVICE, move |method, _| match method {
        "access_token" => Ok(json!({"access_token": COPILOT_TOKEN, "api_base": api_base})),
        other => Err(PluginError::not_found(other.to_owned())),
    })
}

#[test]
fn requests_go_to_the_exchanges_api_base_with_copilots_headers() {
    let plugin = start(&with_token(Some(
        "https://api.individual.githubcopilot.com",
    )));
    let upstream = plugin.prepare_upstream(provider_request(true)).unwrap();
    assert_eq!(
        upstream.url,
        "https://api.individual.githubcopilot.com/chat/completions"
    );
    let headers = &upstream.headers;
    assert_eq!(
        headers.get("authorization"),
        Some(format!("Bearer {COPILOT_TOKEN}").as_str())
    );
    assert_eq!(headers.get("copilot-integration-id"), Some("vscode-chat"));
    assert_eq!(headers.get("editor-version"), Some("vscode/1.85.0"));
    assert_eq!(
        headers.get("editor-plugin-version"),
        Some("copilot-chat/0.26.7")
    );
    assert_eq!(headers.get("user-agent"), Some("GitHubCopilotChat/0.26.7"));
    assert_eq!(headers.get("x-github-api-version"), Some("2025-04-01"));
    assert!(upstream.stream);
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body["stream"], true);
    assert!(!format!("{headers:?}").contains("client-secret"));
}

#[test]
fn an_explicit_base_url_wins_over_the_exchanges() {
    let host = with_token(Some("https://api.individual.githubcopilot.com"))
        .config(json!({"base_url": "http://127.0.0.1:9/"}));
    let plugin = start(&host);
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(upstream.url, "http://127.0.0.1:9/chat/completions");
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
    let plugin = start(&with_token(None));
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(
        upstream.url,
        "https://api.githubcopilot.com/chat/completions"
    );
}

#[test]
fn without_the_auth_plugin_the_error_says_what_to_do() {
    let plugin = start(&MockHost::new());
    let error = plugin
        .prepare_upstream(provider_request(false))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(
        error.message().contains("oauth_copilot"),
        "{}",
        error.message()
    );
}
