//! `Context`: everything a plugin asks of the host.
//!
//! A plugin carries its own copy of std and of every crate it links, but not the
//! host's async runtime: a plugin that creates tokio timers or sockets panics with
//! "no reactor running". So waiting, HTTP, spawning, services and events all go
//! through this handle, and the host does them on its runtime.

use std::{future::Future, path::PathBuf, time::Duration};

use abi_stable::std_types::{RResult, RString};
use async_ffi::FutureExt as _;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    PluginError,
    http::{Headers, HttpRequest, HttpResponse},
    protocol::{
        self, EmitInput, HttpRequestHead, HttpResponseHead, ServiceInput, SleepInput, host_op,
    },
    raw::{HostBox, Message},
};

/// The plugin's handle to the host. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Context {
    host: HostBox,
    plugin_name: String,
    data_dir: PathBuf,
    config_dir: PathBuf,
    capabilities: Vec<String>,
    bypass: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("plugin_name", &self.plugin_name)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(host: HostBox, init: &protocol::InitializeInput) -> Self {
        Self {
            host,
            plugin_name: init.plugin_name.clone(),
            data_dir: PathBuf::from(&init.data_dir),
            config_dir: PathBuf::from(&init.config_dir),
            capabilities: init.capabilities.clone(),
            bypass: init.bypass,
        }
    }

    /// Whether the host runs in bypass mode (`ccproxy serve --bypass`): it
    /// answers provider endpoints with canned, format-correct responses and
    /// calls no upstream. A plugin route that would call an upstream (a token
    /// count, say) should answer a canned value too, so clients can be tried
    /// without credentials. Since plugin API 1.1.
    pub fn bypass_mode(&self) -> bool {
        self.bypass
    }

    /// The plugin's name.
    pub fn plugin_name(&self) -> &str {
        &self.plugin_name
    }

    /// A directory the plugin may keep files in; it exists.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The host's config directory (`$XDG_CONFIG_HOME/ccproxy`).
    pub fn config_dir(&self) -> &std::path::Path {
        &self.config_dir
    }

    /// The plugin API version the host speaks, e.g. `1.0.0`.
    pub fn host_api_version(&self) -> String {
        self.host.api_version().into()
    }

    /// Whether the host offers `capability` (see `protocol::capability`). Check
    /// before using something a later minor version of the API added.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Waits for `duration` on the host's timer.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static + use<> {
        let call = self.call_json(
            host_op::SLEEP,
            &SleepInput {
                millis: duration.as_millis().min(u128::from(u64::MAX)) as u64,
            },
            Vec::new(),
        );
        async move {
            // A failed sleep (host shutting down) simply returns early.
            let _ = call.await;
        }
    }

    /// Sends `request` with the host's shared HTTP client.
    ///
    /// ```no_run
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # async fn demo(ctx: &Context) -> Result<(), PluginError> {
    /// let response = ctx.http(HttpRequest::get("http://127.0.0.1:9/ping")).await?;
    /// info!("upstream answered {}", response.status);
    /// # Ok(()) }
    /// ```
    pub fn http(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, PluginError>> + Send + 'static + use<> {
        let head = HttpRequestHead {
            method: request.method,
            url: request.url,
            headers: request.headers.0,
            timeout_ms: request
                .timeout
                .map_or(0, |t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        };
        let call = self.call_json(host_op::HTTP, &head, request.body);
        async move {
            let reply = call.await?;
            let head: HttpResponseHead = parse_meta(&reply.meta)?;
            Ok(HttpResponse {
                status: head.status,
                headers: Headers(head.headers),
                body: reply.body.into_vec(),
            })
        }
    }

    /// Calls `method` of `service`, provided by another plugin, with JSON arguments.
    pub fn call_service(
        &self,
        service: &str,
        method: &str,
        args: Value,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send + 'static + use<> {
        let call = self.call_json(
            host_op::SERVICE_CALL,
            &ServiceInput {
                service: service.to_owned(),
                method: method.to_owned(),
                args,
                caller: self.plugin_name.clone(),
            },
            Vec::new(),
        );
        async move {
            let reply = call.await?;
            parse_meta(&reply.meta)
        }
    }

    /// Like [`Context::call_service`], with typed arguments and result.
    pub fn call_service_as<A: Serialize, R: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        args: &A,
    ) -> impl Future<Output = Result<R, PluginError>> + Send + 'static + use<A, R> {
        let args = serde_json::to_value(args);
        let call = args.map(|args| self.call_service(service, method, args));
        async move {
            let value = call?.await?;
            Ok(serde_json::from_value(value)?)
        }
    }

    /// Emits event `event` to the hooks subscribed to it: a name under `custom.`
    /// reaches hooks on that name and on `custom.event`; auth-provider plugins
    /// (those declaring `oauth`) may also emit the declared `oauth.token.request`,
    /// `oauth.token.response`, `oauth.refresh.request`, `oauth.refresh.response`
    /// and `oauth.error`. Other names are refused (logged by the host).
    pub fn emit(&self, event: &str, data: Value) {
        let call = self.call_json(
            host_op::EMIT,
            &EmitInput {
                event: event.to_owned(),
                data,
            },
            Vec::new(),
        );
        self.spawn(async move {
            let _ = call.await;
        });
    }

    /// Runs `future` on the host runtime, detached. A panic inside it is caught
    /// and logged by the host.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let guarded = crate::raw::catch_panic_future(async move {
            future.await;
            Ok(())
        });
        let future = async move {
            if let Err(error) = guarded.await {
                crate::log::record(
                    crate::log::Level::Error,
                    &format!("spawned task failed: {}", error.message),
                );
            }
        };
        self.host.spawn(future.into_ffi());
    }

    fn call_json<T: Serialize>(
        &self,
        op: &str,
        meta: &T,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Message, PluginError>> + Send + 'static + use<T> {
        let meta = serde_json::to_string(meta);
        let host = self.host.clone();
        let op = RString::from(op);
        async move {
            let message = Message {
                meta: meta?.into(),
                body: body.into(),
            };
            match host.call(op, message).await {
                RResult::ROk(reply) => Ok(reply),
                RResult::RErr(error) => Err(PluginError::from_abi(error)),
            }
        }
    }
}

pub(crate) fn parse_meta<T: DeserializeOwned>(meta: &RString) -> Result<T, PluginError> {
    let text = if meta.is_empty() {
        "null"
    } else {
        meta.as_str()
    };
    serde_json::from_str(text).map_err(|error| {
        PluginError::internal(format!("malformed message from the other side: {error}"))
    })
}
