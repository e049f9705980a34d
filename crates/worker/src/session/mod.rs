//! A build session: a Dockerfile on a context, through the frontend, the solver and this
//! worker, to an image in the store and the exports asked for. `kiln build` resolves its
//! flags into [`BuildOptions`] and drives the three phases; everything between the flags
//! and the rendering lives here.
//!
//! The phases follow BuildKit's (load the definition, solve, export):
//! 1. [`BuildSession::load`] converts the Dockerfile (FROM images through the caller's
//!    [`ImageResolver`]), applies `--no-cache-filter`, checks entitlements before anything
//!    runs, and imports `--cache-from` caches (a cache that cannot be read is a warning).
//! 2. [`BuildSession::solve`] runs the solver with the store's cache (see [`StoreCache`]);
//!    progress goes to the caller's channel as [`Event`]s. It is the only phase worth
//!    cancelling: the caller drops its future on a signal.
//! 3. [`SolvedBuild::export`] writes the image (history reconciled with the solved layers),
//!    names it, runs the exports and the `--cache-to` exports.
//!
//! What a user should see on the way (cache imports, pushes) goes to an [`Observer`] as
//! [`Notice`]s; the caller decides what to print.
//!
//! ```no_run
//! # async fn demo(
//! #     resources: kiln_worker::session::Resources,
//! #     opts: kiln_worker::session::BuildOptions,
//! #     resolver: &dyn kiln_frontend::ImageResolver,
//! # ) -> Result<(), kiln_worker::session::Error> {
//! use kiln_worker::session::{BuildSession, Notice, Observer};
//! use std::sync::Arc;
//!
//! struct Silent;
//! impl Observer for Silent {
//!     fn notice(&self, _: Notice<'_>) {}
//! }
//!
//! let session = BuildSession::load(resources, opts, resolver, Arc::new(Silent)).await?;
//! let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let progress = tokio::spawn(async move { while rx.recv().await.is_some() {} });
//! let solved = session.solve(Some(events)).await?;
//! let _ = progress.await;
//! let outcome = solved.export("2026-01-01T00:00:00Z").await?;
//! println!("{} ({} steps run)", outcome.image.config_digest, outcome.executed);
//! # Ok(())
//! # }
//! ```

mod cache;
mod entitlements;
mod error;
mod export;
mod history;

pub use cache::StoreCache;
pub use entitlements::{Entitlement, EntitlementError};
pub use error::Error;
pub use export::{push_image, Export, Outcome};
pub use history::reconcile as reconcile_history;
pub use kiln_opgraph::NetworkMode;
pub use kiln_solver::Event;

use crate::{BuildWorker, Output, WorkerConfig};
use kiln_cache::Store;
use kiln_frontend::{ImageResolver, NamedContext};
use kiln_oci::Reference;
use kiln_remotecache::{ExportSpec, Location};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What a session works with: the store, the registry client and the sandbox executor.
pub struct Resources {
    /// The store.
    pub store: Arc<Store>,
    /// The registry client (base images, pushes, registry caches).
    pub registry: kiln_registry::Client,
    /// The sandbox executor (RUN steps).
    pub executor: kiln_executor::Executor,
}

/// The Dockerfile of a build, read by the caller (it is needed before the session for
/// `--check`).
pub struct Dockerfile {
    /// Its text.
    pub text: String,
    /// Its file name for messages (`Dockerfile`).
    pub file_name: String,
    /// Where it was read from; `None` for stdin (its `.dockerignore` is then the context's).
    pub path: Option<PathBuf>,
}

/// The entitlements granted (`--allow`; `--network host` grants `network.host`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `security.insecure`: `RUN --security=insecure`.
    pub security_insecure: bool,
    /// `network.host`: `RUN --network=host`.
    pub network_host: bool,
}

