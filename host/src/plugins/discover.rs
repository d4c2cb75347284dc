//! Finding plugin files: bundled ones next to the executable, then the user's
//! plugin folder, then configured folders.

use std::path::{Path, PathBuf};

/// Where a plugin file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Shipped next to the `ccproxy` executable.
    Bundled,
    /// `$XDG_CONFIG_HOME/ccproxy/plugins`.
    User,
    /// `plugin_discovery.directories` or `--plugin-dir`.
    Configured,
    /// Named directly (`ccproxy plugins check FILE`).
    Explicit,
}

impl Origin {
    /// Lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Bundled => "bundled",
            Origin::User => "user",
            Origin::Configured => "configured",
            Origin::Explicit => "explicit",
        }
    }
}

/// A candidate plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// Where it was found.
    pub origin: Origin,
}

/// Folders to search, in order.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    /// The folder holding the executable (bundled plugins are `libccproxy_plugin_*` there
    /// and everything in its `plugins/` subfolder).
    pub executable_dir: Option<PathBuf>,
    /// The user's plugin folder, unless local discovery is disabled.
    pub user_dir: Option<PathBuf>,
    /// Configured folders.
    pub configured: Vec<PathBuf>,
}

/// The file name prefix of bundled plugin libraries (`ccproxy-plugin-NAME` crates).
const BUNDLED_PREFIX: &str = "ccproxy_plugin_";

/// Whether `path` has the platform's shared-library extension.
pub fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so") | Some("dylib") | Some("dll")
    )
}

fn library_stem(path: &Path) -> Option<&str> {
    let stem = path.file_stem()?.to_str()?;
    Some(stem.strip_prefix("lib").unwrap_or(stem))
}

/// Lists candidates in search order; missing folders are skipped, files in each
/// folder are sorted by name so the order is stable.
pub fn discover(search: &SearchPath) -> Vec<Candidate> {
    let mut found = Vec::new();
    if let Some(dir) = &search.executable_dir {
        for path in list_libraries(dir) {
            if library_stem(&path).is_some_and(|stem| stem.starts_with(BUNDLED_PREFIX)) {
                found.push(Candidate {
                    path,
                    origin: Origin::Bundled,
                });
            }
        }
        for path in list_libraries(&dir.join("plugins")) {
            found.push(Candidate {
                path,
                origin: Origin::Bundled,
            });
        }
    }
    if let Some(dir) = &search.user_dir {
        found.extend(list_libraries(dir).into_iter().map(|path| Candidate {
            path,
            origin: Origin::User,
        }));
    }
    for dir in &search.configured {
        found.extend(list_libraries(dir).into_iter().map(|path| Candidate {
            path,
            origin: Origin::Configured,
        }));
    }
    // The same file reached twice (a configured folder that is also the user's)
    // is one candidate.
    let mut seen = std::collections::HashSet::new();
    found.retain(|candidate| {
        seen.insert(std::fs::canonicalize(&candidate.path).unwrap_or(candidate.path.clone()))
    });
    found
}

fn list_libraries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && is_library(path))
        .collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_are_prefixed_and_order_is_stable() {
        let root = std::env::temp_dir().join(format!("ccproxy-discover-{}", std::process::id()));
        let exe = root.join("bin");
        let user = root.join("user");
        std::fs::create_dir_all(exe.join("plugins")).unwrap();
        std::fs::create_dir_all(&user).unwrap();
        for file in [
            exe.join("libccproxy_plugin_b.so"),
            exe.join("libccproxy_plugin_a.so"),
            exe.join("libexample_other.so"),
            exe.join("plugins/libthird.so"),
            user.join("libmine.so"),
            user.join("notes.txt"),
        ] {
            std::fs::write(file, b"").unwrap();
        }
        let found = discover(&SearchPath {
            executable_dir: Some(exe.clone()),
            user_dir: Some(user.clone()),
            configured: vec![user.clone(), root.join("missing")],
        });
        let names: Vec<_> = found
            .iter()
            .map(|c| {
                (
                    c.path.file_name().unwrap().to_str().unwrap().to_owned(),
                    c.origin,
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("libccproxy_plugin_a.so".to_owned(), Origin::Bundled),
                ("libccproxy_plugin_b.so".to_owned(), Origin::Bundled),
                ("libthird.so".to_owned(), Origin::Bundled),
                ("libmine.so".to_owned(), Origin::User),
            ]
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
