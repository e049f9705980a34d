//! `--network default` (pasta) and `none` against a made-up host network: need root, pasta
//! (Debian's passt) and busybox; print "skipped: …" otherwise.
//!
//! Each test runs on a thread of its own that first moves into a private network namespace
//! (`unshare(CLONE_NEWNET)` affects only the calling thread, and the sandbox helper it
//! spawns inherits it) and builds a "host" network there: a veth pair with 10.123.0.2/24
//! and 10.123.1.1/24 and fd12::2/64, default routes via 10.123.0.1 and fd12::1. pasta
//! copies the first address and the routes into the sandbox, so a server on the host's
//! *other* address, 10.123.1.1, is reachable from the sandbox only through pasta, as any
//! outside server would be. Nothing depends on, or touches, the real host's network.

use kiln_executor::{Error, Network, Output, RootFs, RunSpec};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

/// Root, pasta and busybox are there (else says why not).
fn can_run() -> bool {
    if !common::is_root() {
        return false;
    }
    kiln_testutil::require_tools(&["pasta", "busybox"])
}

struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn new() -> Rootfs {
        let dir = tempfile::Builder::new()
            .prefix("kiln-net-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        let lower = dir.path().join("lower");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::copy(common::which("busybox").unwrap(), lower.join("bin/busybox")).unwrap();
        for applet in ["sh", "echo", "ip", "nc", "cat", "grep"] {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(lower.join("etc/group"), "root:x:0:\n").unwrap();
        Rootfs { dir }
    }

    /// `sh -c script` on a fresh upper dir.
    fn spec(&self, network: Network, script: &str) -> RunSpec {
        let run = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        for d in ["upper", "work"] {
            std::fs::create_dir(run.join(d)).unwrap();
        }
        RunSpec {
            rootfs: RootFs {
                lowers: vec![self.dir.path().join("lower")],
                upper: run.join("upper"),
                work: run.join("work"),
            },
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            hostname: "sandbox".into(),
            network,
            mounts: vec![],
            extra: Default::default(),
        }
    }
}

struct Captured {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `spec` to completion on a runtime of the calling thread (so that the helper is
/// spawned, and inherits the network namespace, from this thread).
fn run(spec: &RunSpec) -> Result<Captured, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let executor = common::executor();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let code = executor.run(spec, Output::Capture(tx)).await?;
        let (stdout, stderr) = common::drain(&mut rx);
        Ok(Captured {
            code,
            stdout,
            stderr,
        })
    })
}

/// Runs `f` on a new thread in a private network namespace with only `lo` (down).
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn busybox_ip(args: &str) {
    let out = Command::new("busybox")
        .arg("ip")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the made-up host network (see the module docs) in the calling thread's namespace.
fn fake_host_network() {
    busybox_ip("link set lo up");
    // No duplicate address detection on the new links: fd12::2 is usable at once.
    std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").unwrap();
    // busybox ignores `peer name`: the kernel names the peer (veth0 in a new namespace).
    busybox_ip("link add kv0 type veth peer name kv1");
    let links = Command::new("busybox")
        .args(["ip", "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let peer = links
        .lines()
        .find_map(|l| l.split(": ").nth(1)?.strip_suffix("@kv0"))
        .unwrap_or_else(|| panic!("no veth peer in {links}"));
    busybox_ip("link set kv0 up");
    busybox_ip(&format!("link set {peer} up"));
    busybox_ip("addr add 10.123.0.2/24 dev kv0");
    busybox_ip("addr add 10.123.1.1/24 dev kv0");
    busybox_ip("route add default via 10.123.0.1");
    busybox_ip("-6 addr add fd12::2/64 dev kv0");
    busybox_ip("-6 route add default via fd12::1 dev kv0");
}

/// Processes other than this one in the calling thread's network namespace.
fn others_in_my_netns() -> Vec<u32> {
    let mine = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::metadata(Path::new("/proc").join(pid.to_string()).join("ns/net"))
                .is_ok_and(|m| m.ino() == mine)
        })
        .collect()
}

/// Accepts one connection on `listener` and returns what it sent, or `None` when nothing
/// connected within 10 s.
fn accept_one(listener: TcpListener) -> std::thread::JoinHandle<Option<String>> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut got = String::new();
                    conn.read_to_string(&mut got).unwrap();
                    return Some(got);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    })
}