/// The resolved form of `kiln build`'s flags.
pub struct BuildOptions {
    /// The context directory (absolute).
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: Dockerfile,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps.
    pub network: NetworkMode,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter` stages.
    pub no_cache_filter: Vec<String>,
    /// `--build-context`s (directories absolute).
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--secret` values by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--add-host` entries as `(name, ip)`.
    pub extra_hosts: Vec<(String, String)>,
    /// Granted entitlements.
    pub entitlements: Entitlements,
    /// `--jobs`: a strict bound of concurrent RUN steps; `None`: the solver's default.
    pub jobs: Option<usize>,
    /// `--cache-from` sources.
    pub cache_from: Vec<Location>,
    /// `--cache-to` destinations.
    pub cache_to: Vec<ExportSpec>,
    /// `-t` names.
    pub tags: Vec<Reference>,
    /// Whether the tags name the image in the local store.
    pub load: bool,
    /// `-o`/`--push` exports, in order.
    pub exports: Vec<Export>,
}

/// Something a user may want to know while a session works.
#[derive(Debug)]
#[non_exhaustive]
pub enum Notice<'a> {
    /// A `--cache-from` cache was imported.
    CacheImported {
        /// From where.
        from: &'a Location,
        /// How many records it holds.
        records: usize,
    },
    /// A `--cache-from` cache could not be read; the build goes on without it.
    CacheImportFailed {
        /// From where.
        from: &'a Location,
        /// Why.
        error: &'a kiln_remotecache::Error,
    },
    /// A step's result could not be recorded in the store's cache.
    CacheRecordFailed {
        /// Why.
        error: &'a kiln_cache::Error,
    },
    /// The image is being pushed.
    Pushing {
        /// As.
        reference: &'a Reference,
    },
    /// The build cache is being exported (`--cache-to`).
    CacheExporting {
        /// Where.
        to: &'a Location,
        /// How many records.
        records: usize,
    },
}

/// Receives [`Notice`]s (from any thread).
pub trait Observer: Send + Sync {
    /// Called once per notice, in the order things happen.
    fn notice(&self, notice: Notice<'_>);
}

/// A loaded build: the converted Dockerfile, a worker and the cache, ready to solve.
pub struct BuildSession {
    resources: Resources,
    opts: BuildOptions,
    build: kiln_frontend::Build,
    worker: Arc<BuildWorker>,
    cache: Arc<StoreCache>,
    observer: Arc<dyn Observer>,
}

/// A solved build, ready to export.
pub struct SolvedBuild {
    session: BuildSession,
    solved: kiln_solver::Solved<Output>,
}

impl BuildSession {
    /// Converts the Dockerfile, applies `--no-cache-filter`, checks entitlements and
    /// imports the `--cache-from` caches. Blocks the calling worker thread while the
    /// frontend resolves images (it runs on a multi-threaded runtime).
    ///
    /// # Errors
    /// A Dockerfile error ([`Error::Frontend`]) or an entitlement not granted
    /// ([`Error::Entitlement`]).
    pub async fn load(
        resources: Resources,
        opts: BuildOptions,
        resolver: &dyn ImageResolver,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, Error> {
        crate::context::use_stat_cache(resources.store.clone());
        let fe_opts = frontend_options(&opts);
        let mut build = tokio::task::block_in_place(|| {
            kiln_frontend::build(&opts.dockerfile.text, &fe_opts, resolver)
        })
        .map_err(Error::Frontend)?;
        no_cache_filter(&mut build.definition, &opts.no_cache_filter);
        // Before anything runs, as BuildKit checks them when it loads the definition.
        opts.entitlements.check(&build.definition)?;
        // Manifests and configs now, blobs when a hit is used.
        let mut imported = Vec::new();
        for from in &opts.cache_from {
            match kiln_remotecache::import(&resources.store, &resources.registry, from).await {
                Ok(c) => {
                    observer.notice(Notice::CacheImported {
                        from,
                        records: c.len(),
                    });
                    imported.push(Arc::new(c));
                }
                Err(error) => observer.notice(Notice::CacheImportFailed {
                    from,
                    error: &error,
                }),
            }
        }
        let worker = Arc::new(BuildWorker::new(worker_config(
            &resources,
            &opts,
            imported.clone(),
        )));
        let cache = Arc::new(StoreCache::new(
            resources.store.clone(),
            explain_scope(&opts),
            imported,
            observer.clone(),
        ));
        Ok(Self {
            resources,
            opts,
            build,
            worker,
            cache,
            observer,
        })
    }

    /// Solves the build; progress goes to `progress`, which is dropped when the solve
    /// ends. Imported results the build used are recorded locally, so the next build on
    /// this machine hits them without `--cache-from`.
    ///
    /// # Errors
    /// A step failed ([`Error::Run`], [`Error::Step`]) or the graph is invalid
    /// ([`Error::Solve`]).
    pub async fn solve(
        self,
        progress: Option<UnboundedSender<Event>>,
    ) -> Result<SolvedBuild, Error> {
        let solve_opts = match self.opts.jobs {
            Some(n) => kiln_solver::SolveOptions::strict(n),
            None => kiln_solver::SolveOptions::default(),
        };
        let solved = kiln_solver::solve(
            &self.build.definition,
            self.worker.clone(),
            self.cache.clone(),
            progress,
            &solve_opts,
        )
        .await
        .map_err(Error::from_solve)?;
        self.cache.keep_imported_hits(&solved);
        Ok(SolvedBuild {
            session: self,
            solved,
        })
    }
}

/// The frontend's options from the session's.
fn frontend_options(opts: &BuildOptions) -> kiln_frontend::BuildOptions {
    let ignore_text = opts
        .dockerfile
        .path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(format!("{}.dockerignore", p.display())).ok())
        .or_else(|| std::fs::read_to_string(opts.context.join(".dockerignore")).ok())
        .unwrap_or_default();
    kiln_frontend::BuildOptions {
        file_name: opts.dockerfile.file_name.clone(),
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        labels: opts.labels.clone(),
        network: opts.network,
        excludes: kiln_opgraph::pattern::parse_dockerignore(&ignore_text),
        no_cache: opts.no_cache,
        named_contexts: opts.named_contexts.clone(),
    }
}

fn worker_config(
    resources: &Resources,
    opts: &BuildOptions,
    imported: Vec<Arc<kiln_remotecache::Imported>>,
) -> WorkerConfig {
    WorkerConfig {
        store: resources.store.clone(),
        registry: resources.registry.clone(),
        executor: resources.executor.clone(),
        locals: opts
            .named_contexts
            .iter()
            .filter_map(|(n, c)| match c {
                NamedContext::Dir(d) => Some((n.clone(), d.clone())),
                NamedContext::Image(_) => None,
            })
            .chain([("context".to_string(), opts.context.clone())])
            .collect(),
        hostname: "kiln".into(),
        secrets: opts.secrets.clone(),
        allow_insecure: opts.entitlements.security_insecure,
        allow_network_host: opts.entitlements.network_host,
        extra_hosts: opts.extra_hosts.clone(),
        imported,
    }
}

/// Explanations compare a step with the previous build of the same step in the same
/// project: context dir, Dockerfile and target.
fn explain_scope(opts: &BuildOptions) -> String {
    format!(
        "{}\0{}\0{}",
        opts.context.display(),
        opts.dockerfile
            .path
            .as_ref()
            .map_or_else(|| "-".into(), |p| p.display().to_string()),
        opts.target.as_deref().unwrap_or("")
    )
}

/// `--no-cache-filter STAGE`: the steps of those stages ignore the cache. Coupled to the
/// frontend's display names: a stage's steps are named `[STAGE n/m] …` (`stage-N` for
/// unnamed non-target stages).
fn no_cache_filter(def: &mut kiln_opgraph::Definition, stages: &[String]) {
    if stages.is_empty() {
        return;
    }
    let prefixes: Vec<String> = stages
        .iter()
        .map(|s| format!("[{} ", s.to_ascii_lowercase()))
        .collect();
    for v in def.vertices.values_mut() {
        let name = v.meta.name.to_ascii_lowercase();
        if prefixes.iter().any(|p| name.starts_with(p)) {
            v.meta.ignore_cache = true;
        }
    }
}
