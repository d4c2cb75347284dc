//! Stored request logs (issue 11), shared by the `storage` plugin, which
//! writes and reads them, and the `analytics` plugin, which serves them over
//! HTTP and streams them live: the row of one finished client request read
//! from `request.completed` / `request.failed` hook data ([`LogRow`]), its
//! JSON shape (the original's `AccessLog` columns), the filters of the
//! `/logs` routes parsed from a query string with errors that name the
//! parameter ([`QueryRequest`], [`AnalyticsRequest`], [`RowFilter`]), and
//! the duration histogram both the rollup and the percentiles use
//! ([`histogram`]).
//!
//! Behind the kit feature `logs` (it brings in `time` and
//! `form_urlencoded`).

use std::borrow::Cow;

use ccproxy_plugin_abi::{HookCall, HookEvent, PluginError, Value, json};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// One finished client request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// The host's request id.
    pub request_id: String,
    /// When the request ended, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// `GET`, `POST` …
    pub method: String,
    /// The path below the provider's prefix (`/v1/messages` of
    /// `/claude/v1/messages`); the whole path when no provider answered.
    pub endpoint: String,
    /// The path the client asked for.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The provider plugin's name, as the original's `service_type`.
    pub service_type: Option<String>,
    /// The provider plugin's name.
    pub provider: Option<String>,
    /// The model the answer named.
    pub model: Option<String>,
    /// Whether the answer was streamed.
    pub streaming: bool,
    /// The status the client got (499: it left before the answer began).
    pub status_code: i64,
    /// From the request's arrival to its last byte.
    pub duration_ms: f64,
    /// Input tokens (cached ones excluded), 0 when unknown.
    pub tokens_input: i64,
    /// Output tokens.
    pub tokens_output: i64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: i64,
    /// Tokens written to the prompt cache.
    pub cache_write_tokens: i64,
    /// The answer's cost, when the `pricing` plugin priced it.
    pub cost_usd: Option<f64>,
    /// The client's session, when it sent one (`session_id` or
    /// `x-claude-code-session-id` header).
    pub session_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionHeaders<'a> {
    #[serde(borrow, rename = "session_id")]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "x-claude-code-session-id")]
    claude_code_session_id: Option<Cow<'a, str>>,
}

/// The keys of `request.completed` / `request.failed` a row needs,
/// borrowed where no escape forces a copy; the rest is skipped unread.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventData<'a> {
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query: Option<Cow<'a, str>>,
    status_code: Option<u64>,
    duration_ms: Option<f64>,
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    streaming: Option<bool>,
    #[serde(borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<Usage>,
    /// Added by the pricing plugin's hook, which runs before ours.
    cost_usd: Option<f64>,
    #[serde(borrow)]
    headers: Option<SessionHeaders<'a>>,
}

fn text(field: Option<Cow<'_, str>>) -> Option<String> {
    field.filter(|value| !value.is_empty()).map(Cow::into_owned)
}

fn count(value: Option<u64>) -> i64 {
    value.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl LogRow {
    /// Reads a `request.completed` or `request.failed` event.
    pub fn from_hook(call: &HookCall) -> Result<Self, PluginError> {
        let data: EventData<'_> = call.data()?;
        let failed = call.event == HookEvent::RequestFailed;
        let path = text(data.path).unwrap_or_default();
        let provider = text(data.provider);
        let usage = data.usage.unwrap_or_default();
        let session_id = data
            .headers
            .and_then(|headers| text(headers.session_id).or(text(headers.claude_code_session_id)));
        Ok(Self {
            request_id: text(data.request_id)
                .or_else(|| call.request_id.clone())
                .unwrap_or_default(),
            timestamp_ms: i64::try_from(call.timestamp_ms).unwrap_or(i64::MAX),
            method: text(data.method).unwrap_or_default(),
            endpoint: endpoint(&path, provider.is_some()).to_owned(),
            query: text(data.query).unwrap_or_default(),
            client_ip: text(data.client_ip),
            user_agent: text(data.user_agent),
            service_type: provider.clone(),
            provider,
            model: text(data.model),
            streaming: data.streaming.unwrap_or(false),
            status_code: data
                .status_code
                .and_then(|status| i64::try_from(status).ok())
                .unwrap_or(if failed { 500 } else { 0 }),
            duration_ms: data.duration_ms.unwrap_or(0.0),
            tokens_input: count(usage.input_tokens),
            tokens_output: count(usage.output_tokens),
            cache_read_tokens: count(usage.cache_read_input_tokens),
            cache_write_tokens: count(usage.cache_creation_input_tokens),
            cost_usd: data.cost_usd.filter(|cost| cost.is_finite()),
            session_id,
            path,
        })
    }

    /// The row as the `/logs` API shows it (the original's `AccessLog`
    /// columns, `timestamp` in RFC 3339 UTC with milliseconds).
    pub fn to_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "timestamp": rfc3339(self.timestamp_ms),
            "method": self.method,
            "endpoint": self.endpoint,
            "path": self.path,
            "query": self.query,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "service_type": self.service_type,
            "provider": self.provider,
            "model": self.model,
            "streaming": self.streaming,
            "status_code": self.status_code,
            "duration_ms": self.duration_ms,
            "tokens_input": self.tokens_input,
            "tokens_output": self.tokens_output,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "session_id": self.session_id,
        })
    }
}

