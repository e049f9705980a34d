//! kiln's exporters: turn a solved layer chain and an image config into an image in the
//! local store, then write it out as an OCI image layout (tar or directory), a docker
//! archive (`docker load`-able, which is also an OCI layout), or a root filesystem
//! (directory or tar). Pushing is the registry crate's job; the CLI chooses by `type=`.
//! Module [`load`] reads such archives back into the store (`kiln load`).
//!
//! Every file an exporter writes goes to a temp name beside its destination first and is
//! renamed into place once complete, so a killed build never leaves half an archive.
#![deny(missing_docs)]

pub mod layout;
pub mod load;
pub mod rootfs;

use kiln_cache::Store;
use kiln_oci::{media, Layer};
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

/// An image written to the content store.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// Size of the manifest.
    pub manifest_size: u64,
    /// `sha256:…` of the config (the image ID Docker shows).
    pub config_digest: String,
}

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
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()}),
    );
    let mut hist: Vec<Value> = match obj.remove("history") {
        Some(Value::Array(a)) => a,
        _ => vec![],
    };
    for h in history {
        let mut e = json!({"created": created, "created_by": h.created_by});
        if let Some(c) = &h.comment {
            e["comment"] = json!(c);
        }
        if h.empty_layer {
            e["empty_layer"] = json!(true);
        }
        hist.push(e);
    }
    if !hist.is_empty() {
        obj.insert("history".into(), Value::Array(hist));
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Config(e.to_string()))?;
    let (config_digest, config_size) = store.write_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Config(e.to_string()))?;
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
    let mut m = read_manifest(store, &image.manifest_digest)?;
    let layers = image_layers(store, &image.manifest_digest)?;
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
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(todo.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<(usize, Result<Layer>)>> = Default::default();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { break };
                let r = store
                    .compressed_layer_at(&layers[i], compression, level)
                    .map_err(Error::from);
                done.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((i, r));
            });
        }
    });
    let mut out = layers;
    for (i, r) in done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        out[i] = r?;
    }
    m["layers"] = json!(out
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect::<Vec<_>>());
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::Config(e.to_string()))?;
    let (manifest_digest, manifest_size) = store.write_blob(&bytes)?;
    Ok(StoredImage {
        manifest_digest,
        manifest_size,
        config_digest: image.config_digest.clone(),
    })
}

/// A stored image by its manifest digest.
pub fn stored_image(store: &Store, manifest_digest: &str) -> Result<StoredImage> {
    let m = read_manifest(store, manifest_digest)?;
    Ok(StoredImage {
        manifest_digest: manifest_digest.to_string(),
        manifest_size: store.blob_size(manifest_digest)?,
        config_digest: m["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// The manifest (parsed JSON) of a stored image.
pub fn read_manifest(store: &Store, manifest_digest: &str) -> Result<Value> {
    serde_json::from_slice(&store.read_blob(manifest_digest)?)
        .map_err(|e| Error::Config(e.to_string()))
}

/// Every blob an image consists of: manifest, config, layers (with media types and sizes).
pub fn image_blobs(store: &Store, manifest_digest: &str) -> Result<Vec<(String, String, u64)>> {
    let m = read_manifest(store, manifest_digest)?;
    let mut out = vec![(
        manifest_digest.to_string(),
        m["mediaType"]
            .as_str()
            .unwrap_or(media::OCI_MANIFEST)
            .to_string(),
        store.blob_size(manifest_digest)?,
    )];
    let desc = |d: &Value| -> (String, String, u64) {
        (
            d["digest"].as_str().unwrap_or_default().to_string(),
            d["mediaType"].as_str().unwrap_or_default().to_string(),
            d["size"].as_u64().unwrap_or_default(),
        )
    };
    out.push(desc(&m["config"]));
    if let Some(ls) = m["layers"].as_array() {
        out.extend(ls.iter().map(desc));
    }
    Ok(out)
}

/// The layers of a stored image, with diff ids from its config.
pub fn image_layers(store: &Store, manifest_digest: &str) -> Result<Vec<Layer>> {
    let m = read_manifest(store, manifest_digest)?;
    let cfg_digest = m["config"]["digest"].as_str().unwrap_or_default();
    let cfg: Value = serde_json::from_slice(&store.read_blob(cfg_digest)?)
        .map_err(|e| Error::Config(e.to_string()))?;
    let diff_ids = cfg["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let layers = m["layers"].as_array().cloned().unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(Error::Config(format!(
            "{} layers but {} diff ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    Ok(layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| Layer {
            diff_id: d.as_str().unwrap_or_default().to_string(),
            digest: l["digest"].as_str().unwrap_or_default().to_string(),
            size: l["size"].as_u64().unwrap_or_default(),
            media_type: l["mediaType"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

/// The config (parsed JSON) of a stored image.
pub fn image_config(store: &Store, manifest_digest: &str) -> Result<Value> {
    let m = read_manifest(store, manifest_digest)?;
    let cfg_digest = m["config"]["digest"].as_str().unwrap_or_default();
    serde_json::from_slice(&store.read_blob(cfg_digest)?).map_err(|e| Error::Config(e.to_string()))
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
