//! The executor: runs one process in a sandbox on an overlayfs root filesystem, and more
//! processes in a running sandbox. One executor serves `kiln build` (RUN steps), `kiln run`
//! and `kiln exec`.
//!
//! # Mechanism
//!
//! The calling process (multi-threaded, tokio) never forks into namespaces itself: `unshare`
//! of a pid or mount namespace and `fork` are not safe in a multi-threaded process. It spawns
//! a helper, a fresh single-threaded process (`kiln __kiln-sandbox SPEC_JSON`, see
//! [`HELPER_ARG`] and [`helper_main`]), which unshares mount/pid/uts/ipc(/net) namespaces,
//! forks the namespace's pid 1 (a tiny init that reaps zombies and forwards signals), mounts
//! the overlay, /proc, a minimal /dev, pivot_roots, drops to the requested user and execs
//! the command.
//!
//! The sandbox is our own code on `nix`/`libc` rather than youki's `libcontainer` (a library,
//! but a large one built around OCI bundles on disk, cgroup managers and a multi-process
//! channel protocol) or shelling out to `runc` (an extra binary, an OCI bundle written to disk
//! per step and a Go runtime start-up per RUN). We chose our own code for start latency (one
//! `fork`+`exec` of our own binary, no bundle on disk, no external runtime) and for control
//! over exactly what is mounted and reported; `runc` stays available through
//! [`Executor::with_runtime`] (`kiln run --runtime PATH`). Measured on the development host
//! (Linux 6.18, hybrid cgroup v1, 2 cores; busybox rootfs; `hyperfine -N`; see [`perf`] for
//! the commands and numbers).
//!
//! # Isolation beyond namespaces
//!
//! - **cgroup namespace**: pid 1 unshares `CLONE_NEWCGROUP` after joining its cgroup, so
//!   `/proc/self/cgroup` shows `/`.
//! - **Limits** ([`Resources`]): a cgroup `kiln/<id>` below the caller's own cgroup, v2 for
//!   the controllers cgroup v2 offers and v1 for the others (see `cgroup.rs`), created and
//!   joined by pid 1 before anything else runs, removed by the caller afterwards;
//!   [`Executor::run_detailed`] reports OOM kills. pid 1 counts against `pids`.
//! - **Devices**: every sandbox that is not privileged gets Docker's default device rules
//!   (`mknod` of any node; read/write only null, zero, full, random, urandom, tty, the pts
//!   devices, ptmx and tun) plus [`SandboxOptions::devices`], through the v1 `devices`
//!   controller or a BPF device program on cgroup v2 (see `devices.rs` for the list's source
//!   and the mechanism), so it has a cgroup even without limits. A node made with `mknod` or
//!   shipped in an image can be created but not opened.
//! - **Capabilities**: Docker's default set (bounding set too; inheritable and ambient sets
//!   cleared). **`no_new_privs`** is set (setuid binaries do not elevate) and **Docker's
//!   default seccomp profile** (`seccomp.rs`, an allow-list with `EPERM` as the default, built
//!   with the pure-Rust `seccompiler`) is installed just before `execve`.
//! - **Privileged** ([`SandboxOptions::privileged`]): every capability, no seccomp, no
//!   `no_new_privs`, no masked or read-only paths in /proc and /sys, /sys writable, no device
//!   rules, and the host's device nodes in /dev (as Docker; not through
//!   [`Executor::with_runtime`]).
//! - **tmpfs mounts** ([`SandboxOptions::tmpfs`]): `nosuid,nodev,mode=1777[,size=N]`, mounted
//!   with the bind mounts, parents first.
//! - **/etc/hosts, /etc/hostname, /etc/resolv.conf**: generated (`localhost` lines plus
//!   `127.0.1.1 HOSTNAME`; the host's resolv.conf, without loopback resolvers for
//!   [`Network::None`]) on a tmpfs briefly mounted on the rootfs's /proc, and bind-mounted over
//!   the image's files; files the image lacks are created only with
//!   [`SandboxOptions::create_etc_files`] (`kiln run`), never for build steps.
//! - **Network `default`** ([`Network::Default`]): a private network namespace connected by
//!   `pasta` (Debian package `passt`; see `net.rs`). We chose pasta over `slirp4netns` (both
//!   install and work here) because it needs no TAP device setup helper or API socket of its
//!   own, copies the host's addresses, routes and resolvers (so /etc/resolv.conf can be the
//!   host's), is what Podman uses by default today, and adds about 4 ms to a sandbox here
//!   (started in parallel with the sandbox's setup; see `net.rs` for where the 60-90 ms
//!   of a naive start go). Without pasta the sandbox fails with an error naming the package.
//!
//! # Process and namespace sequence
//!
//! 1. [`Executor::run`] spawns the helper (`kill_on_drop`; with [`Output::Capture`] in a new
//!    session with stdin `/dev/null` and stdout/stderr piped). Setup errors come back on a
//!    dedicated pipe whose fd number is passed in `KILN_SANDBOX_ERROR_FD`; the helper then
//!    exits with 125 and `run` returns [`Error::Setup`]. Without that variable (the helper
//!    started by hand) the message goes to stderr as `kiln-sandbox-error: STEP: ERROR`.
//! 2. The *outer helper* unshares `CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC`
//!    (plus `CLONE_NEWNET` unless [`Network::Host`]), makes `/` recursively private (nothing
//!    leaks to the host mount table) and forks. It stays in the host pid namespace, forwards
//!    user-sent SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to its child, waits for it and
//!    exits with its status.
//! 3. The child is pid 1 of the new pid namespace. It sets `PR_SET_PDEATHSIG(SIGKILL)` (so
//!    killing the outer helper, e.g. when the `run` future is dropped, kills pid 1 and with it
//!    every process in the namespace) and makes itself non-dumpable. It then
//!    - mounts the overlay (`lowerdir=…,upperdir=…,workdir=…,index=off,redirect_dir=off,
//!      metacopy=off`) on top of the overlay *work* dir itself: the kernel resolves the
//!      layer paths before grafting the mount, and nothing else lives under the work dir, so
//!      no extra directory is needed on the host;
//!    - mounts `proc` (nosuid,nodev,noexec) on `/proc`, with docker's masked paths (`/dev/null`
//!      or an empty read-only tmpfs) and read-only paths (`/proc/sys`, `/proc/sysrq-trigger`,
//!      …); read-only `sysfs` on `/sys` (a read-only bind of the host's /sys if that fails);
//!    - mounts a tmpfs on `/dev` (mode 755) with bind mounts of the host's
//!      null/zero/full/random/urandom/tty, a new `devpts` instance on `/dev/pts` (`/dev/ptmx`
//!      → `pts/ptmx`), a tmpfs on `/dev/shm` and the `fd`, `stdin`, `stdout`, `stderr` links;
//!    - bind-mounts [`RunSpec::mounts`] (destinations resolved inside the rootfs, symlinks
//!      included, and created when missing);
//!    - brings `lo` up in a new network namespace;
//!    - `chdir(rootfs)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)` (no directory
//!      for the old root is needed in the image);
//!    - sets the hostname, resolves [`RunSpec::user`] against the new root's `/etc/passwd`
//!      and `/etc/group`, creates and enters [`RunSpec::cwd`];
//!    - forks the main process and then only reaps zombies and forwards signals until the
//!      main process exits, then exits with its status (which kills what is left).
//! 4. The main process drops capabilities outside docker's default set from the bounding
//!    set, clears the inheritable/ambient sets, `setgroups`/`setgid`/`setuid`, sets the
//!    environment to exactly [`RunSpec::env`] (plus `HOME` and a default `PATH` when absent),
//!    looks the command up in `PATH` and `execve`s it. A command that cannot be found exits
//!    127 with `kiln: exec: "CMD": executable file not found in $PATH` on stderr.
//!
//! Exit codes are the process's own, `128+N` when it was killed by signal N.
//!
//! With [`Executor::run_observed`] the caller also passes a *start pipe*
//! (`KILN_SANDBOX_START_FD`): the outer helper writes `pid PID START_TIME` for pid 1 right
//! after forking it, and pid 1 writes `ready` once the rootfs is entered, the hostname set and
//! the cgroup joined, just before it forks the command; the caller reports pid 1 as a
//! [`HostProcess`] when it has both. Pid 1 forwards to the command not only the signals above
//! but every signal a process may handle (as tini does), so that a signal sent to pid 1 from
//! the host (`kiln kill -s SIG`) reaches the command.
//!
//! # Joining a running sandbox
//!
//! [`Executor::exec_in`] starts the same helper with `KILN_SANDBOX_MODE=exec` and an exec
//! request (pid 1 as a [`HostProcess`] and an [`ExecSpec`]) on the spec pipe. The helper
//! joins pid 1's cgroups and, with one `setns` on a pidfd, its mount, pid, ipc, uts, net and
//! cgroup namespaces, then forks the process, which goes through the same code as a
//! sandbox's command (user, capabilities, `no_new_privs`, seccomp, exec): there is one copy
//! of that code. See `exec.rs` for the order of the steps and why.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

