//! A log file written in batches: lines are appended to a buffer in memory and
//! written with one `write` when the buffer is full, when the flush task runs
//! and at shutdown.
//!
//! The plugin has no async runtime of its own, so writing uses `std::fs`. It
//! runs on the host's hook-observer task or the task scheduler, both off the
//! request path, and only once per batch. A file that cannot be opened keeps
//! its lines in memory (up to a bound) and is retried on the next flush.
//!
//! Each batch goes through `ccproxy_plugin_kit::private_files`: the folder
//! is created 0700 and checked to be private to this user (another user must
//! not own it, be able to write it, or be able to change a folder above it),
//! and the file is opened `O_APPEND|O_CREAT|O_NOFOLLOW` with mode 0600, so a
//! symlink planted at its name is refused, never followed. The check runs
//! for every batch, so a folder fixed by the user is used from the next flush.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use ccproxy_plugin_abi::{PluginError, Value, debug, info, json, warn};
use ccproxy_plugin_kit::private_files::PrivateDir;

/// How many batches a file that cannot be written may keep in memory before
/// the oldest lines are dropped.
const MAX_BUFFERED_BATCHES: usize = 100;

/// One log file and its pending lines.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    // Internal: `path` split, the folder checked before each batch.
    folder: PathBuf,
    name: String,
    batch_lines: usize,
    pending: Mutex<Pending>,
    // Internal: held for a whole flush, so batches reach the file in the order
    // their lines arrived even when the hook and the task flush together.
    io: Mutex<IoState>,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
}

