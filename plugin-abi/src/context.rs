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
    BodyStream, PluginError,
    http::{Headers, HttpRequest, HttpResponse, HttpStream},
    process::{ChildProcess, Command},
    protocol::{self, EmitInput, Operation, ServiceInput, SleepInput, StreamRef, ops},
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
        let call = self.call::<ops::Sleep>(
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
        let (head, body) = request.into_head();
        let call = self.call::<ops::Http>(&head, body);
        async move {
            let (head, body) = call.await?;
            Ok(HttpResponse {
                status: head.status,
                headers: Headers(head.headers),
                body,
            })
        }
    }

    /// Sends `request` with the host's shared HTTP client and answers as soon
    /// as the head arrives; the body is read as it comes (plugin API 1.2,
    /// capability `http_stream`). Hand it to a
    /// [`StreamResponse`](crate::StreamResponse) to forward an upstream stream
    /// without buffering it; dropping it cancels the request.
    /// `request.timeout` bounds the wait for the head and for each piece.
    pub fn http_stream(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpStream, PluginError>> + Send + 'static + use<> {
        let (head, body) = request.into_head();
        let call = self.call::<ops::HttpStream>(&head, body);
        let host = self.host.clone();
        async move {
            let (head, _) = call.await?;
            let stream = head.stream.ok_or_else(|| {
                PluginError::internal("the host answered host.http.stream without a stream")
            })?;
            Ok(HttpStream {
                status: head.status,
                headers: Headers(head.headers),
                body: remote_stream::<ops::HttpStreamNext, ops::HttpStreamCancel>(host, stream),
            })
        }
    }

    /// What `GET /plugins/status` shows: every plugin's counters and time
    /// spent in hooks (plugin API 1.2, capability `plugins_status`).
    pub fn plugins_status(
        &self,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send + 'static + use<> {
        let call = self.call::<ops::PluginsStatus>(&Value::Null, Vec::new());
        async move { Ok(call.await?.0) }
    }

    /// Calls `method` of `service`, provided by another plugin, with JSON arguments.
    pub fn call_service(
        &self,
        service: &str,
        method: &str,
        args: Value,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send + 'static + use<> {
        let call = self.call::<ops::ServiceCall>(
            &ServiceInput {
                service: service.to_owned(),
                method: method.to_owned(),
                args,
                caller: self.plugin_name.clone(),
            },
            Vec::new(),
        );
        async move { Ok(call.await?.0) }
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
        let call = self.call::<ops::Emit>(
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

    /// Calls host operation `O`: its metadata and a body in, its answer's
    /// metadata and body out.
    pub(crate) fn call<O: Operation>(
        &self,
        meta: &O::Input,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(O::Output, Vec<u8>), PluginError>> + Send + 'static + use<O>
    {
        call_host::<O>(&self.host, meta, body)
    }

    /// Runs `f` on one of the host's blocking threads and returns what it
    /// returns (plugin API 1.2, capability `blocking`): for work that would
    /// stall the host's async workers, such as file I/O, compression or a
    /// synchronous library. A panic inside `f` becomes an error of kind
    /// [`Panicked`](crate::ErrorKind::Panicked). On a host without the
    /// capability (a test host configured so) `f` runs right here instead.
    ///
    /// ```no_run
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # async fn demo(ctx: &Context) -> Result<(), PluginError> {
    /// let path = ctx.data_dir().join("state.json");
    /// let text = ctx
    ///     .blocking(move || std::fs::read_to_string(path))
    ///     .await?
    ///     .map_err(|error| PluginError::internal(format!("cannot read state: {error}")))?;
    /// # let _ = text; Ok(()) }
    /// ```
    pub fn blocking<T, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, PluginError>> + Send + 'static + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let host = self.host.clone();
        let on_pool = self.has_capability(protocol::capability::BLOCKING);
        async move {
            if !on_pool {
                return crate::raw::catch_panic(|| Ok(f())).map_err(PluginError::from_abi);
            }
            // Registered only once the future runs, and forgotten when it is
            // dropped, so an abandoned call leaves no job behind.
            let (job, result) = crate::blocking::register(f);
            call_host::<ops::Blocking>(&host, &protocol::BlockingInput { job: job.0 }, Vec::new())
                .await?;
            crate::blocking::take(&result)
        }
    }

    /// Starts `command` as a child process the host runs for this plugin
    /// (plugin API 1.2, capability `process`); see [`ChildProcess`]. A program
    /// that cannot be found fails with [`NotFound`](crate::ErrorKind::NotFound).
    ///
    /// ```no_run
    /// # use ccproxy_plugin_abi::prelude::*;
    /// # async fn demo(ctx: &Context) -> Result<(), PluginError> {
    /// let mut child = ctx.spawn_process(Command::new("uname").arg("-r")).await?;
    /// let release = child.read_stdout().await?.unwrap_or_default();
    /// child.wait().await?;
    /// # let _ = release; Ok(()) }
    /// ```
    pub fn spawn_process(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<ChildProcess, PluginError>> + Send + 'static + use<> {
        let call = self.call::<ops::ProcessSpawn>(&command.into_spec(), Vec::new());
        let host = self.host.clone();
        async move {
            let (spawned, _) = call.await?;
            Ok(ChildProcess::new(host, spawned.process, spawned.pid))
        }
    }
}

/// Calls host operation `O` on `host`.
pub(crate) fn call_host<O: Operation>(
    host: &HostBox,
    meta: &O::Input,
    body: Vec<u8>,
) -> impl Future<Output = Result<(O::Output, Vec<u8>), PluginError>> + Send + 'static + use<O> {
    let meta = serde_json::to_string(meta);
    let host = host.clone();
    async move {
        let message = Message {
            meta: meta?.into(),
            body: body.into(),
        };
        match host.call(RString::from(O::NAME), message).await {
            RResult::ROk(reply) => {
                Ok((parse_meta(&reply.meta)?, crate::shim::body_vec(reply.body)))
            }
            RResult::RErr(error) => Err(PluginError::from_abi(error)),
        }
    }
}

