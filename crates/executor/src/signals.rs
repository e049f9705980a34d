//! Signals in the helper: the outer helper and pid 1 forward what they receive to their
//! child (as tini does), and wait for it.

use crate::report::{self, fail, OrFail};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// Where the signal handler forwards signals to.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What the sandbox's pid 1 forwards to the command: every signal a process may want to
/// handle (as tini does), so that `kiln kill -s SIG` reaches the command. Not the ones that
/// report a fault of pid 1 itself, not SIGCHLD (pid 1 reaps), and not the job-control stops
/// (a stopped pid 1 would stop nothing else). Signals from the host without a handler in pid 1
/// are dropped by the kernel, and SIGKILL kills the whole namespace.
const INIT_FORWARDED_SIGNALS: [libc::c_int; 17] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

/// `si_code` of signals the kernel sends on its own behalf, e.g. a terminal's ^C.
const SI_KERNEL: libc::c_int = 0x80;

/// Waits for pid 1; kills it when the caller goes away (the read end of the error pipe is
/// closed: the caller died without dropping the `run` future).
pub(crate) fn wait_outer(child: libc::pid_t) -> libc::c_int {
    let errfd = report::error_fd();
    // SAFETY: plain system call.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) } as libc::c_int;
    if errfd >= 0 && pidfd >= 0 {
        let mut fds = [
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: errfd,
                events: 0,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: valid array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if fds[1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                // SAFETY: plain system call.
                unsafe { libc::kill(child, libc::SIGKILL) };
                fds[1].fd = -1;
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                break;
            }
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer.
        let r = unsafe { libc::waitpid(child, &raw mut status, 0) };
        if r == child {
            return status;
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            fail("waiting for the sandbox init", io::Error::last_os_error());
        }
    }
}

extern "C" fn forward_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Signals the kernel sends for a terminal (^C, ^\) go to the whole foreground process
    // group, the sandboxed process included: forwarding them would deliver them twice.
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    if !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL {
        return;
    }
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

pub(crate) fn install_forwarders() {
    install_forwarders_for(&FORWARDED_SIGNALS);
}

fn install_forwarders_for(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: a zeroed sigaction with a valid handler and flags.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(sig, &raw const sa, std::ptr::null_mut());
        }
    }
}

pub(crate) fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on local sets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for sig in FORWARDED_SIGNALS {
            libc::sigaddset(&raw mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &raw const set, &raw mut old);
        old
    }
}

pub(crate) fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: valid sigset.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Forwards the usual signals to `pid` (see [`install_forwarders`]) from now on.
pub(crate) fn forward_signals_to(pid: libc::pid_t) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    install_forwarders();
}

/// Runs `program args` as a child, forwarding signals to it, and returns its wait status.
pub(crate) fn spawn_and_wait(program: &Path, args: &[&std::ffi::OsStr]) -> libc::c_int {
    let old_mask = block_signals();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let child = cmd
        .spawn()
        .or_fail(|| format!("starting {}", program.display()));
    let pid = child.id() as libc::pid_t;
    // The child is reaped by `wait_outer` with waitpid, not through `Child`.
    std::mem::forget(child);
    FORWARD_TO.store(pid, Ordering::Relaxed);
    install_forwarders();
    restore_signals(&old_mask);
    wait_outer(pid)
}

/// Forwards to `pid` every signal a process may handle (pid 1's list, see
/// [`INIT_FORWARDED_SIGNALS`]) from now on.
pub(crate) fn forward_all_signals_to(pid: libc::pid_t) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    install_forwarders_for(&INIT_FORWARDED_SIGNALS);
}
