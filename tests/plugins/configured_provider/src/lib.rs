//! A provider whose endpoints come from its config (plugin API 1.3): each
//! configured upstream gets `/{name}/v1/messages` and
//! `/{name}/v1/chat/completions`, served in the upstream's own format, and a
//! `GET /{name}/v1/models` route naming it. The end-to-end test
//! `configured_endpoints` drives it against the mock upstream.

use ccproxy_plugin_abi::prelude::*;
use serde::{Deserialize, Serialize};

/// The plugin's config: the upstreams.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The upstreams, each under `/{name}`.
    pub upstreams: Vec<Upstream>,
}

/// One upstream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Its path prefix, `/{name}`.
    pub name: String,
    /// Its base URL.
    pub base_url: String,
    /// The format it speaks.
    pub format: String,
}

struct ConfiguredProvider {
    config: Config,
}

impl ConfiguredProvider {
    fn upstream_of(&self, endpoint: &str) -> Option<&Upstream> {
        self.config
            .upstreams
            .iter()
            .find(|upstream| endpoint.starts_with(&format!("/{}/", upstream.name)))
    }
}

impl Plugin for ConfiguredProvider {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("configured_provider", env!("CARGO_PKG_VERSION"))
            .description("Test: provider endpoints from config")
            .configured_provider()
    }

    async fn init(_ctx: Context, config: Config) -> Result<Self, PluginError> {
        Ok(Self { config })
    }

    fn configured_endpoints(&self) -> ConfiguredEndpoints {
        let mut served = ConfiguredEndpoints::default();
        for upstream in &self.config.upstreams {
            let prefix = format!("/{}", upstream.name);
            served = served
                .provider_endpoint(
                    &format!("{prefix}/v1/messages"),
                    "anthropic.messages",
                    &upstream.format,
                )
                .provider_endpoint(
                    &format!("{prefix}/v1/chat/completions"),
                    "openai.chat_completions",
                    &upstream.format,
                )
                .route(&prefix, [Route::new("GET", "/v1/models")]);
        }
        served
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let upstream = self
            .upstream_of(&req.path)
            .ok_or_else(|| PluginError::not_found(format!("no upstream serves {}", req.path)))?;
        Ok(Response::json(
            200,
            &json!({"object": "list", "upstream": upstream.name, "format": upstream.format}),
        ))
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let upstream = self
            .upstream_of(&req.endpoint)
            .ok_or_else(|| PluginError::invalid(format!("no upstream serves {}", req.endpoint)))?;
        let path = match req.native_format.as_str() {
            "anthropic.messages" => "/v1/messages",
            "openai.responses" => "/v1/responses",
            _ => "/v1/chat/completions",
        };
        let mut headers = Headers::default();
        headers.set("content-type", "application/json");
        headers.set("x-api-key", "test-key");
        headers.set("anthropic-version", "2023-06-01");
        headers.set("x-configured-upstream", upstream.name.clone());
        // What the host's index of the body gave (plugin API 1.3): the
        // top-level keys in order, or `none` (a converted body, no index).
        let top_level = req.body_top_level().map_or_else(
            || "none".to_owned(),
            |members| {
                let keys: Vec<&str> = members.iter().map(|(key, _)| *key).collect();
                keys.join(",")
            },
        );
        headers.set("x-body-top-level", top_level);
        Ok(UpstreamRequest {
            method: "POST".to_owned(),
            url: format!("{}{path}", upstream.base_url.trim_end_matches('/')),
            headers,
            body: req.body,
            stream: req.stream,
            ..UpstreamRequest::default()
        })
    }
}

export_plugin!(ConfiguredProvider);
