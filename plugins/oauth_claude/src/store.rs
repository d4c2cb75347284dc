//! The credentials file: by default the Claude CLI's own
//! `~/.claude/.credentials.json`, read again whenever it changes on disk and
//! written atomically with mode 0600.
//!
//! The file is a JSON object; this plugin owns only its `claudeAiOauth` key
//! and keeps every other key as it found it:
//!
//! ```json
//! {"claudeAiOauth": {"accessToken": "sk-ant-oat01-…", "refreshToken": "sk-ant-ort01-…",
//!   "expiresAt": 1767225600000, "scopes": ["user:inference", "user:profile"],
//!   "subscriptionType": "max"}}
//! ```

use std::path::{Path, PathBuf};

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map},
};
pub(crate) use ccproxy_plugin_kit::mask::Secret;
use ccproxy_plugin_kit::secret_file::{Layout, SecretFile};
use serde::{Deserialize, Deserializer, Serialize};

/// The key of the file this plugin owns.
pub(crate) const OAUTH_KEY: &str = "claudeAiOauth";

/// The `claudeAiOauth` object, in the Claude CLI's spelling. Keys this plugin
/// does not know (`rateLimitTier` …) are kept across a refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OAuthCredentials {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_millis")]
    pub(crate) expires_at: Option<u64>,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) subscription_type: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

impl OAuthCredentials {
    /// Whether the access token expires within `grace_ms` of `now_ms`. A token
    /// without an expiry is taken to be valid: there is nothing to compare.
    pub(crate) fn expires_within(&self, now_ms: u64, grace_ms: u64) -> bool {
        self.expires_at
            .is_some_and(|expires_at| expires_at <= now_ms.saturating_add(grace_ms))
    }
}

/// Accepts `expiresAt` as an integer or a float (a JavaScript `Date.now()`
/// arithmetic result), and null.
fn lenient_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.and_then(|value| {
        value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|millis| millis.is_finite() && *millis >= 0.0)
                .map(|millis| millis as u64)
        })
    }))
}

/// The credentials file, through the kit's [`SecretFile`].
pub(crate) struct CredentialStore {
    file: SecretFile,
}

impl CredentialStore {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            file: SecretFile::new(path, Layout::Compact),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// The stored login, or `None` when there is none (no file, no
    /// `claudeAiOauth` key, or an empty access token).
    pub(crate) fn load(&self) -> Result<Option<OAuthCredentials>, PluginError> {
        let document = self.file.document()?;
        let Some(value) = document.get(OAUTH_KEY).filter(|value| !value.is_null()) else {
            return Ok(None);
        };
        let credentials: OAuthCredentials =
            serde_json::from_value(value.clone()).map_err(|error| {
                PluginError::internal(format!(
                    "{}: {OAUTH_KEY} is malformed ({error}); run `ccproxy auth login claude-api`",
                    self.path().display()
                ))
            })?;
        Ok((!credentials.access_token.expose().is_empty()).then_some(credentials))
    }

    /// Stores `credentials` under `claudeAiOauth`, keeping the file's other keys.
    pub(crate) fn save(&self, credentials: &OAuthCredentials) -> Result<(), PluginError> {
        let mut document = self.file.document()?;
        let value = serde_json::to_value(credentials).map_err(|error| {
            PluginError::internal(format!("credentials could not be serialised: {error}"))
        })?;
        document.insert(OAUTH_KEY.to_owned(), value);
        self.file.write(document)
    }

    /// Deletes `claudeAiOauth`; deletes the file when nothing else is left in it.
    pub(crate) fn remove(&self) -> Result<(), PluginError> {
        let mut document = self.file.document()?;
        if document.remove(OAUTH_KEY).is_none() && !document.is_empty() {
            return Ok(());
        }
        if !document.is_empty() {
            return self.file.write(document);
        }
        self.file.delete()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use ccproxy_plugin_abi::json;
    use ccproxy_plugin_kit::secret_file::write_atomically;

    use super::*;

    fn credentials(access_token: &str) -> OAuthCredentials {
        OAuthCredentials {
            access_token: Secret::new(access_token),
            refresh_token: Some(Secret::new("refresh-1")),
            expires_at: Some(1_700_000_000_000),
            scopes: vec!["user:inference".to_owned()],
            subscription_type: Some("pro".to_owned()),
            other: Map::new(),
        }
    }

    #[test]
    fn credentials_debug_hides_the_tokens() {
        let debug = format!("{:?}", credentials("sk-ant-oat01-abcdefghijklmnopWXYZ"));
        assert!(!debug.contains("abcdefghijklmnop"), "{debug}");
        assert!(!debug.contains("refresh-1"), "{debug}");
    }

    #[test]
    fn load_is_none_without_file_key_or_token() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let store = CredentialStore::new(path.clone());
        assert_eq!(store.load().unwrap(), None);
        fs::write(&path, r#"{"other": 1}"#).unwrap();
        assert_eq!(store.load().unwrap(), None);
        fs::write(&path, r#"{"claudeAiOauth": {"accessToken": ""}}"#).unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn load_reads_the_claude_cli_shape_and_keeps_unknown_keys() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        fs::write(
            &path,
            r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1.7e12,
               "scopes":["user:inference"],"subscriptionType":null,"rateLimitTier":"t"}}"#,
        )
        .unwrap();
        let loaded = CredentialStore::new(path).load().unwrap().unwrap();
        assert_eq!(loaded.expires_at, Some(1_700_000_000_000));
        assert_eq!(loaded.subscription_type, None);
        assert_eq!(loaded.other.get("rateLimitTier"), Some(&json!("t")));
    }

    #[test]
    fn load_reads_again_when_the_file_changes_behind_its_back() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let store = CredentialStore::new(path.clone());
        store.save(&credentials("first")).unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().access_token.expose(),
            "first"
        );
        // Another program rewrites the file (same length, maybe same mtime):
        // the rename gives it a new inode.
        let mut other = credentials("other");
        other.other.insert("x".into(), json!(1));
        write_atomically(
            &path,
            &serde_json::to_vec(&json!({ OAUTH_KEY: other })).unwrap(),
        )
        .unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().access_token.expose(),
            "other"
        );
        fs::remove_file(&path).unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn malformed_file_is_an_error_naming_it() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        fs::write(&path, "{not json").unwrap();
        let error = CredentialStore::new(path.clone()).load().unwrap_err();
        assert!(
            error.message().contains(&path.display().to_string()),
            "{error}"
        );
        fs::write(&path, "[]").unwrap();
        let error = CredentialStore::new(path).load().unwrap_err();
        assert!(error.message().contains("not a JSON object"), "{error}");
    }

    #[test]
    fn save_and_remove_keep_other_keys_and_follow_symlinks() {
        let scratch = tempfile::tempdir().unwrap();
        let real = scratch.path().join("real.json");
        let link = scratch.path().join("link.json");
        fs::write(&real, r#"{"keep": {"me": true}}"#).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let store = CredentialStore::new(link.clone());
        store.save(&credentials("a")).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let document: Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
        assert_eq!(document["keep"], json!({"me": true}));
        assert_eq!(document[OAUTH_KEY]["accessToken"], json!("a"));
        store.remove().unwrap();
        let document: Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
        assert_eq!(document, json!({"keep": {"me": true}}));
    }

    #[test]
    fn remove_deletes_the_file_when_nothing_else_is_left() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let store = CredentialStore::new(path.clone());
        store.save(&credentials("a")).unwrap();
        store.remove().unwrap();
        assert!(!path.exists());
        // Nothing stored: still fine.
        store.remove().unwrap();
    }
}
