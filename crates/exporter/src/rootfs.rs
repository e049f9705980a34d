//! The root filesystem of an image as a plain directory or a tar (`-o type=local` /
//! `-o type=tar`): layers applied in order, OCI whiteouts honoured.

use crate::{io_err, Result};
use kiln_cache::Store;
use kiln_oci::Layer;
use std::path::{Component, Path};

/// Applies `layers` onto `dest` (created when missing).
pub fn write_dir(store: &Store, layers: &[Layer], dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    for l in layers {
        apply_layer(store, l, dest)?;
    }
    Ok(())
}

/// Writes the root filesystem as a tar at `dest` (atomically).
pub fn write_tar(store: &Store, layers: &[Layer], dest: &Path) -> Result<()> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = tempfile::Builder::new()
        .prefix(".kiln-rootfs-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    write_dir(store, layers, dir.path())?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-tar-")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    {
        let mut b = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
        b.follow_symlinks(false);
        b.append_dir_all(".", dir.path()).map_err(io_err(dest))?;
        b.into_inner().map_err(io_err(dest))?;
    }
    tmp.persist(dest).map_err(|e| crate::Error::Io {
        path: dest.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}

fn apply_layer(store: &Store, layer: &Layer, dest: &Path) -> Result<()> {
    let reader = store.layer_tar(layer)?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_ownerships(true);
    for entry in ar.entries().map_err(io_err(dest))? {
        let mut entry = entry.map_err(io_err(dest))?;
        let path = entry.path().map_err(io_err(dest))?.into_owned();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new(""));
        if name == ".wh..wh..opq" {
            let dir = dest.join(parent);
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let p = dest.join(parent).join(hidden);
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                let _ = if md.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
            continue;
        }
        let target = dest.join(&path);
        if let Ok(md) = std::fs::symlink_metadata(&target) {
            if !(md.is_dir() && entry.header().entry_type().is_dir()) {
                let _ = if md.is_dir() {
                    std::fs::remove_dir_all(&target)
                } else {
                    std::fs::remove_file(&target)
                };
            }
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        entry.unpack_in(dest).map_err(io_err(&target))?;
    }
    Ok(())
}
