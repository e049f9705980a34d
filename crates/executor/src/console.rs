//! Pseudo-terminals ([`crate::Output::Terminal`]), as runc's console socket does it.
//!
//! The caller makes a unix socket pair and passes one end to the helper
//! ([`CONSOLE_FD_ENV`]). The command's process, already inside the sandbox's mount
//! namespace and before it drops its privileges, opens `/dev/ptmx` there (the sandbox's own
//! devpts instance, see `rootfs.rs`, so the terminal is the container's, never the host's),
//! unlocks it and opens its peer with `TIOCGPTPEER` (the slave of that very master, whatever
//! the paths say), gives the slave to the process's user, starts a session of its own
//! (`setsid`), makes the slave its controlling terminal (`TIOCSCTTY`) and its stdin, stdout
//! and stderr. It sends the master over the socket (`SCM_RIGHTS`), waits for one byte back
//! (the caller has set the window size by then, so the command sees it from its first
//! instruction), closes its copies and goes on to exec. The caller relays the master; no fd
//! of the caller's terminal ever enters the sandbox.

use crate::report::fail;
use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Environment variable naming the helper's end of the console socket.
pub(crate) const CONSOLE_FD_ENV: &str = "KILN_SANDBOX_CONSOLE_FD";

/// The console socket (-1: no terminal wanted).
static CONSOLE_FD: AtomicI32 = AtomicI32::new(-1);

/// A terminal is wanted; the master goes to `fd`.
pub(crate) fn set_console_fd(fd: libc::c_int) {
    CONSOLE_FD.store(fd, Ordering::Relaxed);
}

/// The console socket (-1: none).
pub(crate) fn console_fd() -> libc::c_int {
    CONSOLE_FD.load(Ordering::Relaxed)
}

/// Closes this process's copy of the console socket (processes that do not start the
/// command: the caller's EOF then tells that the command failed before sending a master).
pub(crate) fn close_console_fd() {
    let fd = CONSOLE_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: closing an fd this process owns.
        unsafe { libc::close(fd) };
    }
}

fn check(r: libc::c_int, step: &str) -> libc::c_int {
    if r < 0 {
        fail(step, io::Error::last_os_error());
    }
    r
}

/// In the command's process, when a terminal is wanted: see the module docs. `uid` owns the
/// slave (as `docker run -t`'s /dev/pts/N is the user's).
pub(crate) fn attach(uid: libc::uid_t) {
    let console = console_fd();
    if console < 0 {
        return;
    }
    // SAFETY: plain system calls on fds this process owns, valid pointers.
    unsafe {
        let master = check(
            libc::open(
                c"/dev/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
            "terminal: opening /dev/ptmx",
        );
        let unlock: libc::c_int = 0;
        check(
            libc::ioctl(master, libc::TIOCSPTLCK, &raw const unlock),
            "terminal: unlockpt",
        );
        let slave = check(
            libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY),
            "terminal: opening the slave",
        );
        // A user that cannot own it still gets a terminal it can use (it is open).
        libc::fchown(slave, uid, libc::gid_t::MAX);
        check(libc::setsid(), "terminal: setsid");
        check(
            libc::ioctl(slave, libc::TIOCSCTTY, 0),
            "terminal: TIOCSCTTY",
        );
        for fd in 0..3 {
            check(libc::dup2(slave, fd), "terminal: dup2");
        }
        if slave > 2 {
            libc::close(slave);
        }
        if let Err(e) = send_fd(console, master) {
            fail("terminal: sending the master", e);
        }
        // The caller's go-ahead (or EOF: it went away; the exec goes on and hangs up).
        let mut b = 0u8;
        while libc::read(console, (&raw mut b).cast(), 1) < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        libc::close(master);
    }
    close_console_fd();
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &[IoSlice::new(b"m")], &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// The caller's side: receives the master on `sock` (blocking); `None` when the socket
/// closes first (the sandbox failed before it made a terminal).
pub(crate) fn receive_master(sock: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut got = None;
                for c in msg.cmsgs().ok()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for fd in fds {
                            // SAFETY: received just now, owned by nobody else.
                            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                            got.get_or_insert(fd);
                        }
                    }
                }
                return got;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Sets the window size of the terminal whose master (or slave) is `fd`.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid pointer; a failure (not a terminal) changes nothing.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &raw const ws) };
}

/// The window size `(rows, cols)` of the terminal `fd`, if it is one.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointer.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut ws) } == 0)
        .then_some((ws.ws_row, ws.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn the_master_crosses_the_socket_and_a_closed_socket_gives_none() {
        let (ours, theirs) = pair();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send_fd(theirs.as_raw_fd(), r.as_raw_fd()).unwrap();
        let got = receive_master(&ours).expect("an fd");
        let ino = |fd: RawFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
        assert_eq!(ino(got.as_raw_fd()), ino(r.as_raw_fd()));
        drop(theirs);
        assert!(receive_master(&ours).is_none());
    }

    #[test]
    fn window_sizes_round_trip_on_a_terminal_and_not_elsewhere() {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_window_size(pty.master.as_raw_fd(), 33, 101);
        assert_eq!(window_size(pty.slave.as_raw_fd()), Some((33, 101)));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(window_size(r.as_raw_fd()), None);
    }
}
