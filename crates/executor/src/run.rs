//! The caller's side: spawning the helper and collecting its output and status.

use crate::cgroup::Cgroup;
use crate::{
    Error, Output, Result, RunResult, RunSpec, Stream, CGROUP_ENV, ERROR_FD_ENV, ID_ENV,
    RUNTIME_ENV, SETUP_FAILED_EXIT, SPEC_FD_ENV,
};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

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
    helper: &[OsString],
    runtime: Option<&Path>,
    spec: &RunSpec,
    output: Output,
) -> Result<RunResult> {
    let helper_name = helper
        .first()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spawn_err = |source: io::Error| Error::Spawn {
        helper: helper_name.clone(),
        source,
    };
    let Some((program, helper_args)) = helper.split_first() else {
        return Err(spawn_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty helper command",
        )));
    };
    let json = serde_json::to_string(spec).map_err(|e| spawn_err(io::Error::other(e)))?;
    let id = sandbox_id();
    let cgroup = match runtime {
        Some(_) => None,
        None => Cgroup::locate(&id, &spec.extra.resources)
            .map_err(|e| Error::Setup(format!("cgroup: {e}")))?,
    };
    let cgroup_json = cgroup
        .as_ref()
        .map(|c| serde_json::to_string(c).map_err(|e| spawn_err(io::Error::other(e))))
        .transpose()?;
    let mut guard = CgroupGuard(cgroup);

    // Setup errors come back on this pipe; both ends are close-on-exec here, the write end is
    // made inheritable only in the forked child, so concurrent spawns never inherit it.
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| spawn_err(io::Error::from(e)))?;
    let err_write_fd = err_write.as_raw_fd();
    // The spec goes over a pipe, never in argv (see SPEC_FD_ENV); same inheritance rule.
    let (spec_read, spec_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| spawn_err(io::Error::from(e)))?;
    let spec_read_fd = spec_read.as_raw_fd();

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(helper_args)
        .env(SPEC_FD_ENV, spec_read_fd.to_string())
        .env(ERROR_FD_ENV, err_write_fd.to_string())
        .env(ID_ENV, &id)
        .kill_on_drop(true);
    if let Some(c) = &cgroup_json {
        cmd.env(CGROUP_ENV, c);
    }
    if let Some(r) = runtime {
        cmd.env(RUNTIME_ENV, r);
    }
    let capture = match output {
        Output::Inherit => {
            cmd.stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
            None
        }
        Output::Capture(tx) => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            Some(tx)
        }
    };
    let new_session = capture.is_some();
    // SAFETY: only async-signal-safe calls (fcntl, setsid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(err_write_fd, libc::F_SETFD, 0) < 0
                || libc::fcntl(spec_read_fd, libc::F_SETFD, 0) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // Captured sandboxes get their own session: no controlling terminal, and the
            // terminal's ^C does not reach them (the caller drops the future instead).
            if new_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(err_write);
    drop(spec_read);
    // Written from a blocking thread: a large spec does not fit a pipe buffer, and the helper
    // reads it only once it runs. A helper that died early makes this fail with EPIPE, which
    // its exit status reports better.
    let json = json.into_bytes();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::from(spec_write);
        let _ = std::io::Write::write_all(&mut f, &json);
    });

    let status = match capture {
        None => child.wait().await,
        Some(tx) => {
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let (status, (), ()) = tokio::join!(
                child.wait(),
                pump(stdout, Stream::Stdout, &tx),
                pump(stderr, Stream::Stderr, &tx)
            );
            status
        }
    }
    .map_err(spawn_err)?;

    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 255,
    };
    let mut oom_killed = false;
    if let Some(cg) = guard.0.take() {
        oom_killed = code == 128 + libc::SIGKILL && cg.oom_kills() > 0;
        let _ = tokio::task::spawn_blocking(move || cg.remove(Duration::from_secs(5))).await;
    }
    if code == SETUP_FAILED_EXIT {
        let message = read_available(err_read.into());
        let message = message.trim();
        if !message.is_empty() {
            return Err(Error::Setup(message.to_string()));
        }
    }
    Ok(RunResult {
        exit_code: code,
        oom_killed,
    })
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
