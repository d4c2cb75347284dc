//! The one upstream HTTP client every plugin shares: pooled, HTTP/1.1 and
//! HTTP/2 (by ALPN over TLS), rustls with the webpki roots.
//!
//! Plugins reach it through `Context::http`; provider plugins (issue #4) will
//! stream through it. Keeping one client means one connection pool per upstream
//! for the whole process, whatever the number of plugins.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::config::HttpConfig;

mod proxy;

pub use proxy::ProxyConnector;

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
    /// Builds the client from `[http]`.
    pub fn new(config: &HttpConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout()));
        http.set_nodelay(true);
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        // HTTPS_PROXY and friends are honoured: a CONNECT tunnel with TLS inside.
        let tcp = ProxyConnector::from_env(http);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if config.http2 {
            builder.enable_all_versions().wrap_connector(tcp)
        } else {
            builder.enable_http1().wrap_connector(tcp)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout())
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Self {
            client,
            read_timeout: config.read_timeout(),
        }
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
                reason: error_chain(&error),
            })?;
        let (parts, body) = response.into_parts();
        Ok(StreamingResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
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
