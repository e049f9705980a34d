//! The helper's side: namespaces, mounts, init and the exec of the command (see the crate
//! docs for the sequence). Runs in a fresh single-threaded process, so ordinary Rust is fine
//! after `fork`.

use crate::cgroup::Cgroup;
use crate::devices::DeviceRule;
use crate::sys::{self, cstr, status_code, write_all_fd};
use crate::{
    Network, RunSpec, CGROUP_ENV, ERROR_FD_ENV, HELPER_ARG, ID_ENV, MODE_ENV, RUNTIME_ENV,
    SETUP_ERROR_PREFIX, SETUP_FAILED_EXIT, SPEC_FD_ENV, START_FD_ENV,
};
use kiln_fsroot::Follow;
use std::ffi::{CString, OsString};
use std::fmt::Display;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// Where setup errors are reported (-1: stderr with [`SETUP_ERROR_PREFIX`]).
static ERROR_FD: AtomicI32 = AtomicI32::new(-1);
/// Where the signal handler forwards signals to.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// Where a started sandbox is reported (-1: nowhere; see [`START_FD_ENV`]).
static START_FD: AtomicI32 = AtomicI32::new(-1);

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

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities kept in the bounding set: docker's default set.
const DEFAULT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

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

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe.
    unsafe { libc::_exit(code) }
}

pub(crate) fn main(args: &[OsString]) -> ! {
    if let Some(fd) = std::env::var(ERROR_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::c_int>().ok())
    {
        // SAFETY: fcntl on an inherited fd; invalid fds just fail.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
            ERROR_FD.store(fd, Ordering::Relaxed);
        }
    }
    if let Some(fd) = std::env::var(START_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::c_int>().ok())
    {
        // SAFETY: fcntl on an inherited fd; invalid fds just fail.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
            START_FD.store(fd, Ordering::Relaxed);
        }
    }
    std::env::remove_var(START_FD_ENV);
    // The spec comes on the fd named by SPEC_FD_ENV (how `Executor::run` sends it), or as
    // the argument (for running the helper by hand).
    let spec_fd = std::env::var(SPEC_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::c_int>().ok());
    let spec_bytes: Vec<u8> = match (spec_fd, args) {
        (Some(fd), [a]) if a == HELPER_ARG => {
            use std::io::Read;
            use std::os::fd::FromRawFd;
            // SAFETY: the fd was inherited for exactly this and is read once, here.
            let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .or_fail(|| "reading the run spec".into());
            buf
        }
        (None, [a, json]) if a == HELPER_ARG => json.as_bytes().to_vec(),
        _ => fail("arguments", format!("usage: {HELPER_ARG} SPEC_JSON")),
    };
    std::env::remove_var(SPEC_FD_ENV);
    if std::env::var_os(MODE_ENV).is_some_and(|m| m == "exec") {
        std::env::remove_var(MODE_ENV);
        crate::exec::main(&spec_bytes);
    }
    let spec: RunSpec =
        serde_json::from_slice(&spec_bytes).or_fail(|| "parsing the run spec".into());
    if spec.args.is_empty() {
        fail("run spec", "no command");
    }
    // SAFETY: plain system call.
    unsafe { libc::umask(0o022) };
    let cgroup: Option<Cgroup> = std::env::var(CGROUP_ENV)
        .ok()
        .map(|c| serde_json::from_str(&c).or_fail(|| "parsing the cgroup".into()));
    let id = std::env::var(ID_ENV).unwrap_or_else(|_| format!("kiln-{}", std::process::id()));
    if let Ok(runtime) = std::env::var(RUNTIME_ENV) {
        crate::oci::main(&spec, Path::new(&runtime), &id);
    }
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
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    sys::unshare(flags).or_fail(|| "unshare".into());
    sys::make_rprivate().or_fail(|| "making / private".into());

    // Pid 1 learns that we died before it set PR_SET_PDEATHSIG from this pipe.
    let mut death = [0 as libc::c_int; 2];
    // SAFETY: valid out-array of two fds.
    if unsafe { libc::pipe2(death.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        fail("pipe", io::Error::last_os_error());
    }
    let old_mask = block_signals();
    // SAFETY: single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(death[1]) };
        init(
            &spec,
            cgroup.as_ref(),
            net_helper.as_ref(),
            death[0],
            &old_mask,
        );
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(death[0]) };
    let start_fd = START_FD.swap(-1, Ordering::Relaxed);
    if start_fd >= 0 {
        // Our child cannot be reaped before we wait for it, so its stat is its own.
        if let Ok(init) = crate::HostProcess::of(child) {
            write_all_fd(
                start_fd,
                format!("pid {} {}\n", init.pid, init.start_time).as_bytes(),
            );
        }
        // SAFETY: closing our copy; pid 1 keeps its own until it is ready.
        unsafe { libc::close(start_fd) };
    }
    FORWARD_TO.store(child, Ordering::Relaxed);
    install_forwarders();
    restore_signals(&old_mask);
    let status = wait_outer(child);
    if let Some(h) = net_helper {
        h.stop();
    }
    exit(status_code(status))
}

