//! Container commands: ps, logs, stop, kill, wait, rm, exec, start, restart, rename (`kiln
//! run` and `kiln create` are in run.rs).
//!
//! Exit codes follow docker's CLI: 1 when a container is unknown or not in the right state
//! (commands taking several containers go on with the others and exit 1 at the end); for
//! `exec`, the command's own exit code, or 126 when it could not be started in the container
//! (not found, not executable), as `docker exec`.

use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::{Container, Containers, ExecOptions, LogOptions, Status};
use std::time::Duration;

/// `-it` with a stdin that is not a terminal: docker's refusal (exit 1).
pub(crate) const NOT_A_TTY: &str = "the input device is not a TTY";

#[derive(Args)]
pub(crate) struct PsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Only show container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Filter: id=, name=, label=KEY[=VALUE], status=, exited=N, ancestor=IMAGE, health=;
    /// repeatable.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format with a Go template: `table` for columns under docker's headers, `json` for
    /// one object a line; fields .ID .Image .Command .CreatedAt .RunningFor .Ports .State
    /// .Status .Size .Names .Labels .Label "k" .Mounts .LocalVolumes .Networks.
    #[arg(long)]
    format: Option<String>,
}

/// `ps --format` fields and docker's column titles for them.
const PS_HEADERS: [(&str, &str); 14] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
];

/// `ps`'s default table, as docker's.
const PS_TABLE: &str =
    "{{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";

#[derive(Args)]
pub(crate) struct PortArgs {
    /// Container (id, id prefix or name).
    container: String,
    /// Only this container port: PORT[/tcp|/udp].
    private_port: Option<String>,
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// Follow the output until the container stops.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end (or `all`).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since a time (e.g. 2013-01-02T13:23:37Z, a Unix timestamp) or for a
    /// duration before now (e.g. 42m).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Show logs up to a time (e.g. 2013-01-02T13:23:37Z, a Unix timestamp) or a duration
    /// before now (e.g. 42m).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    /// Show extra details provided to logs.
    #[arg(long)]
    details: bool,
    /// Container (id, id prefix or name).
    container: String,
}

#[derive(Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait for the container to stop before killing it (default: its
    /// --stop-timeout, else 10).
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct StartArgs {
    /// Attach stdout and stderr, and exit with the container's exit code.
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container (`ctrl-<x>`, a letter,
    /// comma-separated; default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Start every stopped container its restart policy would have restarted (always;
    /// unless-stopped when not stopped by the user; on-failure after a non-zero exit): for
    /// a boot unit, since no daemon restarts anything after a reboot.
    #[arg(long, conflicts_with_all = ["attach", "interactive", "containers"])]
    all_restartable: bool,
    #[arg(required_unless_present = "all_restartable")]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RestartArgs {
    /// Seconds to wait for the container to stop before killing it.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        default_value_t = 10
    )]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RenameArgs {
    /// Container (id, id prefix or name).
    container: String,
    /// Its new name.
    new_name: String,
}

#[derive(Args)]
pub(crate) struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// Keep stdin open (pass the caller's stdin through).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Override the key sequence for detaching a container (`ctrl-<x>`, a letter,
    /// comma-separated; default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Environment K=V (or K from the caller's environment); repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// User (name or uid[:gid]; default: the container's).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory (default: the container's).
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Container (id, id prefix or name).
    container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<String>,
}

pub(crate) fn failure(e: kiln_runtime::Error) -> Failure {
    Failure::with_source(1, e.to_string(), e)
}

/// The container named by `what` (name, id or id prefix), with docker's "No such container".
pub(crate) fn find(env: &Env, what: &str) -> Result<Container, Failure> {
    Containers::new(env.store.root())
        .find(what)
        .map_err(failure)
}

/// Runs `f` for each named container, printing errors and going on; exit 1 if any failed.
pub(crate) fn each(
    env: &Env,
    names: &[String],
    mut f: impl FnMut(Container, &str) -> Result<(), Failure>,
) -> u8 {
    let mut code = 0;
    for name in names {
        if let Err(e) = find(env, name).and_then(|c| f(c, name)) {
            e.print();
            code = 1;
        }
    }
    code
}

fn since(now: i64, then: i64) -> Duration {
    Duration::from_millis(now.saturating_sub(then).max(0) as u64)
}

