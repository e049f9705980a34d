//! `kiln run`'s docker flags beyond the basics, through the real binary: what the process in
//! the container sees (`--env-file`, `--read-only`, `--cap-add`/`--cap-drop`, `--ulimit`,
//! `--security-opt`, relative `-v ./dir:/x`, `--init`, `--mount`), what is stored
//! (`--label`), published ports picked by kiln (`-P`, `-p CTR_PORT`, ranges; these need
//! pasta too), `--platform`, `ps --filter`, `stats --format` and docker's refusals. Needs root and Debian's busybox-static (skipped with a message otherwise,
//! failing under KILN_TEST_STRICT=1).

mod common;
use common::*;

/// A root with the busybox base whose containers are removed when the test ends.
struct Root(Kiln);

impl Root {
    fn new() -> Option<Root> {
        if !can_run(&[]) {
            return None;
        }
        let k = Kiln::new();
        k.seed_local_base();
        Some(Root(k))
    }

    /// `kiln run --rm ARGS… busybox sh -c SCRIPT`: its stdout (asserting success).
    fn sh(&self, args: &[&str], script: &str) -> String {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "sh", "-c", script]);
        self.0.ok(&all)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-aq"]);
        for id in stdout(&ids).split_whitespace() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}

/// Asserts `kiln ARGS` fails with `code` and `message` on stderr.
fn refused(k: &Kiln, args: &[&str], code: i32, message: &str) {
    let out = k.run(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(message),
        "{args:?}: expected {message:?} in:\n{}",
        stderr(&out)
    );
}

#[test]
fn env_file_lines_and_env_wins() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.env",
        "# a comment\n\n  A=from file\nB=b=c\nFROM_CALLER\nUNSET_IN_CALLER\nC=file\n",
    );
    write(dir.path(), "b.env", "D=second\r\n");
    let a = dir.path().join("a.env");
    let b = dir.path().join("b.env");
    let out =
        r.0.cmd()
            .env("FROM_CALLER", "caller's")
            .env_remove("UNSET_IN_CALLER")
            .args(["run", "--rm", "--env-file"])
            .arg(&a)
            .arg("--env-file")
            .arg(&b)
            .args(["-e", "C=flag", "busybox", "sh", "-c"])
            .arg("echo \"$A|$B|$FROM_CALLER|${UNSET_IN_CALLER-unset}|$C|$D\"")
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "from file|b=c|caller's|unset|flag|second"
    );

    write(dir.path(), "bad.env", "OK=1\nA B=1\n");
    let bad = dir.path().join("bad.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            bad.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        "poorly formatted environment: variable 'A B' contains whitespaces",
    );
    write(dir.path(), "noname.env", "=1\n");
    let noname = dir.path().join("noname.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            noname.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        "poorly formatted environment: no variable name on line '=1'",
    );
    let missing = dir.path().join("missing.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            missing.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        &format!("open {}: no such file or directory", missing.display()),
    );
}

#[test]
fn labels_are_stored_in_the_config() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "labels", "# c\nfrom.file=1\nbare\nboth=file\n");
    let file = dir.path().join("labels");
    r.0.ok(&[
        "run",
        "--name",
        "lab",
        "--label",
        "a=b",
        "-l",
        "both=flag",
        "--label-file",
        file.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    let id = stdout(&r.0.run(&["ps", "-aq", "--no-trunc"]))
        .trim()
        .to_string();
    let config = std::fs::read_to_string(
        r.0.root
            .path()
            .join("containers")
            .join(&id)
            .join("config.json"),
    )
    .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["labels"],
        serde_json::json!({"a": "b", "bare": "", "both": "flag", "from.file": "1"})
    );
}

#[test]
fn relative_bind_sources_are_relative_to_the_cwd() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write(&dir.path().join("data"), "f", "here\n");
    let y = format!(
        "../{}/./data:/y:ro",
        dir.path().file_name().unwrap().to_str().unwrap()
    );
    let out =
        r.0.cmd()
            .current_dir(dir.path())
            .args([
                "run",
                "--rm",
                "-v",
                "./data:/x",
                "-v",
                y.as_str(),
                "busybox",
                "sh",
                "-c",
                "cat /x/f /y/f",
            ])
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "here\nhere\n");
}