mod cgroup;
mod devices;
mod exec;
mod mounts;
mod net;
mod oci;
mod process;
mod run;
mod sandbox;
mod seccomp;
mod sys;

pub mod perf {
    //! Start-latency measurements behind the choice of mechanism.
    //!
    //! Host: Linux 6.18, 2 cores, hybrid cgroup v1; release build (`cargo build --release
    //! -p kiln`); busybox rootfs from `scripts/lib.sh`'s `busybox_rootfs_tar`, imported with
    //! `kiln --root /tmp/kr import -c 'CMD ["sh"]' bb.tar busybox:latest` and, for runc,
    //! unpacked into `/tmp/bundle/rootfs` with `runc spec` (terminal off, args `true`).
    //! `hyperfine -N --warmup 5 -r 60` on a quiet machine:
    //!
    //! | command | mean ± σ | min |
    //! | --- | --- | --- |
    //! | `kiln --root /tmp/kr run --rm busybox:latest true` | 14.1 ± 1.6 ms | 13.3 ms |
    //! | `runc run --bundle /tmp/bundle bench` (Debian runc 1.1) | 27.2 ± 5.7 ms | 18.4 ms |
    //! | sandbox only, as for a RUN step (`kiln __kiln-sandbox SPEC`: overlay, /proc, /dev, /etc files, pivot_root, seccomp, `true`, teardown) | 10.5 ± 1.6 ms | 8.5 ms |
    //! | `unshare -f true` (process start-up baseline) | 1.5 ms | 1.4 ms |
    //! | `kiln --root /var/tmp/kr exec CTR true` ([`crate::Executor::exec_in`] via the CLI, into `run -d busybox sleep`; measured with load ≈3 from other jobs, `-r 100`) | 8.8 ± 2.2 ms | 6.3 ms |
    //!
    //! So `kiln run` takes about 0.52 × `runc run` on the same rootfs, and a RUN step's
    //! sandbox setup + teardown stays under 15 ms. Through `--runtime runc` kiln pays runc's
    //! cost plus the bundle. `Network::Default` adds about 4 ms (pasta starts in parallel
    //! with the sandbox; see `net.rs`); resource limits add a cgroup mkdir/rmdir per
    //! controller (well under 1 ms each).
    //! Under load (parallel builds on the 2 cores) every number above grows 2-4×.
    //!
    //! Device rules (issue 11) give every sandbox a cgroup: here a v1 `devices` cgroup (mkdir,
    //! `a` to `devices.deny`, 11 lines to `devices.allow`, join, rmdir: under 1 ms). Joining
    //! through `cgroup.procs` cost 7-15 ms more per sandbox (an RCU grace period in the
    //! kernel; see `cgroup.rs`, `V1_JOIN_FILE`), so v1 cgroups are joined through `tasks`.
    //! Release builds, same rootfs, `hyperfine -N --warmup 5 -r 100`, load ≈3 from other jobs
    //! (so all numbers are above the quiet ones in the table):
    //!
    //! | command | mean ± σ | min |
    //! | --- | --- | --- |
    //! | `kiln run --rm busybox:latest true`, before device rules | 21.8 ± 4.3 ms | 15.9 ms |
    //! | the same with device rules, joined through `cgroup.procs` | 27.4 ± 8.4 ms | 13.6 ms |
    //! | the same with device rules, joined through `tasks` | 21.9 ± 4.1 ms | 13.0 ms |
    //! | `runc run --bundle /tmp/bundle bench` | 38.3 ± 7.5 ms | 23.1 ms |
    //!
    //! On a pure cgroup v2 host the BPF path still joins through `cgroup.procs` (v2 has no
    //! per-thread join outside threaded subtrees); creating pid 1 directly in its cgroup
    //! (`clone3` with `CLONE_INTO_CGROUP`) would avoid that cost and is not done yet.
}

