//! The caller's side of a container's terminal (`run -t`, `exec -t`): the sandbox's own
//! pseudo-terminal ([`Output::Terminal`]) relayed to the caller's stdin and stdout, the
//! caller's terminal in raw mode while stdin is forwarded (and restored however the relay
//! ends: the guard's `Drop` also runs on errors and unwinding, and SIGINT, SIGTERM, SIGHUP
//! and SIGQUIT sent to the caller are forwarded to the container's process instead of
//! ending the caller), and the window size copied at start and on every SIGWINCH.
//!
//! The relay is one thread polling the master, stdin and a stop pipe (blocking reads and
//! writes on plain fds: tokio's stdin would keep a blocking read pending after the run).

use kiln_executor::{Console, Output};
use nix::sys::termios::{self, SetArg, Termios};
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// The caller's terminal in raw mode until dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, when it is a terminal.
    pub(crate) fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

/// The caller's window size: stdin's, else stdout's.
pub(crate) fn caller_size() -> Option<(u16, u16)> {
    kiln_executor::window_size(0).or_else(|| kiln_executor::window_size(1))
}

/// Whether stdin is a terminal (`-it` needs one, as with docker).
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(0) == 1 }
}

/// The [`Output`] for a run with a terminal, and where its master arrives.
pub(crate) fn output() -> (Output, oneshot::Receiver<Console>) {
    let (tx, rx) = oneshot::channel();
    (
        Output::Terminal {
            size: caller_size(),
            console: tx,
        },
        rx,
    )
}

/// Runs `run` (a run or exec with [`output`]'s `Output`) while relaying its terminal, whose
/// master comes on `console`; stdin is forwarded when `stdin` (`-i`).
pub(crate) async fn attach<T>(
    run: impl Future<Output = T>,
    console: oneshot::Receiver<Console>,
    stdin: bool,
) -> T {
    let raw = if stdin { RawMode::enter() } else { None };
    // From now on signals to the caller are kept for the container's process.
    let signals = [
        SignalKind::window_change(),
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ];
    let mut streams: Vec<_> = signals.iter().filter_map(|&k| signal(k).ok()).collect();
    tokio::pin!(run);
    let console = tokio::select! {
        r = &mut run => return r,
        c = console => c,
    };
    let Ok(Console { master, helper }) = console else {
        return run.await;
    };
    let master = Arc::new(master);
    let Ok((stop_read, stop_write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return run.await;
    };
    let relay = {
        let master = master.clone();
        std::thread::spawn(move || relay(&master, stdin.then_some(0), 1, &stop_read))
    };
    let result = loop {
        let any = futures_signal(&mut streams);
        tokio::select! {
            r = &mut run => break r,
            Some(i) = any => {
                if i == 0 {
                    if let Some((rows, cols)) = caller_size() {
                        kiln_executor::set_window_size(master.as_raw_fd(), rows, cols);
                    }
                } else if helper > 0 {
                    let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT][i - 1];
                    // SAFETY: kill has no memory preconditions; the helper is our child,
                    // not reaped while `run` is pending.
                    unsafe { libc::kill(helper as libc::pid_t, sig) };
                }
            }
        }
    };
    let _ = nix::unistd::write(&stop_write, b"x");
    let _ = tokio::task::spawn_blocking(move || relay.join()).await;
    drop(raw);
    result
}

/// The index of the first of `streams` to deliver a signal.
async fn futures_signal(streams: &mut [tokio::signal::unix::Signal]) -> Option<usize> {
    std::future::poll_fn(|cx| {
        for (i, s) in streams.iter_mut().enumerate() {
            if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                return std::task::Poll::Ready(Some(i));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Writes all of `data` to `fd` (false when it cannot).
fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[n.unsigned_abs()..];
    }
    true
}

/// Reads once from `fd`: `Some(n)`, `Some(0)` at end, `None` on an error (EIO: the last
/// slave closed) or, for a non-blocking fd, nothing to read.
fn read(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Some(n.unsigned_abs());
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Copies the master to `output` and `input` (if any) to the master until `stop` becomes
/// readable, then drains what the master still holds.
fn relay(master: &OwnedFd, input: Option<RawFd>, output: RawFd, stop: &OwnedFd) {
    let m = master.as_raw_fd();
    let mut fds = [
        libc::pollfd {
            fd: m,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: input.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: valid array of pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            match read(m, &mut buf) {
                Some(n) if n > 0 => {
                    write_all(output, &buf[..n]);
                }
                // Every slave closed: wait for the stop.
                _ => fds[0].fd = -1,
            }
        }
        if fds[2].revents != 0 {
            match read(fds[2].fd, &mut buf) {
                Some(n) if n > 0 => {
                    write_all(m, &buf[..n]);
                }
                _ => fds[2].fd = -1,
            }
        }
        if fds[1].revents != 0 {
            break;
        }
    }
    // The process ended: what it wrote last may still be on its way to the master (the
    // kernel moves it in the background): read until the last slave is closed (EIO) or,
    // when something else in the container still holds it, nothing came for 100 ms.
    let mut pfd = libc::pollfd {
        fd: m,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    while unsafe { libc::poll(&raw mut pfd, 1, 100) } > 0 {
        match read(m, &mut buf) {
            Some(n) if n > 0 => {
                write_all(output, &buf[..n]);
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn the_relay_copies_both_ways_and_drains_after_the_stop() {
        let pty = nix::pty::openpty(None, None).unwrap();
        // Raw, so that the bytes cross the terminal as they are.
        let mut t = termios::tcgetattr(&pty.slave).unwrap();
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
        let (in_read, in_write) = nix::unistd::pipe().unwrap();
        let (out_read, out_write) = nix::unistd::pipe().unwrap();
        let (stop_read, stop_write) = nix::unistd::pipe().unwrap();
        let master = pty.master;
        let (input, output) = (in_read.as_raw_fd(), out_write.as_raw_fd());
        let relay = std::thread::spawn(move || {
            relay(&master, Some(input), output, &stop_read);
            drop((in_read, out_write));
        });
        let mut slave = std::fs::File::from(pty.slave);
        std::fs::File::from(in_write).write_all(b"typed").unwrap();
        let mut got = [0u8; 5];
        slave.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed", "the caller's input reaches the container");
        slave.write_all(b"shown").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        slave.write_all(b" last").unwrap();
        nix::unistd::write(&stop_write, b"x").unwrap();
        relay.join().unwrap();
        let mut out = String::new();
        std::fs::File::from(out_read)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(
            out, "shown last",
            "the container's output reaches the caller"
        );
    }
}