/// `path` without its first segment when a provider answered on it
/// (`/claude/v1/messages` → `/v1/messages`).
fn endpoint(path: &str, provider_answered: bool) -> &str {
    if !provider_answered {
        return path;
    }
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

/// `timestamp_ms` as `2026-12-06T19:40:01.123Z`.
pub fn rfc3339(timestamp_ms: i64) -> String {
    let nanos = i128::from(timestamp_ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(time) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second(),
            time.millisecond()
        ),
        Err(_) => String::new(),
    }
}

/// A malformed parameter of a `/logs` route: the 400 names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name.
    pub param: String,
    /// What is wrong, and what it must be.
    pub reason: String,
}

impl ParamError {
    fn new(param: &str, reason: impl Into<String>) -> Self {
        Self {
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    /// `parameter 'limit': must be an integer from 1 to 10000`.
    pub fn message(&self) -> String {
        format!("parameter '{}': {}", self.param, self.reason)
    }

    /// The 400 body the `/logs` routes answer with.
    pub fn body(&self) -> Value {
        json!({"error": {"type": "invalid_request_error", "message": self.message()}})
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ParamError {}

/// Which rows a query, an analysis or a stream is about. Every field is
/// optional; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RowFilter {
    /// Rows at or after this time (ms).
    pub start_ms: Option<i64>,
    /// Rows at or before this time (ms).
    pub end_ms: Option<i64>,
    /// Exact model.
    pub model: Option<String>,
    /// Exact provider.
    pub provider: Option<String>,
    /// Exact service type.
    pub service_type: Option<String>,
    /// Exact status.
    pub status_code: Option<i64>,
    /// Status at least.
    pub min_status: Option<i64>,
    /// Status at most.
    pub max_status: Option<i64>,
    /// Streamed or not.
    pub streaming: Option<bool>,
    /// Duration at least (streams only).
    pub min_duration_ms: Option<f64>,
    /// Duration at most (streams only).
    pub max_duration_ms: Option<f64>,
}

impl RowFilter {
    /// Whether `row` passes every given condition.
    pub fn matches(&self, row: &LogRow) -> bool {
        let same = |wanted: &Option<String>, value: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|wanted| value.as_ref() == Some(wanted))
        };
        self.start_ms.is_none_or(|start| row.timestamp_ms >= start)
            && self.end_ms.is_none_or(|end| row.timestamp_ms <= end)
            && same(&self.model, &row.model)
            && same(&self.provider, &row.provider)
            && same(&self.service_type, &row.service_type)
            && self
                .status_code
                .is_none_or(|status| row.status_code == status)
            && self.min_status.is_none_or(|min| row.status_code >= min)
            && self.max_status.is_none_or(|max| row.status_code <= max)
            && self
                .streaming
                .is_none_or(|streaming| row.streaming == streaming)
            && self
                .min_duration_ms
                .is_none_or(|min| row.duration_ms >= min)
            && self
                .max_duration_ms
                .is_none_or(|max| row.duration_ms <= max)
    }
}

/// Which way `/logs/query` pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Newest first.
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// Where the previous page ended: its last row's time and request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last row's `timestamp_ms`.
    pub timestamp_ms: i64,
    /// The last row's `request_id`.
    pub request_id: String,
}

impl Cursor {
    /// The opaque text clients send back: `TIMESTAMP_MS.HEX(REQUEST_ID)`.
    pub fn encode(&self) -> String {
        let mut text = format!("{}.", self.timestamp_ms);
        for byte in self.request_id.bytes() {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    /// Reads what [`Cursor::encode`] wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let (timestamp, hex) = text.split_once('.')?;
        let timestamp_ms = timestamp.parse().ok()?;
        if hex.len() % 2 != 0 || hex.len() > 512 {
            return None;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            timestamp_ms,
            request_id: String::from_utf8(bytes).ok()?,
        })
    }
}

