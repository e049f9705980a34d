//! [`crate::Network::Default`]: outbound access from a private network namespace through
//! `pasta` (Debian's `passt` package).
//!
//! The outer helper opens its (host) network namespace before unsharing a new one, then
//! forks a child that keeps an fd of the *new* namespace, returns to the host namespace with
//! `setns` and execs `pasta --config-net --netns /proc/self/fd/N -f -q --runas 0` (an fd of
//! the namespace, because pasta drops its capabilities before opening it and
//! `/proc/PID/ns/net` of a fully privileged process would then be refused). pasta copies the
//! host's addresses, routes and resolvers into the namespace (`eth0`), so the host's
//! `/etc/resolv.conf` is right inside too. The helper waits until a default route appears in
//! its namespace, and terminates pasta when the sandbox ends (pasta also gets
//! `PR_SET_PDEATHSIG`, for a helper that is killed).

use crate::sandbox::{fail, OrFail};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long pasta may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running pasta.
pub(crate) struct NetHelper {
    pid: libc::pid_t,
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Opens the current (host) network namespace; also checks that pasta is installed.
pub(crate) fn open_host_netns() -> libc::c_int {
    if find("pasta").is_none() {
        fail(
            "network default",
            "pasta is not installed: the default network needs it for outbound access \
             (install Debian's passt package: apt-get install passt), or use --network none \
             or host",
        );
    }
    open_ns()
}

fn open_ns() -> libc::c_int {
    let path = crate::sys::cstr("/proc/self/ns/net").or_fail(|| "netns path".into());
    // SAFETY: valid path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        fail("opening the network namespace", io::Error::last_os_error());
    }
    fd
}

/// Starts pasta for the (new) network namespace of the calling process and waits until it is
/// configured. `host` is an fd of the host's namespace.
pub(crate) fn start(host: libc::c_int) -> NetHelper {
    let pasta = find("pasta")
        .ok_or("pasta is not installed (Debian package passt)")
        .or_fail(|| "network default".into());
    let target = open_ns();
    let mut errpipe = [0 as libc::c_int; 2];
    // SAFETY: valid out-array.
    if unsafe { libc::pipe2(errpipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        fail("pipe", io::Error::last_os_error());
    }
    let fd_arg = format!("/proc/self/fd/{target}");
    let args: Vec<std::ffi::CString> = [
        pasta.to_string_lossy().as_ref(),
        "--config-net",
        "--netns",
        &fd_arg,
        "-f",
        "-q",
        "--runas",
        "0",
    ]
    .iter()
    .map(|a| crate::sys::cstr(a).or_fail(|| "pasta arguments".into()))
    .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: single-threaded process; the child only makes system calls before exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail("fork", io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: system calls on our fds; exec or _exit.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            // Rust ignores SIGPIPE; exec keeps ignored signals ignored.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::fcntl(target, libc::F_SETFD, 0);
            libc::dup2(errpipe[1], 2);
            let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if devnull >= 0 {
                libc::dup2(devnull, 0);
                libc::dup2(devnull, 1);
            }
            if libc::setns(host, libc::CLONE_NEWNET) < 0 {
                libc::_exit(126);
            }
            libc::execv(argv[0], argv.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copies.
    unsafe {
        libc::close(errpipe[1]);
        libc::close(target);
        libc::close(host);
    }
    let start = Instant::now();
    loop {
        if has_default_route() {
            break;
        }
        let mut status = 0;
        // SAFETY: valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            let mut buf = vec![0u8; 4096];
            // SAFETY: valid buffer.
            let n = unsafe { libc::read(errpipe[0], buf.as_mut_ptr().cast(), buf.len()) };
            buf.truncate(n.max(0) as usize);
            fail(
                "network default: pasta failed",
                format!(
                    "exit status {}: {}",
                    crate::sys::status_code(status),
                    String::from_utf8_lossy(&buf).trim()
                ),
            );
        }
        if start.elapsed() > READY_TIMEOUT {
            // SAFETY: plain system call.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            fail(
                "network default",
                "pasta did not configure the namespace in time",
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(errpipe[0]) };
    NetHelper { pid }
}

/// A default route (IPv4 or IPv6) in the calling process's network namespace.
fn has_default_route() -> bool {
    let v4 = std::fs::read_to_string("/proc/self/net/route").unwrap_or_default();
    if v4
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
    {
        return true;
    }
    let v6 = std::fs::read_to_string("/proc/self/net/ipv6_route").unwrap_or_default();
    v6.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 9 && f[0] == "00000000000000000000000000000000" && f[1] == "00" && f[9] != "lo"
    })
}

impl NetHelper {
    /// Terminates pasta and reaps it.
    pub(crate) fn stop(self) {
        // SAFETY: our child.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}
