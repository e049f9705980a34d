//! The executor: runs one process in a sandbox on an overlayfs root filesystem. One executor
//! serves `kiln build` (RUN steps) and `kiln run`.
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
//! over exactly what is mounted and reported. The lead will add measured numbers here.
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
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

mod mounts;
mod run;
mod sandbox;
mod sys;

/// Environment variable naming the fd on which the helper reports setup errors (set by
/// [`Executor::run`]).
pub const ERROR_FD_ENV: &str = "KILN_SANDBOX_ERROR_FD";

/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED_EXIT: i32 = 125;

/// Prefix of the setup-error line the helper writes to stderr when it has no error fd.
pub const SETUP_ERROR_PREFIX: &str = "kiln-sandbox-error: ";

/// First argument that makes a binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__kiln-sandbox";

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
    /// `RUN --security=insecure` / `--privileged`: all capabilities, no seccomp.
    #[serde(default)]
    pub privileged: bool,
}

/// Which stream a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Where the process's output goes.
pub enum Output {
    /// The caller's stdin/stdout/stderr (for `kiln run`).
    Inherit,
    /// Captured in chunks as they come (for build steps). stdin is /dev/null.
    Capture(tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>),
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
}

impl Executor {
    /// `helper` is the command line that reaches [`helper_main`], e.g.
    /// `[current_exe, "__kiln-sandbox"]`.
    pub fn new(helper: Vec<OsString>) -> Self {
        Self { helper }
    }

    /// Runs `spec` to completion and returns the process's exit code (128+N when killed by
    /// signal N; 127 when the command is not found, with a message on its stderr). Dropping
    /// the future kills the sandbox and every process in it.
    pub async fn run(&self, spec: &RunSpec, output: Output) -> Result<i32> {
        run::run(&self.helper, spec, output).await
    }
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
