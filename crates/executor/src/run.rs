//! The caller's side: spawning the helper (to create a sandbox or to join one) and
//! collecting its output and status.

use crate::cgroup::{Cgroup, DevicePolicy};
use crate::exec::ExecRequest;
use crate::process::HostProcess;
use crate::spec::{
    ExecSpec, RunSpec, CGROUP_ENV, ERROR_FD_ENV, ID_ENV, MODE_ENV, RUNTIME_ENV, SETUP_FAILED_EXIT,
    SPEC_FD_ENV, START_FD_ENV,
};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

/// How a sandboxed process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code (128+N when killed by signal N).
    pub exit_code: i32,
    /// The process was killed by the kernel's OOM killer because of
    /// [`crate::Resources::memory`]: the sandbox's memory cgroup counted an OOM kill and the
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
    /// Captured like [`Output::Capture`], with stdin read from `stdin` (the read end of a
    /// pipe whose write end the caller keeps and feeds: a detached `-i` container's shim
    /// relays an attached client's input into it).
    CaptureStdin {
        /// Receives the output.
        output: tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>,
        /// The process's stdin.
        stdin: std::os::fd::OwnedFd,
    },
    /// stdout and stderr are the given files (the write ends of pipes the caller reads:
    /// `kiln run` in the foreground prints and records the output); stdin is the caller's
    /// with `stdin`, /dev/null otherwise. The process stays in the caller's session (the
    /// terminal's ^C reaches it), as with [`Output::Inherit`].
    Given {
        /// Inherit the caller's stdin.
        stdin: bool,
        /// Its stdout.
        stdout: std::os::fd::OwnedFd,
        /// Its stderr.
        stderr: std::os::fd::OwnedFd,
    },
    /// A pseudo-terminal of the sandbox's own (`kiln run -t`, `kiln exec -t`): the process
    /// is a session leader with the terminal as its controlling terminal, stdin, stdout and
    /// stderr (see `console.rs`). Its master is sent on `console` once the process has it,
    /// after its window size was set to `size` (rows, columns) and before the command
    /// starts; the caller relays it. The helper runs in a session of its own with /dev/null
    /// as stdio: nothing of the caller's terminal enters the sandbox. Not with an external
    /// runtime.
    Terminal {
        /// Initial window size (rows, columns).
        size: Option<(u16, u16)>,
        /// Receives the master.
        console: oneshot::Sender<Console>,
    },
}

/// The master of a sandboxed process's terminal ([`Output::Terminal`]).
#[derive(Debug)]
pub struct Console {
    /// The master (close-on-exec, blocking).
    pub master: std::os::fd::OwnedFd,
    /// The helper process that waits for the sandboxed process: the signals the caller
    /// should forward go to it (it forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
    /// SIGUSR2).
    pub helper: u32,
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

/// How long [`Executor::run_observed`] waits for a sandbox to start by default (see
/// [`Executor::with_start_timeout`]).
pub const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Runs sandboxes through a helper command.
#[derive(Clone, Debug)]
pub struct Executor {
    helper: Vec<OsString>,
    runtime: Option<PathBuf>,
    v2_device_rules: bool,
    start_timeout: Duration,
}

impl Executor {
    /// `helper` is the command line that reaches [`crate::helper_main`], e.g.
    /// `[current_exe, "__kiln-sandbox"]`.
    pub fn new(helper: Vec<OsString>) -> Self {
        Self {
            helper,
            runtime: None,
            v2_device_rules: false,
            start_timeout: START_TIMEOUT,
        }
    }

    /// How long [`Executor::run_observed`] waits for the sandbox to start (its pid 1
    /// reported, or its command found not startable) before it kills it and fails; by
    /// default [`START_TIMEOUT`].
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
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

    /// The external OCI runtime ([`Executor::with_runtime`]), if any.
    pub fn runtime(&self) -> Option<&std::path::Path> {
        self.runtime.as_deref()
    }

    /// Runs `spec` to completion and returns the process's exit code (128+N when killed by
    /// signal N; 127 when the command is not found, with a message on its stderr). Dropping
    /// the future kills the sandbox and every process in it.
    pub async fn run(&self, spec: &RunSpec, output: Output) -> Result<i32> {
        Ok(self.run_detailed(spec, output).await?.exit_code)
    }

    /// [`Executor::run`], also telling whether the process was OOM-killed.
    pub async fn run_detailed(&self, spec: &RunSpec, output: Output) -> Result<RunResult> {
        run(self, spec, output, None).await
    }

