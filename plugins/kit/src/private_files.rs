//! A private folder of files only this user can read: traces, replay
//! commands, anything a plugin writes that may hold request bodies.
//!
//! The folder defaults to `$XDG_STATE_HOME/ccproxy/<name>`
//! ([`state_folder`]); [`PrivateDir::open`] creates what is missing with
//! mode 0700 and refuses a folder another user could tamper with: one owned
//! by someone else, writable by group or others, reached through a symlink
//! someone else planted, or below a folder someone else owns (a
//! world-writable parent is fine only with the sticky bit, as `/tmp` has it,
//! where nobody can rename another user's entries). Files are opened with
//! `O_NOFOLLOW` and mode 0600, either new (`O_CREAT|O_EXCL`), truncated
//! (`O_TRUNC`) or appended to, so a symlink planted at a file's name is
//! never followed: the open fails instead. [`PrivateDir::write`] replaces a
//! file atomically (a new `O_EXCL` file renamed over the name), which
//! replaces a planted symlink rather than following it.
//!
//! [`CappedDir`] adds a size cap (the oldest files deleted first) and the
//! counts a plugin's health shows: files and bytes written, write errors,
//! files pruned, the last error.
//!
//! This is what the original's `/tmp/ccproxy/...` defaults lacked: another
//! local user could create `/tmp/ccproxy/traces` first, or a symlink at a
//! trace's name, and read or redirect what the proxy writes.
//!
//! ```no_run
//! use std::io::Write;
//! use ccproxy_plugin_kit::private_files::{PrivateDir, state_folder};
//!
//! let dir = PrivateDir::open(state_folder("traces")?)?;
//! dir.create_new("r1_request.json")?.write_all(b"{}")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    ffi::OsStr,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use ccproxy_plugin_abi::{PluginError, Value, json};

