//! Test plugin `hello_v1_2`: written against the plugin API as it shipped in
//! 1.2 (`../plugin-abi-1.2`, a frozen copy), built on its own, and loaded by the
//! end-to-end tests into today's host next to `hello_v1_0` and `hello_v1_1`. It
//! uses what 1.2 added, so the compatibility promise is proved for those too:
//!
//! - `GET /v1_2/ticks`, a streamed route (`Plugin::on_route_response` answering
//!   a `StreamResponse`): three server-sent events `data: {"n":N}` written into
//!   a `BodyStream::channel` by a task (`Context::spawn`) that waits on the
//!   host's timer between them;
//! - a hook on `request.completed` subscribed with the client's request body
//!   (`Manifest::hook_with_bodies`, `HookBody::RequestBody`): it counts the
//!   completed requests, those with a body and the body bytes, and keeps the
//!   last body and its path;
//! - `POST /v1_2/sum`: sums the JSON array of numbers it is sent on one of the
//!   host's blocking threads (`Context::blocking`) and says whether that was
//!   another thread than the route's;
//! - `GET /v1_2/count`, a public route (`Route::public`, no client token needed):
//!   what the hook saw and what the streams sent;
//! - a provider endpoint, `POST /v1_2/provider/v1/messages` (Anthropic
//!   Messages, passed through): `on_prepare_upstream` sends the body to
//!   `$CCPROXY_TEST_HELLO_UPSTREAM/v1/messages` with header `x-seen`, the
//!   JSON of what it was handed (the request's model, stream, query, request
//!   id, endpoint, formats and its `x-hello` header): a host that writes
//!   `provider.prepare`'s metadata another way for newer SDKs must still
//!   hand a 1.2 provider the same request.
#![forbid(unsafe_code)]

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use ccproxy_plugin_abi::{prelude::*, protocol::capability, serde::Deserialize};

/// How many events `/v1_2/ticks` sends.
const TICKS: u64 = 3;
/// How long the stream waits on the host's timer between two events.
const TICK_INTERVAL: Duration = Duration::from_millis(150);
/// The most of a request body the hook keeps to report.
const KEPT_BODY_BYTES: usize = 1024;

/// The one key of `request.completed` the hook reads.
#[derive(Deserialize)]
#[serde(crate = "ccproxy_plugin_abi::serde")]
struct Completed<'a> {
    path: &'a str,
}

/// What the body hook saw.
#[derive(Default)]
struct Bodies {
    completed: u64,
    with_body: u64,
    body_bytes: u64,
    last_path: String,
    last_body: String,
}

/// The plugin: its host handle, what the hook saw and what the streams did.
struct HelloV12 {
    ctx: Context,
    bodies: Mutex<Bodies>,
    ticks_sent: Arc<AtomicU64>,
    streams_finished: Arc<AtomicU64>,
}