    /// [`Executor::run_detailed`], sending the sandbox's pid 1 (as seen from the host) on
    /// `started` once the sandbox is set up and its command started: the root filesystem is
    /// mounted and entered, the hostname set, the cgroup joined, the network (and its
    /// published ports) configured, and the command exec'd. That process is what
    /// [`Executor::exec_in`] joins; it lives exactly as long as the sandbox. When setup
    /// fails, `started` is dropped unsent and the error is returned as usual; when the
    /// command cannot be started (not found, not executable), `started` is dropped unsent
    /// and its exit code (127, 126) returned, its message on its stderr. A sandbox that is
    /// neither reported started nor ended within the start timeout
    /// ([`Executor::with_start_timeout`]) is killed, and that is a [`Error::Setup`] error:
    /// the caller never waits for a start forever.
    ///
    /// With an external runtime ([`Executor::with_runtime`]) nothing is ever sent: the
    /// runtime's container process is not ours to report.
    pub async fn run_observed(
        &self,
        spec: &RunSpec,
        output: Output,
        started: tokio::sync::oneshot::Sender<HostProcess>,
    ) -> Result<RunResult> {
        run(self, spec, output, Some(started)).await
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
        exec(&self.helper, init, spec, output).await
    }
}

/// Removes the sandbox's cgroup when dropped (a background thread waits for the last
/// processes to go when the `run` future was dropped early).
struct CgroupGuard(Option<Cgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            std::thread::spawn(move || cg.remove(Duration::from_secs(10)));
        }
    }
}

/// A name for a sandbox, unique on this host for a while.
fn sandbox_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn run(
    executor: &Executor,
    spec: &RunSpec,
    output: Output,
    started: Option<oneshot::Sender<HostProcess>>,
) -> Result<RunResult> {
    let helper = &executor.helper[..];
    let runtime = executor.runtime.as_deref();
    let json = serde_json::to_vec(spec).map_err(|e| spawn_error(helper, io::Error::other(e)))?;
    let id = sandbox_id();
    // Docker's device rules for every sandbox but a privileged one (see devices.rs).
    let devices = if spec.extra.privileged {
        DevicePolicy::None
    } else if executor.v2_device_rules {
        DevicePolicy::V2
    } else {
        DevicePolicy::Auto
    };
    let cgroup = match runtime {
        Some(_) => None,
        None => Cgroup::locate(&id, &spec.extra.resources, devices)
            .map_err(|e| Error::Setup(format!("cgroup: {e}")))?,
    };
    let cgroup_json = cgroup
        .as_ref()
        .map(|c| serde_json::to_string(c).map_err(|e| spawn_error(helper, io::Error::other(e))))
        .transpose()?;
    let mut guard = CgroupGuard(cgroup);
    let mut env = vec![(ID_ENV, id)];
    if let Some(c) = cgroup_json {
        env.push((CGROUP_ENV, c));
    }
    if let Some(r) = runtime {
        env.push((RUNTIME_ENV, r.to_string_lossy().into_owned()));
    }
    if runtime.is_some() && matches!(output, Output::Terminal { .. }) {
        return Err(Error::Setup(
            "a terminal (-t) is not supported with an external runtime".into(),
        ));
    }
    let started = started.map(|tx| (tx, executor.start_timeout));
    let launched = launch(helper, json, env, output, started).await;
    let mut oom_killed = false;
    if let Some(cg) = guard.0.take() {
        oom_killed =
            matches!(launched, Ok(code) if code == 128 + libc::SIGKILL) && cg.oom_kills() > 0;
        let _ = tokio::task::spawn_blocking(move || cg.remove(Duration::from_secs(5))).await;
    }
    Ok(RunResult {
        exit_code: launched?,
        oom_killed,
    })
}

pub(crate) async fn exec(
    helper: &[OsString],
    init: &HostProcess,
    spec: &ExecSpec,
    output: Output,
) -> Result<i32> {
    let request = ExecRequest {
        init: *init,
        spec: spec.clone(),
    };
    let json =
        serde_json::to_vec(&request).map_err(|e| spawn_error(helper, io::Error::other(e)))?;
    launch(helper, json, vec![(MODE_ENV, "exec".into())], output, None).await
}

fn spawn_error(helper: &[OsString], source: io::Error) -> Error {
    Error::Spawn {
        helper: helper
            .first()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source,
    }
}

