//! Library images across reloads. `dlopen` hands back the library already
//! loaded from a path, whatever the file holds now, and libraries are never
//! unloaded (unloading Rust code is unsound). So when a reload finds a new file
//! at a path loaded before, its bytes are copied into a private folder under a
//! name of their own and loaded from there: the old image keeps serving what
//! it still serves, the new one serves from then on.
//!
//! A file is known by its device, inode, size and modification time: a plugin
//! replaced by `cp`, `install` or a rename gets a new identity; the same file
//! seen again keeps its image, so a reload that changes nothing loads nothing.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// What identifies the bytes at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl Identity {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

#[derive(Default)]
struct Images {
    /// The identity of the file each path was first loaded with.
    loaded: HashMap<PathBuf, Identity>,
    /// Private copies made for files that changed after their path was loaded.
    copies: HashMap<Identity, PathBuf>,
}

fn images() -> &'static Mutex<Images> {
    static IMAGES: OnceLock<Mutex<Images>> = OnceLock::new();
    IMAGES.get_or_init(Mutex::default)
}

/// The path to `dlopen` for the checked file `resolved`: itself, unless a
/// different file was loaded from that path before, then a private copy of
/// it under `copies_dir` (created 0700).
pub fn loadable_path(resolved: &Path, copies_dir: &Path) -> io::Result<PathBuf> {
    let identity = Identity::of(resolved)?;
    let mut images = images()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match images.loaded.get(resolved) {
        None => {
            images.loaded.insert(resolved.to_path_buf(), identity);
            return Ok(resolved.to_path_buf());
        }
        Some(first) if *first == identity => return Ok(resolved.to_path_buf()),
        Some(_) => {}
    }
    if let Some(copy) = images.copies.get(&identity) {
        return Ok(copy.clone());
    }
    let copy = copy_image(resolved, copies_dir)?;
    images.copies.insert(identity, copy.clone());
    Ok(copy)
}

/// Copies `source` to a new file in `dir` (created 0700) that nobody else
/// can write: a fresh name created exclusively (`tempfile`: `O_EXCL`, so
/// never through a planted link), read and execute for the owner only.
fn copy_image(source: &Path, dir: &Path) -> io::Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let stem = source
        .file_stem()
        .map(|stem| format!("{}.", stem.to_string_lossy()))
        .unwrap_or_else(|| "plugin.".to_owned());
    let extension = source
        .extension()
        .map(|ext| format!(".{}", ext.to_string_lossy()))
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(&stem)
        .suffix(&extension)
        .permissions(fs::Permissions::from_mode(0o500))
        .tempfile_in(dir)?;
    io::copy(&mut fs::File::open(source)?, &mut file)?;
    file.as_file().sync_all()?;
    let (_, path) = file.keep().map_err(|error| error.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_keeps_its_image_until_its_file_changes_then_gets_a_private_copy() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("libexample.so");
        let copies = scratch.path().join("images");
        fs::write(&file, b"first").unwrap();
        assert_eq!(loadable_path(&file, &copies).unwrap(), file);
        assert_eq!(
            loadable_path(&file, &copies).unwrap(),
            file,
            "unchanged: same image"
        );

        // Replaced as `install` or a rename does: a new inode.
        let replacement = scratch.path().join("new.so");
        fs::write(&replacement, b"second version").unwrap();
        fs::rename(&replacement, &file).unwrap();
        let copy = loadable_path(&file, &copies).unwrap();
        assert_ne!(copy, file);
        assert!(copy.starts_with(&copies));
        assert_eq!(fs::read(&copy).unwrap(), b"second version");
        assert_eq!(
            loadable_path(&file, &copies).unwrap(),
            copy,
            "the copy is reused"
        );
        let mode = fs::metadata(&copies).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
