//! Sandbox tests: need root (overlayfs, namespaces); print "skipped: needs root" otherwise.

use kiln_executor::{BindMount, Error, Network, Output, RootFs, RunSpec, HELPER_ARG};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

struct Fixture {
    _dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    host: PathBuf,
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "ls", "ps", "hostname", "ip", "mount", "sleep", "touch", "pwd",
    "mkdir", "test", "true", "false", "kill", "env",
];

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    let host = dir.path().join("host");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    for d in [&upper, &work, &host] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(lower.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    Fixture {
        _dir: dir,
        lower,
        upper,
        work,
        host,
    }
}

impl Fixture {
    fn spec(&self, args: &[&str]) -> RunSpec {
        RunSpec {
            rootfs: RootFs {
                lowers: vec![self.lower.clone()],
                upper: self.upper.clone(),
                work: self.work.clone(),
            },
            args: args.iter().map(std::string::ToString::to_string).collect(),
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

struct Captured {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn capture(spec: &RunSpec) -> Result<Captured, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let code = common::executor().run(spec, Output::Capture(tx)).await?;
    let (stdout, stderr) = common::drain(&mut rx);
    Ok(Captured {
        code,
        stdout,
        stderr,
    })
}

async fn ok(spec: &RunSpec) -> Captured {
    let c = capture(spec).await.unwrap();
    assert_eq!(c.code, 0, "stdout: {}\nstderr: {}", c.stdout, c.stderr);
    c
}

#[tokio::test]
async fn echo_is_captured_on_stdout() {
    require_root!();
    let fx = fixture();
    let c = ok(&fx.spec(&["echo", "hi"])).await;
    assert_eq!(c.stdout, "hi\n");
    assert_eq!(c.stderr, "");
}

#[tokio::test]
async fn exit_code_is_returned() {
    require_root!();
    let fx = fixture();
    let c = capture(&fx.spec(&["sh", "-c", "exit 3"])).await.unwrap();
    assert_eq!(c.code, 3);
}

#[tokio::test]
async fn killed_by_signal_is_128_plus_n() {
    require_root!();
    let fx = fixture();
    let c = capture(&fx.spec(&["sh", "-c", "kill -9 $$"]))
        .await
        .unwrap();
    assert_eq!(c.code, 137);
}

#[tokio::test]
async fn stderr_is_captured_separately() {
    require_root!();
    let fx = fixture();
    let c = ok(&fx.spec(&["sh", "-c", "echo out; echo err >&2"])).await;
    assert_eq!(c.stdout, "out\n");
    assert_eq!(c.stderr, "err\n");
}

#[tokio::test]
async fn runs_as_named_and_numeric_users() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["sh", "-c", "id -u; id -g; echo $HOME"]);
    spec.user = "nobody".into();
    assert_eq!(ok(&spec).await.stdout, "65534\n65534\n/nonexistent\n");
    spec.user = "1234:1234".into();
    assert_eq!(ok(&spec).await.stdout, "1234\n1234\n/\n");
    spec.user = String::new();
    assert_eq!(ok(&spec).await.stdout, "0\n0\n/root\n");
    spec.user = "nosuchuser".into();
    match capture(&spec).await {
        Err(Error::Setup(msg)) => assert!(msg.contains("nosuchuser"), "{msg}"),
        other => panic!("expected a setup error, got {:?}", other.map(|c| c.code)),
    }
}

#[tokio::test]
async fn environment_is_exactly_the_spec_plus_defaults() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["env"]);
    spec.env = vec!["FOO=bar baz".into()];
    let out = ok(&spec).await.stdout;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "FOO=bar baz",
            "HOME=/root",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
    spec.env = vec!["PATH=/nowhere".into(), "HOME=/h".into()];
    spec.args = vec!["/bin/env".into()];
    assert_eq!(ok(&spec).await.stdout, "PATH=/nowhere\nHOME=/h\n");
}

#[tokio::test]
async fn cwd_is_created_and_entered() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["pwd"]);
    spec.cwd = "/work/dir".into();
    assert_eq!(ok(&spec).await.stdout, "/work/dir\n");
    assert!(fx.upper.join("work/dir").is_dir());
}

