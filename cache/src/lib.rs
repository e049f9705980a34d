//! kiln's local store under `--root`: content-addressed blobs, extracted layer snapshots,
//! layer diff (overlay upper dir → OCI layer) and apply (OCI layer → snapshot), the
//! metadata database (image tags, build cache index), and module [`image`], the one reader
//! of the images stored here.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures):
//! see the `Store` methods below.
//!
//! # On-disk layout (version 1)
//!
//! ```text
//! <root>/
//!   VERSION                 "1": the layout version; `open` refuses any other
//!   blobs/sha256/<hex>      content store: one file per blob, named by its sha256
//!   ingest/<random>         blobs being written (fsync'd, digest checked, then renamed
//!                           into blobs/; a dropped writer removes its file)
//!   snapshots/<diffid-hex>/ layers as overlay lower dirs (OCI whiteouts turned into
//!                           overlay whiteouts): extracted from a blob, or a build step's
//!                           committed upper dir (then the only copy of that layer)
//!   snapshots/.tmp-<rand>/  a snapshot being extracted (renamed into place when done,
//!                           so an existing final dir is always complete)
//!   tmp/                    scratch dirs (`Store::temp_dir`): overlay upper/work dirs
//!   meta.db (+ -wal, -shm)  SQLite metadata: tables `images(name, manifest_digest,
//!                           created)`, `cache(key, value, last_used)`,
//!                           `layers(diff_id, digest, size, media_type)`, `stat_cache`
//!                           (context files' stat identity → content hash),
//!                           `context_listings` (per-file hashes behind recent context
//!                           checksums) and `key_inputs` (what each build step's cache key
//!                           was made of, to explain misses)
//!   gc.lock                 advisory lock: builds hold it shared, prune exclusive
//! ```
//!
//! Temp names carry the pid of their writer (`ingest/p<pid>-<hex>`,
//! `snapshots/.tmp-p<pid>-…`, `tmp/p<pid>-…`), so the next process removes what a killed
//! one left at once, not only after an hour.
//!
//! Everything that lands under a final name gets there by an atomic `rename` from a temp
//! name on the same filesystem, so a crash leaves at worst a stale temp file. `open` removes
//! stale `ingest/*` and `snapshots/.tmp-*` entries older than an hour (younger ones may
//! belong to another kiln process working on the same root right now).
//!
//! # Layers
//!
//! A build step's layer is committed lazily ([`Store::commit_upper`]): the upper dir's tar
//! is hashed for its diff id and the dir itself becomes the snapshot; no blob is written.
//! Such a layer is described as an uncompressed tar whose digest is its diff id, and is
//! compressed only when an exporter or a push asks, once per compression type
//! ([`Store::compressed_layer`], module `compress`). Pulled and imported layers keep the
//! blobs they came with.
//!
//! The tar writer ([`Store::diff_to_layer`] eagerly, or over a snapshot later) walks an overlayfs upper dir in byte-sorted order (directories
//! before their contents, names relative without `./`) and streams a GNU tar (GNU long-name
//! records for long paths, PAX `SCHILY.xattr.*` records for xattrs) through gzip into a blob;
//! the same upper dir always gives the same layer. The overlay must be mounted with the
//! default `redirect_dir=off` and `metacopy=off`: a redirected directory or a metadata-only
//! copy-up has its data in a lower layer, and diffing one fails instead of producing a
//! wrong layer. [`Store::snapshot`] does the reverse, turning `.wh.NAME` into a 0:0 char
//! device and `.wh..wh..opq` into `trusted.overlay.opaque=y`.
//!
//! # Why SQLite
//!
//! Several kiln processes may use one root at the same time (two builds in parallel, a
//! build next to `kiln images`). SQLite in WAL mode with a busy timeout lets them all read
//! and write the same database file safely, with readers never blocked by a writer. redb
//! (the obvious pure-Rust alternative) takes an exclusive file lock per process, so a second
//! kiln would fail to open the store while the first runs.
#![deny(missing_docs)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod apply;
mod compress;
mod db;
mod diff;
mod gc;
mod gzip;
pub mod image;
#[cfg(test)]
mod tests;

