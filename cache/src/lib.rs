//! kiln's local store under `--root`: content-addressed blobs, extracted layer snapshots,
//! layer diff (overlay upper dir → OCI layer) and apply (OCI layer → snapshot), and the
//! metadata database (image tags, build cache index).
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures):
//! see the `Store` methods below.
#![deny(missing_docs)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    _root: PathBuf,
}

/// A blob being written: hashes (sha256) as bytes pass, into a temp file under the store.
/// Dropping it without [`BlobWriter::commit`] removes the temp file.
pub struct BlobWriter {
    _p: (),
}

impl Write for BlobWriter {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        todo!()
    }
    fn flush(&mut self) -> std::io::Result<()> {
        todo!()
    }
}

impl BlobWriter {
    /// Finishes the blob: fsync, check `expected` digest when given, rename into place
    /// (atomic; an existing identical blob is fine). Returns (`sha256:…`, size).
    pub fn commit(self, _expected: Option<&str>) -> Result<(String, u64)> {
        todo!()
    }
}

impl Store {
    /// Opens (creating when missing) the store at `root`.
    pub fn open(_root: &Path) -> Result<Store> {
        todo!()
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        todo!()
    }
    /// A scratch directory under the root (same filesystem, so renames are atomic and overlay
    /// upper/work dirs can live there); removed on drop.
    pub fn temp_dir(&self, _prefix: &str) -> Result<tempfile::TempDir> {
        todo!()
    }

    // ---- content store ----
    /// Whether a blob is present.
    pub fn has_blob(&self, _digest: &str) -> bool {
        todo!()
    }
    /// Path of a present blob (for streaming reads).
    pub fn blob_path(&self, _digest: &str) -> PathBuf {
        todo!()
    }
    /// Opens a blob for reading.
    pub fn open_blob(&self, _digest: &str) -> Result<std::fs::File> {
        todo!()
    }
    /// Reads a small blob (manifest, config) whole.
    pub fn read_blob(&self, _digest: &str) -> Result<Vec<u8>> {
        todo!()
    }
    /// Size of a present blob.
    pub fn blob_size(&self, _digest: &str) -> Result<u64> {
        todo!()
    }
    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        todo!()
    }
    /// Writes a small blob whole. Returns (`sha256:…`, size).
    pub fn write_blob(&self, _bytes: &[u8]) -> Result<(String, u64)> {
        todo!()
    }

    // ---- layers ----
    /// Turns an overlayfs upper dir into a gzip OCI layer in the content store, streaming
    /// (tar → sha256 for diff_id → gzip → sha256 for the blob digest → temp file). Overlay
    /// whiteouts (0:0 char devices) become `.wh.NAME`; opaque dirs (`trusted.overlay.opaque=y`)
    /// get `.wh..wh..opq`. Returns `None` when the upper dir is empty.
    pub fn diff_to_layer(&self, _upper: &Path) -> Result<Option<kiln_oci::Layer>> {
        todo!()
    }
    /// Stores an uncompressed tar stream (e.g. a rootfs for `kiln import`) as a gzip layer.
    pub fn import_layer(&self, _tar: &mut dyn Read) -> Result<kiln_oci::Layer> {
        todo!()
    }
    /// The extracted snapshot of a layer, usable as an overlay lower dir (OCI whiteouts
    /// turned into overlay whiteouts). Extracted on first use from the layer's blob
    /// (gzip, zstd or plain), into a temp dir then renamed, so it is never half there.
    pub fn snapshot(&self, _layer: &kiln_oci::Layer) -> Result<PathBuf> {
        todo!()
    }

    // ---- metadata ----
    /// Sets `name` to point at `manifest_digest`.
    pub fn set_image(&self, _name: &str, _manifest_digest: &str) -> Result<()> {
        todo!()
    }
    /// Looks up a name.
    pub fn get_image(&self, _name: &str) -> Result<Option<ImageRecord>> {
        todo!()
    }
    /// All named images, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        todo!()
    }
    /// Removes a name; true when it existed.
    pub fn remove_image(&self, _name: &str) -> Result<bool> {
        todo!()
    }
    /// Build cache: the result recorded under `key`.
    pub fn cache_get(&self, _key: &str) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    /// Build cache: records `value` under `key` (replacing).
    pub fn cache_put(&self, _key: &str, _value: &[u8]) -> Result<()> {
        todo!()
    }
}

