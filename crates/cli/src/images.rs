//! Image and container commands: run, images, pull, push, import, tag, rmi, inspect,
//! history, save, load.
//!
//! An image loaded without a name (`Loaded image ID: …`) is kept under the name
//! [`UNTAGGED`]`<config digest>`, which no reference can spell: `kiln images` shows it as
//! `<none>`, `kiln tag ID NAME` names it, and `kiln image prune` removes it (it is what
//! docker calls a dangling image).

use crate::util::{is_untagged, now_rfc3339, Env, Failure, UNTAGGED};
use clap::Args;
use kiln_exporter::HistoryEntry;
use kiln_oci::Reference;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct RefArg {
    /// Image reference.
    reference: String,
}

#[derive(Args)]
pub(crate) struct PullArgs {
    /// Image reference.
    reference: String,
    /// Print only the image's name.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct ImagesArgs {
    /// Show only image IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(Args)]
pub(crate) struct SaveArgs {
    /// Output file (default stdout is not supported: give -o).
    #[arg(short, long)]
    output: PathBuf,
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LoadArgs {
    /// Read from a tar archive file instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the per-layer output (the `Loaded image` lines stay).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, …); repeatable.
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Root filesystem tarball (`-` for stdin).
    file: String,
    /// Name for the image.
    reference: String,
}

#[derive(Args)]
// `-h` is --hostname, as in `docker run`; help is `--help` only.
#[command(disable_help_flag = true)]
pub(crate) struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open (with -d: open without data, so a shell waiting for input keeps
    /// running).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a TTY (not supported yet; stdio is passed through, or logged with -d).
    #[arg(short, long)]
    tty: bool,
    /// Environment K=V (or K from the caller's environment); repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Bind mount /HOST/PATH:DST[:ro], volume NAME:DST[:ro] (created when missing), or
    /// DST alone (a new anonymous volume); repeatable.
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network: none (default without -p; only loopback), host, or default (a private
    /// namespace with outbound access through pasta; the default with -p).
    #[arg(long, value_parser = ["none", "host", "default"])]
    network: Option<String>,
    /// Publish a container port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp];
    /// repeatable. Implies --network default unless --network is given.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Memory limit (bytes, or with a b/k/m/g suffix; 0: no limit).
    #[arg(short = 'm', long, value_parser = parse_ram)]
    memory: Option<u64>,
    /// Number of CPUs (e.g. 1.5; 0: no limit).
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long)]
    pids_limit: Option<i64>,
    /// All capabilities, no seccomp profile, no masked paths, every device.
    #[arg(long)]
    privileged: bool,
    /// Add a host device: HOST[:CONTAINER][:PERMS] (PERMS from rwm, default rwm);
    /// repeatable.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Mount a tmpfs: PATH[:size=SIZE[,…]]; repeatable.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Container hostname (default: the first 12 characters of its id).
    #[arg(long, short = 'h')]
    hostname: Option<String>,
    /// Add a line to /etc/hosts: NAME:IP (or NAME=IP); repeatable.
    #[arg(long = "add-host")]
    add_hosts: Vec<String>,
    /// Run the container through this OCI runtime (e.g. runc) with an OCI bundle.
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// Image.
    image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `--cpus`: a finite, non-negative number of CPUs; 0 is no limit (as docker's). docker's
/// wording for what is not a number.
fn parse_cpus(s: &str) -> Result<Option<f64>, Failure> {
    let bad =
        |why: String| Failure::usage(format!("invalid argument {s:?} for \"--cpus\" flag: {why}"));
    let n: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(format!("failed to parse {s} as a rational number")))?;
    if n < 0.0 {
        return Err(bad("the number of CPUs cannot be negative".into()));
    }
    Ok((n > 0.0).then_some(n))
}

/// `-m` and tmpfs sizes: docker's RAMInBytes (every unit a power of 1024), refused in
/// kiln's words.
fn parse_ram(s: &str) -> Result<u64, String> {
    kiln_units::parse_ram(s).map_err(|_| {
        let t = s.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.parse::<f64>().is_ok() {
            format!("invalid size `{s}`: unknown unit `{unit}`")
        } else {
            format!("invalid size `{s}`: use a number with b, k, m or g")
        }
    })
}

/// `-p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`.
pub(crate) fn parse_publish(spec: &str) -> Result<kiln_executor::PortMapping, Failure> {
    let bad = |why: &str| Failure::usage(format!("invalid publish spec `{spec}`: {why}"));
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) if p == "tcp" || p == "udp" => (r, p.to_string()),
        Some((_, p)) => return Err(bad(&format!("unknown protocol `{p}` (tcp or udp)"))),
        None => (spec, "tcp".to_string()),
    };
    let port = |p: &str| -> Result<u16, Failure> {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(bad(&format!("invalid port `{p}` (1 to 65535)"))),
        }
    };
    let (ip, host, ctr) = match rest.rsplitn(3, ':').collect::<Vec<_>>()[..] {
        [ctr] => {
            port(ctr)?;
            return Err(bad(
                "an ephemeral host port (-p CONTAINER_PORT) is not supported; \
                 give the host port: -p HOST_PORT:CONTAINER_PORT",
            ));
        }
        [ctr, host] => (None, host, ctr),
        [ctr, host, ip] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(&format!("invalid IP address `{ip}`")));
            }
            (Some(ip.to_string()), host, ctr)
        }
        _ => return Err(bad("expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]")),
    };
    if host.is_empty() {
        return Err(bad(
            "an ephemeral host port is not supported; give the host port",
        ));
    }
    Ok(kiln_executor::PortMapping {
        host_ip: ip,
        host_port: port(host)?,
        container_port: port(ctr)?,
        protocol,
    })
}

