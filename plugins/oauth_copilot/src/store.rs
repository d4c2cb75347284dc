//! The stored GitHub token: one JSON file in the plugin's private data
//! folder (0700), written atomically with mode 0600 and never read or written
//! through a symlink.

use std::{
    fs::OpenOptions,
    io::{self, Read},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use ccproxy_plugin_abi::{PluginError, json, serde_json};
use ccproxy_plugin_kit::{mask::Secret, now_ms, private_files::PrivateDir};

/// The file holding the GitHub token.
pub(crate) struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn folder(&self) -> Result<(PrivateDir, String), PluginError> {
        let parent = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| PluginError::internal("the token file has no file name"))?;
        let folder = PrivateDir::open(parent.to_path_buf())?;
        // The host creates the plugin's data folder with the umask's mode;
        // the token's folder is the user's alone.
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|error| self.error("could not make private", &error))?;
        Ok((folder, name))
    }

    /// The stored GitHub token, `None` when there is no file.
    pub(crate) fn load(&self) -> Result<Option<Secret>, PluginError> {
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.error("could not open", &error)),
        };
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|error| self.error("could not read", &error))?;
        let document: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
            PluginError::internal(format!(
                "{} is not valid JSON ({error}); remove it and run `ccproxy auth login copilot`",
                self.path.display()
            ))
        })?;
        Ok(document["github_token"]
            .as_str()
            .filter(|token| !token.trim().is_empty())
            .map(Secret::new))
    }

    /// Stores `token`, replacing the file atomically (mode 0600).
    pub(crate) fn save(&self, token: &Secret) -> Result<(), PluginError> {
        let (folder, name) = self.folder()?;
        let document = json!({
            "github_token": token.expose(),
            "token_type": "bearer",
            "saved_at_ms": now_ms(),
        });
        let bytes = serde_json::to_vec_pretty(&document)
            .map_err(|error| PluginError::internal(error.to_string()))?;
        folder
            .write(&name, &bytes)
            .map_err(|error| self.error("could not write", &error))
    }

    /// Deletes the file; a missing file is fine.
    pub(crate) fn remove(&self) -> Result<(), PluginError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.error("could not delete", &error)),
        }
    }

    fn error(&self, what: &str, error: &io::Error) -> PluginError {
        PluginError::internal(format!("{what} {}: {error}", self.path.display()))
    }
}
