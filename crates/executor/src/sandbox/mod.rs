//! The helper's side of a new sandbox: namespaces, pid 1, the rootfs and the command (see
//! the crate docs for the sequence). Runs in a fresh single-threaded process, so ordinary
//! Rust is fine after `fork`.
//!
//! [`main`] is the outer helper (it creates the namespaces and forks pid 1, then waits),
//! [`init`] is pid 1; [`rootfs`] mounts the root filesystem and [`process`] starts the
//! command (and, for [`crate::exec`], a process joining the sandbox).

pub(crate) mod process;
mod rootfs;
#[cfg(test)]
mod tests;

use crate::cgroup::Cgroup;
use crate::devices::DeviceRule;
use crate::net::NetHelper;
use crate::process::HostProcess;
use crate::report::{self, exit, fail, OrFail};
use crate::signals;
use crate::spec::{Network, RunSpec};
use crate::sys::{self, status_code, write_all_fd};
use process::{exec_process, process_env, resolve_user, Launch};
use rootfs::{enter_root, setup_rootfs};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Enters the network namespace bind-mounted at `path` (before the other namespaces are
/// made, so that pid 1 and everything it starts are in it).
fn join_netns(path: &Path) {
    let f = std::fs::File::open(path)
        .or_fail(|| format!("opening the network namespace {}", path.display()));
    // SAFETY: our fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        fail(
            &format!("joining the network namespace {}", path.display()),
            io::Error::last_os_error(),
        );
    }
}

/// The outer helper: creates the namespaces for `spec` (and the network helper), forks pid
/// 1, reports it on the start pipe, forwards signals to it, waits for it and exits with its
/// status.
pub(crate) fn main(spec: &RunSpec, cgroup: Option<&Cgroup>) -> ! {
    // The host's network namespace, for the user-mode network stack.
    let host_netns = (spec.network == Network::Default).then(crate::net::open_host_netns);

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    // The user-mode network stack is started in the new network namespace before the pid
    // namespace exists (it must not become a member of it); pid 1 waits for it.
    let net_helper = host_netns.map(|host| {
        sys::unshare(libc::CLONE_NEWNET).or_fail(|| "unshare(CLONE_NEWNET)".into());
        crate::net::start(host, &spec.extra.ports)
    });
    match &spec.network {
        Network::None => flags |= libc::CLONE_NEWNET,
        Network::Join(path) => join_netns(path),
        Network::Host | Network::Default => {}
    }
    sys::unshare(flags).or_fail(|| "unshare".into());
    sys::make_rprivate().or_fail(|| "making / private".into());

    // Pid 1 learns that we died before it set PR_SET_PDEATHSIG from this pipe.
    let mut death = [0 as libc::c_int; 2];
    // SAFETY: valid out-array of two fds.
    if unsafe { libc::pipe2(death.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        fail("pipe", io::Error::last_os_error());
    }
    // The host's procfs, to report pid 1 in: we share pid 1's mount namespace, so its
    // pivot_root (which may come before our report) makes the sandbox's root ours too, and
    // `/proc` then the sandbox's procfs, where pid 1 has another pid.
    let host_proc = std::fs::File::open("/proc").or_fail(|| "opening /proc".into());
    let old_mask = signals::block_signals();
    // SAFETY: single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if child == 0 {
        drop(host_proc);
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(death[1]) };
        init(spec, cgroup, net_helper.as_ref(), death[0], &old_mask);
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(death[0]) };
    crate::console::close_console_fd();
    let start_fd = report::take_start_fd();
    if start_fd >= 0 {
        if let Some(ms) = std::env::var(crate::spec::TEST_REPORT_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        // Our child cannot be reaped before we wait for it, so its stat is its own. A pid 1
        // that cannot be reported fails the start (the caller would wait for it forever).
        let init = HostProcess::of_in(std::os::fd::AsFd::as_fd(&host_proc), child)
            .or_fail(|| "reporting the sandbox's pid 1".into());
        write_all_fd(
            start_fd,
            format!("pid {} {}\n", init.pid, init.start_time).as_bytes(),
        );
        // SAFETY: closing our copy; pid 1 keeps its own until it is ready.
        unsafe { libc::close(start_fd) };
    }
    drop(host_proc);
    signals::forward_signals_to(child);
    signals::restore_signals(&old_mask);
    let status = signals::wait_outer(child);
    if let Some(h) = net_helper {
        h.stop();
    }
    exit(status_code(status))
}

