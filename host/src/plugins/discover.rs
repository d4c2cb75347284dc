//! Finding plugin files: bundled ones next to the executable (or in the
//! install layout's `PREFIX/lib/ccproxy/plugins`), then the user's plugin
//! folder, then configured folders.

use std::path::{Path, PathBuf};

/// Where a plugin file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Shipped with the `ccproxy` executable: next to it, or in
    /// `PREFIX/lib/ccproxy/plugins` for an executable in `PREFIX/bin`.
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
    /// The folder holding the executable, its real path (bundled plugins are
    /// `libccproxy_plugin_*` there, everything in its `plugins/` subfolder, and
    /// everything in [`installed_bundle_dir`]).
    pub executable_dir: Option<PathBuf>,
    /// The user's plugin folder, unless local discovery is disabled.
    pub user_dir: Option<PathBuf>,
    /// Configured folders.
    pub configured: Vec<PathBuf>,
}

/// The file name prefix of bundled plugin libraries (`ccproxy-plugin-NAME` crates).
const BUNDLED_PREFIX: &str = "ccproxy_plugin_";

/// The bundled plugins of the install layout (`scripts/install`, the release
/// archive): `PREFIX/lib/ccproxy/plugins` for an executable in `PREFIX/bin`.
pub fn installed_bundle_dir(executable_dir: &Path) -> Option<PathBuf> {
    Some(executable_dir.parent()?.join("lib/ccproxy/plugins"))
}

/// What to say when no bundled plugin was found: where the host looked and how
/// to install them.
pub fn no_bundled_plugins_warning(executable_dir: Option<&Path>) -> String {
    let looked = match executable_dir {
        Some(dir) => {
            let mut places = vec![
                format!("{}/{}*", dir.display(), library_file_prefix()),
                format!("{}/", dir.join("plugins").display()),
            ];
            places.extend(installed_bundle_dir(dir).map(|d| format!("{}/", d.display())));
            places.join(", ")
        }
        None => "nowhere: the executable's own path is unknown".to_owned(),
    };
    format!(
        "no bundled plugins found (looked in {looked}); install ccproxy with scripts/install or \
         unpack the release archive, which put them in PREFIX/lib/ccproxy/plugins beside \
         PREFIX/bin/ccproxy (`cargo install` gives the binary alone)"
    )
}

fn library_file_prefix() -> String {
    format!("{}{BUNDLED_PREFIX}", std::env::consts::DLL_PREFIX)
}

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
        let subfolders = std::iter::once(dir.join("plugins")).chain(installed_bundle_dir(dir));
        for folder in subfolders {
            for path in list_libraries(&folder) {
                found.push(Candidate {
                    path,
                    origin: Origin::Bundled,
                });
            }
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
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path();
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
    }

    #[test]
    fn the_install_layout_bundles_lib_ccproxy_plugins() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path();
        let bin = root.join("bin");
        let bundle = root.join("lib/ccproxy/plugins");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&bundle).unwrap();
        // Any library in the bundle folder counts, prefixed or not; other
        // folders under lib/ do not.
        std::fs::create_dir_all(root.join("lib/other")).unwrap();
        for file in [
            bundle.join("libccproxy_plugin_a.so"),
            bundle.join("libthird.so"),
            bundle.join("README"),
            root.join("lib/other/libccproxy_plugin_z.so"),
        ] {
            std::fs::write(file, b"").unwrap();
        }
        assert_eq!(installed_bundle_dir(&bin), Some(bundle.clone()));
        let found = discover(&SearchPath {
            executable_dir: Some(bin.clone()),
            ..SearchPath::default()
        });
        assert_eq!(
            found,
            vec![
                Candidate {
                    path: bundle.join("libccproxy_plugin_a.so"),
                    origin: Origin::Bundled
                },
                Candidate {
                    path: bundle.join("libthird.so"),
                    origin: Origin::Bundled
                },
            ]
        );
        let warning = no_bundled_plugins_warning(Some(&bin));
        assert!(
            warning.contains(&format!("{}/", bundle.display())),
            "{warning}"
        );
        assert!(warning.contains("scripts/install"), "{warning}");
    }
}
