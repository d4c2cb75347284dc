//! Logging set-up and secret masking.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{Config, LogFormat};

/// Header names whose values are secrets.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
    "x-auth-token",
    "anthropic-api-key",
    "openai-api-key",
];

/// The value of header `name` as it may be logged: secrets keep only a hint
/// (scheme and last 4 characters) so operators can tell keys apart.
pub fn redact_header(name: &str, value: &str) -> String {
    if is_secret_header(name) {
        mask(value)
    } else {
        value.to_owned()
    }
}

/// Whether header `name` carries a secret that logs and hooks see masked.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Masks a secret: `Bearer sk-ant-…abcd` becomes `Bearer ***abcd`.
pub fn mask(value: &str) -> String {
    let (scheme, secret) = match value.split_once(' ') {
        Some((scheme, secret)) if scheme.len() < 10 => (format!("{scheme} "), secret),
        _ => (String::new(), value),
    };
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        format!("{scheme}***")
    } else {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{scheme}***{tail}")
    }
}

/// Installs the global subscriber for `config.logging` (stderr, or the
/// configured file). `RUST_LOG` is not read: the level comes through the
/// config chain (`logging.level`, `LOGGING__LEVEL`, `--log-level`).
pub fn init(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.logging.level).map_err(|error| {
        anyhow::anyhow!("invalid log level {:?}: {error}", config.logging.level)
    })?;
    let json = matches!(config.logging.format, LogFormat::Json);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match &config.logging.file
    {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).ok();
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| {
                    anyhow::anyhow!("cannot open log file {}: {error}", path.display())
                })?;
            let file = std::sync::Arc::new(file);
            Box::new(move || Box::new(FileWriter(file.clone())) as Box<dyn std::io::Write>)
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let layer = fmt::layer().with_writer(writer).with_target(true);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(layer.json()).try_init().ok();
    } else {
        registry.with(layer.with_ansi(false)).try_init().ok();
    }
    Ok(())
}

/// Logging for a CLI command (`ccproxy auth …`): plain lines on stderr at
/// `level` (`--log-level`, else `warn`, so a plugin's problems show and its
/// lifecycle chatter does not).
pub fn init_cli(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|error| anyhow::anyhow!("invalid log level {level:?}: {error}"))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(true)
                .with_ansi(false),
        )
        .try_init()
        .ok();
    Ok(())
}

struct FileWriter(std::sync::Arc<std::fs::File>);

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_keep_only_a_hint() {
        assert_eq!(
            redact_header("Authorization", "Bearer sk-ant-api03-abcdefghijkl"),
            "Bearer ***ijkl"
        );
        assert_eq!(redact_header("x-api-key", "short"), "***");
        assert_eq!(
            redact_header("content-type", "application/json"),
            "application/json"
        );
    }
}