fn parse_tmpfs(spec: &str) -> Result<kiln_executor::TmpfsMount, Failure> {
    let (path, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !path.starts_with('/') {
        return Err(Failure::usage(format!(
            "invalid tmpfs `{spec}`: the path must be absolute"
        )));
    }
    let mut size = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(v) = o.strip_prefix("size=") {
            size = Some(parse_ram(v).map_err(Failure::usage)?);
        }
    }
    Ok(kiln_executor::TmpfsMount {
        destination: path.to_string(),
        size,
    })
}

pub(crate) async fn run(env: &Env, a: RunArgs) -> Result<u8, Failure> {
    if a.detach && a.runtime.is_some() {
        return Err(Failure::usage(
            "kiln run -d does not support --runtime yet (kiln exec and the shim need the \
             sandbox's own pid 1)",
        ));
    }
    let mut ports = a
        .publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    // A published port is meant to be reachable: -p without --network means `default`.
    let network = match a.network.as_deref() {
        Some("host") => kiln_executor::Network::Host,
        Some("default") => kiln_executor::Network::Default,
        None if !ports.is_empty() => kiln_executor::Network::Default,
        _ => kiln_executor::Network::None,
    };
    if network == kiln_executor::Network::Host && !ports.is_empty() {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
    if network != kiln_executor::Network::Default {
        // As docker: nothing is published with --network none or host.
        ports.clear();
    }
    let tmpfs = a
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<Vec<_>, _>>()?;
    let devices = a
        .devices
        .iter()
        .map(|d| d.parse::<kiln_executor::DeviceMapping>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let cpus = match a.cpus.as_deref() {
        Some(c) => parse_cpus(c)?,
        None => None,
    };
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            return Err(Failure::usage(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
    }
    for e in &a.env {
        // docker's ValidateEnv: a variable needs a name.
        if e.split('=').next().unwrap_or_default().is_empty() {
            return Err(Failure::usage(format!("invalid environment variable: {e}")));
        }
    }
    if let Some(h) = &a.hostname {
        if !kiln_executor::valid_hostname(h) {
            // Escaped: the name may hold a newline.
            return Err(Failure::usage(format!(
                "invalid hostname format: {}",
                h.escape_debug()
            )));
        }
    }
    let extra_hosts = crate::util::parse_add_hosts(&a.add_hosts)?;
    let reference = Reference::parse(&a.image).map_err(|e| Failure::usage(e.to_string()))?;
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for v in &a.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [d] => ("", *d, false),
            [s, d] => (*s, *d, false),
            [s, d, o] if *o == "ro" || *o == "rw" => (*s, *d, *o == "ro"),
            _ => {
                return Err(Failure::usage(format!(
                    "invalid volume `{v}`: use SRC:DST[:ro], NAME:DST[:ro] or DST"
                )))
            }
        };
        if !dst.starts_with('/') {
            return Err(Failure::usage(format!(
                "invalid volume `{v}`: the destination must be an absolute path"
            )));
        }
        if src.is_empty() {
            // `-v /path`: a new anonymous volume.
            volumes.push(kiln_runtime::VolumeSpec {
                name: None,
                destination: dst.to_string(),
                readonly: ro,
            });
        } else if src.starts_with('/') {
            mounts.push(kiln_executor::BindMount {
                source: PathBuf::from(src),
                destination: dst.to_string(),
                readonly: ro,
            });
        } else {
            if !kiln_runtime::valid_volume_name(src) {
                return Err(Failure::usage(
                    kiln_runtime::Error::InvalidVolumeName(src.to_string()).to_string(),
                ));
            }
            volumes.push(kiln_runtime::VolumeSpec {
                name: Some(src.to_string()),
                destination: dst.to_string(),
                readonly: ro,
            });
        }
    }
    let env_vars = a
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let container = kiln_runtime::CreateOptions {
        name: a.name,
        remove: a.rm,
        env: env_vars,
        workdir: a.workdir,
        user: a.user,
        entrypoint: a.entrypoint,
        args: a.args,
        network,
        mounts,
        volumes,
        hostname: a.hostname,
        detach: a.detach,
        interactive: a.interactive,
        extra: kiln_executor::SandboxOptions {
            tmpfs,
            resources: kiln_executor::Resources {
                // 0 is no limit, as with docker.
                memory: a.memory.filter(|&m| m > 0),
                cpus,
                pids: a.pids_limit,
            },
            privileged: a.privileged,
            create_etc_files: true,
            ports,
            devices,
            extra_hosts,
        },
    };
    let _ = a.tty;
    let mut executor = env.executor();
    if let Some(r) = a.runtime {
        executor = executor.with_runtime(r);
    }
    let launcher = kiln_runtime::Launcher {
        executor,
        shim: vec![
            env.exe.clone().into_os_string(),
            kiln_runtime::SHIM_ARG.into(),
        ],
    };
    let opts = kiln_runtime::RunOptions {
        image: a.image,
        reference,
        container,
    };
    let outcome = kiln_runtime::run(&env.store, &env.registry, &launcher, &opts, |e| match e {
        kiln_runtime::RunEvent::Pulling(r) => {
            eprintln!("Unable to find image '{}' locally", r.familiar());
        }
    })
    .await
    .map_err(|e| Failure::wrap(e.exit_code(), e))?;
    match &outcome {
        kiln_runtime::Outcome::Detached(c) => println!("{}", c.id()),
        kiln_runtime::Outcome::Exited(r) if r.oom_killed => {
            eprintln!("kiln: the container was killed: out of memory (--memory limit)");
        }
        kiln_runtime::Outcome::Exited(_) => {}
    }
    Ok(outcome.exit_code())
}

pub(crate) fn images(env: &Env, a: ImagesArgs) -> Result<u8, Failure> {
    let list = env.store.list_images()?;
    if !a.quiet {
        println!(
            "{:<40} {:<16} {:<14} {:<22} {:>10}",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
        );
    }
    for rec in list {
        let summary = kiln_cache::image::summary(&env.store, &rec.manifest_digest)?;
        let id = summary.config_digest.trim_start_matches("sha256:");
        let short = &id[..id.len().min(12)];
        if a.quiet {
            println!("{short}");
            continue;
        }
        let parsed = if is_untagged(&rec.name) {
            Err(())
        } else {
            Reference::parse(&rec.name).map_err(|_| ())
        };
        let (repo, tag) = match parsed {
            Ok(r) => {
                let tag = r.tag.clone().unwrap_or_else(|| "<none>".into());
                let repo = Reference {
                    tag: None,
                    digest: None,
                    ..r
                }
                .familiar();
                (repo, tag)
            }
            Err(()) if is_untagged(&rec.name) => ("<none>".into(), "<none>".into()),
            Err(()) => (rec.name.clone(), "<none>".into()),
        };
        println!(
            "{:<40} {:<16} {:<14} {:<22} {:>10}",
            repo,
            tag,
            short,
            crate::util::rfc3339(rec.created),
            human_size(summary.size)
        );
    }
    Ok(0)
}

/// Sizes in the `images`, `history` and `load` lines: three significant digits, as docker's.
fn human_size(n: u64) -> String {
    kiln_units::human_precision(n, 3)
}

/// `kiln pull`: fetches the image and, as `docker pull` does, unpacks its layers, so that
/// the first build or run from it starts at once.
pub(crate) async fn pull(env: &Env, a: PullArgs) -> Result<u8, Failure> {
    let r = Reference::parse(&a.reference).map_err(|e| Failure::usage(e.to_string()))?;
    let pulled = env.registry.pull_and_name(&r, &env.store).await?;
    if a.quiet {
        println!("{r}");
    } else {
        println!("{}: digest: {}", r.familiar(), pulled.manifest_digest);
    }
    Ok(0)
}

pub(crate) async fn push(env: &Env, a: RefArg) -> Result<u8, Failure> {
    let (r, manifest) = env.local_image(&a.reference)?;
    let image = kiln_cache::image::stored(&env.store, &manifest)?;
    let digest =
        kiln_worker::session::push_image(&env.store, &env.registry, &image, &r, Default::default())
            .await?;
    println!("{}: digest: {digest}", r.familiar());
    Ok(0)
}

/// Reads `f` as a tar to its end: every header and every entry's data must be there.
fn check_tar(f: std::fs::File) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    for e in ar.entries()? {
        let mut e = e?;
        e.path()?;
        std::io::copy(&mut e, &mut std::io::sink())?;
    }
    Ok(())
}

