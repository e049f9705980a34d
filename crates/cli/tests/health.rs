//! Health checks through the real binary: `--health-*` flags and an image's `HEALTHCHECK`
//! run by a detached container's shim, shown in `ps` STATUS and `inspect`'s `State.Health`.
//! Needs root and Debian's busybox-static (skipped with a message otherwise, failing under
//! KILN_TEST_STRICT=1).

mod common;
use common::*;
use std::time::{Duration, Instant};

/// `ps`'s STATUS of the container named `name` (the columns are padded to their widest
/// cell, so STATUS runs from its header's offset to PORTS').
fn ps_status(k: &Kiln, name: &str) -> String {
    let out = k.ok(&["ps"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    let (from, to) = (
        header.find("STATUS").unwrap(),
        header.find("PORTS").unwrap(),
    );
    let row = lines
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in ps: {out}"));
    let status: String = row.chars().skip(from).take(to - from).collect();
    status.trim().to_string()
}

fn health(k: &Kiln, name: &str) -> serde_json::Value {
    let out = k.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["State"]["Health"].clone()
}

/// Waits (10s at most) until `ps` shows `want` in the STATUS of `name`; returns it.
fn wait_status(k: &Kiln, name: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = ps_status(k, name);
        if s.contains(want) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_cmd_goes_from_starting_to_healthy_to_unhealthy() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "h1",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        // The failures before /tmp/ok exists do not count; once healthy, failures count.
        "--health-start-period",
        "30s",
        "busybox",
        "sh",
        "-c",
        "sleep 2; touch /tmp/ok; sleep 1000",
    ]);
    let s = ps_status(k, "h1");
    assert!(
        s.starts_with("Up ") && s.ends_with(" (health: starting)"),
        "{s}"
    );
    assert_eq!(health(k, "h1")["Status"], "starting");

    // Two failed probes (retries) before /tmp/ok exists, in the start period: starting.
    std::thread::sleep(Duration::from_millis(700));
    let h = health(k, "h1");
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    assert!(h["Log"].as_array().unwrap().len() >= 2, "{h}");

    let s = wait_status(k, "h1", "(healthy)");
    assert!(s.starts_with("Up ") && s.ends_with(" (healthy)"), "{s}");
    let h = health(k, "h1");
    assert_eq!(h["Status"], "healthy", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let log = h["Log"].as_array().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert_eq!(last["Output"], "fine\n", "{h}");
    assert!(last["Start"].as_str().unwrap().ends_with('Z'), "{h}");

    k.ok(&["exec", "h1", "rm", "/tmp/ok"]);
    let s = wait_status(k, "h1", "(unhealthy)");
    assert!(s.starts_with("Up ") && s.ends_with(" (unhealthy)"), "{s}");
    let h = health(k, "h1");
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{h}");
    assert_eq!(log.last().unwrap()["ExitCode"], 1, "{h}");

    // The check is the container's, as docker's inspect shows it.
    let out = k.ok(&["inspect", "h1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["Config"]["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
            "Interval": 200_000_000,
            "StartPeriod": 30_000_000_000_i64,
            "Retries": 2,
        })
    );
}

#[test]
fn the_images_healthcheck_is_used_and_no_healthcheck_disables_it() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\n\
         HEALTHCHECK --interval=200ms --timeout=5s --retries=1 CMD [\"false\"]\n",
    );
    let (ok, log) = k.build(ctx.path(), &["-t", "hc"]);
    assert!(ok, "{log}");

    k.ok(&["run", "-d", "--name", "img", "hc", "sleep", "1000"]);
    let s = wait_status(k, "img", "(unhealthy)");
    assert!(s.ends_with(" (unhealthy)"), "{s}");
    let h = health(k, "img");
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");

    k.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "hc",
        "sleep",
        "1000",
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let s = ps_status(k, "off");
    assert!(s.starts_with("Up ") && !s.contains('('), "{s}");
    let out = k.ok(&["inspect", "off"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v[0]["State"].get("Health").is_none(), "{out}");
    assert_eq!(
        v[0]["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );

    // Both at once are refused, as docker.
    let out = k.run(&[
        "run",
        "-d",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "hc",
        "sleep",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--no-healthcheck conflicts with --health-* options"),
        "{}",
        stderr(&out)
    );
    let out = k.run(&["run", "-d", "--health-interval", "-1s", "hc", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'--health-interval <DURATION>': cannot be negative"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_probe_over_its_timeout_fails() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "200ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    let s = wait_status(k, "slow", "(unhealthy)");
    assert!(s.ends_with(" (unhealthy)"), "{s}");
    let h = health(k, "slow");
    let last = &h["Log"][0];
    assert_eq!(last["ExitCode"], -1, "{h}");
    assert_eq!(
        last["Output"], "Health check exceeded timeout (200ms)",
        "{h}"
    );
}

#[test]
fn a_stopped_check_is_unhealthy_and_a_started_one_starting() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    // No probe runs in the test's time: only starts and stops change the health.
    k.ok(&[
        "run",
        "-d",
        "--name",
        "ss",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(ps_status(k, "ss").rsplit_once(' ').unwrap().1, "starting)");
    k.ok(&["stop", "-t", "0", "ss"]);
    assert_eq!(health(k, "ss")["Status"], "unhealthy");
    k.ok(&["start", "ss"]);
    let s = ps_status(k, "ss");
    assert!(s.ends_with(" (health: starting)"), "{s}");
    assert_eq!(health(k, "ss")["Status"], "starting");
}

#[test]
fn a_foreground_run_is_checked_too() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let mut child = k
        .cmd()
        .args([
            "run",
            "--name",
            "fg",
            "--health-cmd",
            "true",
            "--health-interval",
            "200ms",
            "busybox",
            "sleep",
            "3",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let out = k.ok(&["ps"]);
        if out.contains("(healthy)") || Instant::now() > deadline {
            break ps_status(k, "fg");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(s.ends_with(" (healthy)"), "{s}");
    assert!(child.wait().unwrap().success());

    // Ended, it shows no health in ps; its check stopped with it: unhealthy, as docker.
    let out = k.ok(&["ps", "-a"]);
    let row = out.lines().find(|l| l.ends_with(" fg")).unwrap();
    assert!(
        row.contains(" Exited (0) ") && !row.contains("health"),
        "{out}"
    );
    assert_eq!(health(k, "fg")["Status"], "unhealthy");
}