#[tokio::test]
async fn hostname_is_set() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["hostname"]);
    spec.hostname = "kiln-test-host".into();
    assert_eq!(ok(&spec).await.stdout, "kiln-test-host\n");
}

#[tokio::test]
async fn the_spec_is_not_in_any_command_line() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["cat", "/proc/1/cmdline"]);
    spec.env.push("SECRET_MARKER=do-not-show-me".into());
    let init = ok(&spec).await.stdout;
    assert!(
        !init.contains("do-not-show-me"),
        "pid 1's argv holds the spec: {init:?}"
    );
    assert!(!init.contains("lowers"), "{init:?}");
    // The process itself still gets the variable.
    let mut spec = fx.spec(&["sh", "-c", "echo $SECRET_MARKER"]);
    spec.env.push("SECRET_MARKER=do-not-show-me".into());
    assert_eq!(ok(&spec).await.stdout, "do-not-show-me\n");
}

#[tokio::test]
async fn pid_namespace_shows_only_the_sandbox() {
    require_root!();
    let fx = fixture();
    let out = ok(&fx.spec(&["ps"])).await.stdout;
    let pids: Vec<u32> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(pids.contains(&1), "{out}");
    assert!(pids.len() <= 3, "{out}");
    let out = ok(&fx.spec(&["sh", "-c", "echo $$"])).await.stdout;
    assert_eq!(out, "2\n");
}

#[tokio::test]
async fn network_none_has_only_lo_up() {
    require_root!();
    let fx = fixture();
    let out = ok(&fx.spec(&["cat", "/proc/net/dev"])).await.stdout;
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
    let out = ok(&fx.spec(&["ip", "link"])).await.stdout;
    assert!(out.contains("lo: <LOOPBACK,UP"), "{out}");
}

#[tokio::test]
async fn network_host_sees_host_interfaces() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["cat", "/proc/net/dev"]);
    spec.network = Network::Host;
    let inside = ok(&spec).await.stdout;
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    let names = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .skip(2)
            .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&inside), names(&host));
}

#[tokio::test]
async fn writes_land_in_the_upper_dir() {
    require_root!();
    let fx = fixture();
    ok(&fx.spec(&["sh", "-c", "touch /x && echo changed > /etc/passwd"])).await;
    assert!(fx.upper.join("x").exists());
    assert!(!fx.lower.join("x").exists());
    assert_eq!(
        std::fs::read_to_string(fx.upper.join("etc/passwd")).unwrap(),
        "changed\n"
    );
    assert!(std::fs::read_to_string(fx.lower.join("etc/passwd"))
        .unwrap()
        .starts_with("root:"));
    // Mount points that exist in the image are not copied up.
    for d in ["proc", "sys", "dev"] {
        assert!(!fx.upper.join(d).exists(), "{d} was copied up");
    }
}

#[tokio::test]
async fn dev_is_minimal_and_works() {
    require_root!();
    let fx = fixture();
    let out = ok(&fx.spec(&[
        "sh",
        "-c",
        "echo x > /dev/null && test -c /dev/zero && test -c /dev/urandom && test -c /dev/pts/ptmx \
         && test -L /dev/ptmx && test -d /dev/shm && touch /dev/shm/f && ls /dev",
    ]))
    .await
    .stdout;
    let entries: Vec<&str> = out.split_whitespace().collect();
    for e in [
        "null", "zero", "full", "random", "urandom", "pts", "shm", "fd", "stdin",
    ] {
        assert!(entries.contains(&e), "{e} missing in {out}");
    }
    assert!(!entries.contains(&"sda"), "{out}");
}

#[tokio::test]
async fn missing_command_exits_127() {
    require_root!();
    let fx = fixture();
    let c = capture(&fx.spec(&["no-such-command", "x"])).await.unwrap();
    assert_eq!(c.code, 127);
    assert!(
        c.stderr
            .contains("exec: \"no-such-command\": executable file not found in $PATH"),
        "{}",
        c.stderr
    );
    let c = capture(&fx.spec(&["/bin/nope"])).await.unwrap();
    assert_eq!(c.code, 127, "{}", c.stderr);
}

