//! Test plugin `middleware_probe`: one SECURITY-layer middleware and one route,
//! to prove the order and the effects of middleware.
//!
//! - request side: a request carrying `x-block: 1` is answered 403 with a JSON
//!   body before its route runs; every other request gets the header
//!   `x-seen-by: middleware_probe` added on its way in;
//! - response side: every response gets `x-probe: 1`;
//! - `GET /probe/echo-headers` answers the request headers (as the route saw
//!   them, after the middleware) as a JSON object;
//! - `POST /probe/echo-body` answers the length of the body it received;
//! - `GET /probe/slow?ms=N` waits N ms (on the host's timer) before answering,
//!   to have a request in flight during shutdown;
//! - a hook on `request.completed` that, for requests that carried the header
//!   `x-slow-hook: N`, waits N ms and then logs `probe hook finished for ID`:
//!   a slow observer, to prove hooks add no latency and are not cut off by
//!   shutdown.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::{Value, prelude::*};

/// The plugin: only its host handle.
struct MiddlewareProbe {
    ctx: Context,
}

impl Plugin for MiddlewareProbe {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("middleware_probe", "0.1.0")
            .description("blocks x-block: 1, marks requests and responses")
            .middleware("probe_guard", layer::SECURITY, true)
            .hook("probe_slow_observer", ["request.completed"], 500)
            .route(
                "/probe",
                [
                    Route::get("/echo-headers"),
                    Route::post("/echo-body"),
                    Route::get("/slow"),
                ],
            )
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(MiddlewareProbe { ctx })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        match req.route.as_str() {
            "/probe/echo-body" => {
                return Ok(Response::json(
                    200,
                    &json!({ "received_bytes": req.body.len() }),
                ));
            }
            "/probe/slow" => {
                let millis = req
                    .query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("ms="))
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .unwrap_or(500);
                self.ctx
                    .sleep(std::time::Duration::from_millis(millis))
                    .await;
                return Ok(Response::json(200, &json!({ "slept_ms": millis })));
            }
            _ => {}
        }
        let headers: ccproxy_plugin_abi::serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), Value::String(value.to_owned())))
            .collect();
        Ok(Response::json(200, &json!({ "headers": headers })))
    }

    async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
        let millis = hook
            .data
            .get("headers")
            .and_then(|headers| headers.get("x-slow-hook"))
            .and_then(Value::as_str)
            .and_then(|ms| ms.parse::<u64>().ok());
        if let Some(millis) = millis {
            self.ctx
                .sleep(std::time::Duration::from_millis(millis))
                .await;
            let request_id = hook.request_id.as_deref().unwrap_or("-");
            info!("probe hook finished for {request_id}");
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_middleware_request(
        &self,
        request: MiddlewareRequest,
    ) -> Result<MiddlewareAction, PluginError> {
        if request.headers.get("x-block") == Some("1") {
            let body = json!({
                "error": {
                    "type": "blocked",
                    "message": format!("blocked by middleware_probe: {} {}", request.method, request.path),
                }
            });
            return Ok(MiddlewareAction::Respond(Response::json(403, &body)));
        }
        Ok(MiddlewareAction::Continue {
            set_headers: vec![("x-seen-by".to_owned(), "middleware_probe".to_owned())],
        })
    }

    async fn on_middleware_response(
        &self,
        response: MiddlewareResponse,
    ) -> Result<(u16, Headers), PluginError> {
        let mut headers = response.headers;
        headers.set("x-probe", "1");
        Ok((response.status, headers))
    }
}

export_plugin!(MiddlewareProbe);