/// Environment variable naming the fd on which the helper reports setup errors (set by
/// [`Executor::run`]).
pub const ERROR_FD_ENV: &str = "KILN_SANDBOX_ERROR_FD";

/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED_EXIT: i32 = 125;

/// Prefix of the setup-error line the helper writes to stderr when it has no error fd.
pub const SETUP_ERROR_PREFIX: &str = "kiln-sandbox-error: ";

/// First argument that makes a binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__kiln-sandbox";

/// Environment variable with the sandbox's cgroup (JSON, set by [`Executor::run`]).
const CGROUP_ENV: &str = "KILN_SANDBOX_CGROUP";

/// Environment variable naming the external OCI runtime (set by [`Executor::run`] for
/// [`Executor::with_runtime`]).
const RUNTIME_ENV: &str = "KILN_SANDBOX_RUNTIME";

/// Environment variable with the sandbox's id (cgroup and OCI container names).
const ID_ENV: &str = "KILN_SANDBOX_ID";

/// Environment variable naming the inherited fd the helper reads its JSON spec from. The spec
/// never travels in argv, where `ps` on the host and `/proc/1/cmdline` in the sandbox would
/// show it (environment values, host paths).
const SPEC_FD_ENV: &str = "KILN_SANDBOX_SPEC_FD";

