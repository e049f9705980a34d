//! Processes identified by pid *and* start time, so that a recycled pid is never taken for
//! the process that had it before.

use serde::{Deserialize, Serialize};
use std::io;

/// A process on the host: its pid and its start time (field 22 of `/proc/PID/stat`, in
/// clock ticks since boot). A sandbox's pid 1 as reported by
/// [`crate::Executor::run_observed`]; `kiln` also uses it for its own supervisors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostProcess {
    /// Pid in the host's (the caller's) pid namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// `(state, start time)` from `/proc/PID/stat`.
fn stat(pid: i32) -> io::Result<(u8, u64)> {
    let s = std::fs::read(format!("/proc/{pid}/stat"))?;
    stat_of(pid, &s)
}

/// `(state, start time)` from `s`, the contents of `PID/stat`.
fn stat_of(pid: i32, s: &[u8]) -> io::Result<(u8, u64)> {
    parse_stat(s).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// The state letter and the start time of a `/proc/PID/stat` line (the command name may
/// hold spaces and parentheses: the fields start after the last `)`).
fn parse_stat(s: &[u8]) -> Option<(u8, u64)> {
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    let state = fields.first()?.bytes().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl HostProcess {
    /// The process with `pid` now.
    pub fn of(pid: i32) -> io::Result<Self> {
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let (_, start_time) = stat(pid)?;
        Ok(Self { pid, start_time })
    }

    /// The process with `pid` now, in the procfs open at `proc` (a directory fd of a
    /// `/proc`): for a caller whose `/proc` may change under it, as the outer helper's does
    /// when pid 1's `pivot_root` moves the root of their shared mount namespace into the
    /// sandbox (where the procfs is the sandbox's, without the host's pids).
    pub(crate) fn of_in(proc: std::os::fd::BorrowedFd<'_>, pid: i32) -> io::Result<Self> {
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd};
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let path = std::ffi::CString::new(format!("{pid}/stat"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: valid dir fd and NUL-terminated path.
        let fd = unsafe {
            libc::openat(
                proc.as_raw_fd(),
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd, owned here alone.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut s = Vec::new();
        f.read_to_end(&mut s)?;
        let (_, start_time) = stat_of(pid, &s)?;
        Ok(Self { pid, start_time })
    }

    /// The calling process.
    pub fn current() -> io::Result<Self> {
        Self::of(std::process::id() as i32)
    }

    /// Whether this process still runs: its pid exists, has the same start time, and is not
    /// a zombie.
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Ok((state, start)) if start == self.start_time && state != b'Z' && state != b'X')
    }

    /// Sends `signal` to the process, through a pidfd that is checked to refer to this very
    /// process (so it never reaches a process that recycled the pid). `ESRCH` when the
    /// process is gone.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let pidfd = self.pidfd()?;
        // SAFETY: plain system call on our pidfd.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        let e = io::Error::last_os_error();
        // SAFETY: closing our fd.
        unsafe { libc::close(pidfd) };
        if r < 0 {
            return Err(e);
        }
        Ok(())
    }

    /// A pidfd (close-on-exec) for this process, checked against the start time after it
    /// was opened. The caller closes it.
    pub(crate) fn pidfd(&self) -> io::Result<libc::c_int> {
        if self.pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: plain system call.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) } as libc::c_int;
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // The pidfd pins the process it was opened for: if that is still ours, it stays so.
        if !self.is_alive() {
            // SAFETY: closing our fd.
            unsafe { libc::close(fd) };
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some((b'S', 98765)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn a_process_in_a_procfs_opened_before() {
        let proc = std::fs::File::open("/proc").unwrap();
        let me = HostProcess::current().unwrap();
        let pid = i32::try_from(std::process::id()).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&proc);
        assert_eq!(HostProcess::of_in(fd, pid).unwrap(), me);
        assert!(HostProcess::of_in(fd, 0).is_err());
        assert!(HostProcess::of_in(fd, i32::MAX).is_err());
    }

    #[test]
    fn current_process_is_alive() {
        let me = HostProcess::current().unwrap();
        assert!(me.is_alive());
        let other = HostProcess {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_alive(),
            "a different start time is another process"
        );
        assert_eq!(
            other.signal(0).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
        me.signal(0).unwrap();
    }
}