#[derive(Debug, Default)]
struct IoState {
    written_lines: u64,
    dropped_lines: u64,
    last_error: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogFile {
    /// A file at `path` flushed every `batch_lines` lines (at least 1). Tries
    /// to open it now so a bad path or folder shows in health from the start;
    /// fails only when `path` names no file (`key` is its config key).
    pub(crate) fn open(path: PathBuf, batch_lines: usize, key: &str) -> Result<Self, PluginError> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| *name != ".." && !path.as_os_str().to_string_lossy().ends_with('/'))
            .ok_or_else(|| {
                PluginError::invalid(format!(
                    "{key} = {:?} names no file: give the path of the log file",
                    path.display().to_string()
                ))
            })?
            .to_owned();
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = Self {
            path,
            folder,
            name,
            batch_lines: batch_lines.max(1),
            pending: Mutex::default(),
            io: Mutex::default(),
        };
        {
            let mut io = lock(&file.io);
            let result = file.write_batch(&[]);
            file.record(&mut io, result, 0);
        }
        Ok(file)
    }

    /// Adds `line` (without its newline); returns whether the batch is full
    /// and should be flushed.
    #[cfg(test)]
    pub(crate) fn append(&self, line: &str) -> bool {
        self.append_with(|out| out.extend_from_slice(line.as_bytes()))
    }

    /// Adds the line `write` appends to the buffer (without its newline):
    /// written in place, so a line needs no string of its own. Returns
    /// whether the batch is full and should be flushed.
    pub(crate) fn append_with(&self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut pending = lock(&self.pending);
        let start = pending.bytes.len();
        write(&mut pending.bytes);
        // Formatted only when debug logging is on.
        debug!("{}", String::from_utf8_lossy(&pending.bytes[start..]));
        pending.bytes.push(b'\n');
        pending.lines += 1;
        pending.lines >= self.batch_lines
    }

    /// Writes every pending line. On failure the lines stay pending (the
    /// oldest are dropped beyond a bound) and the error shows in
    /// [`LogFile::status`] until a later flush succeeds.
    pub(crate) fn flush(&self) {
        let mut io = lock(&self.io);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.lines == 0 {
            return;
        }
        let result = self.write_batch(&batch.bytes);
        let failed = result.is_err();
        self.record(&mut io, result, batch.lines);
        if failed {
            self.keep(&mut io, batch);
        }
    }

    fn write_batch(&self, bytes: &[u8]) -> Result<(), String> {
        let folder = PrivateDir::open(self.folder.clone()).map_err(|error| {
            // The kit's message is `FOLDER: what is wrong; what to do`.
            let message = error.message();
            let reason = message
                .strip_prefix(&format!("{}: ", self.folder.display()))
                .unwrap_or(message);
            let separator = if reason.starts_with(|c: char| c.is_ascii_lowercase()) {
                " "
            } else {
                ": "
            };
            format!(
                "refusing to write {}: its folder {}{separator}{reason}",
                self.path.display(),
                self.folder.display(),
            )
        })?;
        let mut file = folder.append(&self.name).map_err(|error| {
            let link = fs::symlink_metadata(self.folder.join(&self.name))
                .is_ok_and(|metadata| metadata.file_type().is_symlink());
            if link {
                format!(
                    "refusing to write {}: it is a symbolic link, which the access log never \
                     follows (someone may have planted it to make the proxy write elsewhere); \
                     remove it",
                    self.path.display()
                )
            } else {
                format!("cannot open {}: {error}", self.path.display())
            }
        })?;
        file.write_all(bytes)
            .map_err(|error| format!("cannot write {}: {error}", self.path.display()))
    }

    /// Counts a write and logs changes between working and failing, once each.
    fn record(&self, io: &mut IoState, result: Result<(), String>, lines: usize) {
        match result {
            Ok(()) => {
                io.written_lines += lines as u64;
                if io.last_error.take().is_some() {
                    info!("writing {} again", self.path.display());
                }
            }
            Err(error) => {
                if io.last_error.is_none() {
                    warn!("{error}; access log lines are kept in memory and retried");
                }
                io.last_error = Some(error);
            }
        }
    }

    /// Puts a failed batch back in front of the lines that arrived meanwhile.
    fn keep(&self, io: &mut IoState, mut batch: Pending) {
        let mut pending = lock(&self.pending);
        batch.bytes.append(&mut pending.bytes);
        batch.lines += pending.lines;
        let limit = self.batch_lines.saturating_mul(MAX_BUFFERED_BATCHES);
        if batch.lines > limit {
            let excess = batch.lines - limit;
            drop_oldest_lines(&mut batch.bytes, excess);
            batch.lines = limit;
            io.dropped_lines += excess as u64;
        }
        *pending = batch;
    }

    /// The file's path, pending and written line counts and last error.
    pub(crate) fn status(&self) -> Value {
        let io = lock(&self.io);
        json!({
            "file": self.path.display().to_string(),
            "pending_lines": lock(&self.pending).lines,
            "written_lines": io.written_lines,
            "dropped_lines": io.dropped_lines,
            "error": io.last_error,
        })
    }

    /// Why the file cannot be written, if it cannot.
    pub(crate) fn error(&self) -> Option<String> {
        lock(&self.io).last_error.clone()
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn drop_oldest_lines(bytes: &mut Vec<u8>, lines: usize) {
    if lines == 0 {
        return;
    }
    let cut = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(lines - 1)
        .map_or(bytes.len(), |(index, _)| index + 1);
    bytes.drain(..cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_written_in_order_and_counted() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let file = LogFile::open(dir.join("nested/a.log"), 2, "client_log_file").unwrap();
        assert!(!file.append("one"));
        assert!(file.append("two"));
        file.flush();
        file.append("three");
        file.flush();
        assert_eq!(
            fs::read_to_string(file.path()).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(file.status()["written_lines"], 3);
        assert_eq!(file.error(), None);
    }

    #[test]
    fn failed_batches_are_kept_bounded_and_retried() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let blocker = dir.join("blocker");
        fs::write(&blocker, "").unwrap();
        let file = LogFile::open(blocker.join("a.log"), 1, "client_log_file").unwrap();
        let error = file.error().unwrap();
        assert!(error.ends_with("blocker is not a folder"), "{error}");
        for n in 0..150 {
            file.append(&format!("line {n}"));
            file.flush();
        }
        let status = file.status();
        assert_eq!(
            (
                status["pending_lines"].as_u64(),
                status["dropped_lines"].as_u64()
            ),
            (Some(100), Some(50))
        );

        fs::remove_file(&blocker).unwrap();
        file.flush();
        assert_eq!(file.error(), None);
        let written = fs::read_to_string(file.path()).unwrap();
        assert_eq!(written.lines().next(), Some("line 50"));
        assert_eq!(written.lines().count(), 100);
    }

    #[test]
    fn a_path_naming_no_file_is_refused() {
        for path in ["/var/log/..", "/var/log/", "/", ""] {
            let error = LogFile::open(PathBuf::from(path), 1, "client_log_file").unwrap_err();
            assert!(
                error.message().starts_with("client_log_file = ")
                    && error.message().contains("names no file"),
                "{path}: {error}"
            );
        }
    }

    #[test]
    fn dropping_lines() {
        let mut bytes = b"a\nb\nc\n".to_vec();
        drop_oldest_lines(&mut bytes, 2);
        assert_eq!(bytes, b"c\n");
        drop_oldest_lines(&mut bytes, 5);
        assert!(bytes.is_empty());
    }
}