/// A stream the host owns, read piece by piece with operation `Next` and
/// cancelled with `Cancel` when dropped before its end.
pub(crate) fn remote_stream<Next, Cancel>(host: HostBox, stream: u64) -> BodyStream
where
    Next: Operation<Input = StreamRef, Output = protocol::StreamChunk> + 'static,
    Cancel: Operation<Input = StreamRef> + 'static,
{
    /// Cancels the stream on drop unless it ended.
    struct Reader<C: Operation<Input = StreamRef>> {
        host: HostBox,
        stream: u64,
        ended: bool,
        cancel: std::marker::PhantomData<fn() -> C>,
    }
    impl<C: Operation<Input = StreamRef>> Reader<C> {
        /// The stream ended: nothing to cancel.
        fn finish(&mut self) {
            self.ended = true;
        }
    }
    impl<C: Operation<Input = StreamRef>> Drop for Reader<C> {
        fn drop(&mut self) {
            if !self.ended {
                let call = call_host::<C>(
                    &self.host,
                    &StreamRef {
                        stream: self.stream,
                    },
                    Vec::new(),
                );
                self.host.spawn(
                    async move {
                        let _ = call.await;
                    }
                    .into_ffi(),
                );
            }
        }
    }
    let reader = Reader::<Cancel> {
        host,
        stream,
        ended: false,
        cancel: std::marker::PhantomData,
    };
    BodyStream::new(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            if reader.ended {
                return None;
            }
            let call = call_host::<Next>(
                &reader.host,
                &StreamRef {
                    stream: reader.stream,
                },
                Vec::new(),
            );
            match call.await {
                Ok((chunk, _)) if chunk.end => {
                    reader.finish();
                    None
                }
                Ok((_, piece)) => Some((Ok(piece), reader)),
                Err(error) => {
                    reader.ended = true;
                    Some((Err(error), reader))
                }
            }
        },
    ))
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
