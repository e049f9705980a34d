//! `kiln build`.

use crate::progress;
use crate::util::{now_rfc3339, Env, Failure};
use clap::Args;
use kiln_cache::Compression;
use kiln_exporter::{Compress, HistoryEntry};
use kiln_frontend::{ErrorKind, ImageResolver, ResolveError, ResolvedImage};
use kiln_oci::Reference;
use kiln_opgraph::{NetworkMode, Op, VertexDigest};
use kiln_worker::{BuildWorker, Output, WorkerConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub(crate) struct BuildArgs {
    /// Build context directory.
    context: PathBuf,
    /// Dockerfile (default CONTEXT/Dockerfile; `-` reads stdin).
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Name (and tag) for the image; repeatable.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Build-time variable K=V (or K, taken from the environment); repeatable.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Stage to build.
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// Do not use the cache for the steps of this stage (repeatable).
    #[arg(long = "no-cache-filter")]
    no_cache_filter: Vec<String>,
    /// Say why each step that runs could not come from the cache (what changed since the
    /// previous build of the same step).
    #[arg(long)]
    explain: bool,
    /// Always look up base images in their registry.
    #[arg(long)]
    pull: bool,
    /// Label K=V for the image; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Network for RUN steps.
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    network: String,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: progress::Mode,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Output: type=oci|docker|local|tar|image,dest=PATH|name=REF[,push=true][,tar=false]
    /// [,compression=gzip|zstd|uncompressed][,compression-level=N].
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Push the image (shorthand for type=image,push=true).
    #[arg(long)]
    push: bool,
    /// Load the result into the local image store (default with -t).
    #[arg(long)]
    load: bool,
    /// Write the image ID to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Write build metadata (JSON) to this file.
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// Concurrent RUN steps. Default: the number of CPUs, and up to four times as many
    /// while CPUs sit idle (steps that sleep or wait on I/O); a given number is a strict
    /// bound.
    #[arg(long)]
    jobs: Option<usize>,
    /// Import build cache exported by `--cache-to` on this or another machine
    /// (type=registry,ref=REF | type=local,src=DIR | REF); repeatable.
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Export the build cache (type=registry,ref=REF | type=local,dest=DIR), with
    /// mode=min (default: the final image's steps) or mode=max (every step); repeatable.
    #[arg(long = "cache-to")]
    cache_to: Vec<String>,
    /// Allow an entitlement: `security.insecure` (RUN --security=insecure) or `network.host`.
    #[arg(long = "allow", value_parser = ["security.insecure", "network.host"])]
    allow: Vec<String>,
    /// Target platform (only the native linux/amd64).
    #[arg(long)]
    platform: Option<String>,
    /// Only run the Dockerfile checks (BuildKit's build checks) and print the warnings.
    #[arg(long)]
    check: bool,
    /// Extra named context NAME=DIR or NAME=docker-image://REF; repeatable.
    #[arg(long = "build-context")]
    build_contexts: Vec<String>,
    /// Add a line to /etc/hosts of RUN steps: NAME:IP (or NAME=IP); repeatable.
    #[arg(long = "add-host")]
    add_hosts: Vec<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR; repeatable.
    #[arg(long = "secret")]
    secrets: Vec<String>,
}

/// Resolves FROM images: the local store first (unless --pull), then the registry.
struct Resolver<'a> {
    env: &'a Env,
    pull: bool,
    handle: tokio::runtime::Handle,
}

impl ImageResolver for Resolver<'_> {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError> {
        let r = Reference::parse(reference).map_err(ResolveError::new)?;
        let store = &self.env.store;
        if !self.pull {
            if let Some(rec) = store.get_image(&r.to_string()).map_err(ResolveError::new)? {
                let cfg = kiln_exporter::image_config(store, &rec.manifest_digest)
                    .map_err(ResolveError::new)?;
                let onbuild = onbuild_triggers(&cfg);
                let config = serde_json::from_value(cfg).map_err(ResolveError::new)?;
                return Ok(ResolvedImage {
                    reference: r.to_string(),
                    digest: rec.manifest_digest,
                    config,
                    onbuild,
                });
            }
        }
        let pulled = tokio::task::block_in_place(|| {
            self.handle.block_on(self.env.registry.resolve(&r, store))
        })
        .map_err(ResolveError::new)?;
        // oci-spec's config drops OnBuild: read it from the raw config blob.
        let onbuild = store
            .read_blob(pulled.manifest.config().digest().as_ref())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| onbuild_triggers(&v))
            .unwrap_or_default();
        Ok(ResolvedImage {
            reference: r.to_string(),
            digest: pulled.manifest_digest,
            config: pulled.config,
            onbuild,
        })
    }
}