/// The STATUS column: `Up 3 seconds`, `Up 3 seconds (healthy)`, `Up 3 seconds (Paused)`,
/// `Exited (0) 2 seconds ago`, `Created`.
pub(crate) fn status(c: &Container, now: i64) -> String {
    let s = &c.state;
    match s.status {
        Status::Running if s.restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(255),
            kiln_units::human_duration(since(now, s.finished.unwrap_or(now)))
        ),
        Status::Running => format!(
            "Up {}{}",
            kiln_units::human_duration(since(now, s.started.unwrap_or(c.config.created))),
            match c.health().map(|h| h.status) {
                _ if c.is_paused() => " (Paused)",
                Some(kiln_runtime::HealthStatus::Starting) => " (health: starting)",
                Some(kiln_runtime::HealthStatus::Healthy) => " (healthy)",
                Some(kiln_runtime::HealthStatus::Unhealthy) => " (unhealthy)",
                None => "",
            }
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code.unwrap_or(255),
            kiln_units::human_duration(since(now, s.finished.unwrap_or(now)))
        ),
        Status::Created => "Created".into(),
    }
}

/// The COMMAND column: the command line, truncated to 20 characters, quoted.
pub(crate) fn command(c: &Container, truncate: bool) -> String {
    let cmd = c.config.spec.args.join(" ");
    let cmd = if truncate && cmd.chars().count() > 20 {
        let mut t: String = cmd.chars().take(19).collect();
        t.push('…');
        t
    } else {
        cmd
    };
    format!("{cmd:?}")
}

fn host_addr(p: &kiln_executor::PortMapping) -> String {
    match p.host_ip.as_deref() {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{}", p.host_port),
        Some(ip) => format!("{ip}:{}", p.host_port),
        None => format!("0.0.0.0:{}", p.host_port),
    }
}

/// The PORTS column: `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`, as docker's
/// DisplayablePorts: ports published on the same port number collapse into ranges per
/// address and protocol (`0.0.0.0:8000-8001->8000-8001/tcp`), as do exposed ports that are
/// not published (`8080/tcp`, on the default network), listed first; the others one by one.
fn ports(c: &Container) -> String {
    let maps = &c.config.spec.extra.ports;
    let mut shown: Vec<ShownPort<'_>> = maps
        .iter()
        .map(|p| {
            let ip = p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            (
                p.container_port,
                p.protocol.as_str(),
                Some((ip, p.host_port)),
            )
        })
        .collect();
    let exposed = c.exposed_ports();
    if c.config.spec.network == kiln_executor::Network::Default {
        for (port, proto) in &exposed {
            if !maps
                .iter()
                .any(|m| m.container_port == *port && m.protocol == *proto)
            {
                shown.push((*port, proto, None));
            }
        }
    }
    displayable_ports(shown)
}

/// A port as `ps` shows it: container port, protocol, and the host address and port when
/// it is published.
type ShownPort<'a> = (u16, &'a str, Option<(String, u16)>);

/// docker's DisplayablePorts.
fn displayable_ports(mut ports: Vec<ShownPort<'_>>) -> String {
    // docker's comparePorts: container port, address, host port, protocol.
    ports.sort_by(|a, b| {
        let key = |p: &ShownPort<'_>| {
            let (ip, host) = p.2.clone().unwrap_or_default();
            (p.0, ip, host, p.1.to_string())
        };
        key(a).cmp(&key(b))
    });
    let run = |(ip, proto): &(String, String), (a, b): (u16, u16)| {
        let r = if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        };
        if ip.is_empty() {
            format!("{r}/{proto}")
        } else {
            format!("{ip}:{r}->{r}/{proto}")
        }
    };
    // (address, protocol) → the run being collected, in the order first seen.
    let mut groups: Vec<((String, String), (u16, u16))> = Vec::new();
    let mut out = Vec::new();
    let mut others = Vec::new();
    for (port, proto, host) in ports {
        let ip = match host {
            Some((ip, h)) if h != port => {
                let addr = if ip.contains(':') {
                    format!("[{ip}]:{h}")
                } else {
                    format!("{ip}:{h}")
                };
                others.push(format!("{addr}->{port}/{proto}"));
                continue;
            }
            Some((ip, _)) => ip,
            None => String::new(),
        };
        let key = (ip, proto.to_string());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, last)) if last.1.checked_add(1) == Some(port) => last.1 = port,
            Some((k, last)) => {
                out.push(run(k, *last));
                *last = (port, port);
            }
            None => groups.push((key, (port, port))),
        }
    }
    out.extend(groups.iter().map(|(k, r)| run(k, *r)));
    out.extend(others);
    out.join(", ")
}