/// `GET /logs/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Which rows.
    pub filter: RowFilter,
    /// At most this many (1..=10000).
    pub limit: u32,
    /// After this row.
    pub cursor: Option<Cursor>,
    /// Newest or oldest first.
    pub order: Order,
}

/// `GET /logs/analytics`: the window is resolved when parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsRequest {
    /// Which rows (its `start_ms`/`end_ms` are the window).
    pub filter: RowFilter,
    /// The `hours` asked for (1..=168).
    pub hours: u32,
    /// The timeline's bucket.
    pub bucket_seconds: i64,
    /// Window start (ms, inclusive).
    pub from_ms: i64,
    /// Window end (ms, inclusive).
    pub to_ms: i64,
}

/// The largest `limit`.
pub const MAX_LIMIT: u32 = 10_000;
/// The largest `hours`.
pub const MAX_HOURS: u32 = 168;

/// The decoded `name=value` pairs of a query string; an empty value counts
/// as absent (a form's empty filter).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .filter(|(_, value)| !value.is_empty())
                .collect(),
        )
    }

    /// The last value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn text(&self, name: &str) -> Result<Option<String>, ParamError> {
        match self.get(name) {
            Some(value) if value.len() > 256 => {
                Err(ParamError::new(name, "must be at most 256 characters"))
            }
            Some(value) => Ok(Some(value.to_owned())),
            None => Ok(None),
        }
    }

    fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ParamError> {
        self.get(name)
            .map(|value| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ParamError::new(name, format!("must be an integer from {min} to {max}"))
                    })
            })
            .transpose()
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ParamError> {
        self.get(name)
            .map(|value| {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| ParamError::new(name, "must be a number of at least 0"))
            })
            .transpose()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ParamError> {
        self.get(name)
            .map(|value| match value {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ParamError::new(name, "must be true or false")),
            })
            .transpose()
    }

    fn time(&self, name: &str) -> Result<Option<i64>, ParamError> {
        self.get(name)
            .map(|value| {
                parse_time(value).ok_or_else(|| {
                    ParamError::new(
                        name,
                        "must be an RFC 3339 time (2026-12-06T19:40:00Z) or unix seconds",
                    )
                })
            })
            .transpose()
    }

    fn status(&self, name: &str) -> Result<Option<i64>, ParamError> {
        self.integer(name, 100, 599)
    }
}

/// RFC 3339 or unix seconds (fractions allowed) as milliseconds.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(seconds) = value.parse::<f64>() {
        // Up to the year 9999.
        return (seconds.is_finite() && (0.0..=253_402_300_799.0).contains(&seconds))
            .then(|| (seconds * 1000.0).round() as i64);
    }
    let time = OffsetDateTime::parse(value, &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The filters every route shares (`start_time` … `streaming`).
fn row_filter(params: &Params) -> Result<RowFilter, ParamError> {
    let filter = RowFilter {
        start_ms: params.time("start_time")?,
        end_ms: params.time("end_time")?,
        model: params.text("model")?,
        provider: params.text("provider")?,
        service_type: params.text("service_type")?,
        status_code: params.status("status_code")?,
        min_status: params.status("min_status")?,
        max_status: params.status("max_status")?,
        streaming: params.boolean("streaming")?,
        min_duration_ms: None,
        max_duration_ms: None,
    };
    if let (Some(start), Some(end)) = (filter.start_ms, filter.end_ms)
        && start > end
    {
        return Err(ParamError::new("start_time", "must not be after end_time"));
    }
    if let (Some(min), Some(max)) = (filter.min_status, filter.max_status)
        && min > max
    {
        return Err(ParamError::new(
            "min_status",
            "must not be above max_status",
        ));
    }
    Ok(filter)
}

/// Parses `GET /logs/query`'s query string.
pub fn parse_query_request(query: &str) -> Result<QueryRequest, ParamError> {
    let params = Params::parse(query);
    let limit = params
        .integer("limit", 1, i64::from(MAX_LIMIT))?
        .unwrap_or(100);
    let cursor = params
        .get("cursor")
        .map(|text| {
            Cursor::decode(text).ok_or_else(|| {
                ParamError::new("cursor", "must be a next_cursor value of an earlier answer")
            })
        })
        .transpose()?;
    let order = match params.get("order") {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ParamError::new("order", "must be asc or desc")),
    };
    Ok(QueryRequest {
        filter: row_filter(&params)?,
        limit: u32::try_from(limit).unwrap_or(100),
        cursor,
        order,
    })
}

