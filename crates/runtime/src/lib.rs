//! kiln's container runtime: runs containers from images in the local store, on the same
//! executor as build steps, and keeps track of them without a daemon.
//!
//! # On disk
//!
//! A container lives in `ROOT/containers/<id>/` (64 hex digits): `upper/` and `work/` for its
//! overlay, `config.json` (what it runs: the executor's [`kiln_executor::RunSpec`], its name,
//! image and options; written once) and `state.json` (created / running / exited, its
//! supervisor and pid 1 as [`kiln_executor::HostProcess`]es, start and end times, exit code;
//! always rewritten atomically, a temporary file then a rename). `ROOT/containers.lock` is
//! held while a container is created, so names stay unique. See [`Containers`] and
//! [`Container`]; [`LAYOUT_VERSION`] versions the layout. Volumes live in
//! `ROOT/volumes/NAME/` (`_data/` and `volume.json`, as docker's local driver; see
//! [`Volumes`]); a container's config lists the volumes it mounts.
//!
//! Module [`system`] is what the store, containers and volumes are together: which image
//! names an image prune removes, what a collection keeps for containers, and the disk usage
//! by category (`kiln system df`).
//!
//! [`run`] is `kiln run` as one call: [`RunOptions`] (the image and [`CreateOptions`], which
//! the command line resolves from its flags) in, an [`Outcome`] or a [`RunError`] (with
//! `docker run`'s exit codes) out. It finds the image in the store or pulls it (the
//! registry client), reads it (`kiln_cache::image`) and runs the container.
//!
//! Which process runs follows `docker run`: `--entrypoint` replaces the image's entrypoint
//! and drops its CMD, arguments after the image replace CMD, `-e` overrides the image's Env
//! by key.
//!
//! # Supervisors, and the shim
//!
//! Every running container has a *supervisor*, the process that runs it on the executor and
//! records its end: `kiln run` itself in the foreground, a shim for `kiln run -d`. A
//! container is running while its state says so *and* its supervisor is alive, checked by
//! pid and start time (`/proc/PID/stat`), so a supervisor killed with SIGKILL never leaves a
//! container "Up" forever ([`Container::refresh`] records it as exited with 255; the
//! executor's helper kills the sandbox when its caller dies anyway).
//!
//! The shim is the small `kiln-shim` binary installed next to `kiln`, or the `kiln` binary
//! again without it (`kiln-shim __kiln-shim DIR`, [`SHIM_ARG`], [`shim_main`]; see
//! [`companion_binary`] for why a binary of its own), started by [`Container::start_detached`] with `setsid` in a session of
//! its own, stdin/stdout on /dev/null, so that it outlives the `kiln run -d` that started
//! it. It runs the container with [`kiln_executor::Executor::run_observed`]; once the
//! sandbox is set up it writes the state (running, its own identity, the sandbox's pid 1)
//! and then reports `ok` on a pipe inherited from `kiln run -d` (or `error: MESSAGE` when the
//! start failed, `exit CODE: MESSAGE` when the command could not be started: not found 127,
//! not executable 126, as `docker run`), which only then prints the id and exits: right after `kiln run -d`
//! returns, `kiln exec` and `kiln stop` work. At the end it records the exit code and time
//! (or removes the container with `--rm`). The shim is our own binary rather than, say,
//! `conmon`: no extra package, and the same executor code as every other run.
//!
//! The shim also serves the container's attach socket (`attach.sock`, see `attach.rs` for
//! its protocol): it holds a `-t` container's terminal master and a `-i` container's stdin
//! pipe, sends the output to every attached client as it logs it, and the exit code at the
//! end. `kiln attach`, `kiln start -ai` and `kiln run -it` ([`Container::attach`]) are its
//! clients; the detach keys leave the container running under its shim. `kiln exec -t`
//! ([`Container::exec_terminal`]) asks the shim to start its process, whose terminal the
//! shim then holds, so that it too runs on after a detach.
//!
//! # Logs
//!
//! A container's stdout and stderr go to `<id>-json.log` in its directory, in docker's
//! json-file format (one `{"log","stream","time"}` object per line, see `logs/`), whoever
//! supervises it: the shim of a detached container writes what it captures; `kiln run` in the
//! foreground (without `-t`) gives the container pipes, as docker does, and a thread per
//! stream prints what comes and records it. `--log-opt max-size,max-file` rotates the file
//! as docker does (`.1`, `.2` …), `--log-driver none` records nothing (`logs` then fails as
//! docker's), `local` is taken as json-file (kiln has one on-disk format). Output that is
//! not UTF-8 is stored with replacement characters, as docker stores it. Containers made by
//! an older kiln have a CRI-format `container.log`, which is still read. A `-t` container runs
//! under a shim (in the foreground too), which records its terminal's output.
//!
//! # create, start, restart, rename
//!
//! [`create`] makes a container without starting it. [`Container::start`] starts a created
//! or stopped one under a shim, in the same directory: the same `upper/` (its writable
//! layer), config (volumes, ports, name, id) and log (appended to); the state is reset
//! first. A `kiln run -d` whose start fails removes the container it made (and the
//! anonymous volumes made for it), so only the error is left. [`Container::inspect`] is
//! docker's `ContainerInspect` shape of a container.
//!
//! # exec, kill, stop
//!
//! `exec` joins the sandbox's pid 1 recorded in the state through
//! [`kiln_executor::Executor::exec_in`] (namespaces, cgroup, capabilities, seccomp and
//! `no_new_privs` as the container's own process). Signals go to pid 1, which forwards them
//! to the command; see `kill.rs`.
//!
//! # pause, unpause, update
//!
//! Every container's sandbox gets a cgroup of its own in the memory, cpu, pids and freezer
//! controllers ([`kiln_executor::Resources::updatable`]), limits or not. `pause` freezes it
//! (whether a container is paused is read from its cgroup, never stored); `update` writes
//! new limits there and in `config.json`, which the shim reads again before a restart
//! under its policy. See `pause.rs` and `update.rs`.
//!
//! # Health checks
//!
//! A container's check ([`Healthcheck`], docker's `Config.Healthcheck`: the image's
//! `HEALTHCHECK` with `--health-*` applied, resolved at creation into its config) is run by
//! its supervisor, the shim or the foreground `kiln run`, next to the container: every
//! interval a probe through [`kiln_executor::Executor::exec_in`], as `kiln exec` runs
//! processes, killed after its timeout. Its [`Health`] (docker's `State.Health`: status,
//! failing streak, the last five probes) is written atomically to `health.json` beside
//! `state.json`, by the supervisor alone (so it never races with the state's writers):
//! `starting` once the start is recorded, `unhealthy` once the container ended, as docker's.
//! See `health.rs`.
#![deny(missing_docs)]