#[tokio::test]
async fn a_command_that_cannot_start_is_never_reported_started() {
    require_root!();
    let fx = fixture();
    for (args, code) in [(&["/bin/nope"][..], 127), (&["true"][..], 0)] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (out_tx, _out_rx) = tokio::sync::mpsc::unbounded_channel();
        let r = common::executor()
            .run_observed(&fx.spec(args), Output::Capture(out_tx), tx)
            .await
            .unwrap();
        assert_eq!(r.exit_code, code, "{args:?}");
        assert_eq!(rx.await.is_ok(), code == 0, "{args:?}: reported started");
    }
}

/// The test helper, with the outer helper's report of pid 1 delayed by `ms`
/// (`TEST_REPORT_DELAY_ENV`): pid 1's setup, its `pivot_root` included, comes first.
fn executor_reporting_late(ms: u64) -> kiln_executor::Executor {
    kiln_executor::Executor::new(vec![
        "/usr/bin/env".into(),
        format!("{}={ms}", kiln_executor::TEST_REPORT_DELAY_ENV).into(),
        env!("CARGO_BIN_EXE_kiln-sandbox-test-helper").into(),
        HELPER_ARG.into(),
    ])
}

#[tokio::test]
async fn pid_1_is_reported_after_it_entered_its_root() {
    require_root!();
    let fx = fixture();
    let spec = fx.spec(&["sleep", "1"]);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(async move {
        let (out_tx, _out_rx) = tokio::sync::mpsc::unbounded_channel();
        executor_reporting_late(300)
            .run_observed(&spec, Output::Capture(out_tx), tx)
            .await
    });
    let init = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the start was reported in time")
        .expect("a started sandbox is reported");
    // The host's view of the sandbox's pid 1.
    let status = std::fs::read_to_string(format!("/proc/{}/status", init.pid)).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    assert!(init.is_alive());
    assert_eq!(run.await.unwrap().unwrap().exit_code, 0);
}

#[tokio::test]
async fn a_start_that_does_not_come_in_time_fails_and_kills_the_sandbox() {
    require_root!();
    let fx = fixture();
    let spec = fx.spec(&["sleep", "4244"]);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (out_tx, _out_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let r = executor_reporting_late(5_000)
        .with_start_timeout(Duration::from_millis(500))
        .run_observed(&spec, Output::Capture(out_tx), tx)
        .await;
    let elapsed = start.elapsed();
    match r {
        Err(Error::Setup(m)) => assert_eq!(m, "the sandbox did not start within 500ms"),
        other => panic!("{other:?}"),
    }
    assert!(rx.await.is_err(), "reported started");
    // Returned once the sandbox's output closed: its command was killed with it.
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(processes_with_cmdline(b"sleep\x004244\x00").is_empty());
}

#[tokio::test]
async fn bind_mounts_are_mounted() {
    require_root!();
    let fx = fixture();
    std::fs::write(fx.host.join("f"), "from host\n").unwrap();
    let file = fx.host.join("single");
    std::fs::write(&file, "single file\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "cat /mnt/data/f /etc/single && ! touch /mnt/data/g 2>/dev/null && touch /rw/new",
    ]);
    spec.mounts = vec![
        BindMount {
            source: fx.host.clone(),
            destination: "/mnt/data".into(),
            readonly: true,
        },
        BindMount {
            source: file,
            destination: "/etc/single".into(),
            readonly: false,
        },
        BindMount {
            source: rw.path().to_path_buf(),
            destination: "/rw".into(),
            readonly: false,
        },
    ];
    assert_eq!(ok(&spec).await.stdout, "from host\nsingle file\n");
    assert!(!fx.host.join("g").exists());
    assert!(rw.path().join("new").exists());
}

