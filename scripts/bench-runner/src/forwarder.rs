//! `ccproxy-bench forwarder`: the floor of any hyper-based proxy on this
//! machine. It does the least a proxy can do, with the same libraries and
//! runtime shape as ccproxy (tokio with as many workers as cores, hyper-util's
//! auto server, hyper-util's pooled client): each request goes to the
//! upstream with the same method, path and headers, and the answer's bytes
//! stream back. No plugins, no hooks, no parsing, no log.
//!
//! Measured in the same rounds as ccproxy, it tells how much of the gap to a
//! direct request is the cost of a second HTTP exchange on two shared cores,
//! which no proxy avoids, and how much is ccproxy's own.

use std::convert::Infallible;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves on 127.0.0.1:`port`, forwarding to `upstream` (`http://host:port`).
pub(crate) fn run(port: u16, upstream: &str) -> Result<(), String> {
    let upstream: Uri = upstream
        .parse()
        .map_err(|error| format!("--upstream {upstream}: {error}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async move {
        let listener = crate::upstream::listen("bench forwarder", port).await?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let upstream: &'static Uri = Box::leak(Box::new(upstream));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let service = hyper::service::service_fn(move |request| {
                let client = client.clone();
                async move { Ok::<_, Infallible>(forward(&client, upstream, request).await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let target = format!(
        "{}://{}{path}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str())
    );
    let Ok(uri) = target.parse() else {
        return status(StatusCode::BAD_REQUEST);
    };
    parts.uri = uri;
    parts.headers.remove(http::header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = code;
    response
}
