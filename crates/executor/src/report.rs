//! How the helper reports to its caller: setup failures (on the error pipe, else on stderr
//! with [`SETUP_ERROR_PREFIX`], then exit [`SETUP_FAILED_EXIT`]) and the start of a
//! sandbox (on the start pipe, see [`crate::Executor::run_observed`]). Every helper-side
//! module reports through here; the fds are set once by the dispatch ([`crate::helper`]).

use crate::spec::{SETUP_ERROR_PREFIX, SETUP_FAILED_EXIT};
use crate::sys::write_all_fd;
use std::fmt::Display;
use std::sync::atomic::{AtomicI32, Ordering};

/// Where setup errors are reported (-1: stderr with [`SETUP_ERROR_PREFIX`]).
static ERROR_FD: AtomicI32 = AtomicI32::new(-1);
/// Where a started sandbox is reported (-1: nowhere; see [`crate::spec::START_FD_ENV`]).
static START_FD: AtomicI32 = AtomicI32::new(-1);

/// Reports setup errors on `fd` from now on.
pub(crate) fn set_error_fd(fd: libc::c_int) {
    ERROR_FD.store(fd, Ordering::Relaxed);
}

/// The error pipe (-1: none); its read end closes when the caller goes away.
pub(crate) fn error_fd() -> libc::c_int {
    ERROR_FD.load(Ordering::Relaxed)
}

/// Where the sandbox's command tells that it could not be started (-1: nowhere): one byte,
/// written by the forked command before it exits; the pipe closes without data at its exec.
static EXEC_FAILED_FD: AtomicI32 = AtomicI32::new(-1);

/// The command (in the forked child) reports a failed start on `fd`.
pub(crate) fn set_exec_failed_fd(fd: libc::c_int) {
    EXEC_FAILED_FD.store(fd, Ordering::Relaxed);
}

/// Tells the sandbox's pid 1 that its command could not be started (see
/// [`set_exec_failed_fd`]).
pub(crate) fn exec_failed() {
    let fd = EXEC_FAILED_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        write_all_fd(fd, b"x");
    }
}

/// Reports a started sandbox on `fd`.
pub(crate) fn set_start_fd(fd: libc::c_int) {
    START_FD.store(fd, Ordering::Relaxed);
}

/// The start pipe (-1: none), taken: the next call returns -1.
pub(crate) fn take_start_fd() -> libc::c_int {
    START_FD.swap(-1, Ordering::Relaxed)
}

/// Reports a setup failure and exits with [`SETUP_FAILED_EXIT`].
pub(crate) fn fail(step: &str, err: impl Display) -> ! {
    let msg = format!("{step}: {err}\n");
    let fd = ERROR_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        write_all_fd(fd, msg.as_bytes());
    } else {
        write_all_fd(2, format!("{SETUP_ERROR_PREFIX}{msg}").as_bytes());
    }
    // SAFETY: _exit is always safe; nothing needs flushing.
    unsafe { libc::_exit(SETUP_FAILED_EXIT) }
}

/// `result.or_fail(|| step)`: the value, or [`fail`] with `step` and the error.
pub(crate) trait OrFail<T> {
    fn or_fail(self, step: impl FnOnce() -> String) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, step: impl FnOnce() -> String) -> T {
        match self {
            Ok(v) => v,
            Err(e) => fail(&step(), e),
        }
    }
}

/// Exits with `code` at once.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe.
    unsafe { libc::_exit(code) }
}