#[tokio::test]
async fn mount_targets_below_absolute_symlinks_stay_in_the_rootfs() {
    require_root!();
    let fx = fixture();
    let canary = tempfile::tempdir().unwrap();
    std::fs::write(canary.path().join("victim"), "host file\n").unwrap();
    std::os::unix::fs::symlink(canary.path(), fx.lower.join("mnt")).unwrap();
    std::os::unix::fs::symlink(canary.path().join("hosts"), fx.lower.join("etc/hosts")).unwrap();
    std::fs::write(fx.host.join("f"), "from host\n").unwrap();
    let mut spec = fx.spec(&["cat", "/mnt/data/f"]);
    spec.mounts = vec![BindMount {
        source: fx.host.clone(),
        destination: "/mnt/data".into(),
        readonly: true,
    }];
    spec.extra.create_etc_files = true;
    assert_eq!(ok(&spec).await.stdout, "from host\n");
    let names: Vec<_> = std::fs::read_dir(canary.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("victim")]);
    assert_eq!(
        std::fs::read(canary.path().join("victim")).unwrap(),
        b"host file\n"
    );
}

#[tokio::test]
async fn setup_errors_are_reported() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["true"]);
    spec.rootfs.lowers = vec![fx.lower.join("does-not-exist")];
    match capture(&spec).await {
        Err(Error::Setup(msg)) => assert!(msg.contains("overlay"), "{msg}"),
        other => panic!("expected a setup error, got {:?}", other.map(|c| c.code)),
    }
    // A process exiting 125 on its own is not a setup error.
    let c = capture(&fx.spec(&["sh", "-c", "exit 125"])).await.unwrap();
    assert_eq!(c.code, 125);
}

#[tokio::test]
async fn inherit_output_runs() {
    require_root!();
    let fx = fixture();
    let code = common::executor()
        .run(&fx.spec(&["true"]), Output::Inherit)
        .await
        .unwrap();
    assert_eq!(code, 0);
}

