//! Reaching upstreams through an HTTP proxy: `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (and their lower-case forms), read as curl reads
//! them. A proxied connection is a `CONNECT` tunnel, and TLS runs inside it end
//! to end, so the proxy never sees the API keys or tokens.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::{
    client::{
        legacy::connect::{HttpConnector, proxy::Tunnel},
        proxy::matcher::Matcher,
    },
    rt::TokioIo,
};
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A TCP connector that tunnels through the proxy the environment names for a
/// destination, and connects directly otherwise.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    matcher: Arc<Matcher>,
}

impl std::fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConnector").finish_non_exhaustive()
    }
}

impl ProxyConnector {
    /// Wraps `http` with the proxy rules of the process environment.
    pub fn from_env(http: HttpConnector) -> Self {
        Self {
            http,
            matcher: Arc::new(Matcher::from_env()),
        }
    }

    /// The proxy a request to `destination` goes through, if any (for logs).
    pub fn proxy_for(&self, destination: &Uri) -> Option<Uri> {
        self.matcher
            .intercept(destination)
            .map(|intercept| intercept.uri().clone())
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self.matcher.intercept(&destination) {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.http.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(destination).await.map_err(Into::into) })
            }
            None => {
                let mut http = self.http.clone();
                Box::pin(async move { http.call(destination).await.map_err(Into::into) })
            }
        }
    }
}