#[test]
fn read_only_root_keeps_mounts_writable() {
    let Some(r) = Root::new() else { return };
    let vol = tempfile::tempdir().unwrap();
    let bind = format!("{}:/data", vol.path().display());
    let out = r.sh(
        &[
            "--read-only",
            "-v",
            &bind,
            "-v",
            "named:/vol",
            "--tmpfs",
            "/run/t",
        ],
        "touch /x 2>&1; touch /tmp/x 2>&1; \
         touch /data/ok /vol/ok /run/t/ok /dev/shm/ok && echo mounts writable; \
         test -r /proc/self/status && echo proc",
    );
    assert_eq!(
        out,
        "touch: /x: Read-only file system\n\
         touch: /tmp/x: Read-only file system\n\
         mounts writable\nproc\n"
    );
    assert!(vol.path().join("ok").exists());
    // A --tmpfs on /tmp makes it writable, as with docker.
    let out = r.sh(
        &["--read-only", "--tmpfs", "/tmp"],
        "touch /tmp/x && echo ok",
    );
    assert_eq!(out, "ok\n");
    // Without --read-only the root is writable.
    assert_eq!(r.sh(&[], "touch /x && echo ok"), "ok\n");
}

/// The `CapEff` line of `/proc/self/status` in a container run with `args`.
fn cap_eff(r: &Root, args: &[&str]) -> String {
    r.sh(args, "grep CapEff /proc/self/status")
        .trim()
        .trim_start_matches("CapEff:")
        .trim()
        .to_string()
}