/// Parses `GET /logs/analytics`'s query string; the window ends at
/// `end_time` (default `now_ms`) and starts at `start_time` (default
/// `hours` before its end).
pub fn parse_analytics_request(query: &str, now_ms: i64) -> Result<AnalyticsRequest, ParamError> {
    let params = Params::parse(query);
    let hours = params
        .integer("hours", 1, i64::from(MAX_HOURS))?
        .unwrap_or(24);
    let mut filter = row_filter(&params)?;
    let bucket_seconds = match params.get("bucket") {
        None if hours <= 3 => 60,
        None => 3600,
        Some("minute") => 60,
        Some("hour") => 3600,
        Some("day") => 86_400,
        Some(_) => return Err(ParamError::new("bucket", "must be minute, hour or day")),
    };
    let to_ms = filter.end_ms.unwrap_or(now_ms);
    let from_ms = filter.start_ms.unwrap_or(to_ms - hours * 3_600_000);
    if from_ms > to_ms {
        return Err(ParamError::new("start_time", "must not be after end_time"));
    }
    filter.start_ms = Some(from_ms);
    filter.end_ms = Some(to_ms);
    Ok(AnalyticsRequest {
        filter,
        hours: u32::try_from(hours).unwrap_or(24),
        bucket_seconds,
        from_ms,
        to_ms,
    })
}

/// Parses `GET /logs/stream`'s query string.
pub fn parse_stream_filter(query: &str) -> Result<RowFilter, ParamError> {
    let params = Params::parse(query);
    let mut filter = row_filter(&params)?;
    filter.min_duration_ms = params.number("min_duration_ms")?;
    filter.max_duration_ms = params.number("max_duration_ms")?;
    Ok(filter)
}

/// The duration histogram: [`BUCKETS`] buckets on a log scale from 1 ms to
/// 10 minutes, so a minute's rollup keeps a fixed number of counters and
/// percentiles are estimated to within a bucket (about ±15 %, interpolated).
pub mod histogram {
    /// How many buckets.
    pub const BUCKETS: usize = 48;
    /// Upper bound of bucket 0 (ms).
    const FIRST: f64 = 1.0;
    /// Upper bound of bucket `BUCKETS - 2` (ms); the last is open-ended.
    const LAST: f64 = 600_000.0;

    fn ratio() -> f64 {
        (LAST / FIRST).powf(1.0 / (BUCKETS as f64 - 2.0))
    }

    /// The upper bound of bucket `index` (ms).
    pub fn upper(index: usize) -> f64 {
        FIRST * ratio().powi(index as i32)
    }

    /// The bucket of `duration_ms`.
    pub fn bucket(duration_ms: f64) -> usize {
        // NaN and anything up to 1 ms land in the first bucket.
        if duration_ms.is_nan() || duration_ms <= FIRST {
            return 0;
        }
        let index = ((duration_ms / FIRST).ln() / ratio().ln()).ceil() as usize;
        index.min(BUCKETS - 1)
    }