#[test]
fn default_network_reaches_an_outside_server_at_once() {
    if !can_run() {
        return;
    }
    let fs = Rootfs::new();
    in_private_netns(move || {
        fake_host_network();
        let listener = TcpListener::bind("10.123.1.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = accept_one(listener);
        // The connection is the sandbox's first act: pasta must have configured the
        // namespace before the command started (no retry).
        let spec = fs.spec(
            Network::Default,
            &format!(
                "echo hello from the sandbox | nc 10.123.1.1 {port} && echo sent; \
                 ip route | grep default; ip -6 route | grep -c '^default'; \
                 ip -o -4 addr show kv0 | grep -o '10.123.0.2/24'"
            ),
        );
        let c = run(&spec).unwrap();
        assert_eq!(c.code, 0, "stdout: {}\nstderr: {}", c.stdout, c.stderr);
        assert_eq!(
            c.stdout, "sent\ndefault via 10.123.0.1 dev kv0 \n1\n10.123.0.2/24\n",
            "stderr: {}",
            c.stderr
        );
        assert_eq!(
            server.join().unwrap().as_deref(),
            Some("hello from the sandbox\n")
        );
        // pasta is told to stop and not waited for; it is gone soon all the same.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !others_in_my_netns().is_empty() {
            assert!(
                Instant::now() < deadline,
                "still in the host namespace: {:?}",
                others_in_my_netns()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn network_none_cannot_reach_it() {
    if !can_run() {
        return;
    }
    let fs = Rootfs::new();
    in_private_netns(move || {
        fake_host_network();
        let listener = TcpListener::bind("10.123.1.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spec = fs.spec(
            Network::None,
            &format!("ip -o link | cut -d: -f2; echo x | nc 10.123.1.1 {port} || echo refused"),
        );
        let c = run(&spec).unwrap();
        assert_eq!(c.code, 0, "stderr: {}", c.stderr);
        assert_eq!(c.stdout, " lo\nrefused\n", "stderr: {}", c.stderr);
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    });
}

#[test]
fn pasta_failure_is_a_setup_error() {
    if !can_run() {
        return;
    }
    let fs = Rootfs::new();
    // A host without a default route: pasta finds no interface to copy and exits.
    let result = in_private_netns(move || {
        busybox_ip("link set lo up");
        run(&fs.spec(Network::Default, "echo ran")).map(|c| c.stdout)
    });
    match result {
        Err(Error::Setup(msg)) => {
            assert!(msg.starts_with("network default: pasta exited: "), "{msg}");
            assert!(msg.contains("interface"), "pasta's own words: {msg}");
            assert!(!msg.contains("syslog"), "{msg}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[test]
fn host_loopback_services_are_not_reachable_through_the_gateway() {
    if !can_run() {
        return;
    }
    let fs = Rootfs::new();
    in_private_netns(move || {
        fake_host_network();
        // A service the "host" binds to its loopback only, and one on an outside address.
        let inside = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = inside.local_addr().unwrap().port();
        let server = accept_one(inside);
        let spec = fs.spec(
            Network::Default,
            &format!(
                "echo via-gateway | nc -w 2 10.123.0.1 {port} && echo reached; \
                 echo via-loopback | nc -w 2 127.0.0.1 {port} && echo reached; echo done"
            ),
        );
        let c = run(&spec).unwrap();
        assert_eq!(c.stdout, "done\n", "stderr: {}", c.stderr);
        assert_eq!(
            server.join().unwrap(),
            None,
            "the host's loopback was reached"
        );
    });
}