/// Starts the helper with `payload` on its spec pipe and `env`, waits for it, and returns its
/// exit code (or the setup error it reported). With `started`, the sandbox's pid 1 is sent
/// on it once it started; a sandbox whose start is not settled within the timeout given
/// with it is killed (a setup error).
async fn launch(
    helper: &[OsString],
    payload: Vec<u8>,
    env: Vec<(&str, String)>,
    output: Output,
    started: Option<(oneshot::Sender<HostProcess>, Duration)>,
) -> Result<i32> {
    let spawn_err = |source: io::Error| spawn_error(helper, source);
    let Some((program, helper_args)) = helper.split_first() else {
        return Err(spawn_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty helper command",
        )));
    };

    // Setup errors come back on this pipe; both ends are close-on-exec here, the write end is
    // made inheritable only in the forked child, so concurrent spawns never inherit it.
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| spawn_err(io::Error::from(e)))?;
    let err_write_fd = err_write.as_raw_fd();
    // The spec goes over a pipe, never in argv (see SPEC_FD_ENV); same inheritance rule.
    let (spec_read, spec_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| spawn_err(io::Error::from(e)))?;
    let spec_read_fd = spec_read.as_raw_fd();
    // The started sandbox's pid 1 comes back on this one (see START_FD_ENV).
    let start_pipe = match &started {
        Some(_) => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| spawn_err(io::Error::from(e)))?,
        ),
        None => None,
    };
    let start_write_fd = start_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(helper_args)
        .env(SPEC_FD_ENV, spec_read_fd.to_string())
        .env(ERROR_FD_ENV, err_write_fd.to_string())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if start_write_fd >= 0 {
        cmd.env(START_FD_ENV, start_write_fd.to_string());
    }
    let mut given = None;
    let (stdin, capture, terminal) = match output {
        Output::Inherit => (Stdio::inherit(), None, None),
        Output::InheritNoStdin => (Stdio::null(), None, None),
        Output::Capture(tx) => (Stdio::null(), Some(tx), None),
        Output::CaptureOpenStdin(tx) => (Stdio::piped(), Some(tx), None),
        Output::CaptureStdin { output, stdin } => (Stdio::from(stdin), Some(output), None),
        Output::Terminal { size, console } => (Stdio::null(), None, Some((size, console))),
        Output::Given {
            stdin,
            stdout,
            stderr,
        } => {
            given = Some((stdout, stderr));
            let stdin = if stdin {
                Stdio::inherit()
            } else {
                Stdio::null()
            };
            (stdin, None, None)
        }
    };
    cmd.stdin(stdin);
    if let Some((stdout, stderr)) = given {
        cmd.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
    } else if capture.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else if terminal.is_some() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    }
    // The console socket (see console.rs); the helper's end is inheritable in the child only.
    let console_pair = match &terminal {
        Some(_) => Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| spawn_err(io::Error::from(e)))?,
        ),
        None => None,
    };
    let console_fd = console_pair
        .as_ref()
        .map_or(-1, |(_, theirs)| theirs.as_raw_fd());
    if console_fd >= 0 {
        cmd.env(crate::console::CONSOLE_FD_ENV, console_fd.to_string());
    }
    let new_session = capture.is_some() || terminal.is_some();
    // SAFETY: only async-signal-safe calls (fcntl, setsid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(err_write_fd, libc::F_SETFD, 0) < 0
                || libc::fcntl(spec_read_fd, libc::F_SETFD, 0) < 0
                || (start_write_fd >= 0 && libc::fcntl(start_write_fd, libc::F_SETFD, 0) < 0)
                || (console_fd >= 0 && libc::fcntl(console_fd, libc::F_SETFD, 0) < 0)
            {
                return Err(io::Error::last_os_error());
            }
            // Captured sandboxes (and those with a terminal) get their own session: no controlling terminal, and the
            // terminal's ^C does not reach them (the caller drops the future instead).
            if new_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // What fits in the pipe's buffer (all of a usual spec) is written before the helper
    // starts, so that it never waits for one of our threads to be scheduled to send it.
    let sent = write_what_fits(&spec_write, &payload);
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // Our copies of the child's stdio (Output::Given): its readers see the end of output
    // when the sandbox's processes are gone.
    drop(cmd);
    drop(err_write);
    drop(spec_read);
    if let (Some((ours, theirs)), Some((size, tx))) = (console_pair, terminal) {
        drop(theirs);
        let helper_pid = child.id().unwrap_or(0);
        tokio::task::spawn_blocking(move || {
            let Some(master) = crate::console::receive_master(&ours) else {
                return;
            };
            if let Some((rows, cols)) = size {
                crate::console::set_window_size(master.as_raw_fd(), rows, cols);
            }
            // The go-ahead: the command starts now.
            let _ = nix::unistd::write(&ours, b"g");
            let _ = tx.send(Console {
                master,
                helper: helper_pid,
            });
        });
    }
    // Closed (unsent) once the start is settled: reported, or never to be.
    let mut start_settled = None;
    if let (Some((start_read, start_write)), Some((tx, timeout))) = (start_pipe, started) {
        drop(start_write);
        let (settled_tx, settled_rx) = oneshot::channel::<()>();
        start_settled = Some((settled_rx, timeout));
        // Blocking reads on a thread of their own: it ends at `ready` or when every writer
        // (the outer helper and pid 1) is gone.
        tokio::task::spawn_blocking(move || {
            if let Some(init) = read_started(std::fs::File::from(start_read)) {
                let _ = tx.send(init);
            }
            drop(settled_tx);
        });
    }
    // The rest from a blocking thread: a large spec does not fit a pipe buffer, and the
    // helper reads it only once it runs. A helper that died early makes this fail with EPIPE,
    // which its exit status reports better.
    if sent < payload.len() {
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::from(spec_write);
            let _ = std::io::Write::write_all(&mut f, &payload[sent..]);
        });
    } else {
        // The helper reads to the end.
        drop(spec_write);
    }
    // Held (never written) until the process ends: see Output::CaptureOpenStdin.
    let _stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    // Fires when the start is not settled in time (never without `started`).
    let start_timeout = async {
        if let Some((settled, timeout)) = start_settled {
            if tokio::time::timeout(timeout, settled).await.is_err() {
                return timeout;
            }
        }
        std::future::pending().await
    };
    let mut not_started = None;
    let status = async {
        tokio::select! {
            biased;
            status = child.wait() => status,
            timeout = start_timeout => {
                // Killing the outer helper kills pid 1 (its parent-death signal) and so the
                // whole sandbox; then it is reaped and its output drained as usual.
                let _ = child.start_kill();
                not_started = Some(timeout);
                child.wait().await
            }
        }
    };
    let output = async {
        if let Some(tx) = capture {
            tokio::join!(
                pump(stdout, Stream::Stdout, &tx),
                pump(stderr, Stream::Stderr, &tx)
            );
        }
    };
    let (status, ()) = tokio::join!(status, output);
    let status = status.map_err(spawn_err)?;
    if let Some(timeout) = not_started {
        return Err(Error::Setup(format!(
            "the sandbox did not start within {}",
            kiln_units::go_duration(timeout)
        )));
    }

    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 255,
    };
    if code == SETUP_FAILED_EXIT {
        let message = read_available(err_read.into());
        let message = message.trim();
        if !message.is_empty() {
            return Err(Error::Setup(message.to_string()));
        }
    }
    Ok(code)
}

