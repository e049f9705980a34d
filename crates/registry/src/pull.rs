//! Pulling: layer blobs (several at once, each from the first mirror that has it), and
//! naming an image once every layer was unpacked and checked.

use crate::client::{pull_scope, Ctx};
use crate::manifest::PulledImage;
use crate::{Client, Error, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use kiln_cache::Store;
use kiln_oci::Reference;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How many blobs are transferred at once.
pub(crate) const PARALLEL_BLOBS: usize = 3;

impl Client {
    /// `resolve`, then every layer blob not already present, streamed to disk with its digest
    /// verified. Names nothing (see [`Client::pull_and_name`]).
    pub async fn pull(&self, reference: &Reference, store: &Store) -> Result<PulledImage> {
        let image = self.resolve(reference, store).await?;
        self.fetch_layers(reference, &image.manifest, store).await?;
        Ok(image)
    }

    /// What `kiln pull` and the pull of `kiln run` do: [`Client::pull`], then every layer
    /// unpacked into its snapshot (several at once), which checks it against the config's
    /// diff id and refuses hostile entries, and only then `reference` named in `store`. A
    /// name thus only ever points at an image whose every digest was checked; on any
    /// failure nothing is named (the checked blobs stay, unreferenced, for the next pull or
    /// a prune).
    pub async fn pull_and_name(
        &self,
        reference: &Reference,
        store: &Arc<Store>,
    ) -> Result<PulledImage> {
        let image = self.pull(reference, store).await?;
        let ep = self.host_endpoint(&reference.registry);
        let ctx = Ctx {
            ep: &ep,
            reference,
            scope: String::new(),
        };
        let layers = image
            .layers()
            .map_err(|e| ctx.protocol(format!("image {}: {e}", image.manifest_digest)))?;
        let unpacks = layers.into_iter().map(|l| {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.snapshot(&l).map(|_| ()))
        });
        for done in futures::future::join_all(unpacks).await {
            done.map_err(|e| ctx.protocol(format!("unpacking a layer failed: {e}")))??;
        }
        store.set_image(&reference.to_string(), &image.manifest_digest)?;
        Ok(image)
    }

    /// Fetches the layer blobs of an already-resolved manifest that are missing from `store`.
    pub async fn fetch_layers(
        &self,
        reference: &Reference,
        manifest: &kiln_oci::spec::ImageManifest,
        store: &Store,
    ) -> Result<()> {
        let blobs: Vec<(String, u64)> = manifest
            .layers()
            .iter()
            .map(|l| (l.digest().to_string(), l.size()))
            .collect();
        self.fetch_blobs(reference, &blobs, store).await
    }

    /// Fetches blobs (digest, size) of `reference`'s repository that are missing from
    /// `store`, several at once, each streamed to disk with its digest verified.
    pub async fn fetch_blobs(
        &self,
        reference: &Reference,
        blobs: &[(String, u64)],
        store: &Store,
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        let wanted: Vec<(String, u64)> = blobs
            .iter()
            .filter(|(d, _)| seen.insert(d.clone()) && !store.has_blob(d))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let eps = self.endpoints(&reference.registry, true);
        futures::stream::iter(wanted)
            .map(|(digest, size)| {
                let eps = &eps;
                async move {
                    let mut last = None;
                    for ep in eps {
                        let ctx = Ctx {
                            ep,
                            reference,
                            scope: pull_scope(reference),
                        };
                        match self.download_blob(&ctx, &digest, Some(size), store).await {
                            Ok(()) => return Ok(()),
                            Err(e @ Error::Store(_)) => return Err(e),
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(last.unwrap_or_else(|| Error::NotFound {
                        reference: reference.to_string(),
                    }))
                }
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
