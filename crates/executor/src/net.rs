//! [`crate::Network::Default`]: outbound access from a private network namespace through
//! `pasta` (Debian's `passt` package).
//!
//! The outer helper opens its (host) network namespace before unsharing a new one, then
//! forks a child that keeps an fd of the *new* namespace, returns to the host namespace with
//! `setns` and execs `pasta --config-net --netns /proc/self/fd/N -f -q --runas 0 -t none -u
//! none -T none -U none --no-map-gw -P /proc/self/fd/M` (an fd of the namespace, because pasta drops its
//! capabilities before opening it and `/proc/PID/ns/net` of a fully privileged process would
//! then be refused). pasta copies the host's addresses, routes and resolvers into the
//! namespace (same interface name), so the host's `/etc/resolv.conf` is right inside too.
//!
//! Published ports ([`crate::SandboxOptions::ports`], `kiln run -p`) replace `-t none` / `-u
//! none` with one `-t [ADDR/]HOST:CTR` (or `-u`) per port: pasta binds the host port (a
//! port in use makes pasta, and so the sandbox's setup, fail) and forwards to the
//! container's port on its address in the namespace. `--no-map-gw` stays: forwarding in
//! does not need the gateway mapped to the host's loopback.
//!
//! # Start-up cost
//!
//! A sandbox running `true` in a busybox rootfs (the helper started by hand, release build,
//! median of 30 runs, `--network none` and `default` interleaved, on the 2-core development
//! host): `--network none` 4.6 ms, `default` 92.7 ms before this design and 9.0 ms after.
//! Step by step (debug build, same method; `none` 5.3 ms): 97.3 ms; ports off 53.5 ms; not
//! waiting for pasta's exit 11.3 ms; netlink readiness and the parallel start 10.0 ms;
//! `pasta.avx2` 9.4 ms. Where the time went:
//!
//! - **Port forwarding scans, ~40 ms.** pasta's default (`-t auto -u auto -T auto -U
//!   auto`) scans `/proc/net/{tcp,tcp6,udp,udp6}` in both namespaces at start (and then
//!   every second) to forward bound ports in either direction: host ports to servers in the
//!   sandbox, and the sandbox's `127.0.0.1:PORT` to the host's loopback. A sandbox publishes
//!   no ports and its loopback is its own, as under Docker's default network, so all four
//!   are `none`. `--no-map-gw` too: by default pasta maps connections to the gateway
//!   address to the host's loopback, which would let a build step reach services the host
//!   binds to 127.0.0.1 only; a Docker container cannot.
//! - **Waiting for pasta to exit, ~40 ms.** pasta's exit closes its tap device, and the
//!   kernel's unregistering of a network device waits for RCU grace periods (20-40 ms here;
//!   `ip link del` of a tap costs the same). [`NetHelper::stop`] therefore sends `SIGTERM`
//!   and does not wait: pasta does nothing in user space after the signal, and the orphan is
//!   reaped by init (or the nearest subreaper), as Podman's daemonised pasta is. (So a
//!   `kiln` running as pid 1 of a container needs an init, e.g. `docker run --init`.)
//! - **Waiting for readiness.** pasta writes its pid file only after filling its socket and
//!   pipe pools, ~25 ms after it configured the namespace. The sandbox instead waits for
//!   the default routes pasta adds last: a `NETLINK_ROUTE` socket in the new namespace,
//!   subscribed to route changes *before* pasta starts (so no event is missed), tells when
//!   they appear, with no polling. pasta adds the IPv4 route and then the IPv6 one, for
//!   each family the host has a default route for; the wait ends when every such family
//!   has its default route, or when pasta's pid file (a pipe, `-P /proc/self/fd/M`) says
//!   its initialisation is complete (for a host family pasta chose not to configure), and
//!   fails with pasta's stderr when pasta exits first (EOF on that pipe).
//! - **In parallel with the sandbox.** pasta starts before the pid namespace exists (it must
//!   not be a member of it), but only the sandbox's pid 1 waits for it, right before it
//!   forks the command ([`NetHelper::wait_ready`]): pasta's start and configuration overlap
//!   with the rootfs setup. (pasta is `pasta.avx2` when the CPU has AVX2: Debian's `pasta`
//!   would re-execute it, ~1.5 ms.)
//!
//! pasta gets `PR_SET_PDEATHSIG(SIGTERM)`, for a helper that is killed.

