//! Lazy layer compression.
//!
//! A build step's layer is committed as its snapshot only ([`Store::commit_upper`]): the
//! layer is described as an uncompressed tar (`digest == diff_id`, media type
//! `…layer.v1.tar`) whose bytes are not stored anywhere, because the snapshot regenerates
//! them exactly (the tar writer is deterministic). Nothing is compressed while building.
//! When an exporter or a push needs a blob, [`Store::compressed_layer`] streams the
//! snapshot's tar through the requested compression into the content store once, checks
//! that it still hashes to the diff id, and records the blob in the `layers` table, so the
//! next export or push of any image holding that layer reuses it.

use crate::{diff, io_err, sha256_hex, Error, Result, Store};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    Uncompressed,
    /// gzip (the default for registries and OCI layouts: every client reads it).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer blob compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Uncompressed => kiln_oci::media::OCI_LAYER_TAR,
            Compression::Gzip => kiln_oci::media::OCI_LAYER_GZIP,
            Compression::Zstd => kiln_oci::media::OCI_LAYER_ZSTD,
        }
    }
    /// The compression a layer media type (OCI or Docker) says, when it is a layer type.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("tar+gzip") || media_type.ends_with("tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("tar+zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::Uncompressed)
        } else {
            None
        }
    }
    /// Parses BuildKit's `compression=` values: `gzip`, `zstd`, `uncompressed`.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "uncompressed" => Some(Compression::Uncompressed),
            _ => None,
        }
    }
}

/// Whether `layer` is held only as its snapshot (committed by a build step, never
/// compressed): an uncompressed layer whose blob digest is its diff id.
fn snapshot_only(layer: &kiln_oci::Layer) -> bool {
    layer.digest == layer.diff_id && layer.media_type == kiln_oci::media::OCI_LAYER_TAR
}

/// The tar of a snapshot, written by a thread into a pipe; an error of the writer
/// surfaces as a read error at the end of the stream instead of a silently short tar.
struct SnapshotTar {
    pipe: io::PipeReader,
    writer: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Read for SnapshotTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(w) = self.writer.take() {
                match w.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(io::Error::other(e.to_string())),
                    Err(_) => return Err(io::Error::other("snapshot tar writer panicked")),
                }
            }
        }
        Ok(n)
    }
}

impl Store {
    /// Where a layer's snapshot lives (whether or not it exists yet).
    pub(crate) fn snapshot_dir(&self, layer: &kiln_oci::Layer) -> Option<PathBuf> {
        sha256_hex(&layer.diff_id).map(|hex| self.snapshots.join(hex))
    }

    /// A present blob carrying `layer`'s diff id: the layer's own blob, or another one
    /// recorded for the same diff id (a compressed variant, or a blob fetched from an
    /// imported cache).
    pub(crate) fn blob_for(&self, layer: &kiln_oci::Layer) -> Option<kiln_oci::Layer> {
        if self.has_blob(&layer.digest) {
            return Some(layer.clone());
        }
        let known = self
            .with_db(|c| crate::db::layers_for(c, &layer.diff_id))
            .ok()?;
        known.into_iter().find(|l| self.has_blob(&l.digest))
    }

    /// Whether the store can produce `layer`: its snapshot or a blob carrying its diff id
    /// is present.
    pub fn layer_available(&self, layer: &kiln_oci::Layer) -> bool {
        self.snapshot_dir(layer).is_some_and(|d| d.is_dir()) || self.blob_for(layer).is_some()
    }

