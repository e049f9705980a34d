//! OCI distribution client: resolve a reference to a manifest, pull an image into the
//! content store, push an image from it.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
#![deny(missing_docs)]

use kiln_cache::Store;
use kiln_oci::Reference;
use std::collections::BTreeMap;

/// Per-host settings (from `[registry."HOST"]` in kiln's config.toml).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct HostConfig {
    /// Plain HTTP. Loopback hosts (127.0.0.0/8, localhost, ::1) default to true, like Docker.
    pub http: Option<bool>,
    /// Mirrors tried (in order) before the host itself, `host[:port]`.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// Registry settings for every host.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// By host name (`docker.io`, `127.0.0.1:5000`).
    pub hosts: BTreeMap<String, HostConfig>,
    /// Path of the Docker-style credentials file (`~/.docker/config.json`); `auths` with
    /// base64 `auth` entries are used for Basic auth and for the Bearer token flow.
    pub docker_config: Option<std::path::PathBuf>,
}

/// Errors from registry operations; each names the registry and reference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect / transport failure.
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable {
        /// Host.
        registry: String,
        /// Cause.
        message: String,
    },
    /// The manifest or repository does not exist.
    #[error("{reference}: not found in registry")]
    NotFound {
        /// What was asked for.
        reference: String,
    },
    /// Authentication failed or is required.
    #[error("{registry}: unauthorized: {message}")]
    Unauthorized {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// Any other protocol error (unexpected status, bad manifest, digest mismatch).
    #[error("{registry}: {message}")]
    Protocol {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An image whose manifest and config are in the local content store.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// `sha256:…` of the manifest (an image manifest, never an index: indexes are resolved
    /// to the linux/amd64 entry).
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: kiln_oci::spec::ImageManifest,
    /// The config.
    pub config: kiln_oci::spec::ImageConfiguration,
}

/// The client. One per process; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    _cfg: RegistryConfig,
}

impl Client {
    /// A client with these settings.
    pub fn new(cfg: RegistryConfig) -> Self {
        Self { _cfg: cfg }
    }

    /// Fetches the manifest (resolving an index to linux/amd64) and the config blob into
    /// `store`, but no layers. Docker schema 2 manifests are accepted and returned as OCI
    /// types (their media types kept as they are in the stored blob).
    pub async fn resolve(&self, _reference: &Reference, _store: &Store) -> Result<PulledImage> {
        todo!()
    }

    /// `resolve`, then every layer blob not already present, streamed to disk with its digest
    /// verified.
    pub async fn pull(&self, _reference: &Reference, _store: &Store) -> Result<PulledImage> {
        todo!()
    }

    /// Fetches the layer blobs of an already-resolved manifest that are missing from `store`.
    pub async fn fetch_layers(
        &self,
        _reference: &Reference,
        _manifest: &kiln_oci::spec::ImageManifest,
        _store: &Store,
    ) -> Result<()> {
        todo!()
    }

    /// Pushes the image whose manifest blob is `manifest_digest` in `store` to `reference`
    /// (blobs that the registry has are skipped; blobs are streamed from disk; the manifest
    /// is put last under the reference's tag). Returns the manifest digest.
    pub async fn push(
        &self,
        _store: &Store,
        _manifest_digest: &str,
        _reference: &Reference,
    ) -> Result<String> {
        todo!()
    }
}
