//! kiln's exporters: turn a solved layer chain and an image config into an image in the
//! local store, then write it out as an OCI image layout (tar or directory), a docker
//! archive (`docker load`-able, which is also an OCI layout), or a root filesystem
//! (directory or tar). Pushing is the registry crate's job; the CLI chooses by `type=`.
//! Module [`load`] reads such archives back into the store (`kiln load`); module [`import`]
//! stores a root filesystem tarball as a one-layer image (`kiln import`).
//!
//! Every file an exporter writes goes to a temp name beside its destination first and is
//! renamed into place once complete, so a killed build never leaves half an archive.
#![deny(missing_docs)]

pub mod import;
pub mod layout;
pub mod load;
pub mod rootfs;
#[cfg(test)]
mod tests;

use kiln_cache::Store;
use kiln_oci::image::{image_manifest, to_json};
use kiln_oci::{spec, Layer};
use rayon::iter::{IntoParallelRefIterator as _, ParallelIterator as _};
use serde_json::{json, Value};

/// Errors from exporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// Writing the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The output path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The image config is not a JSON object.
    #[error("bad image config: {0}")]
    Config(String),
    /// An archive being loaded is malformed.
    #[error("{0}")]
    Archive(String),
    /// A manifest or config does not parse or serialize as JSON.
    #[error("bad image config: {0}")]
    Json(#[from] serde_json::Error),
    /// A manifest could not be built.
    #[error("bad image config: {0}")]
    Image(#[from] kiln_oci::ImageError),
    /// A stored image could not be read.
    #[error(transparent)]
    Read(#[from] kiln_cache::image::ReadError),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One history entry, final (`empty_layer` known).
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// `created_by`.
    pub created_by: String,
    /// `comment`.
    pub comment: Option<String>,
    /// Whether the step added no layer.
    pub empty_layer: bool,
}

pub use kiln_cache::image::StoredImage;

/// Writes the config and manifest of an image made of `layers` into the store.
///
/// `config` is the image config as JSON (an OCI image config; extra Docker fields such as
/// `Healthcheck` in `config.config` are kept). Its `rootfs` is replaced by the layers'
/// diff ids, and `history` is appended to whatever history it already holds (the base
/// image's).
pub fn store_image(
    store: &Store,
    mut config: Value,
    history: &[HistoryEntry],
    layers: &[Layer],
    created: &str,
) -> Result<StoredImage> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::Config("not an object".into()))?;
    obj.insert("created".into(), json!(created));
    obj.entry("architecture").or_insert(json!("amd64"));
    obj.entry("os").or_insert(json!("linux"));
    let mut rootfs = spec::RootFs::default();
    rootfs.set_diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect());
    obj.insert("rootfs".into(), to_value(&rootfs)?);
    // The base image's entries are kept as they are (Docker's configs may carry fields
    // `oci-spec` does not know); the build's own are typed.
    let mut hist: Vec<Value> = match obj.remove("history") {
        Some(Value::Array(a)) => a,
        _ => vec![],
    };
    for h in history {
        let mut e = spec::History::default();
        e.set_created(Some(created.to_string()));
        e.set_created_by(Some(h.created_by.clone()));
        e.set_comment(h.comment.clone());
        e.set_empty_layer(h.empty_layer.then_some(true));
        hist.push(to_value(&e)?);
    }
    if !hist.is_empty() {
        obj.insert("history".into(), Value::Array(hist));
    }
    let config_bytes = to_json(&config)?;
    let (config_digest, config_size) = store.write_blob(&config_bytes)?;
    let manifest = image_manifest(&config_digest, config_size, layers)?;
    let manifest_bytes = to_json(&manifest)?;
    let (manifest_digest, manifest_size) = store.write_blob(&manifest_bytes)?;
    Ok(StoredImage {
        manifest_digest,
        manifest_size,
        config_digest,
    })
}

/// How build-step layers are compressed when an image leaves the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compress {
    /// gzip (the default), zstd or none.
    pub compression: kiln_cache::Compression,
    /// The level (see [`Store::compressed_layer_at`]); `None`: the codec's default.
    pub level: Option<i32>,
}

impl Default for Compress {
    fn default() -> Self {
        Compress {
            compression: kiln_cache::Compression::Gzip,
            level: None,
        }
    }
}

/// The image as it leaves the machine (push, OCI layout, docker archive): the same config,
/// and a manifest whose layers are all compressed blobs. Layers that a build step
/// committed (held as snapshots only, see [`kiln_cache::Store::compressed_layer`]) are
/// compressed as `compression`, several at once; layers that already have a compressed
/// blob (a pulled base image's) are kept as they are, so their digests stay the ones
/// registries already hold. Returns `image` itself when nothing needed compressing.
pub fn distributable(
    store: &Store,
    image: &StoredImage,
    compress: Compress,
) -> Result<StoredImage> {
    let Compress { compression, level } = compress;
    let mut m = kiln_cache::image::manifest(store, &image.manifest_digest)?;
    let layers = kiln_cache::image::layers(store, &image.manifest_digest)?;
    let todo: Vec<usize> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            !store.has_blob(&l.digest)
                || (kiln_cache::Compression::of_media_type(&l.media_type)
                    == Some(kiln_cache::Compression::Uncompressed)
                    && compression != kiln_cache::Compression::Uncompressed)
        })
        .map(|(i, _)| i)
        .collect();
    if todo.is_empty() {
        return Ok(image.clone());
    }
    // One layer per task on rayon's pool (one thread per CPU); each streams its tar
    // through the compressor into the store.
    let done: Vec<Result<Layer>> = todo
        .par_iter()
        .map(|&i| {
            store
                .compressed_layer_at(&layers[i], compression, level)
                .map_err(Error::from)
        })
        .collect();
    let mut out = layers;
    for (&i, r) in todo.iter().zip(done) {
        out[i] = r?;
    }
    // Only the layers change; the rest of the manifest (its config, annotations) stays.
    m.set_layers(
        out.iter()
            .map(kiln_oci::image::layer_descriptor)
            .collect::<Result<_, _>>()?,
    );
    let bytes = to_json(&m)?;
    let (manifest_digest, manifest_size) = store.write_blob(&bytes)?;
    Ok(StoredImage {
        manifest_digest,
        manifest_size,
        config_digest: image.config_digest.clone(),
    })
}

/// `value` as a JSON value (to go into a config kiln keeps as JSON).
fn to_value<T: serde::Serialize>(value: &T) -> Result<Value> {
    Ok(serde_json::to_value(value)?)
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
