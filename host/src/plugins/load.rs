//! Turning a plugin file into a [`LoadedLibrary`]: the version policy and every
//! refusal reason.
//!
//! Checks run cheapest and safest first, and each failure is one line naming the
//! file, both versions where they matter, and what to do:
//! 1. the file and every folder above it are owned by this user or root and not
//!    writable by others (before `dlopen`, which runs the library's
//!    constructors);
//! 2. the file's dynamic symbol table defines `ccproxy_plugin_api_version`
//!    (else: not a ccproxy plugin), and it and `ccproxy_plugin_panic_unwind`
//!    (when there) are functions in executable code: a library exporting either
//!    as data would have the host jump into data and die of SIGSEGV (Linux
//!    only; read before `dlopen`, so no code of the file has run);
//! 3. `dlopen` succeeds (else: not a loadable library);
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
    /// A plugin API symbol that must be a function is exported as data (or
    /// lies outside executable code): calling it would crash the host.
    NotAFunction {
        /// The symbol's name.
        symbol: &'static str,
    },
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
            Refusal::NotAFunction { symbol } => write!(
                f,
                "exports {symbol} as data, not as the function the plugin API defines: rebuild it with the ccproxy-plugin-abi SDK (export_plugin!)"
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
    /// The file its image was loaded from: `path`, or a private copy when a
    /// new file replaced one loaded before from `path` (see `image`).
    pub image: PathBuf,
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
    let exports = read_api_exports(&resolved);
    if let Ok(exports) = &exports {
        exports.check()?;
    }
    // A file whose symbols could not be read is refused all the same, but only
    // after `dlopen` has had its say: its words tell best why a file is not a
    // library ("file too short", "wrong ELF class").
    // A file that replaced one loaded before from this path is loaded from a
    // private copy: `dlopen` would hand back the old image (see `image`).
    let loadable =
        super::image::loadable_path(&resolved, &crate::paths::images_dir()).map_err(|error| {
            Refusal::NotALibrary(format!("cannot read file {}: {error}", resolved.display()))
        })?;
    let library = RawLibrary::load_at(&loadable)
        .map_err(|error| Refusal::NotALibrary(one_line(&error.to_string())))?;
    let exports = exports.map_err(Refusal::NotALibrary)?;
    // Libraries are never unloaded: unloading Rust code is unsound, and the
    // plugin's statics (its host handle) must outlive every call.
    let library: &'static RawLibrary = Box::leak(Box::new(library));
    let api_version = read_version_symbol(library)?;
    check_version(&api_version)?;
    if exports.panic_strategy != Definition::Absent {
        check_panic_strategy(library, &api_version)?;
    }
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
    check_plugin_name(&manifest.name)?;
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        image: loadable,
        api_version,
        manifest,
        module,
    })
}

/// A plugin name is its config section and the middle of its env overrides
/// (`PLUGINS__NAME__FIELD`): lower-case letters, digits and single underscores.
pub fn check_plugin_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Refusal::BadManifest(format!(
            "plugin name {name:?} must be non-empty lower-case letters, digits and underscores"
        )));
    }
    if name.contains("__") {
        return Err(Refusal::BadManifest(format!(
            "plugin name {name:?} contains \"__\", which separates the parts of its environment overrides (PLUGINS__NAME__FIELD), so they could not reach it; use single underscores"
        )));
    }
    Ok(())
}

/// How a library file defines one of the plugin API's symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Definition {
    /// Not defined by the file itself (missing, or only imported from another).
    Absent,
    /// A function in executable code: callable with the API's signature.
    Function,
    /// Data, thread-local storage, an absolute value, or a "function" outside
    /// executable code: calling it would jump into data.
    NotAFunction,
}

/// The plugin API's symbols as the file defines them, read before `dlopen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ApiExports {
    /// `ccproxy_plugin_api_version`, required.
    version: Definition,
    /// `ccproxy_plugin_panic_unwind`, which libraries of older SDKs lack.
    panic_strategy: Definition,
}

impl ApiExports {
    /// Refuses a file whose plugin API symbols cannot be called safely.
    fn check(&self) -> Result<(), Refusal> {
        match self.version {
            Definition::Absent => return Err(Refusal::NotAPlugin),
            Definition::NotAFunction => {
                return Err(Refusal::NotAFunction {
                    symbol: raw::VERSION_SYMBOL,
                });
            }
            Definition::Function => {}
        }
        if self.panic_strategy == Definition::NotAFunction {
            return Err(Refusal::NotAFunction {
                symbol: raw::PANIC_SYMBOL,
            });
        }
        Ok(())
    }
}

/// Reads the plugin API's symbols from the file's ELF dynamic symbol table;
/// `Err` says why the table could not be read.
#[cfg(target_os = "linux")]
fn read_api_exports(file: &Path) -> Result<ApiExports, String> {
    let [version, panic_strategy] =
        elf_exports::definitions(file, [raw::VERSION_SYMBOL, raw::PANIC_SYMBOL])?;
    Ok(ApiExports {
        version,
        panic_strategy,
    })
}

/// Elsewhere the file is not read: both symbols are taken for functions, and
/// the dynamic loader alone says whether they exist.
#[cfg(not(target_os = "linux"))]
fn read_api_exports(_file: &Path) -> Result<ApiExports, String> {
    Ok(ApiExports {
        version: Definition::Function,
        panic_strategy: Definition::Function,
    })
}

/// Reading an ELF file's dynamic symbol table: only the headers, the section
/// headers, the dynamic symbols and their names are read from disk.
#[cfg(target_os = "linux")]
mod elf_exports {
    use std::path::Path;