/// `$XDG_STATE_HOME/ccproxy/<name>`, with `$XDG_STATE_HOME` defaulting to
/// `~/.local/state` (a relative `$XDG_STATE_HOME` is ignored, as the XDG
/// spec says), read from this process's environment.
pub fn state_folder(name: &str) -> Result<PathBuf, PluginError> {
    state_folder_from(
        std::env::var_os("XDG_STATE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
        name,
    )
}

/// [`state_folder`] with the two variables given.
pub fn state_folder_from(
    xdg_state_home: Option<&OsStr>,
    home: Option<&OsStr>,
    name: &str,
) -> Result<PathBuf, PluginError> {
    let state = match xdg_state_home
        .map(Path::new)
        .filter(|state| state.is_absolute())
    {
        Some(state) => state.to_path_buf(),
        None => home
            .filter(|home| !home.is_empty())
            .map(|home| Path::new(home).join(".local").join("state"))
            .ok_or_else(|| {
                PluginError::invalid(format!(
                    "neither XDG_STATE_HOME nor HOME is set: set log_dir for {name}"
                ))
            })?,
    };
    Ok(state.join("ccproxy").join(name))
}

/// `id` (a request id, which the client may choose) as a safe part of a file
/// name: ASCII letters, digits, `-`, `_` and `.` kept, anything else (`/`
/// included) becomes `_`, a leading `.` too, at most 128 characters; never
/// empty.
pub fn file_name_part(id: &str) -> String {
    let mut part: String = id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if part.starts_with('.') {
        part.replace_range(..1, "_");
    }
    if part.is_empty() {
        part.push('_');
    }
    part
}

/// A folder checked to be private to this user (see the module docs).
#[derive(Debug, Clone)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `path` and its missing parents (mode 0700) and checks it is
    /// private; an error names the folder and what is wrong with it.
    pub fn open(path: PathBuf) -> Result<Self, PluginError> {
        let dir = Self { path };
        dir.ensure().map_err(|error| dir.error(&error))?;
        Ok(dir)
    }

    /// The folder as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the folder when it went missing and checks it again.
    pub fn ensure(&self) -> io::Result<()> {
        if fs::symlink_metadata(&self.path).is_err() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)?;
        }
        check_private(&self.path)
    }

    /// Opens `name` as a new file (mode 0600): fails when anything, a
    /// symlink included, is there already.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        self.open_file(name, |options| {
            options.create_new(true);
        })
    }

    /// Opens `name` for writing from scratch (mode 0600 when created,
    /// truncated otherwise); a symlink there is refused.
    pub fn replace(&self, name: &str) -> io::Result<File> {
        self.open_file(name, |options| {
            options.create(true).truncate(true);
        })
    }

    /// Opens `name` to append to it (mode 0600 when created); a symlink
    /// there is refused.
    pub fn append(&self, name: &str) -> io::Result<File> {
        self.open_file(name, |options| {
            options.create(true).append(true);
        })
    }

    /// Replaces `name` with a file holding `bytes`, atomically: they are
    /// written to a new temporary file in the folder (`O_EXCL`, 0600) that
    /// is then renamed over `name`. A reader (a shell running the previous
    /// version of a script) keeps the old file whole; a symlink at `name`
    /// is replaced, never followed.
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        plain_file_name(name)?;
        let temporary = || crate::secret_file::temporary_file(&self.path, name.as_ref());
        let mut temporary = match temporary() {
            // The folder was removed while the proxy ran: make it again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.ensure()?;
                temporary()
            }
            other => other,
        }?;
        // Removed when dropped, on an error.
        temporary.write_all(bytes)?;
        temporary
            .persist(self.path.join(name))
            .map(drop)
            .map_err(|error| error.error)
    }

    /// The size of every regular file in the folder, added up.
    pub fn total_bytes(&self) -> io::Result<u64> {
        Ok(self.files()?.iter().map(|file| file.len).sum())
    }

    /// Deletes the oldest regular files (by modification time, then name)
    /// until the folder holds at most `limit` bytes; answers the files and
    /// bytes deleted. Symlinks and folders are left alone.
    pub fn prune_to(&self, limit: u64) -> io::Result<(u64, u64)> {
        let mut files = self.files()?;
        let mut total: u64 = files.iter().map(|file| file.len).sum();
        files.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.name.cmp(&b.name)));
        let (mut removed, mut freed) = (0, 0);
        for file in files {
            if total <= limit {
                break;
            }
            match fs::remove_file(self.path.join(&file.name)) {
                Ok(()) => {
                    removed += 1;
                    freed += file.len;
                    total -= file.len;
                }
                // Someone else (the user) removed it: it no longer counts.
                Err(error) if error.kind() == io::ErrorKind::NotFound => total -= file.len,
                Err(error) => return Err(error),
            }
        }
        Ok((removed, freed))
    }

    fn files(&self) -> io::Result<Vec<Entry>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_file() {
                files.push(Entry {
                    name: entry.file_name().into(),
                    len: metadata.len(),
                    modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(files)
    }

    fn open_file(&self, name: &str, mode: impl Fn(&mut OpenOptions)) -> io::Result<File> {
        plain_file_name(name)?;
        let open = || {
            let mut options = OpenOptions::new();
            options
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
            mode(&mut options);
            options.open(self.path.join(name))
        };
        match open() {
            // The folder was removed while the proxy ran: make it again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.ensure()?;
                open()
            }
            other => other,
        }
    }

    fn error(&self, error: &io::Error) -> PluginError {
        PluginError::invalid(format!("{}: {error}", self.path.display()))
    }
}

/// A [`PrivateDir`] that holds at most `max_total_bytes` (the oldest files
/// deleted first when a write goes over) and counts what was written, for a
/// plugin's health.
#[derive(Debug)]
pub struct CappedDir {
    dir: PrivateDir,
    max_total_bytes: u64,
    // Internal: an estimate (a replaced file counts twice) made exact again
    // at each pruning.
    total_bytes: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
    write_errors: AtomicU64,
    pruned_files: AtomicU64,
    // Internal: kept after later writes succeed (it shows in health);
    // `failing` says whether the latest write failed.
    last_error: Mutex<Option<String>>,
    failing: AtomicBool,
}

