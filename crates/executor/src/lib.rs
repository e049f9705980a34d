//! The executor: runs one process in a sandbox on an overlayfs root filesystem. One executor
//! serves `kiln build` (RUN steps) and `kiln run`.
//!
//! Mechanism: the calling process (multi-threaded, tokio) never forks into namespaces itself.
//! It spawns a helper, a fresh single-threaded process (`kiln __kiln-sandbox SPEC_JSON`, see
//! [`HELPER_ARG`] and [`helper_main`]), which unshares mount/pid/uts/ipc(/net) namespaces,
//! forks the namespace's pid 1 (a tiny init that reaps zombies and forwards signals), mounts
//! the overlay, /proc, a minimal /dev, pivot_roots, drops to the requested user and execs
//! the command.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

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
    _helper: Vec<OsString>,
}

impl Executor {
    /// `helper` is the command line that reaches [`helper_main`], e.g.
    /// `[current_exe, "__kiln-sandbox"]`.
    pub fn new(helper: Vec<OsString>) -> Self {
        Self { _helper: helper }
    }

    /// Runs `spec` to completion and returns the process's exit code (128+N when killed by
    /// signal N; 127 when the command is not found, with a message on its stderr). Dropping
    /// the future kills the sandbox and every process in it.
    pub async fn run(&self, _spec: &RunSpec, _output: Output) -> Result<i32> {
        todo!()
    }
}

/// The helper's entry point: `args` are the arguments after the program name, starting
/// with [`HELPER_ARG`]. Never returns.
pub fn helper_main(_args: &[OsString]) -> ! {
    todo!()
}

/// Mount helpers for other kiln code that must see a layered filesystem outside a sandbox
/// (the file ops of COPY run in a private mount namespace of a helper process).
pub mod mount {
    use std::path::{Path, PathBuf};

    /// Moves the calling (single-threaded) process into a new private mount namespace.
    pub fn private_mount_namespace() -> std::io::Result<()> {
        todo!()
    }

    /// Mounts an overlay at `target`: `lowers` top-most first; with `upper_work` it is
    /// writable, without it read-only (a single lower is bind-mounted read-only instead).
    /// Stays under the kernel's mount-option size limit for many layers.
    pub fn overlay(
        _lowers: &[PathBuf],
        _upper_work: Option<(&Path, &Path)>,
        _target: &Path,
    ) -> std::io::Result<()> {
        todo!()
    }
}
