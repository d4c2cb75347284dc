//! # provider_shaped: a provider that uses another plugin's service and the host's HTTP client
//!
//! Shows a `provider` plugin that declares a dependency on `hello_system` and
//! requires its `greeting` service (the host refuses to start it without
//! them), calls that service with `Context::call_service`, and, when
//! `upstream_url` is set, sends a request through the host's shared HTTP
//! client with `Context::http`: plugins never open sockets themselves. A
//! failed upstream becomes a 502 for the client.
//!
//! Build and install both plugins:
//!
//! ```text
//! cargo build -p example-hello-system -p example-provider-shaped
//! cp target/debug/libexample_hello_system.so target/debug/libexample_provider_shaped.so ~/.config/ccproxy/plugins/
//! ```
//!
//! Optionally, in `~/.config/ccproxy/config.toml`:
//!
//! ```toml
//! [plugins.provider_shaped]
//! upstream_url = "https://example.com/"
//! ```
//!
//! Try it:
//!
//! ```text
//! curl -s http://127.0.0.1:8000/provider_shaped/v1/echo -H 'content-type: application/json' -d '{"name":"Ada"}'
//! {"greeting":"Hello, Ada!","provider":"provider_shaped","upstream":null}
//! ```
//!
//! and expect this line in the proxy's log at startup:
//!
//! ```text
//! INFO plugin: provider_shaped ready, upstream: none plugin="provider_shaped"
//! ```
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::{Value, prelude::*, protocol::capability};
use serde::{Deserialize, Serialize};

/// `[plugins.provider_shaped]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// A URL fetched with `GET` on every echo; empty skips the upstream call.
    upstream_url: String,
}

/// The plugin: its host handle and config.
struct ProviderShaped {
    ctx: Context,
    config: Config,
}

/// The body `POST /provider_shaped/v1/echo` expects.
#[derive(Deserialize)]
struct EchoRequest {
    name: String,
}

impl ProviderShaped {
    /// Asks `hello_system`'s `greeting` service for a message.
    async fn greeting(&self, name: &str) -> Result<String, PluginError> {
        let answer = self
            .ctx
            .call_service("greeting", "greet", json!({ "name": name }))
            .await
            .map_err(|error| {
                PluginError::new(error.kind(), format!("greeting service failed: {error}"))
            })?;
        answer
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                PluginError::internal(format!(
                    "greeting service answered without a message: {answer}"
                ))
            })
    }

    /// Fetches the configured upstream, reporting its status and body length.
    async fn upstream(&self) -> Result<Value, PluginError> {
        let url = &self.config.upstream_url;
        if url.is_empty() {
            return Ok(Value::Null);
        }
        let response = self
            .ctx
            .http(HttpRequest::get(url.as_str()))
            .await
            .map_err(|error| {
                // The host's message usually names the URL already.
                let message = if error.message().contains(url.as_str()) {
                    format!("upstream probe failed: {error}")
                } else {
                    format!("upstream probe of {url} failed: {error}")
                };
                PluginError::new(ErrorKind::Upstream, message)
            })?;
        Ok(json!({
            "url": url,
            "status": response.status,
            "body_bytes": response.body.len(),
        }))
    }
}

impl Plugin for ProviderShaped {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("provider_shaped", env!("CARGO_PKG_VERSION"))
            .description(
                "Echoes a greeting from hello_system and probes an upstream through the host",
            )
            .kind(PluginKind::Provider)
            .depends_on("hello_system")
            .requires("greeting")
            .route("/provider_shaped", [Route::post("/v1/echo")])
            .config_key(
                "upstream_url",
                "URL fetched on every echo; empty (default) skips it",
            )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !config.upstream_url.is_empty() && !ctx.has_capability(capability::HTTP) {
            return Err(PluginError::unavailable(
                "upstream_url is set but this host offers no HTTP client; upgrade ccproxy or clear upstream_url",
            ));
        }
        let upstream = if config.upstream_url.is_empty() {
            "none"
        } else {
            config.upstream_url.as_str()
        };
        info!("provider_shaped ready, upstream: {upstream}");
        Ok(Self { ctx, config })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let echo: EchoRequest = req.json()?;
        let greeting = self.greeting(&echo.name).await?;
        let upstream = self.upstream().await?;
        debug!("echo for request {}", req.request_id);
        Ok(Response::json(
            200,
            &json!({
                "provider": "provider_shaped",
                "greeting": greeting,
                "upstream": upstream,
            }),
        ))
    }
}