impl CappedDir {
    /// Opens `path` as [`PrivateDir::open`] does, capped at
    /// `max_total_bytes` (0: no cap).
    pub fn open(path: PathBuf, max_total_bytes: u64) -> Result<Self, PluginError> {
        let dir = PrivateDir::open(path)?;
        let total = dir.total_bytes().unwrap_or(0);
        let capped = Self {
            dir,
            max_total_bytes,
            total_bytes: AtomicU64::new(total),
            files_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            pruned_files: AtomicU64::new(0),
            last_error: Mutex::new(None),
            failing: AtomicBool::new(false),
        };
        capped.prune_if_over();
        Ok(capped)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `name` atomically ([`PrivateDir::write`]).
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.count(name, bytes.len(), self.dir.write(name, bytes))
    }

    /// Appends to `name` ([`PrivateDir::append`]).
    pub fn append(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let written = self
            .dir
            .append(name)
            .and_then(|mut file| file.write_all(bytes));
        self.count(name, bytes.len(), written)
    }

    /// The latest write error, while the latest write failed: a plugin's
    /// health is degraded until a write succeeds again.
    pub fn failing(&self) -> Option<String> {
        if self.failing.load(Ordering::Relaxed) {
            lock(&self.last_error).clone()
        } else {
            None
        }
    }

    /// The latest error, even when later writes succeeded.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// `{folder, files_written, bytes_written, write_errors, pruned_files,
    /// max_total_bytes, last_error}`.
    pub fn status(&self) -> Value {
        json!({
            "folder": self.dir.path().display().to_string(),
            "files_written": self.files_written.load(Ordering::Relaxed),
            "bytes_written": self.bytes_written.load(Ordering::Relaxed),
            "write_errors": self.write_errors.load(Ordering::Relaxed),
            "pruned_files": self.pruned_files.load(Ordering::Relaxed),
            "max_total_bytes": self.max_total_bytes,
            "last_error": self.last_error(),
        })
    }