pub(crate) fn import(env: &Env, a: ImportArgs) -> Result<u8, Failure> {
    let r = Reference::parse(&a.reference).map_err(|e| Failure::usage(e.to_string()))?;
    let mut config: kiln_oci::spec::ImageConfiguration =
        serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .map_err(|e| Failure::with_source(1, e.to_string(), e))?;
    kiln_frontend::apply_changes(&mut config, &a.changes)
        .map_err(|e| Failure::usage(format!("invalid --change: {}", e.message)))?;
    // The input is read twice (checked to be a whole tar, then stored), so stdin is kept
    // in a temp file first; nothing is stored when it is not a tar.
    let spool = env.store.temp_dir("import-")?;
    let path = if a.file == "-" {
        let p = spool.path().join("layer.tar");
        let mut f = std::fs::File::create(&p)
            .map_err(|e| Failure::with_source(1, format!("{}: {e}", p.display()), e))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f)
            .map_err(|e| Failure::with_source(1, format!("reading stdin: {e}"), e))?;
        p
    } else {
        PathBuf::from(&a.file)
    };
    let open = || {
        std::fs::File::open(&path)
            .map_err(|e| Failure::with_source(1, format!("{}: {e}", a.file), e))
    };
    // The tar crate's messages quote the bad bytes: say what it means instead.
    check_tar(open()?).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => " (it ends inside an entry)",
            _ => "",
        };
        Failure::new(1, format!("{}: not a tar archive{why}", a.file))
    })?;
    let layer = env.store.import_layer(&mut open()?)?;
    drop(spool);
    let mut cfg =
        serde_json::to_value(&config).map_err(|e| Failure::with_source(1, e.to_string(), e))?;
    if let Some(o) = cfg.as_object_mut() {
        o.remove("rootfs");
        o.remove("history");
    }
    let image = kiln_exporter::store_image(
        &env.store,
        cfg,
        &[HistoryEntry {
            created_by: "kiln import".into(),
            comment: Some("Imported from tarball".into()),
            empty_layer: false,
        }],
        &[layer],
        &now_rfc3339(),
    )?;
    env.store
        .set_image(&r.to_string(), &image.manifest_digest)?;
    println!("{}", image.config_digest);
    Ok(0)
}