export_plugin!(ProviderShaped);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, json_request};

    use super::*;

    /// A host where `hello_system` is present: its `greeting` service answers.
    fn host_with_greeting() -> MockHost {
        MockHost::new().service("greeting", |method, args| match method {
            "greet" => {
                Ok(json!({"message": format!("Hello, {}!", args["name"].as_str().unwrap_or("?"))}))
            }
            other => Err(PluginError::not_found(format!("no method {other}"))),
        })
    }

    fn echo(host: &MockHost) -> Result<Value, PluginError> {
        let plugin = host.start::<ProviderShaped>()?;
        let response = plugin.route(json_request(
            "POST",
            "/provider_shaped/v1/echo",
            &json!({"name": "Ada"}),
        ))?;
        assert_eq!(response.status, 200);
        Ok(ccproxy_plugin_abi::serde_json::from_slice(&response.body)?)
    }

    #[test]
    fn echoes_the_greeting_without_an_upstream() {
        let host = host_with_greeting();
        assert_eq!(
            echo(&host).unwrap(),
            json!({"provider": "provider_shaped", "greeting": "Hello, Ada!", "upstream": null})
        );
        assert!(host.http_requests().is_empty());
        assert_eq!(host.service_calls()[0].caller, "provider_shaped");
        assert!(host.logged("provider_shaped ready, upstream: none"));
    }

    #[test]
    fn reports_the_upstream_status_and_length() {
        let host = host_with_greeting()
            .config(json!({"upstream_url": "http://upstream.test/ping"}))
            .http(|_| {
                Ok(HttpResponse {
                    status: 418,
                    body: b"teapot".to_vec(),
                    ..HttpResponse::default()
                })
            });
        let answer = echo(&host).unwrap();
        assert_eq!(
            answer["upstream"],
            json!({"url": "http://upstream.test/ping", "status": 418, "body_bytes": 6})
        );
        let sent = host.http_requests();
        assert_eq!(
            (sent[0].method.as_str(), sent[0].url.as_str()),
            ("GET", "http://upstream.test/ping")
        );
    }

    #[test]
    fn a_failed_upstream_is_a_502() {
        let host = host_with_greeting()
            .config(json!({"upstream_url": "http://127.0.0.1:9/"}))
            .http(|_| Err(PluginError::new(ErrorKind::Timeout, "connection refused")));
        let error = echo(&host).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Upstream);
        assert_eq!(error.kind().http_status(), 502);
        assert_eq!(
            error.message(),
            "upstream probe of http://127.0.0.1:9/ failed: connection refused"
        );
    }

    #[test]
    fn a_missing_greeting_service_keeps_its_kind() {
        let error = echo(&MockHost::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(
            error.message().starts_with("greeting service failed"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_body_is_a_400() {
        let plugin = host_with_greeting().start::<ProviderShaped>().unwrap();
        let error = plugin
            .route(json_request(
                "POST",
                "/provider_shaped/v1/echo",
                &json!({"nom": "Ada"}),
            ))
            .unwrap_err();
        assert_eq!(error.kind().http_status(), 400);
    }

    #[test]
    fn refuses_an_upstream_without_the_http_capability() {
        let host = host_with_greeting()
            .config(json!({"upstream_url": "http://upstream.test/"}))
            .capabilities([capability::SERVICES]);
        let error = host.start::<ProviderShaped>().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn manifest_is_provider_shaped() {
        let plugin = host_with_greeting().start::<ProviderShaped>().unwrap();
        let manifest = plugin.manifest();
        assert_eq!(manifest.kind, PluginKind::Provider);
        assert_eq!(manifest.dependencies, ["hello_system"]);
        assert_eq!(manifest.requires, ["greeting"]);
        assert_eq!(manifest.routes[0].routes, [Route::post("/v1/echo")]);
    }
}