    fn count(&self, name: &str, len: usize, written: io::Result<()>) -> io::Result<()> {
        match written {
            Ok(()) => {
                let len = len as u64;
                self.files_written.fetch_add(1, Ordering::Relaxed);
                self.bytes_written.fetch_add(len, Ordering::Relaxed);
                self.total_bytes.fetch_add(len, Ordering::Relaxed);
                self.failing.store(false, Ordering::Relaxed);
                self.prune_if_over();
                Ok(())
            }
            Err(error) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                self.failing.store(true, Ordering::Relaxed);
                *lock(&self.last_error) = Some(format!(
                    "cannot write {}: {error}",
                    self.dir.path().join(name).display()
                ));
                Err(error)
            }
        }
    }

    fn prune_if_over(&self) {
        if self.max_total_bytes == 0
            || self.total_bytes.load(Ordering::Relaxed) <= self.max_total_bytes
        {
            return;
        }
        // Down to 90 %, so the next few writes do not prune again.
        let target = self.max_total_bytes / 10 * 9;
        match self.dir.prune_to(target) {
            Ok((removed, _)) => {
                self.pruned_files.fetch_add(removed, Ordering::Relaxed);
            }
            Err(error) => {
                *lock(&self.last_error) = Some(format!(
                    "cannot prune {}: {error}",
                    self.dir.path().display()
                ));
            }
        }
        let total = self.dir.total_bytes().unwrap_or(0);
        self.total_bytes.store(total, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Entry {
    name: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// Whether `path` is a folder only this user can change (see the module
/// docs); the error says what is wrong.
fn check_private(path: &Path) -> io::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    let link = fs::symlink_metadata(path)?;
    if link.file_type().is_symlink() && link.uid() != me {
        return Err(refused(format!(
            "is a symlink owned by uid {} (not this user); remove it",
            link.uid()
        )));
    }
    let metadata = fs::metadata(path)?;
    if !metadata.is_dir() {
        return Err(refused("is not a folder".to_owned()));
    }
    if metadata.uid() != me {
        return Err(refused(format!(
            "is owned by uid {} (not this user, uid {me}); use a folder of your own",
            metadata.uid()
        )));
    }
    if metadata.permissions().mode() & 0o022 != 0 {
        return Err(refused(format!(
            "is writable by group or others (mode {:o}); run chmod 700 on it",
            metadata.permissions().mode() & 0o7777
        )));
    }
    // Whoever owns a folder above can rename this one away and put their
    // own in its place.
    let resolved = fs::canonicalize(path)?;
    for parent in resolved.ancestors().skip(1) {
        let metadata = fs::metadata(parent)?;
        let mode = metadata.permissions().mode();
        let owner_ok = metadata.uid() == me || metadata.uid() == 0;
        let sticky = mode & 0o1000 != 0;
        if !owner_ok || (mode & 0o022 != 0 && !sticky) {
            return Err(refused(format!(
                "lies in {}, which another user can change (owner uid {}, mode {:o})",
                parent.display(),
                metadata.uid(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

fn refused(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, reason)
}

/// Refuses a name that is not one file in the folder itself.
fn plain_file_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_folder_follows_xdg_with_its_default() {
        let state = state_folder_from(
            Some(OsStr::new("/s")),
            Some(OsStr::new("/home/ada")),
            "traces",
        )
        .unwrap();
        assert_eq!(state, PathBuf::from("/s/ccproxy/traces"));
        for unset in [
            None,
            Some(OsStr::new("")),
            Some(OsStr::new("relative/state")),
        ] {
            let state = state_folder_from(unset, Some(OsStr::new("/home/ada")), "x").unwrap();
            assert_eq!(state, PathBuf::from("/home/ada/.local/state/ccproxy/x"));
        }
        let error = state_folder_from(None, None, "traces").unwrap_err();
        assert!(error.message().contains("set log_dir"), "{error}");
    }

    #[test]
    fn file_name_parts_cannot_leave_the_folder() {
        assert_eq!(file_name_part("abc-123_x.y"), "abc-123_x.y");
        assert_eq!(file_name_part("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(file_name_part(".hidden"), "_hidden");
        assert_eq!(file_name_part(""), "_");
        assert_eq!(file_name_part("a b\u{e9}"), "a_b_");
        assert_eq!(file_name_part(&"x".repeat(300)).len(), 128);
    }

    #[test]
    fn open_creates_the_folders_0700() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("state/ccproxy/traces");
        let dir = PrivateDir::open(path.clone()).unwrap();
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&scratch.path().join("state/ccproxy")), 0o700);
        dir.write("a.json", b"{}").unwrap();
        assert_eq!(mode(&path.join("a.json")), 0o600);
        assert_eq!(fs::read(path.join("a.json")).unwrap(), b"{}");
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("open");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        let error = PrivateDir::open(path.clone()).unwrap_err();
        assert!(
            error.message().contains("writable by group or others"),
            "{error}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        PrivateDir::open(path).unwrap();
    }

    #[test]
    fn a_folder_below_a_parent_others_can_write_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let shared = scratch.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let error = PrivateDir::open(shared.join("traces")).unwrap_err();
        assert!(
            error.message().contains("another user can change"),
            "{error}"
        );
        // With the sticky bit (as /tmp has), entries cannot be renamed by others.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        PrivateDir::open(shared.join("traces")).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_folder_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("file");
        fs::write(&path, "").unwrap();
        let error = PrivateDir::open(path).unwrap_err();
        assert!(error.message().contains("not a folder"), "{error}");
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("traces")).unwrap();
        let victim = scratch.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        symlink(&victim, dir.path().join("r1.json")).unwrap();
        for error in [
            dir.create_new("r1.json").unwrap_err(),
            dir.replace("r1.json").unwrap_err(),
            dir.append("r1.json").unwrap_err(),
        ] {
            // ELOOP for O_NOFOLLOW, EEXIST for O_EXCL.
            assert!(
                error.raw_os_error() == Some(libc::ELOOP)
                    || error.kind() == io::ErrorKind::AlreadyExists,
                "{error}"
            );
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        // An atomic write replaces the link itself.
        dir.write("r1.json", b"mine").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(
            fs::symlink_metadata(dir.path().join("r1.json"))
                .unwrap()
                .is_file()
        );
        assert_eq!(mode(&dir.path().join("r1.json")), 0o600);
        // A dangling symlink is not followed to create its target either.
        let target = scratch.path().join("created-through-link");
        symlink(&target, dir.path().join("r2.json")).unwrap();
        assert!(dir.create_new("r2.json").is_err());
        assert!(dir.replace("r2.json").is_err());
        assert!(!target.exists());
    }

    #[test]
    fn names_that_leave_the_folder_are_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("traces")).unwrap();
        for name in ["", ".", "..", "../x", "a/b"] {
            let error = dir.replace(name).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name}");
        }
        assert!(!scratch.path().join("x").exists());
    }

    #[test]
    fn create_new_refuses_an_existing_file_and_append_appends() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("t")).unwrap();
        dir.create_new("a").unwrap().write_all(b"1").unwrap();
        assert_eq!(
            dir.create_new("a").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        dir.append("a").unwrap().write_all(b"2").unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"12");
        dir.write("a", b"3").unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"3");
    }

    #[test]
    fn a_removed_folder_is_made_again() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("t")).unwrap();
        fs::remove_dir_all(dir.path()).unwrap();
        dir.write("a", b"x").unwrap();
        assert_eq!(mode(dir.path()), 0o700);
    }

    #[test]
    fn a_symlinked_folder_of_my_own_is_fine() {
        let scratch = tempfile::tempdir().unwrap();
        let real = scratch.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        symlink(&real, scratch.path().join("link")).unwrap();
        let dir = PrivateDir::open(scratch.path().join("link")).unwrap();
        dir.write("a", b"x").unwrap();
        assert_eq!(fs::read(real.join("a")).unwrap(), b"x");
    }

    fn listing_has_temporaries(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
    }

    #[test]
    fn an_atomic_write_leaves_a_reader_the_old_file_whole() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("t")).unwrap();
        dir.write("script.sh", b"old version").unwrap();
        let mut reader = File::open(dir.path().join("script.sh")).unwrap();
        dir.write("script.sh", b"new").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
        assert_eq!(text, "old version");
        assert_eq!(fs::read(dir.path().join("script.sh")).unwrap(), b"new");
        assert!(!listing_has_temporaries(dir.path()));
    }

    #[test]
    fn a_capped_folder_stays_under_its_cap_and_counts() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = CappedDir::open(scratch.path().join("t"), 1_000).unwrap();
        for index in 0..25 {
            dir.write(&format!("f{index:02}"), &[b'x'; 100]).unwrap();
        }
        let on_disk = PrivateDir::open(scratch.path().join("t")).unwrap();
        assert!(on_disk.total_bytes().unwrap() <= 1_000);
        assert!(on_disk.path().join("f24").exists());
        assert!(!on_disk.path().join("f00").exists());
        let status = dir.status();
        assert_eq!(status["files_written"], 25);
        assert_eq!(status["bytes_written"], 2_500);
        assert_eq!(status["write_errors"], 0);
        assert!(status["pruned_files"].as_u64().unwrap() >= 15, "{status}");

        fs::create_dir(on_disk.path().join("taken")).unwrap();
        assert!(dir.write("taken", b"x").is_err());
        assert_eq!(dir.status()["write_errors"], 1);
        assert!(dir.failing().unwrap().contains("taken"));
        dir.append("log", b"a").unwrap();
        assert_eq!(dir.failing(), None);
        assert!(dir.last_error().unwrap().contains("taken"));
        // No temporary file is left behind.
        assert!(!listing_has_temporaries(on_disk.path()));
    }

    #[test]
    fn pruning_deletes_the_oldest_files_first() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(scratch.path().join("t")).unwrap();
        for (index, name) in ["old", "mid", "new"].iter().enumerate() {
            dir.write(name, &[b'x'; 100]).unwrap();
            let file = File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + index as u64);
            file.set_modified(at).unwrap();
        }
        fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(dir.total_bytes().unwrap(), 300);
        assert_eq!(dir.prune_to(300).unwrap(), (0, 0));
        assert_eq!(dir.prune_to(150).unwrap(), (2, 200));
        assert!(dir.path().join("new").exists());
        assert!(!dir.path().join("old").exists());
        assert!(!dir.path().join("mid").exists());
        assert!(dir.path().join("sub").exists());
    }
}
