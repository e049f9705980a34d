//! Image manifests, indexes and the image config's root filesystem, built and read with
//! `oci-spec`'s types, and written in the bytes kiln has always written.
//!
//! Every manifest, index and config kiln writes goes through [`to_json`]: compact JSON with
//! every object's keys sorted. That is what kiln wrote when it built these documents by
//! hand as `serde_json::Value`s (whose maps sort their keys), so the digests of images and
//! build caches made before and after stay the same, and a document is a function of its
//! content alone (no field order from a struct or a parse to carry along).
//!
//! What `oci-spec` lacks lives here too: Docker's `manifest.json` of an image archive
//! ([`DockerArchiveEntry`]) and a config read only for its `rootfs` ([`ConfigRootfs`]).

use crate::{media, spec, Layer};
use serde::{Deserialize, Serialize};
use std::str::FromStr as _;

/// A manifest, index or config that cannot be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The JSON does not parse as the document it should be, or does not serialize.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A descriptor's digest is not a digest.
    #[error("bad digest `{digest}`: {source}")]
    Digest {
        /// The digest as given.
        digest: String,
        /// Why it is not one.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A document lacks a field it must have (`oci-spec`'s builders).
    #[error("{0}")]
    Build(#[from] oci_spec::OciSpecError),
    /// The manifest's layers and the config's diff ids do not pair up.
    #[error(transparent)]
    LayerCount(#[from] LayerCountMismatch),
}

/// A manifest and its config name different numbers of layers.
#[derive(Debug, thiserror::Error)]
#[error("{layers} layers but {diff_ids} diff ids")]
pub struct LayerCountMismatch {
    /// Layers in the manifest.
    pub layers: usize,
    /// Diff ids in the config.
    pub diff_ids: usize,
}

/// `value` as kiln writes manifests, indexes and configs: compact JSON, every object's keys
/// sorted (see the module docs).
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

/// A descriptor: `media_type`, `digest`, `size`, nothing else.
pub fn descriptor(
    media_type: &str,
    digest: &str,
    size: u64,
) -> Result<spec::Descriptor, ImageError> {
    let parsed = spec::Digest::from_str(digest).map_err(|source| ImageError::Digest {
        digest: digest.to_string(),
        source,
    })?;
    Ok(spec::Descriptor::new(
        spec::MediaType::from(media_type),
        size,
        parsed,
    ))
}

/// The descriptor of a layer's blob.
pub fn layer_descriptor(layer: &Layer) -> Result<spec::Descriptor, ImageError> {
    descriptor(&layer.media_type, &layer.digest, layer.size)
}

/// The OCI image manifest of an image: its config (`application/vnd.oci.image.config.v1+json`,
/// `config_digest`, `config_size`) and its layers' blobs, bottom first. The one builder of
/// the manifests kiln makes (images, build caches).
pub fn image_manifest(
    config_digest: &str,
    config_size: u64,
    layers: &[Layer],
) -> Result<spec::ImageManifest, ImageError> {
    let config = descriptor(media::OCI_CONFIG, config_digest, config_size)?;
    let layers = layers
        .iter()
        .map(layer_descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(spec::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(spec::MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()?)
}

/// An OCI index (schema version 2, with its media type) listing `manifests`.
pub fn image_index(manifests: Vec<spec::Descriptor>) -> Result<spec::ImageIndex, ImageError> {
    Ok(spec::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(spec::MediaType::ImageIndex)
        .manifests(manifests)
        .build()?)
}

/// An image manifest from its JSON (a typed error, not a guess, when it is not one).
pub fn parse_manifest(bytes: &[u8]) -> Result<spec::ImageManifest, ImageError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// An image index (or an `index.json`) from its JSON.
pub fn parse_index(bytes: &[u8]) -> Result<spec::ImageIndex, ImageError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// The one part of an image config that pairs it with its manifest: `rootfs`. Reading only
/// this keeps whatever else the config holds (Docker's extra fields, a build cache's
/// records) out of the way.
#[derive(Clone, Debug, Deserialize)]
pub struct ConfigRootfs {
    /// `rootfs` (`type` and `diff_ids`).
    pub rootfs: spec::RootFs,
}

impl ConfigRootfs {
    /// From a config's JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The layers of an image, bottom first: the manifest's layer blobs paired with the
/// config's diff ids.
pub fn image_layers(
    manifest: &spec::ImageManifest,
    diff_ids: &[String],
) -> Result<Vec<Layer>, LayerCountMismatch> {
    let blobs = manifest.layers();
    if blobs.len() != diff_ids.len() {
        return Err(LayerCountMismatch {
            layers: blobs.len(),
            diff_ids: diff_ids.len(),
        });
    }
    Ok(blobs
        .iter()
        .zip(diff_ids)
        .map(|(b, d)| Layer {
            diff_id: d.clone(),
            digest: b.digest().to_string(),
            size: b.size(),
            media_type: b.media_type().to_string(),
        })
        .collect())
}

/// One image of Docker's `manifest.json` in an image archive (`docker save`, `docker load`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerArchiveEntry {
    /// Path of the config file in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// The image's names (`null` for an image saved by ID).
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars in the archive, bottom first.
    #[serde(rename = "Layers", default)]
    pub layers: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn layer(media_type: &str, digest: &str, size: u64) -> Layer {
        Layer {
            diff_id: D1.into(),
            digest: digest.into(),
            size,
            media_type: media_type.into(),
        }
    }

    /// The manifest is byte for byte what kiln wrote when it built it by hand (so image and
    /// cache digests do not change), for every layer media type kiln writes or keeps.
    #[test]
    fn manifest_bytes_are_the_hand_built_ones() {
        let layers = [
            layer(media::OCI_LAYER_GZIP, D1, 10),
            layer(media::OCI_LAYER_ZSTD, D2, 20),
            layer(media::OCI_LAYER_TAR, D1, 30),
            layer(media::DOCKER_LAYER_GZIP, D2, 40),
            layer("application/x-unknown", D1, 50),
        ];
        let by_hand = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": D2, "size": 7},
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.size
            })).collect::<Vec<_>>(),
        });
        let typed = image_manifest(D2, 7, &layers).unwrap();
        assert_eq!(
            String::from_utf8(to_json(&typed).unwrap()).unwrap(),
            String::from_utf8(serde_json::to_vec(&by_hand).unwrap()).unwrap()
        );
        let back = parse_manifest(&to_json(&typed).unwrap()).unwrap();
        assert_eq!(
            image_layers(&back, &vec![D1.to_string(); 5]).unwrap(),
            layers
        );
    }

    #[test]
    fn index_bytes_are_the_hand_built_ones() {
        let by_hand = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": D1, "size": 3}],
        });
        let typed = image_index(vec![descriptor(media::OCI_MANIFEST, D1, 3).unwrap()]).unwrap();
        assert_eq!(
            to_json(&typed).unwrap(),
            serde_json::to_vec(&by_hand).unwrap()
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(descriptor(media::OCI_CONFIG, "sha256:short", 1).is_err());
        assert!(descriptor(media::OCI_CONFIG, "", 1).is_err());
        for bad in [
            &b"[]"[..],
            b"{}",
            br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1}, "layers": []}"#,
            br#"{"schemaVersion": 2, "config": {"mediaType": "x", "size": 1}, "layers": []}"#,
            br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": -1}, "layers": []}"#,
        ] {
            assert!(parse_manifest(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(ConfigRootfs::parse(br#"{"architecture": "amd64"}"#).is_err());
        let m = image_manifest(D1, 1, &[layer(media::OCI_LAYER_GZIP, D2, 1)]).unwrap();
        assert_eq!(
            image_layers(&m, &[]).unwrap_err().to_string(),
            "1 layers but 0 diff ids"
        );
    }

    #[test]
    fn docker_archive_manifest_round_trips() {
        let entry = DockerArchiveEntry {
            config: "blobs/sha256/aa".into(),
            repo_tags: Some(vec!["x:latest".into()]),
            layers: Some(vec!["blobs/sha256/bb".into()]),
        };
        let by_hand = json!([{
            "Config": "blobs/sha256/aa",
            "RepoTags": ["x:latest"],
            "Layers": ["blobs/sha256/bb"],
        }]);
        assert_eq!(
            to_json(&[&entry]).unwrap(),
            serde_json::to_vec(&by_hand).unwrap()
        );
        let saved_by_id: Vec<DockerArchiveEntry> = serde_json::from_str(
            r#"[{"Config": "c.json", "RepoTags": null, "Layers": ["l.tar"]}]"#,
        )
        .unwrap();
        assert_eq!(saved_by_id[0].repo_tags, None);
    }
}