impl Plugin for HelloV12 {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("hello_v1_2", "1.2.0")
            .description("built against the frozen plugin API 1.2")
            .route(
                "/v1_2",
                [
                    Route::get("/ticks"),
                    Route::post("/sum"),
                    Route::get("/count").public(),
                ],
            )
            .provider("anthropic.messages")
            .provider_endpoint("/v1_2/provider/v1/messages", "anthropic.messages")
            .hook_with_bodies(
                "request_bodies",
                [HookEvent::RequestCompleted.as_str()],
                500,
                [HookBody::RequestBody],
            )
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        info!(
            "hello_v1_2 ready: built for plugin API {}, host speaks {}",
            ccproxy_plugin_abi::API_VERSION,
            ctx.host_api_version()
        );
        Ok(HelloV12 {
            ctx,
            bodies: Mutex::new(Bodies::default()),
            ticks_sent: Arc::new(AtomicU64::new(0)),
            streams_finished: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
        match req.route.as_str() {
            "/v1_2/ticks" => Ok(self.ticks().into()),
            "/v1_2/sum" => self.sum(&req).await.map(RouteResponse::from),
            "/v1_2/count" => Ok(self.count().into()),
            other => Err(PluginError::not_found(format!("no handler for {other}"))),
        }
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let upstream = std::env::var("CCPROXY_TEST_HELLO_UPSTREAM").map_err(|_| {
            PluginError::unavailable("set CCPROXY_TEST_HELLO_UPSTREAM to the upstream's URL")
        })?;
        let seen = json!({
            "endpoint": req.endpoint,
            "client_format": req.client_format,
            "native_format": req.native_format,
            "model": req.model,
            "stream": req.stream,
            "query": req.query,
            "request_id": req.request_id,
            "hello": req.headers.get("x-hello"),
            "body_bytes": req.body.len(),
        });
        Ok(UpstreamRequest {
            method: "POST".to_owned(),
            url: format!("{upstream}/v1/messages"),
            headers: Headers(vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-seen".to_owned(), seen.to_string()),
            ]),
            body: req.body,
            stream: req.stream,
            ..UpstreamRequest::default()
        })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        if call.event == HookEvent::RequestCompleted {
            let completed: Completed = call.data()?;
            let mut bodies = self.bodies.lock().unwrap_or_else(PoisonError::into_inner);
            bodies.completed += 1;
            if !call.body.is_empty() {
                bodies.with_body += 1;
                bodies.body_bytes += call.body.len() as u64;
                bodies.last_path = completed.path.to_owned();
                let kept = &call.body[..call.body.len().min(KEPT_BODY_BYTES)];
                bodies.last_body = String::from_utf8_lossy(kept).into_owned();
            }
        }
        Ok(HookOutcome::Continue)
    }
}

impl HelloV12 {
    /// Three events, produced one by one while the host reads them.
    fn ticks(&self) -> StreamResponse {
        let (mut sender, body) = BodyStream::channel(1);
        let timer = self.ctx.clone();
        let ticks_sent = self.ticks_sent.clone();
        let streams_finished = self.streams_finished.clone();
        self.ctx.spawn(async move {
            for n in 1..=TICKS {
                if n > 1 {
                    timer.sleep(TICK_INTERVAL).await;
                }
                // Fails once the client has gone: stop producing then.
                if sender
                    .send(format!("data: {{\"n\":{n}}}\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                ticks_sent.fetch_add(1, Ordering::Relaxed);
            }
            // Dropping the sender ends the body.
            streams_finished.fetch_add(1, Ordering::Relaxed);
        });
        StreamResponse::sse(body)
    }

    /// The sum of the posted numbers, computed on a blocking thread.
    async fn sum(&self, req: &Request) -> Result<Response, PluginError> {
        let numbers: Vec<u64> = req.json()?;
        let route_thread = thread::current().id();
        let (sum, other_thread) = self
            .ctx
            .blocking(move || {
                let sum = numbers.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
                (sum, thread::current().id() != route_thread)
            })
            .await?;
        Ok(Response::json(
            200,
            &json!({
                "sum": sum,
                "other_thread": other_thread,
                "blocking_capability": self.ctx.has_capability(capability::BLOCKING),
            }),
        ))
    }

    fn count(&self) -> Response {
        let bodies = self.bodies.lock().unwrap_or_else(PoisonError::into_inner);
        Response::json(
            200,
            &json!({
                "plugin_api": ccproxy_plugin_abi::API_VERSION,
                "hook_bodies_capability": self.ctx.has_capability(capability::HOOK_BODIES),
                "completed": bodies.completed,
                "with_body": bodies.with_body,
                "body_bytes": bodies.body_bytes,
                "last_path": bodies.last_path,
                "last_body": bodies.last_body,
                "ticks_sent": self.ticks_sent.load(Ordering::Relaxed),
                "streams_finished": self.streams_finished.load(Ordering::Relaxed),
            }),
        )
    }
}

export_plugin!(HelloV12);
