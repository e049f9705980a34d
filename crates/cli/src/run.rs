//! `kiln run` and `kiln create`: their flags, resolved into [`kiln_runtime::RunOptions`], and
//! one call to [`kiln_runtime::run`] or [`kiln_runtime::create`].

use crate::util::{Env, Failure};
use clap::Args;
use kiln_oci::Reference;
use std::path::PathBuf;

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
    /// Allocate a pseudo-terminal (held by the container's shim; in the foreground the
    /// caller attaches to it, and the detach keys leave it running).
    #[arg(short, long)]
    tty: bool,
    /// Override the key sequence for detaching a container (`ctrl-<x>`, a letter,
    /// comma-separated; default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Proxy received signals to the process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    sig_proxy: bool,
    /// Environment K=V (or K from the caller's environment); repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (K=V lines, K from the caller's environment,
    /// `#` comments); repeatable; -e wins.
    #[arg(long = "env-file")]
    env_files: Vec<PathBuf>,
    /// Set a label K=V on the container; repeatable.
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Read labels from a file (K=V lines, `#` comments); repeatable.
    #[arg(long = "label-file")]
    label_files: Vec<PathBuf>,
    /// Bind mount /HOST/PATH:DST[:ro], volume NAME:DST[:ro] (created when missing), or
    /// DST alone (a new anonymous volume); repeatable.
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    /// [,tmpfs-size=…][,tmpfs-mode=…]; repeatable.
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network: none (default without -p; only loopback), host, default (a private
    /// namespace with outbound access through pasta; the default with -p), or the name of a
    /// network made by `kiln network create`.
    #[arg(long)]
    network: Option<String>,
    /// Another name of the container on its network; repeatable.
    #[arg(long = "network-alias")]
    network_alias: Vec<String>,
    /// Publish a container port on the host: [IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END]
    /// [/tcp|/udp] (no host port: a free one); repeatable. Implies --network default unless
    /// --network is given.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every exposed port (the image's EXPOSE and --expose) on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports: PORT[-END][/tcp|/udp]; repeatable.
    #[arg(long)]
    expose: Vec<String>,
    /// Set the platform (accepted when it is the image's: os[/arch[/variant]]).
    #[arg(long)]
    platform: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    init: bool,
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
    /// Mount a tmpfs: PATH[:size=SIZE,mode=OCTAL[,…]]; repeatable.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Container hostname (default: the first 12 characters of its id).
    #[arg(long, short = 'h')]
    hostname: Option<String>,
    /// Add a line to /etc/hosts: NAME:IP (or NAME=IP); repeatable.
    #[arg(long = "add-host")]
    add_hosts: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Add a Linux capability (NAME or CAP_NAME, ALL); repeatable.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (NAME or CAP_NAME, ALL); repeatable.
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Security option: no-new-privileges[=true|false], seccomp=unconfined; repeatable.
    #[arg(long = "security-opt")]
    security_opts: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, …; -1 unlimited); repeatable.
    #[arg(long = "ulimit")]
    ulimits: Vec<String>,
    /// Signal that stops the container (default: the image's StopSignal, else SIGTERM).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds `kiln stop` waits before killing the container (-1: for ever; default 10).
    #[arg(long, allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Health check command (run with /bin/sh -c in the container).
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s, 1m30s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration, allow_hyphen_values = true)]
    health_interval: Option<std::time::Duration>,
    /// Longest a health check may run.
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration, allow_hyphen_values = true)]
    health_timeout: Option<std::time::Duration>,
    /// Consecutive failures that make the container unhealthy.
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Time after the start during which failed health checks do not count.
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration, allow_hyphen_values = true)]
    health_start_period: Option<std::time::Duration>,
    /// Disable the image's health check.
    #[arg(long)]
    no_healthcheck: bool,
    /// Run the container through this OCI runtime (e.g. runc) with an OCI bundle.
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// Restart policy: no, on-failure[:MAX], always or unless-stopped (carried out by the
    /// container's shim: with -d, or `kiln create`).
    #[arg(long, default_value = "no")]
    restart: String,
    /// Logging driver: json-file (default; `local` is taken as json-file) or none.
    #[arg(long, value_name = "DRIVER")]
    log_driver: Option<String>,
    /// Logging option: max-size=SIZE (rotate the log at this size), max-file=N (keep N
    /// files); repeatable.
    #[arg(long = "log-opt", value_name = "OPT")]
    log_opts: Vec<String>,
    /// Image.
    image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The lines of a docker `--env-file` / `--label-file` (docker's parseKeyValueFile):
/// leading blanks dropped, blank lines and `#` comments skipped, `K=V` kept as is, a bare
/// `K` taken from the caller's environment with `from_env` (left out when it is unset),
/// kept as is otherwise.
/// Docker's messages for unreadable files and bad names.
fn read_kv_file(path: &std::path::Path, from_env: bool) -> Result<Vec<String>, Failure> {
    let bytes = std::fs::read(path).map_err(|e| {
        // Go's wording: `open FILE: no such file or directory`.
        let why = e.to_string();
        let why = why.split(" (os error").next().unwrap_or_default();
        Failure::usage(format!("open {}: {}", path.display(), why.to_lowercase()))
    })?;
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if i == 0 {
            raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw)
        } else {
            raw
        };
        let Ok(line) = std::str::from_utf8(raw) else {
            return Err(Failure::usage(format!(
                "env file {} contains invalid utf8 bytes at line {}",
                path.display(),
                i + 1
            )));
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim_start(), Some(v)),
            None => (line, None),
        };
        if name.contains(char::is_whitespace) {
            return Err(Failure::usage(format!(
                "poorly formatted environment: variable '{name}' contains whitespaces"
            )));
        }
        if name.is_empty() {
            return Err(Failure::usage(format!(
                "poorly formatted environment: no variable name on line '{line}'"
            )));
        }
        match value {
            Some(v) => out.push(format!("{name}={v}")),
            None if from_env => {
                if let Ok(v) = std::env::var(name) {
                    out.push(format!("{name}={v}"));
                }
            }
            None => out.push(name.to_string()),
        }
    }
    Ok(out)
}

