//! kiln's worker: the one crate that knows both the ops ([`kiln_opgraph`]) and the solver
//! ([`kiln_solver`]). It implements [`kiln_solver::Worker`] on the local store
//! ([`kiln_cache::Store`]), the registry client and the executor.
//!
//! A vertex's result is an [`Output`]: a filesystem as a chain of layers (bottom first), or a
//! named host directory (a build context). Filesystem-changing ops (RUN, COPY/ADD, WORKDIR)
//! run on an overlay of the input's layer snapshots with a fresh upper dir; the upper dir is
//! then diffed into a new layer. RUN goes through the executor's sandbox; file ops run on a
//! thread of their own (see [`fileop`]) that mounts the overlay in a private mount namespace,
//! so a killed build never leaves a mount behind.
#![deny(missing_docs)]

pub mod context;
mod exec;
pub mod fileop;
mod http;
mod record;
pub mod session;

pub use record::record_layers;

use kiln_cache::Store;
use kiln_executor::Executor;
use kiln_oci::Layer;
use kiln_opgraph::{Op, Vertex};
use kiln_solver::{BoxError, ExecContext};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

/// Version of what the ops do (see [`kiln_solver::Worker::semantics_version`]). Bump it in
/// any commit that changes an op's result for the same definition.
pub const SEMANTICS_VERSION: &str = "kiln-worker-3";

/// A vertex's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// A filesystem: layers, bottom first.
    Layers(Vec<Layer>),
    /// A host directory, by local source name, with the `.dockerignore` patterns that hide
    /// files in it (never cached).
    Local {
        /// Local source name.
        name: String,
        /// Exclude patterns.
        exclude: Vec<String>,
    },
}

impl Output {
    /// The layer chain (empty for a local source).
    pub fn layers(&self) -> &[Layer] {
        match self {
            Output::Layers(l) => l,
            Output::Local { .. } => &[],
        }
    }
}

/// A RUN step that exited non-zero.
#[derive(Debug, thiserror::Error)]
#[error("process \"{}\" did not complete successfully: exit code: {exit_code}", command.join(" "))]
pub struct ExecFailed {
    /// argv.
    pub command: Vec<String>,
    /// Its exit code.
    pub exit_code: i32,
    /// The last lines of its output (stdout and stderr interleaved).
    pub tail: Vec<String>,
}

/// A user error in a build step (a missing COPY source, a bad --chown user): exit status 1,
/// no output tail.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

