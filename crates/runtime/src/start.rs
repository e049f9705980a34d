//! Starting a container: in the foreground (`kiln run`: the calling process supervises it,
//! stdio passed through, or pipes printed and logged) or under a shim (`kiln run -d`, `kiln
//! start`, and `kiln run -t`, which then attaches): output to the log and to attached
//! clients, a `-t` container's terminal master and a `-i` container's stdin held by the shim
//! (see `attach.rs`). See the crate docs for the shim's protocol.

use crate::attach::server::{Hub, Input};
use crate::container::{io_err, now_millis, Container, Status};
use crate::{Error, Result};
use kiln_executor::{Executor, HostProcess, Output, RunResult};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

/// First argument that makes the `kiln` binary act as a container's shim:
/// `kiln __kiln-shim CONTAINER_DIR` (see [`shim_main`]).
pub const SHIM_ARG: &str = "__kiln-shim";

/// Environment variable naming the fd on which the shim reports the start (`ok`, or
/// `error: MESSAGE`) to `kiln run -d`.
const READY_FD_ENV: &str = "KILN_SHIM_READY_FD";

/// Environment variable asking the shim to wait for a first attached client before it
/// relays output (`kiln start -a`, `kiln run -it`; see `attach.rs`): `ROWS COLS` (the
/// terminal's first window size), or empty.
const ATTACH_ENV: &str = "KILN_SHIM_ATTACH";

/// File name of the shim's own stderr (panics, if any) in the container directory.
const SHIM_LOG: &str = "shim.log";

impl Container {
    /// Records that the sandbox is up (its pid 1 is `init`), supervised by `supervisor`.
    fn record_started(&mut self, supervisor: HostProcess, init: Option<HostProcess>) -> Result<()> {
        self.state.status = Status::Running;
        self.state.supervisor = Some(supervisor);
        self.state.init = init;
        // Its health check runs in the sandbox's pid 1: known now.
        if init.is_some() && self.healthcheck().is_some() {
            crate::health::started(&self.dir);
        }
        if self.state.started.is_none() {
            self.state.started = Some(now_millis());
        }
        self.save_state()
    }

    /// Records how the run ended: an exit code, or a start that failed.
    fn record_end(&mut self, result: &Result<RunResult>) -> Result<()> {
        match result {
            Ok(r) => {
                self.state.status = Status::Exited;
                self.state.exit_code = Some(r.exit_code);
                self.state.oom_killed = r.oom_killed;
            }
            Err(e) => {
                // Docker leaves a container whose start failed in "created".
                self.state.status = Status::Created;
                self.state.exit_code = Some(crate::START_FAILED_EXIT);
                self.state.error = Some(e.to_string());
            }
        }
        self.state.finished = Some(now_millis());
        self.save_state()
    }

    /// Records the end of a run; after a `--rm` run, then waits until nobody waits for it
    /// any more ([`Container::lock_dir`]) and removes it.
    fn finish(&mut self, result: &Result<RunResult>) -> Result<()> {
        crate::health::stopped(&self.dir);
        self.record_end(result)?;
        // Its network namespace goes with its run (an error is returned once the end is
        // recorded and a --rm container removed).
        let down = self.network_down();
        if self.config.remove {
            let lock = self.lock_dir(true)?;
            self.remove_dir()?;
            drop(lock);
            self.remove_anonymous_volumes()?;
        }
        down
    }

