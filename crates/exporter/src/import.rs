//! `kiln import`: a root filesystem tarball as a one-layer image in the store.
//!
//! The input is read twice: once to check it is a whole tar (every header and every entry's
//! data there), then to store it as the layer. A stream (stdin) is therefore spooled into a
//! scratch file under the store's root first. Nothing is stored when the input is not a
//! tar. Naming the image is the caller's; so is the config (`--change` is the frontend's to
//! apply: start from [`base_config`]).

use crate::{store_image, HistoryEntry, StoredImage};
use kiln_cache::Store;
use kiln_oci::spec::ImageConfiguration;
use std::io::Read;
use std::path::Path;

/// Errors from importing. Messages name the input as the command line gave it (`-` for
/// stdin).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not a whole tar archive.
    #[error("{name}: not a tar archive{}", if *.truncated { " (it ends inside an entry)" } else { "" })]
    NotTar {
        /// The input.
        name: String,
        /// It ends inside an entry.
        truncated: bool,
    },
    /// The input (or the spool file for a stream) could not be opened or written.
    #[error("{name}: {source}")]
    Io {
        /// The input, or the spool file.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the stream failed.
    #[error("reading stdin: {0}")]
    Read(#[source] std::io::Error),
    /// The config does not serialize as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// The image could not be stored.
    #[error(transparent)]
    Export(#[from] crate::Error),
}

/// What is imported.
pub enum Input<'a> {
    /// A file, named in messages as given.
    File(&'a Path),
    /// A stream (stdin), named `-` in messages.
    Stream(&'a mut dyn Read),
}

/// The config of an imported image before `--change`: linux/amd64, nothing else.
pub fn base_config() -> Result<ImageConfiguration, ImportError> {
    Ok(serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))?)
}

/// Checks that `input` is a whole tar, then stores it as the one layer of an image with
/// `config` (its `rootfs` and `history` replaced: one `kiln import` entry) created at
/// `created` (RFC 3339). The image is not named.
pub fn import(
    store: &Store,
    input: Input<'_>,
    config: &ImageConfiguration,
    created: &str,
) -> Result<StoredImage, ImportError> {
    let spool = store.temp_dir("import-")?;
    let (name, path) = match input {
        Input::File(p) => (p.display().to_string(), p.to_path_buf()),
        Input::Stream(r) => {
            let p = spool.path().join("layer.tar");
            let io = |source| ImportError::Io {
                name: p.display().to_string(),
                source,
            };
            let mut f = std::fs::File::create(&p).map_err(io)?;
            std::io::copy(r, &mut f).map_err(ImportError::Read)?;
            ("-".to_string(), p)
        }
    };
    let open = || {
        std::fs::File::open(&path).map_err(|source| ImportError::Io {
            name: name.clone(),
            source,
        })
    };
    // The tar crate's messages quote the bad bytes: say what it means instead.
    check_tar(open()?).map_err(|e| ImportError::NotTar {
        name: name.clone(),
        truncated: e.kind() == std::io::ErrorKind::UnexpectedEof,
    })?;
    let layer = store.import_layer(&mut open()?)?;
    drop(spool);
    let mut cfg = serde_json::to_value(config)?;
    if let Some(o) = cfg.as_object_mut() {
        o.remove("rootfs");
        o.remove("history");
    }
    Ok(store_image(
        store,
        cfg,
        &[HistoryEntry {
            created_by: "kiln import".into(),
            comment: Some("Imported from tarball".into()),
            empty_layer: false,
        }],
        &[layer],
        created,
    )?)
}

/// Reads `f` as a tar to its end: every header and every entry's data must be there.
fn check_tar(f: std::fs::File) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    for e in ar.entries()? {
        let mut e = e?;
        e.path()?;
        std::io::copy(&mut e, &mut std::io::sink())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{base_config, import, ImportError, Input};
    use kiln_cache::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("root")).unwrap();
        (dir, s)
    }

    fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    fn blobs(s: &Store) -> usize {
        s.list_blobs().unwrap().len()
    }

    #[test]
    fn a_tar_is_imported_as_a_one_layer_image() {
        let (_d, s) = store();
        let tar = tar_of("hello", b"hi\n");
        let img = import(
            &s,
            Input::Stream(&mut tar.as_slice()),
            &base_config().unwrap(),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let layers = kiln_cache::image::layers(&s, &img.manifest_digest).unwrap();
        assert_eq!(layers.len(), 1);
        let cfg = kiln_cache::image::config(&s, &img.manifest_digest).unwrap();
        let history = cfg.history.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].created_by().as_deref(), Some("kiln import"));
        assert_eq!(cfg.created.as_deref(), Some("2026-01-01T00:00:00Z"));
        // The same tar from a file is the same image.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rootfs.tar");
        std::fs::write(&p, &tar).unwrap();
        let again = import(
            &s,
            Input::File(&p),
            &base_config().unwrap(),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(again.config_digest, img.config_digest);
    }

    #[test]
    fn a_non_tar_is_refused_and_nothing_is_stored() {
        let (_d, s) = store();
        let before = blobs(&s);
        let cfg = base_config().unwrap();
        // A tar cut short, from a stream.
        let mut tar = tar_of("hello", &[7; 4096]);
        tar.truncate(700);
        let e = import(&s, Input::Stream(&mut tar.as_slice()), &cfg, "x").unwrap_err();
        assert!(matches!(e, ImportError::NotTar { .. }), "{e:?}");
        assert!(e.to_string().starts_with("-: not a tar archive"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("junk");
        std::fs::write(&p, vec![b'x'; 1024]).unwrap();
        let e = import(&s, Input::File(&p), &cfg, "x").unwrap_err();
        assert_eq!(e.to_string(), format!("{}: not a tar archive", p.display()));
        let e = ImportError::NotTar {
            name: "-".into(),
            truncated: true,
        };
        assert_eq!(
            e.to_string(),
            "-: not a tar archive (it ends inside an entry)"
        );
        let e = import(&s, Input::File(&d.path().join("missing")), &cfg, "x").unwrap_err();
        assert!(matches!(e, ImportError::Io { .. }), "{e:?}");
        assert_eq!(blobs(&s), before, "nothing stored");
        assert!(s.list_images().unwrap().is_empty());
    }
}