use crate::report::{fail, OrFail};
use crate::spec::PortMapping;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long pasta may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's network namespace, opened before the sandbox's is created.
pub(crate) struct HostNet {
    fd: libc::c_int,
    /// Families the host has a default route for (what pasta will configure).
    families: Families,
}

/// IPv4 and IPv6 default routes: present, or wanted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Families {
    v4: bool,
    v6: bool,
}

impl Families {
    /// Every family of `want` is in `self`.
    fn covers(self, want: Families) -> bool {
        (self.v4 || !want.v4) && (self.v6 || !want.v6)
    }
}

/// A running pasta, and how to learn that it configured the namespace.
pub(crate) struct NetHelper {
    pid: libc::pid_t,
    /// `NETLINK_ROUTE` socket in the sandbox's namespace, subscribed to IPv4 and IPv6 route
    /// changes.
    routes: libc::c_int,
    /// Read end of the pipe pasta writes its pid into once initialised; EOF without data:
    /// pasta exited.
    ready: libc::c_int,
    /// Read end of pasta's stderr.
    errors: libc::c_int,
    /// The default routes to wait for.
    want: Families,
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `pasta.avx2` next to `pasta` when the CPU has AVX2: the build that `pasta` itself
/// re-executes then (Debian ships both), one `execve` and dynamic link less (about 1.5 ms).
fn avx2_build(pasta: PathBuf) -> PathBuf {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let mut name = pasta.clone().into_os_string();
        name.push(".avx2");
        let avx2 = PathBuf::from(name);
        if avx2.is_file() {
            return avx2;
        }
    }
    pasta
}

/// Opens the current (host) network namespace and notes its default routes; also checks
/// that pasta is installed.
pub(crate) fn open_host_netns() -> HostNet {
    if find("pasta").is_none() {
        fail(
            "network default",
            "pasta is not installed: the default network needs it for outbound access \
             (install Debian's passt package: apt-get install passt), or use --network none \
             or host",
        );
    }
    let v4 = std::fs::read_to_string("/proc/self/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/self/net/ipv6_route").unwrap_or_default();
    HostNet {
        fd: open_ns(),
        families: default_routes(&v4, &v6),
    }
}

/// The families with a default route in `/proc/net/route` and `/proc/net/ipv6_route`
/// contents (as pasta picks its interface: the IPv6 one must not be on `lo`).
fn default_routes(v4: &str, v6: &str) -> Families {
    Families {
        v4: v4
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000")),
        v6: v6.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9
                && f[0] == "00000000000000000000000000000000"
                && f[1] == "00"
                && f[9] != "lo"
        }),
    }
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