/// `--cap-add`, `--cap-drop`, `--security-opt` and `--ulimit`, checked as docker does.
fn process_options(a: &RunArgs) -> Result<kiln_executor::ProcessOptions, Failure> {
    let caps = |names: &[String], which| {
        names
            .iter()
            .map(|n| kiln_executor::normalize_capability(n, which))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::usage(e.to_string()))
    };
    let mut opts = kiln_executor::ProcessOptions {
        cap_add: caps(&a.cap_add, "CapAdd")?,
        cap_drop: caps(&a.cap_drop, "CapDrop")?,
        ..Default::default()
    };
    for o in &a.security_opts {
        // docker's parseSecurityOpts: KEY=VALUE (or the legacy KEY:VALUE); only
        // no-new-privileges goes without a value.
        let (k, v) = match o.split_once('=') {
            Some(kv) => kv,
            None if o == "no-new-privileges" => (o.as_str(), "true"),
            None => o.split_once(':').unwrap_or((o, "")),
        };
        if v.is_empty() {
            return Err(Failure::usage(format!("Invalid --security-opt: {o:?}")));
        }
        match k {
            "no-new-privileges" => {
                // Go's strconv.ParseBool.
                opts.no_new_privileges = Some(match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(Failure::usage(format!("invalid --security-opt 2: {o:?}"))),
                });
            }
            "seccomp" if v == "unconfined" => opts.seccomp_unconfined = true,
            "seccomp" if v == "builtin" || v == "default" => opts.seccomp_unconfined = false,
            "seccomp" | "apparmor" | "label" | "systempaths" | "writable-cgroups" => {
                return Err(Failure::usage(format!(
                    "--security-opt {o:?} is not supported by kiln (only no-new-privileges and \
                     seccomp=unconfined)"
                )))
            }
            _ => return Err(Failure::usage(format!("invalid --security-opt 2: {o:?}"))),
        }
    }
    for u in &a.ulimits {
        let limit = u.parse::<kiln_executor::Ulimit>().map_err(|e| {
            Failure::usage(format!("invalid argument {u:?} for \"--ulimit\" flag: {e}"))
        })?;
        // As docker: a later value for the same name replaces an earlier one.
        opts.ulimits.retain(|l| l.name != limit.name);
        opts.ulimits.push(limit);
    }
    Ok(opts)
}

