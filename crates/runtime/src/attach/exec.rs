//! `kiln exec -t` into a container under its shim: the shim starts the process (its
//! executor, the container's pid 1) and holds its terminal's master, so that a client that
//! detaches leaves the process running, as `docker exec -it` does. One client per process:
//! its input, window sizes and signals go to the process; the terminal's output goes to it
//! while it is there (and is read and dropped after it went, so the process never blocks on
//! a full terminal); the exit code, or why the process could not be started, ends it.

use super::proto::{self, ExecRequest};
use super::server::{pump_terminal, write_all, Hub, CLIENT_WRITE_TIMEOUT};
use kiln_executor::{Console, Output};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Serves an exec client whose first frame asked for `request`.
pub(super) fn serve(hub: &Hub, mut stream: UnixStream, request: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ExecRequest>(request) else {
        return;
    };
    let Some((executor, init, runtime)) = hub.exec_target() else {
        let _ = proto::write(&mut stream, proto::ERROR, b"the container is not running");
        return;
    };
    let Ok((stop_read, stop_write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let (console_tx, console_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Set once the process ended (its helper is reaped then: no signal for it after that).
    let done = Arc::new(AtomicBool::new(false));
    let ended = done.clone();
    runtime.spawn(async move {
        let output = Output::Terminal {
            size: req.size,
            console: console_tx,
        };
        let r = executor.exec_in(&init, &req.spec, output).await;
        ended.store(true, Ordering::SeqCst);
        // The terminal's pump drains and ends.
        drop(stop_write);
        let _ = done_tx.send(r);
    });
    let end_frame = |r: Result<Result<i32, kiln_executor::Error>, _>| match r {
        Ok(Ok(code)) => Some(proto::encode(proto::EXIT, &code.to_be_bytes())),
        Ok(Err(kiln_executor::Error::Setup(m))) => Some(proto::encode(proto::ERROR, m.as_bytes())),
        Ok(Err(e)) => Some(proto::encode(proto::ERROR, e.to_string().as_bytes())),
        Err(_) => None,
    };
    let Ok(Console { master, helper }) = console_rx.blocking_recv() else {
        // It ended before it had a terminal.
        if let Some(frame) = end_frame(done_rx.blocking_recv()) {
            let _ = stream.write_all(&frame);
        }
        return;
    };
    let master = Arc::new(master);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let _ = writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
    if pump_terminal(master.clone(), tx, stop_read).is_err() {
        return;
    }
    let forwarded = std::thread::Builder::new()
        .name("exec-output".into())
        .spawn(move || {
            let mut there = true;
            while let Some((_, data)) = rx.blocking_recv() {
                there = there && proto::write(&mut writer, proto::STDOUT, &data).is_ok();
            }
            if let Some(frame) = end_frame(done_rx.blocking_recv()) {
                if there {
                    let _ = writer.write_all(&frame);
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
    if forwarded.is_err() {
        return;
    }
    // Its input, window sizes and signals until it goes (the process runs on).
    while let Ok(Some((kind, payload))) = proto::read(&mut stream) {
        match kind {
            proto::INPUT => write_all(master.as_raw_fd(), &payload),
            proto::WINDOW => {
                if let Some((rows, cols)) = proto::parse_window(&payload) {
                    kiln_executor::set_window_size(master.as_raw_fd(), rows, cols);
                }
            }
            proto::SIGNAL => {
                let sig = proto::parse_exit(&payload);
                if let (Some(sig), Ok(pid)) = (sig, libc::pid_t::try_from(helper)) {
                    if pid > 0 && !done.load(Ordering::SeqCst) {
                        // SAFETY: kill has no memory preconditions. The helper is this
                        // shim's child; `done` is set right after it is reaped (a pid
                        // reused in between would be the only stray target).
                        unsafe { libc::kill(pid, sig) };
                    }
                }
            }
            _ => break,
        }
    }
}