/// A `NETLINK_ROUTE` socket in the calling process's network namespace that receives every
/// IPv4 and IPv6 route change from now on.
fn route_events() -> io::Result<libc::c_int> {
    // SAFETY: plain system call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_nl is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = (libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE) as u32;
    // SAFETY: addr is a valid sockaddr_nl of the given size.
    let r = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// The default routes (main table, unicast, destination length 0) that `buf`, a datagram
/// of netlink messages, adds.
fn added_default_routes(buf: &[u8]) -> Families {
    const NLMSGHDR: usize = 16;
    let mut found = Families::default();
    let mut rest = buf;
    while rest.len() >= NLMSGHDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let typ = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSGHDR || len > rest.len() {
            break;
        }
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let rtm = &rest[NLMSGHDR..len];
        if typ == libc::RTM_NEWROUTE
            && rtm.len() >= 8
            && rtm[1] == 0
            && rtm[4] == libc::RT_TABLE_MAIN
            && rtm[7] == libc::RTN_UNICAST
        {
            match i32::from(rtm[0]) {
                libc::AF_INET => found.v4 = true,
                libc::AF_INET6 => found.v6 = true,
                _ => {}
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        rest = &rest[next.min(rest.len())..];
    }
    found
}

/// Starts pasta for the (new) network namespace of the calling process and returns at once;
/// [`NetHelper::wait_ready`] waits until pasta configured it.
pub(crate) fn start(host: HostNet, ports: &[PortMapping]) -> NetHelper {
    let pasta = find("pasta")
        .ok_or("pasta is not installed (Debian package passt)")
        .or_fail(|| "network default".into());
    let pasta = avx2_build(pasta);
    // Subscribed before pasta exists: the routes it adds cannot be missed.
    let routes = route_events().or_fail(|| "network default: netlink socket".into());
    let target = open_ns();
    let pipe = || {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: valid out-array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            fail("pipe", io::Error::last_os_error());
        }
        fds
    };
    let errpipe = pipe();
    let readypipe = pipe();
    let fd_arg = format!("/proc/self/fd/{target}");
    let pid_arg = format!("/proc/self/fd/{}", readypipe[1]);
    // No port forwarding into the namespace but the published ports, none out of it (see
    // the module docs): `-t [ADDR/]HOST:CTR` per published TCP port, `-u` per UDP one.
    let mut forward: Vec<String> = Vec::new();
    for (flag, proto) in [("-t", "tcp"), ("-u", "udp")] {
        let specs: Vec<&PortMapping> = ports.iter().filter(|p| p.protocol == proto).collect();
        if specs.is_empty() {
            forward.extend([flag.to_string(), "none".to_string()]);
        }
        for p in specs {
            let addr = p
                .host_ip
                .as_deref()
                .map(|a| format!("{a}/"))
                .unwrap_or_default();
            forward.extend([
                flag.to_string(),
                format!("{addr}{}:{}", p.host_port, p.container_port),
            ]);
        }
    }
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
    .into_iter()
    .chain(forward.iter().map(String::as_str))
    .chain([
        "-T",
        "none",
        "-U",
        "none",
        // The gateway address is not the host's loopback (see the module docs).
        "--no-map-gw",
        "-P",
        &pid_arg,
    ])
    .map(|a| crate::sys::cstr(a).or_fail(|| "pasta arguments".into()))
    .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: plain system call.
    let parent = unsafe { libc::getpid() };
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
            if libc::getppid() != parent {
                // The helper died before the death signal was armed.
                libc::_exit(1);
            }
            // Rust ignores SIGPIPE; exec keeps ignored signals ignored.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::fcntl(target, libc::F_SETFD, 0);
            libc::fcntl(readypipe[1], libc::F_SETFD, 0);
            libc::dup2(errpipe[1], 2);
            let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if devnull >= 0 {
                libc::dup2(devnull, 0);
                libc::dup2(devnull, 1);
            }
            if libc::setns(host.fd, libc::CLONE_NEWNET) < 0 {
                libc::_exit(126);
            }
            libc::execv(argv[0], argv.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copies: only pasta holds the write ends.
    unsafe {
        libc::close(errpipe[1]);
        libc::close(readypipe[1]);
        libc::close(target);
        libc::close(host.fd);
    }
    NetHelper {
        pid,
        routes,
        ready: readypipe[0],
        errors: errpipe[0],
        want: host.families,
    }
}

impl NetHelper {
    /// Waits until pasta configured the namespace (see the module docs); fails the sandbox
    /// with pasta's message when it exits first. Called by the sandbox's pid 1, which shares
    /// the namespace and inherited the fds.
    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Families::default();
        let mut buf = vec![0u8; 16 * 1024];
        // With no default route on the host there is nothing to watch for: pasta fails (or
        // configures what it can) and only its pid file or its exit tells.
        let watch = self.want != Families::default();
        while !(watch && seen.covers(self.want)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                fail(
                    "network default",
                    format!(
                        "pasta did not configure the namespace in {} s",
                        READY_TIMEOUT.as_secs()
                    ),
                );
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.routes,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.ready,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: valid array of two pollfds.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                fail("network default: poll", e);
            }
            if fds[0].revents & libc::POLLIN != 0 {
                loop {
                    // SAFETY: valid buffer; non-blocking socket.
                    let n =
                        unsafe { libc::recv(self.routes, buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if n <= 0 {
                        // EAGAIN: drained. ENOBUFS (events lost) cannot hide readiness for
                        // long: the pid file still ends the wait.
                        break;
                    }
                    let added = added_default_routes(&buf[..n as usize]);
                    seen.v4 |= added.v4;
                    seen.v6 |= added.v6;
                }
            }
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                // SAFETY: valid buffer.
                let n = unsafe { libc::read(self.ready, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    // pasta is done initialising: whatever it configured is there.
                    return;
                }
                fail("network default: pasta exited", self.pasta_stderr());
            }
        }
    }

    /// What (an exited) pasta wrote to stderr, without its complaints about syslog.
    fn pasta_stderr(&self) -> String {
        // SAFETY: fcntl on our fd: never block, whoever else holds the write end.
        unsafe {
            let fl = libc::fcntl(self.errors, libc::F_GETFL);
            libc::fcntl(self.errors, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: valid buffer.
            let n = unsafe { libc::read(self.errors, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("Failed to send"))
            .collect();
        if lines.is_empty() {
            "no message".into()
        } else {
            lines.join("; ")
        }
    }

    /// Terminates pasta without waiting for it (see the module docs: its exit takes tens of
    /// milliseconds in the kernel, and init reaps it).
    pub(crate) fn stop(self) {
        // SAFETY: our child; closing our fds.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
            libc::close(self.routes);
            libc::close(self.ready);
            libc::close(self.errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(typ: u16, rtm: [u8; 12], attrs: &[u8]) -> Vec<u8> {
        let len = 16 + rtm.len() + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&typ.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&rtm);
        m.extend_from_slice(attrs);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn rtm(family: i32, dst_len: u8, table: u8, typ: u8) -> [u8; 12] {
        [family as u8, dst_len, 0, 0, table, 4, 0, typ, 0, 0, 0, 0]
    }

    #[test]
    fn only_added_default_routes_count() {
        let main = libc::RT_TABLE_MAIN;
        let uni = libc::RTN_UNICAST;
        // An IPv4 subnet route, an IPv6 multicast route, a local-table route: none.
        let mut buf = nlmsg(
            libc::RTM_NEWROUTE,
            rtm(libc::AF_INET, 24, main, uni),
            &[1, 2, 3],
        );
        buf.extend(nlmsg(
            libc::RTM_NEWROUTE,
            rtm(libc::AF_INET6, 8, main, libc::RTN_MULTICAST),
            &[],
        ));
        buf.extend(nlmsg(
            libc::RTM_NEWROUTE,
            rtm(libc::AF_INET, 0, libc::RT_TABLE_LOCAL, uni),
            &[],
        ));
        buf.extend(nlmsg(
            libc::RTM_DELROUTE,
            rtm(libc::AF_INET6, 0, main, uni),
            &[],
        ));
        assert_eq!(added_default_routes(&buf), Families::default());
        // Then the default routes, IPv4 with an attribute that needs padding.
        buf.extend(nlmsg(
            libc::RTM_NEWROUTE,
            rtm(libc::AF_INET, 0, main, uni),
            &[9; 5],
        ));
        assert_eq!(
            added_default_routes(&buf),
            Families {
                v4: true,
                v6: false
            }
        );
        buf.extend(nlmsg(
            libc::RTM_NEWROUTE,
            rtm(libc::AF_INET6, 0, main, uni),
            &[],
        ));
        assert_eq!(added_default_routes(&buf), Families { v4: true, v6: true });
        // A truncated message ends the walk without a panic.
        assert!(!added_default_routes(&buf[..buf.len() - 3]).v6);
    }

    #[test]
    fn host_default_routes_from_proc() {
        let v4 = "Iface\tDestination\tGateway \tFlags\n\
                  eth0\t00000000\t0100000A\t0003\n\
                  eth0\t0000000A\t00000000\t0001\n";
        let v6_lo = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                     00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        let v6_eth = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                      fd000000000000000000000000000001 00000400 00000000 00000000 00000003 eth0\n";
        assert_eq!(
            default_routes(v4, v6_lo),
            Families {
                v4: true,
                v6: false
            }
        );
        assert_eq!(
            default_routes("Iface\tDestination\n", v6_eth),
            Families {
                v4: false,
                v6: true
            }
        );
        let want = Families { v4: true, v6: true };
        assert!(!Families {
            v4: true,
            v6: false
        }
        .covers(want));
        assert!(Families { v4: true, v6: true }.covers(want));
        assert!(Families::default().covers(Families::default()));
    }
}
