//! The lean upstream (`ccproxy-bench upstream`): `POST /v1/messages` answered
//! from the recorded samples of `tests/data/samples`, chosen exactly as the
//! mock upstream of the end-to-end tests chooses them (its library does the
//! choosing and the SSE framing), but encoded once at start and with nothing
//! recorded per request.
//!
//! Why not the mock upstream itself: it keeps every request it received (the
//! body parsed and as text, for `GET /_mock/requests`), about 280 KB per 50 KB
//! request, and never gives that memory back: 10,000 large requests left it at
//! 2.9 GB. A benchmark sends hundreds of thousands. It also parses each body
//! twice, which makes "direct" slower and flatters the proxy's RPS ratio.
//! `--shared-mock` runs the benchmark against it anyway (with a reset after
//! every round).
//!
//! Which answer: a body containing `"tools":[{` gets the tools sample, one
//! containing `"stream":true` a stream (one event per body frame). The
//! benchmark's bodies and the proxy's re-serialised ones are compact JSON, so a
//! byte search is enough and costs the same for direct and proxied requests.

use std::{convert::Infallible, io::Write as _, time::Duration};

use bytes::Bytes;
use ccproxy_mock_upstream::{Format, Reply, Samples, default_samples_dir};
use futures_util::stream;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

type Body = BoxBody<Bytes, Infallible>;

/// One answer, encoded once.
struct Canned {
    headers: Vec<(HeaderName, HeaderValue)>,
    reply: Encoded,
}

enum Encoded {
    Json(Bytes),
    Events(Vec<Bytes>),
}

/// The four answers: `[tools as usize][stream as usize]`.
struct Answers([[Canned; 2]; 2]);

fn canned(samples: &Samples, tools: bool, stream: bool) -> Result<Canned, String> {
    let mut request =
        json!({"model": "claude-sonnet-4-5-20250929", "messages": [], "stream": stream});
    if tools {
        request["tools"] = json!([{"name": "t", "input_schema": {"type": "object"}}]);
    }
    let selected = samples.select(Format::Anthropic, &request)?;
    let mut headers = Vec::new();
    for (name, value) in &selected.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.push((name, value));
        }
    }
    let reply = match selected.reply {
        Reply::Json(value) => Encoded::Json(Bytes::from(
            serde_json::to_vec(&value).map_err(|error| error.to_string())?,
        )),
        Reply::Events(events) => {
            Encoded::Events(events.iter().map(|e| Bytes::from(e.encode())).collect())
        }
    };
    if !headers
        .iter()
        .any(|(name, _)| name == http::header::CONTENT_TYPE)
    {
        let kind = match reply {
            Encoded::Json(_) => "application/json",
            Encoded::Events(_) => "text/event-stream; charset=utf-8",
        };
        headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(kind)));
    }
    Ok(Canned { headers, reply })
}

/// Serves on 127.0.0.1:`port` until the parent process goes away.
/// Binds 127.0.0.1:`port`, prints `{label} listening on http://ADDRESS`
/// (what the runner waits for), and exits the process once its parent is
/// gone, so a server never outlives the benchmark.
pub(crate) async fn listen(label: &str, port: u16) -> Result<tokio::net::TcpListener, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| format!("cannot bind 127.0.0.1:{port}: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{label} listening on http://{address}");
        let _ = stdout.flush();
    }
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    });
    Ok(listener)
}

pub(crate) fn run(port: u16) -> Result<(), String> {
    let samples = Samples::load(&default_samples_dir())?;
    let answers = Answers([
        [
            canned(&samples, false, false)?,
            canned(&samples, false, true)?,
        ],
        [
            canned(&samples, true, false)?,
            canned(&samples, true, true)?,
        ],
    ]);
    let answers: &'static Answers = Box::leak(Box::new(answers));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async move {
        let listener = listen("bench upstream", port).await?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(move |request| async move {
                Ok::<_, Infallible>(answer(answers, request).await)
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(answers: &Answers, request: http::Request<Incoming>) -> Response<Body> {
    let is_messages = request.method() == Method::POST && request.uri().path() == "/v1/messages";
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    if !is_messages {
        return status(StatusCode::NOT_FOUND);
    }
    let tools = memchr::memmem::find(&body, br#""tools":[{"#).is_some();
    let stream = memchr::memmem::find(&body, br#""stream":true"#).is_some();
    let canned = &answers.0[usize::from(tools)][usize::from(stream)];
    let body = match &canned.reply {
        Encoded::Json(bytes) => Full::new(bytes.clone()).boxed(),
        Encoded::Events(events) => StreamBody::new(stream::iter(
            events
                .clone()
                .into_iter()
                .map(|event| Ok::<_, Infallible>(Frame::data(event))),
        ))
        .boxed(),
    };
    let mut response = Response::new(body);
    for (name, value) in &canned.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = code;
    response
}