/// `config.OnBuild` of a raw image config.
fn onbuild_triggers(cfg: &serde_json::Value) -> Vec<String> {
    cfg["config"]["OnBuild"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

enum Export {
    Layout {
        format: kiln_exporter::layout::Format,
        dest: PathBuf,
        dir: bool,
        compress: Compress,
    },
    Local(PathBuf),
    Tar(PathBuf),
    Image {
        name: Option<String>,
        push: bool,
        compress: Compress,
    },
}

fn parse_output(s: &str) -> Result<Export, Failure> {
    if s.trim().is_empty() {
        return Err(Failure::usage(
            "-o/--output needs a value: type=TYPE[,dest=PATH|name=REF][,…], or a directory",
        ));
    }
    let mut kv = BTreeMap::new();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').unwrap_or(("dest", part));
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let typ = kv.get("type").cloned().unwrap_or_else(|| "local".into());
    let compression = match kv.get("compression") {
        None => Compression::Gzip,
        Some(c) => Compression::parse(c).ok_or_else(|| {
            Failure::usage(format!(
                "output compression `{c}`: use gzip, zstd or uncompressed"
            ))
        })?,
    };
    let level = match kv.get("compression-level") {
        None => None,
        Some(l) => Some(l.parse::<i32>().map_err(|_| {
            Failure::usage(format!("output compression-level `{l}`: not a number"))
        })?),
    };
    let dest = || {
        kv.get("dest")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| Failure::usage(format!("output type={typ} needs dest=PATH")))
    };
    Ok(match typ.as_str() {
        "oci" | "docker" => Export::Layout {
            format: if typ == "oci" {
                kiln_exporter::layout::Format::Oci
            } else {
                kiln_exporter::layout::Format::Docker
            },
            dest: dest()?,
            dir: kv.get("tar").is_some_and(|t| t == "false"),
            compress: Compress { compression, level },
        },
        "local" => Export::Local(dest()?),
        "tar" => Export::Tar(dest()?),
        "image" | "registry" => Export::Image {
            name: kv.get("name").cloned(),
            push: typ == "registry" || kv.get("push").is_some_and(|p| p == "true"),
            compress: Compress { compression, level },
        },
        other => {
            return Err(Failure::usage(format!(
                "unknown output type `{other}` (use oci, docker, local, tar, image or registry)"
            )))
        }
    })
}

/// Parses `--build-context NAME=DIR|docker-image://REF` values (directories made absolute).
pub(crate) fn parse_build_contexts(
    items: &[String],
) -> Result<BTreeMap<String, kiln_frontend::NamedContext>, Failure> {
    let mut m = BTreeMap::new();
    for i in items {
        let Some((name, value)) = i.split_once('=') else {
            return Err(Failure::usage(format!(
                "--build-context `{i}`: expected NAME=DIR or NAME=docker-image://REF"
            )));
        };
        if name.is_empty() || name == "context" {
            return Err(Failure::usage(format!(
                "--build-context `{i}`: invalid context name `{name}`"
            )));
        }
        let ctx = if let Some(r) = value.strip_prefix("docker-image://") {
            Reference::parse(r)
                .map_err(|e| Failure::usage(format!("--build-context {name}: {e}")))?;
            kiln_frontend::NamedContext::Image(r.to_string())
        } else if value.contains("://") || value.starts_with("target:") {
            return Err(Failure::usage(format!(
                "--build-context {name}={value}: only directories and docker-image:// references are supported"
            )));
        } else {
            let dir = std::fs::canonicalize(value)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| {
                    Failure::usage(format!("--build-context {name}={value}: not a directory"))
                })?;
            kiln_frontend::NamedContext::Dir(dir)
        };
        m.insert(name.to_string(), ctx);
    }
    Ok(m)
}