/// Waits for pid 1; kills it when the caller goes away (the read end of the error pipe is
/// closed: the caller died without dropping the `run` future).
pub(crate) fn wait_outer(child: libc::pid_t) -> libc::c_int {
    let errfd = ERROR_FD.load(Ordering::Relaxed);
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

/// Pid 1 of the sandbox.
fn init(
    spec: &RunSpec,
    cgroup: Option<&Cgroup>,
    net: Option<&crate::net::NetHelper>,
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

    let env = process_env(&spec.env, &user);

    // The sandbox is set up: report it (Executor::run_observed), before the command exists.
    let start_fd = START_FD.swap(-1, Ordering::Relaxed);
    if start_fd >= 0 {
        write_all_fd(start_fd, b"ready\n");
        // SAFETY: closing our fd; the command must not inherit it.
        unsafe { libc::close(start_fd) };
    }

    // pasta configured the namespace in parallel with the setup above.
    if let Some(net) = net {
        net.wait_ready();
    }
    // SAFETY: single-threaded process.
    let main = unsafe { libc::fork() };
    if main < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if main == 0 {
        // Rust ignores SIGPIPE, and exec keeps ignored signals ignored: the command gets the
        // default disposition, as under Docker.
        // SAFETY: plain system call.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        restore_signals(old_mask);
        exec_process(
            &spec.args,
            spec.extra.privileged,
            &user,
            &env,
            Launch::Command,
        );
    }
    FORWARD_TO.store(main, Ordering::Relaxed);
    install_forwarders_for(&INIT_FORWARDED_SIGNALS);
    restore_signals(old_mask);
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

/// Mounts the rootfs at `root` and everything under it.
fn setup_rootfs(spec: &RunSpec, root: &Path) {
    let rootfs = &spec.rootfs;
    crate::mounts::overlay(&rootfs.lowers, Some((&rootfs.upper, &rootfs.work)), root)
        .or_fail(|| "mounting the overlay rootfs".into());

    // /proc
    let proc_target = dir_in_root(root, "/proc");
    etc_files(spec, root, &proc_target);
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(
        Some("proc"),
        &proc_target.at(),
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )
    .or_fail(|| "mounting /proc".into());
    // A fresh procfs: paths below it are the kernel's, not the image's.
    let proc_dir = &proc_target.path;
    let privileged = spec.extra.privileged;
    for p in [
        "asound",
        "acpi",
        "kcore",
        "keys",
        "latency_stats",
        "timer_list",
        "timer_stats",
        "sched_debug",
        "scsi",
    ] {
        if !privileged {
            mask(&proc_dir.join(p));
        }
    }
    for p in ["bus", "fs", "irq", "sys", "sysrq-trigger"] {
        if privileged {
            break;
        }
        let path = proc_dir.join(p);
        if path.exists() {
            sys::bind(&path, &path, true).or_fail(|| format!("making /proc/{p} read-only"));
        }
    }

    // /sys
    let sys_target = dir_in_root(root, "/sys");
    let sys_dir = &sys_target.path;
    let sys_ro = if privileged { 0 } else { libc::MS_RDONLY };
    if sys::mount(
        Some("sysfs"),
        &sys_target.at(),
        Some("sysfs"),
        nosuid_nodev_noexec | sys_ro,
        None,
    )
    .is_err()
    {
        sys_target
            .bind(Path::new("/sys"), !privileged)
            .or_fail(|| "mounting /sys".into());
    }
    if !privileged {
        mask(&sys_dir.join("firmware"));
        mask(&sys_dir.join("devices/virtual/powercap"));
    }

    // /dev
    let dev_target = dir_in_root(root, "/dev");
    sys::mount(
        Some("tmpfs"),
        &dev_target.at(),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .or_fail(|| "mounting /dev".into());
    // A fresh tmpfs: paths below it hold no symlink of the image.
    let dev = &dev_target.path;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        let made = std::fs::File::create(&target)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                sys::mount_path(&host, &target, libc::MS_BIND).map_err(|e| e.to_string())
            });
        if let Err(e) = made {
            if name == "tty" {
                let _ = std::fs::remove_file(&target);
            } else {
                fail(&format!("binding /dev/{name}"), e);
            }
        }
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).or_fail(|| "creating /dev/pts".into());
    sys::mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .or_fail(|| "mounting /dev/pts".into());
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).or_fail(|| "creating /dev/shm".into());
    sys::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some("mode=1777,size=65536k"),
    )
    .or_fail(|| "mounting /dev/shm".into());
    let mqueue = dev.join("mqueue");
    if std::fs::create_dir(&mqueue).is_ok()
        && sys::mount(
            Some("mqueue"),
            &mqueue,
            Some("mqueue"),
            nosuid_nodev_noexec,
            None,
        )
        .is_err()
    {
        let _ = std::fs::remove_dir(&mqueue);
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .or_fail(|| format!("creating /dev/{link}"));
    }

    if privileged {
        host_devices(Path::new("/dev"), dev);
    }
    // Before the bind mounts: a node is never made in (nor a file removed from) a host
    // directory bound into the sandbox.
    for d in &spec.extra.devices {
        create_device_node(root, d);
    }

    // Bind and tmpfs mounts, parents before children.
    enum Extra<'a> {
        Bind(&'a crate::BindMount),
        Tmpfs(&'a crate::TmpfsMount),
    }
    let mut extra: Vec<(&str, Extra)> = spec
        .mounts
        .iter()
        .map(|m| (m.destination.as_str(), Extra::Bind(m)))
        .chain(
            spec.extra
                .tmpfs
                .iter()
                .map(|t| (t.destination.as_str(), Extra::Tmpfs(t))),
        )
        .collect();
    extra.sort_by_key(|(d, _)| Path::new(d).components().count());
    for (dest, m) in extra {
        if !dest.starts_with('/') {
            fail(&format!("mount {dest}"), "destination is not absolute");
        }
        match m {
            Extra::Bind(m) => {
                let is_dir = std::fs::metadata(&m.source)
                    .or_fail(|| format!("bind mount source {}", m.source.display()))
                    .is_dir();
                let target = if is_dir {
                    dir_in_root(root, dest)
                } else {
                    file_in_root(root, dest)
                };
                target
                    .bind(&m.source, m.readonly)
                    .or_fail(|| format!("bind-mounting {} on {dest}", m.source.display()));
            }
            Extra::Tmpfs(t) => {
                let target = dir_in_root(root, dest);
                let mut data = String::from("mode=1777");
                if let Some(size) = t.size {
                    data.push_str(&format!(",size={size}"));
                }
                sys::mount(
                    Some("tmpfs"),
                    &target.at(),
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&data),
                )
                .or_fail(|| format!("mounting a tmpfs on {dest}"));
            }
        }
    }

    if spec.network != Network::Host {
        loopback_up().or_fail(|| "bringing up lo".into());
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

/// Privileged sandboxes see the host's devices, as with Docker (containerd's `HostDevices`):
/// a node in the sandbox's /dev (below `dev`) for each device node below the host's `host`
/// that the sandbox's /dev does not have yet, with the host node's mode and owner; the
/// host's `pts`, `shm`, `mqueue` and `fd` are not copied, nor is `console`.
fn host_devices(host: &Path, dev: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = std::fs::read_dir(host) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let (Ok(ft), Ok(m)) = (entry.file_type(), entry.metadata()) else {
            continue;
        };
        let target = dev.join(&name);
        if ft.is_dir() {
            let skip = [".lxc", ".lxd-mounts", ".udev", "fd", "mqueue", "pts", "shm"];
            if !skip.iter().any(|s| name == *s) && std::fs::create_dir_all(&target).is_ok() {
                host_devices(&entry.path(), &target);
            }
            continue;
        }
        if !(ft.is_char_device() || ft.is_block_device())
            || name == "console"
            || std::fs::symlink_metadata(&target).is_ok()
        {
            continue;
        }
        let Ok(path) = cstr(&target) else { continue };
        // SAFETY: a valid path; mode and dev from the host node.
        if unsafe { libc::mknod(path.as_ptr(), m.mode(), m.rdev()) } == 0 {
            let _ = std::os::unix::fs::chown(&target, Some(m.uid()), Some(m.gid()));
            let _ = std::fs::set_permissions(
                &target,
                std::fs::Permissions::from_mode(m.mode() & 0o7777),
            );
        }
    }
}

