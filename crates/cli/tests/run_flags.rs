//! `kiln run`'s docker flags beyond the basics, through the real binary: what the process in
//! the container sees (`--env-file`, `--read-only`, `--cap-add`/`--cap-drop`, `--ulimit`,
//! `--security-opt`, relative `-v ./dir:/x`), what is stored (`--label`) and docker's
//! refusals. Needs root and Debian's busybox-static (skipped with a message otherwise,
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
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
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