/// Environment variable naming the inherited fd on which the helper reports a started
/// sandbox ([`Executor::run_observed`]): the outer helper writes `pid PID START_TIME` for pid
/// 1, pid 1 writes `ready` once the sandbox is set up.
const START_FD_ENV: &str = "KILN_SANDBOX_START_FD";

/// Environment variable that makes the helper join a running sandbox instead of creating
/// one (value `exec`; the spec on [`SPEC_FD_ENV`] is then an exec request).
const MODE_ENV: &str = "KILN_SANDBOX_MODE";

/// The root filesystem of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    /// Lower dirs, top-most first (may be empty: an empty rootfs).
    pub lowers: Vec<PathBuf>,
    /// Overlay upper dir (must exist, on the same filesystem as `work`).
    pub upper: PathBuf,
    /// Overlay work dir (must exist, empty).
    pub work: PathBuf,
}

/// Network of a sandbox.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only `lo` (up).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with outbound access through a user-mode network stack
    /// (`pasta`, from Debian's `passt` package; see the crate docs).
    Default,
}

/// A bind mount into the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path in the container (created in the upper dir if missing).
    pub destination: String,
    /// Mount read-only.
    pub readonly: bool,
}

/// What to run and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// Root filesystem.
    pub rootfs: RootFs,
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory, created when missing.
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved against the rootfs's /etc/passwd
    /// and /etc/group; empty means root.
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Network.
    pub network: Network,
    /// Extra bind mounts.
    pub mounts: Vec<BindMount>,
    /// More sandbox settings (tmpfs mounts, resource limits, privileges); `Default` is
    /// Docker's default container.
    #[serde(default)]
    pub extra: SandboxOptions,
}

/// A tmpfs mounted in the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub destination: String,
    /// Size limit in bytes.
    pub size: Option<u64>,
}

/// Resource limits (cgroups).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Memory limit in bytes (`--memory`).
    pub memory: Option<u64>,
    /// CPU quota in CPUs (`--cpus 1.5`).
    pub cpus: Option<f64>,
    /// Maximum number of processes (`--pids-limit`).
    pub pids: Option<i64>,
}

