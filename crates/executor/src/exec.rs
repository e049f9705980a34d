//! The helper's side of [`crate::Executor::exec_in`]: join a running sandbox and start a
//! process in it with the same isolation as the sandbox's own command.
//!
//! 1. Open a pidfd for the sandbox's pid 1 and check its start time (a pid that was
//!    recycled is refused; the pidfd then pins the process for the steps below).
//! 2. Move into pid 1's cgroups (from the host's view of the cgroup filesystems, so before
//!    joining its mount and cgroup namespaces; cgroup v2 also refuses a move from outside
//!    the writer's cgroup namespace).
//! 3. Become non-dumpable, so that the sandbox's processes cannot ptrace or read us while we
//!    still hold host resources.
//! 4. `setns(pidfd, NEWNS|NEWCGROUP|NEWPID|NEWIPC|NEWUTS|NEWNET)`: all at once, atomically.
//!    Joining the mount namespace sets our root and working directory to the namespace's
//!    root, which pid 1's `pivot_root` made the sandbox's root filesystem; no `chroot` is
//!    needed. The new pid namespace applies to children only, hence:
//! 5. fork. The child (a process of the sandbox's pid namespace) resolves the user against
//!    the sandbox's /etc/passwd, enters the working directory and goes through
//!    [`exec_process`], the very code the sandbox's command goes through
//!    (capabilities, `no_new_privs`, seccomp, exec), with `PR_SET_PDEATHSIG`. The helper
//!    stays outside, forwards signals, waits and exits with the child's status, killing it
//!    when the caller goes away, like the outer helper of a sandbox.

use crate::process::HostProcess;
use crate::report::{exit, fail, OrFail};
use crate::sandbox::process::{exec_process, process_env, resolve_user, Launch};
use crate::signals;
use crate::spec::ExecSpec;
use crate::sys::status_code;
use serde::{Deserialize, Serialize};
use std::io;

/// What [`crate::Executor::exec_in`] sends the helper.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExecRequest {
    pub(crate) init: HostProcess,
    pub(crate) spec: ExecSpec,
}

/// The namespaces a process started in a sandbox joins.
const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET;

pub(crate) fn main(request: &[u8]) -> ! {
    let request: ExecRequest =
        serde_json::from_slice(request).or_fail(|| "parsing the exec request".into());
    let ExecRequest { init, spec } = request;
    if spec.args.is_empty() {
        fail("exec", "no command");
    }
    let pidfd = init.pidfd().unwrap_or_else(|e| {
        let why = if e.raw_os_error() == Some(libc::ESRCH) {
            "the process is gone".to_string()
        } else {
            e.to_string()
        };
        fail(
            "exec",
            format!(
                "the sandbox is not running (its pid 1, {}: {why})",
                init.pid
            ),
        )
    });
    crate::cgroup::join_cgroups_of(init.pid).or_fail(|| "joining the sandbox's cgroups".into());
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        if libc::setns(pidfd, NAMESPACES) < 0 {
            fail(
                "joining the sandbox's namespaces",
                io::Error::last_os_error(),
            );
        }
        libc::close(pidfd);
    }

    let old_mask = signals::block_signals();
    // SAFETY: single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if child == 0 {
        let user = resolve_user(&spec.user).or_fail(|| format!("resolving user {:?}", spec.user));
        let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
        std::env::set_current_dir(cwd).or_fail(|| format!("chdir to the working directory {cwd}"));
        let env = process_env(&spec.env, &user);
        // As for a sandbox's command: the default SIGPIPE disposition, the caller's mask.
        // SAFETY: plain system call.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        signals::restore_signals(&old_mask);
        crate::console::attach(user.uid);
        exec_process(
            &spec.args,
            spec.privileged,
            &spec.process,
            &user,
            &env,
            Launch::Exec,
        );
    }
    crate::console::close_console_fd();
    signals::forward_signals_to(child);
    signals::restore_signals(&old_mask);
    let status = signals::wait_outer(child);
    exit(status_code(status))
}
