//! Where the host keeps things: `$XDG_CONFIG_HOME/ccproxy` and `$XDG_DATA_HOME/ccproxy`.

use std::path::PathBuf;

fn xdg(var: &str, fallback: impl FnOnce(&directories::BaseDirs) -> PathBuf) -> PathBuf {
    if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("ccproxy");
    }
    match directories::BaseDirs::new() {
        Some(base) => fallback(&base).join("ccproxy"),
        None => std::env::temp_dir().join("ccproxy"),
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
