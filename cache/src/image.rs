//! Reading a stored image: its manifest (by digest), its config, its layers (the
//! manifest's blobs paired with the config's diff ids) and every blob it consists of. The
//! one reader of images in the store: the exporters, `kiln run`, the image commands and the
//! garbage collector all come here.
//!
//! Two modes. The strict one ([`manifest`], [`layers`], [`blobs`], [`config`]) reads the
//! documents with `oci-spec`'s types and fails with a typed error on a malformed one. The
//! lenient one ([`references`]) is the collector's: missing or mistyped fields are empty,
//! not errors, because a document the strict parser rejects must still pin the blobs it
//! names (reading too little is the one mistake a collector must not make).
//!
//! An image config is read typed as far as kiln reads it ([`ImageConfig`]); its container
//! config (`config`) is kept as the store holds it, because Docker's fields `oci-spec` does
//! not know (`Healthcheck`, `Shell`, `OnBuild`, the nulls Docker writes) are shown as they
//! are.

use crate::Store;
use kiln_oci::image::{image_layers, parse_manifest, ConfigRootfs};
use kiln_oci::{media, spec, Layer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name prefix under which an image stored without a name (`kiln load` of an archive
/// that names none) is kept: `<none>@<config digest>`, which no reference can spell. It is
/// what docker calls a dangling image.
pub const UNTAGGED: &str = "<none>@";

/// Whether a stored name is an untagged image's (see [`UNTAGGED`]).
pub fn is_untagged(name: &str) -> bool {
    name.starts_with(UNTAGGED)
}

/// A stored image that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The store failed (a blob is missing, say).
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A document is not JSON or not the document it should be.
    #[error("bad image config: {0}")]
    Json(#[from] serde_json::Error),
    /// A manifest (or a config's `rootfs`) is malformed, or its layers and diff ids do not
    /// pair up.
    #[error("bad image config: {0}")]
    Image(#[from] kiln_oci::ImageError),
    /// A config is JSON but not an OCI image config (what a build cannot start from).
    #[error("{0}")]
    OciConfig(#[source] serde_json::Error),
}

/// Result alias.
pub type Result<T, E = ReadError> = std::result::Result<T, E>;

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

/// An image config as kiln shows and reads it (`kiln inspect`, `kiln history`, ONBUILD).
/// Every field is optional: a field the document lacks is shown as `null`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ImageConfig {
    /// `created` (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// `architecture`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// `os`.
    #[serde(default)]
    pub os: Option<String>,
    /// `config`: what a container of the image runs with, as stored.
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    /// `rootfs`: the layers' diff ids.
    #[serde(default)]
    pub rootfs: Option<spec::RootFs>,
    /// `history`, oldest first.
    #[serde(default)]
    pub history: Option<Vec<spec::History>>,
}

impl ImageConfig {
    /// From a config's JSON.
    ///
    /// # Errors
    /// The JSON is not an image config.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// `config.OnBuild`: the triggers a build from this image runs first (none when the
    /// field is missing or not a list; entries that are not strings are skipped).
    pub fn on_build(&self) -> Vec<String> {
        self.config
            .as_ref()
            .and_then(|c| c.0.get("OnBuild"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An image config's `config` (the container config) as stored: the OCI fields and
/// Docker's (`Healthcheck`, `Shell`, `OnBuild`) alike, serialized back as read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerConfig(pub Map<String, Value>);

/// The manifest of a stored image.
///
/// # Errors
/// The blob is missing or is not an image manifest.
pub fn manifest(store: &Store, manifest_digest: &str) -> Result<spec::ImageManifest> {
    Ok(parse_manifest(&store.read_blob(manifest_digest)?)?)
}

/// A stored image by its manifest digest.
///
/// # Errors
/// As [`manifest`].
pub fn stored(store: &Store, manifest_digest: &str) -> Result<StoredImage> {
    let m = manifest(store, manifest_digest)?;
    Ok(StoredImage {
        manifest_digest: manifest_digest.to_string(),
        manifest_size: store.blob_size(manifest_digest)?,
        config_digest: m.config().digest().to_string(),
    })
}

/// An image ID that does not name one image.
#[derive(Debug, thiserror::Error)]
pub enum ByIdError {
    /// Several images' IDs start with it.
    #[error("image ID `{0}` is ambiguous")]
    Ambiguous(String),
    /// A named image could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The manifest of the named image whose ID (config digest, `sha256:` optional, or a
/// prefix of at least 4 hex digits) is `id`; `None` when no image has it, or `id` is not
/// such an ID.
///
/// # Errors
/// [`ByIdError::Ambiguous`] when images with different manifests have it; a named image
/// that cannot be read.
pub fn by_id(store: &Store, id: &str) -> Result<Option<String>, ByIdError> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut found: Option<String> = None;
    for rec in store.list_images().map_err(ReadError::from)? {
        let cfg = stored(store, &rec.manifest_digest)?.config_digest;
        if cfg.trim_start_matches("sha256:").starts_with(hex) {
            match &found {
                Some(f) if *f != rec.manifest_digest => {
                    return Err(ByIdError::Ambiguous(id.to_string()))
                }
                _ => found = Some(rec.manifest_digest),
            }
        }
    }
    Ok(found)
}

/// An image named the way docker users name one: a full or unique-prefix image ID (with or
/// without `sha256:`), a name (`alpine`, `alpine:3.20`, `host:5000/x/y:t`) or `name@digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The manifest digest of the image.
    pub manifest_digest: String,
    /// The stored name it was found under (`None` when it was named by ID).
    pub name: Option<String>,
}

/// An image that [`lookup`] cannot find.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Neither a name nor an ID of a stored image (the familiar name, or the ID as given).
    #[error("no such image: {0}")]
    NotFound(String),
    /// Not an image reference at all (uppercase letters, say).
    #[error(transparent)]
    Reference(#[from] kiln_oci::ReferenceError),
    /// Several images' IDs start with it.
    #[error("image ID `{0}` is ambiguous")]
    Ambiguous(String),
    /// A named image could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<ByIdError> for LookupError {
    fn from(e: ByIdError) -> Self {
        match e {
            ByIdError::Ambiguous(id) => Self::Ambiguous(id),
            ByIdError::Read(e) => Self::Read(e),
        }
    }
}

/// The one resolver of image names, as docker's: `sha256:HEX` (full or prefix) is an ID;
/// otherwise the name first (`NAME[:TAG]`, `NAME@DIGEST`, also an image of that repository
/// whose manifest has that digest), then, when the string is hex, an ID prefix (at least
/// 4 digits).
///
/// # Errors
/// [`LookupError::NotFound`], [`LookupError::Ambiguous`]; a string that is neither an
/// ID nor a reference; a stored image that cannot be read.
pub fn lookup(store: &Store, s: &str) -> Result<Found, LookupError> {
    let by_id_found = |store: &Store| -> Result<Option<Found>, LookupError> {
        Ok(by_id(store, s)?.map(|manifest_digest| Found {
            manifest_digest,
            name: None,
        }))
    };
    if s.starts_with("sha256:") {
        return by_id_found(store)?.ok_or_else(|| LookupError::NotFound(s.to_string()));
    }
    let parsed = kiln_oci::Reference::parse(s);
    if let Ok(r) = &parsed {
        let name = r.to_string();
        if let Some(rec) = store.get_image(&name).map_err(ReadError::from)? {
            return Ok(Found {
                manifest_digest: rec.manifest_digest,
                name: Some(rec.name),
            });
        }
        if let Some(d) = &r.digest {
            let repo = r.name();
            for rec in store.list_images().map_err(ReadError::from)? {
                let same_repo =
                    kiln_oci::Reference::parse(&rec.name).is_ok_and(|o| o.name() == repo);
                if same_repo && rec.manifest_digest == *d {
                    return Ok(Found {
                        manifest_digest: rec.manifest_digest,
                        name: Some(rec.name),
                    });
                }
            }
        }
    }
    if let Some(f) = by_id_found(store)? {
        return Ok(f);
    }
    match parsed {
        Ok(r) => Err(LookupError::NotFound(r.familiar())),
        Err(e) => Err(e.into()),
    }
}

/// What `kiln images` and `kiln inspect` show of a stored image besides its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `sha256:…` of the config (the image ID).
    pub config_digest: String,
    /// The size of the layers' blobs, in bytes.
    pub size: u64,
}

/// The ID and size of a stored image.
///
/// # Errors
/// As [`manifest`].
pub fn summary(store: &Store, manifest_digest: &str) -> Result<Summary> {
    let m = manifest(store, manifest_digest)?;
    Ok(Summary {
        config_digest: m.config().digest().to_string(),
        size: m.layers().iter().map(spec::Descriptor::size).sum(),
    })
}

/// Every blob an image consists of: manifest, config, layers (digest, media type, size).
///
/// # Errors
/// As [`manifest`].
pub fn blobs(store: &Store, manifest_digest: &str) -> Result<Vec<(String, String, u64)>> {
    let m = manifest(store, manifest_digest)?;
    let mut out = vec![(
        manifest_digest.to_string(),
        m.media_type()
            .as_ref()
            .map_or_else(|| media::OCI_MANIFEST.to_string(), ToString::to_string),
        store.blob_size(manifest_digest)?,
    )];
    let desc = |d: &spec::Descriptor| -> (String, String, u64) {
        (d.digest().to_string(), d.media_type().to_string(), d.size())
    };
    out.push(desc(m.config()));
    out.extend(m.layers().iter().map(desc));
    Ok(out)
}

/// The layers of a stored image, bottom first, with diff ids from its config.
///
/// # Errors
/// As [`manifest`]; the config is missing, has no `rootfs`, or names another number of
/// layers.
pub fn layers(store: &Store, manifest_digest: &str) -> Result<Vec<Layer>> {
    let m = manifest(store, manifest_digest)?;
    let cfg = store.read_blob(m.config().digest().as_ref())?;
    let diff_ids = ConfigRootfs::parse(&cfg)?.rootfs;
    Ok(image_layers(&m, diff_ids.diff_ids()).map_err(kiln_oci::ImageError::from)?)
}

/// The config blob of a stored image, as stored.
fn config_bytes(store: &Store, manifest_digest: &str) -> Result<Vec<u8>> {
    let m = manifest(store, manifest_digest)?;
    Ok(store.read_blob(m.config().digest().as_ref())?)
}

/// The config of a stored image, as kiln shows it.
///
/// # Errors
/// As [`manifest`]; the config is missing or is not an image config.
pub fn config(store: &Store, manifest_digest: &str) -> Result<ImageConfig> {
    ImageConfig::parse(&config_bytes(store, manifest_digest)?)
}

/// The config of a stored image as `oci-spec`'s type (what a build starts from).
///
/// # Errors
/// As [`config`].
pub fn oci_config(store: &Store, manifest_digest: &str) -> Result<spec::ImageConfiguration> {
    // Read as JSON first, then as the config: the two failures read as they always have.
    serde_json::from_value(config_json(store, manifest_digest)?).map_err(ReadError::OciConfig)
}

/// The config of a stored image as the JSON the store holds (kept with a container, which
/// reads Docker's fields from it).
///
/// # Errors
/// As [`config`]; the config is not JSON.
pub fn config_json(store: &Store, manifest_digest: &str) -> Result<Value> {
    Ok(serde_json::from_slice(&config_bytes(
        store,
        manifest_digest,
    )?)?)
}

/// What a stored image references, read leniently (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    /// The config's blob (empty when the manifest names none).
    pub config: String,
    /// The layers' blobs, bottom first.
    pub layers: Vec<String>,
    /// The config's diff ids, when it has one per layer (otherwise they do not pair up
    /// and name nothing for sure).
    pub diff_ids: Vec<String>,
}

/// What the manifest `manifest_digest` references, read leniently: `None` when the blob is
/// missing or not a JSON object; a missing config leaves `diff_ids` empty.
pub fn references(store: &Store, manifest_digest: &str) -> Option<References> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Descriptor {
        digest: String,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Config {
        rootfs: RootFs,
    }
    let m: Manifest = serde_json::from_slice(&store.read_blob(manifest_digest).ok()?).ok()?;
    let diff_ids = store
        .read_blob(&m.config.digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
        .map(|c| c.rootfs.diff_ids)
        .filter(|d| d.len() == m.layers.len())
        .unwrap_or_default();
    Some(References {
        config: m.config.digest,
        layers: m.layers.into_iter().map(|l| l.digest).collect(),
        diff_ids,
    })
}

pub mod list;

#[cfg(test)]
mod tests;
