//! Pushing the exposition to a Prometheus Pushgateway through the host's
//! HTTP client (a plugin opens no sockets of its own).

use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ccproxy_plugin_abi::{Value, prelude::*};

/// A push slower than this counts as failed.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to push, and how the pushes went.
#[derive(Debug)]
pub(crate) struct Pushgateway {
    /// `{url}/metrics/job/{job}`.
    target: String,
    /// The same with any user and password in the URL masked, for logs and health.
    display: String,
    pushes: AtomicU64,
    failures: AtomicU64,
    last: Mutex<LastPush>,
}

#[derive(Debug, Default)]
struct LastPush {
    /// Seconds since the Unix epoch of the last successful push.
    success_at: Option<f64>,
    /// Why the last push failed; cleared by a successful one.
    error: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pushgateway {
    /// Pushes to the Pushgateway at base URL `url` under job `job`.
    pub(crate) fn new(url: &str, job: &str) -> Result<Self, PluginError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PluginError::invalid(format!(
                "pushgateway_url {:?} is not an http:// or https:// URL",
                mask_credentials(url)
            )));
        }
        if job.is_empty() {
            return Err(PluginError::invalid("pushgateway_job must not be empty"));
        }
        let base = url.trim_end_matches('/');
        let target = format!("{base}/metrics/job/{}", escape_path_segment(job));
        Ok(Self {
            display: mask_credentials(&target),
            target,
            pushes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last: Mutex::default(),
        })
    }

    /// The push URL with credentials masked.
    pub(crate) fn display_url(&self) -> &str {
        &self.display
    }

    /// Why the last push failed, if it did.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last).error.clone()
    }

    /// PUTs `text`, replacing what the Pushgateway holds for the job, as the
    /// Python client's `push_to_gateway` does. Failures are counted and
    /// kept for health, and logged once per change of reason.
    pub(crate) async fn push(&self, ctx: &Context, text: String) {
        let request = HttpRequest {
            method: "PUT".to_owned(),
            url: self.target.clone(),
            body: text.into_bytes(),
            timeout: Some(PUSH_TIMEOUT),
            ..HttpRequest::default()
        }
        .header("content-type", super::CONTENT_TYPE);
        let outcome = match ctx.http(request).await {
            Ok(response) if (200..300).contains(&response.status) => Ok(()),
            Ok(response) => Err(format!(
                "{} answered {}: {}",
                self.display,
                response.status,
                String::from_utf8_lossy(&response.body[..response.body.len().min(200)]).trim()
            )),
            Err(error) => Err(format!("{}: {}", self.display, error.message())),
        };
        self.pushes.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last);
        match outcome {
            Ok(()) => {
                if last.error.take().is_some() {
                    info!("metrics pushed to {} again", self.display);
                }
                last.success_at = Some(now_seconds());
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if last.error.as_deref() != Some(error.as_str()) {
                    warn!("metrics push failed: {error}");
                }
                last.error = Some(error);
            }
        }
    }

    /// What health shows.
    pub(crate) fn status(&self) -> Value {
        let last = lock(&self.last);
        json!({
            "url": self.display,
            "pushes": self.pushes.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "last_success_at": last.success_at,
            "last_error": last.error,
        })
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// `job` as one URL path segment: unreserved characters as they are, every
/// other byte percent-encoded (a `/` in a job name would otherwise become a
/// grouping label).
fn escape_path_segment(segment: &str) -> String {
    let mut escaped = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// `url` with the user information before the host (`user:password@`)
/// replaced by `***@`.
fn mask_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_one_path_segment() {
        assert_eq!(escape_path_segment("ccproxy"), "ccproxy");
        assert_eq!(escape_path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn credentials_in_the_url_are_masked() {
        assert_eq!(
            mask_credentials("https://user:secret@push.test:9091/metrics/job/x"),
            "https://***@push.test:9091/metrics/job/x"
        );
        assert_eq!(
            mask_credentials("http://push.test/metrics/job/a@b"),
            "http://push.test/metrics/job/a@b"
        );
    }

    #[test]
    fn the_target_is_the_job_under_the_base_url() {
        let pushgateway = Pushgateway::new("http://127.0.0.1:9091/", "my job").unwrap();
        assert_eq!(
            pushgateway.target,
            "http://127.0.0.1:9091/metrics/job/my%20job"
        );
        assert!(Pushgateway::new("127.0.0.1:9091", "ccproxy").is_err());
        assert!(Pushgateway::new("http://127.0.0.1:9091", "").is_err());
    }
}
