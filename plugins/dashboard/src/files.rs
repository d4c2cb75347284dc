//! The page's files, embedded at build time, and how they are answered.
//!
//! Every file gets the same security headers: a `Content-Security-Policy`
//! that allows scripts, styles, images and connections from this origin only
//! (no inline script or style, no `eval`, no frames, and Trusted Types
//! required so a DOM sink cannot take a string by accident), `nosniff`, no
//! referrer and no framing. Caching: `no-cache` with a strong `ETag` (a hash
//! of the bytes), so the browser asks again each time and gets a `304` while
//! the file is unchanged: the files are small and local, and a plugin
//! upgraded under a running browser is picked up at the next load instead
//! of mixing an old script with a new page.

use std::collections::HashMap;

use ccproxy_plugin_abi::prelude::*;
use sha2::{Digest, Sha256};

/// The policy of every answer (see the module doc).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// `Cache-Control` of every file: stored, but checked (ETag) before each use.
pub(crate) const CACHE_CONTROL: &str = "no-cache";

/// The page, with `{{settings}}` where its `data-` attributes go.
const PAGE_TEMPLATE: &str = include_str!("../web/index.html");

/// The other files: path below `/dashboard`, content type, bytes.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
    (
        "/assets/dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/assets/dashboard.css"),
    ),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/assets/dashboard.js"),
    ),
    (
        "/assets/sse.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/assets/sse.js"),
    ),
    (
        "/assets/charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/assets/charts.js"),
    ),
];

/// What the page reads from its `data-` attributes (the plugin's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageSettings {
    /// `session` or `local`.
    pub(crate) token_storage: &'static str,
    pub(crate) hours: u32,
    pub(crate) initial_rows: u32,
    pub(crate) max_rows: u32,
    pub(crate) refresh_seconds: u32,
}

impl PageSettings {
    /// The `data-` attributes of the page's root element. Every value is a
    /// number or a fixed word, so nothing needs escaping.
    fn attributes(&self) -> String {
        format!(
            r#"data-token-storage="{}" data-hours="{}" data-initial-rows="{}" data-max-rows="{}" data-refresh-seconds="{}""#,
            self.token_storage, self.hours, self.initial_rows, self.max_rows, self.refresh_seconds
        )
    }
}

/// One file as served.
#[derive(Debug)]
struct File {
    content_type: &'static str,
    body: Vec<u8>,
    /// Quoted, as in the header.
    etag: String,
}

impl File {
    fn new(content_type: &'static str, body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            content_type,
            body,
            etag: format!("\"{hex}\""),
        }
    }
}

/// Every file, by full request path.
#[derive(Debug)]
pub(crate) struct Files {
    by_path: HashMap<String, File>,
}

impl Files {
    /// The files, with the page's settings written into it.
    pub(crate) fn new(settings: &PageSettings) -> Self {
        let page = PAGE_TEMPLATE.replace("{{settings}}", &settings.attributes());
        let mut by_path = HashMap::new();
        for path in ["/dashboard", "/dashboard/"] {
            by_path.insert(
                path.to_owned(),
                File::new("text/html; charset=utf-8", page.clone().into_bytes()),
            );
        }
        for (path, content_type, body) in STATIC_FILES {
            by_path.insert(
                format!("/dashboard{path}"),
                File::new(content_type, body.to_vec()),
            );
        }
        Self { by_path }
    }

    /// How many distinct files (the page counts once).
    pub(crate) fn len(&self) -> usize {
        STATIC_FILES.len() + 1
    }

    /// Their size in bytes (the page counts once).
    pub(crate) fn total_bytes(&self) -> usize {
        self.by_path
            .iter()
            .filter(|(path, _)| path.as_str() != "/dashboard/")
            .map(|(_, file)| file.body.len())
            .sum()
    }

    /// The answer to `GET path`: the file (`200`), `304` when
    /// `if_none_match` names its current ETag, or `404`.
    pub(crate) fn answer(&self, path: &str, if_none_match: Option<&str>) -> Response {
        let Some(file) = self.by_path.get(path) else {
            let mut response = Response::text(
                404,
                format!(
                    "no file {path} in the dashboard; it serves /dashboard, /dashboard/favicon.svg and /dashboard/assets/{{dashboard.js,dashboard.css,sse.js,charts.js}}"
                ),
            );
            secure(&mut response);
            return response;
        };
        let mut response = if if_none_match.is_some_and(|tags| etag_matches(tags, &file.etag)) {
            Response::new(304, Vec::new())
        } else {
            let mut response = Response::new(200, file.body.clone());
            response.headers.set("content-type", file.content_type);
            response
        };
        response.headers.set("etag", file.etag.clone());
        response.headers.set("cache-control", CACHE_CONTROL);
        secure(&mut response);
        response
    }
}

/// The security headers of every answer.
fn secure(response: &mut Response) {
    let headers = &mut response.headers;
    headers.set("content-security-policy", CONTENT_SECURITY_POLICY);
    headers.set("x-content-type-options", "nosniff");
    headers.set("referrer-policy", "no-referrer");
    headers.set("x-frame-options", "DENY");
    headers.set("cross-origin-opener-policy", "same-origin");
}

/// Whether an `If-None-Match` value (`*`, or a list of tags, weak or not)
/// names `etag` (weak comparison, RFC 9110 13.1.2).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let etag = "\"abc\"";
        assert!(etag_matches("\"abc\"", etag));
        assert!(etag_matches("W/\"abc\"", etag));
        assert!(etag_matches("\"x\", \"abc\"", etag));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"abcd\"", etag));
        assert!(!etag_matches("abc", etag));
        assert!(!etag_matches("", etag));
    }

    #[test]
    fn the_page_carries_the_settings_and_no_placeholder() {
        let settings = PageSettings {
            token_storage: "local",
            hours: 6,
            initial_rows: 50,
            max_rows: 200,
            refresh_seconds: 10,
        };
        let files = Files::new(&settings);
        let page = String::from_utf8(files.answer("/dashboard", None).body).unwrap();
        assert!(!page.contains("{{"), "{page}");
        assert!(page.contains(&settings.attributes()), "{page}");
    }
}
