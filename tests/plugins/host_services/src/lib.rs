//! Test plugin for `tests/e2e/host_services.rs`: every route uses one of the
//! plugin API 1.2 host operations, as a third-party plugin would.
//!
//! - `GET /svc/blocking?ms=N`: a blocking job (N ms, default 200, of
//!   `std::thread::sleep`, then a file written under the data dir) run on the
//!   host's blocking pool; answers when it ran (ms since the epoch);
//! - `GET /svc/process`: `cat` fed lines on stdin and read back piece by
//!   piece, and `sh -c 'echo err >&2; exit 3'`'s stderr and exit code;
//! - `GET /svc/missing`: a program that does not exist (the error goes out);
//! - `GET /svc/sleeper`: starts `sleep 120` and keeps it (the host must kill
//!   it when it stops);
//! - `GET /svc/forward`: a streamed Anthropic answer of the upstream in
//!   `[plugins.host_services] upstream` forwarded as it arrives;
//! - `GET /svc/status`: the plugins status;
//! - `GET /svc/capabilities`: which 1.2 capabilities the host offers.
#![forbid(unsafe_code)]

use std::{sync::Mutex, time::Duration};

use ccproxy_plugin_abi::{prelude::*, protocol::capability};
use serde::{Deserialize, Serialize};

/// `[plugins.host_services]`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The upstream `/svc/forward` streams from (`http://127.0.0.1:PORT`).
    upstream: String,
}

/// The plugin.
pub struct HostServices {
    ctx: Context,
    config: Config,
    /// Children started by `/svc/sleeper`, kept running.
    sleepers: Mutex<Vec<ChildProcess>>,
}

impl HostServices {
    async fn blocking(&self, req: &Request) -> Result<Response, PluginError> {
        let dir = self.ctx.data_dir().join("blocking");
        let file = dir.join(format!("{}.txt", req.request_id));
        let written = file.clone();
        let ms = req
            .query
            .strip_prefix("ms=")
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(200);
        let epoch_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let (started_ms, ended_ms) = self
            .ctx
            .blocking(move || {
                let started = epoch_ms();
                std::thread::sleep(Duration::from_millis(ms));
                std::fs::create_dir_all(&dir)?;
                std::fs::write(&written, "done")?;
                Ok::<_, std::io::Error>((started, epoch_ms()))
            })
            .await?
            .map_err(|error| PluginError::internal(format!("cannot write the file: {error}")))?;
        Ok(Response::json(
            200,
            &json!({"file": file.display().to_string(), "elapsed_ms": ended_ms - started_ms,
                "started_ms": started_ms, "ended_ms": ended_ms}),
        ))
    }

    async fn process(&self) -> Result<Response, PluginError> {
        let mut cat = self.ctx.spawn_process(Command::new("cat")).await?;
        let mut pieces = Vec::new();
        for line in ["one\n", "two\n", "three\n"] {
            cat.write(line).await?;
            // Each line comes back before the next is written: read as it goes.
            let mut echoed = Vec::new();
            while echoed.len() < line.len() {
                match cat.read_stdout().await? {
                    Some(piece) => echoed.extend_from_slice(&piece),
                    None => break,
                }
            }
            pieces.push(String::from_utf8_lossy(&echoed).into_owned());
        }
        cat.close_stdin().await?;
        let rest = cat.read_stdout().await?;
        let cat_exit = cat.wait().await?;

        let mut failing = self
            .ctx
            .spawn_process(Command::new("sh").args(["-c", "echo err >&2; exit 3"]))
            .await?;
        let mut stderr = Vec::new();
        while let Some(piece) = failing.read_stderr().await? {
            stderr.extend_from_slice(&piece);
        }
        let stdout = failing.read_stdout().await?;
        let exit = failing.wait().await?;
        Ok(Response::json(
            200,
            &json!({
                "pieces": pieces,
                "rest": rest.map(|piece| String::from_utf8_lossy(&piece).into_owned()),
                "cat_code": cat_exit.code,
                "code": exit.code,
                "success": exit.success(),
                "stderr": String::from_utf8_lossy(&stderr),
                "stdout": stdout.map(|piece| String::from_utf8_lossy(&piece).into_owned()),
            }),
        ))
    }

    async fn sleeper(&self) -> Result<Response, PluginError> {
        let child = self
            .ctx
            .spawn_process(Command::new("sleep").arg("120"))
            .await?;
        let pid = child.pid();
        self.sleepers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(child);
        Ok(Response::json(200, &json!({"pid": pid})))
    }

    async fn forward(&self) -> Result<RouteResponse, PluginError> {
        let body = json!({
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "Hello"}],
        });
        let mut request = HttpRequest::post(
            format!("{}/v1/messages", self.config.upstream),
            body.to_string(),
        )
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
        request.timeout = Some(Duration::from_secs(10));
        let upstream = self.ctx.http_stream(request).await?;
        let mut response = StreamResponse::new(upstream.status, upstream.body);
        for name in ["content-type", "x-mock-sample"] {
            if let Some(value) = upstream.headers.get(name) {
                response.headers.set(name, value);
            }
        }
        Ok(response.into())
    }
}

impl Plugin for HostServices {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("host_services", env!("CARGO_PKG_VERSION")).route(
            "/svc",
            [
                Route::get("/blocking"),
                Route::get("/process"),
                Route::get("/missing"),
                Route::get("/sleeper"),
                Route::get("/forward"),
                Route::get("/status"),
                Route::get("/capabilities"),
                Route::get("/allocator"),
                Route::post("/allocator"),
            ],
        )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        Ok(HostServices {
            ctx,
            config,
            sleepers: Mutex::default(),
        })
    }

    async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
        match req.route.as_str() {
            "/svc/blocking" => self.blocking(&req).await.map(Into::into),
            "/svc/process" => self.process().await.map(Into::into),
            "/svc/missing" => {
                let command = Command::new("ccproxy-test-no-such-program").arg("--version");
                self.ctx.spawn_process(command).await?;
                Ok(Response::text(200, "started?").into())
            }
            "/svc/sleeper" => self.sleeper().await.map(Into::into),
            "/svc/forward" => self.forward().await,
            "/svc/status" => Ok(Response::json(200, &self.ctx.plugins_status().await?).into()),
            "/svc/capabilities" => {
                let offered: ccproxy_plugin_abi::serde_json::Map<String, Value> = [
                    capability::HTTP_STREAM,
                    capability::BLOCKING,
                    capability::PROCESS,
                    capability::PLUGINS_STATUS,
                    capability::STREAM_ROUTES,
                    capability::HOOK_BODIES,
                    capability::PUBLIC_ROUTES,
                    capability::FORMAT_ADAPTERS,
                ]
                .into_iter()
                .map(|name| (name.to_owned(), json!(self.ctx.has_capability(name))))
                .collect();
                Ok(Response::json(200, &offered).into())
            }
            "/svc/allocator" => Ok(Response::json(
                200,
                &json!({
                    "host_allocator": ccproxy_plugin_abi::allocator::uses_host_allocator(),
                    "shared_heap": ccproxy_plugin_abi::allocator::shares_host_heap(),
                    // The host's buffer, kept by this library without a copy
                    // when the heap is shared, and freed here.
                    "received": req.body.len(),
                    "received_ends": [req.body.first(), req.body.last()],
                    // Memory made here and freed by the host's side after the
                    // answer crosses back: a large body exercises the path.
                    "filler": "x".repeat(64 * 1024),
                }),
            )
            .into()),
            other => Err(PluginError::not_found(format!("no route {other}"))),
        }
    }
}

export_plugin!(HostServices);
