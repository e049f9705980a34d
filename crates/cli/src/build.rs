//! `kiln build`.

use crate::progress;
use crate::util::{now_rfc3339, Env, Failure};
use clap::Args;
use kiln_cache::Compression;
use kiln_exporter::Compress;
use kiln_frontend::{ErrorKind, ImageResolver, ResolveError, ResolvedImage};
use kiln_oci::Reference;
use kiln_worker::session::{
    self, BuildOptions, BuildSession, Dockerfile, Entitlements, Export, NetworkMode, Notice,
    Observer, Outcome, Resources,
};
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
                let config = kiln_cache::image::oci_config(store, &rec.manifest_digest)
                    .map_err(ResolveError::new)?;
                let onbuild = kiln_cache::image::config(store, &rec.manifest_digest)
                    .map_err(ResolveError::new)?
                    .on_build();
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
        // oci-spec's config drops OnBuild: read it from the config blob as kiln reads it.
        let onbuild = store
            .read_blob(pulled.manifest.config().digest().as_ref())
            .ok()
            .and_then(|b| kiln_cache::image::ImageConfig::parse(&b).ok())
            .map(|c| c.on_build())
            .unwrap_or_default();
        Ok(ResolvedImage {
            reference: r.to_string(),
            digest: pulled.manifest_digest,
            config: pulled.config,
            onbuild,
        })
    }
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
    let flags = Flags::parse(&a)?;
    // Held for the whole build: a prune (exclusive) waits, so it never removes what this
    // build wrote but has not recorded yet.
    let gc_lock = env.store.lock_gc_shared()?;
    let context = context_dir(&a.context)?;
    let dockerfile = read_dockerfile(a.file.as_deref(), &context)?;
    if a.check {
        return check(&dockerfile.text, &dockerfile.file_name);
    }
    let tags = flags.tags.clone();
    let opts = options(&a, flags, context, dockerfile)?;
    let outcome = run_session(env, &a, opts).await?;
    write_files(&a, &outcome, &tags)?;
    if a.quiet {
        println!("{}", outcome.image.config_digest);
    } else {
        eprintln!("\n{}", summary(&outcome, &tags, started.elapsed()));
    }
    drop(gc_lock);
    crate::system::gc_after_build(env);
    Ok(0)
}

/// The flags that are checked before anything else (their errors are usage errors).
struct Flags {
    cache_from: Vec<kiln_remotecache::Location>,
    cache_to: Vec<kiln_remotecache::ExportSpec>,
    extra_hosts: Vec<(String, String)>,
    exports: Vec<Export>,
    tags: Vec<Reference>,
}

impl Flags {
    fn parse(a: &BuildArgs) -> Result<Self, Failure> {
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
        let tags = a
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
        Ok(Self {
            cache_from,
            cache_to,
            extra_hosts,
            exports,
            tags,
        })
    }
}

