//! Where the host keeps things: `$XDG_CONFIG_HOME/ccproxy` and `$XDG_DATA_HOME/ccproxy`.

use std::path::{Path, PathBuf};

fn xdg(var: &str, fallback: impl FnOnce(&directories::BaseDirs) -> PathBuf) -> PathBuf {
    if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("ccproxy");
    }
    match directories::BaseDirs::new() {
        Some(base) => fallback(&base).join("ccproxy"),
        // No home folder at all (a bare service account): `.ccproxy` in the
        // working folder, never a shared temporary folder others can plant
        // files in.
        None => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join(".ccproxy"),
    }
}

/// `$XDG_CONFIG_HOME/ccproxy` (plugins live in its `plugins/` folder).
pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", |base| base.config_dir().to_path_buf())
}

/// `$XDG_DATA_HOME/ccproxy` (plugins get `plugins/<name>/` below it).
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", |base| base.data_dir().to_path_buf())
}

/// A folder systemd gives the service in `var` (`STATE_DIRECTORY`, …): the
/// first of a colon-separated list.
fn service_dir(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var).filter(|v| !v.is_empty())?;
    let first = value.to_string_lossy().split(':').next()?.to_owned();
    Some(PathBuf::from(first))
}

/// `$XDG_STATE_HOME/ccproxy`, or the service's `$STATE_DIRECTORY`.
pub fn state_dir() -> PathBuf {
    service_dir("STATE_DIRECTORY").unwrap_or_else(|| {
        xdg("XDG_STATE_HOME", |base| {
            base.state_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| base.home_dir().join(".local/state"))
        })
    })
}

/// Private copies of plugin libraries replaced while the server runs
/// (`plugins::image`).
pub fn images_dir() -> PathBuf {
    state_dir().join("plugin-images")
}

/// Where the running server says how to reach it (`serve-PORT.json`), for
/// `ccproxy reload`: the service's `$RUNTIME_DIRECTORY`, else
/// `$XDG_RUNTIME_DIR/ccproxy`, else the state folder.
pub fn runtime_dir() -> PathBuf {
    service_dir("RUNTIME_DIRECTORY")
        .or_else(|| {
            std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(|dir| PathBuf::from(dir).join("ccproxy"))
        })
        .unwrap_or_else(state_dir)
}
