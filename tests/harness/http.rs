//! A tiny HTTP/1.1 client over `TcpStream` (one request per connection), the
//! raw-bytes exchange for malformed input, and an h2c client built on hyper.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP response, complete.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The protocol version, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Header pairs in the order received; names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body of a {} reply is not JSON ({error}): {}",
                self.status,
                self.text()
            )
        })
    }
}

pub(crate) fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Reply> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let answer = exchange(address, &bytes)?;
    parse(&answer)
}

pub(crate) fn raw(address: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    exchange(address, bytes)
}

/// Sends `bytes` and reads until the server closes the connection.
fn exchange(address: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // The server may answer (413, 400) and close before it has read everything.
    if let Err(error) = stream.write_all(bytes)
        && error.kind() != io::ErrorKind::BrokenPipe
        && error.kind() != io::ErrorKind::ConnectionReset
    {
        return Err(error);
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        // A reset after a complete answer (the server closed with unread input).
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset && !answer.is_empty() => {
            Ok(answer)
        }
        Err(error) => Err(error),
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Parses a complete HTTP/1.1 response.
fn parse(answer: &[u8]) -> io::Result<Reply> {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| {
            invalid(format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(answer)
            ))
        })?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let rest = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let version = status_line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let body =
        if header("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked")) {
            dechunk(rest)?
        } else if let Some(length) =
            header("content-length").and_then(|value| value.parse::<usize>().ok())
        {
            rest.get(..length)
                .ok_or_else(|| invalid(format!("body shorter than content-length {length}")))?
                .to_vec()
        } else {
            rest.to_vec()
        };
    Ok(Reply {
        version,
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or_else(|| invalid("truncated chunk"))?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// `GET path` over HTTP/2 with prior knowledge, on a runtime of its own.
pub(crate) fn get_h2c(address: SocketAddr, path: &str) -> io::Result<Reply> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let other = |error: &dyn std::fmt::Display| io::Error::other(error.to_string());
    runtime.block_on(async {
        let work = async {
            let stream = tokio::net::TcpStream::connect(address).await?;
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| other(&e))?;
            tokio::spawn(connection);
            let request = http::Request::get(format!("http://{address}{path}"))
                .body(Empty::<bytes::Bytes>::new())
                .map_err(|e| other(&e))?;
            let response = sender.send_request(request).await.map_err(|e| other(&e))?;
            let status = response.status().as_u16();
            let version = format!("{:?}", response.version());
            let headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| other(&e))?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                version,
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "h2c request timed out",
                ))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let reply = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi").unwrap();
        assert_eq!(
            (reply.status, reply.header("x-a"), reply.text().as_str()),
            (200, Some("b"), "hi")
        );
        let reply = parse(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (404, "abcde"));
    }
}