use kiln_executor::{BindMount, Network, SandboxOptions};
use serde_json::Value;
use std::path::PathBuf;

mod attach;
mod commit;
mod companion;
mod container;
mod copy;
mod create;
mod delete;
mod exec;
mod filter;
mod health;
mod inspect;
mod kill;
mod lifecycle;
mod logs;
mod mount_flag;
mod network;
mod pause;
mod platform;
mod ports;
mod restart;
mod run;
mod start;
mod stats;
pub use network::reconcile_networks;
pub mod system;
mod terminal;
mod top;
mod update;
mod volume;

pub use attach::{AttachEnd, AttachOptions, DetachKeys, DetachKeysError, DEFAULT_DETACH_KEYS};
pub use commit::{keep_docker_fields, CommitError, CommitOptions};
pub use companion::{companion_binary, SHIM_BINARY};
pub use container::{
    now_millis, Config, Container, Containers, MountedVolume, State, Status, LAYOUT_VERSION,
};
pub use copy::{plan, Change, CopyError, CopyPlan};
pub use delete::ContainersPruned;
pub use exec::ExecOptions;
pub use filter::{FilterError, Filters};
pub use health::{Health, HealthError, HealthOptions, HealthStatus, Healthcheck, Probe};
pub use kill::parse_signal;
pub use logs::{parse_log_time, LogConfig, LogConfigError, LogDriver, LogOptions, LogTimeError};
pub use mount_flag::{MountFlag, MountFlagError};
pub use platform::{check_platform_name, PlatformError};
pub use ports::{parse_expose, PortError, PortSpec};
pub use restart::{Backoff, PolicyError, RestartPolicy};
pub use run::{create, run, Launcher, Outcome, RunError, RunEvent, RunOptions};
pub use start::{shim_main, SHIM_ARG};
pub use stats::{measure, Sample, Usage};
pub use terminal::stdin_is_terminal;
pub use top::{Top, TopError};
pub use update::UpdateOptions;
pub use volume::{random_volume_name, valid_volume_name, Volume, Volumes, ANONYMOUS_LABEL};

/// The exit code recorded for a container whose start failed (as `docker run`'s own
/// failures).
pub const START_FAILED_EXIT: i32 = 125;

