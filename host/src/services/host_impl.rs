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
use ccproxy_plugin_abi::HookEvent;
use ccproxy_plugin_abi::{
    API_VERSION,
    protocol::{EmitInput, Operation, ServiceInput, ops},
    raw::{AbiError, CallResult, ErrorCode, HostBox, HostObject, HostObject_TO, Message},
};
use futures_util::FutureExt as _;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{Shared, blocking, http};
use crate::{plugins::handle::CallErrorKind, server::endpoints::plugins_status};

/// The declared OAuth events an auth-provider plugin may emit.
const OAUTH_EVENTS: &[HookEvent] = &[
    HookEvent::OAuthTokenRequest,
    HookEvent::OAuthTokenResponse,
    HookEvent::OAuthRefreshRequest,
    HookEvent::OAuthRefreshResponse,
    HookEvent::OAuthError,
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

/// Answers operation `O`: decodes its input, runs `handle` with it and the
/// message body, encodes its output and body.
async fn answer<O: Operation, F>(
    input: Message,
    handle: impl FnOnce(O::Input, Vec<u8>) -> F,
) -> Result<Message, AbiError>
where
    F: Future<Output = Result<(O::Output, Vec<u8>), AbiError>>,
{
    let meta: O::Input = decode(&input)?;
    let (output, body) = handle(meta, input.body.into_vec()).await?;
    encode(&output, body)
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

/// Runs `work` on the server's runtime when called from the plugin runtime.
///
/// The upstream client's pooled connections are driven by tasks spawned on
/// the runtime that opened them; a plugin's `host.http` opened on the plugin
/// runtime would leave connections there that provider requests then share,
/// stalled whenever a plugin blocks the plugin workers. So the host's own
/// I/O for plugins runs where the server's does.
async fn on_server_runtime<T, F>(shared: &Shared, work: F) -> Result<T, AbiError>
where
    F: Future<Output = Result<T, AbiError>> + Send + 'static,
    T: Send + 'static,
{
    let runtime = match &shared.server_runtime {
        Some(runtime) if crate::plugins::handle::on_plugin_runtime() => runtime,
        _ => return work.await,
    };
    /// The plugin dropping its call (its own timeout) cancels the work.
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = runtime.spawn(work);
    let _abort = AbortOnDrop(task.abort_handle());
    task.await.unwrap_or_else(|error| {
        Err(AbiError::new(
            ErrorCode::Internal,
            format!("the host's HTTP work failed: {error}"),
        ))
    })
}

impl PluginHost {
    async fn dispatch(
        &self,
        shared: &Arc<Shared>,
        op: &str,
        input: Message,
    ) -> Result<Message, AbiError> {
        let plugin = &*self.plugin;
        match op {
            <ops::Sleep as Operation>::NAME => {
                answer::<ops::Sleep, _>(input, |sleep, _| async move {
                    tokio::time::sleep(Duration::from_millis(sleep.millis)).await;
                    Ok((Value::Null, Vec::new()))
                })
                .await
            }
            <ops::Http as Operation>::NAME => {
                answer::<ops::Http, _>(input, |head, body| {
                    let (owned, name) = (shared.clone(), plugin.to_owned());
                    on_server_runtime(shared, async move {
                        http::send_buffered(&owned, &name, head, body).await
                    })
                })
                .await
            }
            <ops::HttpStream as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::HttpStream, _>(input, |head, body| {
                    let (owned, name) = (shared.clone(), plugin.to_owned());
                    on_server_runtime(shared, async move {
                        http::send_streamed(&owned, &name, &facilities.http_streams, head, body)
                            .await
                    })
                })
                .await
            }
            <ops::HttpStreamNext as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::HttpStreamNext, _>(input, |stream, _| async move {
                    facilities.http_streams.next(stream).await
                })
                .await
            }
            <ops::HttpStreamCancel as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::HttpStreamCancel, _>(input, |stream, _| async move {
                    facilities.http_streams.cancel(stream);
                    Ok((Value::Null, Vec::new()))
                })
                .await
            }
            <ops::Blocking as Operation>::NAME => {
                answer::<ops::Blocking, _>(input, |job, _| blocking::run(shared, plugin, job)).await
            }
            <ops::ProcessSpawn as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::ProcessSpawn, _>(input, |spec, _| async move {
                    let spawned = facilities.processes.spawn(spec)?;
                    tracing::debug!(plugin, pid = spawned.pid, "plugin started a child process");
                    Ok((spawned, Vec::new()))
                })
                .await
            }
            <ops::ProcessWrite as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::ProcessWrite, _>(input, |write, body| async move {
                    facilities.processes.write(write, body).await?;
                    Ok((Value::Null, Vec::new()))
                })
                .await
            }
            <ops::ProcessRead as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::ProcessRead, _>(input, |read, _| async move {
                    facilities.processes.read(read).await
                })
                .await
            }
            <ops::ProcessWait as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::ProcessWait, _>(input, |process, _| async move {
                    Ok((facilities.processes.wait(process).await?, Vec::new()))
                })
                .await
            }
            <ops::ProcessKill as Operation>::NAME => {
                let facilities = shared.facilities_of(plugin);
                answer::<ops::ProcessKill, _>(input, |process, _| async move {
                    facilities.processes.kill(process);
                    Ok((Value::Null, Vec::new()))
                })
                .await
            }
            <ops::PluginsStatus as Operation>::NAME => {
                answer::<ops::PluginsStatus, _>(input, |_, _| async move {
                    let app = shared.app().ok_or_else(|| {
                        AbiError::new(
                            ErrorCode::Unavailable,
                            "plugins status is available once the server runs (not during plugin initialisation or CLI commands)",
                        )
                    })?;
                    Ok((plugins_status(&app), Vec::new()))
                })
                .await
            }
            <ops::ServiceCall as Operation>::NAME => {
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
            <ops::Emit as Operation>::NAME => {
                let emit: EmitInput = decode(&input)?;
                // Auth-provider plugins report their token exchanges as the
                // declared `oauth.*` events; everything else is `custom.*`.
                let is_auth_provider = shared
                    .plugins
                    .get(&*self.plugin)
                    .is_some_and(|p| p.manifest.oauth.is_some());
                let event = HookEvent::from_name(&emit.event);
                let is_custom = emit.event.starts_with("custom.");
                let allowed = is_custom || (is_auth_provider && OAUTH_EVENTS.contains(&event));
                if !allowed {
                    return Err(AbiError::new(
                        ErrorCode::Invalid,
                        format!(
                            "plugins may emit custom.* events (and auth providers oauth.* events), not {}",
                            emit.event
                        ),
                    ));
                }
                if !is_custom {
                    let data = serde_json::json!({"plugin": &*self.plugin, "data": emit.data});
                    shared.hooks.observe(event, None, move || data);
                    return Ok(Message::default());
                }
                // Delivered under its own name (`custom.x`) and, for hooks that
                // follow every custom event, under `custom.event`.
                let data = serde_json::json!({"plugin": &*self.plugin, "name": emit.event, "data": emit.data});
                if event != HookEvent::CustomEvent {
                    let specific = data.clone();
                    shared.hooks.observe(event, None, move || specific);
                }
                shared.hooks.observe(HookEvent::CustomEvent, None, move || data);
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
