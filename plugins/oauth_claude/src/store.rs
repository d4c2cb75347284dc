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

use std::{
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::SystemTime,
};

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map},
};
use serde::{Deserialize, Deserializer, Serialize};

/// The key of the file this plugin owns.
pub(crate) const OAUTH_KEY: &str = "claudeAiOauth";

/// A token. `Debug` prints `***`, so a credentials struct can be logged or
/// put in an error without leaking it; [`Secret::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    #[cfg(test)]
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token itself: for the HTTP request or the `access_token` answer only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The first 6 and last 4 characters around `***`; just `***` when the
    /// token is too short for that to hide most of it.
    pub(crate) fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 20 {
            return "***".to_owned();
        }
        let head: String = chars[..6].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}***{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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

/// What identifies one version of the file on disk: a rename over it changes
/// the inode, an in-place write the length or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    device: u64,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

struct Cached {
    stamp: Stamp,
    document: Map<String, Value>,
}

/// The credentials file and the last version read from it.
pub(crate) struct CredentialStore {
    path: PathBuf,
    // Internal: a std mutex, held only while copying in or out, never across
    // an await. Writers are serialised by the plugin's async lock.
    cache: Mutex<Option<Cached>>,
}

impl CredentialStore {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored login, or `None` when there is none (no file, no
    /// `claudeAiOauth` key, or an empty access token).
    pub(crate) fn load(&self) -> Result<Option<OAuthCredentials>, PluginError> {
        let document = self.document()?;
        let Some(value) = document.get(OAUTH_KEY).filter(|value| !value.is_null()) else {
            return Ok(None);
        };
        let credentials: OAuthCredentials =
            serde_json::from_value(value.clone()).map_err(|error| {
                PluginError::internal(format!(
                    "{}: {OAUTH_KEY} is malformed ({error}); run `ccproxy auth login claude-api`",
                    self.path.display()
                ))
            })?;
        Ok((!credentials.access_token.expose().is_empty()).then_some(credentials))
    }

    /// Stores `credentials` under `claudeAiOauth`, keeping the file's other keys.
    pub(crate) fn save(&self, credentials: &OAuthCredentials) -> Result<(), PluginError> {
        let mut document = self.document()?;
        let value = serde_json::to_value(credentials).map_err(|error| {
            PluginError::internal(format!("credentials could not be serialised: {error}"))
        })?;
        document.insert(OAUTH_KEY.to_owned(), value);
        self.write(document)
    }

    /// Deletes `claudeAiOauth`; deletes the file when nothing else is left in it.
    pub(crate) fn remove(&self) -> Result<(), PluginError> {
        let mut document = self.document()?;
        if document.remove(OAUTH_KEY).is_none() && !document.is_empty() {
            return Ok(());
        }
        if !document.is_empty() {
            return self.write(document);
        }
        *lock(&self.cache) = None;
        match fs::remove_file(self.target()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.io_error("could not delete", &error)),
        }
    }

    /// The file's JSON object: from the cache while the file is unchanged,
    /// read again when it changed (the Claude CLI refreshes it too). A missing
    /// file is an empty object.
    fn document(&self) -> Result<Map<String, Value>, PluginError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                *lock(&self.cache) = None;
                return Ok(Map::new());
            }
            Err(error) => return Err(self.io_error("could not open", &error)),
        };
        // The stamp comes from the open handle, so it belongs to the bytes read.
        let stamp = file
            .metadata()
            .map(|metadata| Stamp::of(&metadata))
            .map_err(|error| self.io_error("could not stat", &error))?;
        if let Some(cached) = lock(&self.cache).as_ref()
            && cached.stamp == stamp
        {
            return Ok(cached.document.clone());
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|error| self.io_error("could not read", &error))?;
        let document = if text.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(document)) => document,
                Ok(_) => {
                    return Err(PluginError::internal(format!(
                        "{} is not a JSON object; move it away and log in again",
                        self.path.display()
                    )));
                }
                Err(error) => {
                    return Err(PluginError::internal(format!(
                        "{} is not valid JSON ({error}); move it away and log in again",
                        self.path.display()
                    )));
                }
            }
        };
        *lock(&self.cache) = Some(Cached {
            stamp,
            document: document.clone(),
        });
        Ok(document)
    }

    fn write(&self, document: Map<String, Value>) -> Result<(), PluginError> {
        let target = self.target();
        let bytes = serde_json::to_vec(&document).map_err(|error| {
            PluginError::internal(format!("credentials could not be serialised: {error}"))
        })?;
        write_atomically(&target, &bytes)
            .map_err(|error| self.io_error("could not write", &error))?;
        let stamp = fs::metadata(&target)
            .ok()
            .map(|metadata| Stamp::of(&metadata));
        *lock(&self.cache) = stamp.map(|stamp| Cached { stamp, document });
        Ok(())
    }

    /// Where writes go: through a symlink to its target, so a credentials
    /// file linked from elsewhere stays linked.
    fn target(&self) -> PathBuf {
        fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
    }

    fn io_error(&self, what: &str, error: &io::Error) -> PluginError {
        PluginError::internal(format!("{what} {}: {error}", self.path.display()))
    }
}

/// Writes `bytes` to `<path>.tmp` (mode 0600), syncs it and renames it over
/// `path`, so a reader sees the old file or the new one, never half of one.
/// Creates the parent directory (mode 0700) when it is missing.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crash may have other permissions; `mode` applies only
    // to a file this call creates.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask can only remove bits; set them exactly anyway.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    // Makes the rename itself durable; a failure here loses nothing written.
    if let Ok(directory) = File::open(parent) {
        let _ = directory.sync_all();
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secret_debug_and_mask_hide_the_token() {
        let secret = Secret::new("sk-ant-oat01-abcdefghijklmnopWXYZ");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.masked(), "sk-ant***WXYZ");
        assert_eq!(Secret::new("short-token").masked(), "***");
        assert_eq!(Secret::new("").masked(), "***");
        let debug = format!("{:?}", credentials("sk-ant-oat01-abcdefghijklmnopWXYZ"));
        assert!(!debug.contains("abcdefghijklmnop"), "{debug}");
        assert!(!debug.contains("refresh-1"), "{debug}");
    }

    #[test]
    fn write_creates_the_parent_0700_and_the_file_0600_without_leftovers() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("new/.credentials.json");
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(!scratch.path().join("new/.credentials.json.tmp").exists());
    }

    #[test]
    fn write_replaces_a_stale_tmp_with_other_permissions() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let tmp = scratch.path().join("c.json.tmp");
        fs::write(&tmp, "stale").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"{\"a\":1}").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(!tmp.exists());
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
