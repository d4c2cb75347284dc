//! A raw HTTP/1.1 client on one kept-alive connection per target, for what
//! `oha` cannot see: the time to the first byte of the response *body* (the
//! first event of a stream) and the proxy's `Server-Timing` header.

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One exchange. Times in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    /// To the first body bytes.
    pub(crate) first_byte: f64,
    /// `server-timing: proxy;dur=X`.
    pub(crate) proxy_dur: Option<f64>,
    /// `server-timing: upstream;dur=X`.
    pub(crate) upstream_dur: Option<f64>,
}

/// A kept-alive connection.
pub(crate) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    address: SocketAddr,
}

impl Connection {
    /// Connects to `address`.
    pub(crate) async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake with {address}: {error}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, address })
    }

    /// `METHOD path`; the whole answer body, whatever the status.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Vec<u8>, String> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.address.to_string())
            .body(Full::new(body))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| format!("connection to {}: {error}", self.address))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("{method} {path}: {error}"))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{method} {path}: body: {error}"))?;
        Ok(body.to_bytes().to_vec())
    }

    /// `POST path` with `body`; fails on a non-2xx answer.
    pub(crate) async fn post(&mut self, path: &str, body: Bytes) -> Result<Exchange, String> {
        let request = http::Request::post(path)
            .header(http::header::HOST, self.address.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(body))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| format!("connection to {}: {error}", self.address))?;
        let started = Instant::now();
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("POST {path}: {error}"))?;
        let status = response.status();
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut first_byte = None;
        let mut text = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| format!("POST {path}: body: {error}"))?;
            if let Some(data) = frame.data_ref()
                && !data.is_empty()
            {
                first_byte.get_or_insert_with(|| started.elapsed());
                if !status.is_success() && text.len() < 500 {
                    text.extend_from_slice(data);
                }
            }
        }
        let total = started.elapsed();
        if !status.is_success() {
            return Err(format!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&text)
            ));
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Ok(Exchange {
            first_byte: ms(first_byte.unwrap_or(total)),
            proxy_dur: timing.as_deref().and_then(|t| timing_value(t, "proxy")),
            upstream_dur: timing.as_deref().and_then(|t| timing_value(t, "upstream")),
        })
    }
}

/// The `dur` of metric `name` in a `Server-Timing` value.
fn timing_value(header: &str, name: &str) -> Option<f64> {
    header.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        if parts.next()?.trim() != name {
            return None;
        }
        parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_timing() {
        let header = "proxy;dur=0.202, upstream;dur=1.050";
        assert_eq!(timing_value(header, "proxy"), Some(0.202));
        assert_eq!(timing_value(header, "upstream"), Some(1.05));
        assert_eq!(timing_value("proxy;dur=3", "upstream"), None);
    }
}
