//! One short line per request on stdout (`POST /claude/v1/messages 200 812 ms`),
//! for the person watching `ccproxy serve` in a terminal; `server.request_lines
//! = false` or `--quiet` turns it off. The path is printed without its query
//! string, which may carry a key; no header is printed.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the lines on or off (`server.request_lines`); off until called.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Prints the line of one finished request, when the lines are on.
pub(super) fn print(method: &str, path: &str, status: u16, duration_ms: f64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let line = format_line(method, path, status, duration_ms);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn format_line(method: &str, path: &str, status: u16, duration_ms: f64) -> String {
    const LONGEST_PATH: usize = 200;
    // Internal: `path` is the URI's path (hyper keeps the query apart), but a
    // `?` is cut anyway in case a caller passes a whole target.
    let path = path.split('?').next().unwrap_or_default();
    let path = match path.char_indices().nth(LONGEST_PATH) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    };
    let duration = if duration_ms < 10.0 {
        format!("{duration_ms:.1} ms")
    } else if duration_ms < 1000.0 {
        format!("{duration_ms:.0} ms")
    } else {
        format!("{:.2} s", duration_ms / 1000.0)
    };
    format!("{method} {path} {status} {duration}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_short_and_carry_no_query() {
        assert_eq!(
            format_line("POST", "/claude/v1/messages", 200, 812.4),
            "POST /claude/v1/messages 200 812 ms"
        );
        assert_eq!(
            format_line("GET", "/x?key=sk-secret", 401, 0.42),
            "GET /x 401 0.4 ms"
        );
        assert_eq!(format_line("GET", "/", 200, 2500.0), "GET / 200 2.50 s");
        let long = format!("/{}", "a".repeat(500));
        assert!(format_line("GET", &long, 404, 1.0).chars().count() < 230);
    }
}