    /// Removes the container directory after a `--rm` run (renamed away first, so that it
    /// disappears from listings at once).
    pub(crate) fn remove_dir(&self) -> Result<()> {
        let Some(parent) = self.dir.parent() else {
            return Ok(());
        };
        self.release_networks()?;
        let trash = parent.join(format!(".removing-{}", self.config.id));
        match std::fs::rename(&self.dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        }
        match std::fs::remove_dir_all(&trash) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&trash)(e)),
        }
    }

    /// Runs the container in the foreground with the caller's stdout and stderr (and stdin
    /// with `-i`); the calling process is its supervisor. Returns its exit code. With an
    /// external runtime the container is recorded as running without a pid 1 (no `exec`).
    /// (`kiln run -t` runs under the shim and attaches, see [`crate::run`]; with an external
    /// runtime `-t` comes here, on a terminal relayed as `terminal.rs` does, which such a
    /// runtime refuses.)
    pub async fn run_foreground(&mut self, executor: &Executor) -> Result<RunResult> {
        let me = HostProcess::current().map_err(io_err(Path::new("/proc/self/stat")))?;
        if let Err(e) = self.network_up() {
            // As a sandbox that cannot be set up: recorded (and removed with --rm).
            let result = Err(e);
            self.finish(&result)?;
            return result;
        }
        self.record_started(me, None)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spec = self.config.spec.clone();
        // Without -i the container's stdin is empty, as with `docker run`. Without -t its
        // output is printed and recorded in its log (see logs.rs).
        let mut tee = None;
        let (output, console) = if self.config.tty {
            let (output, console) = crate::terminal::output();
            (output, Some(console))
        } else if let Some((output, t)) = crate::logs::tee(self, self.config.interactive)? {
            tee = Some(t);
            (output, None)
        } else if self.config.interactive {
            (Output::Inherit, None)
        } else {
            (Output::InheritNoStdin, None)
        };
        let monitor = crate::health::Monitor::new(self);
        let run = executor.run_observed(&spec, output, tx);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            Ok(init) = rx => {
                self.record_started(me, Some(init))?;
                let run = async {
                    match console {
                        Some(console) => {
                            crate::terminal::attach(run, console, self.config.interactive).await
                        }
                        None => run.await,
                    }
                };
                // The health check runs while the container does.
                match monitor {
                    Some(m) => tokio::select! {
                        biased;
                        r = run => r,
                        never = m.run(executor, init) => match never {},
                    },
                    None => run.await,
                }
            }
        };
        if let Some(tee) = tee {
            tee.join();
        }
        let result = result.map_err(Error::from);
        self.finish(&result)?;
        result
    }

    /// Starts the container under a shim (`shim` is the command line that reaches
    /// [`shim_main`], e.g. `[current_exe, SHIM_ARG]`) and returns once it runs: the shim
    /// recorded its pid 1 in the state. A failed start is returned as the error, as the shim
    /// reported it.
    pub fn start_detached(&mut self, shim: &[OsString]) -> Result<()> {
        self.start_shim(shim, None)
    }

    /// [`Container::start_detached`]; with `attach`, the shim waits for a first attached
    /// client before it relays any output, and gives a terminal the window size `attach`
    /// names first.
    pub(crate) fn start_shim(
        &mut self,
        shim: &[OsString],
        attach: Option<crate::attach::Awaited>,
    ) -> Result<()> {
        let Some((program, args)) = shim.split_first() else {
            return Err(Error::Shim("empty shim command".into()));
        };
        let shim_log = self.dir.join(SHIM_LOG);
        let stderr = std::fs::File::create(&shim_log).map_err(io_err(&shim_log))?;
        let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Shim(format!("pipe: {e}")))?;
        let ready_fd = ready_write.as_raw_fd();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .arg(&self.dir)
            .env(READY_FD_ENV, ready_fd.to_string())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(a) = attach {
            let size = a.size.map(|(r, c)| format!("{r} {c}"));
            cmd.env(ATTACH_ENV, size.unwrap_or_default());
        }
        // SAFETY: only async-signal-safe calls (fcntl, setsid) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::fcntl(ready_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A session of its own: no terminal, and it outlives whoever started it.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Not waited for once the container runs: the shim outlives this process (and is
        // reparented when it exits).
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Shim(format!("cannot start {}: {e}", program.to_string_lossy())))?;
        drop(ready_write);
        let mut report = String::new();
        let _ = std::fs::File::from(ready_read).read_to_string(&mut report);
        let report = report.trim();
        if report == "ok" {
            drop(child);
            self.reload()?;
            return Ok(());
        }
        // The start failed: the shim only records that and exits. Waited for, so that the
        // caller can remove the container without the shim still writing into it.
        let _ = child.wait();
        if let Some(e) = report.strip_prefix("error: ") {
            return Err(Error::StartFailed(e.to_string()));
        }
        if let Some((code, message)) = report
            .strip_prefix("exit ")
            .and_then(|r| r.split_once(": "))
            .and_then(|(c, m)| Some((c.parse().ok()?, m)))
        {
            return Err(Error::CommandNotStarted {
                code,
                message: message.to_string(),
            });
        }
        let log = std::fs::read_to_string(&shim_log).unwrap_or_default();
        Err(Error::Shim(format!(
            "the container's shim exited before starting it{}",
            if log.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", log.trim())
            }
        )))
    }
}

