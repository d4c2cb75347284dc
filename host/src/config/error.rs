//! `ConfigError`: every way loading the configuration can fail, each carrying what was wrong.

use std::fmt;
use std::path::PathBuf;

/// Where a config value came from; printed in errors and by `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML config file.
    File(PathBuf),
    /// An environment variable (its name as it was set).
    Env(String),
    /// A command-line flag (`--port`).
    Cli(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => formatter.write_str("by default"),
            Origin::File(path) => write!(formatter, "in {}", path.display()),
            Origin::Env(var) => write!(formatter, "from env {var}"),
            Origin::Cli(flag) => write!(formatter, "from {flag}"),
        }
    }
}

/// One key that no part of the configuration knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Dotted name, e.g. `server.prot`.
    pub key: String,
    /// Where it was set.
    pub origin: Origin,
    /// The table it sits in, e.g. `[server]`, or `top level`.
    pub table: String,
    /// The keys that table does accept.
    pub known: Vec<String>,
    /// A known key it is probably a typo of.
    pub suggestion: Option<String>,
    /// Advice for keys of the Python original.
    pub hint: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "unknown config key `{}` {}",
            self.key, self.origin
        )?;
        if let Some(hint) = &self.hint {
            write!(formatter, " ({hint})")?;
        }
        let known_in = if self.table == "top level" {
            "known top-level keys".to_owned()
        } else {
            format!("known keys in {}", self.table)
        };
        write!(formatter, "; {known_in}: {}", self.known.join(", "))?;
        if let Some(suggestion) = &self.suggestion {
            write!(formatter, "; did you mean `{suggestion}`?")?;
        }
        Ok(())
    }
}

/// Loading the configuration failed. Every message is one line that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file named explicitly (`--config` or `CONFIG_FILE`) does not exist.
    #[error(
        "config file {} does not exist (given by {given_by}); fix the path or drop {given_by} to use the default search",
        path.display()
    )]
    FileNotFound {
        /// The path as resolved against the working directory.
        path: PathBuf,
        /// `--config` or `env CONFIG_FILE`.
        given_by: String,
    },
    /// The config file exists but could not be read.
    #[error("cannot read config file {}: {source}; check that it is a readable file", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error(
        "invalid TOML in {} at line {line}, column {column}: {message}; fix the syntax there",
        path.display()
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Keys that no part of the configuration knows, all of them, from every source.
    #[error("{}", join_unknown(keys))]
    UnknownKeys {
        /// Every unknown key with its origin and the keys known in its table.
        keys: Vec<UnknownKey>,
    },
    /// A known key has a value of the wrong type or out of range.
    #[error("{key} = {value} {origin}: expected {expected}")]
    BadValue {
        /// Dotted key, e.g. `server.port`.
        key: String,
        /// The value as written (TOML syntax); `***` for secrets.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// What a valid value looks like.
        expected: String,
    },
    /// An environment variable for a known section has a bad name or value.
    #[error("env {var}={value}: expected {expected}; fix or unset it")]
    BadEnvVar {
        /// The variable's name.
        var: String,
        /// Its value; `***` for secrets.
        value: String,
        /// What a valid name or value looks like.
        expected: String,
    },
    /// Two environment variables set the same key, one as a table and one as a value.
    #[error("env {var} conflicts with env {other}: both set `{key}`; unset one of them")]
    EnvConflict {
        /// The variable that was refused.
        var: String,
        /// The variable set before it.
        other: String,
        /// The dotted key both touch.
        key: String,
    },
    /// A path uses `${VAR}` for a variable that is not set.
    #[error("{key} = {value:?} {origin}: ${{{variable}}} is not set; set it or write the path out")]
    UnsetVariable {
        /// Dotted key, e.g. `plugin_discovery.directories`.
        key: String,
        /// The path as written.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// The variable's name.
        variable: String,
    },
    /// A CA file (`http.extra_ca_file`) cannot be read or holds no usable certificate.
    #[error(
        "{key} = \"{}\" {origin}: {problem}; point it at a PEM file of CA certificates or remove the setting",
        path.display()
    )]
    CaFile {
        /// Dotted key, `http.extra_ca_file`.
        key: String,
        /// The file, resolved.
        path: PathBuf,
        /// Where it was set.
        origin: Origin,
        /// What is wrong with it.
        problem: crate::upstream::CaFileError,
    },
    /// The merged configuration did not deserialise although each part checked out. This is a
    /// bug in the checks, reported rather than hidden.
    #[error("invalid configuration: {message}; check the values it names")]
    Invalid {
        /// The deserialiser's message.
        message: String,
    },
}

fn join_unknown(keys: &[UnknownKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    /// Whether this error reports unknown keys.
    pub fn is_unknown_keys(&self) -> bool {
        matches!(self, ConfigError::UnknownKeys { .. })
    }
}