use sha2::{Digest as _, Sha256};

pub use apply::{apply_merged, apply_snapshot};
pub use compress::Compression;
pub use gc::{
    disk_usage, CacheRecord, GcLock, GcRoots, LiveSet, PrunePolicy, PruneReport, StatEntry,
    StoreUsage,
};

/// The layout version written to `<root>/VERSION`.
pub const LAYOUT_VERSION: &str = "1";

/// The diff id of a tar without entries (two zero blocks): docker's empty layer.
pub const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Temp entries (ingest files, half-extracted snapshots) older than this are removed by
/// [`Store::open`].
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_hours(1);

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A blob is not in the store.
    #[error("blob {0} is not in the store")]
    NotFound(String),
    /// What was written does not have the digest it must have.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(String),
    /// A layer archive is malformed.
    #[error("layer {digest}: {message}")]
    BadLayer {
        /// The layer blob.
        digest: String,
        /// What is wrong.
        message: String,
    },
}

/// The writer a layer's uncompressed tar goes into: hashed (diff id), then gzip, then the blob.
type GzTarWriter = kiln_oci::Sha256Writer<gzip::AdaptiveGzip<BlobWriter>>;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an `io::Error` to [`Error::Io`] for `path`.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// A named image in the local store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// The full normalised name, e.g. `docker.io/library/hello:latest`.
    pub name: String,
    /// `sha256:…` of the manifest blob (in the content store).
    pub manifest_digest: String,
    /// Unix seconds when the name was set.
    pub created: i64,
}

/// The store. Cheap to share (`&Store` is `Sync`); several processes may open one root.
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
    snapshots: PathBuf,
    tmp: PathBuf,
    /// The metadata database; `None` until first used after [`Store::open_deferred`].
    db: Mutex<Option<rusqlite::Connection>>,
}

/// A blob being written: hashes (sha256) as bytes pass, into a temp file under the store.
/// Dropping it without [`BlobWriter::commit`] removes the temp file.
pub struct BlobWriter {
    /// `None` once committed (or consumed by a failed commit).
    file: Option<std::io::BufWriter<std::fs::File>>,
    temp: PathBuf,
    blobs: PathBuf,
    hasher: Sha256,
    count: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer already finished"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl BlobWriter {
    /// Finishes the blob: fsync, check `expected` digest when given, rename into place
    /// (atomic; an existing identical blob is fine). Returns (`sha256:…`, size).
    pub fn commit(mut self, expected: Option<&str>) -> Result<(String, u64)> {
        let Some(buf) = self.file.take() else {
            return Err(Error::Io {
                path: self.temp.clone(),
                source: std::io::Error::other("blob writer already finished"),
            });
        };
        // From here on the temp file is ours to remove on every error path.
        let temp = self.temp.clone();
        let fail = |e: Error| {
            let _ = std::fs::remove_file(&temp);
            e
        };
        let file = buf
            .into_inner()
            .map_err(|e| fail(io_err(&temp)(e.into_error())))?;
        file.sync_all().map_err(|e| fail(io_err(&temp)(e)))?;
        drop(file);
        let hex_digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let digest = format!("sha256:{hex_digest}");
        if let Some(expected) = expected {
            if expected != digest {
                return Err(fail(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest,
                }));
            }
        }
        let dest = self.blobs.join("sha256").join(&hex_digest);
        if dest.exists() {
            // Same content already there: keep the existing inode (readers may have it open).
            let _ = std::fs::remove_file(&temp);
        } else {
            std::fs::rename(&temp, &dest).map_err(|e| fail(io_err(&dest)(e)))?;
            fsync_dir(&self.blobs.join("sha256"))?;
        }
        Ok((digest, self.count))
    }
}