/// The shim: `args` are the arguments after [`SHIM_ARG`] (the container directory).
/// Started by [`Container::start_detached`] in a session of its own, it runs the container
/// on `executor`, writes its output to the log, records its start and its end in the state,
/// removes it after a `--rm` run, and returns its own exit code.
pub fn shim_main(args: &[OsString], executor: Executor) -> i32 {
    let ready = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        // Close-on-exec again: the sandbox helpers must not hold it open.
        // SAFETY: fcntl on an inherited fd; an invalid one just fails.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0)
        // SAFETY: the fd was inherited for exactly this and is owned here alone.
        .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    std::env::remove_var(READY_FD_ENV);
    let attach = std::env::var(ATTACH_ENV).ok().map(|v| {
        let mut w = v.split_whitespace().map(str::parse::<u16>);
        let size = match (w.next(), w.next()) {
            (Some(Ok(r)), Some(Ok(c))) => Some((r, c)),
            _ => None,
        };
        crate::attach::Awaited { size }
    });
    std::env::remove_var(ATTACH_ENV);
    let mut ready = ready;
    let mut report = |msg: &str| {
        if let Some(mut f) = ready.take() {
            let _ = f.write_all(msg.as_bytes());
        }
    };
    let [dir] = args else {
        report("error: usage: kiln __kiln-shim CONTAINER_DIR\n");
        return 2;
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Shim(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(supervise(Path::new(dir), &executor, attach, &mut report)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            report(&format!("error: {e}\n"));
            eprintln!("kiln shim: {e}");
            1
        }
    }
}

async fn supervise(
    dir: &Path,
    executor: &Executor,
    attach: Option<crate::attach::Awaited>,
    report: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut c = Container::load(dir)?;
    // Attached clients: see attach.rs.
    let hub = Hub::listen(dir, attach.and_then(|a| a.size), attach.is_some())
        .map_err(io_err(&dir.join(crate::attach::SOCKET)))?;
    // Its restart policy: run again as long as it says so (see restart.rs).
    let mut backoff = crate::Backoff::default();
    loop {
        let (result, was_started) = run_once(&mut c, executor, &hub, report).await?;
        let code = match &result {
            Ok(r) => r.exit_code,
            Err(_) => crate::START_FAILED_EXIT,
        };
        // Attached clients end with the run, as docker's (after a `--rm` container is gone).
        if c.config.restart != crate::RestartPolicy::No {
            hub.ended(code);
        }
        if !(was_started && c.wait_to_restart(&result, &mut backoff).await?) {
            let finished = c.finish(&result);
            hub.ended(code);
            return finished;
        }
    }
}

/// One run of the container under the shim: its output to the log, its start recorded and
/// reported (the first time). Returns how it ended and whether it was started at all.
async fn run_once(
    c: &mut Container,
    executor: &Executor,
    hub: &Hub,
    report: &mut dyn FnMut(&str),
) -> Result<(Result<RunResult>, bool)> {
    let me = HostProcess::current().map_err(io_err(Path::new("/proc/self/stat")))?;
    let mut log = c.log_writer()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    if let Err(e) = c.network_up() {
        report(&format!("error: {e}\n"));
        return Ok((Err(e), false));
    }
    // With -t its terminal's master, with -i its stdin pipe, relayed to attached clients.
    let (output, console) = io_for(c, hub, tx)?;
    let spec = c.config.spec.clone();
    let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Shim(format!("pipe: {e}")))?;
    // The start failed, or the command could not be started: nobody attaches.
    let not_started = tokio::sync::Notify::new();
    let run = async {
        let r = executor.run_observed(&spec, output, started_tx).await;
        // The terminal's pump drains and ends.
        drop(stop_write);
        hub.set_input(None);
        hub.set_exec(None);
        r
    };
    let terminal = async {
        if let Some((console, tx)) = console {
            if let Ok(kiln_executor::Console { master, .. }) = console.await {
                let master = std::sync::Arc::new(master);
                hub.set_input(Some(Input::Terminal(master.clone())));
                // A shim that cannot start a thread cannot relay the terminal: its output
                // then stays in the terminal (the command blocks once it is full) and the
                // container can still be stopped.
                let _ = crate::attach::server::pump_terminal(master, tx, stop_read);
            }
        }
    };
    // The last of its stderr: why a command that could not be started did not.
    // (With -t its terminal's output: everything goes there.)
    let mut last_stderr = Vec::new();
    let tty = c.config.tty;
    let write_log = async {
        // A client about to attach sees everything, even when the command ended before it
        // came (the run's end waits for it too: the state says running and the shim serves
        // the socket until then); a command that could not be started is reported at once.
        tokio::select! {
            () = hub.wait_first() => {}
            () = not_started.notified() => {}
        }
        while let Some((stream, data)) = rx.recv().await {
            if tty || stream == kiln_executor::Stream::Stderr {
                last_stderr = data.to_vec();
            }
            // A full disk loses output, not the container.
            let _ = log.write(stream, &data);
            hub.output(stream, &data);
        }
    };
    let mut start_error = None;
    let mut was_started = false;
    let monitor = crate::health::Monitor::new(c);
    let (health_tx, health_rx) = tokio::sync::oneshot::channel();
    let started = async {
        let Ok(init) = started_rx.await else {
            not_started.notify_one();
            return;
        };
        was_started = true;
        match c.record_started(me, Some(init)) {
            Ok(()) => {
                report("ok\n");
                hub.set_exec(Some((executor.clone(), init)));
                let _ = health_tx.send(init);
            }
            Err(e) => {
                // A container nobody can find or stop must not run: report, kill.
                report(&format!("error: {e}\n"));
                let _ = init.signal(libc::SIGKILL);
                start_error = Some(e);
                not_started.notify_one();
            }
        }
    };
    // The health check runs while the container does, and ends (killing a probe) with it.
    let health = async {
        match (monitor, health_rx.await) {
            (Some(m), Ok(init)) => m.run(executor, init).await,
            _ => std::future::pending::<std::convert::Infallible>().await,
        }
    };
    let (result, (), (), ()) = tokio::select! {
        biased;
        r = async { tokio::join!(run, write_log, started, terminal) } => r,
        never = health => match never {},
    };
    if let Some(e) = start_error {
        return Err(e);
    }
    let result = result.map_err(Error::from);
    match &result {
        Err(e) => report(&format!("error: {e}\n")),
        // Never reported started: the command could not be started (not found, not
        // executable), as it said on its stderr.
        Ok(r) if !was_started => {
            let said = String::from_utf8_lossy(&last_stderr);
            let said = said.trim();
            let said = if said.is_empty() {
                "the container's command could not be started"
            } else {
                said
            };
            report(&format!("exit {}: {said}\n", r.exit_code));
        }
        Ok(_) => {}
    }
    Ok((result, was_started))
}

