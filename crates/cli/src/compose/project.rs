//! `kiln compose up/down/ps/logs/exec`: flags → `kiln_compose::up`'s options → its calls →
//! Compose's output. Images are built here, one `kiln build` session per service (the same
//! call `kiln build` makes), before `up` runs them.

use crate::util::{Env, Failure};
use clap::Args;
use kiln_compose::plan::{LABEL_CONTAINER_NUMBER, LABEL_SERVICE};
use kiln_compose::up::{self, Event};
use kiln_compose::Loaded;
use kiln_runtime::{Container, ExecOptions, LogOptions, Status};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct UpArgs {
    /// Detached mode: run containers in the background.
    #[arg(short, long)]
    detach: bool,
    /// Build images before starting containers.
    #[arg(long, conflicts_with = "no_build")]
    build: bool,
    /// Don't build an image, even if it's missing.
    #[arg(long)]
    no_build: bool,
    /// Recreate containers even if their configuration and image haven't changed.
    #[arg(long, conflicts_with = "no_recreate")]
    force_recreate: bool,
    /// If containers already exist, don't recreate them.
    #[arg(long)]
    no_recreate: bool,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    remove_orphans: bool,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    wait: bool,
    /// Services to start (and what they depend on; default: all).
    pub(crate) services: Vec<String>,
}

#[derive(Args)]
pub(crate) struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and
    /// anonymous volumes attached to containers.
    #[arg(short, long)]
    volumes: bool,
    /// Remove containers for services not defined in the Compose file.
    #[arg(long)]
    remove_orphans: bool,
    /// Specify a shutdown timeout in seconds.
    #[arg(short = 't', long)]
    timeout: Option<u64>,
}