/// Creates the node of `--device` mapping `d` in the rootfs: the host node's type, numbers,
/// mode and owner, replacing what the path held (e.g. the bound `/dev/null`).
fn create_device_node(root: &Path, d: &crate::DeviceMapping) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let step = || format!("--device {}:{}", d.host.display(), d.container);
    let m = std::fs::metadata(&d.host).or_fail(step);
    if !m.file_type().is_char_device() && !m.file_type().is_block_device() {
        fail(&step(), "not a device node");
    }
    // Through kiln-fsroot, like every mount target: a symlink in the image cannot send the
    // node (or the unmount and removal of what was there) out of the rootfs.
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r.resolve_path(&d.container, true).or_fail(step);
    let (dir, name) = r.parent(&rel, Follow::Never, Some(0o755)).or_fail(step);
    if dir.lstat(&name).or_fail(step).is_some() {
        // What was there (the bound /dev/null, say), by the path that holds no symlink.
        let _ = sys::umount2(&root.join(&rel), libc::MNT_DETACH);
        dir.remove_file(&name).or_fail(step);
    }
    let kind = if m.file_type().is_char_device() {
        kiln_fsroot::FileType::CharacterDevice
    } else {
        kiln_fsroot::FileType::BlockDevice
    };
    dir.mknod(&name, kind, m.mode() & 0o7777, m.rdev())
        .or_fail(step);
    dir.set_owner(&name, m.uid(), m.gid()).or_fail(step);
    // Not the umask's.
    dir.set_mode(&name, m.mode() & 0o7777).or_fail(step);
}