#[test]
fn cap_add_and_cap_drop() {
    let Some(r) = Root::new() else { return };
    // docker's default set.
    assert_eq!(cap_eff(&r, &[]), "00000000a80425fb");
    // CAP_NET_ADMIN is 12; names without CAP_ and in any case.
    assert_eq!(
        cap_eff(&r, &["--cap-drop", "ALL", "--cap-add", "net_admin"]),
        "0000000000001000"
    );
    // CAP_CHOWN (0) dropped, CAP_SYS_ADMIN (21) added.
    assert_eq!(
        cap_eff(&r, &["--cap-drop", "CAP_CHOWN", "--cap-add", "Sys_Admin"]),
        "00000000a82425fa"
    );
    // --cap-add ALL minus a dropped one: everything the kernel has but CAP_KILL (5).
    let all = cap_eff(&r, &["--cap-add", "all", "--cap-drop", "kill"]);
    let all = u64::from_str_radix(&all, 16).unwrap();
    assert_eq!(all & (1 << 5), 0);
    assert_eq!(all & (1 << 21), 1 << 21);
    // What the caps mean: chown is refused without CAP_CHOWN.
    let out = r.0.run(&[
        "run",
        "--rm",
        "--cap-drop",
        "chown",
        "busybox",
        "sh",
        "-c",
        "touch /f && chown 1 /f",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    refused(
        &r.0,
        &["run", "--cap-add", "foo", "busybox", "true"],
        2,
        "invalid CapAdd: unknown capability: \"CAP_FOO\"",
    );
    refused(
        &r.0,
        &["run", "--cap-drop", "cap_nope", "busybox", "true"],
        2,
        "invalid CapDrop: unknown capability: \"CAP_NOPE\"",
    );
}

#[test]
fn exec_keeps_the_containers_capabilities() {
    let Some(r) = Root::new() else { return };
    r.0.ok(&[
        "run",
        "-d",
        "--name",
        "caps",
        "--cap-drop",
        "ALL",
        "--ulimit",
        "nofile=512",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.0.ok(&[
        "exec",
        "caps",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; ulimit -n",
    ]);
    assert_eq!(out, "CapEff:\t0000000000000000\n512\n");
}

#[test]
fn security_opts() {
    let Some(r) = Root::new() else { return };
    let status = |args: &[&str]| r.sh(args, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status");
    assert_eq!(status(&[]), "NoNewPrivs:\t1\nSeccomp:\t2\n");
    assert_eq!(
        status(&["--security-opt", "no-new-privileges"]),
        "NoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    assert_eq!(
        status(&["--security-opt", "no-new-privileges=false"]),
        "NoNewPrivs:\t0\nSeccomp:\t2\n"
    );
    assert_eq!(
        status(&["--security-opt", "seccomp=unconfined"]),
        "NoNewPrivs:\t1\nSeccomp:\t0\n"
    );
    // Also for a user other than root (the filter goes in before setuid).
    assert_eq!(
        status(&["-u", "65534", "--security-opt", "no-new-privileges=false"]),
        "NoNewPrivs:\t0\nSeccomp:\t2\n"
    );
    // Still confined by seccomp without no_new_privs: unshare is refused.
    let out = r.0.run(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=false",
        "busybox",
        "unshare",
        "-U",
        "true",
    ]);
    assert_ne!(out.status.code(), Some(0));
    refused(
        &r.0,
        &["run", "--security-opt", "foo", "busybox", "true"],
        2,
        "Invalid --security-opt: \"foo\"",
    );
    refused(
        &r.0,
        &["run", "--security-opt", "foo=bar", "busybox", "true"],
        2,
        "invalid --security-opt 2: \"foo=bar\"",
    );
    refused(
        &r.0,
        &[
            "run",
            "--security-opt",
            "no-new-privileges=maybe",
            "busybox",
            "true",
        ],
        2,
        "invalid --security-opt 2: \"no-new-privileges=maybe\"",
    );
}

#[test]
fn ulimits_are_set_before_the_command() {
    let Some(r) = Root::new() else { return };
    let out = r.sh(
        &[
            "--ulimit",
            "nofile=1024:2048",
            "--ulimit",
            "nproc=100",
            "--ulimit",
            "core=-1",
        ],
        "ulimit -Sn; ulimit -Hn; ulimit -u; ulimit -c",
    );
    assert_eq!(out, "1024\n2048\n100\nunlimited\n");
    refused(
        &r.0,
        &["run", "--ulimit", "nofile=2048:1024", "busybox", "true"],
        2,
        "invalid argument \"nofile=2048:1024\" for \"--ulimit\" flag: ulimit soft limit must be less than or equal to hard limit: 2048 > 1024",
    );
    refused(
        &r.0,
        &["run", "--ulimit", "files=1", "busybox", "true"],
        2,
        "invalid argument \"files=1\" for \"--ulimit\" flag: invalid ulimit type: files",
    );
}

#[test]
fn flags_reach_an_external_oci_runtime() {
    if !can_run(&["runc"]) {
        return;
    }
    let Some(r) = Root::new() else { return };
    let runc = which("runc").unwrap();
    let out = r.sh(
        &[
            "--runtime",
            runc.to_str().unwrap(),
            "--read-only",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "kill",
            "--ulimit",
            "nofile=100:200",
            "--security-opt",
            "seccomp=unconfined",
        ],
        "touch /x 2>&1; grep -E '^(CapEff|Seccomp):' /proc/self/status; ulimit -Sn; ulimit -Hn",
    );
    assert_eq!(
        out,
        "touch: /x: Read-only file system\nCapEff:\t0000000000000020\nSeccomp:\t0\n100\n200\n"
    );
}

#[test]
fn stop_signal_and_stop_timeout_are_used_by_stop() {
    let Some(r) = Root::new() else { return };
    // The command ends on USR1 only: `stop` sends it.
    r.0.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got USR1; exit 3' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !r.0.ok(&["logs", "sig"]).contains("ready") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let start = std::time::Instant::now();
    r.0.ok(&["stop", "sig"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(r.0.ok(&["wait", "sig"]), "3\n");
    assert_eq!(r.0.ok(&["logs", "sig"]), "ready\ngot USR1\n");

    // A command that ignores SIGTERM is killed after --stop-timeout, not 10 s.
    r.0.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    // Not before the trap is set (a loaded machine may not have run it yet).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !r.0.ok(&["logs", "slow"]).contains("ready") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let start = std::time::Instant::now();
    r.0.ok(&["stop", "slow"]);
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert_eq!(r.0.ok(&["wait", "slow"]), "137\n");

    refused(
        &r.0,
        &["run", "--stop-signal", "NOPE", "busybox", "true"],
        2,
        "invalid signal: NOPE",
    );
}

/// `kiln inspect NAME` as JSON (the first element).
fn inspect(k: &Kiln, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&k.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

/// A root like [`Root::new`] that can publish ports (pasta), with the image `web`: the
/// busybox base with `EXPOSE 8080 9090/udp`.
fn with_ports() -> Option<Root> {
    if !can_run(&["pasta"]) {
        return None;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let tar = k.root.path().join("web.tar");
    busybox_rootfs_tar(&tar);
    k.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "EXPOSE 8080 9090/udp",
        tar.to_str().unwrap(),
        "web",
    ]);
    Some(Root(k))
}

/// A server in the container that answers `hello` on each of `ports`.
fn hello_on(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("(while true; do echo hello | nc -l -p {p}; done) &"))
        .collect::<String>()
        + " wait"
}

/// What the server behind `127.0.0.1:port` says (retried until it answers).
fn hello_from(port: u16) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                return got;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `kiln port NAME` lines as (container port, host address, host port).
fn ports_of(k: &Kiln, name: &str) -> Vec<(String, String, u16)> {
    k.ok(&["port", name])
        .lines()
        .map(|l| {
            let (ctr, host) = l.split_once(" -> ").unwrap();
            let (ip, port) = host.rsplit_once(':').unwrap();
            (ctr.to_string(), ip.to_string(), port.parse().unwrap())
        })
        .collect()
}

/// The PORTS cell of `kiln ps` for the only running container.
fn ps_ports(k: &Kiln) -> String {
    let ps = k.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    let (ports, names) = (header.find("PORTS").unwrap(), header.find("NAMES").unwrap());
    let row = ps.lines().nth(1).expect("a row");
    row[ports..names].trim().to_string()
}

#[test]
fn publish_all_gives_every_exposed_port_a_free_host_port() {
    let Some(r) = with_ports() else { return };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "all",
        "-P",
        "--expose",
        "7070",
        "web",
        "sh",
        "-c",
        &hello_on(&[8080, 7070]),
    ]);
    let ports = ports_of(k, "all");
    let ctrs: Vec<&str> = ports.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(ctrs, ["8080/tcp", "9090/udp", "7070/tcp"], "{ports:?}");
    for (ctr, ip, port) in &ports {
        assert_eq!(ip, "0.0.0.0", "{ctr}");
        assert!(*port > 1024, "{ctr} got {port}");
        if ctr.ends_with("/tcp") {
            assert_eq!(hello_from(*port), "hello\n", "{ctr}");
        }
    }
    let http = ports[0].2;
    assert!(
        ps_ports(k).contains(&format!("0.0.0.0:{http}->8080/tcp")),
        "{}",
        ps_ports(k)
    );
    let v = inspect(k, "all");
    assert_eq!(v["HostConfig"]["PublishAllPorts"], true);
    assert_eq!(v["HostConfig"]["PortBindings"], serde_json::json!({}));
    assert_eq!(
        v["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"],
        http.to_string()
    );
    assert!(v["Config"]["ExposedPorts"]["7070/tcp"].is_object(), "{v}");
    k.ok(&["rm", "-f", "all"]);
    // Exposed and not published: listed without a host side, as docker's ps.
    k.ok(&["run", "-d", "--network", "default", "web", "sleep", "100"]);
    assert_eq!(ps_ports(k), "8080/tcp, 9090/udp");
}

#[test]
fn publish_without_a_host_port_or_with_ranges() {
    let Some(r) = with_ports() else { return };
    let k = &r.0;
    let base = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .min(60000);
    let same = format!("127.0.0.1:{base}-{}:{base}-{}", base + 1, base + 1);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "some",
        "-p",
        "8080",
        "-p",
        "127.0.0.1::8081",
        "-p",
        &same,
        "busybox",
        "sh",
        "-c",
        &hello_on(&[8080, 8081]),
    ]);
    let ports = ports_of(k, "some");
    assert_eq!(ports.len(), 4, "{ports:?}");
    let find = |ctr: &str| ports.iter().find(|p| p.0 == ctr).unwrap().clone();
    let (_, ip, any) = find("8080/tcp");
    assert_eq!(ip, "0.0.0.0");
    assert_eq!(hello_from(any), "hello\n");
    let (_, ip, local) = find("8081/tcp");
    assert_eq!(ip, "127.0.0.1");
    assert_eq!(hello_from(local), "hello\n");
    assert_eq!(find(&format!("{base}/tcp")).2, base);
    assert_eq!(
        k.ok(&["port", "some", "8081"]),
        format!("127.0.0.1:{local}\n")
    );
    // docker's rendering: same-port ranges collapse and come first.
    assert_eq!(
        ps_ports(k),
        format!(
            "127.0.0.1:{base}-{}->{base}-{}/tcp, 0.0.0.0:{any}->8080/tcp, \
             127.0.0.1:{local}->8081/tcp",
            base + 1,
            base + 1
        )
    );
    let v = inspect(k, "some");
    assert_eq!(
        v["HostConfig"]["PortBindings"]["8081/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": ""}])
    );
    k.ok(&["rm", "-f", "some"]);

    // A host range for one container port: a free port of the range.
    let range = format!("127.0.0.1:{base}-{}:8080", base + 9);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "ranged",
        "-p",
        &range,
        "busybox",
        "sh",
        "-c",
        &hello_on(&[8080]),
    ]);
    let (_, _, got) = ports_of(k, "ranged")[0].clone();
    assert!((base..=base + 9).contains(&got), "{got} not in {range}");
    assert_eq!(hello_from(got), "hello\n");
    assert_eq!(
        inspect(k, "ranged")["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"],
        format!("{base}-{}", base + 9)
    );
}