/// The context directory, absolute.
fn context_dir(dir: &std::path::Path) -> Result<PathBuf, Failure> {
    let context = std::fs::canonicalize(dir).map_err(|e| {
        Failure::new(
            1,
            format!("unable to prepare context: {}: {e}", dir.display()),
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
    Ok(context)
}

/// `-f FILE` (`-` reads stdin), by default `CONTEXT/Dockerfile`.
fn read_dockerfile(file: Option<&str>, context: &std::path::Path) -> Result<Dockerfile, Failure> {
    if file == Some("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::new(1, format!("cannot read the Dockerfile from stdin: {e}")))?;
        return Ok(Dockerfile {
            text,
            file_name: "Dockerfile".to_string(),
            path: None,
        });
    }
    let p = file.map_or_else(|| context.join("Dockerfile"), PathBuf::from);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        Failure::new(
            1,
            format!("failed to read dockerfile: {}: {e}", p.display()),
        )
    })?;
    Ok(Dockerfile {
        text,
        file_name: p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: Some(p),
    })
}

/// The session's options: the checked flags, then the rest of the flags resolved.
fn options(
    a: &BuildArgs,
    flags: Flags,
    context: PathBuf,
    dockerfile: Dockerfile,
) -> Result<BuildOptions, Failure> {
    let named_contexts = parse_build_contexts(&a.build_contexts)?;
    let secrets = parse_secrets(&a.secrets)?;
    let load = a.load
        || (!flags.tags.is_empty() && a.outputs.is_empty())
        || flags.tags.is_empty() && flags.exports.is_empty();
    Ok(BuildOptions {
        context,
        dockerfile,
        build_args: key_values(&a.build_args, true)?,
        target: a.target.clone(),
        labels: key_values(&a.labels, false)?,
        network: match a.network.as_str() {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Default,
        },
        no_cache: a.no_cache,
        no_cache_filter: a.no_cache_filter.clone(),
        named_contexts,
        secrets,
        extra_hosts: flags.extra_hosts,
        // `--network host` grants network.host, as buildx does.
        entitlements: Entitlements {
            security_insecure: a.allow.iter().any(|x| x == "security.insecure"),
            network_host: a.network == "host" || a.allow.iter().any(|x| x == "network.host"),
        },
        jobs: a.jobs,
        cache_from: flags.cache_from,
        cache_to: flags.cache_to,
        tags: flags.tags,
        load,
        exports: flags.exports,
    })
}

/// Loads, solves (showing progress; a signal cancels) and exports.
async fn run_session(env: &Env, a: &BuildArgs, opts: BuildOptions) -> Result<Outcome, Failure> {
    let resources = Resources {
        store: env.store.clone(),
        registry: env.registry.clone(),
        executor: env.executor(),
    };
    let resolver = Resolver {
        env,
        pull: a.pull,
        handle: tokio::runtime::Handle::current(),
    };
    let notices = Arc::new(Notices { quiet: a.quiet });
    let session = BuildSession::load(resources, opts, &resolver, notices)
        .await
        .map_err(session_failure)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mode = if a.quiet {
        progress::Mode::Quiet
    } else {
        a.progress
    };
    let printer = tokio::spawn(progress::render(mode, a.explain, rx));
    let solved = tokio::select! {
        r = session.solve(Some(tx)) => r,
        () = shutdown_signal() => {
            let _ = printer.await;
            return Err(Failure::new(130, "build cancelled"));
        }
    };
    let _ = printer.await;
    let solved = solved.map_err(session_failure)?;
    solved.export(&now_rfc3339()).await.map_err(session_failure)
}

/// What the session tells the user on the way (`--quiet` keeps only warnings and pushes).
struct Notices {
    quiet: bool,
}

impl Observer for Notices {
    fn notice(&self, notice: Notice<'_>) {
        match notice {
            Notice::CacheImported { from, records } if !self.quiet => {
                eprintln!("importing cache from {from}: {records} records");
            }
            Notice::CacheImportFailed { from, error } => {
                eprintln!("warning: cannot import cache from {from}: {error}");
            }
            Notice::CacheRecordFailed { error } => {
                eprintln!("warning: cannot record a cache entry: {error}");
            }
            Notice::Pushing { reference } => eprintln!("pushing {reference}"),
            Notice::CacheExporting { to, records } if !self.quiet => {
                eprintln!("exporting cache to {to}: {records} records");
            }
            _ => {}
        }
    }
}

/// A session error as `kiln build` reports it.
fn session_failure(e: session::Error) -> Failure {
    match e {
        session::Error::Frontend(fe) => frontend_failure(fe),
        e if e.is_usage() => Failure::usage(e.to_string()),
        // The store's, the exporter's and the registry's errors with their causes.
        e @ (session::Error::Export(_) | session::Error::Store(_) | session::Error::Push(_)) => {
            Failure::from(e)
        }
        e => Failure::new(1, e.to_string()),
    }
}

/// `--iidfile` and `--metadata-file`.
fn write_files(a: &BuildArgs, outcome: &Outcome, tags: &[Reference]) -> Result<(), Failure> {
    let image = &outcome.image;
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &image.config_digest)
            .map_err(|e| Failure::new(1, format!("{}: {e}", p.display())))?;
    }
    if let Some(p) = &a.metadata_file {
        let md = serde_json::json!({
            "containerimage.digest": outcome.pushed.as_deref().unwrap_or(&image.manifest_digest),
            "containerimage.config.digest": image.config_digest,
            "image.name": tags.iter().map(std::string::ToString::to_string).collect::<Vec<_>>().join(","),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&md).unwrap_or_default())
            .map_err(|e| Failure::new(1, format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

/// `built sha256:… in 1.2s: 3 steps run, 2 cached, tagged app:1`.
fn summary(outcome: &Outcome, tags: &[Reference], took: std::time::Duration) -> String {
    format!(
        "built {} in {:.1}s: {} steps run, {} cached{}",
        outcome.image.config_digest,
        took.as_secs_f64(),
        outcome.executed,
        outcome.cached,
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
    )
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

/// One image of `kiln compose up` (a service's `build:`): its context and Dockerfile (a path
/// relative to the context, or inline text), tagged, through the same session as `kiln
/// build` (progress plain on stderr).
pub(crate) async fn build_image(
    env: &Env,
    b: &kiln_compose::plan::BuildPlan,
) -> Result<Outcome, Failure> {
    let context = context_dir(std::path::Path::new(&b.context))?;
    let dockerfile = if let Some(text) = &b.dockerfile_inline {
        Dockerfile {
            text: text.clone(),
            file_name: "Dockerfile".to_string(),
            path: None,
        }
    } else {
        let file = b
            .dockerfile
            .as_ref()
            .map(|f| context.join(f).display().to_string());
        read_dockerfile(file.as_deref(), &context)?
    };
    let (build_args, target, labels, tag) =
        (b.args.clone(), b.target.clone(), b.labels.clone(), &b.tag);
    let tag = Reference::parse(tag).map_err(|e| Failure::usage(e.to_string()))?;
    let opts = BuildOptions {
        context,
        dockerfile,
        build_args,
        target,
        labels,
        network: NetworkMode::Default,
        no_cache: false,
        no_cache_filter: Vec::new(),
        named_contexts: BTreeMap::new(),
        secrets: BTreeMap::new(),
        extra_hosts: Vec::new(),
        entitlements: Entitlements::default(),
        jobs: None,
        cache_from: Vec::new(),
        cache_to: Vec::new(),
        tags: vec![tag],
        load: true,
        exports: Vec::new(),
    };
    let resources = Resources {
        store: env.store.clone(),
        registry: env.registry.clone(),
        executor: env.executor(),
    };
    let resolver = Resolver {
        env,
        pull: false,
        handle: tokio::runtime::Handle::current(),
    };
    let notices = Arc::new(Notices { quiet: false });
    let session = BuildSession::load(resources, opts, &resolver, notices)
        .await
        .map_err(session_failure)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(progress::render(progress::Mode::Plain, false, rx));
    let solved = session.solve(Some(tx)).await;
    let _ = printer.await;
    let solved = solved.map_err(session_failure)?;
    solved.export(&now_rfc3339()).await.map_err(session_failure)
}