/// Pid 1 of the sandbox.
fn init(
    spec: &RunSpec,
    cgroup: Option<&Cgroup>,
    net: Option<&NetHelper>,
    death_pipe: libc::c_int,
    old_mask: &libc::sigset_t,
) -> ! {
    // SAFETY: prctl/poll/close with valid arguments.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            fail("PR_SET_PDEATHSIG", io::Error::last_os_error());
        }
        let mut pfd = libc::pollfd {
            fd: death_pipe,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&raw mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLHUP != 0 {
            exit(128 + libc::SIGKILL);
        }
        libc::close(death_pipe);
        // Not dumpable: the sandboxed processes cannot ptrace us or open /proc/1/exe.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    if let Some(cg) = cgroup {
        cg.create(&spec.extra.resources, &allowed_devices(spec))
            .or_fail(|| "creating the cgroup".into());
        cg.join().or_fail(|| "joining the cgroup".into());
    }
    // A cgroup namespace rooted at the sandbox's cgroup (the caller's without limits).
    sys::unshare(libc::CLONE_NEWCGROUP).or_fail(|| "unshare(CLONE_NEWCGROUP)".into());

    let root = spec.rootfs.work.clone();
    setup_rootfs(spec, &root);
    enter_root(&root);
    if !spec.hostname.is_empty() {
        nix::unistd::sethostname(&spec.hostname).or_fail(|| "sethostname".into());
    }
    let user = resolve_user(&spec.user).or_fail(|| format!("resolving user {:?}", spec.user));
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    std::fs::create_dir_all(cwd).or_fail(|| format!("creating the working directory {cwd}"));
    std::env::set_current_dir(cwd).or_fail(|| format!("chdir {cwd}"));
    if spec.extra.read_only {
        // The root mount only: the mounts on it keep their modes, as with docker.
        sys::remount_readonly(Path::new("/")).or_fail(|| "remounting / read-only".into());
    }

    let env = process_env(&spec.env, &user);

    // pasta configured the namespace in parallel with the setup above. Waited for before
    // the start is reported: a published port pasta cannot bind (in use) fails the setup,
    // so that `kiln run -d` reports it instead of a container that started.
    if let Some(net) = net {
        net.wait_ready();
    }

    // The command's exec closes this pipe's write end; a command that cannot be started
    // writes to it first (report::exec_failed).
    let start_fd = report::take_start_fd();
    let exec_pipe = (start_fd >= 0)
        .then(|| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).or_fail(|| "pipe".into()));
    // SAFETY: single-threaded process.
    let main = unsafe { libc::fork() };
    if main < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if main == 0 {
        if let Some((_, w)) = &exec_pipe {
            report::set_exec_failed_fd(w.as_raw_fd());
        }
        // Rust ignores SIGPIPE, and exec keeps ignored signals ignored: the command gets the
        // default disposition, as under Docker.
        // SAFETY: plain system call.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        signals::restore_signals(old_mask);
        crate::console::attach(user.uid);
        exec_process(
            &spec.args,
            spec.extra.privileged,
            &spec.extra.process,
            &user,
            &env,
            Launch::Command,
        );
    }
    crate::console::close_console_fd();
    signals::forward_all_signals_to(main);
    signals::restore_signals(old_mask);
    // The command runs: report the sandbox (Executor::run_observed). A command that could
    // not be started is not reported: the caller sees its exit code (127, 126) instead.
    if let Some((r, w)) = exec_pipe {
        drop(w);
        if command_started(&r) {
            write_all_fd(start_fd, b"ready\n");
        }
    }
    if start_fd >= 0 {
        // SAFETY: closing our fd.
        unsafe { libc::close(start_fd) };
    }
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &raw mut status, 0) };
        if pid == main {
            // Exiting kills whatever is left in the namespace.
            exit(status_code(status));
        }
        if pid < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                fail("reaping", e);
            }
        }
    }
}

/// Whether the command exec'd: its end of the pipe closed without a byte written.
fn command_started(r: &std::os::fd::OwnedFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading into a valid buffer from an fd we own.
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n >= 0 {
            return n == 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true;
        }
    }
}

/// Docker's default device rules plus those of the `--device` mappings.
fn allowed_devices(spec: &RunSpec) -> Vec<DeviceRule> {
    let mut allowed = crate::devices::DEFAULT_ALLOWED.to_vec();
    for d in &spec.extra.devices {
        let access = crate::devices::parse_access(&d.permissions)
            .ok_or_else(|| format!("invalid device mode: {}", d.permissions))
            .or_fail(|| format!("--device {}", d.host.display()));
        allowed.push(
            crate::devices::rule_for_node(&d.host, access)
                .or_fail(|| format!("--device {}", d.host.display())),
        );
    }
    allowed
}