#[test]
fn init_reaps_orphans_and_forwards_signals() {
    let Some(r) = Root::new() else { return };
    // The orphaned `sleep 0` is reparented to pid 1, which reaps it: no zombie.
    let ps = r.sh(&["--init"], "(sleep 0 &); sleep 1; ps -o stat,comm");
    assert!(!ps.lines().any(|l| l.trim_start().starts_with('Z')), "{ps}");
    r.0.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "trapper",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !r.0.ok(&["logs", "trapper"]).contains("ready") {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    r.0.ok(&["kill", "-s", "TERM", "trapper"]);
    assert_eq!(r.0.ok(&["wait", "trapper"]), "3\n");
    assert_eq!(r.0.ok(&["logs", "trapper"]), "ready\ngot TERM\n");
    assert_eq!(inspect(&r.0, "trapper")["HostConfig"]["Init"], true);
    // A command a signal ends: 128+N, as tini reports it.
    r.0.ok(&[
        "run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "100",
    ]);
    r.0.ok(&["kill", "-s", "TERM", "sleeper"]);
    assert_eq!(r.0.ok(&["wait", "sleeper"]), "143\n");
    r.0.ok(&["create", "--name", "plain", "busybox"]);
    assert_eq!(
        inspect(&r.0, "plain")["HostConfig"]["Init"],
        serde_json::Value::Null
    );
}

#[test]
fn mount_binds_volumes_and_tmpfs() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f", "from host\n");
    let bind = format!("type=bind,src={},dst=/h,ro", dir.path().display());
    let out = r.sh(
        &[
            "--mount",
            &bind,
            "--mount",
            "type=volume,source=vol1,target=/v",
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
            "--tmpfs",
            "/t2:mode=700",
        ],
        "cat /h/f; touch /h/x 2>/dev/null || echo ro; echo kept > /v/a; \
         grep ' /t ' /proc/mounts | grep -o 'size=[0-9a-z]*'; stat -c %a /t /t2",
    );
    assert_eq!(out, "from host\nro\nsize=1024k\n1770\n700\n");
    // The volume outlives the container; `src` and `dst` are docker's aliases.
    assert_eq!(
        r.sh(&["--mount", "src=vol1,dst=/v,readonly"], "cat /v/a"),
        "kept\n"
    );
    // A relative bind source is the caller's cwd's (docker 23+).
    let out =
        r.0.cmd()
            .current_dir(dir.path())
            .args(["run", "--rm", "--mount", "type=bind,source=./f,target=/f"])
            .args(["busybox", "cat", "/f"])
            .output()
            .unwrap();
    assert_eq!(stdout(&out), "from host\n", "{}", stderr(&out));

    refused(
        &r.0,
        &["run", "--mount", "type=bind,src=/nonexistent-kiln,dst=/x", "busybox", "true"],
        125,
        "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-kiln",
    );
    refused(
        &r.0,
        &["run", "--mount", "type=bind,src=/tmp", "busybox", "true"],
        2,
        "invalid argument \"type=bind,src=/tmp\" for \"--mount\" flag: target is required",
    );
    refused(
        &r.0,
        &[
            "run",
            "--mount",
            "type=bind,src=/tmp,dst=/x,bind-propagation=shared",
            "busybox",
            "true",
        ],
        2,
        "bind-propagation=shared is not supported",
    );
    refused(
        &r.0,
        &["create", "--mount", "type=tmpfs,src=/tmp,dst=/x", "busybox"],
        125,
        "invalid mount config for type \"tmpfs\": field Source must not be specified",
    );
    assert_eq!(
        r.0.ok(&["ps", "-aq"]),
        "",
        "nothing is left of refused runs"
    );
}