/// Parses `--secret id=ID[,src=FILE|,env=VAR]` values into each secret's content (read now,
/// so a missing file is a usage error before any work). Without `src`/`env`, the
/// environment variable named ID is used. For `WorkerConfig.secrets`.
pub(crate) fn parse_secrets(items: &[String]) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    let mut m = BTreeMap::new();
    for i in items {
        let mut kv = BTreeMap::new();
        for part in i.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Failure::usage(format!("--secret `{i}`: `{part}` is not KEY=VALUE"))
            })?;
            kv.insert(k.trim().to_string(), v.to_string());
        }
        let id = kv
            .get("id")
            .cloned()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Failure::usage(format!("--secret `{i}`: id=ID is required")))?;
        let typ = kv.get("type").map(String::as_str);
        let src = kv.get("src").or_else(|| kv.get("source"));
        let value = match (typ, src, kv.get("env")) {
            (Some("env"), s, e) | (None, s @ None, e @ Some(_)) => {
                let var = e.or(s).cloned().unwrap_or_else(|| id.clone());
                std::env::var_os(&var)
                    .map(std::ffi::OsString::into_encoded_bytes)
                    .ok_or_else(|| {
                        Failure::usage(format!(
                            "--secret id={id}: environment variable {var} is not set"
                        ))
                    })?
            }
            (Some("file") | None, Some(f), _) => std::fs::read(f)
                .map_err(|e| Failure::usage(format!("--secret id={id}: {f}: {e}")))?,
            (None, None, None) => std::env::var_os(&id)
                .map(std::ffi::OsString::into_encoded_bytes)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--secret id={id}: give src=FILE or env=VAR (no environment variable {id} either)"
                    ))
                })?,
            (Some(t), _, _) => {
                return Err(Failure::usage(format!(
                    "--secret `{i}`: unknown type `{t}` (use file or env)"
                )))
            }
        };
        m.insert(id, value);
    }
    Ok(m)
}

/// `kiln build --check`: prints BuildKit's build-check warnings; exit status 1 when the
/// Dockerfile asks for it (`# check=error=true`) and there are warnings.
fn check(dockerfile: &str, file_name: &str) -> Result<u8, Failure> {
    let warnings = kiln_frontend::lint::lint(dockerfile, file_name).map_err(frontend_failure)?;
    for w in &warnings {
        eprintln!(
            "{w}
"
        );
    }
    let n = warnings.len();
    if n == 0 {
        eprintln!("Check complete, no warnings found.");
        return Ok(0);
    }
    let msg = format!(
        "Check complete, {n} warning{} found!",
        if n == 1 { " has been" } else { "s have been" }
    );
    if kiln_frontend::lint::check_directive(dockerfile).error {
        return Err(Failure::new(1, msg));
    }
    eprintln!("{msg}");
    Ok(0)
}

fn key_values(items: &[String], from_env: bool) -> Result<BTreeMap<String, String>, Failure> {
    let mut m = BTreeMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => {
                m.insert(k.to_string(), v.to_string());
            }
            None if from_env => {
                if let Ok(v) = std::env::var(i) {
                    m.insert(i.clone(), v);
                }
            }
            None => {
                return Err(Failure::usage(format!(
                    "`{i}` is not of the form KEY=VALUE"
                )))
            }
        }
    }
    Ok(m)
}

fn frontend_failure(e: kiln_frontend::Error) -> Failure {
    let mut msg = format!("{}:{}", e.file, e.line);
    if e.column > 0 {
        msg.push_str(&format!(":{}", e.column));
    }
    msg.push_str(&format!(": {}", e.message));
    if let Some(src) = &e.source_line {
        // A hostile line can be megabytes long: show its start.
        let shown: String = src.chars().take(200).collect();
        let more = if shown.len() < src.len() { "…" } else { "" };
        msg.push_str(&format!("\n  {} | {shown}{more}", e.line));
    }
    if let Some(h) = &e.hint {
        msg.push_str(&format!("\nhint: {h}"));
    }
    Failure::new(if e.kind == ErrorKind::Resolve { 1 } else { 2 }, msg)
}