    /// The uncompressed tar of a layer, streamed: from a blob carrying it (decompressed)
    /// when there is one, else regenerated from its snapshot (a build step's layer).
    pub fn layer_tar(&self, layer: &kiln_oci::Layer) -> Result<Box<dyn Read + Send>> {
        // An uncompressed blob of the layer itself (a loaded `docker save` layer, or one
        // exported with compression=uncompressed) is its exact tar; a snapshot regenerates
        // the tar kiln writes, which matches the diff id only for build-step layers.
        let snapshot = self
            .snapshot_dir(layer)
            .filter(|d| snapshot_only(layer) && !self.has_blob(&layer.digest) && d.is_dir());
        let Some(dir) = snapshot else {
            let blob = self
                .blob_for(layer)
                .ok_or_else(|| Error::NotFound(layer.digest.clone()))?;
            let f = self.open_blob(&blob.digest)?;
            let path = self.blob_path(&blob.digest);
            return crate::apply::decompress(f).map_err(io_err(path));
        };
        let (reader, writer) = io::pipe().map_err(io_err(&dir))?;
        let handle = std::thread::spawn(move || {
            let w = io::BufWriter::with_capacity(256 * 1024, writer);
            let mut w = diff::write_upper(&dir, w)?;
            // A reader that stopped early is not our error.
            let _ = w.flush();
            Ok(())
        });
        Ok(Box::new(SnapshotTar {
            pipe: reader,
            writer: Some(handle),
        }))
    }

    /// A blob of `layer` compressed as `compression`: the layer itself when it already is
    /// one, a blob made earlier for the same diff id, or a new blob made now by streaming
    /// the layer's tar through the compressor into the content store (checked against the
    /// diff id, and recorded for next time).
    pub fn compressed_layer(
        &self,
        layer: &kiln_oci::Layer,
        compression: Compression,
    ) -> Result<kiln_oci::Layer> {
        self.compressed_layer_at(layer, compression, None)
    }

    /// [`Store::compressed_layer`] at a compression level (gzip 0–9, zstd 1–22; the
    /// default when `None`: gzip 6, zstd 3). The level applies when a blob is made: an
    /// existing blob of the same compression is reused whatever its level (as BuildKit
    /// does without `force-compression`).
    pub fn compressed_layer_at(
        &self,
        layer: &kiln_oci::Layer,
        compression: Compression,
        level: Option<i32>,
    ) -> Result<kiln_oci::Layer> {
        let wanted = |l: &kiln_oci::Layer| {
            Compression::of_media_type(&l.media_type) == Some(compression)
                && self.has_blob(&l.digest)
        };
        if wanted(layer) {
            return Ok(layer.clone());
        }
        let known = self.with_db(|c| crate::db::layers_for(c, &layer.diff_id))?;
        if let Some(l) = known.into_iter().find(|l| wanted(l)) {
            return Ok(l);
        }
        let mut tar = self.layer_tar(layer)?;
        let w = self.blob_writer()?;
        let temp = w.temp.clone();
        let copy =
            |r: &mut dyn Read, w: &mut dyn Write| io::copy(r, w).map(|_| ()).map_err(io_err(&temp));
        let (w, diff_id) = match compression {
            Compression::Uncompressed => {
                let mut h = kiln_oci::Sha256Writer::new(w);
                copy(&mut tar, &mut h)?;
                let (w, d, _) = h.finish();
                (w, d)
            }
            Compression::Gzip => {
                let level = level.map_or(flate2::Compression::default(), |l| {
                    flate2::Compression::new(l.clamp(0, 9) as u32)
                });
                let gz = crate::gzip::AdaptiveGzip::new(w, level).map_err(io_err(&temp))?;
                let mut h = kiln_oci::Sha256Writer::new(gz);
                copy(&mut tar, &mut h)?;
                let (gz, d, _) = h.finish();
                (gz.finish().map_err(io_err(&temp))?, d)
            }
            Compression::Zstd => {
                let z = zstd::Encoder::new(w, level.unwrap_or(3).clamp(1, 22))
                    .map_err(io_err(&temp))?;
                let mut h = kiln_oci::Sha256Writer::new(z);
                copy(&mut tar, &mut h)?;
                let (z, d, _) = h.finish();
                (z.finish().map_err(io_err(&temp))?, d)
            }
        };
        if diff_id != layer.diff_id {
            return Err(Error::BadLayer {
                digest: layer.digest.clone(),
                message: format!(
                    "its content changed in the store: diff id {} expected, {diff_id} found",
                    layer.diff_id
                ),
            });
        }
        let (digest, size) = w.commit(None)?;
        let out = kiln_oci::Layer {
            diff_id,
            digest,
            size,
            media_type: compression.media_type().to_string(),
        };
        self.record_layer(&out)?;
        Ok(out)
    }
}
