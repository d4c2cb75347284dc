//! An upstream's API key: from an environment variable (read once at
//! start-up) or a file (read again whenever it changes), never printed.

use std::{path::PathBuf, sync::Mutex, time::SystemTime};

use ccproxy_plugin_kit::mask::Secret;

/// Where an upstream's key comes from.
#[derive(Debug)]
pub(crate) enum Credential {
    /// The upstream needs none (a local Ollama or vLLM).
    None,
    /// An environment variable, read at start-up; `None` when it was unset
    /// or empty.
    Env {
        variable: String,
        key: Option<Secret>,
    },
    /// A file, read when it changes.
    File(KeyFile),
}

/// Why no key is at hand: a message that names the variable or the file,
/// never the key.
pub(crate) type Missing = String;

impl Credential {
    /// The key, or why there is none; `Ok(None)` when none is configured.
    pub(crate) fn key(&self) -> Result<Option<Secret>, Missing> {
        match self {
            Credential::None => Ok(None),
            Credential::Env { variable, key } => match key {
                Some(key) => Ok(Some(key.clone())),
                None => Err(format!(
                    "environment variable {variable} (api_key_env) is not set or empty"
                )),
            },
            Credential::File(file) => file.key().map(Some),
        }
    }

    /// Where the key comes from, for the health page and the start-up line.
    pub(crate) fn source(&self) -> String {
        match self {
            Credential::None => "none".to_owned(),
            Credential::Env { variable, .. } => format!("env {variable}"),
            Credential::File(file) => format!("file {}", file.path.display()),
        }
    }
}

/// A key file and the last key read from it.
#[derive(Debug)]
pub(crate) struct KeyFile {
    path: PathBuf,
    // Internal: a std mutex, held only while comparing and copying.
    cached: Mutex<Option<(Stamp, Secret)>>,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl KeyFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The key: the file's first non-empty line, trimmed.
    fn key(&self) -> Result<Secret, Missing> {
        let describe = |error: std::io::Error| {
            format!(
                "api_key_file {} cannot be read: {error}",
                self.path.display()
            )
        };
        let metadata = std::fs::metadata(&self.path).map_err(describe)?;
        let stamp = Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        };
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((seen, key)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(key.clone());
        }
        let text = std::fs::read_to_string(&self.path).map_err(describe)?;
        let line = text.lines().map(str::trim).find(|line| !line.is_empty());
        let Some(line) = line else {
            return Err(format!("api_key_file {} is empty", self.path.display()));
        };
        let key = Secret::new(line);
        *cached = Some((stamp, key.clone()));
        Ok(key)
    }
}

/// `~/` at the start of `path` replaced by the home folder.
pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_and_the_key_never_printed() {
        let missing = Credential::Env {
            variable: "NO_SUCH_KEY".to_owned(),
            key: None,
        };
        let error = missing.key().unwrap_err();
        assert!(error.contains("NO_SUCH_KEY"), "{error}");
        let set = Credential::Env {
            variable: "SOME_KEY".to_owned(),
            key: Some(Secret::new("sk-very-secret-value-123456")),
        };
        assert!(!format!("{set:?}").contains("very-secret"));
        assert_eq!(set.source(), "env SOME_KEY");
    }

    #[test]
    fn a_key_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\n  first-key  \n").unwrap();
        let file = KeyFile::new(path.clone());
        assert_eq!(file.key().unwrap().expose(), "first-key");
        std::fs::write(&path, "second-key-longer\n").unwrap();
        assert_eq!(file.key().unwrap().expose(), "second-key-longer");
        std::fs::write(&path, "   \n").unwrap();
        assert!(file.key().unwrap_err().contains("is empty"));
        std::fs::remove_file(&path).unwrap();
        let error = file.key().unwrap_err();
        assert!(error.contains("cannot be read"), "{error}");
    }
}