/// Errors from the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the image nor the command line names a command.
    #[error("no command specified")]
    NoCommand,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// The sandbox failed.
    #[error(transparent)]
    Executor(#[from] kiln_executor::Error),
    /// A network (`--network NAME`) failed.
    #[error(transparent)]
    Network(#[from] kiln_network::Error),
    /// `network connect` of a container without a namespace of kiln-network's.
    #[error("container {0} is not on a user-defined network: only containers run with --network NAME can be connected to another one for now")]
    NotOnUserNetwork(String),
    /// `network disconnect` of a container not on the network.
    #[error("container {0} is not connected to network {1}")]
    NotConnected(String, String),
    /// The health check cannot be used.
    #[error(transparent)]
    Health(#[from] HealthError),
    /// A published port cannot be resolved.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// Container state could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No container has this id, name or id prefix.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// Several containers' ids start with this prefix.
    #[error("multiple containers match the id prefix `{0}`: give more of the id")]
    AmbiguousContainer(String),
    /// `--name` names another container.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// `rename` to the name the container has.
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    /// `--name` is not a valid name.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// `attach` to a container that does not run.
    #[error("You cannot attach to a stopped container, start it first")]
    AttachStopped,
    /// `attach` to a container that runs without a shim (`kiln run` in the foreground).
    #[error(
        "container {0} runs in the foreground of the kiln run that started it: only a \
         container run with -d or -t, or started by kiln start, can be attached"
    )]
    NotAttachable(String),
    /// `exec` into a paused container.
    #[error("Container {0} is paused, unpause the container before exec")]
    Paused(String),
    /// `pause` of a paused container.
    #[error("Container {0} is already paused")]
    AlreadyPaused(String),
    /// `unpause` of a container that is not paused.
    #[error("Container {0} is not paused")]
    NotPaused(String),
    /// `pause` or `update` of a container waiting to be restarted.
    #[error("Container {0} is restarting, wait until the container is running")]
    Restarting(String),
    /// `update --memory` below docker's minimum.
    #[error("Minimum memory limit allowed is 6MB")]
    MemoryTooLow,
    /// `update --memory-swap` without a memory limit.
    #[error("You should always set the Memory limit when using Memoryswap limit, see usage")]
    SwapWithoutMemory,
    /// `update --memory-swap` below the memory limit.
    #[error("Minimum memoryswap limit should be larger than memory limit, see usage")]
    SwapBelowMemory,
    /// `update --memory` above the swap limit set before.
    #[error(
        "Memory limit should be smaller than already set memoryswap limit, update the \
         memoryswap at the same time"
    )]
    MemoryAboveSwap,
    /// `update --restart` of a `--rm` container.
    #[error("Restart policy cannot be updated because AutoRemove is enabled for the container")]
    RestartWithAutoRemove,
    /// The container's cgroups could not be used (pause, unpause, update).
    #[error(transparent)]
    Cgroup(#[from] kiln_executor::CgroupError),
    /// The container is not running (exec, kill).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container is running (rm without force).
    #[error(
        "cannot remove container {0}: container is running: stop the container before \
         removing or force remove (-f)"
    )]
    Running(String),
    /// The container's pid 1 is not known.
    #[error(
        "container {0} has no known pid 1 (it runs through an external OCI runtime, or is \
         still starting): exec and signals are not available"
    )]
    NoInit(String),
    /// The container ran in the foreground.
    #[error(
        "container {0} ran in the foreground: its output went to the terminal and was not \
         recorded (use kiln run -d)"
    )]
    NoLogs(String),
    /// `commit` failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// `logs` of a container with the `none` logging driver (docker's message).
    #[error("configured logging driver does not support reading")]
    LogsNotSupported,
    /// `cp`, `export` or `diff` failed.
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    /// The shim could not be started or died before starting the container.
    #[error("{0}")]
    Shim(String),
    /// The shim could not start the container.
    #[error("{0}")]
    StartFailed(String),
    /// The container's command could not be started (not found: 127; not executable: 126).
    #[error("{message}")]
    CommandNotStarted {
        /// The exit code it got, as `docker run`'s.
        code: i32,
        /// What it said.
        message: String,
    },
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// Not a valid volume name.
    #[error(
        "\"{0}\" includes invalid characters for a local volume name, only \
         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
         directory, use absolute path"
    )]
    InvalidVolumeName(String),
    /// A container (running or stopped) uses the volume.
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The containers that use it.
        containers: Vec<String>,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a container is made: `kiln run`'s flags, resolved (see [`RunOptions`] for the run
