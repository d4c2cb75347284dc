//! Driving `ccproxy auth login` as a user would: start it, read the
//! authorize URL it prints, paste a code or call its callback, and collect
//! what it printed. Shared by the OAuth end-to-end tests of every provider.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{CliOutput, Sandbox};

/// A `ccproxy auth login …` process that has printed its authorize URL.
pub struct LoginProcess {
    child: Child,
    /// The authorize URL it printed.
    pub url: String,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl LoginProcess {
    /// Starts `ccproxy ARGS` and waits (20 s at most) for the authorize URL.
    pub fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> LoginProcess {
        let mut child = sandbox
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ccproxy auth login starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Lines as they come, so the test can answer the printed URL.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                all.push_str(&line);
                let _ = lines_tx.send(line.clone());
                line.clear();
            }
            all
        });
        let url = loop {
            match lines_rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("state=") => break line.trim().to_owned(),
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{args:?} printed no authorize URL; stdout:\n{}\nstderr:\n{}",
                        stdout.join().unwrap_or_default(),
                        stderr.join().unwrap_or_default()
                    );
                }
            }
        };
        LoginProcess {
            child,
            url,
            stdout,
            stderr,
        }
    }

    /// Query parameter `name` of the authorize URL (empty when missing).
    pub fn param(&self, name: &str) -> String {
        query_param(&self.url, name).unwrap_or_default()
    }

    /// Types `line` on its stdin and closes it.
    pub fn paste(&mut self, line: &str) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("the code can be pasted");
    }

    /// Waits (30 s at most) for it to exit.
    pub fn finish(mut self) -> CliOutput {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "auth login did not finish within 30 s; stdout:\n{}\nstderr:\n{}",
                    self.stdout.join().unwrap_or_default(),
                    self.stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        CliOutput {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

/// What `ccproxy auth login PROVIDER --manual` did.
pub struct Login {
    /// Its exit code and output.
    pub output: CliOutput,
    /// The authorize URL it printed.
    pub url: String,
}

/// Runs `auth login PROVIDER --manual`, reads the authorize URL it prints,
/// and pastes `paste(state)` (the state parsed from that URL) on its stdin.
pub fn manual_login(
    sandbox: &Sandbox,
    provider: &str,
    env: &[(&str, &str)],
    paste: impl Fn(&str) -> String,
) -> Login {
    let mut login = LoginProcess::start(sandbox, &["auth", "login", provider, "--manual"], env);
    let state = query_param(&login.url, "state").expect("the URL carries a state");
    login.paste(&paste(&state));
    let url = login.url.clone();
    Login {
        output: login.finish(),
        url,
    }
}

/// The value of query parameter `name` in `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Whether `text` uses only the base64url alphabet (no padding).
pub fn is_base64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