/// `cwd` joined with the relative `path`, `.` and `..` resolved lexically (Go's
/// `filepath.Abs`, as docker resolves `-v ./dir:/x`).
fn absolute(cwd: &std::path::Path, path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `--cpus`: a finite, non-negative number of CPUs; 0 is no limit (as docker's). docker's
/// wording for what is not a number.
pub(crate) fn parse_cpus(s: &str) -> Result<Option<f64>, Failure> {
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

/// `--health-interval` and the like: Go durations, as docker's.
fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("cannot be negative".into());
    }
    kiln_units::parse_duration(s, kiln_units::DurationUnits::Go).map_err(|e| e.to_string())
}

/// `-m` and tmpfs sizes: docker's RAMInBytes (every unit a power of 1024), refused in
/// kiln's words.
pub(crate) fn parse_ram(s: &str) -> Result<u64, String> {
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

fn parse_tmpfs(spec: &str) -> Result<kiln_executor::TmpfsMount, Failure> {
    let (path, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !path.starts_with('/') {
        return Err(Failure::usage(format!(
            "invalid tmpfs `{spec}`: the path must be absolute"
        )));
    }
    let (mut size, mut mode) = (None, None);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(v) = o.strip_prefix("size=") {
            size = Some(parse_ram(v).map_err(Failure::usage)?);
        } else if let Some(v) = o.strip_prefix("mode=") {
            mode = Some(u32::from_str_radix(v, 8).map_err(|_| {
                Failure::usage(format!(
                    "invalid tmpfs `{spec}`: mode `{v}` is not an octal number"
                ))
            })?);
        }
    }
    Ok(kiln_executor::TmpfsMount {
        destination: path.to_string(),
        size,
        mode,
    })
}

/// The shim's command line: kiln-shim (or this binary), [`kiln_runtime::SHIM_ARG`].
pub(crate) fn shim(env: &Env) -> Vec<std::ffi::OsString> {
    vec![
        env.exe.clone().into_os_string(),
        kiln_runtime::SHIM_ARG.into(),
    ]
}

/// `kiln run`'s (and `kiln create`'s) flags, checked and resolved.
fn resolve(
    env: &Env,
    a: RunArgs,
) -> Result<(kiln_runtime::Launcher, kiln_runtime::RunOptions), Failure> {
    if a.detach && a.runtime.is_some() {
        return Err(Failure::usage(
            "kiln run -d does not support --runtime yet (kiln exec and the shim need the \
             sandbox's own pid 1)",
        ));
    }
    let mut publish = a
        .publish
        .iter()
        .map(|p| p.parse::<kiln_runtime::PortSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut expose = Vec::new();
    for e in &a.expose {
        expose.extend(kiln_runtime::parse_expose(e).map_err(|e| Failure::usage(e.to_string()))?);
    }
    let publishing = !publish.is_empty() || a.publish_all;
    // A published port is meant to be reachable: -p or -P without --network means `default`.
    let network = match a.network.as_deref() {
        Some("host") => kiln_executor::Network::Host,
        Some("default") => kiln_executor::Network::Default,
        None if publishing => kiln_executor::Network::Default,
        _ => kiln_executor::Network::None,
    };
    // Any other name is a user-defined network (it must exist: checked at create).
    let network_name = a
        .network
        .clone()
        .filter(|n| !["none", "host", "default"].contains(&n.as_str()));
    if network_name.is_none() && !a.network_alias.is_empty() {
        return Err(Failure::usage(
            "network-scoped aliases are only supported for user-defined networks",
        ));
    }
    if network_name.is_some() && publishing {
        return Err(Failure::usage(
            "-p with a user-defined network is not supported yet (issue 14)",
        ));
    }
    if network == kiln_executor::Network::Host && publishing {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
    if network != kiln_executor::Network::Default {
        // As docker: nothing is published with --network none or host.
        publish.clear();
    }
    let mut tmpfs = a
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<Vec<_>, _>>()?;
    let devices = a
        .devices
        .iter()
        .map(|d| d.parse::<kiln_executor::DeviceMapping>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(e.to_string()))?;
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
    let process = process_options(&a)?;
    if let Some(s) = &a.stop_signal {
        if kiln_runtime::parse_signal(s).is_none() {
            return Err(Failure::usage(format!("invalid signal: {s}")));
        }
    }
    let restart = restart_policy(&a)?;
    if let Some(p) = &a.platform {
        kiln_runtime::check_platform_name(p).map_err(|e| Failure::new(125, e.to_string()))?;
    }
    let log = kiln_runtime::LogConfig::new(a.log_driver.as_deref(), &a.log_opts)
        .map_err(|e| Failure::usage(e.to_string()))?;
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
        } else if src.starts_with('/') || src.starts_with('.') {
            // docker 23+: a source starting with `.` (never a volume name) is relative to
            // the caller's cwd.
            let source = if src.starts_with('/') {
                PathBuf::from(src)
            } else {
                let cwd = std::env::current_dir().map_err(|e| {
                    Failure::with_source(1, format!("cannot read the current directory: {e}"), e)
                })?;
                absolute(&cwd, src)
            };
            mounts.push(kiln_executor::BindMount {
                source,
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
    if !a.mount.is_empty() {
        let cwd = std::env::current_dir().map_err(|e| {
            Failure::with_source(1, format!("cannot read the current directory: {e}"), e)
        })?;
        for m in &a.mount {
            let m = kiln_runtime::MountFlag::parse(m, &cwd).map_err(|e| match e {
                kiln_runtime::MountFlagError::Invalid { .. } => Failure::usage(e.to_string()),
                // A daemon-side check in docker: exit 125.
                kiln_runtime::MountFlagError::Config { .. } => Failure::new(125, e.to_string()),
            })?;
            // A daemon-side check in docker: exit 125.
            m.check().map_err(|e| Failure::new(125, e.to_string()))?;
            match m {
                kiln_runtime::MountFlag::Bind(b) => mounts.push(b),
                kiln_runtime::MountFlag::Volume(v) => volumes.push(v),
                kiln_runtime::MountFlag::Tmpfs(t) => tmpfs.push(t),
            }
        }
    }
    // As docker: the files' variables first, then -e's, so that -e wins.
    let mut env_vars = Vec::new();
    for f in &a.env_files {
        env_vars.extend(read_kv_file(f, true)?);
    }
    env_vars.extend(a.env.iter().filter_map(|e| {
        if e.contains('=') {
            Some(e.clone())
        } else {
            std::env::var(e).ok().map(|v| format!("{e}={v}"))
        }
    }));
    let mut labels = std::collections::BTreeMap::new();
    let mut label_lines = Vec::new();
    for f in &a.label_files {
        label_lines.extend(read_kv_file(f, false)?);
    }
    label_lines.extend(a.labels.iter().cloned());
    for l in label_lines {
        let (k, v) = l.split_once('=').unwrap_or((&l, ""));
        if k.is_empty() {
            return Err(Failure::usage(format!("invalid label '{l}': empty name")));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let container = kiln_runtime::CreateOptions {
        name: a.name,
        remove: a.rm,
        env: env_vars,
        workdir: a.workdir,
        user: a.user,
        entrypoint: a.entrypoint,
        args: a.args,
        network,
        network_name,
        network_aliases: a.network_alias,
        mounts,
        volumes,
        hostname: a.hostname,
        labels,
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        restart,
        log,
        health: kiln_runtime::HealthOptions {
            cmd: a.health_cmd,
            interval: a.health_interval,
            timeout: a.health_timeout,
            start_period: a.health_start_period,
            retries: a.health_retries,
            disabled: a.no_healthcheck,
        },
        publish,
        publish_all: a.publish_all,
        expose,
        init: a.init,
        extra: kiln_executor::SandboxOptions {
            tmpfs,
            resources: kiln_executor::Resources {
                // 0 is no limit, as with docker.
                memory: a.memory.filter(|&m| m > 0),
                cpus,
                pids: a.pids_limit,
                memory_swap: None,
                // Set by the runtime for every container.
                updatable: false,
            },
            privileged: a.privileged,
            create_etc_files: true,
            ports: Vec::new(),
            devices,
            extra_hosts,
            read_only: a.read_only,
            // Set by the runtime (`--rm`).
            discard_upper: false,
            process,
            dns: Vec::new(),
        },
    };
    let mut executor = env.executor();
    if let Some(r) = a.runtime {
        executor = executor.with_runtime(r);
    }
    let launcher = kiln_runtime::Launcher {
        executor,
        shim: shim(env),
    };
    let opts = kiln_runtime::RunOptions {
        image: a.image,
        reference,
        platform: a.platform,
        container,
    };
    Ok((launcher, opts))
}

/// `--restart`, checked as docker (25+) does, not with `--rm`; refused for a foreground run,
/// which has no shim to carry it out.
fn restart_policy(a: &RunArgs) -> Result<kiln_runtime::RestartPolicy, Failure> {
    let policy: kiln_runtime::RestartPolicy = a
        .restart
        .parse()
        .map_err(|e: kiln_runtime::PolicyError| Failure::usage(e.to_string()))?;
    if policy == kiln_runtime::RestartPolicy::No {
        return Ok(policy);
    }
    if a.rm {
        return Err(Failure::usage(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    if !a.detach {
        return Err(Failure::usage(
            "kiln run --restart needs -d: without a daemon only a detached container's shim \
             can restart it (or use kiln create, then kiln start)",
        ));
    }
    Ok(policy)
}

/// Tells that the image is pulled, as `docker run` and `docker create` do.
fn pulling(e: kiln_runtime::RunEvent<'_>) {
    match e {
        kiln_runtime::RunEvent::Pulling(r) => {
            eprintln!("Unable to find image '{}' locally", r.familiar());
        }
    }
}

pub(crate) async fn run(env: &Env, a: RunArgs) -> Result<u8, Failure> {
    if a.tty && a.interactive && !a.detach && !kiln_runtime::stdin_is_terminal() {
        return Err(Failure::new(1, crate::containers::NOT_A_TTY));
    }
    let keys = crate::attach::detach_keys(a.detach_keys.as_deref(), 125)?;
    let attach = kiln_runtime::AttachOptions {
        stdin: a.interactive,
        detach_keys: keys,
        sig_proxy: a.sig_proxy,
    };
    let (launcher, opts) = resolve(env, a)?;
    let outcome = kiln_runtime::run(&env.store, &env.registry, &launcher, &opts, pulling)
        .await
        .map_err(|e| Failure::wrap(e.exit_code(), e))?;
    match &outcome {
        kiln_runtime::Outcome::Detached(c) => println!("{}", c.id()),
        kiln_runtime::Outcome::Attach(c) => {
            let mut c = c.clone();
            let end = c
                .attach(&attach)
                .await
                .map_err(crate::containers::failure)?;
            return Ok(crate::attach::ended(end));
        }
        kiln_runtime::Outcome::Exited(r) if r.oom_killed => {
            eprintln!("kiln: the container was killed: out of memory (--memory limit)");
        }
        kiln_runtime::Outcome::Exited(_) => {}
    }
    Ok(outcome.exit_code())
}

/// `kiln create`: `kiln run`'s flags; makes the container ("Created") and prints its id.
/// `kiln start` runs it under a shim, its output in its log (so it is recorded as `-d`).
pub(crate) async fn create(env: &Env, mut a: RunArgs) -> Result<u8, Failure> {
    if a.runtime.is_some() {
        return Err(Failure::usage(
            "kiln create does not support --runtime yet (kiln start runs containers under \
             the shim, which needs the sandbox's own pid 1)",
        ));
    }
    a.detach = true;
    let (_, opts) = resolve(env, a)?;
    let c = kiln_runtime::create(&env.store, &env.registry, &opts, pulling)
        .await
        .map_err(|e| Failure::wrap(e.exit_code(), e))?;
    println!("{}", c.id());
    Ok(0)
}
