//! Outbound access of a network that is not `--internal`: `pasta` (Debian's `passt`)
//! attached to the network's namespace, and NAT inside that namespace only.
//!
//! With the network's namespace (made by its first container, see `netns.rs`), kiln turns
//! forwarding on there (`net.ipv4.ip_forward`, a sysctl of that namespace), adds
//! `iptables -t nat -A POSTROUTING -s SUBNET ! -o br0 -j MASQUERADE` there, and starts
//! `pasta --config-net --netns ROOT/networks/v1/netns/<id> --runas 0 -t none -u none -T none
//! -U none --no-map-gw -q -P ROOT/networks/v1/pasta/<id>.pid`. pasta copies the host's
//! address, routes and MTU onto a tap device in that namespace (its default route is the
//! bridge's way out) and turns the namespace's TCP, UDP and ICMP echo into sockets of the
//! host's namespace: the host's interfaces, routes and firewall are untouched. The
//! masquerade gives pasta one source address (the one it configured) for every container:
//! pasta answers the address it saw last, so without it the replies of one container's
//! connection could go to another's address. pasta daemonises once it configured the
//! namespace, so a container started after [`ensure`] returns has its way out.
//!
//! pasta lives as long as the network's namespace: `network rm` and
//! [`crate::Networks::reconcile`] stop it by the pid in its pid file (checked against its
//! command line, which names the namespace, so a reused pid is never signalled). A pasta
//! that died (killed by hand) is started again by the next container of the network. A host
//! without a default route has nowhere to forward to: pasta refuses to start there, and the
//! network simply has no outbound access, as such a host's own programs.
//!
//! **A flaw of Debian 12's pasta (0.0~git20230309), measured, not kiln's.** A connection the
//! namespace's side half-closes before the outside's answer arrives (`nc HOST PORT
//! </dev/null` sends its FIN at once) gets the answer's bytes again and again at advancing
//! sequence numbers and never the outside's FIN (`ss` in the client's namespace:
//! `FIN-WAIT-2`, `bytes_received` a multiple of the answer; the client hangs). Measured with a
//! script (no kiln): 4 of 10 and 7 of 10 such connections hung, from the network's
//! namespace itself and from a container behind the bridge alike, and kiln's private
//! `--network pasta`-style namespace (`--network default` today) is pasta's own namespace,
//! so it has the same flaw; 10 of 10 closed cleanly where the client keeps its side open
//! until the server closes (HTTP clients do). So neither the bridge, the veths' checksum
//! offload nor the NAT are the cause (the first session's guesses). Also of that build:
//! `--debug`/`--trace` make it segfault in its logging at the first TCP connection, and a
//! connection to a port nobody listens on yet is reset (the first session's "first SYN
//! unanswered" was most likely its server not listening yet: with the server waited for, the
//! first SYN was answered every time).

use crate::store::{io_err, Network, Networks};
use crate::{Error, Result};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the pid file of network `id`'s pasta is.
pub(crate) fn pid_path(store: &Networks, id: &str) -> PathBuf {
    store.dir().join("pasta").join(format!("{id}.pid"))
}

/// The pid of network `id`'s pasta if it runs (its command line names the namespace).
fn running(store: &Networks, id: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_path(store, id))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ns = store.netns_path(id);
    let ns = ns.to_string_lossy();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == ns.as_bytes())
        .then_some(pid)
}

/// Stops network `id`'s pasta, if it runs, and removes its pid file.
pub(crate) fn stop(store: &Networks, id: &str) -> Result<()> {
    if let Some(pid) = running(store, id) {
        // SAFETY: plain system call on a pid checked above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let path = pid_path(store, id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
        _ => Ok(()),
    }
}

/// Stops every pasta whose network `keep` says is gone (a crash between a network's
/// namespace's removal and its pasta's).
pub(crate) fn reconcile(store: &Networks, keep: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(rd) = fs::read_dir(store.dir().join("pasta")) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".pid") {
            if !keep(id) {
                stop(store, id)?;
            }
        }
    }
    Ok(())
}