/// Sandbox settings beyond the process and its root filesystem.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxOptions {
    /// tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// Resource limits.
    #[serde(default)]
    pub resources: Resources,
    /// `RUN --security=insecure` / `--privileged`: all capabilities, no seccomp, every
    /// device.
    #[serde(default)]
    pub privileged: bool,
    /// Create `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` in the rootfs (that is, in
    /// the upper dir) when the image lacks them, so that generated ones can be mounted over
    /// them (`kiln run` sets this). Without it (build steps) only the files the image already
    /// has are covered, and nothing is ever written into the layer.
    #[serde(default)]
    pub create_etc_files: bool,
    /// Published ports (`kiln run -p`), forwarded from the host by pasta; only with
    /// [`Network::Default`].
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Host devices made available in the sandbox (`--device`), beyond Docker's default
    /// device rules (see [`SandboxOptions::privileged`] for all devices).
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `--add-host NAME:IP`: extra `/etc/hosts` entries, as `(name, ip)`; check them with
    /// [`parse_add_host`].
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
}

/// A host device node made available in the sandbox (`--device HOST[:CONTAINER[:PERMS]]`):
/// the node is created at [`DeviceMapping::container`] with the host node's type, numbers,
/// mode and owner, and the sandbox's device cgroup allows [`DeviceMapping::permissions`] on
/// it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The device node on the host.
    pub host: PathBuf,
    /// Absolute path in the container.
    pub container: String,
    /// `r` (read), `w` (write), `m` (mknod), each at most once; Docker's default is `rwm`.
    pub permissions: String,
}

impl std::str::FromStr for DeviceMapping {
    type Err = String;

    /// Docker's syntax: `HOST`, `HOST:CONTAINER`, `HOST:PERMS` (when the second part is a
    /// valid mode) or `HOST:CONTAINER:PERMS`; the container path defaults to the host path,
    /// the permissions to `rwm`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if devices::parse_access(p).is_some() => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(format!("invalid device specification: {s}")),
        };
        if devices::parse_access(perms).is_none() {
            return Err(format!("invalid device mode: {perms}"));
        }
        for path in [host, container] {
            if !path.starts_with('/') {
                return Err(format!("{s}: device paths must be absolute: {path:?}"));
            }
        }
        Ok(DeviceMapping {
            host: PathBuf::from(host),
            container: container.to_string(),
            permissions: perms.to_string(),
        })
    }
}

/// Whether `name` may be a container's hostname: RFC 1123 labels (letters, digits and
/// inner `-`) joined by dots, at most 64 bytes (Linux's HOST_NAME_MAX), as docker checks it.
/// Anything else (a newline, a space) would also write extra lines into `/etc/hosts`.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Parses `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address keeps its colons: the split is
/// at the first separator) with docker's messages: `bad format for add-host: "…"`, `invalid
/// IP address in add-host: "…"`. The name must be a valid host name ([`valid_hostname`]) and
/// the IP a literal address (docker's `host-gateway` is not supported).
pub fn parse_add_host(spec: &str) -> Result<(String, String), String> {
    let sep = spec.find([':', '=']);
    let (name, ip) = match sep {
        Some(i) => (&spec[..i], &spec[i + 1..]),
        None => return Err(format!("bad format for add-host: {spec:?}")),
    };
    if name.is_empty() {
        return Err(format!("bad format for add-host: {spec:?}"));
    }
    if ip == "host-gateway" {
        return Err("add-host: host-gateway is not supported".into());
    }
    // docker accepts `[::1]` for an IPv6 address.
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let addr: std::net::IpAddr = bare
        .parse()
        .map_err(|_| format!("invalid IP address in add-host: {ip:?}"))?;
    if !valid_hostname(name) {
        return Err(format!("invalid host name in add-host: {name:?}"));
    }
    Ok((name.to_string(), addr.to_string()))
}

/// A port published from the host into the sandbox (`-p [IP:]HOST:CTR[/PROTO]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    /// Host address to listen on; `None`: all addresses.
    pub host_ip: Option<String>,
    /// Host port.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// How a sandboxed process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code (128+N when killed by signal N).
    pub exit_code: i32,
    /// The process was killed by the kernel's OOM killer because of
    /// [`Resources::memory`]: the sandbox's memory cgroup counted an OOM kill and the
    /// process died of `SIGKILL`.
    pub oom_killed: bool,
}