/// The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
pub(crate) fn etc_contents(spec: &RunSpec) -> [(&'static str, String); 3] {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    // Checked by the callers; a name that would add lines of its own is left out here too.
    let one_line =
        |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control());
    if one_line(&spec.hostname) {
        hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
    }
    for (name, ip) in &spec.extra.extra_hosts {
        if one_line(name) && one_line(ip) {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match spec.network {
        Network::Host | Network::Default => host_resolv,
        // Loopback resolvers of the host are unreachable from a namespace of its own.
        Network::None => host_resolv
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver")
                    && w.next()
                        .is_some_and(|a| a.starts_with("127.") || a == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    [
        ("/etc/hosts", hosts),
        ("/etc/hostname", format!("{}\n", spec.hostname)),
        ("/etc/resolv.conf", resolv),
    ]
}

/// Mounts generated /etc files over the rootfs's (see [`crate::SandboxOptions::create_etc_files`]).
/// The files live on a tmpfs mounted for a moment on `scratch` (a directory that is mounted
/// over afterwards), so nothing is written to the layer.
fn etc_files(spec: &RunSpec, root: &Path, scratch_target: &Target) {
    let files = etc_contents(spec);
    let mut targets = Vec::new();
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    for (path, _) in &files {
        let target = r.resolve(path, Follow::InRoot).ok().filter(|fd| {
            std::fs::metadata(kiln_fsroot::proc_fd_path(fd)).is_ok_and(|m| m.is_file())
        });
        let target = match target {
            Some(fd) => Some(Target {
                fd,
                path: PathBuf::new(),
            }),
            _ if spec.extra.create_etc_files => Some(file_in_root(root, path)),
            _ => None,
        };
        targets.push(target);
    }
    if targets.iter().all(Option::is_none) {
        return;
    }
    let scratch = &scratch_target.path;
    sys::mount(
        Some("tmpfs"),
        &scratch_target.at(),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755,size=64k"),
    )
    .or_fail(|| "mounting a tmpfs for /etc files".into());
    for ((path, content), target) in files.iter().zip(targets) {
        let Some(target) = target else { continue };
        let name = scratch.join(path.trim_start_matches("/etc/"));
        std::fs::write(&name, content).or_fail(|| format!("writing {path}"));
        sys::mount_path(&name, &target.at(), libc::MS_BIND).or_fail(|| format!("mounting {path}"));
    }
    sys::umount2(scratch, libc::MNT_DETACH).or_fail(|| "unmounting the /etc files' tmpfs".into());
}

/// Hides `path` (under /proc or /sys): an empty read-only tmpfs on a directory, /dev/null on
/// a file.
fn mask(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let r = if meta.is_dir() {
        sys::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("size=0"),
        )
    } else {
        sys::mount_path(Path::new("/dev/null"), path, libc::MS_BIND)
    };
    r.or_fail(|| format!("masking {}", path.display()));
}

/// `chdir(root)`, `pivot_root(".", ".")`, detach the old root.
fn enter_root(root: &Path) {
    std::env::set_current_dir(root).or_fail(|| "chdir to the rootfs".into());
    sys::pivot_root(Path::new("."), Path::new(".")).or_fail(|| "pivot_root".into());
    sys::umount2(Path::new("."), libc::MNT_DETACH).or_fail(|| "detaching the old root".into());
    std::env::set_current_dir("/").or_fail(|| "chdir /".into());
}

/// A mount target in the rootfs, resolved inside the root (symlinks followed as if it were
/// `/`) and held by an fd. Mounts go on `/proc/self/fd/N` ([`Target::at`], runc's
/// `WithProcfd`), so a symlink swapped in after the lookup cannot send them elsewhere.
struct Target {
    fd: OwnedFd,
    /// Where the target is (below the root, no symlink in it), for what is done after the
    /// mount on top of it (paths below a fresh procfs, sysfs or tmpfs; a read-only remount).
    path: PathBuf,
}

impl Target {
    fn at(&self) -> PathBuf {
        kiln_fsroot::proc_fd_path(&self.fd)
    }

    /// Bind-mounts `source` here (then read-only when asked, through the new mount).
    fn bind(&self, source: &Path, readonly: bool) -> io::Result<()> {
        sys::mount_path(source, &self.at(), libc::MS_BIND | libc::MS_REC)?;
        if readonly {
            sys::remount_readonly(&self.path)?;
        }
        Ok(())
    }
}

/// The directory `path` in the rootfs, created when missing.
fn dir_in_root(root: &Path, path: &str) -> Target {
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r
        .resolve_path(path, true)
        .or_fail(|| format!("resolving {path} in the rootfs"));
    let dir = r
        .mkdir_all(&rel, 0o755, Follow::Never)
        .or_fail(|| format!("creating {path} in the rootfs"));
    Target {
        fd: dir.into(),
        path: root.join(rel),
    }
}

/// The file `path` in the rootfs, created (empty) when missing.
fn file_in_root(root: &Path, path: &str) -> Target {
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r
        .resolve_path(path, true)
        .or_fail(|| format!("resolving {path} in the rootfs"));
    let creating = || format!("creating {path} in the rootfs");
    let fd = match r.resolve(&rel, Follow::Never) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (dir, name) = r.parent(&rel, Follow::Never, Some(0o755)).or_fail(creating);
            match dir.create_file(&name, 0o644) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => fail(&creating(), e),
                _ => {}
            }
            dir.open_path(&name).or_fail(creating)
        }
        Err(e) => fail(&creating(), e),
    };
    Target {
        fd,
        path: root.join(rel),
    }
}