/// The terminal's master on its way from the executor, and the channel its output goes to.
type ConsoleOutput = (
    tokio::sync::oneshot::Receiver<kiln_executor::Console>,
    tokio::sync::mpsc::UnboundedSender<(kiln_executor::Stream, bytes::Bytes)>,
);

/// The container's stdio under the shim: with `-t` a terminal (whose master, when it comes,
/// is pumped into `tx`), with `-i` a stdin pipe fed by attached clients, else output only.
fn io_for(
    c: &Container,
    hub: &Hub,
    tx: tokio::sync::mpsc::UnboundedSender<(kiln_executor::Stream, bytes::Bytes)>,
) -> Result<(Output, Option<ConsoleOutput>)> {
    if c.config.tty {
        let (console_tx, console_rx) = tokio::sync::oneshot::channel();
        let output = Output::Terminal {
            size: hub.size(),
            console: console_tx,
        };
        return Ok((output, Some((console_rx, tx))));
    }
    if c.config.interactive {
        let (stdin, feed) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::Shim(format!("pipe: {e}")))?;
        hub.set_input(Some(Input::Stdin(std::sync::Arc::new(feed))));
        return Ok((Output::CaptureStdin { output: tx, stdin }, None));
    }
    Ok((Output::Capture(tx), None))
}
