//! Pushing: blobs the registry lacks (several at once), then the manifests (an index's
//! children first).

use crate::client::{push_scope, Ctx};
use crate::manifest::{is_index_type, is_sha256_digest, manifest_media_type};
use crate::pull::PARALLEL_BLOBS;
use crate::{Client, Result};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use kiln_cache::Store;
use kiln_oci::Reference;
use reqwest::header::CONTENT_TYPE;
use std::collections::BTreeSet;

impl Client {
    /// Pushes the image whose manifest blob is `manifest_digest` in `store` to `reference`
    /// (blobs that the registry has are skipped; blobs are streamed from disk; the manifest
    /// is put last under the reference's tag). Returns the manifest digest.
    pub async fn push(
        &self,
        store: &Store,
        manifest_digest: &str,
        reference: &Reference,
    ) -> Result<String> {
        let ep = self.host_endpoint(&reference.registry);
        let ctx = Ctx {
            ep: &ep,
            reference,
            scope: push_scope(reference),
        };
        if !is_sha256_digest(manifest_digest) {
            return Err(ctx.protocol(format!("invalid manifest digest `{manifest_digest}`")));
        }
        let target = match (&reference.tag, &reference.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) if d != manifest_digest => {
                return Err(ctx.protocol(format!(
                    "the reference's digest does not match the manifest {manifest_digest}"
                )))
            }
            _ => manifest_digest.to_string(),
        };
        self.push_manifest(&ctx, store, manifest_digest, &target)
            .await?;
        Ok(manifest_digest.to_string())
    }

    fn push_manifest<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        store: &'a Store,
        digest: &'a str,
        target: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bytes = store.read_blob(digest)?;
            let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ctx.protocol(format!("manifest {digest} in the store is not JSON: {e}"))
            })?;
            let mt = manifest_media_type(&json, None);
            if is_index_type(&mt) {
                let index = kiln_oci::image::parse_index(&bytes)
                    .map_err(|e| ctx.protocol(format!("index {digest}: {e}")))?;
                let children: Vec<String> = index
                    .manifests()
                    .iter()
                    .map(|m| m.digest().to_string())
                    .collect();
                for child in &children {
                    if !is_sha256_digest(child) {
                        return Err(
                            ctx.protocol(format!("index {digest}: bad manifest digest `{child}`"))
                        );
                    }
                    self.push_manifest(ctx, store, child, child).await?;
                }
            } else {
                let manifest: kiln_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| ctx.protocol(format!("manifest {digest}: {e}")))?;
                let mut seen = BTreeSet::new();
                let blobs: Vec<String> = std::iter::once(manifest.config())
                    .chain(manifest.layers().iter())
                    .map(|d| d.digest().to_string())
                    .filter(|d| seen.insert(d.clone()))
                    .collect();
                futures::stream::iter(blobs)
                    .map(|d| async move { self.push_blob(ctx, store, &d).await })
                    .buffer_unordered(PARALLEL_BLOBS)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            let url = ctx.ep.url(&format!(
                "v2/{}/manifests/{target}",
                ctx.reference.repository
            ));
            let body = Bytes::from(bytes);
            let resp = self
                .send(ctx, &|c| {
                    Ok(c.put(url.clone())
                        .header(CONTENT_TYPE, mt.as_str())
                        .body(body.clone()))
                })
                .await?;
            if !resp.status().is_success() {
                return Err(self
                    .fail(ctx, resp, &format!("put manifest {digest}"))
                    .await);
            }
            if let Some(got) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                if got.starts_with("sha256:") && got != digest {
                    return Err(ctx.protocol(format!("registry stored manifest {digest} as {got}")));
                }
            }
            Ok(())
        })
    }
}