pub(crate) fn tag(env: &Env, a: TagArgs) -> Result<u8, Failure> {
    let manifest = match env.local_image(&a.source) {
        Ok((_, m)) => m,
        Err(e) => by_id(env, &a.source)?.ok_or(e)?,
    };
    let t = Reference::parse(&a.target).map_err(|e| Failure::usage(e.to_string()))?;
    env.store.set_image(&t.to_string(), &manifest)?;
    Ok(0)
}

pub(crate) fn rmi(env: &Env, a: RmiArgs) -> Result<u8, Failure> {
    let mut code = 0;
    for name in &a.references {
        let r = Reference::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
        if env.store.remove_image(&r.to_string())? {
            println!("Untagged: {}", r.familiar());
        } else {
            Failure::new(1, format!("no such image: {}", r.familiar())).print();
            code = 1;
        }
    }
    Ok(code)
}

pub(crate) fn inspect(env: &Env, a: RefArg) -> Result<u8, Failure> {
    let (r, manifest) = env.local_image(&a.reference)?;
    let summary = kiln_cache::image::summary(&env.store, &manifest)?;
    let cfg = kiln_cache::image::config(&env.store, &manifest)?;
    let out = serde_json::json!([{
        "Id": summary.config_digest,
        "RepoTags": [r.familiar()],
        "ManifestDigest": manifest,
        "Created": cfg.created,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Config": cfg.config,
        "RootFS": cfg.rootfs,
        "History": cfg.history,
        "Size": summary.size,
    }]);
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(0)
}

