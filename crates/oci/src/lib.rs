//! The OCI image model as kiln uses it: layer descriptors, image references and digests.
//!
//! This crate does no I/O. It re-exports [`oci_spec::image`] as [`spec`] so that every other
//! crate speaks the same types for image configs, manifests and indexes; what `oci-spec` lacks
//! (a layer's diff id next to its blob, a Docker-style reference parser) lives here.
#![deny(missing_docs)]

pub use oci_spec::image as spec;

mod digest;
pub mod image;
mod reference;

pub use digest::{sha256_hex_digest, Sha256Writer};
pub use image::{ImageError, LayerCountMismatch};
pub use reference::{Reference, ReferenceError};

/// Media types kiln reads and writes.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// OCI uncompressed layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// One filesystem layer of an image: the digest of its uncompressed tar (`diff_id`, what the
/// image config's `rootfs.diff_ids` lists) and the blob that carries it (what the manifest
/// lists).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:…` of the blob (compressed as `media_type` says).
    pub digest: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
}

/// A history entry whose `empty_layer` is only known once the build has run: the frontend
/// names the op-graph vertex whose layer this entry describes (`layer_vertex`), and the
/// exporter marks the entry empty when that vertex added no layer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingHistory {
    /// What the entry says created it, e.g. `RUN /bin/sh -c make # buildkit`.
    pub created_by: String,
    /// Optional comment.
    pub comment: Option<String>,
    /// The vertex (op-graph digest, as a string) whose layer this is; `None` for entries
    /// that never add a layer (ENV, CMD, …).
    pub layer_vertex: Option<String>,
}