pub(crate) async fn build(env: &Env, a: BuildArgs) -> Result<u8, Failure> {
    let started = std::time::Instant::now();
    // Usage errors first, before any work.
    let cache_usage = |e: kiln_remotecache::Error| Failure::usage(e.to_string());
    let cache_from = a
        .cache_from
        .iter()
        .map(|c| kiln_remotecache::parse_from(c).map_err(cache_usage))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = a
        .cache_to
        .iter()
        .map(|c| kiln_remotecache::ExportSpec::parse(c).map_err(cache_usage))
        .collect::<Result<Vec<_>, _>>()?;
    let extra_hosts = crate::util::parse_add_hosts(&a.add_hosts)?;
    let mut exports = a
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<Vec<_>, _>>()?;
    if a.push {
        exports.push(Export::Image {
            name: None,
            push: true,
            compress: Compress::default(),
        });
    }
    let tags: Vec<Reference> = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<_, _>>()?;
    if let Some(p) = &a.platform {
        if p != "linux/amd64" {
            return Err(Failure::usage(format!(
                "platform {p} is not supported: kiln builds for linux/amd64 only"
            )));
        }
    }
    // Held for the whole build: a prune (exclusive) waits, so it never removes what this
    // build wrote but has not recorded yet.
    let gc_lock = env.store.lock_gc_shared()?;
    kiln_worker::context::use_stat_cache(env.store.clone());
    let context = std::fs::canonicalize(&a.context).map_err(|e| {
        Failure::new(
            1,
            format!("unable to prepare context: {}: {e}", a.context.display()),
        )
    })?;
    if !context.is_dir() {
        return Err(Failure::new(
            1,
            format!(
                "unable to prepare context: {} is not a directory",
                context.display()
            ),
        ));
    }
    let (dockerfile, file_name, dockerfile_path) = match a.file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
                Failure::new(1, format!("cannot read the Dockerfile from stdin: {e}"))
            })?;
            (s, "Dockerfile".to_string(), None)
        }
        f => {
            let p = f.map_or_else(|| context.join("Dockerfile"), PathBuf::from);
            let s = std::fs::read_to_string(&p).map_err(|e| {
                Failure::new(
                    1,
                    format!("failed to read dockerfile: {}: {e}", p.display()),
                )
            })?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (s, name, Some(p))
        }
    };
    if a.check {
        return check(&dockerfile, &file_name);
    }
    let named_contexts = parse_build_contexts(&a.build_contexts)?;
    let secrets = parse_secrets(&a.secrets)?;
    let ignore_text = dockerfile_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(format!("{}.dockerignore", p.display())).ok())
        .or_else(|| std::fs::read_to_string(context.join(".dockerignore")).ok())
        .unwrap_or_default();
    let excludes = kiln_opgraph::pattern::parse_dockerignore(&ignore_text);
    let opts = kiln_frontend::BuildOptions {
        file_name: file_name.clone(),
        build_args: key_values(&a.build_args, true)?,
        target: a.target.clone(),
        labels: key_values(&a.labels, false)?,
        network: match a.network.as_str() {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Default,
        },
        excludes,
        no_cache: a.no_cache,
        named_contexts: named_contexts.clone(),
    };
    let resolver = Resolver {
        env,
        pull: a.pull,
        handle: tokio::runtime::Handle::current(),
    };
    let mut fe =
        tokio::task::block_in_place(|| kiln_frontend::build(&dockerfile, &opts, &resolver))
            .map_err(frontend_failure)?;
    no_cache_filter(&mut fe.definition, &a.no_cache_filter);
    // Entitlements, before anything runs (BuildKit checks them when it loads the
    // definition). `--network host` grants network.host, as buildx does.
    let allow_insecure = a.allow.iter().any(|x| x == "security.insecure");
    let allow_network_host = a.network == "host" || a.allow.iter().any(|x| x == "network.host");
    if let Err((d, msg)) =
        kiln_worker::check_entitlements(&fe.definition, allow_insecure, allow_network_host)
    {
        let v = &fe.definition.vertices[&d];
        let at = v
            .meta
            .location
            .as_ref()
            .map(|l| format!("{}:{}: ", l.file, l.line))
            .unwrap_or_default();
        let flag = msg.split(' ').next().unwrap_or_default();
        return Err(Failure::new(
            1,
            format!(
                "{at}{}: {msg}\nhint: pass `--allow {flag}` to grant it",
                v.meta.name
            ),
        ));
    }

    // Imported caches: manifests and configs now, blobs when a hit is used. A cache that
    // cannot be read is a warning, as with BuildKit: the build goes on without it.
    let mut imported = Vec::new();
    for from in &cache_from {
        match kiln_remotecache::import(&env.store, &env.registry, from).await {
            Ok(c) => {
                if !a.quiet {
                    eprintln!("importing cache from {from}: {} records", c.len());
                }
                imported.push(Arc::new(c));
            }
            Err(e) => eprintln!("warning: cannot import cache from {from}: {e}"),
        }
    }
    let worker = Arc::new(BuildWorker::new(WorkerConfig {
        store: env.store.clone(),
        registry: env.registry.clone(),
        executor: env.executor(),
        locals: named_contexts
            .iter()
            .filter_map(|(n, c)| match c {
                kiln_frontend::NamedContext::Dir(d) => Some((n.clone(), d.clone())),
                kiln_frontend::NamedContext::Image(_) => None,
            })
            .chain([("context".to_string(), context.clone())])
            .collect(),
        hostname: "kiln".into(),
        secrets,
        allow_insecure,
        allow_network_host,
        extra_hosts,
        imported: imported.clone(),
    }));
    // Explanations compare a step with the previous build of the same step in the same
    // project: context dir, Dockerfile and target.
    let scope = format!(
        "{}\0{}\0{}",
        context.display(),
        dockerfile_path
            .as_ref()
            .map_or_else(|| "-".into(), |p| p.display().to_string()),
        a.target.as_deref().unwrap_or("")
    );
    let cache = Arc::new(StoreCache(env.store.clone(), scope, imported));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mode = if a.quiet {
        progress::Mode::Quiet
    } else {
        a.progress
    };
    let printer = tokio::spawn(progress::render(mode, a.explain, rx));
    let solve_opts = match a.jobs {
        Some(n) => kiln_solver::SolveOptions::strict(n),
        None => kiln_solver::SolveOptions::default(),
    };
    let solved = tokio::select! {
        r = kiln_solver::solve(&fe.definition, worker, cache.clone(), Some(tx), &solve_opts) => r,
        () = shutdown_signal() => {
            let _ = printer.await;
            return Err(Failure::new(130, "build cancelled"));
        }
    };
    let _ = printer.await;
    let solved = solved.map_err(solve_failure)?;
    cache.keep_imported_hits(&solved);

    // The image: config + history (empty_layer decided from the solved layer counts).
    let layers = solved.root.layers().to_vec();
    let history = reconcile_history(&fe, &solved, &cache);
    let mut config = serde_json::to_value(&fe.config)
        .map_err(|e| Failure::new(1, format!("image config: {e}")))?;
    if let Some(obj) = config.as_object_mut() {
        obj.remove("rootfs");
        // What oci-spec's config cannot hold (Healthcheck, Shell, OnBuild) comes beside it.
        let inner = obj.entry("config").or_insert_with(|| serde_json::json!({}));
        if let Some(inner) = inner.as_object_mut() {
            for (k, v) in &fe.extra_config {
                inner.insert(k.clone(), v.clone());
            }
        }
    }
    let image = kiln_exporter::store_image(&env.store, config, &history, &layers, &now_rfc3339())?;

    let load = a.load
        || (!tags.is_empty() && a.outputs.is_empty())
        || tags.is_empty() && exports.is_empty();
    if load {
        for t in &tags {
            env.store
                .set_image(&t.to_string(), &image.manifest_digest)?;
        }
    }
    let first_name = tags.first().map(std::string::ToString::to_string);
    // The manifest digest of what was pushed (layers compressed), which is what the
    // registry and `--metadata-file` users know the image by.
    let mut pushed: Option<String> = None;
    for e in &exports {
        match e {
            Export::Layout {
                format,
                dest,
                dir,
                compress,
            } => kiln_exporter::layout::write(
                &env.store,
                &image,
                first_name.as_deref(),
                *format,
                dest,
                *dir,
                *compress,
            )?,
            Export::Local(d) => kiln_exporter::rootfs::write_dir(&env.store, &layers, d)?,
            Export::Tar(d) => kiln_exporter::rootfs::write_tar(&env.store, &layers, d)?,
            Export::Image {
                name,
                push,
                compress,
            } => {
                let names: Vec<Reference> = match name {
                    Some(n) => n
                        .split(',')
                        .map(|n| Reference::parse(n).map_err(|e| Failure::usage(e.to_string())))
                        .collect::<Result<_, _>>()?,
                    None => tags.clone(),
                };
                if names.is_empty() {
                    return Err(Failure::usage(
                        "pushing needs a name: use -t or -o type=image,name=REF",
                    ));
                }
                for n in &names {
                    env.store
                        .set_image(&n.to_string(), &image.manifest_digest)?;
                    if *push {
                        eprintln!("pushing {n}");
                        pushed = Some(crate::images::push_image(env, &image, n, *compress).await?);
                    }
                }
            }
        }
    }
    for spec in &cache_to {
        let records = cache.export_records(&fe.definition, &solved, spec.max);
        if !a.quiet {
            eprintln!("exporting cache to {}: {} records", spec.to, records.len());
        }
        kiln_remotecache::export(&env.store, &env.registry, &spec.to, records)
            .await
            .map_err(|e| Failure::new(1, format!("exporting cache to {}: {e}", spec.to)))?;
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &image.config_digest)
            .map_err(|e| Failure::new(1, format!("{}: {e}", p.display())))?;
    }
    if let Some(p) = &a.metadata_file {
        let md = serde_json::json!({
            "containerimage.digest": pushed.as_deref().unwrap_or(&image.manifest_digest),
            "containerimage.config.digest": image.config_digest,
            "image.name": tags.iter().map(std::string::ToString::to_string).collect::<Vec<_>>().join(","),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&md).unwrap_or_default())
            .map_err(|e| Failure::new(1, format!("{}: {e}", p.display())))?;
    }
    if a.quiet {
        println!("{}", image.config_digest);
    } else {
        eprintln!(
            "\nbuilt {} in {:.1}s: {} steps run, {} cached{}",
            image.config_digest,
            started.elapsed().as_secs_f64(),
            solved.executed,
            solved.cached,
            if tags.is_empty() {
                String::new()
            } else {
                format!(
                    ", tagged {}",
                    tags.iter()
                        .map(kiln_oci::Reference::familiar)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    drop(gc_lock);
    crate::system::gc_after_build(env);
    Ok(0)
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

/// The store's cache records (scope: see `build`), then those of imported caches.
struct StoreCache(
    Arc<kiln_cache::Store>,
    String,
    Vec<Arc<kiln_remotecache::Imported>>,
);

impl StoreCache {
    /// Records locally the imported results this build used, so the next build on this
    /// machine hits them without `--cache-from`.
    fn keep_imported_hits(&self, solved: &kiln_solver::Solved<Output>) {
        if self.2.is_empty() {
            return;
        }
        for (d, out) in &solved.outputs {
            let Some(key) = solved.keys.get(d) else {
                continue;
            };
            if matches!(self.0.cache_get(key), Ok(None))
                && self.2.iter().any(|c| c.get(key).is_some())
            {
                if let Ok(v) = serde_json::to_vec(out) {
                    let _ = self.0.cache_put(key, &v);
                }
            }
        }
    }

    /// The records to export: every step's (`max`), or the steps whose layers the result
    /// holds (`min`), among those whose layers this machine has.
    fn export_records(
        &self,
        def: &kiln_opgraph::Definition,
        solved: &kiln_solver::Solved<Output>,
        max: bool,
    ) -> Vec<kiln_remotecache::Record> {
        let root = solved.root.layers();
        let mut out = Vec::new();
        for (d, key) in &solved.keys {
            if matches!(
                def.vertices.get(d).map(|v| &v.op),
                Some(Op::Local { .. }) | None
            ) {
                continue;
            }
            let Some(value) = self.0.cache_get(key).ok().flatten() else {
                continue;
            };
            let Ok(output) = serde_json::from_slice::<Output>(&value) else {
                continue;
            };
            let layers = output.layers().to_vec();
            let in_result = layers.len() <= root.len() && root[..layers.len()] == layers[..];
            if (max || in_result) && layers.iter().all(|l| self.0.layer_available(l)) {
                out.push(kiln_remotecache::Record {
                    key: key.clone(),
                    value,
                    layers,
                });
            }
        }
        out
    }
}

impl kiln_solver::CacheStorage for StoreCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0
            .cache_get(key)
            .ok()
            .flatten()
            .or_else(|| self.2.iter().find_map(|c| c.get(key)))
    }
    fn put(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.0.cache_put(key, value) {
            eprintln!("warning: cannot record a cache entry: {e}");
        }
    }
    fn previous_inputs(&self) -> std::collections::HashMap<String, (String, Vec<u8>)> {
        self.0.key_inputs_get_many(&self.1).unwrap_or_default()
    }
    fn record_inputs(&self, records: Vec<(String, String, Vec<u8>)>) {
        // Only explanations depend on these: failing to record them must not fail a build.
        let _ = self.0.key_inputs_put_many(&self.1, &records);
    }
    fn describe_content_change(&self, old: &str, new: &str) -> Option<String> {
        kiln_worker::context::describe_change(&self.0, old, new)
    }
}

/// Decides `empty_layer` for each history entry by comparing the layer count of its vertex's
/// result with that of the vertex's base input (from this solve, or from the cache).
fn reconcile_history(
    fe: &kiln_frontend::Build,
    solved: &kiln_solver::Solved<Output>,
    cache: &StoreCache,
) -> Vec<HistoryEntry> {
    use kiln_solver::CacheStorage;
    let output = |d: &VertexDigest| -> Option<Output> {
        solved.outputs.get(d).cloned().or_else(|| {
            let key = solved.keys.get(d)?;
            serde_json::from_slice(&cache.get(key)?).ok()
        })
    };
    fe.history
        .iter()
        .map(|h| {
            let empty_layer = match &h.layer_vertex {
                None => true,
                Some(v) => {
                    let d = VertexDigest(v.clone());
                    let base = fe.definition.vertices.get(&d).and_then(|vx| match &vx.op {
                        Op::Exec(e) => Some(e.rootfs.vertex.clone()),
                        Op::File(f) => Some(f.base.vertex.clone()),
                        _ => None,
                    });
                    match (output(&d), base.and_then(|b| output(&b))) {
                        (Some(o), Some(b)) => o.layers().len() == b.layers().len(),
                        _ => false,
                    }
                }
            };
            HistoryEntry {
                created_by: h.created_by.clone(),
                comment: h.comment.clone(),
                empty_layer,
            }
        })
        .collect()
}

fn solve_failure(e: kiln_solver::SolveError) -> Failure {
    match e {
        kiln_solver::SolveError::Vertex {
            name,
            location,
            source,
            ..
        } => {
            let at = location
                .map(|l| format!("{}:{}: ", l.file, l.line))
                .unwrap_or_default();
            if let Some(x) = source.downcast_ref::<kiln_worker::ExecFailed>() {
                let mut msg = format!("{at}{name}: {x}");
                if !x.tail.is_empty() {
                    msg.push_str("\n--- last lines of output ---");
                    for l in &x.tail {
                        msg.push_str("\n  ");
                        msg.push_str(l);
                    }
                }
                return Failure::new(1, msg);
            }
            Failure::new(1, format!("{at}{name}: {source}"))
        }
        other => Failure::new(1, other.to_string()),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