/// Reads the start pipe: `pid PID START_TIME` from the outer helper and `ready` from pid 1,
/// in either order. `None` when the pipe closes before both came.
fn read_started(mut f: std::fs::File) -> Option<HostProcess> {
    let mut text = String::new();
    let mut buf = [0u8; 256];
    loop {
        let mut init = None;
        let mut ready = false;
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("pid"), Some(pid), Some(start)) => {
                    init = Some(HostProcess {
                        pid: pid.parse().ok()?,
                        start_time: start.parse().ok()?,
                    });
                }
                (Some("ready"), None, None) => ready = true,
                _ => {}
            }
        }
        if let (Some(init), true) = (init, ready) {
            return Some(init);
        }
        match f.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

async fn pump(
    reader: Option<impl AsyncRead + Unpin>,
    stream: Stream,
    tx: &tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>,
) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                // A closed receiver is not an error: keep draining so the process never
                // blocks on a full pipe.
                let _ = tx.send((stream, bytes::Bytes::copy_from_slice(&buf[..n])));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Writes as much of `payload` into the pipe `fd` as its buffer takes without blocking and
/// returns how much that was (`fd` is left blocking).
fn write_what_fits(fd: &OwnedFd, payload: &[u8]) -> usize {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    let fl = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return 0;
    }
    let mut sent = 0;
    while sent < payload.len() {
        match nix::unistd::write(fd, &payload[sent..]) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    // SAFETY: as above (F_SETFL does not fail on an open pipe).
    unsafe { libc::fcntl(raw, libc::F_SETFL, fl) };
    sent
}

/// What is in the (exited) helper's error pipe, without blocking.
fn read_available(file: std::fs::File) -> String {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fd = file.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut file = file;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
