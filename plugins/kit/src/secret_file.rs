//! A JSON credentials file: written atomically with mode 0600, read again
//! whenever it changes on disk.
//!
//! The file is one JSON object that other programs may share (the Claude
//! CLI's `~/.claude/.credentials.json`, the Codex CLI's `~/.codex/auth.json`):
//! a plugin reads the whole [`document`](SecretFile::document), changes the
//! keys it owns and [`write`](SecretFile::write)s it back, so keys of other
//! programs stay as they were. The last version read is cached and used
//! while the file's identity (inode, length, modification time) is unchanged,
//! so a login or refresh by the other program is seen at the next read.
//!
//! Writes go to a new `.<file>.<random>.tmp` (mode 0600, fsync) renamed over the file, so a
//! reader sees the old file or the new one, never half of one; through a
//! symlink to its target, so a linked file stays linked. The caller
//! serialises writers (a plugin's async lock): the cache only keeps readers
//! cheap.
//!
//! ```no_run
//! use ccproxy_plugin_kit::secret_file::{Layout, SecretFile};
//! use ccproxy_plugin_abi::Value;
//!
//! let file = SecretFile::new("/home/ada/.tool/auth.json".into(), Layout::Pretty);
//! let mut document = file.document()?;
//! document.insert("tokens".to_owned(), Value::from("…"));
//! file.write(document)?;
//! # Ok::<(), ccproxy_plugin_abi::PluginError>(())
//! ```

use std::{
    ffi::OsStr,
    fs::{self, DirBuilder, File},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::SystemTime,
};

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map},
};
use tempfile::NamedTempFile;

/// How the document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// On one line (`serde_json::to_vec`).
    Compact,
    /// Indented, as a human or a CLI that writes it so would
    /// (`serde_json::to_vec_pretty`).
    Pretty,
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
pub struct SecretFile {
    path: PathBuf,
    layout: Layout,
    // Internal: a std mutex, held only while copying in or out, never across
    // an await. Writers are serialised by the plugin's async lock.
    cache: Mutex<Option<Cached>>,
}

impl SecretFile {
    /// The file at `path` (which need not exist yet), written in `layout`.
    pub fn new(path: PathBuf, layout: Layout) -> Self {
        Self {
            path,
            layout,
            cache: Mutex::new(None),
        }
    }

