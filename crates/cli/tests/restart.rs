//! `--restart` policies through the real binary: carried out by a detached container's shim,
//! counted in `inspect`, ended by `kiln stop`, and `kiln start --all-restartable` after a
//! (simulated) reboot. Needs root and Debian's busybox-static (skipped with a message
//! otherwise, failing under KILN_TEST_STRICT=1).

mod common;
use common::*;
use std::time::{Duration, Instant};

/// `kiln inspect NAME`'s one object.
fn inspect(k: &Kiln, name: &str) -> serde_json::Value {
    let out = k.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

/// The STATUS cell of `name`'s row in `ps -a` (from the STATUS title to the PORTS one).
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

#[test]
fn on_failure_2_restarts_exactly_twice_then_stays_exited() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "--name",
        "fails",
        "busybox",
        "sh",
        "-c",
        "echo run >> /runs; exit 3",
    ]);
    let out = k.run(&["wait", "fails"]);
    assert_eq!(stdout(&out).trim(), "3", "{}", stderr(&out));
    // Nothing more happens afterwards.
    std::thread::sleep(Duration::from_millis(800));
    let v = inspect(k, "fails");
    assert_eq!(v["RestartCount"], 2, "{v}");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    assert!(ps_status(k, "fails").starts_with("Exited (3) "));
    // Three runs in the same writable layer (`cp` to `-` writes a tar stream).
    let runs = stdout(&k.run(&["cp", "fails:/runs", "-"]));
    assert_eq!(runs.matches("run\n").count(), 3, "{runs:?}");
}

#[test]
fn always_restarts_after_exit_0_and_a_kill_from_inside_but_not_after_stop() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    // The first run exits 0, the second kills itself, the third stays.
    k.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "svc",
        "busybox",
        "sh",
        "-c",
        "echo run >> /runs; n=$(wc -l < /runs); \
         if [ $n = 1 ]; then exit 0; elif [ $n = 2 ]; then kill -9 $$; else exec sleep 1000; fi",
    ]);
    assert!(
        eventually(20, || {
            let v = inspect(k, "svc");
            v["RestartCount"] == 2 && v["State"]["Status"] == "running"
        }),
        "{}",
        inspect(k, "svc")
    );
    assert!(ps_status(k, "svc").starts_with("Up "));
    let runs = k.ok(&["exec", "svc", "cat", "/runs"]);
    assert_eq!(runs, "run\nrun\nrun\n");
    k.ok(&["stop", "-t", "1", "svc"]);
    std::thread::sleep(Duration::from_secs(1));
    let v = inspect(k, "svc");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["RestartCount"], 2);
    assert!(ps_status(k, "svc").starts_with("Exited ("));
}

#[test]
fn a_container_waiting_to_restart_shows_restarting_and_stop_ends_it() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "loop",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    let mut seen = String::new();
    assert!(
        eventually(15, || {
            seen = ps_status(k, "loop");
            seen.starts_with("Restarting (1) ")
        }),
        "last status: {seen}"
    );
    let v = inspect(k, "loop");
    assert!(v["RestartCount"].as_u64().unwrap() >= 1, "{v}");
    k.ok(&["stop", "loop"]);
    let count = inspect(k, "loop")["RestartCount"].clone();
    std::thread::sleep(Duration::from_secs(1));
    let v = inspect(k, "loop");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["RestartCount"], count);
}

#[test]
fn no_policy_does_not_restart() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run", "-d", "--name", "once", "busybox", "sh", "-c", "exit 1",
    ]);
    let out = k.run(&["wait", "once"]);
    assert_eq!(stdout(&out).trim(), "1");
    std::thread::sleep(Duration::from_millis(800));
    let v = inspect(k, "once");
    assert_eq!(v["RestartCount"], 0);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
}

#[test]
fn bad_and_conflicting_restart_flags_are_refused() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let refused = |args: &[&str], msg: &str| {
        let out = k.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    };
    refused(
        &[
            "run",
            "-d",
            "--restart",
            "always",
            "--rm",
            "busybox",
            "true",
        ],
        "conflicting options: cannot specify both --restart and --rm",
    );
    refused(
        &["run", "-d", "--restart", "sometimes", "busybox", "true"],
        "invalid restart policy: unknown policy 'sometimes'",
    );
    refused(
        &["run", "-d", "--restart", "on-failure:x", "busybox", "true"],
        "invalid restart policy format: maximum retry count must be an integer",
    );
    refused(
        &["run", "--restart", "always", "busybox", "true"],
        "kiln run --restart needs -d",
    );
    assert_eq!(stdout(&k.run(&["ps", "-aq"])), "", "nothing was created");
    k.ok(&[
        "create",
        "--restart",
        "on-failure:1",
        "--name",
        "made",
        "busybox",
        "true",
    ]);
    let v = inspect(k, "made");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 1);
}

/// The pids of the shim and the pid 1 of a running container, from its state.json.
fn pids(k: &Kiln, name: &str) -> (i32, i32) {
    let id = inspect(k, name)["Id"].as_str().unwrap().to_string();
    let state = std::fs::read(k.root.path().join("containers").join(id).join("state.json"))
        .expect("state.json");
    let s: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let pid = |f: &str| i32::try_from(s[f]["pid"].as_i64().unwrap()).unwrap();
    (pid("supervisor"), pid("init"))
}

#[test]
fn start_all_restartable_starts_what_a_reboot_left_exited() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    for (name, policy) in [
        ("always", "always"),
        ("unless", "unless-stopped"),
        ("stopped", "unless-stopped"),
        ("never", "no"),
    ] {
        k.ok(&[
            "run",
            "-d",
            "--restart",
            policy,
            "--name",
            name,
            "busybox",
            "sleep",
            "1000",
        ]);
    }
    k.ok(&["stop", "-t", "1", "stopped"]);
    // A reboot: the shims and the containers die without recording anything.
    for name in ["always", "unless", "never"] {
        let (shim, init) = pids(k, name);
        // The container's pid 1 may already have gone with its shim.
        for pid in [shim, init] {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    for name in ["always", "unless", "never"] {
        assert!(
            eventually(10, || ps_status(k, name).starts_with("Exited (255)")),
            "{name}: {}",
            ps_status(k, name)
        );
    }
    let out = k.ok(&["start", "--all-restartable"]);
    let mut started: Vec<&str> = out.lines().collect();
    started.sort_unstable();
    assert_eq!(started, ["always", "unless"]);
    for name in ["always", "unless"] {
        assert!(ps_status(k, name).starts_with("Up "), "{name}");
    }
    for name in ["stopped", "never"] {
        assert!(ps_status(k, name).starts_with("Exited ("), "{name}");
    }
}
