//! `pause`/`unpause`, `update` and `commit` through the real binary: what `ps`, `inspect`,
//! the container's cgroups and its files show. Needs root and Debian's busybox-static
//! (skipped with a message otherwise, failing under KILN_TEST_STRICT=1).

mod common;
use common::*;
use std::time::{Duration, Instant};

/// `kiln inspect NAME`'s one object.
fn inspect(k: &Kiln, name: &str) -> serde_json::Value {
    let out = k.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

/// The STATUS cell of `name`'s row in `ps -a`.
fn ps_status(k: &Kiln, name: &str) -> String {
    let out = k.ok(&["ps", "-a"]);
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    let (from, to) = (
        header.find("STATUS").unwrap(),
        header.find("PORTS").unwrap(),
    );
    let line = lines
        .find(|l| l.trim_end().ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("{name} in:\n{out}"));
    line.get(from..to).unwrap_or_default().trim().to_string()
}

/// Polls `cond` for at most `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A file of the container, read through `cp` (a tar stream on stdout).
fn file_of(k: &Kiln, name: &str, path: &str) -> String {
    let out = k.run(&["cp", &format!("{name}:{path}"), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut entry = ar.entries().unwrap().next().unwrap().unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
    s
}

/// A cgroup file of the container's pid 1, from whichever hierarchy has `file` (v1 on
/// this development host, v2 on a pure v2 host).
fn cgroup_file(k: &Kiln, name: &str, v1_controller: &str, file: &str) -> String {
    let pid = inspect(k, name)["State"]["Pid"].as_u64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let dir = if ctrls.is_empty() {
            "/sys/fs/cgroup/unified".to_string()
        } else if ctrls.split(',').any(|c| c == v1_controller) {
            format!("/sys/fs/cgroup/{v1_controller}")
        } else {
            continue;
        };
        for base in [dir.as_str(), "/sys/fs/cgroup"] {
            if let Ok(s) = std::fs::read_to_string(format!("{base}{path}/{file}")) {
                return s.trim().to_string();
            }
        }
    }
    panic!("no {file} for {name}:\n{cgroups}");
}

#[test]
fn pause_freezes_ps_and_inspect_say_so_exec_is_refused_and_stop_works() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /n; sleep 0.05; done",
    ]);
    assert!(eventually(5, || file_of(k, "counter", "/n").trim() != "1"));
    assert_eq!(k.ok(&["pause", "counter"]), "counter\n");
    let frozen_at = file_of(k, "counter", "/n");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        file_of(k, "counter", "/n"),
        frozen_at,
        "nothing runs while paused"
    );
    let status = ps_status(k, "counter");
    assert!(
        status.starts_with("Up ") && status.ends_with(" (Paused)"),
        "{status}"
    );
    let v = inspect(k, "counter");
    assert_eq!(v["State"]["Status"], "paused", "{v}");
    assert_eq!(v["State"]["Paused"], true);
    assert_eq!(v["State"]["Running"], true);
    let id = v["Id"].as_str().unwrap().to_string();

    let out = k.run(&["exec", "counter", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: Container {id} is paused, unpause the container before exec")
    );
    let out = k.run(&["pause", "counter"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Container {id} is already paused")),
        "{}",
        stderr(&out)
    );

    assert_eq!(k.ok(&["container", "unpause", "counter"]), "counter\n");
    assert!(eventually(5, || file_of(k, "counter", "/n") != frozen_at));
    assert_eq!(inspect(k, "counter")["State"]["Status"], "running");
    let out = k.run(&["unpause", "counter"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Container {id} is not paused")),
        "{}",
        stderr(&out)
    );
    k.ok(&["exec", "counter", "true"]);

    // A paused container stops on its stop signal (thawed after it is sent), quickly.
    k.ok(&["pause", "counter"]);
    let start = Instant::now();
    assert_eq!(k.ok(&["stop", "-t", "5", "counter"]), "counter\n");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(ps_status(k, "counter").starts_with("Exited (143) "));
    let out = k.run(&["pause", "counter"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    let out = k.run(&["unpause", "counter"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Container {id} is not paused")),
        "{}",
        stderr(&out)
    );

    // kill and rm -f of a paused one.
    k.ok(&["run", "-d", "--name", "killed", "busybox", "sleep", "1000"]);
    k.ok(&["pause", "killed"]);
    k.ok(&["kill", "killed"]);
    assert!(eventually(5, || ps_status(k, "killed").starts_with("Exited (137) ")));
    k.ok(&["run", "-d", "--name", "forced", "busybox", "sleep", "1000"]);
    k.ok(&["pause", "forced"]);
    k.ok(&["rm", "-f", "forced"]);
    assert!(!k.ok(&["ps", "-a"]).contains(" forced\n"));
}

#[test]
fn no_health_probe_runs_while_paused() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "probed",
        "--health-cmd",
        "echo x >> /probes",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    // Through cp: exec is refused while paused. Nothing before the first probe.
    let probes = || {
        let out = k.run(&["cp", "probed:/probes", "-"]);
        if out.status.success() {
            file_of(k, "probed", "/probes").lines().count()
        } else {
            0
        }
    };
    assert!(eventually(5, || probes() >= 2
        && inspect(k, "probed")["State"]["Health"]["Status"]
            == "healthy"));
    k.ok(&["pause", "probed"]);
    // A probe that started just before may still be recorded.
    std::thread::sleep(Duration::from_millis(300));
    let before = probes();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(probes(), before, "probes while paused");
    // A probe would freeze with it and time out: the check would turn unhealthy.
    let health = &inspect(k, "probed")["State"]["Health"];
    assert_eq!(health["Status"], "healthy", "{health}");
    k.ok(&["unpause", "probed"]);
    assert!(eventually(5, || probes() > before));
}

#[test]
fn update_changes_the_cgroup_inspect_and_survives_a_restart() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    // No limits at creation: the container still has cgroups to change.
    k.ok(&["run", "-d", "--name", "limited", "busybox", "sleep", "1000"]);
    let out = k.ok(&[
        "update",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "33",
        "limited",
    ]);
    assert_eq!(out, "limited\n");
    let memory = |k: &Kiln| {
        let v1 = std::panic::catch_unwind(|| {
            cgroup_file(k, "limited", "memory", "memory.limit_in_bytes")
        });
        v1.unwrap_or_else(|_| cgroup_file(k, "limited", "memory", "memory.max"))
    };
    assert_eq!(memory(k), "67108864");
    assert_eq!(cgroup_file(k, "limited", "pids", "pids.max"), "33");
    let v = inspect(k, "limited");
    assert_eq!(v["HostConfig"]["Memory"], 67_108_864, "{v}");
    assert_eq!(v["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(v["HostConfig"]["PidsLimit"], 33);
    // --memory-swap: memory plus swap (v1's memsw where the host accounts swap).
    k.ok(&["update", "--memory-swap", "96m", "limited"]);
    assert_eq!(
        inspect(k, "limited")["HostConfig"]["MemorySwap"],
        100_663_296
    );
    let memsw = || {
        std::panic::catch_unwind(|| {
            cgroup_file(k, "limited", "memory", "memory.memsw.limit_in_bytes")
        })
        .ok()
    };
    if let Some(v) = memsw() {
        assert_eq!(v, "100663296");
    }
    // A stop and start keeps them.
    k.ok(&["restart", "-t", "0", "limited"]);
    assert_eq!(memory(k), "67108864");
    if let Some(v) = memsw() {
        assert_eq!(v, "100663296");
    }
    assert_eq!(cgroup_file(k, "limited", "pids", "pids.max"), "33");

    // docker's refusals.
    let out = k.run(&["update", "limited"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("you must provide one or more flags when using this command"));
    let out = k.run(&["update", "-m", "1m", "limited"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Minimum memory limit allowed is 6MB"));
    let out = k.run(&["update", "--pids-limit", "5", "limited", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "limited\n");
    assert!(stderr(&out).contains("No such container: nope"));
}

#[test]
fn update_restart_is_picked_up_by_the_running_shim() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "restarted",
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /go ]; do sleep 0.05; done; exit 3",
    ]);
    assert_eq!(
        k.ok(&["update", "--restart", "on-failure:1", "restarted"]),
        "restarted\n"
    );
    assert_eq!(
        inspect(k, "restarted")["HostConfig"]["RestartPolicy"]["Name"],
        "on-failure"
    );
    k.ok(&["exec", "restarted", "touch", "/go"]);
    let out = k.run(&["wait", "restarted"]);
    assert_eq!(stdout(&out).trim(), "3", "{}", stderr(&out));
    let v = inspect(k, "restarted");
    assert_eq!(v["RestartCount"], 1, "{v}");
    assert_eq!(v["State"]["Status"], "exited");
}

#[test]
fn commit_then_run_the_image_deleted_files_stay_deleted_and_volumes_are_not_in_it() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/bind", host.path().display());
    k.ok(&[
        "run",
        "--name",
        "src",
        "-v",
        "/vol",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo hello > /x; rm /bin/vi; echo v > /vol/in; echo b > /bind/f",
    ]);
    let id = k.ok(&[
        "commit",
        "-m",
        "made by hand",
        "-c",
        r#"CMD ["cat","/x"]"#,
        "src",
        "committed:1",
    ]);
    let hex = id.trim().strip_prefix("sha256:").expect("sha256:ID");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
    assert_eq!(k.ok(&["run", "--rm", "committed:1"]), "hello\n");
    let out = k.run(&["run", "--rm", "committed:1", "ls", "/bin/vi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));
    assert_eq!(
        k.ok(&[
            "run",
            "--rm",
            "committed:1",
            "sh",
            "-c",
            "test -e /vol || echo no-volume; test -e /bind || echo no-bind",
        ]),
        "no-volume\nno-bind\n",
        "neither the volume and bind mount targets nor their contents are in the image"
    );
    let history = k.ok(&["history", "committed:1"]);
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.contains("sh -c echo hello > /x"), "{history}");
    let v: serde_json::Value = serde_json::from_str(&k.ok(&["inspect", "committed:1"])).unwrap();
    assert_eq!(v[0]["Id"], id.trim());
    assert_eq!(v[0]["History"][1]["comment"], "made by hand");

    // A bad change is refused, and nothing is stored.
    let out = k.run(&["commit", "-c", "RUN true", "src", "bad:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid --change"),
        "{}",
        stderr(&out)
    );
    assert!(!k.ok(&["images"]).contains("bad "));
}

#[test]
fn commit_pauses_a_running_container_only_while_it_reads_the_layer() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "1000"]);
    k.ok(&["exec", "live", "sh", "-c", "echo new > /y"]);
    k.ok(&["commit", "live", "live:1"]);
    assert_eq!(inspect(k, "live")["State"]["Status"], "running");
    assert_eq!(k.ok(&["run", "--rm", "live:1", "cat", "/y"]), "new\n");
    // The image runs the container's command.
    assert_eq!(
        inspect(k, "live:1")["Config"]["Cmd"],
        serde_json::json!(["sleep", "1000"])
    );
    // A paused one stays paused; --pause=false leaves a running one alone.
    k.ok(&["pause", "live"]);
    k.ok(&["container", "commit", "live"]);
    assert_eq!(inspect(k, "live")["State"]["Status"], "paused");
    k.ok(&["unpause", "live"]);
    k.ok(&["commit", "--pause=false", "live", "live:2"]);
    assert_eq!(inspect(k, "live")["State"]["Status"], "running");
}

#[test]
fn a_committed_image_saved_is_read_by_skopeo_and_umoci() {
    if !can_run(&["busybox", "skopeo", "umoci"]) {
        return;
    }
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "--name",
        "made",
        "busybox",
        "sh",
        "-c",
        "echo kept > /x; rm /bin/vi",
    ]);
    k.ok(&["commit", "made", "made:1"]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("made.tar");
    k.ok(&["save", "-o", tar.to_str().unwrap(), "made:1"]);
    let skopeo = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", tar.display()))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "skopeo: {}", stderr(&skopeo));
    let v: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{v}");
    // The archive is an OCI layout too: umoci unpacks it, the whiteout applied.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-xf")
        .arg(&tar)
        .status()
        .unwrap();
    assert!(untar.success());
    let bundle = dir.path().join("bundle");
    let umoci = std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(umoci.status.success(), "umoci: {}", stderr(&umoci));
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("x")).unwrap(), "kept\n");
    assert!(rootfs.join("bin/sh").exists());
    assert!(!rootfs.join("bin/vi").exists());
}
