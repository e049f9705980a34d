//! `kiln network` and `kiln run --network NAME` through the real binary, every kiln command
//! in a network namespace the test makes (the host's is never touched): two containers on one
//! network talk over TCP by address, a container on another network cannot reach them, and
//! removing the containers and networks leaves no namespace behind. Needs root and Debian's
//! busybox-static; skipped with a message otherwise.

mod common;
use common::*;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A process holding a network namespace of its own; killed on drop.
struct NetNs(Child);

impl NetNs {
    fn new() -> NetNs {
        NetNs(
            Command::new("unshare")
                .args(["-n", "sleep", "1000"])
                .spawn()
                .expect("unshare -n"),
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kiln ARGS` in `ns`.
fn kiln_in(k: &Kiln, ns: &NetNs, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.0.id()))
        .arg(kiln_bin())
        .arg("--root")
        .arg(k.root.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_in(k: &Kiln, ns: &NetNs, args: &[&str]) -> String {
    let out = kiln_in(k, ns, args);
    assert!(
        out.status.success(),
        "kiln {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nsfs_mounts_under(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("{}/networks", dir.display())))
        .map(str::to_string)
        .collect()
}

/// Name servers (`kiln __kiln-dns`) of networks under `root`.
fn responders(root: &std::path::Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.contains("__kiln-dns") && c.contains(root.to_str().unwrap())
        })
        .count()
}

#[test]
fn network_lifecycle_and_containers_on_it() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    let id = ok_in(
        &k,
        &ns,
        &["network", "create", "--label", "app=web", "mynet"],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    ok_in(
        &k,
        &ns,
        &["network", "create", "--subnet", "10.77.0.0/24", "other"],
    );
    let dup = kiln_in(&k, &ns, &["network", "create", "mynet"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(
        stderr(&dup).contains("network with name mynet already exists"),
        "{}",
        stderr(&dup)
    );
    let bad = kiln_in(
        &k,
        &ns,
        &["network", "create", "--subnet", "10.1.0.0/40", "x"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    let ls = ok_in(&k, &ns, &["network", "ls"]);
    let mut lines = ls.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NETWORK ID"), "{ls}");
    assert!(header.contains("NAME") && header.contains("DRIVER") && header.contains("SCOPE"));
    assert_eq!(lines.count(), 2, "{ls}");
    assert_eq!(
        ok_in(
            &k,
            &ns,
            &["network", "ls", "-q", "--filter", "label=app=web"]
        )
        .trim(),
        &id.trim()[..12]
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok_in(&k, &ns, &["network", "inspect", "other"])).unwrap();
    assert_eq!(v[0]["Name"], "other");
    assert_eq!(v[0]["Driver"], "bridge");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.77.0.0/24");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.77.0.1");

    // A server on mynet, reached by address from a second container on it.
    ok_in(
        &k,
        &ns,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "mynet",
            "--network-alias",
            "database",
            "busybox",
            "sh",
            "-c",
            "while true; do echo pong | nc -l -p 8080; done",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&ok_in(&k, &ns, &["inspect", "db"])).unwrap();
    let net = &v[0]["NetworkSettings"]["Networks"]["mynet"];
    let ip = net["IPAddress"].as_str().unwrap().to_string();
    assert_eq!(ip, "172.18.0.2", "{v}");
    assert_eq!(net["Gateway"], "172.18.0.1");
    assert_eq!(net["Aliases"][0], "database");
    assert_eq!(v[0]["HostConfig"]["NetworkMode"], "mynet");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = kiln_in(
            &k,
            &ns,
            &[
                "run",
                "--rm",
                "--network",
                "mynet",
                "busybox",
                "nc",
                "-w",
                "2",
                &ip,
                "8080",
            ],
        );
        if String::from_utf8_lossy(&out.stdout).trim() == "pong" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from db: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // By name, alias and short id, through the network's name server.
    let short = &v[0]["Id"].as_str().unwrap()[..12];
    for name in ["db", "database", short] {
        let out = kiln_in(
            &k,
            &ns,
            &[
                "run",
                "--rm",
                "--network",
                "mynet",
                "busybox",
                "nc",
                "-w",
                "2",
                name,
                "8080",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "pong",
            "{name}: {}",
            stderr(&out)
        );
    }
    let out = ok_in(
        &k,
        &ns,
        &[
            "run",
            "--rm",
            "--network",
            "mynet",
            "busybox",
            "nslookup",
            "db",
        ],
    );
    assert!(out.contains(&ip), "{out}");
    assert_eq!(responders(k.root.path()), 1);
    // Not from another network, by address or by name.
    let out = kiln_in(
        &k,
        &ns,
        &[
            "run",
            "--rm",
            "--network",
            "other",
            "busybox",
            "nslookup",
            "db",
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = kiln_in(
        &k,
        &ns,
        &[
            "run",
            "--rm",
            "--network",
            "other",
            "busybox",
            "nc",
            "-w",
            "1",
            &ip,
            "8080",
        ],
    );
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "pong");
    // A third container on `other` reaches db only while connected to mynet.
    ok_in(
        &k,
        &ns,
        &[
            "run",
            "-d",
            "--name",
            "third",
            "--network",
            "other",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let reach = |name: &str| {
        let out = kiln_in(&k, &ns, &["exec", "third", "nc", "-w", "2", name, "8080"]);
        String::from_utf8_lossy(&out.stdout).trim() == "pong"
    };
    assert!(!reach(&ip), "third reaches db before connect");
    ok_in(&k, &ns, &["network", "connect", "mynet", "third"]);
    assert!(reach(&ip), "third cannot reach db by address after connect");
    assert!(reach("db"), "third cannot reach db by name after connect");
    let busy = kiln_in(&k, &ns, &["network", "connect", "mynet", "third"]);
    assert_eq!(busy.status.code(), Some(1), "{}", stderr(&busy));
    ok_in(&k, &ns, &["network", "disconnect", "mynet", "third"]);
    assert!(!reach(&ip), "third reaches db after disconnect");
    let not = kiln_in(&k, &ns, &["network", "disconnect", "mynet", "third"]);
    assert!(
        stderr(&not).contains("is not connected to network mynet"),
        "{}",
        stderr(&not)
    );
    ok_in(&k, &ns, &["rm", "-f", "third"]);

    let v: serde_json::Value =
        serde_json::from_str(&ok_in(&k, &ns, &["network", "inspect", "mynet"])).unwrap();
    let containers = v[0]["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1, "{v}");
    assert_eq!(
        containers.values().next().unwrap()["IPv4Address"],
        "172.18.0.2/16"
    );

    // In use: refused; after rm -f, its address is free and the network goes.
    let busy = kiln_in(&k, &ns, &["network", "rm", "mynet"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        stderr(&busy).contains("has active endpoints"),
        "{}",
        stderr(&busy)
    );
    ok_in(&k, &ns, &["rm", "-f", "db"]);
    // The name servers exit once their networks have no running container.
    let deadline = Instant::now() + Duration::from_secs(10);
    while responders(k.root.path()) != 0 {
        assert!(
            Instant::now() < deadline,
            "a name server outlived its containers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok_in(&k, &ns, &["network", "inspect", "mynet"])).unwrap();
    assert_eq!(v[0]["Containers"], serde_json::json!({}));
    assert_eq!(ok_in(&k, &ns, &["network", "rm", "mynet"]), "mynet\n");
    assert_eq!(
        ok_in(&k, &ns, &["network", "prune", "-f"]),
        "Deleted Networks:\nother\n"
    );
    assert_eq!(ok_in(&k, &ns, &["network", "ls", "-q"]), "");
    assert_eq!(nsfs_mounts_under(k.root.path()), Vec::<String>::new());
    let missing = kiln_in(
        &k,
        &ns,
        &["run", "--rm", "--network", "nope", "busybox", "true"],
    );
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        stderr(&missing).contains("network nope not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn kill_9_of_a_run_on_a_network_leaves_nothing_after_rm() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    ok_in(&k, &ns, &["network", "create", "mynet"]);
    let mut run = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.0.id()))
        .arg(kiln_bin())
        .arg("--root")
        .arg(k.root.path())
        .args([
            "run",
            "--name",
            "victim",
            "--network",
            "mynet",
            "busybox",
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until its namespace is up and its name server runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nsfs_mounts_under(k.root.path()).len() < 2 || responders(k.root.path()) == 0 {
        assert!(Instant::now() < deadline, "the container never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // nsenter execs kiln: this is kiln's pid.
    run.kill().unwrap();
    run.wait().unwrap();
    ok_in(&k, &ns, &["rm", "-f", "victim"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok_in(&k, &ns, &["network", "inspect", "mynet"])).unwrap();
    assert_eq!(
        v[0]["Containers"],
        serde_json::json!({}),
        "the address is free"
    );
    ok_in(&k, &ns, &["network", "rm", "mynet"]);
    assert_eq!(nsfs_mounts_under(k.root.path()), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while responders(k.root.path()) != 0 {
        assert!(
            Instant::now() < deadline,
            "the name server outlived the network"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!left.contains(k.root.path().to_str().unwrap()), "{left}");
}

#[test]
fn fifty_containers_on_one_network_all_resolve_each_other() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    ok_in(&k, &ns, &["network", "create", "big"]);
    let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    for n in &names {
        ok_in(
            &k,
            &ns,
            &[
                "run",
                "-d",
                "--name",
                n,
                "--network",
                "big",
                "busybox",
                "sleep",
                "1000",
            ],
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok_in(&k, &ns, &["network", "inspect", "big"])).unwrap();
    let mut ips: Vec<String> = v[0]["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["IPv4Address"].as_str().unwrap().to_string())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "no two containers share an address");
    // Each container resolves every other (`nslookup` prints `Name:` and the address).
    let script = format!(
        "for n in {}; do nslookup $n | grep -q ^Name: || echo MISSING $n; done; echo END",
        names.join(" ")
    );
    for n in &names {
        let out = ok_in(&k, &ns, &["exec", n, "sh", "-c", &script]);
        assert_eq!(out, "END\n", "{n}: {out}");
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    ok_in(&k, &ns, &rm);
    ok_in(&k, &ns, &["network", "rm", "big"]);
    assert_eq!(nsfs_mounts_under(k.root.path()), Vec::<String>::new());
}

#[test]
fn a_detached_containers_shim_starts_the_networks_name_server() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    ok_in(&k, &ns, &["network", "create", "solo"]);
    // The network's first running container is detached: its shim (kiln-shim, beside kiln
    // in the build) starts the name server.
    ok_in(
        &k,
        &ns,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "solo",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(responders(k.root.path()), 1);
    let out = ok_in(&k, &ns, &["exec", "web", "nslookup", "web"]);
    assert!(out.contains("Name:"), "{out}");
    ok_in(&k, &ns, &["rm", "-f", "web"]);
    ok_in(&k, &ns, &["network", "rm", "solo"]);
}

/// `ip ARGS` in the namespace of `ns`.
fn ip_in(ns: &NetNs, args: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.0.id()))
        .arg("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
}

/// pasta processes attached to a namespace under `root`.
fn pastas(root: &std::path::Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.contains("--netns") && c.contains(root.to_str().unwrap())
        })
        .count()
}

#[test]
fn outbound_from_a_network_but_not_from_an_internal_one() {
    if !can_run(&["unshare", "nsenter", "ip", "pasta", "iptables"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    // The "host" (where kiln runs) and an "upstream" it routes to over a veth, with a web
    // server on 10.99.0.1.
    let host = NetNs::new();
    let upstream = NetNs::new();
    let up_pid = upstream.0.id().to_string();
    ip_in(&host, &["link", "set", "lo", "up"]);
    ip_in(
        &host,
        &[
            "link", "add", "up0", "type", "veth", "peer", "name", "x0", "netns", &up_pid,
        ],
    );
    ip_in(&host, &["addr", "add", "10.99.0.2/24", "dev", "up0"]);
    ip_in(&host, &["link", "set", "up0", "up"]);
    ip_in(&host, &["route", "add", "default", "via", "10.99.0.1"]);
    ip_in(&upstream, &["addr", "add", "10.99.0.1/24", "dev", "x0"]);
    ip_in(&upstream, &["link", "set", "x0", "up"]);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hello"), "from upstream\n").unwrap();
    let httpd = NetNs(
        Command::new("nsenter")
            .arg(format!("--net=/proc/{up_pid}/ns/net"))
            .args(["busybox", "httpd", "-f", "-p", "10.99.0.1:8080", "-h"])
            .arg(www.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // busybox-static's wget crashes in a container (with `--network none` too): a request
    // by nc, which keeps its side open until the server closes (see kiln-network's
    // outbound.rs for what pasta does with a client that half-closes first).
    let fetch = |net: &str| {
        kiln_in(
            &k,
            &host,
            &[
                "run",
                "--rm",
                "--network",
                net,
                "busybox",
                "sh",
                "-c",
                "(printf 'GET /hello HTTP/1.0\\r\\n\\r\\n'; sleep 3) | nc 10.99.0.1 8080",
            ],
        )
    };
    let body = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    ok_in(&k, &host, &["network", "create", "mynet"]);
    // The server may still be starting: a few tries.
    let mut out = fetch("mynet");
    for _ in 0..20 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = fetch("mynet");
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(body(&out), "from upstream");
    // Again, with the network's pasta running already.
    assert_eq!(body(&fetch("mynet")), "from upstream");
    assert_eq!(pastas(k.root.path()), 1);

    ok_in(&k, &host, &["network", "create", "--internal", "closed"]);
    let out = fetch("closed");
    assert!(!out.status.success(), "an internal network reached out");
    assert!(
        stderr(&out).contains("Network is unreachable"),
        "{}",
        stderr(&out)
    );

    ok_in(&k, &host, &["network", "rm", "mynet", "closed"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pastas(k.root.path()) != 0 {
        assert!(Instant::now() < deadline, "pasta outlived its network");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(httpd);
}
