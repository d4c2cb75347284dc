//! The host side of a plugin's `Context`: one `HostObject` per plugin.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Weak},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString},
};
use async_ffi::{FfiFuture, FutureExt as _};
use bytes::Bytes;
use ccproxy_plugin_abi::{
    API_VERSION,
    protocol::{
        EmitInput, HttpRequestHead, HttpResponseHead, ServiceInput, SleepInput, host_op, ops,
    },
    raw::{AbiError, CallResult, ErrorCode, HostBox, HostObject, HostObject_TO, Message},
};
use futures_util::FutureExt as _;
use serde::{Serialize, de::DeserializeOwned};

use super::Shared;
use crate::plugins::handle::CallErrorKind;

/// The declared OAuth events an auth-provider plugin may emit.
const OAUTH_EVENTS: &[&str] = &[
    "oauth.token.request",
    "oauth.token.response",
    "oauth.refresh.request",
    "oauth.refresh.response",
    "oauth.error",
];

/// The handle plugin `plugin` receives. Holds the shared state weakly so that
/// plugins do not keep the host alive (and no reference cycle forms).
#[derive(Clone)]
struct PluginHost {
    plugin: Arc<str>,
    shared: Weak<Shared>,
}

/// Creates the host handle for plugin `plugin`.
pub fn host_handle_for(plugin: &str, shared: &Arc<Shared>) -> HostBox {
    HostObject_TO::from_ptr(
        RArc::new(PluginHost {
            plugin: plugin.into(),
            shared: Arc::downgrade(shared),
        }),
        TD_Opaque,
    )
}

fn decode<T: DeserializeOwned>(input: &Message) -> Result<T, AbiError> {
    let text = if input.meta.is_empty() {
        "null"
    } else {
        input.meta.as_str()
    };
    serde_json::from_str(text)
        .map_err(|error| AbiError::new(ErrorCode::Invalid, format!("malformed host call: {error}")))
}

fn encode<T: Serialize>(meta: &T, body: Vec<u8>) -> Result<Message, AbiError> {
    let meta = serde_json::to_string(meta)
        .map_err(|error| AbiError::new(ErrorCode::Internal, error.to_string()))?;
    Ok(Message {
        meta: meta.into(),
        body: body.into(),
    })
}

impl HostObject for PluginHost {
    fn api_version(&self) -> RString {
        RString::from(API_VERSION)
    }

    fn log_enabled(&self, level: u8, _target: RStr<'_>) -> bool {
        match level {
            1 => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
            2 => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            3 => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            4 => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            _ => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
        }
    }

    fn log(&self, level: u8, _target: RStr<'_>, message: RStr<'_>) {
        let plugin = &*self.plugin;
        let message = message.as_str();
        // tracing targets are static, so plugin logs share the `plugin` target
        // and carry the plugin's name as a field.
        match level {
            1 => tracing::error!(target: "plugin", plugin, "{message}"),
            2 => tracing::warn!(target: "plugin", plugin, "{message}"),
            3 => tracing::info!(target: "plugin", plugin, "{message}"),
            4 => tracing::debug!(target: "plugin", plugin, "{message}"),
            _ => tracing::trace!(target: "plugin", plugin, "{message}"),
        }
    }

    fn spawn(&self, future: FfiFuture<()>) {
        let plugin = self.plugin.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(plugin = %plugin, "spawn called outside the host runtime; task dropped");
            return;
        };
        runtime.spawn(async move {
            if AssertUnwindSafe(future).catch_unwind().await.is_err() {
                tracing::error!(plugin = %plugin, "a task spawned by the plugin panicked");
            }
        });
    }

    fn call(&self, op: RString, input: Message) -> FfiFuture<CallResult> {
        let host = self.clone();
        async move {
            let result = match host.shared.upgrade() {
                Some(shared) => host.dispatch(&shared, op.as_str(), input).await,
                None => Err(AbiError::new(
                    ErrorCode::Unavailable,
                    "the host is shutting down",
                )),
            };
            match result {
                Ok(message) => RResult::ROk(message),
                Err(error) => RResult::RErr(error),
            }
        }
        .into_ffi()
    }
}

