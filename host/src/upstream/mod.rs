//! The one upstream HTTP client every plugin shares: pooled, HTTP/1.1 and
//! HTTP/2 (by ALPN over TLS), rustls with the webpki roots plus the CAs of
//! `http.extra_ca_file` ([`tls`]), through the proxy the environment names
//! ([`proxy`]).
//!
//! Plugins reach it through `Context::http`; provider plugins stream through
//! it. Keeping one client means one connection pool per upstream for the whole
//! process, whatever the number of plugins.

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use crate::config::HttpConfig;

mod proxy;
mod tls;

pub use proxy::ProxyConnector;
/// A PEM CA certificate for tests that need a usable `http.extra_ca_file`.
#[cfg(test)]
pub(crate) use tls::tests::TEST_CA;
pub use tls::{CaFileError, check_ca_file};

/// A failed upstream exchange.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The request could not be built (bad URL, method or header).
    #[error("invalid upstream request: {0}")]
    Invalid(String),
    /// Connecting or sending failed.
    #[error("upstream {url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No complete answer in time.
    #[error("upstream {url} did not answer within {} ms", .timeout.as_millis())]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
}

/// The shared client.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<hyper_rustls::HttpsConnector<ProxyConnector>, Full<Bytes>>,
    read_timeout: Duration,
    connect_timeout: Duration,
}