/// `kiln port CTR [PORT[/PROTO]]`, as docker's: `80/tcp -> 0.0.0.0:8080` per mapping, or
/// only the host addresses of one container port (exit 1 when it is not published).
pub(crate) fn port(env: &Env, a: PortArgs) -> Result<u8, Failure> {
    let c = find(env, &a.container)?;
    let maps = &c.config.spec.extra.ports;
    match &a.private_port {
        None => {
            for p in maps {
                println!("{}/{} -> {}", p.container_port, p.protocol, host_addr(p));
            }
        }
        Some(want) => {
            let (num, proto) = want.split_once('/').unwrap_or((want, "tcp"));
            let num: u16 = num
                .parse()
                .map_err(|_| Failure::usage(format!("invalid port `{want}`")))?;
            let found: Vec<_> = maps
                .iter()
                .filter(|p| p.container_port == num && p.protocol == proto)
                .collect();
            if found.is_empty() {
                return Err(Failure::new(
                    1,
                    format!(
                        "no public port '{num}/{proto}' published for {}",
                        a.container
                    ),
                ));
            }
            for p in found {
                println!("{}", host_addr(p));
            }
        }
    }
    Ok(0)
}

pub(crate) fn ps(env: &Env, a: PsArgs) -> Result<u8, Failure> {
    let filters =
        kiln_runtime::Filters::parse(&a.filter).map_err(|e| Failure::new(1, e.to_string()))?;
    // As docker: a status filter lists stopped containers too.
    let all = a.all || filters.has_status();
    let list = Containers::new(env.store.root()).list().map_err(failure)?;
    let now = kiln_runtime::now_millis();
    let shown = list
        .iter()
        .filter(|c| all || c.state.status == Status::Running)
        .filter(|c| filters.matches(c));
    let id = |c: &Container| {
        if a.no_trunc {
            c.id().to_string()
        } else {
            c.short_id().to_string()
        }
    };
    // As docker's: -q wins over `table`, a template of one's own over -q.
    if let Some(f) = a
        .format
        .as_ref()
        .filter(|f| !(a.quiet && f.starts_with("table")))
    {
        let format = crate::format::listing(f, PS_TABLE)?;
        let rows: Vec<serde_json::Value> = shown
            .map(|c| ps_fields(c, &id(c), now, !a.no_trunc))
            .collect();
        return crate::format::print_rows(&format, &PS_HEADERS, &rows);
    }
    if a.quiet {
        for c in shown {
            println!("{}", id(c));
        }
        return Ok(0);
    }
    let mut rows: Vec<[String; 7]> = vec![[
        "CONTAINER ID".into(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for c in shown {
        rows.push([
            id(c),
            c.config.image.clone(),
            command(c, !a.no_trunc),
            format!(
                "{} ago",
                kiln_units::human_duration(since(now, c.config.created))
            ),
            status(c, now),
            ports(c),
            c.config.name.clone(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

/// One container as `ps --format` sees it: docker's fields, all strings (not `.Size`, which
/// kiln does not measure: it prints `<no value>`).
fn ps_fields(c: &Container, id: &str, now: i64, truncate: bool) -> serde_json::Value {
    let inspected = c.inspect();
    let state = inspected["State"]["Status"].as_str().unwrap_or_default();
    let names = |v: &serde_json::Value| match v {
        serde_json::Value::Object(o) => o.keys().cloned().collect::<Vec<_>>().join(","),
        _ => String::new(),
    };
    let mounts: Vec<&str> = inspected["Mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["Name"].as_str().or(m["Source"].as_str()))
                .collect()
        })
        .unwrap_or_default();
    let volumes = inspected["Mounts"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["Type"] == "volume").count());
    let labels: Vec<String> = c
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    serde_json::json!({
        "ID": id,
        "Image": c.config.image,
        "Command": command(c, truncate),
        "CreatedAt": crate::format::created_at(c.config.created / 1000),
        "RunningFor": format!("{} ago", kiln_units::human_duration(since(now, c.config.created))),
        "Ports": ports(c),
        "State": state,
        "Status": status(c, now),
        "Names": c.config.name,
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "LocalVolumes": volumes.to_string(),
        "Networks": names(&inspected["NetworkSettings"]["Networks"]),
    })
}

/// Columns padded to the widest cell plus three spaces (docker's tabwriter layout).
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn logs(env: &Env, a: LogsArgs) -> Result<u8, Failure> {
    let tail = match a.tail.as_str() {
        "all" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            Failure::usage(format!("invalid --tail `{n}`: give a number or `all`"))
        })?),
    };
    let now = std::time::SystemTime::now();
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| kiln_runtime::parse_log_time(v, now))
            .transpose()
            .map_err(|e| Failure::new(1, format!("invalid value for \"{flag}\": {e}")))
    };
    let since = time("since", &a.since)?;
    let until = time("until", &a.until)?;
    let c = find(env, &a.container)?;
    let opts = LogOptions {
        follow: a.follow,
        tail,
        timestamps: a.timestamps,
        details: a.details,
        since,
        until,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match c.logs(&opts, &mut out, &mut err) {
        Ok(()) => Ok(0),
        // The reader went away (`kiln logs … | head`).
        Err(kiln_runtime::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        Err(e) => Err(failure(e)),
    }
}

pub(crate) fn stop(env: &Env, a: StopArgs) -> Result<u8, Failure> {
    Ok(each(env, &a.containers, |mut c, name| {
        let timeout = a.time.map_or_else(|| c.stop_timeout(), Duration::from_secs);
        c.stop(timeout).map_err(failure)?;
        println!("{name}");
        Ok(())
    }))
}

pub(crate) async fn start(env: &Env, a: StartArgs) -> Result<u8, Failure> {
    let shim = crate::run::shim(env);
    if a.all_restartable {
        let mut code = 0;
        let restartable = Containers::new(env.store.root())
            .restartable()
            .map_err(failure)?;
        for mut c in restartable {
            match c.start(&shim) {
                Ok(()) => println!("{}", c.config.name),
                Err(e) => {
                    failure(e).print();
                    code = 1;
                }
            }
        }
        return Ok(code);
    }
    if a.attach || a.interactive {
        let [name] = a.containers.as_slice() else {
            return Err(Failure::usage(
                "you cannot start and attach multiple containers at once",
            ));
        };
        let keys = crate::attach::detach_keys(a.detach_keys.as_deref(), 1)?;
        let mut c = find(env, name)?;
        // Through the shim's attach socket with stdin, or a terminal's output (its
        // window size, its detach keys); else the log followed from now on.
        if (a.interactive && c.config.interactive) || c.config.tty {
            let stdin = a.interactive && c.config.interactive;
            if stdin && c.config.tty && !kiln_runtime::stdin_is_terminal() {
                return Err(Failure::new(1, NOT_A_TTY));
            }
            let opts = kiln_runtime::AttachOptions {
                stdin,
                detach_keys: keys,
                sig_proxy: true,
            };
            let end = c.start_and_attach(&shim, &opts).await.map_err(failure)?;
            return Ok(crate::attach::ended(end));
        }
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let code = c
            .start_attached(&shim, &mut out, &mut err)
            .map_err(failure)?;
        return Ok(code.map_or(0, |c| u8::try_from(c.clamp(0, 255)).unwrap_or(u8::MAX)));
    }
    Ok(each(env, &a.containers, |mut c, name| {
        c.start(&shim).map_err(failure)?;
        println!("{name}");
        Ok(())
    }))
}

pub(crate) fn restart(env: &Env, a: RestartArgs) -> Result<u8, Failure> {
    let shim = crate::run::shim(env);
    Ok(each(env, &a.containers, |mut c, name| {
        c.restart(Duration::from_secs(a.time), &shim)
            .map_err(failure)?;
        println!("{name}");
        Ok(())
    }))
}

pub(crate) fn rename(env: &Env, a: RenameArgs) -> Result<u8, Failure> {
    Containers::new(env.store.root())
        .rename(&a.container, &a.new_name)
        .map_err(failure)?;
    Ok(0)
}

pub(crate) fn kill(env: &Env, a: KillArgs) -> Result<u8, Failure> {
    let signal = kiln_runtime::parse_signal(&a.signal)
        .ok_or_else(|| Failure::usage(format!("invalid signal: {}", a.signal)))?;
    Ok(each(env, &a.containers, |mut c, name| {
        c.kill(signal).map_err(failure)?;
        println!("{name}");
        Ok(())
    }))
}

pub(crate) fn wait(env: &Env, a: WaitArgs) -> Result<u8, Failure> {
    Ok(each(env, &a.containers, |mut c, _| {
        match c.wait().map_err(failure)? {
            Some(code) => println!("{code}"),
            None => {
                return Err(Failure::new(
                    1,
                    format!(
                        "container {} was removed before its exit code could be read",
                        c.id()
                    ),
                ))
            }
        }
        Ok(())
    }))
}

pub(crate) fn rm(env: &Env, a: RmArgs) -> Result<u8, Failure> {
    Ok(each(env, &a.containers, |c, name| {
        let volumes = a.volumes.then(|| c.clone());
        c.remove(a.force).map_err(failure)?;
        if let Some(c) = volumes {
            c.remove_anonymous_volumes().map_err(failure)?;
        }
        println!("{name}");
        Ok(())
    }))
}

pub(crate) async fn exec(env: &Env, a: ExecArgs) -> Result<u8, Failure> {
    if a.tty && a.interactive && !kiln_runtime::stdin_is_terminal() {
        return Err(Failure::new(1, NOT_A_TTY));
    }
    let detach_keys = crate::attach::detach_keys(a.detach_keys.as_deref(), 1)?;
    let mut c = find(env, &a.container)?;
    let opts = ExecOptions {
        args: a.args,
        env: a
            .env
            .iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e.clone())
                } else {
                    std::env::var(e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect(),
        user: a.user,
        workdir: a.workdir,
        tty: a.tty,
        interactive: a.interactive,
        detach_keys,
    };
    let executor = env.executor();
    let not_started = |e| Failure::with_source(126, format!("{e}"), e);
    if a.tty {
        return match c.exec_terminal(&executor, &opts).await {
            Ok(end) => Ok(crate::attach::ended(end)),
            Err(e @ kiln_runtime::Error::Executor(_)) => Err(not_started(e)),
            Err(e) => Err(failure(e)),
        };
    }
    let output = if a.interactive {
        kiln_executor::Output::Inherit
    } else {
        kiln_executor::Output::InheritNoStdin
    };
    match c.exec(&executor, &opts, output).await {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e @ kiln_runtime::Error::Executor(_)) => Err(not_started(e)),
        Err(e) => Err(failure(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_collapse_into_ranges_as_docker_shows_them() {
        let m = |ip: Option<&str>, h: u16, c: u16, proto: &'static str| {
            (c, proto, ip.map(|ip| (ip.to_string(), h)))
        };
        let ports = vec![
            m(Some("0.0.0.0"), 49153, 80, "tcp"),
            m(Some("0.0.0.0"), 8001, 8001, "tcp"),
            m(Some("0.0.0.0"), 8000, 8000, "tcp"),
            m(Some("0.0.0.0"), 8003, 8003, "tcp"),
            m(Some("127.0.0.1"), 53, 53, "udp"),
            m(Some("::1"), 8080, 81, "tcp"),
            // Exposed, not published.
            m(None, 0, 9001, "tcp"),
            m(None, 0, 9000, "tcp"),
            m(None, 0, 9000, "udp"),
        ];
        assert_eq!(
            displayable_ports(ports),
            "0.0.0.0:8000-8001->8000-8001/tcp, 127.0.0.1:53->53/udp, \
             0.0.0.0:8003->8003/tcp, 9000-9001/tcp, 9000/udp, 0.0.0.0:49153->80/tcp, \
             [::1]:8080->81/tcp"
        );
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let rows = [
            ["A".to_string(), "BB".to_string()],
            ["ccc".to_string(), "d".to_string()],
        ];
        assert_eq!(table(&rows), "A     BB\nccc   d\n");
    }
}