#[derive(Args)]
pub(crate) struct PsArgs {
    /// Show all stopped containers.
    #[arg(short, long)]
    all: bool,
    /// Only display IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Display services.
    #[arg(long)]
    services: bool,
    /// Services to list (default: all).
    service: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs for each container.
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Produce monochrome output.
    #[arg(long)]
    no_color: bool,
    /// Don't print prefix in logs.
    #[arg(long)]
    no_log_prefix: bool,
    /// Services (default: all).
    services: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// Disable pseudo-TTY allocation (the default when stdin is not a terminal).
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables; repeatable.
    #[arg(short, long)]
    env: Vec<String>,
    /// Run the command as this user.
    #[arg(short, long)]
    user: Option<String>,
    /// Path to workdir directory for this command.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Index of the container if the service has multiple replicas.
    #[arg(long, default_value_t = 1)]
    index: u64,
    /// The service.
    service: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

fn failure(e: up::UpError) -> Failure {
    let code = match &e {
        up::UpError::Run(r) => r.exit_code(),
        _ => 1,
    };
    Failure::wrap(code, e)
}

/// Compose's progress line for an event (on stderr).
fn show(e: &Event) {
    let name = if e.kind == "Volume" {
        format!("{:?}", e.name)
    } else {
        e.name.clone()
    };
    eprintln!(" {} {name}  {}", e.kind, e.status);
}

/// The number of the container in its service.
fn number(c: &Container) -> u64 {
    c.config
        .labels
        .get(LABEL_CONTAINER_NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn service_of(c: &Container) -> &str {
    c.config
        .labels
        .get(LABEL_SERVICE)
        .map_or("", String::as_str)
}

pub(crate) async fn up(env: &Env, loaded: &Loaded, a: &UpArgs) -> Result<u8, Failure> {
    let plan = kiln_compose::plan(loaded, &a.services).map_err(super::load_failure)?;
    for sp in &plan.services {
        let keys = up::unsupported(&loaded.project.services[&sp.name]);
        if !keys.is_empty() {
            eprintln!(
                "warning: service {:?}: {} not supported by kiln compose yet: ignored",
                sp.name,
                keys.join(", ")
            );
        }
    }
    for b in &plan.builds {
        let stored = kiln_oci::Reference::parse(&b.tag)
            .ok()
            .and_then(|r| env.store.get_image(&r.to_string()).ok().flatten())
            .is_some();
        if a.no_build || (stored && !a.build) {
            continue;
        }
        eprintln!(" Service {}  Building", b.service);
        crate::build::build_image(env, b).await?;
        eprintln!(" Service {}  Built", b.service);
    }
    let opts = up::UpOptions {
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        remove_orphans: a.remove_orphans,
        wait: a.wait,
    };
    let shim = crate::run::shim(env);
    up::up(
        &env.store,
        &env.registry,
        &shim,
        loaded,
        &plan,
        &opts,
        |e| show(&e),
    )
    .await
    .map_err(failure)?;
    if a.detach || a.wait {
        return Ok(0);
    }
    // In the foreground: the containers' output, prefixed, until they end or ctrl-c
    // (which stops them, as Compose does).
    let services: Vec<String> = plan.services.iter().map(|s| s.name.clone()).collect();
    let containers = selected(env, loaded, &services, false)?;
    let follow = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let printer = tokio::task::spawn_blocking({
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
        move || print_logs(&containers, &follow, color, true, true)
    });
    tokio::select! {
        _ = printer => Ok(0),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            for mut c in selected(env, loaded, &services, false)? {
                let t = c.stop_timeout();
                c.stop(t).map_err(crate::containers::failure)?;
                show(&Event { kind: "Container", name: c.config.name.clone(), status: "Stopped" });
            }
            Ok(130)
        }
    }
}

pub(crate) fn down(env: &Env, loaded: &Loaded, a: &DownArgs) -> Result<u8, Failure> {
    let services: Vec<String> = loaded.project.services.keys().cloned().collect();
    let opts = up::DownOptions {
        volumes: a.volumes,
        remove_orphans: a.remove_orphans,
        timeout: a.timeout.map(Duration::from_secs),
    };
    let orphans = up::down(
        env.store.root(),
        &loaded.project.name,
        &services,
        &opts,
        |e| show(&e),
    )
    .map_err(failure)?;
    if !orphans.is_empty() {
        eprintln!(
            "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or \
             renamed this service in your compose file, you can run this command with the \
             --remove-orphans flag to clean it up.",
            orphans.join(" ")
        );
    }
    Ok(0)
}

/// The project's containers of `services` (all when empty), one-offs left out; only running
/// ones unless `all`.
fn selected(
    env: &Env,
    loaded: &Loaded,
    services: &[String],
    all: bool,
) -> Result<Vec<Container>, Failure> {
    for s in services {
        if !loaded.project.services.contains_key(s) {
            return Err(Failure::new(1, format!("no such service: {s}")));
        }
    }
    let mut list = Vec::new();
    for mut c in up::project_containers(env.store.root(), &loaded.project.name).map_err(failure)? {
        if c.config
            .labels
            .get(kiln_compose::plan::LABEL_ONEOFF)
            .map(String::as_str)
            == Some("True")
        {
            continue;
        }
        if !services.is_empty() && !services.iter().any(|s| s == service_of(&c)) {
            continue;
        }
        c.refresh().map_err(crate::containers::failure)?;
        if all || c.state.status == Status::Running {
            list.push(c);
        }
    }
    Ok(list)
}

pub(crate) fn ps(env: &Env, loaded: &Loaded, a: &PsArgs) -> Result<u8, Failure> {
    let list = selected(env, loaded, &a.service, a.all)?;
    if a.quiet {
        for c in &list {
            println!("{}", c.id());
        }
        return Ok(0);
    }
    if a.services {
        let mut names: Vec<&str> = list.iter().map(service_of).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            println!("{n}");
        }
        return Ok(0);
    }
    let now = kiln_runtime::now_millis();
    let mut rows = vec![[
        "NAME".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "SERVICE".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
    ]];
    for c in &list {
        let age = Duration::from_millis(u64::try_from(now - c.config.created).unwrap_or(0));
        rows.push([
            c.config.name.clone(),
            c.config.image.clone(),
            crate::containers::command(c, true),
            service_of(c).to_string(),
            format!("{} ago", kiln_units::human_duration(age)),
            crate::containers::status(c, now),
            String::new(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(0)
}

/// Writes whole lines, each after the container's prefix (`api-1  | `).
struct Prefixed {
    prefix: String,
    partial: Vec<u8>,
    out: Arc<Mutex<()>>,
    stderr: bool,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let _guard = self
                .out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut data = self.prefix.clone().into_bytes();
            data.extend_from_slice(&line);
            if self.stderr {
                std::io::stderr().write_all(&data)?;
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(&data)?;
                o.flush()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compose's colours for log prefixes, by container in order.
const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "96"];

/// Prints the logs of `containers`, one thread each, with Compose's prefixes.
fn print_logs(
    containers: &[Container],
    opts: &LogOptions,
    color: bool,
    prefix: bool,
    quiet_errors: bool,
) -> Result<(), Failure> {
    let label = |c: &Container| format!("{}-{}", service_of(c), number(c));
    let width = containers.iter().map(|c| label(c).len()).max().unwrap_or(0);
    let lock = Arc::new(Mutex::new(()));
    let errors: Vec<Option<kiln_runtime::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = if !prefix {
                    String::new()
                } else if color {
                    format!(
                        "\x1b[{}m{:<width$}  |\x1b[0m ",
                        COLORS[i % COLORS.len()],
                        label(c)
                    )
                } else {
                    format!("{:<width$}  | ", label(c))
                };
                let lock = lock.clone();
                s.spawn(move || {
                    let mut out = Prefixed {
                        prefix: p.clone(),
                        partial: Vec::new(),
                        out: lock.clone(),
                        stderr: false,
                    };
                    let mut err = Prefixed {
                        prefix: p,
                        partial: Vec::new(),
                        out: lock,
                        stderr: true,
                    };
                    c.logs(opts, &mut out, &mut err).err()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    for e in errors.into_iter().flatten() {
        if let kiln_runtime::Error::Io { source, .. } = &e {
            if source.kind() == std::io::ErrorKind::BrokenPipe {
                continue;
            }
        }
        if !quiet_errors {
            return Err(crate::containers::failure(e));
        }
    }
    Ok(())
}

pub(crate) fn logs(env: &Env, loaded: &Loaded, a: &LogsArgs) -> Result<u8, Failure> {
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            Failure::usage(format!("invalid --tail `{n}`: give a number or `all`"))
        })?),
    };
    let containers = selected(env, loaded, &a.services, true)?;
    let opts = LogOptions {
        follow: a.follow,
        tail,
        timestamps: a.timestamps,
        ..LogOptions::default()
    };
    let color = !a.no_color && std::io::IsTerminal::is_terminal(&std::io::stdout());
    print_logs(&containers, &opts, color, !a.no_log_prefix, false)?;
    Ok(0)
}

pub(crate) async fn exec(env: &Env, loaded: &Loaded, a: &ExecArgs) -> Result<u8, Failure> {
    if a.detach {
        return Err(Failure::usage("kiln compose exec -d is not supported yet"));
    }
    let services = [a.service.clone()];
    let mut c = selected(env, loaded, &services, false)?
        .into_iter()
        .find(|c| number(c) == a.index)
        .ok_or_else(|| Failure::new(1, format!("service \"{}\" is not running", a.service)))?;
    let tty = !a.no_tty && kiln_runtime::stdin_is_terminal();
    let opts = ExecOptions {
        args: a.command.clone(),
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
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty,
        interactive: true,
        detach_keys: kiln_runtime::DetachKeys::default(),
    };
    let executor = env.executor();
    let not_started = |e| Failure::with_source(126, format!("{e}"), e);
    match c
        .exec(&executor, &opts, kiln_executor::Output::Inherit)
        .await
    {
        Ok(code) => Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX)),
        Err(e @ kiln_runtime::Error::Executor(_)) => Err(not_started(e)),
        Err(e) => Err(crate::containers::failure(e)),
    }
}