fn loopback_up() -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: socket/ioctl with a correctly laid out struct ifreq; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let e = io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// The user a process runs as.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// `env` plus a default `PATH` and the user's `HOME` when absent.
pub(crate) fn process_env(env: &[String], user: &User) -> Vec<String> {
    let mut env = env.to_vec();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// Resolves `user` against the current root's /etc/passwd and /etc/group.
pub(crate) fn resolve_user(user: &str) -> Result<User, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_user_in(user, &passwd, &group)
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` (empty: root) against the contents of
/// /etc/passwd and /etc/group.
pub(crate) fn resolve_user_in(user: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = entries
        .iter()
        .find(|f| f[0] == user_part)
        .or_else(|| numeric_uid.and_then(|n| entries.iter().find(|f| f[2].parse() == Ok(n))));
    let (uid, mut gid, home, name) = match (entry, numeric_uid) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd for {}", f[0]))?,
            f[3].parse::<u32>()
                .map_err(|_| format!("bad gid in /etc/passwd for {}", f[0]))?,
            f.get(5)
                .filter(|h| !h.is_empty())
                .unwrap_or(&"/")
                .to_string(),
            Some(f[0]),
        ),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let mut supplementary = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match groups.iter().find(|f| f[0] == g) {
                Some(f) => f[2]
                    .parse()
                    .map_err(|_| format!("bad gid in /etc/group for {g}"))?,
                None => g.parse().map_err(|_| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
            };
        }
        _ => {
            if let Some(name) = name {
                for f in &groups {
                    let members = f.get(3).copied().unwrap_or("");
                    if members.split(',').any(|m| m.trim() == name) {
                        if let Ok(g) = f[2].parse::<u32>() {
                            supplementary.push(g);
                        }
                    }
                }
            }
        }
    }
    let mut all = vec![gid];
    for g in supplementary {
        if !all.contains(&g) {
            all.push(g);
        }
    }
    Ok(User {
        uid,
        gid,
        groups: all,
        home,
    })
}

/// How a sandboxed process is started.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// The sandbox's own command: a command that cannot be started exits 127 when it is
    /// not found and 126 otherwise, as with `docker run`.
    Command,
    /// A process started in a running sandbox by [`crate::Executor::exec_in`]: it gets
    /// `PR_SET_PDEATHSIG(SIGKILL)` once it has its final credentials (a credential change
    /// clears it), for a parent outside its pid namespace (`getppid()` is 0 while that
    /// parent lives), and exits 126 for any start failure, as with `docker exec`.
    Exec,
}

/// A sandboxed process (see [`Launch`]): drop privileges, set the environment, exec `args`.
pub(crate) fn exec_process(
    args: &[String],
    privileged: bool,
    user: &User,
    env: &[String],
    launch: Launch,
) -> ! {
    drop_capabilities(privileged);
    let seccomp = if privileged {
        Vec::new()
    } else {
        crate::seccomp::programs().or_fail(|| "building the seccomp filter".into())
    };
    let groups: Vec<libc::gid_t> = user.groups.clone();
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            fail("setgroups", io::Error::last_os_error());
        }
        if libc::setgid(user.gid) < 0 {
            fail("setgid", io::Error::last_os_error());
        }
        if libc::setuid(user.uid) < 0 {
            fail("setuid", io::Error::last_os_error());
        }
        if launch == Launch::Exec {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != 0 {
                // Reparented to the sandbox's pid 1: the parent is already gone.
                exit(128 + libc::SIGKILL);
            }
        }
        // Nothing of ours leaks into the process (stdio excepted).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }

    let cmd = &args[0];
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let program = if cmd.contains('/') {
        PathBuf::from(cmd)
    } else {
        match lookup(cmd, path_var) {
            Some(p) => p,
            None => exec_failed(
                launch,
                &format!("kiln: exec: {cmd:?}: executable file not found in $PATH\n"),
                127,
            ),
        }
    };
    let to_c = |s: &str| {
        cstr(s).unwrap_or_else(|_| {
            exec_failed(
                launch,
                "kiln: exec: argument or environment contains a NUL byte\n",
                126,
            )
        })
    };
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let program_c =
        cstr(&program).unwrap_or_else(|_| exec_failed(launch, "kiln: exec: NUL in path\n", 126));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    if !privileged {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            fail("PR_SET_NO_NEW_PRIVS", io::Error::last_os_error());
        }
        crate::seccomp::apply(&seccomp).or_fail(|| "installing the seccomp filter".into());
    }
    // SAFETY: NULL-terminated arrays of valid C strings.
    unsafe { libc::execve(program_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = io::Error::last_os_error();
    let (what, code) = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => ("no such file or directory".to_string(), 127),
        Some(libc::EACCES) => ("permission denied".to_string(), 126),
        _ => (e.to_string(), 126),
    };
    exec_failed(
        launch,
        &format!("kiln: exec: {:?}: {what}\n", program.display().to_string()),
        code,
    )
}

fn exec_failed(launch: Launch, msg: &str, code: i32) -> ! {
    write_all_fd(2, msg.as_bytes());
    exit(if launch == Launch::Exec { 126 } else { code })
}

/// `cmd` in the colon-separated `path` (an empty entry is the working directory).
fn lookup(cmd: &str, path: &str) -> Option<PathBuf> {
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let Ok(c) = cstr(candidate.as_os_str()) else {
            continue;
        };
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Some(candidate);
        }
    }
    None
}

/// Drops every capability outside [`DEFAULT_CAPS`] from the bounding set and clears the
/// inheritable and ambient sets, so that even root in the sandbox has only docker's default
/// capabilities after `execve`.
fn drop_capabilities(privileged: bool) {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if privileged || DEFAULT_CAPS.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                fail(&format!("dropping capability {cap}"), e);
            }
        }
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
            for d in &mut data {
                d.inheritable = 0;
            }
            if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
                fail(
                    "clearing inheritable capabilities",
                    io::Error::last_os_error(),
                );
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\n";

    #[test]
    fn users() {
        let u = |s| resolve_user_in(s, PASSWD, GROUP);
        assert_eq!(
            u("").unwrap(),
            User {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(u("nobody").unwrap().uid, 65534);
        assert_eq!(u("nobody").unwrap().home, "/nonexistent");
        let app = u("app").unwrap();
        assert_eq!((app.uid, app.gid, app.groups), (1000, 1000, vec![1000, 10]));
        let app = u("1000").unwrap();
        assert_eq!(app.groups, vec![1000, 10]);
        assert_eq!(u("app:nogroup").unwrap().groups, vec![65534]);
        let n = u("1234:1234").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1234, 1234, "/"));
        assert_eq!(u("1234").unwrap().gid, 0);
        assert!(u("missing").is_err());
        assert!(u("app:missing").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(lookup("sh", "/nonexistent"), None);
        let dir = std::env::temp_dir().join(format!("kiln-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/a", dir.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", dir.join("a/b/up")).unwrap();
        assert_eq!(dir_in_root(&dir, "/abs/b").path, dir.join("a/b"));
        assert_eq!(dir_in_root(&dir, "/a/b/up/x").path, dir.join("x"));
        assert!(dir.join("x").is_dir());
        assert_eq!(dir_in_root(&dir, "/../../etc").path, dir.join("etc"));
        assert_eq!(file_in_root(&dir, "/abs/f").path, dir.join("a/f"));
        assert!(dir.join("a/f").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
