//! Turning a plugin file into a [`LoadedLibrary`]: the version policy and every
//! refusal reason.
//!
//! Checks run cheapest and safest first, and each failure is one line naming the
//! file, both versions where they matter, and what to do:
//! 1. the file and every folder above it are owned by this user or root and not
//!    writable by others (before `dlopen`, which runs the library's
//!    constructors);
//! 2. `dlopen` succeeds (else: not a loadable library);
//! 3. the `ccproxy_plugin_api_version` symbol exists (else: not a ccproxy plugin);
//! 4. its semver is compatible: same major, minor not newer than the host's;
//! 5. abi_stable's header and layout checks pass;
//! 6. the manifest parses and names a plugin.
// This module and `handle` are the host's only contact with raw ABI types.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, c_char},
    fmt,
    path::{Path, PathBuf},
};

use abi_stable::library::{LibraryError, RawLibrary, RootModule, lib_header_from_raw_library};
use ccproxy_plugin_abi::{API_VERSION, manifest::Manifest, raw};

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file or its folder can be written by other users.
    Insecure(String),
    /// `dlopen` failed: not a shared library for this platform, or missing symbols.
    NotALibrary(String),
    /// A shared library without the version symbol.
    NotAPlugin,
    /// The version symbol is not semver.
    BadVersion(String),
    /// Built for another major version of the plugin API.
    IncompatibleMajor {
        /// The plugin's API version.
        plugin: semver::Version,
    },
    /// Built for a newer minor version than this host speaks.
    NeedsNewerHost {
        /// The plugin's API version.
        plugin: semver::Version,
    },
    /// Built with `panic = "abort"`: a panic in it would end the whole proxy.
    PanicAbort {
        /// The plugin's API version.
        plugin: semver::Version,
    },
    /// abi_stable's header or layout check failed.
    LayoutMismatch {
        /// The plugin API version the library claims.
        plugin: semver::Version,
        /// What differs.
        why: String,
    },
    /// The manifest could not be read.
    BadManifest(String),
    /// Another file already provides a plugin with this name.
    DuplicateName {
        /// The plugin name.
        name: String,
        /// The file that won.
        first: PathBuf,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Insecure(why) => write!(f, "{why}"),
            Refusal::NotALibrary(why) => write!(f, "not a loadable library: {why}"),
            Refusal::NotAPlugin => write!(
                f,
                "not a ccproxy plugin: it has no ccproxy_plugin_api_version symbol; build it with ccproxy_plugin_abi::export_plugin!"
            ),
            Refusal::BadVersion(text) => write!(
                f,
                "its plugin API version {text:?} is not semver; rebuild it with the official SDK"
            ),
            Refusal::IncompatibleMajor { plugin } => write!(
                f,
                "built for plugin API {plugin}, this host speaks {API_VERSION}; rebuild it against ccproxy-plugin-abi {}.x",
                host_version().major
            ),
            Refusal::NeedsNewerHost { plugin } => write!(
                f,
                "needs a newer host: built for plugin API {plugin}, this host speaks {API_VERSION}; upgrade ccproxy or rebuild the plugin against {API_VERSION}"
            ),
            Refusal::PanicAbort { plugin } => write!(
                f,
                "built for plugin API {plugin} with panic = \"abort\": one panic in it would end the whole proxy; build it with panic = \"unwind\" (the default)"
            ),
            Refusal::LayoutMismatch { plugin, why } => write!(
                f,
                "layout mismatch: claims plugin API {plugin}, but its types do not match this host's plugin API {API_VERSION}: {why}; rebuild it against ccproxy-plugin-abi {API_VERSION} with the official SDK"
            ),
            Refusal::BadManifest(why) => write!(f, "invalid manifest: {why}"),
            Refusal::DuplicateName { name, first } => write!(
                f,
                "duplicate plugin name {name}: already loaded from {}; remove one of the two files",
                first.display()
            ),
        }
    }
}

impl Refusal {
    /// The plugin API version the file claims, when it got far enough to say.
    pub fn plugin_version(&self) -> Option<&semver::Version> {
        match self {
            Refusal::IncompatibleMajor { plugin }
            | Refusal::NeedsNewerHost { plugin }
            | Refusal::PanicAbort { plugin }
            | Refusal::LayoutMismatch { plugin, .. } => Some(plugin),
            _ => None,
        }
    }
}

