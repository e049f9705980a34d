//! The last phase: the image in the store, its names, the exports and the cache exports.

use super::{history, Error, Notice, SolvedBuild};
use crate::Output;
use kiln_cache::Store;
use kiln_exporter::{layout, Compress, StoredImage};
use kiln_oci::Reference;
use kiln_opgraph::VertexDigest;
use kiln_solver::CacheStorage as _;
use std::path::PathBuf;

/// One `-o` (or `--push`) export; the name-to-variant choice is the caller's.
#[derive(Clone, Debug)]
pub enum Export {
    /// An OCI (or Docker) image layout, as a tar or a directory.
    Layout {
        /// OCI or Docker.
        format: layout::Format,
        /// Where.
        dest: PathBuf,
        /// A directory instead of a tar (`tar=false`).
        dir: bool,
        /// Layer compression.
        compress: Compress,
    },
    /// The result's filesystem as a directory.
    Local(PathBuf),
    /// The result's filesystem as a tar.
    Tar(PathBuf),
    /// The image under names in the store, optionally pushed.
    Image {
        /// Comma-separated references (`name=`); `None`: the tags.
        name: Option<String>,
        /// Push each name.
        push: bool,
        /// Layer compression for the push.
        compress: Compress,
    },
}

/// What a finished build produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The image in the store.
    pub image: StoredImage,
    /// The manifest digest of the last push (layers compressed), which is what the
    /// registry knows the image by.
    pub pushed: Option<String>,
    /// How many steps ran.
    pub executed: u32,
    /// How many came from the cache.
    pub cached: u32,
}

impl SolvedBuild {
    /// Writes the image (`created` is its creation time, RFC 3339), names it, runs the
    /// exports in order and then the `--cache-to` exports.
    ///
    /// # Errors
    /// The first export that failed; an invalid or missing `name=` is
    /// [`Error::is_usage`].
    pub async fn export(self, created: &str) -> Result<Outcome, Error> {
        let image = self.store_image(created)?;
        let s = &self.session;
        let store = &s.resources.store;
        if s.opts.load {
            for t in &s.opts.tags {
                store.set_image(&t.to_string(), &image.manifest_digest)?;
            }
        }
        let layers = self.solved.root.layers();
        let first_name = s.opts.tags.first().map(ToString::to_string);
        let mut pushed = None;
        for e in &s.opts.exports {
            match e {
                Export::Layout {
                    format,
                    dest,
                    dir,
                    compress,
                } => layout::write(
                    store,
                    &image,
                    first_name.as_deref(),
                    *format,
                    dest,
                    *dir,
                    *compress,
                )?,
                Export::Local(d) => kiln_exporter::rootfs::write_dir(store, layers, d)?,
                Export::Tar(d) => kiln_exporter::rootfs::write_tar(store, layers, d)?,
                Export::Image {
                    name,
                    push,
                    compress,
                } => {
                    if let Some(p) = self
                        .name_and_push(&image, name.as_deref(), *push, *compress)
                        .await?
                    {
                        pushed = Some(p);
                    }
                }
            }
        }
        for spec in &s.opts.cache_to {
            let records = s
                .cache
                .export_records(&s.build.definition, &self.solved, spec.max);
            s.observer.notice(Notice::CacheExporting {
                to: &spec.to,
                records: records.len(),
            });
            kiln_remotecache::export(store, &s.resources.registry, &spec.to, records)
                .await
                .map_err(|source| Error::CacheExport {
                    to: Box::new(spec.to.clone()),
                    source: Box::new(source),
                })?;
        }
        Ok(Outcome {
            image,
            pushed,
            executed: self.solved.executed,
            cached: self.solved.cached,
        })
    }

    /// The image: config + history (`empty_layer` decided from the solved layer counts).
    fn store_image(&self, created: &str) -> Result<StoredImage, Error> {
        let s = &self.session;
        let output = |d: &VertexDigest| -> Option<Output> {
            self.solved.outputs.get(d).cloned().or_else(|| {
                let key = self.solved.keys.get(d)?;
                serde_json::from_slice(&s.cache.get(key)?).ok()
            })
        };
        let history = history::reconcile(&s.build.history, &s.build.definition, output);
        let mut config = serde_json::to_value(&s.build.config).map_err(Error::ImageConfig)?;
        if let Some(obj) = config.as_object_mut() {
            obj.remove("rootfs");
            // What oci-spec's config cannot hold (Healthcheck, Shell, OnBuild) comes beside it.
            let inner = obj.entry("config").or_insert_with(|| serde_json::json!({}));
            if let Some(inner) = inner.as_object_mut() {
                for (k, v) in &s.build.extra_config {
                    inner.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(kiln_exporter::store_image(
            &s.resources.store,
            config,
            &history,
            self.solved.root.layers(),
            created,
        )?)
    }

    /// `type=image`: the names (`name=`, else the tags) in the store, each pushed when
    /// asked; the last push's manifest digest.
    async fn name_and_push(
        &self,
        image: &StoredImage,
        name: Option<&str>,
        push: bool,
        compress: Compress,
    ) -> Result<Option<String>, Error> {
        let s = &self.session;
        let names: Vec<Reference> = match name {
            Some(n) => n
                .split(',')
                .map(Reference::parse)
                .collect::<Result<_, _>>()?,
            None => s.opts.tags.clone(),
        };
        if names.is_empty() {
            return Err(Error::NoImageName);
        }
        let mut pushed = None;
        for n in &names {
            s.resources
                .store
                .set_image(&n.to_string(), &image.manifest_digest)?;
            if push {
                s.observer.notice(Notice::Pushing { reference: n });
                pushed = Some(
                    push_image(
                        &s.resources.store,
                        &s.resources.registry,
                        image,
                        n,
                        compress,
                    )
                    .await?,
                );
            }
        }
        Ok(pushed)
    }
}

/// Pushes `image` as `reference`, its layers compressed as `compress` says; returns the
/// pushed manifest's digest.
///
/// # Errors
/// Compressing the layers or the push failed.
pub async fn push_image(
    store: &std::sync::Arc<Store>,
    registry: &kiln_registry::Client,
    image: &StoredImage,
    reference: &Reference,
    compress: Compress,
) -> Result<String, Error> {
    let (s, image) = (store.clone(), image.clone());
    let out =
        tokio::task::spawn_blocking(move || kiln_exporter::distributable(&s, &image, compress))
            .await??;
    Ok(registry
        .push(store, &out.manifest_digest, reference)
        .await?)
}
