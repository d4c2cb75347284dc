//! HTTP requests and responses as plugin code sees them.

use crate::protocol::{AnsweredBy, RequestHead, ResponseHead, TokenUsage};

/// Header name/value pairs; names compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }
    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    }
    /// Iterates over the pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A request that reached one of the plugin's routes.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Method, upper case.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Headers.
    pub headers: Headers,
    /// The body, complete.
    pub body: Vec<u8>,
    /// The route pattern that matched.
    pub route: String,
    /// Values of `{name}` path segments.
    pub params: Vec<(String, String)>,
    /// The request id, also sent back as `x-request-id`.
    pub request_id: String,
}

impl Request {
    /// The value of path parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::PluginError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
    pub(crate) fn from_head(
        head: RequestHead,
        route: String,
        params: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: Headers(head.headers),
            body,
            route,
            params,
            request_id: head.request_id,
        }
    }
}

/// A response from a plugin route.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
///
/// let response = Response::json(200, &serde_json::json!({"ok": true}));
/// assert_eq!(response.headers.get("content-type"), Some("application/json"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
    /// Since 1.3: the provider and model that answered, for a route that
    /// works like a provider (see [`Response::answered_by`]).
    pub answered_by: Option<AnsweredBy>,
    /// Since 1.3: the answer's token usage (see [`Response::with_usage`]).
    pub usage: Option<TokenUsage>,
}

impl Response {
    /// A response with `status`, no headers and `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Headers::default(),
            body: body.into(),
            answered_by: None,
            usage: None,
        }
    }
    /// Says which provider and model answered (plugin API 1.3), for a route
    /// that answers model requests from an upstream of its own: the host's
    /// `request.completed` then carries them as for a provider endpoint, so
    /// access logs, metrics, pricing and analytics count the answer. A host
    /// older than 1.3 ignores it (`Context::has_capability("route_usage")`
    /// says whether it reads it).
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    ///
    /// let usage = TokenUsage { input_tokens: 10, output_tokens: 5, ..TokenUsage::default() };
    /// let response = Response::json(200, &json!({"content": []}))
    ///     .answered_by("my_cli", "claude-sonnet-4-5")
    ///     .with_usage(usage);
    /// assert_eq!(response.answered_by.as_ref().unwrap().provider, "my_cli");
    /// assert_eq!(response.usage.unwrap().output_tokens, 5);
    /// ```
    pub fn answered_by(mut self, provider: impl Into<String>, model: impl Into<String>) -> Self {
        self.answered_by = Some(AnsweredBy {
            provider: provider.into(),
            model: Some(model.into()).filter(|model| !model.is_empty()),
        });
        self
    }
    /// Sets the answer's token usage (plugin API 1.3; see [`Response::answered_by`]).
    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
        self
    }
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut response = Self::new(status, body.into().into_bytes());
        response
            .headers
            .set("content-type", "text/plain; charset=utf-8");
        response
    }
    /// A JSON response.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|error| {
            format!("{{\"error\":\"response could not be serialised: {error}\"}}").into_bytes()
        });
        let mut response = Self::new(status, body);
        response.headers.set("content-type", "application/json");
        response
    }
    pub(crate) fn into_parts(self) -> (ResponseHead, Vec<u8>) {
        (
            ResponseHead {
                status: self.status,
                headers: self.headers.0,
                stream: None,
                answered_by: self.answered_by,
                usage: self.usage,
            },
            self.body,
        )
    }
}

/// An outgoing HTTP request sent with the host's shared client
/// (`Context::http`).
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Method, upper case.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
    /// Give up after this long (`None`: the host's default).
    pub timeout: Option<std::time::Duration>,
}

impl HttpRequest {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            ..Self::default()
        }
    }
    /// A `POST` of `body` to `url`.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".into(),
            url: url.into(),
            body: body.into(),
            ..Self::default()
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.set(name, value);
        self
    }
    pub(crate) fn into_head(self) -> (crate::protocol::HttpRequestHead, Vec<u8>) {
        let head = crate::protocol::HttpRequestHead {
            method: self.method,
            url: self.url,
            headers: self.headers.0,
            timeout_ms: self
                .timeout
                .map_or(0, |t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        };
        (head, self.body)
    }
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// Body, complete.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::PluginError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// The answer to an [`HttpRequest`] sent with `Context::http_stream`: the head
/// now, the body as it arrives. Dropping the body cancels the request.
#[derive(Debug)]
pub struct HttpStream {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// The body; hand it to [`StreamResponse`](crate::StreamResponse) to
    /// forward it without buffering.
    pub body: crate::BodyStream,
}
