//! Attaching to a container that runs under its shim (`kiln attach`, `kiln start -ai`,
//! `kiln run -it`): the shim holds the container's terminal master (`-t`) or its stdin pipe
//! (`-i`) and relays them through a unix socket, `attach.sock` in the container directory
//! (mode 0600: root's, as the rest of the directory); see [`server`] and [`client`]. The
//! same socket runs `kiln exec -t` processes under the shim, so that they too survive a
//! detach (`exec.rs`).
//!
//! # Protocol
//!
//! Both ways, frames of one type byte, a big-endian `u32` length and that many bytes
//! (at most [`proto::MAX_FRAME`]; a peer that sends more, or an unknown type, is dropped):
//!
//! - client → shim, first: `a` (attach to the container; empty) or `e` (exec: a JSON
//!   `{"spec": ExecSpec, "size": [rows, cols]}`, a process started with a terminal of its
//!   own whose output goes to this client only, and is dropped once it left).
//! - shim → client: `1` output to stdout (with `-t` all of the terminal's output), `2`
//!   output to stderr, `x` the exit code (a big-endian `i32`) when the container's command
//!   (or the exec'd process) ended, `!` why an exec'd process could not be started (the
//!   message); then the shim closes the connection. Every attached client gets all of the
//!   container's output, and the shim writes it to the log as well (the log is written
//!   whether anyone is attached or not; an exec'd process's output is not logged).
//! - client → shim: `0` input, written to the terminal's master (`-t`, or the exec'd
//!   process's) or the command's stdin pipe (`-i` without `-t`); `w` a window size (rows,
//!   then columns, big-endian `u16`s), set on the terminal (ignored without one); `s` a
//!   signal (a big-endian `i32`) for an exec'd process (an attached client signals the
//!   container's pid 1 itself).
//!
//! A client detaches by closing the connection: the container goes on, and the input it
//! sent is all the container sees of it. The detach keys (`ctrl-p ctrl-q` by default,
//! `--detach-keys`) are matched by the client on its stdin ([`DetachKeys`]); a partly
//! typed sequence is held back until it is complete (detach) or broken (sent), as docker's
//! escape proxy does.
//!
//! A `kiln start -a`/`run -it` asks the shim to wait (a few seconds at most) for a first
//! client before it relays any output, so that the client sees the container's output from
//! its first byte; the container's own output waits in the terminal (or the pipes) meanwhile.
//! A command that ends before the client came waits for it too (its end is recorded, and
//! sent, once the client is attached), unless it could not be started at all.
//!
//! The socket's path may be too long for `sockaddr_un` (108 bytes) under a deep `--root`:
//! it is bound and connected through `/proc/self/fd/N/attach.sock`, N an open fd of the
//! container directory.

pub(crate) mod client;
mod exec;
mod keys;
pub(crate) mod proto;
pub(crate) mod server;

pub use client::{AttachEnd, AttachOptions};
pub use keys::{DetachKeys, DetachKeysError, DEFAULT_DETACH_KEYS};

/// A start with a client attaching at once (`kiln start -a`, `kiln run -it`): the shim
/// waits for it before it relays output, and gives a terminal the window size `size` first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Awaited {
    /// The client's window size (rows, columns).
    pub(crate) size: Option<(u16, u16)>,
}

/// File name of the attach socket in the container directory.
pub(crate) const SOCKET: &str = "attach.sock";

/// The socket's address for a directory `dir` opened as `dir_fd` (see the module docs).
pub(crate) fn socket_path(dir_fd: &std::os::fd::OwnedFd) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}/{SOCKET}", dir_fd.as_raw_fd()).into()
}

/// Opens `dir` (`O_PATH`) for [`socket_path`].
pub(crate) fn open_dir(dir: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(f.into())
}