/// A buffered upstream response.
#[derive(Debug)]
pub struct BufferedResponse {
    /// Status.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl UpstreamClient {
    /// Builds the client from `[http]`. A CA file that cannot be read (the config loader
    /// checked it, so it changed since) is logged, and only the webpki roots are trusted:
    /// failing closed, an upstream signed by that CA then answers 502 saying why.
    pub fn new(config: &HttpConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|error| {
            let path = config.extra_ca_file.as_deref().unwrap_or(Path::new(""));
            tracing::error!(
                "http.extra_ca_file {}: {error}; trusting only the built-in roots",
                path.display()
            );
            let webpki_only = HttpConfig {
                extra_ca_file: None,
                ..config.clone()
            };
            Self::try_new(&webpki_only).expect("the built-in roots need no file")
        })
    }

    /// Builds the client from `[http]`, or says why the CA file cannot be used.
    pub fn try_new(config: &HttpConfig) -> Result<Self, CaFileError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout()));
        http.set_nodelay(true);
        let tls = tls::client_config(tls::root_store(config)?);
        // HTTPS_PROXY and friends are honoured: a CONNECT tunnel with TLS inside.
        let tcp = ProxyConnector::from_env(http);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        // ALPN offers h2 and http/1.1, or nothing (HTTP/1.1 then) without http2.
        let connector = if config.http2 {
            builder.enable_all_versions().wrap_connector(tcp)
        } else {
            builder.enable_http1().wrap_connector(tcp)
        };
        let client = Client::builder(TokioExecutor::new())
            // Without a timer the pool never closes idle connections on its own; they would
            // only be found expired when the next request to that host looks for one.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout())
            .pool_max_idle_per_host(max_idle_per_host(config))
            .build(connector);
        Ok(Self {
            client,
            read_timeout: config.read_timeout(),
            connect_timeout: config.connect_timeout(),
        })
    }

    /// The default limit for a whole exchange or, when streaming, for the
    /// response head and then for each chunk.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Sends a request and returns as soon as the response head arrives; the
    /// body streams. Dropping the body cancels the upstream request.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<StreamingResponse, UpstreamError> {
        let mut builder = http::Request::builder()
            .method(
                http::Method::from_bytes(method.as_bytes())
                    .map_err(|_| UpstreamError::Invalid(format!("bad method {method:?}")))?,
            )
            .uri(url);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|error| UpstreamError::Invalid(error.to_string()))?;
        let timeout = timeout.unwrap_or(self.read_timeout);
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: url.to_owned(),
                timeout,
            })?
            .map_err(|error| UpstreamError::Unreachable {
                url: url.to_owned(),
                reason: self.explain(&error),
            })?;
        let (parts, body) = response.into_parts();
        Ok(StreamingResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Why a request could not be sent, in words that say what to change where the
    /// transport's own are cryptic (an untrusted certificate, the connect timeout).
    fn explain(&self, error: &(dyn std::error::Error + 'static)) -> String {
        if let Some(explained) = tls::explain_certificate_failure(error) {
            return explained;
        }
        let mut level = Some(error);
        while let Some(current) = level {
            if current
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return format!(
                    "no connection within {} s (http.connect_timeout_seconds): {}",
                    self.connect_timeout.as_secs(),
                    error_chain(error)
                );
            }
            level = current.source();
        }
        error_chain(error)
    }

    /// Sends a request and reads the whole answer within `timeout`.
    pub async fn send_buffered(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<BufferedResponse, UpstreamError> {
        let limit = timeout.unwrap_or(self.read_timeout);
        let exchange = async {
            let response = self.send(method, url, headers, body, Some(limit)).await?;
            let body = response
                .body
                .collect()
                .await
                .map_err(|error| UpstreamError::Unreachable {
                    url: url.to_owned(),
                    reason: format!("body: {}", error_chain(&error)),
                })?
                .to_bytes();
            Ok(BufferedResponse {
                status: response.status,
                headers: header_pairs(&response.headers),
                body,
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: url.to_owned(),
                timeout: limit,
            })?
    }
}

/// Idle connections kept per host: none when they may not stay idle at all
/// (`pool_idle_timeout_seconds = 0`, which the pool itself would read as "no
/// reaping" and keep them until the next request found them expired).
fn max_idle_per_host(config: &HttpConfig) -> usize {
    if config.pool_idle_timeout().is_zero() {
        0
    } else {
        config.pool_max_idle_per_host
    }
}

/// An upstream response whose body is still arriving.
#[derive(Debug)]
pub struct StreamingResponse {
    /// Status.
    pub status: u16,
    /// Headers as they arrived (kept as a map: the provider path reads two of
    /// them, and turning every one into a pair of strings cost more than the
    /// rest of the response head).
    pub headers: http::HeaderMap,
    /// The body; dropping it cancels the upstream request.
    pub body: hyper::body::Incoming,
}

/// `headers` as (lower-case name, value) pairs; values that are not UTF-8 are
/// converted lossily.
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// `error` and its sources on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Instant,
    };

    use hyper_util::rt::TokioIo;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    fn client(edit: impl FnOnce(&mut HttpConfig)) -> UpstreamClient {
        let mut config = HttpConfig::default();
        edit(&mut config);
        UpstreamClient::try_new(&config).expect("no CA file to read")
    }

    async fn get(client: &UpstreamClient, url: &str) -> Result<BufferedResponse, UpstreamError> {
        client
            .send_buffered("GET", url, &[], Bytes::new(), None)
            .await
    }

    /// A local HTTP/1.1 server answering `ok` to everything; counts the connections it
    /// accepted and those the client closed.
    struct Counting {
        url: String,
        accepted: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
    }

    async fn counting_server() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("127.0.0.1:0 can be bound");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (accepted_count, closed_count) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let closed_count = closed_count.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    closed_count.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Counting {
            url,
            accepted,
            closed,
        }
    }

    /// A server that reads requests and answers `head` (possibly an unfinished response),
    /// then keeps the connection open without a word.
    async fn stalling_server(head: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("127.0.0.1:0 can be bound");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream.write_all(head).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn read_timeout_bounds_an_upstream_that_never_answers() {
        let url = stalling_server(b"").await;
        let client = client(|config| config.read_timeout_seconds = 1);
        assert_eq!(client.read_timeout(), Duration::from_secs(1));
        let started = Instant::now();
        let error = get(&client, &url).await.expect_err("no answer");
        let elapsed = started.elapsed();
        assert!(
            matches!(error, UpstreamError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
            "{error}"
        );
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        assert!(error.to_string().ends_with("did not answer within 1000 ms"));
    }

    #[tokio::test]
    async fn a_per_call_timeout_beats_the_configured_one() {
        let url = stalling_server(b"").await;
        let client = client(|_| {});
        let started = Instant::now();
        let error = client
            .send(
                "GET",
                &url,
                &[],
                Bytes::new(),
                Some(Duration::from_millis(200)),
            )
            .await
            .expect_err("no answer");
        assert!(
            matches!(error, UpstreamError::Timeout { timeout, .. } if timeout == Duration::from_millis(200)),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_buffered_exchange_is_bounded_body_included() {
        let url =
            stalling_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b").await;
        let client = client(|_| {});
        let started = Instant::now();
        let error = client
            .send_buffered(
                "GET",
                &url,
                &[],
                Bytes::new(),
                Some(Duration::from_millis(300)),
            )
            .await
            .expect_err("the body never ends");
        assert!(matches!(error, UpstreamError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_pooled_connection_is_reused() {
        let server = counting_server().await;
        let client = client(|_| {});
        for _ in 0..3 {
            let reply = get(&client, &server.url).await.expect("the server answers");
            assert_eq!((reply.status, &reply.body[..]), (200, &b"ok"[..]));
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_idle_connections_means_one_connection_per_request() {
        for edit in [
            (|config: &mut HttpConfig| config.pool_max_idle_per_host = 0) as fn(&mut HttpConfig),
            |config: &mut HttpConfig| config.pool_idle_timeout_seconds = 0,
        ] {
            let server = counting_server().await;
            let client = client(edit);
            for _ in 0..3 {
                get(&client, &server.url).await.expect("the server answers");
            }
            assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_pool_idle_timeout() {
        let server = counting_server().await;
        let client = client(|config| config.pool_idle_timeout_seconds = 1);
        get(&client, &server.url).await.expect("the server answers");
        assert_eq!(server.closed.load(Ordering::SeqCst), 0, "kept for reuse");
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            server.closed.load(Ordering::SeqCst),
            1,
            "the idle connection was not closed within 5 s"
        );
    }

    #[tokio::test]
    async fn connect_timeout_bounds_opening_the_connection() {
        // A listener with a backlog of 0 whose queue is already full: Linux drops further
        // SYNs, so a connect hangs until the client gives up.
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("127.0.0.1:0 can be bound");
        let listener = socket.listen(0).expect("listening");
        let address = listener.local_addr().expect("bound");
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let connect = tokio::net::TcpStream::connect(address);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await
            {
                fillers.push(stream);
            }
        }
        let client = client(|config| config.connect_timeout_seconds = 1);
        let started = Instant::now();
        let error = client
            .send(
                "GET",
                &format!("http://{address}/"),
                &[],
                Bytes::new(),
                Some(Duration::from_secs(10)),
            )
            .await
            .expect_err("the connect cannot complete");
        let elapsed = started.elapsed();
        assert!(
            matches!(&error, UpstreamError::Unreachable { reason, .. }
                if reason.starts_with("no connection within 1 s (http.connect_timeout_seconds): ")),
            "{error}"
        );
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        drop((listener, fillers));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_reason() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("127.0.0.1:0 can be bound");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        drop(listener);
        let error = get(&client(|_| {}), &url)
            .await
            .expect_err("nothing listens");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("upstream {url} unreachable: ")),
            "{message}"
        );
        assert!(message.contains("refused"), "{message}");
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_is_an_error_or_a_fallback() {
        let config = HttpConfig {
            extra_ca_file: Some("/nonexistent/ccproxy/ca.pem".into()),
            ..HttpConfig::default()
        };
        let error = UpstreamClient::try_new(&config).expect_err("the file is missing");
        assert!(matches!(error, CaFileError::Read(_)), "{error}");
        // `new` keeps the built-in roots and sets the rest as configured.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _guard = runtime.enter();
        assert_eq!(
            UpstreamClient::new(&config).read_timeout(),
            Duration::from_secs(240)
        );
    }

    #[test]
    fn idle_connections_per_host_follow_the_two_pool_keys() {
        let with = |idle_seconds, max_idle| HttpConfig {
            pool_idle_timeout_seconds: idle_seconds,
            pool_max_idle_per_host: max_idle,
            ..HttpConfig::default()
        };
        assert_eq!(max_idle_per_host(&HttpConfig::default()), 64);
        assert_eq!(max_idle_per_host(&with(90, 8)), 8);
        assert_eq!(max_idle_per_host(&with(0, 8)), 0);
        assert_eq!(max_idle_per_host(&with(90, 0)), 0);
    }
}