/// Which stream a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Where the process's output goes (and where its input comes from).
pub enum Output {
    /// The caller's stdin/stdout/stderr (for `kiln run`, `kiln exec -i`).
    Inherit,
    /// The caller's stdout/stderr; stdin is /dev/null (`kiln exec` without `-i`).
    InheritNoStdin,
    /// Captured in chunks as they come (for build steps). stdin is /dev/null.
    Capture(tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>),
    /// Captured like [`Output::Capture`], but stdin is a pipe that stays open, without
    /// data, until the process ends (`kiln run -d -i`: a shell waiting for input keeps
    /// running instead of reading end-of-file).
    CaptureOpenStdin(tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>),
}

/// Errors setting up or running a sandbox (not the process's own failure: that is its exit
/// code).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The helper could not be started.
    #[error("cannot start the sandbox helper {helper}: {source}")]
    Spawn {
        /// Helper command.
        helper: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The sandbox could not be set up (the helper reports what failed).
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs sandboxes through a helper command.
#[derive(Clone, Debug)]
pub struct Executor {
    helper: Vec<OsString>,
    runtime: Option<PathBuf>,
    v2_device_rules: bool,
}

impl Executor {
    /// `helper` is the command line that reaches [`helper_main`], e.g.
    /// `[current_exe, "__kiln-sandbox"]`.
    pub fn new(helper: Vec<OsString>) -> Self {
        Self {
            helper,
            runtime: None,
            v2_device_rules: false,
        }
    }

    /// Enforces device rules with a BPF program on the cgroup2 hierarchy even where a cgroup
    /// v1 hierarchy has the `devices` controller (a hybrid host; by default the v1 controller
    /// is used there). For tests of the v2 path on such hosts.
    pub fn with_v2_device_rules(mut self) -> Self {
        self.v2_device_rules = true;
        self
    }

    /// Runs sandboxes through the external OCI runtime `runtime` (e.g. `runc`): the helper
    /// mounts the overlay in a private mount namespace, writes an OCI bundle (`config.json`
    /// with the same namespaces, mounts, capabilities, seccomp profile and limits) and runs
    /// `RUNTIME run --bundle DIR ID` there (see the crate docs).
    pub fn with_runtime(mut self, runtime: impl Into<PathBuf>) -> Self {
        self.runtime = Some(runtime.into());
        self
    }

    /// Runs `spec` to completion and returns the process's exit code (128+N when killed by
    /// signal N; 127 when the command is not found, with a message on its stderr). Dropping
    /// the future kills the sandbox and every process in it.
    pub async fn run(&self, spec: &RunSpec, output: Output) -> Result<i32> {
        Ok(self.run_detailed(spec, output).await?.exit_code)
    }

    /// [`Executor::run`], also telling whether the process was OOM-killed.
    pub async fn run_detailed(&self, spec: &RunSpec, output: Output) -> Result<RunResult> {
        run::run(self, spec, output, None).await
    }

    /// [`Executor::run_detailed`], sending the sandbox's pid 1 (as seen from the host) on
    /// `started` once the sandbox is set up: the root filesystem is mounted and entered, the
    /// hostname set, the cgroup joined, and the command is about to be started. That process
    /// is what [`Executor::exec_in`] joins; it lives exactly as long as the sandbox. When
    /// setup fails, `started` is dropped unsent and the error is returned as usual.
    ///
    /// With an external runtime ([`Executor::with_runtime`]) nothing is ever sent: the
    /// runtime's container process is not ours to report.
    pub async fn run_observed(
        &self,
        spec: &RunSpec,
        output: Output,
        started: tokio::sync::oneshot::Sender<HostProcess>,
    ) -> Result<RunResult> {
        run::run(self, spec, output, Some(started)).await
    }

    /// Runs another process in the running sandbox whose pid 1 is `init` (from
    /// [`Executor::run_observed`]) and returns its exit code, as [`Executor::run`] does.
    ///
    /// The helper checks that `init` is still the same process (pid and start time, through
    /// a pidfd, so a recycled pid is never joined), moves itself into init's cgroups, joins
    /// its mount, pid, ipc, uts, net and cgroup namespaces with one `setns` on the pidfd
    /// (joining the mount namespace also makes the sandbox's root the root and working
    /// directory, since pivot_root made it the namespace's root), and forks the process.
    /// The process then goes through the same code as a sandbox's command: `spec.user`
    /// resolved against the sandbox's /etc/passwd, docker's default capabilities,
    /// `no_new_privs` and the seccomp profile unless `spec.privileged`. Unlike
    /// [`RunSpec::cwd`], a missing working directory is an error, as with `docker exec -w`.
    /// A command that cannot be started (not found, not executable) exits 126, as with
    /// `docker exec`. A sandbox that is gone is a [`Error::Setup`] error.
    pub async fn exec_in(
        &self,
        init: &HostProcess,
        spec: &ExecSpec,
        output: Output,
    ) -> Result<i32> {
        run::exec(&self.helper, init, spec, output).await
    }
}

/// A process another process can join: a sandbox's pid 1 for [`Executor::exec_in`].
pub use process::HostProcess;

/// A process to start in a running sandbox ([`Executor::exec_in`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` environment (plus `HOME` and a default `PATH` when absent).
    pub env: Vec<String>,
    /// Working directory in the sandbox (must exist; empty means `/`).
    pub cwd: String,
    /// User as in [`RunSpec::user`], resolved against the sandbox's /etc/passwd.
    pub user: String,
    /// Every capability, no seccomp, no `no_new_privs` (use the sandbox's own setting).
    pub privileged: bool,
}