/// fsyncs a directory so that a rename into it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The hex part of a `sha256:<64 hex>` digest, or `None` when it is not one.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// A random token for temp names, carrying this process's id (`p<pid>-<hex>`), so that a
/// later process can remove what a killed one left behind without waiting for it to age.
fn random_name() -> String {
    format!("p{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// Unix seconds now.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating when missing) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        Self::open_with(root, true)
    }

    /// Opens the store at `root` as [`Store::open`] does, except that the metadata database
    /// is connected to when first used (an error then is that use's error). For callers
    /// that may not touch it at all (`kiln exec`): opening SQLite in WAL mode and reading
    /// its schema is most of the cost of opening a store.
    pub fn open_deferred(root: &Path) -> Result<Store> {
        Self::open_with(root, false)
    }

    fn open_with(root: &Path, connect: bool) -> Result<Store> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        check_version(root)?;
        let blobs = root.join("blobs");
        let ingest = root.join("ingest");
        let snapshots = root.join("snapshots");
        let tmp = root.join("tmp");
        for d in [&blobs.join("sha256"), &ingest, &snapshots, &tmp] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let db = if connect {
            Some(db::open(&root.join("meta.db"))?)
        } else {
            None
        };
        let store = Store {
            root: root.to_path_buf(),
            blobs,
            ingest,
            snapshots,
            tmp,
            db: Mutex::new(db),
        };
        store.clean_temp();
        Ok(store)
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// A scratch directory under the root (same filesystem, so renames are atomic and overlay
    /// upper/work dirs can live there); removed on drop.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("p{}-{prefix}", std::process::id()))
            .tempdir_in(&self.tmp)
            .map_err(io_err(&self.tmp))
    }

    // ---- content store ----
    /// Whether a blob is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        sha256_hex(digest).is_some() && self.blob_path(digest).is_file()
    }
    /// Path of a present blob (for streaming reads).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        match sha256_hex(digest) {
            Some(hex) => self.blobs.join("sha256").join(hex),
            // Not a digest we store: a path that never exists.
            None => self.blobs.join("invalid-digest"),
        }
    }
    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<std::fs::File> {
        if sha256_hex(digest).is_none() {
            return Err(Error::NotFound(digest.to_string()));
        }
        let path = self.blob_path(digest);
        std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(digest.to_string())
            } else {
                io_err(&path)(e)
            }
        })
    }
    /// Reads a small blob (manifest, config) whole.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut f = self.open_blob(digest)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(io_err(self.blob_path(digest)))?;
        Ok(v)
    }
    /// Size of a present blob.
    pub fn blob_size(&self, digest: &str) -> Result<u64> {
        let f = self.open_blob(digest)?;
        Ok(f.metadata().map_err(io_err(self.blob_path(digest)))?.len())
    }
    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let temp = self.ingest.join(random_name());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err(&temp))?;
        Ok(BlobWriter {
            file: Some(std::io::BufWriter::with_capacity(256 * 1024, file)),
            temp,
            blobs: self.blobs.clone(),
            hasher: Sha256::new(),
            count: 0,
        })
    }
    /// Writes a small blob whole. Returns (`sha256:…`, size).
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(String, u64)> {
        let digest = kiln_oci::sha256_hex_digest(bytes);
        if self.has_blob(&digest) {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.temp))?;
        w.commit(Some(&digest))
    }

    /// Moves `file` (a spooled download under this store's root, e.g. in a
    /// [`Store::temp_dir`]) into the content store as the blob `digest`, after hashing it
    /// to check that it is that blob: a rename, so a large blob is not copied. When the blob
    /// is already present, `file` is removed and the present one kept. Returns its size.
    pub fn commit_file(&self, file: &Path, digest: &str) -> Result<u64> {
        let Some(hex) = sha256_hex(digest) else {
            return Err(Error::NotFound(digest.to_string()));
        };
        let mut f = std::fs::File::open(file).map_err(io_err(file))?;
        let mut h = kiln_oci::Sha256Writer::new(std::io::sink());
        std::io::copy(&mut f, &mut h).map_err(io_err(file))?;
        let (_, actual, size) = h.finish();
        if actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let dest = self.blobs.join("sha256").join(hex);
        if dest.exists() {
            let _ = std::fs::remove_file(file);
            return Ok(size);
        }
        f.sync_all().map_err(io_err(file))?;
        std::fs::rename(file, &dest).map_err(io_err(&dest))?;
        fsync_dir(&self.blobs.join("sha256"))?;
        Ok(size)
    }

    // ---- layers ----
    /// Turns an overlayfs upper dir into a gzip OCI layer in the content store, streaming
    /// (tar → sha256 for diff_id → gzip → sha256 for the blob digest → temp file). Overlay
    /// whiteouts (0:0 char devices) become `.wh.NAME`; opaque dirs (`trusted.overlay.opaque=y`)
    /// get `.wh..wh..opq`. Returns `None` when the upper dir is empty.
    pub fn diff_to_layer(&self, upper: &Path) -> Result<Option<kiln_oci::Layer>> {
        let mut entries = std::fs::read_dir(upper).map_err(io_err(upper))?;
        if entries.next().is_none() {
            return Ok(None);
        }
        let w = self.blob_writer()?;
        let layer = self.gzip_layer(w, |tar_w, _| diff::write_upper(upper, tar_w))?;
        Ok(Some(layer))
    }
    /// [`Store::diff_to_layer`] without the paths `exclude` (absolute paths in the
    /// container, e.g. its mount points) and what is below them: `kiln commit`. `None` when
    /// nothing is left.
    pub fn diff_to_layer_excluding(
        &self,
        upper: &Path,
        exclude: &[PathBuf],
    ) -> Result<Option<kiln_oci::Layer>> {
        let rel: Vec<PathBuf> = exclude
            .iter()
            .map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf())
            .collect();
        let skip = |p: &Path| rel.iter().any(|e| p == e);
        let layer = match self.diff_to_layer_with(upper, &skip)? {
            Some(l) if l.diff_id != EMPTY_TAR_DIFF_ID => l,
            _ => return Ok(None),
        };
        Ok(Some(layer))
    }

    fn diff_to_layer_with(
        &self,
        upper: &Path,
        skip: &(dyn Fn(&Path) -> bool + Sync),
    ) -> Result<Option<kiln_oci::Layer>> {
        let mut entries = std::fs::read_dir(upper).map_err(io_err(upper))?;
        if entries.next().is_none() {
            return Ok(None);
        }
        let w = self.blob_writer()?;
        let layer = self.gzip_layer(w, |tar_w, _| {
            diff::write_upper_excluding(upper, tar_w, skip)
        })?;
        Ok(Some(layer))
    }

    /// Stores an uncompressed tar stream (e.g. a rootfs for `kiln import`) as a gzip layer.
    pub fn import_layer(&self, tar: &mut dyn Read) -> Result<kiln_oci::Layer> {
        let w = self.blob_writer()?;
        self.gzip_layer(w, |mut tar_w, temp| {
            std::io::copy(tar, &mut tar_w).map_err(io_err(temp))?;
            Ok(tar_w)
        })
    }

    /// Streams a tar through sha256 (the diff id) and gzip into `w`, commits the blob and
    /// records the layer. `fill` writes the uncompressed tar.
    fn gzip_layer(
        &self,
        w: BlobWriter,
        fill: impl FnOnce(GzTarWriter, &Path) -> Result<GzTarWriter>,
    ) -> Result<kiln_oci::Layer> {
        let temp = w.temp.clone();
        let gz =
            gzip::AdaptiveGzip::new(w, flate2::Compression::default()).map_err(io_err(&temp))?;
        let tar_w = fill(kiln_oci::Sha256Writer::new(gz), &temp)?;
        let (gz, diff_id, _) = tar_w.finish();
        let w = gz.finish().map_err(io_err(&temp))?;
        let (digest, size) = w.commit(None)?;
        let layer = kiln_oci::Layer {
            diff_id,
            digest,
            size,
            media_type: kiln_oci::media::OCI_LAYER_GZIP.to_string(),
        };
        self.record_layer(&layer)?;
        Ok(layer)
    }
    /// The extracted snapshot of a layer, usable as an overlay lower dir (OCI whiteouts
    /// turned into overlay whiteouts). Extracted on first use from the layer's blob
    /// (gzip, zstd or plain), into a temp dir then renamed, so it is never half there.
    pub fn snapshot(&self, layer: &kiln_oci::Layer) -> Result<PathBuf> {
        let Some(diff_hex) = sha256_hex(&layer.diff_id) else {
            return Err(Error::BadLayer {
                digest: layer.digest.clone(),
                message: format!("unsupported diff_id {:?}", layer.diff_id),
            });
        };
        let dest = self.snapshots.join(diff_hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        // The layer's own blob, or any blob recorded for its diff id (a build step's layer
        // whose snapshot is gone but which was compressed, or fetched from a cache).
        let layer = &self
            .blob_for(layer)
            .ok_or_else(|| Error::NotFound(layer.digest.clone()))?;
        let blob = self.open_blob(&layer.digest)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-p{}-", std::process::id()))
            .tempdir_in(&self.snapshots)
            .map_err(io_err(&self.snapshots))?;
        apply::extract(blob, tmp.path(), &layer.digest, &layer.diff_id)?;
        syncfs(tmp.path())?;
        match std::fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                let _ = tmp.keep();
                fsync_dir(&self.snapshots)?;
                Ok(dest)
            }
            // Someone else (another thread or process) finished the same snapshot first;
            // `tmp` is removed on drop.
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(io_err(&dest)(e)),
        }
    }
    /// Commits an overlayfs upper dir as a build step's layer, without compressing it: the
    /// upper dir's tar is hashed (its diff id; the tar itself is not stored) and the dir
    /// becomes the layer's snapshot, in overlay form already (whiteouts as 0:0 devices,
    /// opaque xattrs), so the next step uses it as a lower dir as it is. The layer is
    /// described as an uncompressed tar whose digest is its diff id; exporters and pushes
    /// get a blob with [`Store::compressed_layer`]. The dir is synced before it is renamed
    /// into place, as an extraction is. Returns `None` when the upper dir is empty.
    pub fn commit_upper(&self, upper: &Path) -> Result<Option<kiln_oci::Layer>> {
        let mut entries = std::fs::read_dir(upper).map_err(io_err(upper))?;
        if entries.next().is_none() {
            return Ok(None);
        }
        let hashed = diff::write_upper(upper, kiln_oci::Sha256Writer::new(std::io::sink()))?;
        let (_, diff_id, size) = hashed.finish();
        let layer = kiln_oci::Layer {
            digest: diff_id.clone(),
            diff_id,
            size,
            media_type: kiln_oci::media::OCI_LAYER_TAR.to_string(),
        };
        let dest = self.snapshot_dir(&layer).ok_or_else(|| Error::BadLayer {
            digest: layer.digest.clone(),
            message: "not a sha256 diff id".into(),
        })?;
        if !dest.is_dir() {
            syncfs(upper)?;
            match std::fs::rename(upper, &dest) {
                Ok(()) => fsync_dir(&self.snapshots)?,
                // Another build committed the same content first.
                Err(_) if dest.is_dir() => {}
                Err(e) => return Err(io_err(&dest)(e)),
            }
        }
        Ok(Some(layer))
    }
    /// A stored layer blob carrying `diff_id` (recorded by [`Store::diff_to_layer`] or
    /// [`Store::import_layer`], or [`Store::record_layer`]) whose blob is present.
    pub fn find_layer(&self, diff_id: &str) -> Result<Option<kiln_oci::Layer>> {
        let layers = self.with_db(|c| db::layers_for(c, diff_id))?;
        Ok(layers.into_iter().find(|l| self.has_blob(&l.digest)))
    }
    /// Records that `layer.digest` is a blob carrying `layer.diff_id` (e.g. after a pull).
    pub fn record_layer(&self, layer: &kiln_oci::Layer) -> Result<()> {
        self.with_db(|c| db::record_layer(c, layer))
    }

    // ---- metadata ----
    /// Sets `name` to point at `manifest_digest`. The image the name pointed at before, when
    /// no other name reaches it, is kept as dangling (`<none>:<none>`, see
    /// [`image::UNTAGGED`]) until an image prune, as docker keeps a retagged image.
    pub fn set_image(&self, name: &str, manifest_digest: &str) -> Result<()> {
        let dangling = self
            .get_image(name)?
            .filter(|o| o.manifest_digest != manifest_digest && !image::is_untagged(name))
            .map(|o| {
                let id = image::references(self, &o.manifest_digest)
                    .map(|r| r.config)
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| o.manifest_digest.clone());
                (o.manifest_digest, format!("{}{id}", image::UNTAGGED))
            });
        self.with_db(|c| db::set_image(c, name, manifest_digest, dangling.as_ref()))
    }
    /// Looks up a name.
    pub fn get_image(&self, name: &str) -> Result<Option<ImageRecord>> {
        self.with_db(|c| db::get_image(c, name))
    }
    /// All named images, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        self.with_db(db::list_images)
    }
    /// Removes a name; true when it existed.
    pub fn remove_image(&self, name: &str) -> Result<bool> {
        self.with_db(|c| db::remove_image(c, name))
    }
    /// Build cache: the result recorded under `key`.
    pub fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with_db(|c| db::cache_get(c, key))
    }
    /// Build cache: records `value` under `key` (replacing).
    pub fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.with_db(|c| db::cache_put(c, key, value))
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut c = self
            .db
            .lock()
            .map_err(|_| Error::Db("connection mutex poisoned".into()))?;
        let c = match &mut *c {
            Some(c) => c,
            None => c.insert(db::open(&self.root.join("meta.db"))?),
        };
        f(c).map_err(|e| Error::Db(e.to_string()))
    }
}