/// The calling thread's namespace (the host's, where pasta will run) has a default route.
fn host_has_default_route() -> bool {
    has_default_route(
        &fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default(),
        &fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap_or_default(),
    )
}

/// `/proc/net/route` or `/proc/net/ipv6_route` (as given) has a default route (IPv6's
/// `unreachable` one on `lo` is none).
fn has_default_route(v4: &str, v6: &str) -> bool {
    v4.lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
        || v6.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some("00000000000000000000000000000000")
                && f.next() == Some("00")
                && f.nth(7).is_some_and(|dev| dev != "lo")
        })
}

/// A program from `PATH` (or the sbin directories, for a caller whose `PATH` lacks them).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn outbound_err(net: &Network, what: String) -> Error {
    Error::Outbound(net.name.clone(), what)
}

/// Runs `cmd` in the namespace at `ns` (entered between fork and exec) and returns its
/// stderr's first line as the error.
fn run_in(ns: &Path, mut cmd: Command, net: &Network) -> Result<()> {
    let f = fs::File::open(ns).map_err(io_err(ns))?;
    let fd = f.as_raw_fd();
    // SAFETY: only a system call between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| outbound_err(net, format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(outbound_err(
            net,
            format!("{cmd:?}: {}", msg.lines().next().unwrap_or("failed")),
        ));
    }
    Ok(())
}

/// Gives `net` its way out unless it is internal or its pasta runs (see the module docs).
/// Called with the store lock held, after the network's namespace exists.
pub(crate) fn ensure(store: &Networks, net: &Network) -> Result<()> {
    if net.internal || running(store, &net.id).is_some() || !host_has_default_route() {
        return Ok(());
    }
    let pasta = find("pasta").ok_or_else(|| {
        outbound_err(
            net,
            "pasta is not installed (Debian package passt)".to_string(),
        )
    })?;
    let iptables = find("iptables").ok_or_else(|| {
        outbound_err(
            net,
            "iptables is not installed (Debian package iptables)".to_string(),
        )
    })?;
    let ns = store.netns_path(&net.id);
    // Forwarding, a sysctl of the network's namespace: written from a thread inside it.
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            crate::netns::enter(&ns)?;
            fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| outbound_err(net, format!("turning forwarding on: {e}")))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    let subnet = net.subnet.to_string();
    let rule = |op: &str| {
        let mut c = Command::new(&iptables);
        c.args(["-w", "-t", "nat", op, "POSTROUTING", "-s", &subnet])
            .args(["!", "-o", crate::BRIDGE, "-j", "MASQUERADE"]);
        c
    };
    if run_in(&ns, rule("-C"), net).is_err() {
        run_in(&ns, rule("-A"), net)?;
    }
    let pid = pid_path(store, &net.id);
    if let Some(dir) = pid.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    // pasta's errors go to a file: a pipe could be kept open by the daemon it becomes.
    let err_path = pid.with_extension("err");
    let err = fs::File::create(&err_path).map_err(io_err(&err_path))?;
    let status = Command::new(&pasta)
        .args(["--config-net", "--netns"])
        .arg(&ns)
        .args(["--runas", "0", "-t", "none", "-u", "none", "-T", "none"])
        .args(["-U", "none", "--no-map-gw", "-q", "-P"])
        .arg(&pid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .map_err(|e| outbound_err(net, format!("starting pasta: {e}")))?;
    let msg = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    if !status.success() {
        let last = msg.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(outbound_err(net, format!("pasta failed: {last}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_default_route;

    const V4_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn a_default_route_of_either_family_counts() {
        let v4_default =
            format!("{V4_HEADER}eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n");
        let v4_subnet =
            format!("{V4_HEADER}eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        let z = "00000000000000000000000000000000";
        let v6_default = format!("{z} 00 {z} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n");
        let v6_unreachable = format!("{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200 lo\n");
        assert!(has_default_route(&v4_default, ""));
        assert!(!has_default_route(&v4_subnet, ""));
        assert!(has_default_route(&v4_subnet, &v6_default));
        assert!(!has_default_route(V4_HEADER, &v6_unreachable));
        assert!(!has_default_route("", ""));
    }
}