/// itself).
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// `--name`.
    pub name: Option<String>,
    /// `--rm`.
    pub remove: bool,
    /// `-e K=V` (or `-e K`, taken from the caller's environment by the CLI).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--entrypoint` (empty string clears it).
    pub entrypoint: Option<String>,
    /// Arguments after the image.
    pub args: Vec<String>,
    /// `--network` (none, host, default; see `network_name`).
    pub network: Network,
    /// `--network NAME` of a user-defined network (`network` is then ignored).
    pub network_name: Option<String>,
    /// `--network-alias`.
    pub network_aliases: Vec<String>,
    /// `-v /host/path:DST`: bind mounts.
    pub mounts: Vec<BindMount>,
    /// `-v NAME:DST`, `-v DST`: volumes (created when missing; filled from the image when
    /// new and empty).
    pub volumes: Vec<VolumeSpec>,
    /// `--hostname` (default: the first 12 characters of the container id).
    pub hostname: Option<String>,
    /// `--label K=V`, `--label-file`: stored in the container's config.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--stop-signal`: checked with [`parse_signal`] by the caller.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds (-1: wait forever).
    pub stop_timeout: Option<i64>,
    /// `--tmpfs`, `--memory`, `--cpus`, `--pids-limit`, `--privileged`, `--device`
    /// (`create_etc_files` is always set: containers get /etc/hosts, /etc/hostname and
    /// /etc/resolv.conf).
    pub extra: SandboxOptions,
    /// `-d`.
    pub detach: bool,
    /// `-i` (with `-d`: stdin stays open instead of /dev/null, fed by attached clients).
    pub interactive: bool,
    /// `-t`: a pseudo-terminal of the container's own, held by its shim (stdin is forwarded
    /// to it with `-i` only; a foreground run attaches to it).
    pub tty: bool,
    /// `--restart` (carried out by the shim: detached containers only).
    pub restart: RestartPolicy,
    /// `--health-*`, `--no-healthcheck`.
    pub health: HealthOptions,
    /// `-p`: resolved into `extra.ports` (after the mappings already there) when the
    /// container is created, with the network `Default` only (see [`PortSpec`]).
    pub publish: Vec<PortSpec>,
    /// `-P`: every exposed port (the image's and `expose`) published on a free host port.
    pub publish_all: bool,
    /// `--expose`: ports added to the image's exposed ones, as `(port, protocol)`.
    pub expose: Vec<(u16, String)>,
    /// `--init`: recorded (`HostConfig.Init`); the sandbox's pid 1 always is an init that
    /// forwards signals and reaps zombies (see kiln-executor's docs).
    pub init: bool,
    /// `--log-driver`, `--log-opt`.
    pub log: LogConfig,
}

/// A volume to mount (`-v NAME:DST[:ro]`, or `-v DST` for an anonymous one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The volume's name; `None`: a new anonymous volume.
    pub name: Option<String>,
    /// Absolute path in the container.
    pub destination: String,
    /// Mount read-only.
    pub readonly: bool,
}

/// The process a container runs: (argv, env, cwd, user), from the image config and options.
pub fn process(
    config: &Value,
    opts: &CreateOptions,
) -> Result<(Vec<String>, Vec<String>, String, String)> {
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (vec![], vec![]),
        Some(e) => (vec![e.clone()], vec![]),
        None => (strings(&c["Entrypoint"]), strings(&c["Cmd"])),
    };
    let cmd = if opts.args.is_empty() {
        image_cmd
    } else {
        opts.args.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    let mut env = strings(&c["Env"]);
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| {
            c["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".into());
    let user = opts
        .user
        .clone()
        .or_else(|| c["User"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((argv, env, cwd, user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Value {
        json!({"config": {"Entrypoint": ["/bin/ep"], "Cmd": ["default"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/app"}})
    }

    #[test]
    fn docker_run_command_rules() {
        let (a, env, cwd, _) = process(&cfg(), &CreateOptions::default()).unwrap();
        assert_eq!(a, vec!["/bin/ep", "default"]);
        assert_eq!(cwd, "/app");
        assert_eq!(env, vec!["PATH=/bin", "A=1"]);
        let o = CreateOptions {
            args: vec!["x".into()],
            env: vec!["A=2".into()],
            ..Default::default()
        };
        let (a, env, _, _) = process(&cfg(), &o).unwrap();
        assert_eq!(a, vec!["/bin/ep", "x"]);
        assert_eq!(env, vec!["PATH=/bin", "A=2"]);
        let o = CreateOptions {
            entrypoint: Some("sh".into()),
            ..Default::default()
        };
        assert_eq!(
            process(&cfg(), &o).unwrap().0,
            vec!["sh"],
            "--entrypoint drops the image CMD"
        );
        let o = CreateOptions {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(process(&cfg(), &o), Err(Error::NoCommand)));
    }
}