/// The helper's entry point: `args` are the arguments after the program name, starting
/// with [`HELPER_ARG`]. Never returns.
pub fn helper_main(args: &[OsString]) -> ! {
    sandbox::main(args)
}

/// Mount helpers for other kiln code that must see a layered filesystem outside a sandbox
/// (the file ops of COPY run in a private mount namespace of a helper process).
pub mod mount {
    use std::path::{Path, PathBuf};

    /// Moves the calling (single-threaded) process into a new private mount namespace.
    /// (`unshare(CLONE_NEWNS)` implies `CLONE_FS`: called from one thread of a
    /// multi-threaded process, only that thread moves, and its cwd becomes its own; the
    /// tests rely on this.)
    pub fn private_mount_namespace() -> std::io::Result<()> {
        crate::mounts::private_mount_namespace()
    }

    /// Mounts an overlay at `target`: `lowers` top-most first; with `upper_work` it is
    /// writable, without it read-only (a single lower is bind-mounted read-only instead).
    /// Stays under the kernel's mount-option size limit for many layers.
    ///
    /// The legacy `mount(2)` option string is limited to one page (4096 bytes including the
    /// NUL). When the absolute layer paths do not fit, the calling process temporarily
    /// `chdir`s to the longest common parent directory of the lowers and passes them relative
    /// to it (overlayfs resolves relative layer paths against the mounting process's cwd), so
    /// only call this from a single-threaded process (or one whose other threads do not care
    /// about the cwd); the cwd is restored afterwards. When even that does not fit, the new
    /// mount API (`fsopen` with one `lowerdir+` option per layer, Linux 6.8+) is used; when
    /// that is unavailable, the error names the limit. Layer paths containing `:`, `,` or
    /// `\` are rejected (`InvalidInput`). Overlay mounts use `index=off,redirect_dir=off,
    /// metacopy=off` so that the upper dir is a plain diff (whiteouts and opaque dirs only).
    /// Without layers at all: with `upper_work`, an empty directory `.kiln-empty-lower` is
    /// created next to the work dir and used as the lower; without, an empty read-only tmpfs
    /// is mounted.
    pub fn overlay(
        lowers: &[PathBuf],
        upper_work: Option<(&Path, &Path)>,
        target: &Path,
    ) -> std::io::Result<()> {
        crate::mounts::overlay(lowers, upper_work, target)
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn hostnames_and_add_hosts() {
        for ok in ["web", "a-b.example.com", "x1", &"a".repeat(64)] {
            assert!(valid_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            "a\nb",
            "a b",
            "bad_name",
            "-a",
            "a-",
            "a..b",
            ".a",
            &"a".repeat(65),
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("v6:::1").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert_eq!(
            parse_add_host("v6=[::1]").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert_eq!(
            parse_add_host("h:x").unwrap_err(),
            "invalid IP address in add-host: \"x\""
        );
        assert_eq!(
            parse_add_host(":1.2.3.4").unwrap_err(),
            "bad format for add-host: \":1.2.3.4\""
        );
        assert!(parse_add_host("a\nb:1.2.3.4").is_err());
        assert!(parse_add_host("h:1.2.3.4\nevil").is_err());
    }
}
