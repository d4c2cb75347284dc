//! `ccproxy plugins install FILE` and `ccproxy plugins remove NAME`: a plugin
//! library into the plugin folder and out of it, with `--reload` asking a
//! running service to pick the change up.
//!
//! Install checks the file exactly as `plugins check` does (same code, same
//! message, same exit code), then writes a copy into the folder under a
//! temporary name (created new, never through a link, mode 0644), checks the
//! copy again (the bytes that will be loaded, in the folder they will be
//! loaded from, whose permissions the host checks too) and renames it to
//! `lib<name>.so`. The rename replaces an older version of the same file in
//! one step, so a running host that rescans sees the old file or the new one,
//! never half a library; a host that already mapped the old file keeps its
//! image (the old inode lives on until it is unmapped).

use std::{
    fs::{self, DirBuilder},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{exit, plugins_cmd};
use crate::{
    config::Config,
    plugins::{
        discover::{self, Candidate, Origin},
        load, registry,
    },
};

/// The mode of an installed library: the user may replace it, everyone may
/// read it, nobody else may change it (the host refuses group- or
/// world-writable files).
const LIBRARY_MODE: u32 = 0o644;
/// The mode of a plugin folder created here.
const FOLDER_MODE: u32 = 0o700;

/// The folder `install` and `remove` work in: the first `--plugin-dir`, else
/// the user plugin folder (`$XDG_CONFIG_HOME/ccproxy/plugins`), else the
/// first of `plugin_discovery.directories`.
fn plugin_folder(config: &Config, plugin_dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    if let Some(dir) = plugin_dirs.first() {
        return Ok(dir.clone());
    }
    if let Some(dir) = registry::search_path(config).user_dir {
        return Ok(dir);
    }
    if let Some(dir) = config.plugin_discovery.directories.first() {
        return Ok(dir.clone());
    }
    bail!(
        "no plugin folder: the user folder is turned off (plugin_discovery.disable_local_discovery) and plugin_discovery.directories is empty; pass --plugin-dir DIR"
    )
}

/// `lib<name>.so` on Linux (the platform's library file name).
fn library_file_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A plugin library found in a folder, with the name its manifest gives.
struct Installed {
    file: PathBuf,
    name: String,
    version: String,
}

/// The plugins in `candidates` whose manifest names `name`. Files that do not
/// load are skipped: they cannot hold a plugin the host would run.
fn named(candidates: &[Candidate], name: &str) -> Vec<Installed> {
    candidates
        .iter()
        .filter_map(|candidate| {
            let library = load::load(&candidate.path).ok()?;
            (library.manifest.name == name).then(|| Installed {
                file: candidate.path.clone(),
                name: library.manifest.name,
                version: library.manifest.version,
            })
        })
        .collect()
}

/// The plugin libraries directly in `folder`, in the order the host reads them.
fn libraries_in(folder: &Path) -> Vec<Candidate> {
    discover::discover(&discover::SearchPath {
        executable_dir: None,
        user_dir: Some(folder.to_path_buf()),
        configured: Vec::new(),
    })
}

/// The bundled plugin libraries: shipped with this binary.
fn bundled(config: &Config) -> Vec<Candidate> {
    discover::discover(&registry::search_path(config))
        .into_iter()
        .filter(|candidate| candidate.origin == Origin::Bundled)
        .collect()
}

/// Creates `folder` (mode 0700) when it is missing.
fn ensure_folder(folder: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(folder) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) if meta.file_type().is_symlink() && folder.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a folder", folder.display()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(FOLDER_MODE)
            .create(folder)
            .with_context(|| format!("cannot create the plugin folder {}", folder.display())),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", folder.display())),
    }
}

/// Copies `source` to a new file in `folder` that nothing else can have
/// opened: a fresh name created exclusively (`tempfile`: `O_EXCL`, so never
/// through a planted link), mode 0644, synced. Its name does not end in
/// `.so`, so a host scanning the folder meanwhile does not take it for a plugin.
fn copy_to_temporary(source: &Path, folder: &Path, file_name: &str) -> anyhow::Result<PathBuf> {
    let bytes = fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.install-"))
        .permissions(fs::Permissions::from_mode(LIBRARY_MODE))
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a file in {}", folder.display()))?;
    let written = (|| -> io::Result<()> {
        // The umask only removes bits; set them exactly.
        file.as_file()
            .set_permissions(fs::Permissions::from_mode(LIBRARY_MODE))?;
        file.write_all(&bytes)?;
        file.as_file().sync_all()
    })();
    written.with_context(|| format!("cannot write {}", file.path().display()))?;
    // Kept: it is checked where it lies, then renamed into place.
    let (_, temporary) = file
        .keep()
        .with_context(|| format!("cannot keep the copy in {}", folder.display()))?;
    Ok(temporary)
}

/// Makes a rename or removal in `folder` durable.
fn sync_folder(folder: &Path) {
    if let Ok(folder) = fs::File::open(folder) {
        let _ = folder.sync_all();
    }
}

/// `--reload`: asks the running server (the one on `server.port`) to reload,
/// as `ccproxy reload` does, and waits for the outcome. The file change is
/// done either way; the error says so.
fn reload(config: &Config) -> anyhow::Result<()> {
    crate::service::request_reload(config).context(
        "the plugin folder is changed, but the running server was not reloaded (run `ccproxy reload` once it runs, or restart it)",
    )
}