/// How the worker reaches the outside world.
pub struct WorkerConfig {
    /// The store.
    pub store: Arc<Store>,
    /// The registry client (for pulling base image layers).
    pub registry: kiln_registry::Client,
    /// The sandbox executor.
    pub executor: Executor,
    /// Local sources by name (`context` and `--build-context` dirs).
    pub locals: BTreeMap<String, PathBuf>,
    /// Hostname of RUN sandboxes.
    pub hostname: String,
    /// `--secret` values by id (for `RUN --mount=type=secret`).
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--allow security.insecure`.
    pub allow_insecure: bool,
    /// `--add-host` entries for the `/etc/hosts` of RUN steps, as `(name, ip)`.
    pub extra_hosts: Vec<(String, String)>,
    /// `--allow network.host` (or `kiln build --network host`, which grants it as buildx does).
    pub allow_network_host: bool,
    /// Caches imported with `--cache-from`: their blobs are fetched when a step that hit
    /// one of their records is needed.
    pub imported: Vec<Arc<kiln_remotecache::Imported>>,
}

/// The worker.
pub struct BuildWorker {
    cfg: WorkerConfig,
}

impl BuildWorker {
    /// A worker.
    pub fn new(cfg: WorkerConfig) -> Self {
        Self { cfg }
    }

    fn local_dir(&self, name: &str) -> Result<&PathBuf, BoxError> {
        self.cfg
            .locals
            .get(name)
            .ok_or_else(|| format!("no local source named `{name}` was given").into())
    }

    /// Large files of a context dir that the stat cache has hashed, with the committed
    /// files holding the same content (see the file pool in [`fileop`]).
    fn pool_hints(&self, dir: &std::path::Path) -> Vec<fileop::PoolHint> {
        let store = &self.cfg.store;
        let known = store
            .stat_cache_get_large(&dir.to_string_lossy(), fileop::POOL_MIN_SIZE)
            .unwrap_or_default();
        known
            .into_iter()
            .map(|(rel, entry)| fileop::PoolHint {
                candidates: store.file_pool_get(&entry.hash).unwrap_or_default(),
                rel,
                entry,
            })
            .collect()
    }

    fn lowers(&self, layers: &[Layer]) -> Result<Vec<PathBuf>, BoxError> {
        let mut v = Vec::with_capacity(layers.len());
        for l in layers.iter().rev() {
            v.push(self.cfg.store.snapshot(l)?);
        }
        Ok(v)
    }

    async fn image(&self, reference: &str, digest: &str) -> Result<Output, BoxError> {
        let store = &self.cfg.store;
        let manifest: kiln_oci::spec::ImageManifest = if store.has_blob(digest) {
            serde_json::from_slice(&store.read_blob(digest)?)?
        } else {
            let r = kiln_oci::Reference::parse(reference)?;
            let r = kiln_oci::Reference {
                tag: None,
                digest: Some(digest.into()),
                ..r
            };
            self.cfg.registry.resolve(&r, store).await?.manifest
        };
        let config: kiln_oci::spec::ImageConfiguration =
            serde_json::from_slice(&store.read_blob(manifest.config().digest().as_ref())?)?;
        let layers = kiln_oci::image::image_layers(&manifest, config.rootfs().diff_ids())
            .map_err(|e| format!("image {reference}: {e}"))?;
        // A local image built here holds its build steps' layers as snapshots, not blobs.
        if layers.iter().any(|l| !store.layer_available(l)) {
            let r = kiln_oci::Reference::parse(reference)?;
            self.cfg.registry.fetch_layers(&r, &manifest, store).await?;
        }
        Ok(Output::Layers(layers))
    }

    /// Runs a file op; `op` is its vertex digest, which stays the same when only the
    /// content of its sources changes: the layer it made last time lends its unchanged
    /// files (see the fileop module).
    async fn file(
        &self,
        op: &str,
        f: &kiln_opgraph::FileOp,
        inputs: Vec<Output>,
    ) -> Result<Output, BoxError> {
        let store = self.cfg.store.clone();
        let mut it = inputs.into_iter();
        let base = it.next().ok_or("file op without a base")?;
        let base_layers = base.layers().to_vec();
        let tmp = store.temp_dir("file-")?;
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        let mut actions = Vec::new();
        for a in &f.actions {
            match a {
                kiln_opgraph::FileAction::Copy(c) => {
                    let src = it.next().ok_or("copy without a source")?;
                    let source = match &src {
                        Output::Local { name, exclude } => {
                            let path = self.local_dir(name)?.clone();
                            fileop::Source::Dir {
                                pool: self.pool_hints(&path),
                                path,
                                exclude: exclude.clone(),
                            }
                        }
                        Output::Layers(l) => fileop::Source::Layers(self.lowers(l)?),
                    };
                    actions.push(fileop::Action::Copy {
                        copy: c.clone(),
                        source,
                    });
                }
                other => actions.push(fileop::Action::Op(other.clone())),
            }
        }
        let spec = fileop::Spec {
            lowers: self.lowers(&base_layers)?,
            upper: upper.clone(),
            work,
            scratch: tmp.path().to_path_buf(),
            actions,
            previous: store.last_result(op).ok().flatten(),
        };
        let report = fileop::run(spec).await?;
        let op = op.to_string();
        let layer = tokio::task::spawn_blocking(move || -> Result<_, kiln_cache::Error> {
            let layer = store.commit_upper(&upper)?;
            if let Some(l) = &layer {
                // Optimisations: failing to record them must not fail the step.
                let _ = store.file_pool_put(&l.diff_id, &report.pooled);
                let _ = store.set_last_result(&op, &l.diff_id);
            }
            Ok(layer)
        })
        .await??;
        drop(tmp);
        let mut chain = base_layers;
        chain.extend(layer);
        Ok(Output::Layers(chain))
    }
}

#[async_trait::async_trait]
impl kiln_solver::Worker for BuildWorker {
    type Output = Output;

    async fn content_key(&self, vertex: &Vertex) -> Result<Option<String>, BoxError> {
        match &vertex.op {
            Op::Local {
                name,
                include,
                exclude,
            } => {
                let dir = self.local_dir(name)?.clone();
                let (include, exclude) = (include.clone(), exclude.clone());
                let key = tokio::task::spawn_blocking(move || {
                    context::checksum(&dir, &include, &exclude)
                })
                .await??;
                Ok(Some(key))
            }
            // ADD <url>: the --checksum, or else what the URL serves now (its content and
            // Last-Modified, which becomes the file's mtime). Without a checksum the file is
            // fetched here and again when the step runs.
            Op::Http { url, checksum, .. } => {
                if let Some(c) = checksum {
                    Ok(Some(format!("checksum:{c}")))
                } else {
                    let tmp = self.cfg.store.temp_dir("http-key-")?;
                    let got = http::download(url, None, &tmp.path().join("body")).await?;
                    let mtime = got
                        .last_modified
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs());
                    Ok(Some(format!("content:{}:{mtime:?}", got.digest)))
                }
            }
            _ => Ok(None),
        }
    }

    fn semantics_version(&self) -> &str {
        SEMANTICS_VERSION
    }

    fn cacheable(&self, vertex: &Vertex) -> bool {
        !matches!(vertex.op, Op::Local { .. })
    }

    fn heavy(&self, vertex: &Vertex) -> bool {
        matches!(vertex.op, Op::Exec(_))
    }

    async fn restore(&self, output: &Output) -> bool {
        for cache in &self.cfg.imported {
            match cache
                .fetch(&self.cfg.store, &self.cfg.registry, output.layers())
                .await
            {
                Ok(true) => return true,
                Ok(false) => {}
                // A cache that cannot deliver is a miss, not a failure: the step runs.
                Err(e) => eprintln!("warning: fetching from the imported cache failed: {e}"),
            }
        }
        false
    }

    fn usable(&self, output: &Output) -> bool {
        output
            .layers()
            .iter()
            .all(|l| self.cfg.store.layer_available(l))
    }

    async fn exec(
        &self,
        ctx: &ExecContext,
        vertex: &Vertex,
        inputs: Vec<Output>,
    ) -> Result<Output, BoxError> {
        match &vertex.op {
            Op::Scratch => Ok(Output::Layers(vec![])),
            Op::Image { reference, digest } => self.image(reference, digest).await,
            Op::Local { name, exclude, .. } => {
                self.local_dir(name)?;
                Ok(Output::Local {
                    name: name.clone(),
                    exclude: exclude.clone(),
                })
            }
            Op::Http {
                url,
                checksum,
                filename,
            } => self.http(url, checksum.as_deref(), filename).await,
            Op::Exec(e) => self.run_exec(ctx, e, inputs).await,
            Op::File(f) => self.file(&ctx.vertex().0, f, inputs).await,
        }
    }
}

/// The last `n` lines of a byte stream.
pub(crate) struct Tail {
    n: usize,
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn new(n: usize) -> Self {
        Self {
            n,
            lines: VecDeque::new(),
            partial: Vec::new(),
        }
    }
    pub(crate) fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(line);
                if self.lines.len() > self.n {
                    self.lines.pop_front();
                }
            } else {
                self.partial.push(b);
            }
        }
    }
    pub(crate) fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.lines.push_back(line);
            if self.lines.len() > self.n {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tail_keeps_last_lines() {
        let mut t = Tail::new(2);
        t.push(b"a\nb\nc");
        t.push(b"d\ne");
        assert_eq!(t.lines(), vec!["cd", "e"]);
    }
}
