//! The root filesystem of an image as a plain directory or a tar (`-o type=local` /
//! `-o type=tar`): layers applied in order, OCI whiteouts honoured, nothing outside the
//! destination touched whatever the layers hold.

use crate::{io_err, Result};
use kiln_cache::Store;
use kiln_oci::Layer;
use std::path::Path;

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
    // Confined to `dest`: absolute names, symlinked parents and whiteouts of any kind never
    // reach outside it (kiln_cache::apply_merged).
    kiln_cache::apply_merged(reader, dest, &layer.digest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Issue 11, item 2: crafted layers exported with `-o type=local|tar` must leave a
    //! canary directory next to the destination as it was.
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    type Tree = BTreeMap<PathBuf, (u32, i64, Vec<u8>)>;

    fn tree(dir: &Path) -> Tree {
        let mut out = BTreeMap::new();
        for e in walk(dir) {
            let md = std::fs::symlink_metadata(&e).unwrap();
            let content = if md.is_symlink() {
                std::fs::read_link(&e)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if md.is_dir() {
                Vec::new()
            } else {
                std::fs::read(&e).unwrap()
            };
            out.insert(e, (md.mode(), md.mtime(), content));
        }
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![dir.to_path_buf()];
        let mut i = 0;
        while i < out.len() {
            let p = out[i].clone();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    out.push(e.unwrap().path());
                }
            }
            i += 1;
        }
        out
    }

    struct Fixture {
        tmp: tempfile::TempDir,
        store: Store,
        canary: PathBuf,
        before: Tree,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let store = Store::open(&tmp.path().join("store")).unwrap();
            let canary = tmp.path().join("canary");
            std::fs::create_dir_all(canary.join("dir")).unwrap();
            std::fs::write(canary.join("victim"), "host").unwrap();
            std::fs::write(canary.join("dir/inner"), "inner").unwrap();
            std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o750)).unwrap();
            let before = tree(&canary);
            Fixture {
                tmp,
                store,
                canary,
                before,
            }
        }

        fn abs(&self, p: &str) -> String {
            format!("{}/{p}", self.canary.display())
        }

        /// A layer of `(type, name, link target, data)` entries, names written verbatim.
        fn layer(&self, entries: &[(tar::EntryType, &str, &str, &str)]) -> Layer {
            let mut b = Vec::new();
            for (ty, name, link, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*ty);
                h.set_mode(if ty.is_dir() { 0o755 } else { 0o644 });
                h.set_mtime(1_000_000);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(data.len() as u64);
                let g = h.as_gnu_mut().unwrap();
                g.name[..name.len()].copy_from_slice(name.as_bytes());
                g.linkname[..link.len()].copy_from_slice(link.as_bytes());
                h.set_cksum();
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(data.as_bytes());
                b.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
            }
            b.extend_from_slice(&[0u8; 1024]);
            let (digest, size) = self.store.write_blob(&b).unwrap();
            Layer {
                diff_id: digest.clone(),
                digest,
                size,
                media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
            }
        }

        /// Exports `layers` both ways; returns the directory export.
        fn export(&self, layers: &[Layer]) -> (PathBuf, Result<()>) {
            let dest = self.tmp.path().join("out");
            let _ = std::fs::remove_dir_all(&dest);
            let r = write_dir(&self.store, layers, &dest);
            let r2 = write_tar(&self.store, layers, &self.tmp.path().join("out.tar"));
            assert_eq!(r.is_ok(), r2.is_ok());
            self.untouched();
            (dest, r)
        }

        fn untouched(&self) {
            assert!(self.canary.is_dir(), "the canary is gone");
            assert_eq!(tree(&self.canary), self.before, "the canary changed");
        }
    }

    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};

    #[test]
    fn absolute_entries_never_replace_a_host_file() {
        let fx = Fixture::new();
        let l = fx.layer(&[
            (F, &fx.abs("victim"), "", "pwned"),
            (D, &fx.abs("dir/"), "", ""),
        ]);
        let (dest, r) = fx.export(&[l]);
        r.unwrap();
        let inside = dest.join(fx.canary.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(inside.join("victim")).unwrap(), b"pwned");
    }

    #[test]
    fn whiteouts_below_a_symlinked_parent_never_delete_host_files() {
        let fx = Fixture::new();
        let canary = fx.canary.to_str().unwrap();
        let lower = fx.layer(&[(L, "evil", canary, "")]);
        let upper = fx.layer(&[
            (F, "evil/.wh.victim", "", ""),
            (F, "evil/dir/.wh..wh..opq", "", ""),
            (F, "evil/.wh.dir", "", ""),
        ]);
        let (dest, r) = fx.export(&[lower, upper]);
        r.unwrap();
        assert_eq!(std::fs::read_link(dest.join("evil")).unwrap(), fx.canary);
    }

    #[test]
    fn absolute_whiteouts_never_delete_host_files() {
        let fx = Fixture::new();
        let l = fx.layer(&[
            (F, &fx.abs(".wh.victim"), "", ""),
            (F, &fx.abs("dir/.wh..wh..opq"), "", ""),
            (F, &fx.abs(".wh.dir"), "", ""),
        ]);
        let (_dest, r) = fx.export(&[l]);
        r.unwrap();
    }

    #[test]
    fn a_layer_that_replaced_a_symlink_with_a_directory_exports() {
        let fx = Fixture::new();
        let lower = fx.layer(&[
            (D, "usr/", "", ""),
            (D, "usr/lib/", "", ""),
            (F, "usr/lib/a", "", "a"),
            (L, "lib", "usr/lib", ""),
        ]);
        // What `RUN rm lib && mkdir lib && echo b > lib/b` commits.
        let upper = fx.layer(&[(D, "lib/", "", ""), (F, "lib/b", "", "b")]);
        let (dest, r) = fx.export(&[lower, upper]);
        r.unwrap();
        assert!(std::fs::symlink_metadata(dest.join("lib"))
            .unwrap()
            .is_dir());
        assert_eq!(std::fs::read(dest.join("lib/b")).unwrap(), b"b");
        assert_eq!(std::fs::read(dest.join("usr/lib/a")).unwrap(), b"a");
        let mut names: Vec<String> =
            tar::Archive::new(std::fs::File::open(fx.tmp.path().join("out.tar")).unwrap())
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
        names.sort();
        assert!(names.contains(&"lib/b".to_string()), "{names:?}");
    }
}