/// `plugins install FILE`.
pub(super) fn install(
    config: &Config,
    plugin_dirs: &[PathBuf],
    file: &Path,
    reload_after: bool,
) -> anyhow::Result<u8> {
    // The verdict of `plugins check`, printed as it prints it.
    let verdict = plugins_cmd::check(file, false)?;
    if verdict != exit::OK {
        return Ok(verdict);
    }
    let library =
        load::load(file).map_err(|refusal| anyhow::anyhow!("{}: {refusal}", file.display()))?;
    let name = library.manifest.name.clone();
    let version = library.manifest.version.clone();

    if let Some(shipped) = named(&bundled(config), &name).first() {
        bail!(
            "{name} is the name of a bundled plugin ({}): the host would refuse a second plugin of that name; rename yours (its manifest name) or, to replace the bundled one, install a ccproxy built with your change",
            shipped.file.display()
        );
    }

    let folder = plugin_folder(config, plugin_dirs)?;
    ensure_folder(&folder)?;
    let file_name = library_file_name(&name);
    let target = folder.join(&file_name);
    let previous = named(&libraries_in(&folder), &name);
    // A file of that name holding another plugin is not ours to replace.
    if fs::symlink_metadata(&target).is_ok()
        && !previous
            .iter()
            .any(|old| old.file.file_name() == target.file_name())
    {
        bail!(
            "{} exists and is not plugin {name}: remove it first (`ccproxy plugins remove` with its name, or delete the file)",
            target.display()
        );
    }

    let temporary = copy_to_temporary(file, &folder, &file_name)?;
    // The copy, where it will be loaded from: the folder's permissions are
    // checked here too.
    let copy = match load::load(&temporary) {
        Ok(copy) => copy,
        Err(refusal) => {
            let _ = fs::remove_file(&temporary);
            bail!(
                "refused: cannot install into {}: {refusal}",
                folder.display()
            );
        }
    };
    if copy.manifest.name != name {
        let _ = fs::remove_file(&temporary);
        bail!(
            "{} changed while it was being installed (it now holds plugin {}); try again",
            file.display(),
            copy.manifest.name
        );
    }
    // `rename` replaces the name, never follows a link there, and leaves a
    // running host's mapping of the old file intact.
    if let Err(error) = fs::rename(&temporary, &target) {
        let _ = fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot move the copy to {}", target.display()));
    }
    for old in &previous {
        if old.file.file_name() != target.file_name() {
            fs::remove_file(&old.file)
                .with_context(|| format!("cannot remove the older {}", old.file.display()))?;
        }
    }
    sync_folder(&folder);
    for old in &previous {
        println!(
            "replaced {} {} ({})",
            old.name,
            old.version,
            old.file.display()
        );
    }
    println!("installed {name} {version} as {}", target.display());
    if reload_after {
        reload(config)?;
    }
    Ok(exit::OK)
}

/// `plugins remove NAME`: NAME is the plugin's name, or the file name of a
/// library in the folder (for one that no longer loads).
pub(super) fn remove(
    config: &Config,
    plugin_dirs: &[PathBuf],
    name: &str,
    reload_after: bool,
) -> anyhow::Result<u8> {
    let folder = plugin_folder(config, plugin_dirs)?;
    let in_folder = libraries_in(&folder);
    let mut doomed: Vec<(PathBuf, String)> = named(&in_folder, name)
        .into_iter()
        .map(|plugin| {
            let what = format!("{} {}", plugin.name, plugin.version);
            (plugin.file, what)
        })
        .collect();
    if doomed.is_empty()
        && let Some(candidate) = in_folder
            .iter()
            .find(|candidate| candidate.path.file_name().and_then(|f| f.to_str()) == Some(name))
    {
        doomed.push((candidate.path.clone(), "the file".to_owned()));
    }
    if doomed.is_empty() {
        if let Some(shipped) = named(&bundled(config), name).first() {
            bail!(
                "{name} is bundled with ccproxy ({}) and cannot be removed; turn it off instead: [plugins.{name}] enabled = false in the config, PLUGINS__{}__ENABLED=false, or --disable-plugin {name}",
                shipped.file.display(),
                name.to_ascii_uppercase()
            );
        }
        let elsewhere = discover::discover(&registry::search_path(config));
        if let Some(other) = named(&elsewhere, name).first() {
            bail!(
                "{name} is not in the plugin folder {} but in {} ({}); delete that file, or pass --plugin-dir with its folder",
                folder.display(),
                other.file.display(),
                plugin_origin(&elsewhere, &other.file)
            );
        }
        bail!(
            "no plugin named {name} in {}; `ccproxy plugins list` shows what is installed",
            folder.display()
        );
    }
    for (file, what) in &doomed {
        // `remove_file` removes a symbolic link itself, never its target.
        fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display()))?;
        println!("removed {what} ({})", file.display());
    }
    sync_folder(&folder);
    if reload_after {
        reload(config)?;
    }
    Ok(exit::OK)
}

/// Where `file` was found, for messages.
fn plugin_origin(candidates: &[Candidate], file: &Path) -> &'static str {
    candidates
        .iter()
        .find(|candidate| candidate.path == file)
        .map_or("found", |candidate| candidate.origin.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_installs_as_lib_name_so() {
        assert_eq!(library_file_name("my_plugin"), "libmy_plugin.so");
    }

    #[test]
    fn the_temporary_copy_is_0644_under_a_fresh_name() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("plugins");
        ensure_folder(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            FOLDER_MODE
        );
        let source = dir.join("source.bin");
        fs::write(&source, b"library bytes").unwrap();

        let copy = copy_to_temporary(&source, &dir, "libx.so").unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"library bytes");
        assert_eq!(
            fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            LIBRARY_MODE
        );
        assert!(!discover::is_library(&copy), "{}", copy.display());
        // Each copy gets a name of its own.
        let second = copy_to_temporary(&source, &dir, "libx.so").unwrap();
        assert_ne!(second, copy);
    }
}
