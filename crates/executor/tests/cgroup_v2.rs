//! Resource limits through cgroup v2, for real: need root, busybox and a cgroup2 hierarchy
//! that offers the controller to this process's cgroup (a pure v2 host, or a hybrid one
//! whose administrator moved the controller from v1 to v2); each test prints "skipped: …"
//! otherwise.
//!
//! The development host binds every controller to v1 (its `unified` hierarchy offers only
//! `hugetlb`), so there they skip. Moving a controller to v2 takes destroying its v1
//! hierarchy: removing its child cgroups and unmounting it in every mount namespace (an
//! unmount in a private mount namespace releases only that copy, so it cannot be done
//! without touching the host); there the unmount fails with `EBUSY` although no process has
//! a file, cwd or root in it, and the memory hierarchy holds cgroups of the host's own
//! process manager, so no test tries. `cgroup_v2_vm.sh` beside this file runs these tests in a
//! throw-away VM whose only hierarchy is cgroup2 with every controller.
//!
//! The fake-cgroupfs unit tests in `src/cgroup/tests.rs` cover which files get which values on
//! every host.

use kiln_executor::{Network, Output, RootFs, RunResult, RunSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

/// The tests look for the sandbox's directory under `kiln/`: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

include!("../cgroup_probe.rs");

/// Our v2 cgroup when it offers every one of `controllers` (else says why the test skips).
fn v2_offering(controllers: &[&str]) -> Option<PathBuf> {
    if !common::is_root() {
        return None;
    }
    if common::which("busybox").is_none() {
        kiln_testutil::skip("busybox is not installed");
        return None;
    }
    let Some(own) = own_v2_cgroup() else {
        kiln_testutil::skip("no cgroup2 hierarchy");
        return None;
    };
    let offered = std::fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    if let Some(c) = controllers.iter().find(|c| !offered.contains(c)) {
        kiln_testutil::skip(format_args!(
            "{} offers no {c} controller (offered: {offered:?}; on a hybrid host it \
             is bound to cgroup v1)",
            own.display()
        ));
        return None;
    }
    Some(own)
}

struct Fixture {
    _dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("kiln-cgroup-v2")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(common::which("busybox").unwrap(), lower.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "seq", "head", "tail", "echo", "cat", "wc"] {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
    }
    std::fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(lower.join("etc/group"), "root:x:0:\n").unwrap();
    Fixture {
        _dir: dir,
        lower,
        upper,
        work,
    }
}

impl Fixture {
    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            rootfs: RootFs {
                lowers: vec![self.lower.clone()],
                upper: self.upper.clone(),
                work: self.work.clone(),
            },
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            hostname: "sandbox".into(),
            network: Network::None,
            mounts: vec![],
            extra: Default::default(),
        }
    }
}

#[derive(Debug)]
struct Captured {
    result: RunResult,
    stdout: String,
    stderr: String,
}

async fn capture(spec: RunSpec) -> Captured {
    let executor = common::executor();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = executor
        .run_detailed(&spec, Output::Capture(tx))
        .await
        .unwrap();
    let (stdout, stderr) = common::drain(&mut rx);
    Captured {
        result,
        stdout,
        stderr,
    }
}

fn sandbox_cgroups(own: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(own.join("kiln"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `spec` and, while it runs, reads `files` in the sandbox's v2 cgroup (the first
/// directory under `kiln/` with a process in it: the sandbox's pid 1 writes the limits before
/// it joins, and a new cgroup's files say `max` until then). Checks that the directory is
/// gone afterwards.
async fn run_watching(own: &Path, spec: RunSpec, files: &[&str]) -> (Captured, Vec<String>) {
    let run = tokio::spawn(capture(spec));
    let mut seen = None;
    let mut dir_seen = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.is_none() && Instant::now() < deadline && !run.is_finished() {
        for dir in sandbox_cgroups(own) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                continue;
            }
            let values: Option<Vec<String>> = files
                .iter()
                .map(|f| {
                    Some(
                        std::fs::read_to_string(dir.join(f))
                            .ok()?
                            .trim()
                            .to_string(),
                    )
                })
                .collect();
            if let Some(v) = values {
                seen = Some(v);
                dir_seen = Some(dir);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let c = run.await.unwrap();
    let seen = seen.unwrap_or_else(|| panic!("no sandbox cgroup with {files:?} seen: {c:?}"));
    assert!(
        !dir_seen.unwrap().exists(),
        "the sandbox's cgroup is removed"
    );
    (c, seen)
}

#[tokio::test]
#[cfg_attr(
    not(kiln_v2_limits),
    ignore = "this host's cgroup v2 offers no pids, memory and cpu controllers (bound to v1)"
)]
async fn pids_limit_contains_a_fork_bomb() {
    let Some(own) = v2_offering(&["pids"]) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    // (ash gives up at the first failed fork; `read` is a builtin: no fork needed.)
    let mut s = fx.spec(
        "sleep 0.3; sh -c 'for i in $(seq 200); do sleep 30 & echo $i > /tmp/n; done' \
         2>/dev/null; read n < /tmp/n; echo $n",
    );
    s.extra.resources.pids = Some(50);
    let t = Instant::now();
    let (c, seen) = run_watching(&own, s, &["pids.max"]).await;
    assert_eq!(seen[0], "50");
    let started: u32 = c.stdout.trim().parse().unwrap_or(999);
    assert!(
        (10..50).contains(&started),
        "pids limit: {started} started: {c:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the sleeps were killed"
    );
    assert!(!c.result.oom_killed);
}

#[tokio::test]
#[cfg_attr(
    not(kiln_v2_limits),
    ignore = "this host's cgroup v2 offers no pids, memory and cpu controllers (bound to v1)"
)]
async fn memory_hog_is_oom_killed_and_reported() {
    let Some(own) = v2_offering(&["memory"]) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    let mut s = fx.spec("sleep 0.3; head -c 200000000 /dev/zero | tail");
    s.extra.resources.memory = Some(32 * 1024 * 1024);
    let (c, seen) = run_watching(&own, s, &["memory.max"]).await;
    assert_eq!(seen, ["33554432"]);
    assert_eq!(c.result.exit_code, 137, "{c:?}");
    assert!(c.result.oom_killed, "{c:?}");
    // Below the limit nothing is reported.
    let mut s = fx.spec("head -c 1000000 /dev/zero | tail | wc -c");
    s.extra.resources.memory = Some(32 * 1024 * 1024);
    let c = capture(s).await;
    assert_eq!(
        (c.result.exit_code, c.result.oom_killed),
        (0, false),
        "{c:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(kiln_v2_limits),
    ignore = "this host's cgroup v2 offers no pids, memory and cpu controllers (bound to v1)"
)]
async fn cpu_quota_is_written_as_cpu_max() {
    let Some(own) = v2_offering(&["cpu"]) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let fx = fixture();
    let mut s = fx.spec("sleep 1; echo done");
    s.extra.resources.cpus = Some(1.5);
    let (c, seen) = run_watching(&own, s, &["cpu.max"]).await;
    assert_eq!(seen, ["150000 100000"]);
    assert_eq!(
        (c.result.exit_code, c.stdout.as_str()),
        (0, "done\n"),
        "{c:?}"
    );
    assert_eq!(c.stderr, "");
}
