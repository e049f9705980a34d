//! Resolving a reference: the manifest (an index resolved to linux/amd64) and the config.

use crate::client::{pull_scope, read_capped, Ctx};
use crate::{Client, Error, Result};
use kiln_cache::Store;
use kiln_oci::{LayerCountMismatch, Reference};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

/// Largest manifest accepted (the distribution spec lets registries cap at 4 MiB).
const MAX_MANIFEST: usize = 16 << 20;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

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

impl PulledImage {
    /// The image's layers, bottom first: the manifest's blobs with the config's diff ids.
    pub fn layers(&self) -> std::result::Result<Vec<kiln_oci::Layer>, LayerCountMismatch> {
        kiln_oci::image::image_layers(&self.manifest, self.config.rootfs().diff_ids())
    }
}

pub(crate) fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

pub(crate) fn is_index_type(mt: &str) -> bool {
    mt == kiln_oci::media::OCI_INDEX || mt == kiln_oci::media::DOCKER_LIST
}

/// The media type of a manifest: its `mediaType` field, else the response's content type,
/// else guessed from its shape.
pub(crate) fn manifest_media_type(json: &serde_json::Value, content_type: Option<&str>) -> String {
    if let Some(mt) = json.get("mediaType").and_then(|m| m.as_str()) {
        return mt.to_string();
    }
    if let Some(ct) = content_type {
        let ct = ct.split(';').next().unwrap_or("").trim();
        if is_index_type(ct)
            || ct == kiln_oci::media::OCI_MANIFEST
            || ct == kiln_oci::media::DOCKER_MANIFEST
        {
            return ct.to_string();
        }
    }
    if json.get("manifests").is_some() {
        kiln_oci::media::OCI_INDEX.to_string()
    } else {
        kiln_oci::media::OCI_MANIFEST.to_string()
    }
}

/// The `linux/amd64` entry of an index (without a variant, or `v1` first).
pub(crate) fn pick_platform(index: &serde_json::Value) -> Option<String> {
    let entries = index.get("manifests")?.as_array()?;
    let mut best: Option<(u8, String)> = None;
    for m in entries {
        let Some(p) = m.get("platform") else { continue };
        let field = |k: &str| p.get(k).and_then(|v| v.as_str());
        if field("os") != Some("linux") || field("architecture") != Some("amd64") {
            continue;
        }
        let Some(digest) = m.get("digest").and_then(|d| d.as_str()) else {
            continue;
        };
        let rank = match field("variant") {
            None | Some("" | "v1") => 0,
            _ => 1,
        };
        let better = match &best {
            None => true,
            Some((r, _)) => rank < *r,
        };
        if better {
            best = Some((rank, digest.to_string()));
        }
    }
    best.map(|(_, d)| d)
}

impl Client {
    /// Fetches the manifest (resolving an index to linux/amd64) and the config blob into
    /// `store`, but no layers. Docker schema 2 manifests are accepted and returned as OCI
    /// types (their media types kept as they are in the stored blob).
    pub async fn resolve(&self, reference: &Reference, store: &Store) -> Result<PulledImage> {
        let eps = self.endpoints(&reference.registry, true);
        let mut last = None;
        for ep in &eps {
            let ctx = Ctx {
                ep,
                reference,
                scope: pull_scope(reference),
            };
            match self.resolve_at(&ctx, store).await {
                Ok(p) => return Ok(p),
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            reference: reference.to_string(),
        }))
    }

    async fn get_manifest(
        &self,
        ctx: &Ctx<'_>,
        tag_or_digest: &str,
    ) -> Result<(Vec<u8>, serde_json::Value, String, Option<String>)> {
        let url = ctx.ep.url(&format!(
            "v2/{}/manifests/{}",
            ctx.reference.repository, tag_or_digest
        ));
        let resp = self
            .send(ctx, &|c| {
                Ok(c.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if !resp.status().is_success() {
            let what = if tag_or_digest == ctx.reference.tag_or_digest() {
                String::new()
            } else {
                format!("manifest {tag_or_digest}")
            };
            return Err(self.fail(ctx, resp, &what).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_capped(resp, MAX_MANIFEST)
            .await
            .map_err(|e| ctx.protocol(format!("manifest {tag_or_digest}: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ctx.protocol(format!("manifest {tag_or_digest} is not JSON: {e}")))?;
        let mt = manifest_media_type(&json, content_type.as_deref());
        Ok((bytes, json, mt, header_digest))
    }

    pub(crate) async fn resolve_at(&self, ctx: &Ctx<'_>, store: &Store) -> Result<PulledImage> {
        let reference = ctx.reference;
        let (mut bytes, mut json, mut mt, header_digest) =
            self.get_manifest(ctx, reference.tag_or_digest()).await?;
        let mut digest = kiln_oci::sha256_hex_digest(&bytes);
        let expected = reference
            .digest
            .clone()
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(want) = expected {
            if want != digest {
                return Err(ctx.protocol(format!(
                    "manifest digest mismatch: expected {want}, got {digest}"
                )));
            }
        }
        if is_index_type(&mt) {
            let child = pick_platform(&json)
                .ok_or_else(|| ctx.protocol("the image index has no linux/amd64 manifest"))?;
            if !is_sha256_digest(&child) {
                return Err(ctx.protocol(format!("unsupported manifest digest `{child}`")));
            }
            (bytes, json, mt, _) = self.get_manifest(ctx, &child).await?;
            digest = kiln_oci::sha256_hex_digest(&bytes);
            if digest != child {
                return Err(ctx.protocol(format!(
                    "manifest digest mismatch: expected {child}, got {digest}"
                )));
            }
            if is_index_type(&mt) {
                return Err(ctx.protocol(format!("manifest {child} is an index inside an index")));
            }
        }
        if json
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
            != Some(2)
        {
            return Err(ctx.protocol(format!(
                "manifest {digest}: only schema version 2 manifests are supported ({mt})"
            )));
        }
        let manifest: kiln_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ctx.protocol(format!("manifest {digest}: {e}")))?;
        let (stored, _) = store.write_blob(&bytes)?;
        if stored != digest {
            return Err(ctx.protocol(format!("manifest stored as {stored}, expected {digest}")));
        }
        let config_digest = manifest.config().digest().to_string();
        if !store.has_blob(&config_digest) {
            self.download_blob(ctx, &config_digest, Some(manifest.config().size()), store)
                .await?;
        }
        let config_bytes = store.read_blob(&config_digest)?;
        let config: kiln_oci::spec::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| ctx.protocol(format!("image config {config_digest}: {e}")))?;
        Ok(PulledImage {
            manifest_digest: digest,
            manifest,
            config,
        })
    }
}