/// A library that passed every check, with its manifest read.
pub struct LoadedLibrary {
    /// The file it came from.
    pub path: PathBuf,
    /// The plugin API version it was built against.
    pub api_version: semver::Version,
    /// Its manifest.
    pub manifest: Manifest,
    /// The root module; `'static` because libraries are never unloaded.
    pub(crate) module: raw::PluginModuleRef,
}

impl fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("api_version", &self.api_version)
            .field("name", &self.manifest.name)
            .finish_non_exhaustive()
    }
}

/// The plugin API version this host speaks.
pub fn host_version() -> semver::Version {
    semver::Version::parse(API_VERSION).expect("the SDK's Cargo version is semver")
}

/// The compatibility promise: a host of `1.y` loads plugins of `1.x`, `x <= y`.
pub fn check_version(plugin: &semver::Version) -> Result<(), Refusal> {
    let host = host_version();
    if plugin.major != host.major {
        return Err(Refusal::IncompatibleMajor {
            plugin: plugin.clone(),
        });
    }
    if plugin.minor > host.minor {
        return Err(Refusal::NeedsNewerHost {
            plugin: plugin.clone(),
        });
    }
    Ok(())
}

/// Refuses code that other users could have written or replaced: the file
/// itself (symbolic links resolved) and every folder above it up to `/` must
/// be owned by the user running the host or by root, and not be writable by
/// the group or by everyone. A folder with the sticky bit (`/tmp`) may be
/// writable by all, since nobody else can replace what it holds. Returns the
/// resolved path: the file that was checked is the one that gets loaded (a
/// bare file name would otherwise send `dlopen` down the library search path).
pub fn check_permissions(path: &Path) -> Result<PathBuf, Refusal> {
    use std::os::unix::fs::MetadataExt;
    const STICKY: u32 = 0o1000;
    let me = current_uid();
    let resolved = std::fs::canonicalize(path).map_err(|error| {
        Refusal::NotALibrary(format!("cannot read file {}: {error}", path.display()))
    })?;
    let check = |target: &Path, is_folder: bool| -> Result<(), Refusal> {
        let what = if is_folder { "folder" } else { "file" };
        let meta = std::fs::metadata(target).map_err(|error| {
            Refusal::NotALibrary(format!("cannot read {what} {}: {error}", target.display()))
        })?;
        let mode = meta.mode();
        let sticky_folder = is_folder && mode & STICKY != 0;
        if mode & 0o022 != 0 && !sticky_folder {
            let by = if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            };
            return Err(Refusal::Insecure(format!(
                "{what} {} is writable by {by} (mode {:04o}); run chmod go-w on it",
                target.display(),
                mode & 0o7777
            )));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(Refusal::Insecure(format!(
                "{what} {} is owned by another user (uid {}); only the user running ccproxy (uid {me}) or root may own plugin files and the folders above them: chown it or move the plugin",
                target.display(),
                meta.uid()
            )));
        }
        Ok(())
    };
    check(&resolved, false)?;
    for folder in resolved.ancestors().skip(1) {
        check(folder, true)?;
    }
    Ok(resolved)
}

fn current_uid() -> u32 {
    // Safety: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Loads `path` and reads its manifest. Never panics; every failure is a [`Refusal`].
pub fn load(path: &Path) -> Result<LoadedLibrary, Refusal> {
    let resolved = check_permissions(path)?;
    let library = RawLibrary::load_at(&resolved)
        .map_err(|error| Refusal::NotALibrary(one_line(&error.to_string())))?;
    // Libraries are never unloaded: unloading Rust code is unsound, and the
    // plugin's statics (its host handle) must outlive every call.
    let library: &'static RawLibrary = Box::leak(Box::new(library));
    let api_version = read_version_symbol(library)?;
    check_version(&api_version)?;
    check_panic_strategy(library, &api_version)?;
    let mismatch = |error: LibraryError| Refusal::LayoutMismatch {
        plugin: api_version.clone(),
        why: summarize_library_error(&error),
    };
    // Safety: the library exports our version symbol, so it was built with the
    // SDK, whose export macro defines the abi_stable header with this layout.
    let header = unsafe { lib_header_from_raw_library(library) }.map_err(mismatch)?;
    let module = header
        .init_root_module::<raw::PluginModuleRef>()
        .map_err(mismatch)?;
    let manifest_json = match (module.manifest())() {
        abi_stable::std_types::RResult::ROk(json) => json,
        abi_stable::std_types::RResult::RErr(error) => {
            return Err(Refusal::BadManifest(error.into()));
        }
    };
    let manifest: Manifest = serde_json::from_str(&manifest_json)
        .map_err(|error| Refusal::BadManifest(error.to_string()))?;
    if manifest.name.is_empty()
        || !manifest
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Refusal::BadManifest(format!(
            "plugin name {:?} must be non-empty lower-case letters, digits and underscores",
            manifest.name
        )));
    }
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        api_version,
        manifest,
        module,
    })
}

