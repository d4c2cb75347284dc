//! curl and xh commands that send a request again, byte for byte.
//!
//! The body is fed on standard input by the shell's `printf` builtin
//! (`printf '%s' '…' | curl … --data-binary @-`): a single-quoted shell word
//! keeps every byte but NUL as it is (newlines and quotes included; a `'`
//! is written `'\''`), and a builtin has no argument-length limit, where
//! `--data-raw '…'` fails on Linux for one argument over 128 KiB. A body
//! with a NUL byte, or that is not UTF-8, is written as `printf` octal
//! escapes instead (`'\101\000…'`), which the format string turns back into
//! the same bytes.

use std::fmt::Write as _;

/// One request to replay.
#[derive(Debug)]
pub(crate) struct Replay<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    /// In the order they are sent; hop-by-hop headers are left out here.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: &'a [u8],
}

/// Headers the client computes or that belong to one connection: curl and
/// xh set them themselves from the URL and the body.
const LEFT_OUT: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Whether header `name` is left out of a replay (see [`LEFT_OUT`]).
pub(crate) fn is_left_out(name: &str) -> bool {
    LEFT_OUT.iter().any(|left| left.eq_ignore_ascii_case(name))
}

/// `text` as one single-quoted shell word.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The shell command that writes `body` to standard output exactly.
pub(crate) fn body_feed(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if !text.contains('\0') => format!("printf '%s' {}", shell_quote(text)),
        _ => {
            let mut escaped = String::with_capacity(body.len() * 4 + 10);
            escaped.push_str("printf '");
            for byte in body {
                let _ = write!(escaped, "\\{byte:03o}");
            }
            escaped.push('\'');
            escaped
        }
    }
}

/// Joins the words of a command: one line, or one word group per line with
/// ` \` continuations when `pretty`.
fn join(words: Vec<String>, pretty: bool) -> String {
    if pretty {
        words.join(" \\\n  ")
    } else {
        words.join(" ")
    }
}

/// The curl command.
pub(crate) fn curl(replay: &Replay<'_>, pretty: bool) -> String {
    let mut words = vec![format!(
        "curl --silent --show-error -X {} {}",
        shell_quote(replay.method),
        shell_quote(replay.url)
    )];
    for (name, value) in &replay.headers {
        // `-H 'name:'` would remove the header; `name;` sends it empty.
        let header = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: {value}")
        };
        words.push(format!("-H {}", shell_quote(&header)));
    }
    if replay.body.is_empty() {
        return join(words, pretty);
    }
    words.push("--data-binary @-".to_owned());
    format!("{} | {}", body_feed(replay.body), join(words, pretty))
}

/// The xh command (<https://github.com/ducaale/xh>): `Name:value` items,
/// the body on standard input.
pub(crate) fn xh(replay: &Replay<'_>, pretty: bool) -> String {
    let mut words = vec![format!("xh {}", shell_quote(replay.method))];
    if replay.body.is_empty() {
        // Nothing to read: without this, xh waits for standard input.
        words[0].push_str(" --ignore-stdin");
    }
    words[0].push(' ');
    words[0].push_str(&shell_quote(replay.url));
    for (name, value) in &replay.headers {
        let item = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}:{value}")
        };
        words.push(shell_quote(&item));
    }
    if replay.body.is_empty() {
        return join(words, pretty);
    }
    format!("{} | {}", body_feed(replay.body), join(words, pretty))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// What `sh -c` prints for `script`.
    fn sh(script: &str) -> Vec<u8> {
        let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(output.status.success(), "{script}: {output:?}");
        output.stdout
    }

    #[test]
    fn quoting_survives_the_shell() {
        for text in [
            "plain",
            "it's",
            "'",
            "''x''",
            "a\nb\n",
            "$HOME `id` \\n \"q\" %s %%",
            "",
        ] {
            assert_eq!(
                sh(&format!("printf '%s' {}", shell_quote(text))),
                text.as_bytes(),
                "{text}"
            );
        }
    }

    #[test]
    fn bodies_are_fed_byte_for_byte() {
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"text":"it's \"quoted\"\nline","n":1}"#.to_vec(),
            b"trailing newlines\n\n".to_vec(),
            b"no newline at all".to_vec(),
            b"%s %d \\ \\\\ \\n".to_vec(),
            "unicode: caf\u{e9} \u{1f600}".as_bytes().to_vec(),
            vec![0, 1, 2, b'\'', 0xff, 0xfe, b'\n', 0],
        ];
        for body in bodies {
            assert_eq!(sh(&body_feed(&body)), body, "{body:?}");
        }
        assert!(body_feed(b"a\0b").starts_with("printf '\\141\\000"));
    }

    fn replay(body: &'static [u8]) -> Replay<'static> {
        Replay {
            method: "POST",
            url: "https://api.anthropic.com/v1/messages?beta=true",
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-api-key".to_owned(), "***".to_owned()),
                ("x-empty".to_owned(), String::new()),
            ],
            body,
        }
    }

    #[test]
    fn curl_commands_on_one_line_or_pretty() {
        let one_line = curl(&replay(b"{}"), false);
        assert_eq!(
            one_line,
            "printf '%s' '{}' | curl --silent --show-error -X 'POST' \
             'https://api.anthropic.com/v1/messages?beta=true' -H 'content-type: application/json' \
             -H 'x-api-key: ***' -H 'x-empty;' --data-binary @-"
        );
        let pretty = curl(&replay(b"{}"), true);
        assert_eq!(pretty.lines().count(), 5, "{pretty}");
        assert!(pretty.contains(" \\\n  -H 'x-api-key: ***'"), "{pretty}");
        let get = curl(
            &Replay {
                method: "GET",
                url: "http://x/",
                headers: Vec::new(),
                body: b"",
            },
            true,
        );
        assert_eq!(get, "curl --silent --show-error -X 'GET' 'http://x/'");
    }

    #[test]
    fn xh_commands_use_items_and_standard_input() {
        assert_eq!(
            xh(&replay(b"{}"), false),
            "printf '%s' '{}' | xh 'POST' 'https://api.anthropic.com/v1/messages?beta=true' \
             'content-type:application/json' 'x-api-key:***' 'x-empty;'"
        );
        let get = xh(
            &Replay {
                method: "GET",
                url: "http://x/",
                headers: Vec::new(),
                body: b"",
            },
            false,
        );
        assert_eq!(get, "xh 'GET' --ignore-stdin 'http://x/'");
    }

    #[test]
    fn hop_by_hop_headers_are_left_out() {
        for name in ["Host", "content-length", "Transfer-Encoding", "connection"] {
            assert!(is_left_out(name), "{name}");
        }
        assert!(!is_left_out("content-type"));
    }
}