pub(crate) fn history(env: &Env, a: RefArg) -> Result<u8, Failure> {
    let (_, manifest) = env.local_image(&a.reference)?;
    let cfg = kiln_cache::image::config(&env.store, &manifest)?;
    println!("{:<22} {:<60} EMPTY", "CREATED", "CREATED BY");
    for e in cfg.history.iter().flatten().rev() {
        let by: String = e
            .created_by()
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect();
        println!(
            "{:<22} {:<60} {}",
            e.created().as_deref().unwrap_or_default(),
            by,
            e.empty_layer().unwrap_or(false)
        );
    }
    Ok(0)
}

pub(crate) fn save(env: &Env, a: SaveArgs) -> Result<u8, Failure> {
    if a.references.len() != 1 {
        return Err(Failure::usage("kiln save takes one image for now"));
    }
    let (r, manifest) = env.local_image(&a.references[0])?;
    let image = kiln_cache::image::stored(&env.store, &manifest)?;
    kiln_exporter::layout::write(
        &env.store,
        &image,
        Some(&r.to_string()),
        kiln_exporter::layout::Format::Docker,
        &a.output,
        false,
        Default::default(),
    )?;
    Ok(0)
}

/// The manifest of the image whose ID (config digest, `sha256:` optional, or a prefix of
/// at least 4 hex digits) is `id`, when exactly one image has it.
fn by_id(env: &Env, id: &str) -> Result<Option<String>, Failure> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut found: Option<String> = None;
    for rec in env.store.list_images()? {
        let cfg = kiln_cache::image::stored(&env.store, &rec.manifest_digest)?.config_digest;
        if cfg.trim_start_matches("sha256:").starts_with(hex) {
            match &found {
                Some(f) if *f != rec.manifest_digest => {
                    return Err(Failure::new(1, format!("image ID `{id}` is ambiguous")))
                }
                _ => found = Some(rec.manifest_digest),
            }
        }
    }
    Ok(found)
}

/// `kiln load`: a docker archive or an OCI layout tar (file or stdin) into the store, then
/// its names, once every image in it has been read and checked.
pub(crate) fn load(env: &Env, a: LoadArgs) -> Result<u8, Failure> {
    // SAFETY: isatty has no preconditions.
    if a.input.is_none() && unsafe { libc::isatty(0) } == 1 {
        return Err(Failure::usage(
            "kiln load reads an archive from stdin, which is a terminal: redirect a file or give -i FILE",
        ));
    }
    // Held until the images are named: a prune meanwhile would see unreferenced blobs.
    let _gc = env.store.lock_gc_shared()?;
    let quiet = a.quiet;
    let mut progress = |l: &kiln_oci::Layer| {
        if !quiet {
            let id = l.diff_id.trim_start_matches("sha256:");
            eprintln!(
                "Loaded layer {} ({})",
                &id[..id.len().min(12)],
                human_size(l.size)
            );
        }
    };
    let (source, result) = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| Failure::with_source(1, format!("{}: {e}", p.display()), e))?;
            let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
            (
                p.display().to_string(),
                kiln_exporter::load::load(&env.store, &mut r, &mut progress),
            )
        }
        None => (
            "stdin".to_string(),
            kiln_exporter::load::load(&env.store, &mut std::io::stdin().lock(), &mut progress),
        ),
    };
    let images =
        result.map_err(|e| Failure::with_source(1, format!("cannot load {source}: {e}"), e))?;
    // Every name is checked before any is set.
    let mut names = Vec::new();
    for img in &images {
        for n in &img.names {
            let r = Reference::parse(n).map_err(|e| {
                Failure::with_source(1, format!("cannot load {source}: bad image name: {e}"), e)
            })?;
            names.push((r, &img.manifest_digest));
        }
    }
    for (r, manifest) in &names {
        env.store.set_image(&r.to_string(), manifest)?;
        println!("Loaded image: {}", r.familiar());
    }
    for img in images.iter().filter(|i| i.names.is_empty()) {
        env.store.set_image(
            &format!("{UNTAGGED}{}", img.config_digest),
            &img.manifest_digest,
        )?;
        println!("Loaded image ID: {}", img.config_digest);
    }
    Ok(0)
}