    /// The `quantile` (0..1) of the durations counted in `counts`, within
    /// the bucket it falls in (linear interpolation); 0 when empty.
    pub fn quantile(counts: &[i64], quantile: f64) -> f64 {
        let total: i64 = counts.iter().sum();
        if total <= 0 {
            return 0.0;
        }
        let rank = (quantile * total as f64).max(1.0);
        let mut seen = 0.0;
        for (index, count) in counts.iter().enumerate() {
            let count = *count as f64;
            if count > 0.0 && seen + count >= rank {
                let low = if index == 0 { 0.0 } else { upper(index - 1) };
                let high = upper(index);
                return low + (high - low) * ((rank - seen) / count);
            }
            seen += count;
        }
        upper(counts.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook_call(event: HookEvent, data: Value) -> HookCall {
        HookCall::new(
            "logs",
            event,
            1_700_000_000_123,
            None,
            &data.to_string(),
            Vec::new(),
        )
        .expect("JSON data")
    }

    #[test]
    fn a_row_is_read_from_completed_data() {
        let call = hook_call(
            HookEvent::RequestCompleted,
            json!({"request_id": "r1", "method": "POST", "path": "/claude/v1/messages",
                   "query": "beta=true", "status_code": 200, "duration_ms": 12.5,
                   "client_ip": "127.0.0.1", "user_agent": "claude-cli", "streaming": true,
                   "provider": "claude_api", "model": "claude-sonnet-4",
                   "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 3},
                   "cost_usd": 0.5, "headers": {"x-claude-code-session-id": "s-1"}}),
        );
        let row = LogRow::from_hook(&call).unwrap();
        assert_eq!(row.endpoint, "/v1/messages");
        assert_eq!(row.service_type.as_deref(), Some("claude_api"));
        assert_eq!(
            (row.tokens_input, row.tokens_output, row.cache_read_tokens),
            (10, 20, 3)
        );
        assert_eq!(row.cost_usd, Some(0.5));
        assert_eq!(row.session_id.as_deref(), Some("s-1"));
        let json = row.to_json();
        assert_eq!(json["timestamp"].as_str().map(str::len), Some(24), "{json}");
        assert_eq!(json["streaming"], true);
    }

    #[test]
    fn a_failed_request_without_status_is_a_500_and_without_provider_keeps_its_path() {
        let call = hook_call(HookEvent::RequestFailed, json!({"path": "/x/y"}));
        let row = LogRow::from_hook(&call).unwrap();
        assert_eq!(row.status_code, 500);
        assert_eq!(row.endpoint, "/x/y");
        assert_eq!(row.provider, None);
    }

    #[test]
    fn timestamps_format_and_parse() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.123+01:00"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn malformed_parameters_are_named() {
        for (query, param) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=ten", "limit"),
            ("order=up", "order"),
            ("cursor=zz", "cursor"),
            ("start_time=soon", "start_time"),
            ("status_code=42", "status_code"),
            ("streaming=maybe", "streaming"),
            ("start_time=2000&end_time=1000", "start_time"),
        ] {
            let error = parse_query_request(query).unwrap_err();
            assert_eq!(error.param, param, "{query}: {error}");
        }
        assert_eq!(
            parse_query_request("limit=0").unwrap_err().message(),
            "parameter 'limit': must be an integer from 1 to 10000"
        );
        assert_eq!(
            parse_analytics_request("hours=169", 0).unwrap_err().param,
            "hours"
        );
        assert_eq!(
            parse_analytics_request("bucket=week", 0).unwrap_err().param,
            "bucket"
        );
        assert_eq!(
            parse_stream_filter("min_duration_ms=-1").unwrap_err().param,
            "min_duration_ms"
        );
    }

    #[test]
    fn query_parameters_are_decoded_and_hostile_text_is_kept_as_text() {
        let request =
            parse_query_request("model=%27%3B%20DROP%20TABLE%20requests%3B--&limit=5&order=asc")
                .unwrap();
        assert_eq!(
            request.filter.model.as_deref(),
            Some("'; DROP TABLE requests;--")
        );
        assert_eq!((request.limit, request.order), (5, Order::Asc));
        let defaults = parse_query_request("model=&limit=").unwrap();
        assert_eq!((defaults.limit, defaults.filter.model), (100, None));
    }

    #[test]
    fn the_analytics_window_and_bucket_follow_hours() {
        let request = parse_analytics_request("hours=2", 10_000_000).unwrap();
        assert_eq!(
            (request.from_ms, request.to_ms),
            (10_000_000 - 7_200_000, 10_000_000)
        );
        assert_eq!(request.bucket_seconds, 60);
        assert_eq!(parse_analytics_request("", 0).unwrap().bucket_seconds, 3600);
        assert_eq!(
            parse_analytics_request("bucket=day", 0)
                .unwrap()
                .bucket_seconds,
            86_400
        );
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            timestamp_ms: 42,
            request_id: "a-b.c".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("1.zz"), None);
    }

    #[test]
    fn filters_match_rows() {
        let row = LogRow {
            model: Some("m".into()),
            status_code: 200,
            duration_ms: 50.0,
            ..LogRow::default()
        };
        let filter = |query| parse_stream_filter(query).unwrap();
        assert!(filter("model=m&min_status=200&max_duration_ms=60").matches(&row));
        assert!(!filter("model=n").matches(&row));
        assert!(!filter("min_duration_ms=51").matches(&row));
    }

    #[test]
    fn histogram_quantiles_fall_within_a_bucket() {
        let mut counts = [0_i64; histogram::BUCKETS];
        for duration in 1..=1000 {
            counts[histogram::bucket(f64::from(duration))] += 1;
        }
        let p50 = histogram::quantile(&counts, 0.5);
        let p95 = histogram::quantile(&counts, 0.95);
        assert!((p50 - 500.0).abs() / 500.0 < 0.15, "{p50}");
        assert!((p95 - 950.0).abs() / 950.0 < 0.15, "{p95}");
        assert_eq!(histogram::bucket(0.0), 0);
        assert_eq!(histogram::bucket(1e9), histogram::BUCKETS - 1);
        assert_eq!(histogram::quantile(&[0; 4], 0.5), 0.0);
    }
}