impl PluginHost {
    async fn dispatch(
        &self,
        shared: &Arc<Shared>,
        op: &str,
        input: Message,
    ) -> Result<Message, AbiError> {
        match op {
            host_op::SLEEP => {
                let sleep: SleepInput = decode(&input)?;
                tokio::time::sleep(Duration::from_millis(sleep.millis)).await;
                Ok(Message::default())
            }
            host_op::HTTP => {
                let head: HttpRequestHead = decode(&input)?;
                let timeout = (head.timeout_ms > 0).then(|| Duration::from_millis(head.timeout_ms));
                let plugin = &*self.plugin;
                let hooks = &shared.hooks;
                hooks.observe("http.request", None, || {
                    serde_json::json!({"plugin": plugin, "method": head.method, "url": head.url, "is_client_request": false, "is_provider_request": true})
                });
                let started = std::time::Instant::now();
                let result = shared
                    .upstream
                    .send_buffered(
                        &head.method,
                        &head.url,
                        &head.headers,
                        Bytes::from(input.body.into_vec()),
                        timeout,
                    )
                    .await;
                let duration_ms = started.elapsed().as_secs_f64() * 1e3;
                let response = match result {
                    Ok(response) => response,
                    Err(error) => {
                        hooks.observe("http.error", None, || {
                            serde_json::json!({"plugin": plugin, "method": head.method, "url": head.url, "error_type": "transport", "error_detail": error.to_string(), "duration_ms": duration_ms})
                        });
                        let code = match error {
                            crate::upstream::UpstreamError::Invalid(_) => ErrorCode::Invalid,
                            crate::upstream::UpstreamError::Timeout { .. } => ErrorCode::Timeout,
                            crate::upstream::UpstreamError::Unreachable { .. } => {
                                ErrorCode::Upstream
                            }
                        };
                        return Err(AbiError::new(code, error.to_string()));
                    }
                };
                hooks.observe("http.response", None, || {
                    serde_json::json!({"plugin": plugin, "method": head.method, "url": head.url, "status_code": response.status, "duration_ms": duration_ms, "body_size": response.body.len(), "is_provider_response": true})
                });
                encode(
                    &HttpResponseHead {
                        status: response.status,
                        headers: response.headers,
                        stream: None,
                    },
                    response.body.to_vec(),
                )
            }
            host_op::SERVICE_CALL => {
                let mut call: ServiceInput = decode(&input)?;
                call.caller = self.plugin.to_string();
                let provider = shared
                    .services
                    .get(&call.service)
                    .map(|p| p.value().clone())
                    .ok_or_else(|| {
                        AbiError::new(
                            ErrorCode::NotFound,
                            format!("no enabled plugin provides service {}", call.service),
                        )
                    })?;
                let plugin = shared
                    .plugins
                    .get(&provider)
                    .map(|p| p.value().clone())
                    .ok_or_else(|| {
                        AbiError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "service {} is provided by {provider}, which is not running",
                                call.service
                            ),
                        )
                    })?;
                let reply = plugin
                    .handle
                    .call::<ops::Service>(&call, Vec::new())
                    .await
                    .map_err(|error| {
                        // The provider's error kind travels on, so a consumer can tell
                        // "not logged in" (401) from "token endpoint down" (502).
                        let code = match error.kind {
                            CallErrorKind::Plugin(kind) => kind.code(),
                            CallErrorKind::TimedOut => ErrorCode::Timeout,
                            CallErrorKind::Panicked
                            | CallErrorKind::Unsupported
                            | CallErrorKind::BadReply => ErrorCode::Internal,
                        };
                        AbiError::new(
                            code,
                            format!("service {} ({provider}): {}", call.service, error.message),
                        )
                    })?;
                encode(&reply.meta, Vec::new())
            }
            host_op::EMIT => {
                let emit: EmitInput = decode(&input)?;
                // Auth-provider plugins report their token exchanges as the
                // declared `oauth.*` events; everything else is `custom.*`.
                let is_auth_provider = shared
                    .plugins
                    .get(&*self.plugin)
                    .is_some_and(|p| p.manifest.oauth.is_some());
                let allowed = emit.event == "custom.event"
                    || emit.event.starts_with("custom.")
                    || (is_auth_provider && OAUTH_EVENTS.contains(&emit.event.as_str()));
                if !allowed {
                    return Err(AbiError::new(
                        ErrorCode::Invalid,
                        format!(
                            "plugins may emit custom.* events (and auth providers oauth.* events), not {}",
                            emit.event
                        ),
                    ));
                }
                if !emit.event.starts_with("custom.") {
                    let data = serde_json::json!({"plugin": &*self.plugin, "data": emit.data});
                    shared.hooks.observe(emit.event.clone(), None, move || data);
                    return Ok(Message::default());
                }
                // Delivered under its own name (`custom.x`) and, for hooks that
                // follow every custom event, under `custom.event`.
                let data = serde_json::json!({"plugin": &*self.plugin, "name": emit.event, "data": emit.data});
                if emit.event != "custom.event" {
                    let specific = data.clone();
                    shared
                        .hooks
                        .observe(emit.event.clone(), None, move || specific);
                }
                shared.hooks.observe("custom.event", None, move || data);
                Ok(Message::default())
            }
            other => Err(AbiError::new(
                ErrorCode::Unsupported,
                format!(
                    "host operation {other} is not supported by this host (plugin API {API_VERSION})"
                ),
            )),
        }
    }
}
