//! The adapter between a safe [`Plugin`] and the raw [`PluginObject`] vtable:
//! decodes each operation, calls the plugin, encodes the answer, and contains
//! panics. Expanded into every plugin by `export_plugin!`.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RString},
};
use async_ffi::{FfiFuture, FutureExt as _};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Context, Plugin, PluginError,
    context::parse_meta,
    format::{ConversionKind, FormatConversion},
    hooks::{HookCall, HookEvent, HookOutcome},
    http::{Headers, Request},
    plugin::{
        MiddlewareAction, MiddlewareRequest, MiddlewareResponse, ProviderRequest, ServiceCall,
    },
    protocol::{self, Operation, op, ops},
    raw::{
        AbiError, CallResult, ErrorCode, Exported, HostBox, Message, PluginBox, PluginObject,
        PluginObject_TO, catch_panic, catch_panic_future,
    },
    stream::RouteResponse,
};

type BoxedCall = Pin<Box<dyn Future<Output = Result<Message, AbiError>> + Send>>;

/// A `hook.batch` frame as the host sent it (the raw layer's byte vector),
/// shared by the frame's calls so their data is never copied. Named here so
/// the public SDK modules (`hooks`, `hook_wire`) never mention raw types.
pub(crate) type SharedFrame = Arc<Frame>;

/// A frame's bytes, and the fields its calls annotate.
#[derive(Debug)]
pub(crate) struct Frame {
    bytes: abi_stable::std_types::RVec<u8>,
    pub(crate) annotations: crate::hooks::AnnotationList,
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whether this library and the host allocate with the same functions
/// (never without the `host-allocator` feature).
fn shares_host_heap() -> bool {
    #[cfg(feature = "host-allocator")]
    return crate::allocator::shares_host_heap();
    #[cfg(not(feature = "host-allocator"))]
    false
}

/// A message body as this library's `Vec`: taken as it is when the host's
/// heap is this library's too ([`shares_host_heap`]), copied otherwise
/// (abi_stable's own conversion).
#[allow(unsafe_code)]
pub(crate) fn body_vec(body: abi_stable::std_types::RVec<u8>) -> Vec<u8> {
    if !shares_host_heap() {
        return body.into_vec();
    }
    // Safety: the host made the buffer with the functions of the table it
    // exports (the table's contract, `allocator::HOST_ALLOCATOR_SYMBOL`),
    // which this library's global allocator calls too (`shares_host_heap`).
    unsafe { adopt_buffer(body) }
}

/// `bytes` as a `Vec` of the caller, without a copy: the one place a buffer
/// changes hands across the boundary with its allocation (the SDK's
/// [`body_vec`], and the host's answers from `shared_heap` plugins).
///
/// # Safety
///
/// The caller's global allocator must be able to free and grow the buffer:
/// it was made by the same allocation functions (the host's exported table
/// on both sides of the boundary).
#[allow(unsafe_code)]
pub unsafe fn adopt_buffer(bytes: abi_stable::std_types::RVec<u8>) -> Vec<u8> {
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    // Safety: the caller's promise; the `Vec` takes the `RVec`'s length and
    // capacity (alignment 1), and the `RVec`, not dropped, frees nothing.
    unsafe { Vec::from_raw_parts(bytes.as_mut_ptr(), bytes.len(), bytes.capacity()) }
}

/// `bytes` as a [`SharedFrame`].
pub(crate) fn shared_frame(bytes: impl Into<abi_stable::std_types::RVec<u8>>) -> SharedFrame {
    Arc::new(Frame {
        bytes: bytes.into(),
        annotations: crate::hooks::AnnotationList::default(),
    })
}

/// The exported form of plugin `P`. Named only by `export_plugin!`.
pub struct Shim<P>(PhantomData<fn() -> P>);

struct Instance<P: Plugin> {
    host: HostBox,
    plugin: Arc<OnceLock<Arc<P>>>,
    /// Streamed route answers the host is reading (plugin API 1.2).
    streams: Arc<crate::streams::Streams>,
    /// Where each of those streams' producers leaves the answer's usage,
    /// sent with the last chunk (plugin API 1.3).
    stream_usage: Arc<StreamUsage>,
}

/// End reports of the streams being read, by stream id.
#[derive(Default)]
struct StreamUsage(std::sync::Mutex<std::collections::HashMap<u64, crate::stream::EndCell>>);

impl StreamUsage {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, crate::stream::EndCell>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    /// Forgets stream `id`'s cell and says what its producer reported.
    fn take(&self, id: u64) -> crate::stream::EndReport {
        match self.lock().remove(&id) {
            Some(cell) => cell
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            None => crate::stream::EndReport::default(),
        }
    }
}

impl<P: Plugin> Exported for Shim<P> {
    fn manifest_json() -> Result<String, String> {
        let mut manifest = P::manifest();
        manifest.config.defaults = serde_json::to_value(P::Config::default()).map_err(|error| {
            format!("the config type's default could not be serialised: {error}")
        })?;
        serde_json::to_string(&manifest)
            .map_err(|error| format!("the manifest could not be serialised: {error}"))
    }