/// Checks (or writes, for a new root) `<root>/VERSION`.
fn check_version(root: &Path) -> Result<()> {
    let path = root.join("VERSION");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim() == LAYOUT_VERSION => Ok(()),
        Ok(s) => Err(Error::Io {
            path,
            source: std::io::Error::other(format!(
                "store layout version {:?} is not supported (this kiln uses {LAYOUT_VERSION})",
                s.trim()
            )),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Write under a temp name then rename, so a concurrent opener never reads a
            // half-written file.
            let temp = root.join(format!(".VERSION-{}", random_name()));
            std::fs::write(&temp, format!("{LAYOUT_VERSION}\n")).map_err(io_err(&temp))?;
            std::fs::rename(&temp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                io_err(&path)(e)
            })
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Removes entries of `dir` whose name passes `pick` and whose ctime (which `utimensat`
/// cannot set back) is older than [`STALE_AFTER`], or whose name says they belong to a
/// process that is gone (`p<pid>-…`). Errors are ignored: another process may be cleaning
/// the same entries.
fn clean_stale(dir: &Path, pick: impl Fn(&str) -> bool) {
    clean_before(dir, pick, now_secs() - STALE_AFTER.as_secs() as i64);
}

/// Removes entries of `dir` whose name passes `pick` and that last changed before `cutoff`
/// (unix seconds), or, for names carrying their writer's pid, whose writer is gone.
fn clean_before(dir: &Path, pick: impl Fn(&str) -> bool, cutoff: i64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        if !pick(&name.to_string_lossy()) {
            continue;
        }
        let Ok(md) = ent.path().symlink_metadata() else {
            continue;
        };
        // An entry naming its writer is removed exactly when the writer is gone (a RUN may
        // keep its scratch dir for hours); others when they are old.
        let stale = match gc::owner_pid(&name.to_string_lossy()) {
            Some(_) => gc::owner_dead(&name.to_string_lossy()),
            None => md.ctime().max(md.mtime()) < cutoff,
        };
        if !stale {
            continue;
        }
        let _ = if md.is_dir() {
            std::fs::remove_dir_all(ent.path())
        } else {
            std::fs::remove_file(ent.path())
        };
    }
}

/// Flushes the filesystem holding `path` (cheaper than fsyncing every extracted file).
fn syncfs(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(path).map_err(io_err(path))?;
    // SAFETY: `d` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io_err(path)(std::io::Error::last_os_error()));
    }
    Ok(())
}