    use object::{
        Endianness, FileKind, ReadCache, ReadRef,
        elf::{self, FileHeader32, FileHeader64},
        read::elf::{FileHeader, SectionHeader as _, Sym as _},
    };

    use super::Definition;

    /// How `file` defines each of `names`.
    pub(super) fn definitions<const N: usize>(
        file: &Path,
        names: [&str; N],
    ) -> Result<[Definition; N], String> {
        let opened = std::fs::File::open(file)
            .map_err(|error| format!("cannot read file {}: {error}", file.display()))?;
        let cache = ReadCache::new(opened);
        let unreadable = |error: object::read::Error| {
            format!(
                "cannot read the dynamic symbol table of {}: {error}",
                file.display()
            )
        };
        match FileKind::parse(&cache).map_err(unreadable)? {
            FileKind::Elf32 => {
                definitions_in::<FileHeader32<Endianness>, _, N>(&cache, names).map_err(unreadable)
            }
            FileKind::Elf64 => {
                definitions_in::<FileHeader64<Endianness>, _, N>(&cache, names).map_err(unreadable)
            }
            _ => Err(format!("{} is not an ELF file", file.display())),
        }
    }

    fn definitions_in<'data, Elf, R, const N: usize>(
        data: R,
        names: [&str; N],
    ) -> object::read::Result<[Definition; N]>
    where
        Elf: FileHeader<Endian = Endianness>,
        R: ReadRef<'data>,
    {
        let header = Elf::parse(data)?;
        let endian = header.endian()?;
        let sections = header.sections(endian, data)?;
        let symbols = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
        let mut found = [Definition::Absent; N];
        for (index, symbol) in symbols.enumerate() {
            if symbol.is_undefined(endian) {
                continue;
            }
            let name = symbol.name(endian, symbols.strings())?;
            let Some(slot) = names.iter().position(|wanted| wanted.as_bytes() == name) else {
                continue;
            };
            let in_code = symbols
                .symbol_section(endian, symbol, index)?
                .and_then(|section| sections.section(section).ok())
                .is_some_and(|section| section.sh_flags(endian).contains(elf::SHF_EXECINSTR));
            let function = matches!(symbol.st_type(), elf::STT_FUNC | elf::STT_GNU_IFUNC);
            // Should a name be defined twice (symbol versions), one bad
            // definition is enough to refuse: the loader might pick it.
            if found[slot] != Definition::NotAFunction {
                found[slot] = if function && in_code {
                    Definition::Function
                } else {
                    Definition::NotAFunction
                };
            }
        }
        Ok(found)
    }
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

    fn exports(version: Definition, panic_strategy: Definition) -> ApiExports {
        ApiExports {
            version,
            panic_strategy,
        }
    }

    #[test]
    fn a_version_symbol_exported_as_data_is_refused_with_its_reason() {
        let refusal = exports(Definition::NotAFunction, Definition::Function)
            .check()
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "exports ccproxy_plugin_api_version as data, not as the function the plugin API defines: rebuild it with the ccproxy-plugin-abi SDK (export_plugin!)"
        );
    }

    #[test]
    fn a_panic_symbol_exported_as_data_is_refused() {
        let refusal = exports(Definition::Function, Definition::NotAFunction)
            .check()
            .unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NotAFunction {
                symbol: raw::PANIC_SYMBOL
            }
        );
        assert!(
            refusal.to_string().starts_with(&format!(
                "exports {} as data, not as the function",
                raw::PANIC_SYMBOL
            )),
            "{refusal}"
        );
    }

    #[test]
    fn a_file_that_does_not_define_the_version_function_is_not_a_plugin() {
        let refusal = exports(Definition::Absent, Definition::Function)
            .check()
            .unwrap_err();
        assert_eq!(refusal, Refusal::NotAPlugin);
    }

    #[test]
    fn a_library_of_an_older_sdk_without_the_panic_symbol_passes() {
        assert_eq!(
            exports(Definition::Function, Definition::Absent).check(),
            Ok(())
        );
        assert_eq!(
            exports(Definition::Function, Definition::Function).check(),
            Ok(())
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_dynamic_symbol_table_tells_functions_from_data() {
        // The C library this test runs with exports both kinds: getuid is a
        // function, environ a pointer-sized variable.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps is readable");
        let libc = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .map(Path::new)
            .find(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("libc.so"))
            })
            .unwrap_or_else(|| panic!("no libc.so in /proc/self/maps:\n{maps}"));
        assert_eq!(
            elf_exports::definitions(libc, ["getuid", "environ", "ccproxy_no_such_symbol"]),
            Ok([
                Definition::Function,
                Definition::NotAFunction,
                Definition::Absent
            ]),
            "{}",
            libc.display()
        );
        // This test's own executable imports getuid: a symbol it does not
        // define is absent, whatever its type.
        let me = std::env::current_exe().expect("the test knows its own file");
        let [getuid] = elf_exports::definitions(&me, ["getuid"]).expect("an ELF executable");
        assert_eq!(getuid, Definition::Absent);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_is_not_elf_has_no_readable_symbol_table() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let error = elf_exports::definitions(&file, [raw::VERSION_SYMBOL]).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "cannot read the dynamic symbol table of {}",
                file.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn plugin_names_with_a_double_underscore_are_refused() {
        assert_eq!(check_plugin_name("my_plugin"), Ok(()));
        let error = check_plugin_name("my__plugin").unwrap_err().to_string();
        assert!(error.contains("PLUGINS__NAME__FIELD"), "{error}");
        let error = check_plugin_name("My").unwrap_err().to_string();
        assert!(error.contains("lower-case letters"), "{error}");
    }

    #[test]
    fn garbage_file_is_not_a_library() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
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
    }
}