    fn instantiate(host: HostBox) -> Result<PluginBox, String> {
        let instance = Instance::<P> {
            host,
            plugin: Arc::new(OnceLock::new()),
            streams: Arc::default(),
            stream_usage: Arc::default(),
        };
        Ok(PluginObject_TO::from_value(instance, TD_Opaque))
    }
}

impl<P: Plugin> PluginObject for Instance<P> {
    fn call(&self, op: RString, input: Message) -> FfiFuture<CallResult> {
        match catch_panic(|| self.dispatch(op.as_str(), input)) {
            Ok(call) => async move {
                match catch_panic_future(call).await {
                    Ok(message) => RResult::ROk(message),
                    Err(error) => RResult::RErr(error),
                }
            }
            .into_ffi(),
            Err(error) => async move { RResult::RErr(error) }.into_ffi(),
        }
    }
}

fn encode<T: Serialize>(meta: &T, body: Vec<u8>) -> Result<Message, AbiError> {
    let meta = serde_json::to_string(meta).map_err(|error| {
        AbiError::new(
            ErrorCode::Internal,
            format!("answer could not be serialised: {error}"),
        )
    })?;
    Ok(Message {
        meta: meta.into(),
        body: body.into(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(input: &Message) -> Result<T, AbiError> {
    parse_meta(&input.meta).map_err(PluginError::into_abi)
}

impl<P: Plugin> Instance<P> {
    fn initialized(&self) -> Result<Arc<P>, AbiError> {
        self.plugin
            .get()
            .cloned()
            .ok_or_else(|| AbiError::new(ErrorCode::NotInitialized, "plugin is not initialised"))
    }

    fn dispatch(&self, op: &str, input: Message) -> Result<BoxedCall, AbiError> {
        let boxed: BoxedCall = match op {
            op::INITIALIZE => {
                let init: protocol::InitializeInput = decode(&input)?;
                crate::log::install(self.host.clone(), &init.plugin_name);
                let config = config_from(init.config.clone()).map_err(PluginError::into_abi)?;
                let ctx = Context::new(self.host.clone(), &init);
                let slot = self.plugin.clone();
                Box::pin(async move {
                    let plugin = P::init(ctx, config).await.map_err(PluginError::into_abi)?;
                    let configured = plugin.configured_endpoints();
                    let provider_retries = plugin.provider_retries();
                    if slot.set(Arc::new(plugin)).is_err() {
                        return Err(AbiError::new(
                            ErrorCode::Invalid,
                            "plugin was initialised twice",
                        ));
                    }
                    if configured.is_empty() && !provider_retries {
                        return Ok(Message::default());
                    }
                    let output = protocol::InitializeOutput {
                        configured_endpoints: (!configured.is_empty()).then_some(configured),
                        provider_retries,
                    };
                    encode(&Some(output), Vec::new())
                })
            }
            op::ROUTE => {
                let plugin = self.initialized()?;
                let route: protocol::RouteInput = decode(&input)?;
                let req =
                    Request::from_head(route.head, route.route, route.params, body_vec(input.body));
                let streams = self.streams.clone();
                let stream_usage = self.stream_usage.clone();
                Box::pin(async move {
                    match plugin
                        .on_route_response(req)
                        .await
                        .map_err(PluginError::into_abi)?
                    {
                        RouteResponse::Full(response) => {
                            let (head, body) = response.into_parts();
                            encode(&head, body)
                        }
                        RouteResponse::Stream(response) => {
                            let usage = response.body.end_cell();
                            let stream = streams.insert(response.body);
                            stream_usage.lock().insert(stream, usage);
                            let head = protocol::ResponseHead {
                                status: response.status,
                                headers: response.headers.0,
                                stream: Some(stream),
                                answered_by: response.answered_by,
                                usage: None,
                            };
                            encode(&head, Vec::new())
                        }
                    }
                })
            }
            <ops::RouteStreamNext as Operation>::NAME => {
                let input: protocol::StreamRef = decode(&input)?;
                let streams = self.streams.clone();
                let stream_usage = self.stream_usage.clone();
                Box::pin(async move {
                    match streams.next(input.stream).await {
                        Some(Ok(piece)) => encode(
                            &protocol::RouteStreamChunk {
                                end: false,
                                ..Default::default()
                            },
                            piece,
                        ),
                        Some(Err(error)) => {
                            stream_usage.take(input.stream);
                            Err(error.into_abi())
                        }
                        None => {
                            let report = stream_usage.take(input.stream);
                            let chunk = protocol::RouteStreamChunk {
                                end: true,
                                usage: report.usage,
                                model: report.model,
                            };
                            encode(&chunk, Vec::new())
                        }
                    }
                })
            }
            <ops::RouteStreamCancel as Operation>::NAME => {
                let input: protocol::StreamRef = decode(&input)?;
                self.streams.cancel(input.stream);
                self.stream_usage.take(input.stream);
                Box::pin(async { Ok(Message::default()) })
            }
            <ops::BlockingRun as Operation>::NAME => {
                // The host calls this on a thread that may block, so the job
                // runs right here, inside the panic guard of `call`.
                let input: protocol::BlockingInput = decode(&input)?;
                crate::blocking::run(input.job).map_err(PluginError::into_abi)?;
                Box::pin(async { Ok(Message::default()) })
            }
            op::HOOK => {
                let plugin = self.initialized()?;
                // The data stays JSON text until the plugin reads it.
                let hook: HookInputText = decode(&input)?;
                let mut body = body_vec(input.body);
                let data = match hook.data_len {
                    // 1.1: the data is the front of the body.
                    Some(length) => {
                        let length = usize::try_from(length)
                            .ok()
                            .filter(|&length| length <= body.len())
                            .ok_or_else(|| {
                                AbiError::new(
                                    ErrorCode::Invalid,
                                    "hook data_len is longer than the body",
                                )
                            })?;
                        let rest = body.split_off(length);
                        let text = String::from_utf8(std::mem::replace(&mut body, rest)).map_err(
                            |_| AbiError::new(ErrorCode::Invalid, "hook data is not UTF-8"),
                        )?;
                        Err(text)
                    }
                    None => Ok(hook.data.unwrap_or_else(null_data)),
                };
                let call = HookCall::decoded(
                    hook.hook,
                    HookEvent::from_name(&hook.event),
                    hook.timestamp_ms,
                    hook.request_id,
                    data,
                    body,
                );
                // Kept for the fields a hook annotates (this path is taken
                // only by hosts that do not send `hook.batch`).
                let annotations = call.annotations().clone();
                let data = call.data_json().to_owned();
                Box::pin(async move {
                    match plugin
                        .on_hook_call(call)
                        .await
                        .map_err(PluginError::into_abi)?
                    {
                        HookOutcome::Continue => {
                            let fields = annotations.take();
                            if fields.is_empty() {
                                return encode(&protocol::HookOutput::default(), Vec::new());
                            }
                            let data = annotated_value(&data, fields).map_err(|error| {
                                AbiError::new(ErrorCode::Internal, error.to_string())
                            })?;
                            encode(
                                &protocol::HookOutput {
                                    data: Some(data),
                                    replace_body: false,
                                },
                                Vec::new(),
                            )
                        }
                        HookOutcome::Modify { data, body } => {
                            let replace_body = body.is_some();
                            encode(
                                &protocol::HookOutput {
                                    data: Some(data),
                                    replace_body,
                                },
                                body.unwrap_or_default(),
                            )
                        }
                    }
                })
            }
            crate::hook_wire::FEATURES_OP => {
                // Asked before `plugin.initialize`: what this SDK speaks.
                let mut features = vec![
                    crate::hook_wire::HOOK_BATCH.to_owned(),
                    crate::fields::PREPARE_FIELDS.to_owned(),
                ];
                if shares_host_heap() {
                    features.push(crate::hook_wire::SHARED_HEAP.to_owned());
                }
                let features = crate::hook_wire::Features { features };
                let reply = encode(&features, Vec::new());
                Box::pin(async move { reply })
            }
            crate::hook_wire::BATCH_OP => hook_batch(self.initialized()?, input)?,
            op::TASK => {
                let plugin = self.initialized()?;
                let task: protocol::TaskInput = decode(&input)?;
                Box::pin(async move {
                    plugin
                        .on_task(task.task)
                        .await
                        .map_err(PluginError::into_abi)?;
                    Ok(Message::default())
                })
            }
            op::SERVICE => {
                let plugin = self.initialized()?;
                let call: protocol::ServiceInput = decode(&input)?;
                let call = ServiceCall {
                    service: call.service,
                    method: call.method,
                    args: call.args,
                    caller: call.caller,
                };
                Box::pin(async move {
                    let value = plugin
                        .on_service_call(call)
                        .await
                        .map_err(PluginError::into_abi)?;
                    encode(&value, Vec::new())
                })
            }
            op::MIDDLEWARE_REQUEST => {
                let plugin = self.initialized()?;
                let input: protocol::MiddlewareRequestInput = decode(&input)?;
                let request = MiddlewareRequest {
                    middleware: input.middleware,
                    method: input.request.method,
                    path: input.request.path,
                    query: input.request.query,
                    headers: Headers(input.request.headers),
                    request_id: input.request.request_id,
                };
                Box::pin(async move {
                    match plugin
                        .on_middleware_request(request)
                        .await
                        .map_err(PluginError::into_abi)?
                    {
                        MiddlewareAction::Continue { set_headers } => encode(
                            &protocol::MiddlewareRequestOutput {
                                respond: None,
                                set_headers,
                            },
                            Vec::new(),
                        ),
                        MiddlewareAction::Respond(response) => {
                            let (head, body) = response.into_parts();
                            encode(
                                &protocol::MiddlewareRequestOutput {
                                    respond: Some(head),
                                    set_headers: Vec::new(),
                                },
                                body,
                            )
                        }
                    }
                })
            }
            op::MIDDLEWARE_RESPONSE => {
                let plugin = self.initialized()?;
                let input: protocol::MiddlewareResponseInput = decode(&input)?;
                let response = MiddlewareResponse {
                    middleware: input.middleware,
                    path: input.request.path,
                    request_id: input.request.request_id,
                    status: input.response.status,
                    headers: Headers(input.response.headers),
                };
                Box::pin(async move {
                    let (status, headers) = plugin
                        .on_middleware_response(response)
                        .await
                        .map_err(PluginError::into_abi)?;
                    encode(
                        &protocol::ResponseHead {
                            status,
                            headers: headers.0,
                            stream: None,
                            answered_by: None,
                            usage: None,
                        },
                        Vec::new(),
                    )
                })
            }
            op::PROVIDER_PREPARE => {
                let plugin = self.initialized()?;
                // Netstrings from a host that knows this SDK reads them (it
                // reads the answer so too), JSON otherwise.
                let in_fields = input.meta.starts_with(crate::fields::MARK);
                let prepare: protocol::ProviderPrepareInput = if in_fields {
                    crate::fields::read_prepare(&input.meta)
                        .map_err(|error| AbiError::new(ErrorCode::Invalid, error.to_string()))?
                } else {
                    decode(&input)?
                };
                let req = ProviderRequest {
                    endpoint: prepare.endpoint,
                    client_format: prepare.client_format,
                    native_format: prepare.native_format,
                    stream: prepare.stream,
                    model: prepare.model,
                    headers: Headers(prepare.request.headers),
                    query: prepare.request.query,
                    body: body_vec(input.body),
                    request_id: prepare.request.request_id,
                    attempt: prepare.attempt,
                    body_members: prepare.body_members,
                };
                Box::pin(async move {
                    let upstream = plugin
                        .on_prepare_upstream(req)
                        .await
                        .map_err(PluginError::into_abi)?;
                    let output = protocol::ProviderPrepareOutput {
                        method: upstream.method,
                        url: upstream.url,
                        headers: upstream.headers.0,
                        stream: upstream.stream,
                        model_alias: upstream.model_alias,
                        timeout_ms: upstream
                            .timeout
                            .map_or(0, |t| t.as_millis().min(u128::from(u64::MAX)) as u64),
                        account: upstream.account,
                        retry: upstream.retry,
                        delay_ms: upstream.delay.map_or(0, crate::plugin::duration_ms),
                        exhausted: upstream.exhausted,
                    };
                    if !in_fields {
                        return encode(&output, upstream.body);
                    }
                    Ok(Message {
                        meta: crate::fields::write_prepare_output(&output).into(),
                        body: upstream.body.into(),
                    })
                })
            }
            <ops::FormatConvert as Operation>::NAME => {
                let plugin = self.initialized()?;
                let convert: protocol::FormatConvertInput = decode(&input)?;
                let kind = ConversionKind::from_name(&convert.kind).ok_or_else(|| {
                    AbiError::new(
                        ErrorCode::Unsupported,
                        format!(
                            "conversion kind {} is not known to this plugin's SDK version",
                            convert.kind
                        ),
                    )
                })?;
                let conversion = FormatConversion {
                    from: convert.from,
                    to: convert.to,
                    kind,
                    stream: convert.stream,
                    body: body_vec(input.body),
                };
                Box::pin(async move {
                    let body = plugin
                        .on_format_convert(conversion)
                        .await
                        .map_err(PluginError::into_abi)?;
                    encode(&Value::Null, body)
                })
            }
            op::HEALTH => {
                let plugin = self.initialized()?;
                Box::pin(async move {
                    let health = plugin.on_health().await;
                    encode(
                        &protocol::HealthOutput {
                            status: health.status.as_str().to_owned(),
                            details: health.details,
                        },
                        Vec::new(),
                    )
                })
            }
            op::SHUTDOWN => {
                let plugin = self.plugin.get().cloned();
                Box::pin(async move {
                    if let Some(plugin) = plugin {
                        plugin.on_shutdown().await;
                    }
                    Ok(Message::default())
                })
            }
            other => {
                return Err(AbiError::new(
                    ErrorCode::Unsupported,
                    format!("operation {other} is not supported by this plugin's SDK version"),
                ));
            }
        };
        Ok(boxed)
    }
}

/// Runs the hook calls of a `hook.batch` frame one after another, as
/// separate `hook.call`s would, and answers each one's outcome; a hook that
/// fails or panics fails its own entry only. The frame is read before any
/// hook runs, so a malformed one fails the whole call and runs nothing.
fn hook_batch<P: Plugin>(plugin: Arc<P>, input: Message) -> Result<BoxedCall, AbiError> {
    use crate::hook_wire::{Reader, ReplyWriter};
    use futures_util::FutureExt as _;

    let invalid =
        |error: crate::hook_wire::FrameError| AbiError::new(ErrorCode::Invalid, error.to_string());
    // The calls' data stays in the frame, shared, not copied per call.
    let frame = shared_frame(input.body);
    let mut reader = Reader::new(&frame);
    let count = reader.call_header().map_err(invalid)?;
    let mut calls = Vec::with_capacity(count.min(1024));
    for number in 0..count {
        calls.push(HookCall::from_entry(
            &frame,
            reader.entry().map_err(invalid)?,
            number,
        ));
    }
    Ok(Box::pin(async move {
        let mut reply = ReplyWriter::new(calls.len());
        for call in calls {
            let (data, index) = call.frame_ranges();
            let annotations = call.annotations().clone();
            let outcome = std::panic::AssertUnwindSafe(plugin.on_hook_call(call))
                .catch_unwind()
                .await;
            match outcome {
                Ok(Ok(HookOutcome::Continue)) => {
                    let fields = annotations.take();
                    if fields.is_empty() {
                        reply.proceed();
                        continue;
                    }
                    let data = frame
                        .get(data)
                        .and_then(|bytes| std::str::from_utf8(bytes).ok())
                        .unwrap_or("null");
                    let index = frame.get(index).unwrap_or_default();
                    let annotated = match crate::hook_wire::with_fields(data, index, &fields) {
                        Some(spliced) => Ok(spliced),
                        None => annotated_value(data, fields)
                            .and_then(|value| crate::hook_wire::to_indexed_json(&value)),
                    };
                    match annotated {
                        Ok((text, index)) => reply.modify(&text, Some(&index), None),
                        Err(error) => reply.fail(
                            ErrorCode::Internal as u32,
                            &format!("annotated hook data could not be written: {error}"),
                        ),
                    }
                }
                Ok(Ok(HookOutcome::Modify { data, body })) => {
                    // Indexed as the host indexes its own data, so the
                    // later hooks of the event read only what they name.
                    match crate::hook_wire::to_indexed_json(&data) {
                        Ok((text, index)) => reply.modify(&text, Some(&index), body.as_deref()),
                        Err(error) => reply.fail(
                            ErrorCode::Internal as u32,
                            &format!("hook data could not be serialised: {error}"),
                        ),
                    }
                }
                Ok(Err(error)) => {
                    let error = error.into_abi();
                    reply.fail(error.code, error.message.as_str());
                }
                Err(payload) => reply.fail(
                    ErrorCode::Panicked as u32,
                    &format!(
                        "plugin panicked: {}",
                        crate::raw::panic_message(payload.as_ref())
                    ),
                ),
            }
        }
        Ok(Message {
            meta: RString::new(),
            body: reply.finish().into(),
        })
    }))
}

/// Event data `data` with `fields` (`(key, JSON text)`, from
/// [`HookCall::annotate`]) set at its top level, through a [`Value`]: for
/// data without an index (or not an object, which becomes one).
fn annotated_value(data: &str, fields: Vec<(String, String)>) -> Result<Value, serde_json::Error> {
    let mut value: Value = serde_json::from_str(data)?;
    if !value.is_object() {
        value = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(object) = &mut value {
        for (key, json) in fields {
            object.insert(key, serde_json::from_str(&json)?);
        }
    }
    Ok(value)
}

/// [`protocol::HookInput`] with its data kept as text (same JSON).
#[derive(serde::Deserialize)]
struct HookInputText {
    #[serde(default)]
    hook: String,
    event: String,
    #[serde(default)]
    timestamp_ms: u64,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    data_len: Option<u64>,
}

fn null_data() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// Deserialises the plugin's config; `null` or `{}` become the default.
fn config_from<C: serde::de::DeserializeOwned + Default>(value: Value) -> Result<C, PluginError> {
    let is_empty = match &value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    };
    match serde_json::from_value(value) {
        Ok(config) => Ok(config),
        Err(_) if is_empty => Ok(C::default()),
        Err(error) => Err(PluginError::invalid(format!("invalid config: {error}"))),
    }
}

// Keeps the raw box type nameable for the macro without exposing RBox to authors.
#[doc(hidden)]
pub type _PluginBoxCheck = PluginObject_TO<'static, RBox<()>>;