    /// The path as configured (a symlink is not resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's JSON object: from the cache while the file is unchanged,
    /// read again when it changed. A missing or blank file is an empty
    /// object; anything but a JSON object is an error naming the file.
    pub fn document(&self) -> Result<Map<String, Value>, PluginError> {
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

    /// Replaces the file with `document`, atomically, mode 0600 (see
    /// [`write_atomically`]), and caches it.
    pub fn write(&self, document: Map<String, Value>) -> Result<(), PluginError> {
        let target = self.target();
        let bytes = match self.layout {
            Layout::Compact => serde_json::to_vec(&document),
            Layout::Pretty => serde_json::to_vec_pretty(&document),
        }
        .map_err(|error| {
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

    /// Deletes the file (the symlink's target when it is one); a file that
    /// is not there is fine.
    pub fn delete(&self) -> Result<(), PluginError> {
        *lock(&self.cache) = None;
        match fs::remove_file(self.target()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.io_error("could not delete", &error)),
        }
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

/// A new temporary file in `folder` for a write that replaces `name`, which
/// no other writer shares, in this process or another: `.<name>.<random>.tmp`,
/// created `O_EXCL` (so a symlink planted there is never followed) with mode
/// 0600, and removed when dropped unless persisted (renamed over `name`).
pub(crate) fn temporary_file(folder: &Path, name: &OsStr) -> io::Result<NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(folder)
}

/// Writes `bytes` to a temporary file of its own beside `path` (mode 0600,
/// see [`temporary_file`]), syncs it and renames it over `path`, so a reader
/// sees the old file or the new one, never half of one, and two writers (two
/// proxies refreshing the same login) never share a temporary file.
/// Creates the parent directory (mode 0700) when it is missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
    // Removed on every error path when dropped.
    let mut temporary = temporary_file(parent, path.file_name().unwrap_or_default())?;
    // The umask can only remove bits; set them exactly anyway.
    temporary
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    // Makes the rename itself durable; a failure here loses nothing written.
    if let Ok(directory) = File::open(parent) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// A configured `credentials_file` with `~` and `~/…` expanded against
/// `home`; `None` when it is empty (the plugin's default applies). `section`
/// names the plugin's config section in the error when `HOME` is needed and
/// not set.
pub fn expand_home(
    configured: &str,
    home: Option<&OsStr>,
    section: &str,
) -> Result<Option<PathBuf>, PluginError> {
    let configured = configured.trim();
    if configured.is_empty() {
        return Ok(None);
    }
    if configured == "~" {
        return home_dir(home, section).map(Some);
    }
    if let Some(rest) = configured.strip_prefix("~/") {
        return Ok(Some(home_dir(home, section)?.join(rest)));
    }
    Ok(Some(PathBuf::from(configured)))
}

/// `home` (`$HOME`) as a path, or an error saying to set `credentials_file`
/// in `[plugins.<section>]` when it is unset or empty.
pub fn home_dir(home: Option<&OsStr>, section: &str) -> Result<PathBuf, PluginError> {
    home.filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            PluginError::invalid(format!(
                "HOME is not set: set credentials_file in [plugins.{section}]"
            ))
        })
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

    #[test]
    fn writers_at_the_same_time_never_share_a_temporary_file() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("credentials.json");
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let path = &path;
                scope.spawn(move || {
                    for round in 0..50 {
                        let text = format!("{{\"writer\": {writer}, \"round\": {round}}}");
                        write_atomically(path, text.as_bytes())
                            .unwrap_or_else(|error| panic!("writer {writer}: {error}"));
                    }
                });
            }
        });
        let last: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).expect("one writer's whole file");
        assert_eq!(last["round"], 49, "{last}");
        let left: Vec<_> = fs::read_dir(scratch.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["credentials.json"], "no temporary file is left");
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
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
    fn a_leftover_temporary_file_is_never_reused() {
        // What a crash of the old fixed-name scheme could leave behind.
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let tmp = scratch.path().join("c.json.tmp");
        fs::write(&tmp, "stale").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"{\"a\":1}").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_missing_or_blank_file_is_an_empty_document() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let file = SecretFile::new(path.clone(), Layout::Compact);
        assert_eq!(file.document().unwrap(), Map::new());
        fs::write(&path, " \n").unwrap();
        assert_eq!(file.document().unwrap(), Map::new());
    }

    #[test]
    fn the_document_is_read_again_when_the_file_changes_behind_its_back() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let file = SecretFile::new(path.clone(), Layout::Compact);
        file.write(object(json!({"token": "first"}))).unwrap();
        assert_eq!(file.document().unwrap()["token"], "first");
        // Another program rewrites the file (same length, maybe same mtime):
        // the rename gives it a new inode.
        write_atomically(&path, br#"{"token":"other"}"#).unwrap();
        assert_eq!(file.document().unwrap()["token"], "other");
        fs::remove_file(&path).unwrap();
        assert_eq!(file.document().unwrap(), Map::new());
    }

    #[test]
    fn malformed_file_is_an_error_naming_it() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        fs::write(&path, "{not json").unwrap();
        let error = SecretFile::new(path.clone(), Layout::Compact)
            .document()
            .unwrap_err();
        assert!(
            error.message().contains(&path.display().to_string()),
            "{error}"
        );
        assert!(error.message().contains("not valid JSON"), "{error}");
        fs::write(&path, "[]").unwrap();
        let error = SecretFile::new(path, Layout::Compact)
            .document()
            .unwrap_err();
        assert!(error.message().contains("not a JSON object"), "{error}");
    }

    #[test]
    fn layouts_are_compact_or_pretty_and_0600() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("c.json");
        let document = object(json!({"a": {"b": 1}}));
        SecretFile::new(path.clone(), Layout::Compact)
            .write(document.clone())
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), r#"{"a":{"b":1}}"#);
        SecretFile::new(path.clone(), Layout::Pretty)
            .write(document)
            .unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\n  \"a\": {\n    \"b\": 1\n  }\n}"
        );
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_and_delete_follow_symlinks() {
        let scratch = tempfile::tempdir().unwrap();
        let real = scratch.path().join("real.json");
        let link = scratch.path().join("link.json");
        fs::write(&real, r#"{"keep": {"me": true}}"#).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = SecretFile::new(link.clone(), Layout::Compact);
        let mut document = file.document().unwrap();
        document.insert("token".to_owned(), json!("a"));
        file.write(document).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(read(&real), json!({"keep": {"me": true}, "token": "a"}));
        file.delete().unwrap();
        assert!(!real.exists());
        // Nothing there: still fine.
        SecretFile::new(real, Layout::Compact).delete().unwrap();
    }

    #[test]
    fn home_is_expanded_and_required_only_when_used() {
        let home = Some(OsStr::new("/home/ada"));
        assert_eq!(expand_home("  ", home, "p").unwrap(), None);
        assert_eq!(
            expand_home("~", home, "p").unwrap(),
            Some(PathBuf::from("/home/ada"))
        );
        assert_eq!(
            expand_home("~/creds/x.json", home, "p").unwrap(),
            Some(PathBuf::from("/home/ada/creds/x.json"))
        );
        assert_eq!(
            expand_home("/etc/x.json", None, "p").unwrap(),
            Some(PathBuf::from("/etc/x.json"))
        );
        let error = expand_home("~/x", Some(OsStr::new("")), "oauth_x").unwrap_err();
        assert_eq!(
            error.message(),
            "HOME is not set: set credentials_file in [plugins.oauth_x]"
        );
        assert_eq!(home_dir(home, "p").unwrap(), PathBuf::from("/home/ada"));
    }
}