fn processes_with_cmdline(cmdline: &[u8]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(c) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if c == cmdline {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn dropping_the_future_kills_the_sandbox() {
    require_root!();
    let fx = fixture();
    let spec = fx.spec(&["sleep", "4243"]);
    let task = tokio::spawn(async move {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        common::executor().run(&spec, Output::Capture(tx)).await
    });
    let cmdline = b"sleep\x004243\x00";
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with_cmdline(cmdline).is_empty() {
        assert!(Instant::now() < deadline, "sleep never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    task.abort();
    let _ = task.await;
    while !processes_with_cmdline(cmdline).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "sandbox still running after the future was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn orphans_are_reaped_and_do_not_hang() {
    require_root!();
    let fx = fixture();
    let start = Instant::now();
    let c = capture(&fx.spec(&["sh", "-c", "(sleep 0.1 &) ; sleep 0.5; echo done"]))
        .await
        .unwrap();
    assert_eq!((c.code, c.stdout.as_str()), (0, "done\n"));
    // Background processes die with the main process.
    let c = capture(&fx.spec(&["sh", "-c", "sleep 100 & echo started"]))
        .await
        .unwrap();
    assert_eq!((c.code, c.stdout.as_str()), (0, "started\n"));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn concurrent_runs_share_a_lower() {
    require_root!();
    let fx = fixture();
    let dirs: Vec<tempfile::TempDir> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    let runs = dirs.iter().enumerate().map(|(i, d)| {
        let mut spec = fx.spec(&["sh", "-c", "echo $0 > /n; cat /n"]);
        spec.args.push(i.to_string());
        std::fs::create_dir(d.path().join("u")).unwrap();
        std::fs::create_dir(d.path().join("w")).unwrap();
        spec.rootfs.upper = d.path().join("u");
        spec.rootfs.work = d.path().join("w");
        async move { (i, ok(&spec).await.stdout) }
    });
    let mut set = tokio::task::JoinSet::new();
    for r in runs {
        set.spawn(r);
    }
    while let Some(r) = set.join_next().await {
        let (i, out) = r.unwrap();
        assert_eq!(out, format!("{i}\n"));
    }
}

fn mounted(target: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let t = target.to_string_lossy();
    mountinfo
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&*t))
}

/// Builds `n` lower dirs named by `name(i)` under `base`, each with `layer-i` and a shared
/// `f` containing `i`; mounts them (top-most first) and checks the merged view.
fn check_many_lowers(n: usize, name: impl Fn(usize) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("x".repeat(150)).join("layers");
    let lowers: Vec<PathBuf> = (0..n).map(|i| base.join(name(i)).join("diff")).collect();
    for (i, l) in lowers.iter().enumerate() {
        std::fs::create_dir_all(l).unwrap();
        std::fs::write(l.join(format!("layer-{i}")), "").unwrap();
        std::fs::write(l.join("f"), i.to_string()).unwrap();
    }
    let total: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the test must exceed the mount data page");
    let target = dir.path().join("merged");
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    for d in [&target, &upper, &work] {
        std::fs::create_dir(d).unwrap();
    }
    let cwd = std::env::current_dir().unwrap();

    kiln_executor::mount::overlay(&lowers, None, &target).unwrap();
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "0");
    for i in 0..n {
        assert!(target.join(format!("layer-{i}")).exists());
    }
    assert!(std::fs::write(target.join("new"), "").is_err(), "read-only");
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();

    kiln_executor::mount::overlay(&lowers, Some((&upper, &work)), &target).unwrap();
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    std::fs::write(target.join("new"), "x").unwrap();
    assert!(upper.join("new").exists());
    assert!(target.join(format!("layer-{}", n - 1)).exists());
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(!mounted(&target));
}

#[test]
fn overlay_with_many_long_lowers() {
    require_root!();
    // This test thread gets its own mount namespace (unshare(CLONE_NEWNS) also unshares the
    // thread's cwd), so its mounts and chdirs do not disturb other tests.
    kiln_executor::mount::private_mount_namespace().unwrap();
    // 60 layers: too long as absolute paths, fits relative to the common parent.
    check_many_lowers(60, |i| format!("{i:040x}"));
    // 120 layers named by digests: too long even relative; needs `lowerdir+`.
    check_many_lowers(120, |i| format!("{i:064x}"));
}

#[test]
fn overlay_single_lower_and_empty() {
    require_root!();
    kiln_executor::mount::private_mount_namespace().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let target = dir.path().join("t");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(lower.join("f"), "x").unwrap();
    kiln_executor::mount::overlay(std::slice::from_ref(&lower), None, &target).unwrap();
    assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "x");
    let err = std::fs::write(target.join("g"), "").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();

    // No lowers at all, writable.
    let (upper, work) = (dir.path().join("u"), dir.path().join("w"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    kiln_executor::mount::overlay(&[], Some((&upper, &work)), &target).unwrap();
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    std::fs::write(target.join("g"), "").unwrap();
    assert!(upper.join("g").exists());
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();

    // No lowers, read-only: empty.
    kiln_executor::mount::overlay(&[], None, &target).unwrap();
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();

    // Separators are rejected.
    let bad = dir.path().join("a:b");
    let err = kiln_executor::mount::overlay(&[bad.clone(), bad], None, &target).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn signals_are_forwarded_to_the_process() {
    require_root!();
    let fx = fixture();
    // The helper started by hand: setup errors would go to stderr with a prefix.
    let spec = fx.spec(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; sleep 4244 & wait",
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-sandbox-test-helper"))
        .arg(HELPER_ARG)
        .arg(serde_json::to_string(&spec).unwrap())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with_cmdline(b"sleep\x004244\x00").is_empty() {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!((status.code(), out.as_str()), (Some(7), "got TERM\n"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-sandbox-test-helper"))
        .arg(HELPER_ARG)
        .arg("{}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("kiln-sandbox-error: "));
}

async fn exec_capture(
    init: &kiln_executor::HostProcess,
    spec: &kiln_executor::ExecSpec,
) -> Result<Captured, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let code = common::executor()
        .exec_in(init, spec, Output::Capture(tx))
        .await?;
    let (stdout, stderr) = common::drain(&mut rx);
    Ok(Captured {
        code,
        stdout,
        stderr,
    })
}

fn exec_spec(args: &[&str]) -> kiln_executor::ExecSpec {
    kiln_executor::ExecSpec {
        args: args.iter().map(std::string::ToString::to_string).collect(),
        env: vec!["FROM_EXEC=1".into()],
        cwd: "/".into(),
        user: String::new(),
        privileged: false,
        process: Default::default(),
    }
}

/// The lines of /proc/self/status that describe a process's isolation.
fn isolation(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter(|l| {
            [
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect()
}

#[tokio::test]
async fn exec_joins_a_running_sandbox_with_the_same_isolation() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "echo from-run > /tmp/f; cat /proc/self/status > /tmp/status; exec sleep 1000",
    ]);
    spec.hostname = "exec-host".into();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (out_tx, _out_rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn(async move {
        common::executor()
            .run_observed(&spec, Output::Capture(out_tx), tx)
            .await
    });
    let init = rx.await.expect("the sandbox starts");
    assert!(init.is_alive());
    // The command runs once pid 1 is ready; wait for what it writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = exec_capture(&init, &exec_spec(&["cat", "/tmp/status"]))
            .await
            .unwrap();
        if c.code == 0 && c.stdout.contains("Seccomp:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command never ran: {}",
            c.stderr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let c = exec_capture(&init, &exec_spec(&["cat", "/tmp/f"]))
        .await
        .unwrap();
    assert_eq!(
        (c.code, c.stdout.as_str()),
        (0, "from-run\n"),
        "{}",
        c.stderr
    );
    let c = exec_capture(&init, &exec_spec(&["hostname"]))
        .await
        .unwrap();
    assert_eq!(c.stdout, "exec-host\n");
    let c = exec_capture(
        &init,
        &exec_spec(&["sh", "-c", "echo $FROM_EXEC; ls /proc"]),
    )
    .await
    .unwrap();
    let mut lines = c.stdout.lines();
    assert_eq!(lines.next(), Some("1"));
    let pids: Vec<u32> = lines.filter_map(|l| l.parse().ok()).collect();
    assert!(pids.contains(&1) && pids.len() <= 4, "{}", c.stdout);
    let c = exec_capture(&init, &exec_spec(&["cat", "/proc/self/status"]))
        .await
        .unwrap();
    let run_status = exec_capture(&init, &exec_spec(&["cat", "/tmp/status"]))
        .await
        .unwrap()
        .stdout;
    assert_eq!(isolation(&c.stdout), isolation(&run_status));
    assert!(
        isolation(&c.stdout).contains(&"NoNewPrivs:\t1"),
        "{}",
        c.stdout
    );

    let c = exec_capture(&init, &exec_spec(&["sh", "-c", "exit 5"]))
        .await
        .unwrap();
    assert_eq!(c.code, 5);
    // A command that cannot be started: 126, as docker exec (a sandbox's own command: 127).
    let c = exec_capture(&init, &exec_spec(&["no-such-command"]))
        .await
        .unwrap();
    assert_eq!(c.code, 126, "{}", c.stderr);
    assert!(
        c.stderr.contains("executable file not found"),
        "{}",
        c.stderr
    );
    let mut nobody = exec_spec(&["sh", "-c", "id -u; touch /etc/passwd"]);
    nobody.user = "nobody".into();
    let c = exec_capture(&init, &nobody).await.unwrap();
    assert_eq!(c.stdout, "65534\n");
    assert_ne!(c.code, 0);
    let mut cwd = exec_spec(&["pwd"]);
    cwd.cwd = "/no/such/dir".into();
    let err = exec_capture(&init, &cwd)
        .await
        .err()
        .expect("missing cwd fails");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");

    init.signal(libc::SIGKILL).unwrap();
    let result = run.await.unwrap().unwrap();
    assert_eq!(result.exit_code, 128 + libc::SIGKILL);
    let err = exec_capture(&init, &exec_spec(&["true"]))
        .await
        .err()
        .expect("exec into a stopped sandbox fails");
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn discarded_upper_is_volatile_and_mounts_again() {
    require_root!();
    let fx = fixture();
    let mut spec = fx.spec(&["sh", "-c", "grep ' / ' /proc/mounts; echo x > /f"]);
    spec.extra.discard_upper = true;
    let c = ok(&spec).await;
    assert!(c.stdout.contains("volatile"), "{}", c.stdout);
    assert!(fx.work.join("work/incompat/volatile").is_dir());
    // Restarted in the same boot: the kernel's mark is removed and the overlay mounted again.
    spec.args = vec!["cat".into(), "/f".into()];
    assert_eq!(ok(&spec).await.stdout, "x\n");

    let fx = fixture();
    let c = ok(&fx.spec(&["sh", "-c", "grep ' / ' /proc/mounts"])).await;
    assert!(!c.stdout.contains("volatile"), "{}", c.stdout);
}
