//! OCI image layouts (tar or directory) and docker archives.
//!
//! A docker archive here is an OCI layout that also carries Docker's `manifest.json`, the
//! shape `docker save` writes since Docker 25: both `docker load` and OCI tools read it.

use crate::{io_err, Result, StoredImage};
use kiln_cache::Store;
use kiln_oci::image::{descriptor, image_index, to_json, DockerArchiveEntry};
use kiln_oci::media;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Format of [`write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image layout.
    Oci,
    /// OCI image layout plus Docker's `manifest.json`.
    Docker,
}

/// Writes `image` to `dest` as a tar (or a directory when `as_dir`), with the layers that
/// have no blob yet compressed as `compress` says ([`crate::distributable`]). `name` (a full
/// reference) is recorded as the ref name / repo tag when given.
pub fn write(
    store: &Store,
    image: &StoredImage,
    name: Option<&str>,
    format: Format,
    dest: &Path,
    as_dir: bool,
    compress: crate::Compress,
) -> Result<()> {
    let image = &crate::distributable(store, image, compress)?;
    let blobs = kiln_cache::image::blobs(store, &image.manifest_digest)?;
    let mut desc = descriptor(
        media::OCI_MANIFEST,
        &image.manifest_digest,
        image.manifest_size,
    )?;
    if let Some(n) = name {
        let tag = n
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'))
            .unwrap_or("latest");
        desc.set_annotations(Some(HashMap::from([
            ("io.containerd.image.name".to_string(), n.to_string()),
            (
                "org.opencontainers.image.ref.name".to_string(),
                tag.to_string(),
            ),
        ])));
    }
    let index = image_index(vec![desc])?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), to_json(&index)?),
    ];
    if format == Format::Docker {
        let entry = DockerArchiveEntry {
            config: blob_path(&blobs[1].0),
            repo_tags: Some(name.map(|n| vec![n.to_string()]).unwrap_or_default()),
            layers: Some(blobs[2..].iter().map(|b| blob_path(&b.0)).collect()),
        };
        files.push(("manifest.json".into(), to_json(&[entry])?));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    if as_dir {
        let tmp = tempfile::Builder::new()
            .prefix(".kiln-oci-")
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        std::fs::create_dir_all(tmp.path().join("blobs/sha256")).map_err(io_err(tmp.path()))?;
        for (d, _, _) in &blobs {
            let to = tmp.path().join(blob_path(d));
            if !to.exists() {
                std::fs::copy(store.blob_path(d), &to).map_err(io_err(&to))?;
            }
        }
        for (n, bytes) in &files {
            std::fs::write(tmp.path().join(n), bytes).map_err(io_err(dest))?;
        }
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(io_err(dest))?;
        }
        let p = tmp.keep();
        std::fs::rename(&p, dest).map_err(io_err(dest))?;
        return Ok(());
    }
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-oci-")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
        let mut seen = std::collections::BTreeSet::new();
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            tar.append_data(&mut h, dir, std::io::empty())
                .map_err(io_err(dest))?;
        }
        for (d, _, _) in &blobs {
            if !seen.insert(d.clone()) {
                continue;
            }
            let mut f = store.open_blob(d)?;
            let len = f.metadata().map_err(io_err(dest))?.len();
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, blob_path(d), &mut f)
                .map_err(io_err(dest))?;
        }
        for (n, bytes) in &files {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, n, bytes.as_slice())
                .map_err(io_err(dest))?;
        }
        let mut w = tar.into_inner().map_err(io_err(dest))?;
        w.flush().map_err(io_err(dest))?;
    }
    tmp.as_file().sync_all().map_err(io_err(dest))?;
    tmp.persist(dest).map_err(|e| crate::Error::Io {
        path: dest.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}