/// Refuses libraries that abort on panic; libraries without the symbol (older
/// SDKs) are accepted.
fn check_panic_strategy(
    library: &'static RawLibrary,
    api_version: &semver::Version,
) -> Result<(), Refusal> {
    let symbol = format!("{}\0", raw::PANIC_SYMBOL);
    // Safety: the symbol, when present, is the SDK's `extern "C" fn() -> u8`.
    let unwinds = unsafe {
        match library.get::<extern "C" fn() -> u8>(symbol.as_bytes()) {
            Ok(function) => (*function)(),
            Err(_) => return Ok(()),
        }
    };
    if unwinds == 0 {
        Err(Refusal::PanicAbort {
            plugin: api_version.clone(),
        })
    } else {
        Ok(())
    }
}

fn read_version_symbol(library: &'static RawLibrary) -> Result<semver::Version, Refusal> {
    let symbol = format!("{}\0", raw::VERSION_SYMBOL);
    // Safety: the symbol, when present, is the SDK's `extern "C" fn() -> *const
    // c_char` returning a pointer to a static NUL-terminated string.
    let text = unsafe {
        let function = library
            .get::<extern "C" fn() -> *const c_char>(symbol.as_bytes())
            .map_err(|_| Refusal::NotAPlugin)?;
        let pointer = (*function)();
        if pointer.is_null() {
            return Err(Refusal::BadVersion("<null>".into()));
        }
        CStr::from_ptr(pointer).to_string_lossy().into_owned()
    };
    semver::Version::parse(&text).map_err(|_| Refusal::BadVersion(text))
}

/// abi_stable's layout errors dump both type layouts (hundreds of lines); keep
/// the lines that say what differs.
fn summarize_library_error(error: &LibraryError) -> String {
    let text = error.to_string();
    // An `Error:` line is followed by its `Expected:` and `Found:` values on
    // indented lines of their own, up to a blank line: keep the whole block, or
    // the reason says "mismatched package; Expected:" without saying what.
    let mut reasons: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Error:") || line.contains("version mismatch") {
            reasons.push(line.to_owned());
            in_block = line.starts_with("Error:");
        } else if line.is_empty() {
            in_block = false;
        } else if in_block && let Some(last) = reasons.last_mut() {
            last.push(' ');
            last.push_str(line);
        }
    }
    if reasons.is_empty() {
        one_line(&text)
    } else {
        one_line(
            &reasons
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| joined.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &joined[..cut])
    } else {
        joined
    }
}

/// The root module's name, for messages.
pub fn module_name() -> &'static str {
    <raw::PluginModuleRef as RootModule>::NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    #[test]
    fn same_version_loads() {
        assert_eq!(check_version(&host_version()), Ok(()));
    }

    #[test]
    fn older_minor_loads() {
        let mut older = host_version();
        older.minor = 0;
        older.patch = 0;
        assert_eq!(check_version(&older), Ok(()));
    }

    #[test]
    fn newer_minor_needs_newer_host() {
        let mut newer = host_version();
        newer.minor += 1;
        let refusal = check_version(&newer).unwrap_err();
        assert!(
            refusal.to_string().starts_with("needs a newer host"),
            "{refusal}"
        );
    }

    #[test]
    fn other_major_is_refused_with_both_versions() {
        let refusal = check_version(&version("2.0.0")).unwrap_err();
        let text = refusal.to_string();
        assert!(
            text.contains("2.0.0") && text.contains(API_VERSION),
            "{text}"
        );
    }

    #[test]
    fn garbage_file_is_not_a_library() {
        let dir = std::env::temp_dir().join(format!("ccproxy-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let file = dir.join("libgarbage.so");
        std::fs::write(&file, b"this is not an ELF file").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let refusal = load(&file).unwrap_err();
        assert!(matches!(refusal, Refusal::NotALibrary(_)), "{refusal}");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let refusal = load(&file).unwrap_err();
        assert!(
            refusal.to_string().contains("writable by every user"),
            "{refusal}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