#[test]
fn platform_is_the_images_or_refused() {
    let Some(r) = Root::new() else { return };
    // `kiln import` records linux/amd64.
    assert_eq!(r.sh(&["--platform", "linux/amd64"], "echo ok"), "ok\n");
    for cmd in ["run", "create"] {
        refused(
            &r.0,
            &[cmd, "--platform", "linux/s390x", "busybox", "true"],
            125,
            "image with reference busybox was found but does not match the specified \
             platform: wanted linux/s390x, actual: linux/amd64",
        );
        refused(
            &r.0,
            &[cmd, "--platform", "nope", "busybox", "true"],
            125,
            "\"nope\": unknown operating system or architecture: invalid argument",
        );
    }
    assert_eq!(r.0.ok(&["ps", "-aq"]), "");
}

#[test]
fn ps_filters() {
    let Some(r) = Root::new() else { return };
    let k = &r.0;
    let id = |name: &str| inspect(k, name)["Id"].as_str().unwrap()[..12].to_string();
    k.ok(&[
        "run", "-d", "--name", "up1", "-l", "tier=web", "busybox", "sleep", "100",
    ]);
    let gone = k.run(&[
        "run", "--name", "gone3", "-l", "tier=db", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    k.ok(&["create", "--name", "fresh", "busybox"]);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "100",
    ]);
    let q = |filters: &[&str]| {
        let mut args = vec!["ps", "-q"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let mut ids: Vec<String> = k.ok(&args).lines().map(str::to_string).collect();
        ids.sort();
        ids
    };
    let ids = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|n| id(n)).collect();
        v.sort();
        v
    };
    // A status filter lists stopped containers without -a, as docker's.
    assert_eq!(q(&["status=exited"]), ids(&["gone3"]));
    assert_eq!(q(&["status=created"]), ids(&["fresh"]));
    assert_eq!(q(&["status=running"]), ids(&["up1", "checked"]));
    assert_eq!(
        q(&["status=exited", "status=created"]),
        ids(&["gone3", "fresh"])
    );
    assert_eq!(
        q(&["label=tier"]),
        ids(&["up1"]),
        "running ones only without -a"
    );
    assert_eq!(q(&["label=tier", "status=exited"]), ids(&["gone3"]));
    assert_eq!(q(&["label=tier=web"]), ids(&["up1"]));
    assert_eq!(q(&["name=up"]), ids(&["up1"]));
    assert_eq!(q(&["ancestor=busybox:latest"]), ids(&["up1", "checked"]));
    assert_eq!(q(&["health=none"]), ids(&["up1"]));
    assert_eq!(q(&["health=starting"]), ids(&["checked"]));
    let all = k.ok(&["ps", "-aq", "--filter", "exited=3"]);
    assert_eq!(all.trim(), id("gone3"));
    refused(
        k,
        &["ps", "--filter", "colour=red"],
        1,
        "invalid filter 'colour'",
    );
    refused(
        k,
        &["ps", "--filter", "status=up"],
        1,
        "Unrecognised filter value for status: up",
    );
}

#[test]
fn stats_format_placeholders_and_table() {
    let Some(r) = Root::new() else { return };
    let k = &r.0;
    k.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "100"]);
    let id = inspect(k, "busy")["Id"].as_str().unwrap().to_string();
    let line = k.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Container}}|{{.Name}}|{{.ID}}|{{.PIDs}}|{{.MemPerc}}",
        "busy",
    ]);
    let cells: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(cells[..3], ["busy", "busy", &id[..12]], "{line}");
    assert!(cells[3].parse::<u32>().unwrap() >= 1, "{line}");
    assert!(cells[4].ends_with('%'), "{line}");
    let table = k.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.CPUPerc}}\\t{{.NetIO}}",
    ]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "CPU", "%", "NET", "I/O"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("busy   "), "{table}");
    assert!(row.contains('%'), "{table}");
    // A field stats does not have: docker's words and exit code.
    refused(
        k,
        &["stats", "--no-stream", "--format", "{{.Nope}}"],
        1,
        "can't evaluate field Nope",
    );
}
