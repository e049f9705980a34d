//! Containers through the real `kiln` binary: `run -d`, `ps`, `logs`, `stop`, `kill`,
//! `wait`, `rm`, `exec`. Needs root and Debian's busybox-static (the base image is imported
//! locally, no registry or network); skipped with a message otherwise.

mod common;
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A state directory with the busybox base image, whose containers are removed (`rm -f`)
/// when the test ends, whatever happened.
struct Root {
    k: Kiln,
}

impl Root {
    fn new() -> Option<Root> {
        if !can_run(&[]) {
            return None;
        }
        let k = Kiln::new();
        k.seed_local_base();
        Some(Root { k })
    }

    /// `kiln run -d ARGS…`: returns the id it printed.
    fn run_d(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = self.k.ok(&all).trim().to_string();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "run -d prints the full id: {id:?}"
        );
        id
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.k.root.path().join("containers").join(id)
    }

    /// The state file's field `key` (e.g. the shim's pid).
    fn state(&self, id: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir(id).join("state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `kiln ps` (with `-a`) as (id, status, name) rows.
    fn ps(&self, all: bool) -> Vec<(String, String, String)> {
        let out = if all {
            self.k.ok(&["ps", "-a"])
        } else {
            self.k.ok(&["ps"])
        };
        let mut lines = out.lines();
        let header = lines.next().expect("a header line");
        let col = |name: &str| header.find(name).unwrap();
        let (status, names) = (col("STATUS"), col("NAMES"));
        lines
            .map(|l| {
                (
                    l[..12].to_string(),
                    l[status..names].trim().to_string(),
                    l[names..].trim().to_string(),
                )
            })
            .collect()
    }

    fn status_of(&self, id: &str) -> Option<String> {
        self.ps(true)
            .into_iter()
            .find(|(i, _, _)| id.starts_with(i.as_str()))
            .map(|(_, s, _)| s)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let ids = self.k.run(&["ps", "-aq"]);
        for id in stdout(&ids).lines() {
            let _ = self.k.run(&["rm", "-f", id]);
        }
    }
}

/// Polls `f` every 10 ms until it is true; panics with `what` after 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pid_alive(pid: i64) -> bool {
    // A zombie is dead too.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit_once(')').map_or("", |(_, r)| r.trim_start());
        !state.starts_with('Z')
    })
}

#[test]
fn detached_container_is_up_in_ps_and_its_output_in_logs() {
    let Some(r) = Root::new() else { return };
    let start = Instant::now();
    let id = r.run_d(&[
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        // The streams are separate pipes: only a pause orders records across them.
        "echo to-out; echo to-err >&2; sleep 0.2; echo second; exec sleep 1000",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "run -d returns at once"
    );
    let rows = r.ps(false);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, id[..12]);
    assert!(rows[0].1.starts_with("Up "), "{rows:?}");
    assert_eq!(rows[0].2, "web");
    assert_eq!(r.k.ok(&["ps", "-q"]).trim(), &id[..12]);

    eventually("the output is logged", || {
        r.k.ok(&["logs", "web"]).contains("second")
    });
    let logs = r.k.run(&["logs", "web"]);
    assert_eq!(stdout(&logs), "to-out\nsecond\n");
    assert_eq!(stderr(&logs), "to-err\n");
    let tail = r.k.run(&["logs", "--tail", "1", &id[..8]]);
    assert_eq!(stdout(&tail), "second\n", "the last record, by id prefix");
    assert_eq!(stderr(&tail), "");
}

#[test]
fn logs_follow_prints_output_until_the_container_exits() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&[
        "busybox",
        "sh",
        "-c",
        "echo first; sleep 0.5; echo second; echo late-err >&2; exit 2",
    ]);
    let start = Instant::now();
    let follow = r.k.run(&["logs", "-f", &id]);
    assert!(follow.status.success(), "{}", stderr(&follow));
    assert_eq!(stdout(&follow), "first\nsecond\n");
    assert_eq!(stderr(&follow), "late-err\n");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(r.status_of(&id).unwrap().starts_with("Exited (2) "));
    let stamped = r.k.ok(&["logs", "-t", &id]);
    let (time, line) = stamped.lines().next().unwrap().split_once(' ').unwrap();
    assert_eq!(line, "first");
    assert!(time.ends_with('Z') && time.contains('T'), "{stamped}");
}

#[test]
fn stop_records_the_exit_code_and_ps_all_shows_it() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&[
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; trap 'echo got-winch' WINCH; echo ready; \
         while :; do sleep 0.05; done",
    ]);
    eventually("the trap is set", || {
        r.k.ok(&["logs", &id]).contains("ready")
    });
    // Any signal a process may handle reaches the command (through the sandbox's pid 1).
    assert_eq!(r.k.ok(&["kill", "-s", "SIGWINCH", &id]).trim(), id);
    eventually("the command got SIGWINCH", || {
        r.k.ok(&["logs", &id]).contains("got-winch")
    });
    assert!(r.status_of(&id).unwrap().starts_with("Up "));
    let start = Instant::now();
    assert_eq!(r.k.ok(&["stop", &id]).trim(), id);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "SIGTERM stopped it, no SIGKILL after the timeout"
    );
    assert!(r.ps(false).is_empty(), "stopped: not in ps");
    let status = r.status_of(&id).expect("ps -a lists it");
    assert!(status.starts_with("Exited (3) "), "{status}");
    assert_eq!(r.k.ok(&["wait", &id]).trim(), "3");
    assert!(r.k.ok(&["logs", &id]).contains("got-term"));

    // SIGTERM ignored: SIGKILL after -t seconds.
    let id = r.run_d(&[
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    eventually("the trap is set", || {
        r.k.ok(&["logs", &id]).contains("ready")
    });
    r.k.ok(&["stop", "-t", "1", &id]);
    assert!(r.status_of(&id).unwrap().starts_with("Exited (137) "));
}

#[test]
fn exec_runs_in_the_containers_filesystem_hostname_and_pid_namespace() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&[
        "--name",
        "box",
        "-e",
        "FROM_RUN=yes",
        "busybox",
        "sh",
        "-c",
        "echo written-by-the-container > /tmp/file; \
         echo nobody:x:65534:65534:nobody:/:/bin/sh >> /etc/passwd; \
         echo secret > /root-owned; chmod 644 /root-owned; exec sleep 1000",
    ]);
    eventually("the container wrote its files", || {
        r.k.run(&["exec", "box", "test", "-e", "/root-owned"])
            .status
            .success()
    });
    assert_eq!(
        r.k.ok(&["exec", "box", "cat", "/tmp/file"]),
        "written-by-the-container\n"
    );
    assert_eq!(r.k.ok(&["exec", "box", "hostname"]).trim(), &id[..12]);
    assert_eq!(
        r.k.ok(&[
            "exec",
            "-e",
            "FROM_EXEC=1",
            "box",
            "sh",
            "-c",
            "echo $FROM_RUN $FROM_EXEC"
        ]),
        "yes 1\n",
        "the container's environment plus -e"
    );

    // The container's pid namespace: its pid 1, its sleep, and the exec'd ls.
    let procs = r.k.ok(&["exec", "box", "ls", "/proc"]);
    let pids: Vec<u32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(pids.contains(&1), "{procs}");
    assert!(pids.len() <= 4, "only the container's processes: {pids:?}");
    let ps = r.k.ok(&["exec", "box", "ps"]);
    assert!(ps.contains("sleep 1000"), "{ps}");
    assert!(
        !ps.contains("__kiln-shim"),
        "the host's processes are not visible: {ps}"
    );

    // Exit codes: the command's own (127 from a shell included); 126 when it cannot be
    // started, found or not (as docker exec).
    assert_eq!(
        r.k.run(&["exec", "box", "sh", "-c", "exit 42"])
            .status
            .code(),
        Some(42)
    );
    assert_eq!(
        r.k.run(&["exec", "box", "sh", "-c", "no-such-command"])
            .status
            .code(),
        Some(127)
    );
    let missing = r.k.run(&["exec", "box", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(126), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("executable file not found"));
    assert_eq!(
        r.k.run(&["exec", "box", "/etc/passwd"]).status.code(),
        Some(126)
    );

    // -u: a user of the container's /etc/passwd (added by the container itself), without
    // write access to a root-owned file.
    let nobody = r.k.run(&[
        "exec",
        "-u",
        "nobody",
        "box",
        "sh",
        "-c",
        "id -u; echo x >> /root-owned",
    ]);
    assert_eq!(stdout(&nobody), "65534\n");
    assert_ne!(nobody.status.code(), Some(0));
    assert!(
        stderr(&nobody).contains("Permission denied"),
        "{}",
        stderr(&nobody)
    );
    assert_eq!(r.k.ok(&["exec", "box", "cat", "/root-owned"]), "secret\n");

    // stdin only with -i.
    let mut c = r.k.cmd();
    c.args(["exec", "-i", "box", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"piped\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "piped\n");

    // A stopped container and an unknown one fail clearly, with exit 1.
    r.k.ok(&["kill", "box"]);
    eventually("the container is down", || {
        r.status_of(&id)
            .is_some_and(|s| s.starts_with("Exited (137)"))
    });
    let stopped = r.k.run(&["exec", "box", "true"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stderr(&stopped).contains("is not running"),
        "{}",
        stderr(&stopped)
    );
    let unknown = r.k.run(&["exec", "nothing-like-this", "true"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("No such container: nothing-like-this"));
}

#[test]
fn a_detached_containers_monitor_is_the_small_static_kiln_shim() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["busybox", "sleep", "1000"]);
    let state = r.state(&id);
    let small = PathBuf::from(env!("CARGO_BIN_EXE_kiln-shim"))
        .canonicalize()
        .unwrap();
    // The shim, and the sandbox's pid 1 (a fork of the helper), run from kiln-shim.
    for what in ["supervisor", "init"] {
        let pid = state[what]["pid"].as_i64().unwrap();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, small, "{what}");
    }
    let shim = state["supervisor"]["pid"].as_i64().unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{shim}/maps")).unwrap();
    assert!(
        !maps.contains(".so"),
        "statically linked: no shared library mapped\n{maps}"
    );
    let status = r.k.ok(&["exec", &id, "echo", "ok"]);
    assert_eq!(status.trim(), "ok");
}

#[test]
fn a_killed_shim_does_not_leave_the_container_up() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["busybox", "sleep", "1000"]);
    let state = r.state(&id);
    let shim = state["supervisor"]["pid"].as_i64().unwrap();
    let init = state["init"]["pid"].as_i64().unwrap();
    assert!(r.status_of(&id).unwrap().starts_with("Up "));
    // SAFETY: plain system call on a pid of ours.
    assert_eq!(unsafe { libc::kill(shim as i32, libc::SIGKILL) }, 0);
    eventually("the shim is gone", || !pid_alive(shim));
    assert!(r.ps(false).is_empty(), "not Up without its shim");
    let status = r.status_of(&id).unwrap();
    assert!(status.starts_with("Exited (255) "), "{status}");
    eventually("the sandbox died with its shim", || !pid_alive(init));
    let exec = r.k.run(&["exec", &id, "true"]);
    assert_eq!(exec.status.code(), Some(1));

    // With --rm, the container is removed once its dead shim is noticed.
    let id = r.run_d(&["--rm", "busybox", "sleep", "1000"]);
    let shim = r.state(&id)["supervisor"]["pid"].as_i64().unwrap();
    // SAFETY: plain system call on a pid of ours.
    assert_eq!(unsafe { libc::kill(shim as i32, libc::SIGKILL) }, 0);
    eventually("the shim is gone", || !pid_alive(shim));
    assert!(r.status_of(&id).is_none(), "{:?}", r.ps(true));
    assert!(!r.dir(&id).exists());
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--name", "victim", "busybox", "sleep", "1000"]);
    let init = r.state(&id)["init"]["pid"].as_i64().unwrap();
    let refused = r.k.run(&["rm", "victim"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("container is running"),
        "{}",
        stderr(&refused)
    );
    assert!(r.dir(&id).is_dir());
    assert_eq!(r.k.ok(&["rm", "-f", "victim"]).trim(), "victim");
    assert!(!r.dir(&id).exists(), "its directory is removed");
    assert!(!pid_alive(init), "its processes are killed");
    assert!(r.ps(true).is_empty());
    assert!(files_below(&r.k.root.path().join("containers")).is_empty());
}

#[test]
fn rm_with_detach_removes_the_container_when_it_exits() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--rm", "busybox", "sh", "-c", "sleep 0.2; exit 4"]);
    assert_eq!(
        r.k.ok(&["wait", &id]).trim(),
        "4",
        "wait reads the code before removal"
    );
    eventually("the container removed itself", || !r.dir(&id).exists());
    assert!(r.ps(true).is_empty());
}

#[test]
fn duplicate_names_are_rejected() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--name", "same", "busybox", "sleep", "1000"]);
    let dup = r.k.run(&["run", "-d", "--name", "same", "busybox", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(
        stderr(&dup).contains("\"/same\" is already in use by container"),
        "{}",
        stderr(&dup)
    );
    assert_eq!(r.ps(true).len(), 1, "nothing was created");
    let foreground =
        r.k.run(&["run", "--rm", "--name", "same", "busybox", "true"]);
    assert_eq!(foreground.status.code(), Some(125));
    r.k.ok(&["rm", "-f", &id]);
    r.run_d(&["--name", "same", "busybox", "true"]);
}

#[test]
fn prune_keeps_the_layers_of_containers_whose_image_is_gone() {
    let Some(r) = Root::new() else { return };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\nRUN echo mine > /mine\n",
    );
    assert!(r.k.build(ctx.path(), &["-t", "app"]).0);
    let id = r.run_d(&["--name", "keeper", "app", "sleep", "30"]);
    // As docker, the image of a container is untagged only with -f.
    r.k.ok(&["rmi", "-f", "app"]);
    r.k.ok(&["builder", "prune", "--all"]);
    assert_eq!(r.k.ok(&["exec", &id, "cat", "/mine"]), "mine\n");
    r.k.ok(&["rm", "-f", &id]);
    // Once the container is gone, so is what only it (and its image, dangling since the
    // rmi -f, which an image prune removes) held.
    let before = std::fs::read_dir(r.k.root.path().join("snapshots"))
        .unwrap()
        .count();
    r.k.ok(&["image", "prune", "-f"]);
    r.k.ok(&["builder", "prune", "--all"]);
    let after = std::fs::read_dir(r.k.root.path().join("snapshots"))
        .unwrap()
        .count();
    assert!(after < before, "{before} → {after}");
}

#[test]
fn run_passes_stdin_only_with_i() {
    let Some(r) = Root::new() else { return };
    let with = |args: &[&str]| {
        let mut child =
            r.k.cmd()
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"piped\n").unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        with(&["run", "--rm", "-i", "busybox:latest", "cat"]),
        "piped\n"
    );
    assert_eq!(
        with(&["run", "--rm", "busybox:latest", "cat"]),
        "",
        "no -i: empty stdin"
    );
}

/// Issue 11, item 3: a container and a RUN step can `mknod` a host device but not open it;
/// `--privileged`, `RUN --security=insecure` and `--device` open what they allow.
#[test]
fn issue_11_device_nodes_cannot_be_opened_without_privileges() {
    let Some(r) = Root::new() else { return };
    let loop0 = std::fs::metadata("/dev/loop0")
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));

    let out = r.k.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mknod /x b 7 0 && cat /x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cat: can't open '/x': Operation not permitted"),
        "{}",
        stderr(&out)
    );
    if loop0 {
        let out = r.k.ok(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "sh",
            "-c",
            "mknod /x b 7 0 && head -c 1 /x > /dev/null && echo opened",
        ]);
        assert_eq!(out, "opened\n");
        // --device: readable at the container path, not writable with `r`.
        let out = r.k.run(&[
            "run",
            "--rm",
            "--device",
            "/dev/loop0:/dev/xloop:r",
            "busybox",
            "sh",
            "-c",
            "head -c 1 /dev/xloop > /dev/null && echo read; echo > /dev/xloop",
        ]);
        assert_eq!(stdout(&out), "read\n", "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Operation not permitted"),
            "{}",
            stderr(&out)
        );
    }
    let out = r.k.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/xnull",
        "busybox",
        "sh",
        "-c",
        "echo x > /dev/xnull && stat -c %t:%T /dev/xnull",
    ]);
    assert_eq!(out, "1:3\n");
    // Bad flags: a usage error; a missing host device: docker's 125 with its path.
    let out = r.k.run(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/x:rwx",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid device mode: rwx"),
        "{}",
        stderr(&out)
    );
    let out = r.k.run(&[
        "run",
        "--rm",
        "--device",
        "/dev/kiln-nope",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("/dev/kiln-nope"), "{}", stderr(&out));

    // kiln exec into a running container: the same rules.
    r.run_d(&["--name", "devbox", "busybox", "sleep", "1000"]);
    let out =
        r.k.run(&["exec", "devbox", "sh", "-c", "mknod /y b 7 0 && cat /y"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    // A RUN step, and one with --security=insecure.
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nRUN mknod /x b 7 0 && cat /x\n",
    );
    let (ok, log) = r.k.build(ctx.path(), &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    if loop0 {
        write(
            ctx.path(),
            "Dockerfile",
            "FROM busybox\nRUN --security=insecure mknod /x b 7 0 && head -c 1 /x > /dev/null \
             && rm /x\n",
        );
        let (ok, log) = r.k.build(ctx.path(), &["--allow", "security.insecure"]);
        assert!(ok, "{log}");
    }
}

#[test]
fn run_d_that_cannot_start_exits_125_and_leaves_no_container_or_volume() {
    let Some(r) = Root::new() else { return };
    let missing = r.k.root.path().join("no-such-dir");
    let bind = format!("{}:/data", missing.display());
    // An anonymous volume too: made for the container, so it goes with it.
    let out =
        r.k.run(&["run", "-d", "-v", "/anon", "-v", &bind, "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no id is printed");
    assert!(
        stderr(&out).contains("no-such-dir") && stderr(&out).starts_with("error: "),
        "{}",
        stderr(&out)
    );
    assert!(r.ps(true).is_empty(), "{:?}", r.ps(true));
    let dirs = std::fs::read_dir(r.k.root.path().join("containers")).map_or(0, Iterator::count);
    assert_eq!(dirs, 0, "no container directory is left");
    assert_eq!(r.k.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn stop_then_start_keeps_the_writable_layer_name_and_id() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--name", "keep", "-v", "/vol", "busybox", "sleep", "60"]);
    r.k.ok(&[
        "exec",
        "keep",
        "sh",
        "-c",
        "echo layer > /file; echo vol > /vol/f",
    ]);
    r.k.ok(&["stop", "-t", "1", "keep"]);
    assert!(r.status_of(&id).unwrap().starts_with("Exited "));
    assert_eq!(r.k.ok(&["start", "keep"]).trim(), "keep");
    assert!(
        r.status_of(&id).unwrap().starts_with("Up "),
        "{:?}",
        r.ps(true)
    );
    assert_eq!(
        r.ps(false),
        [(
            id[..12].to_string(),
            r.status_of(&id).unwrap(),
            "keep".to_string()
        )]
    );
    assert_eq!(
        r.k.ok(&["exec", "keep", "cat", "/file", "/vol/f"]),
        "layer\nvol\n"
    );
    // Starting a running container changes nothing.
    assert_eq!(r.k.ok(&["start", &id]).trim(), id);

    assert_eq!(r.k.ok(&["restart", "-t", "1", "keep"]).trim(), "keep");
    assert!(r.status_of(&id).unwrap().starts_with("Up "));
    assert_eq!(
        r.k.ok(&["exec", "keep", "cat", "/file", "/vol/f"]),
        "layer\nvol\n"
    );
}

#[test]
fn create_then_start_a_gives_the_output_and_the_exit_code() {
    let Some(r) = Root::new() else { return };
    let id =
        r.k.ok(&[
            "create",
            "--name",
            "job",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "create prints the full id: {id}");
    assert_eq!(r.status_of(&id).as_deref(), Some("Created"));
    let out = r.k.run(&["start", "-a", "job"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    assert!(r.status_of(&id).unwrap().starts_with("Exited (7) "));
    // Again: the same container, only the new output.
    let out = r.k.run(&["start", "-a", &id]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(r.k.ok(&["logs", "job"]), "out\nout\n");
    // Without -a: started, the name printed, exit 0.
    assert_eq!(r.k.ok(&["start", "job"]).trim(), "job");
    assert_eq!(r.k.ok(&["wait", "job"]).trim(), "7");
}

#[test]
fn rename_then_ps_shows_the_new_name() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--name", "old", "busybox", "sleep", "60"]);
    r.run_d(&["--name", "other", "busybox", "sleep", "60"]);
    let out = r.k.run(&["rename", "old", "new"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let row = r
        .ps(false)
        .into_iter()
        .find(|(i, _, _)| id.starts_with(i.as_str()));
    assert_eq!(row.unwrap().2, "new");
    let out = r.k.run(&["rename", "new", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"/other\" is already in use"),
        "{}",
        stderr(&out)
    );
    let out = r.k.run(&["rename", "old", "x1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: No such container: old\n");
}

#[test]
fn start_and_restart_of_a_missing_container_exit_1() {
    let Some(r) = Root::new() else { return };
    for cmd in ["start", "restart"] {
        let out = r.k.run(&[cmd, "nope"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert_eq!(stderr(&out), "error: No such container: nope\n", "{cmd}");
    }
}

#[test]
fn container_prune_removes_only_stopped_containers_and_the_aliases_work() {
    let Some(r) = Root::new() else { return };
    let up = r.run_d(&["--name", "up", "busybox", "sleep", "60"]);
    let created = r.k.ok(&["container", "create", "busybox", "true"]);
    let created = created.trim();
    let exited = r.run_d(&["busybox", "true"]);
    r.k.ok(&["wait", &exited]);
    // Nothing was created a day ago.
    let out =
        r.k.ok(&["container", "prune", "-f", "--filter", "until=24h"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    assert_eq!(r.ps(true).len(), 3);
    let out = r.k.ok(&["container", "prune", "-f"]);
    let mut deleted: Vec<&str> = out
        .strip_prefix("Deleted Containers:\n")
        .unwrap_or_else(|| panic!("{out}"))
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    deleted.sort_unstable();
    let mut want = vec![created, exited.as_str()];
    want.sort_unstable();
    assert_eq!(deleted, want);
    assert!(out.contains("\nTotal reclaimed space: "), "{out}");
    let ls = r.k.ok(&["container", "ls", "-aq"]);
    assert_eq!(ls, format!("{}\n", &up[..12]));
    assert_eq!(r.k.ok(&["container", "ps", "-q"]), ls);
    assert_eq!(r.k.ok(&["container", "stop", "-t", "1", "up"]).trim(), "up");
    assert_eq!(r.k.ok(&["container", "start", "up"]).trim(), "up");
    assert!(r.status_of(&up).unwrap().starts_with("Up "));
    let out =
        r.k.run(&["container", "prune", "--filter", "label=x", "-f"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn inspect_shows_a_container_in_dockers_shape_before_an_image_of_the_same_name() {
    let Some(r) = Root::new() else { return };
    let id = r.run_d(&["--name", "busybox", "busybox", "sh", "-c", "exit 5"]);
    r.k.ok(&["wait", &id]);
    let parse = |s: String| -> serde_json::Value { serde_json::from_str(&s).unwrap() };
    let v = parse(r.k.ok(&["inspect", "busybox"]));
    let c = &v[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/busybox");
    assert_eq!(c["Path"], "sh");
    assert_eq!(c["Args"], serde_json::json!(["-c", "exit 5"]));
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["State"]["ExitCode"], 5);
    assert!(c["State"]["FinishedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(
        parse(r.k.ok(&["container", "inspect", &id[..12]]))[0]["Id"],
        id.as_str()
    );
    // --type image: the image of that name.
    let img = parse(r.k.ok(&["inspect", "--type", "image", "busybox"]));
    assert!(
        img[0]["Id"].as_str().unwrap().starts_with("sha256:"),
        "{img}"
    );
    assert!(img[0].get("State").is_none());
    let out = r.k.run(&["inspect", "nothing-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: No such object: nothing-here\n");
    let out = r.k.run(&["inspect", "--type", "container", "nothing-here"]);
    assert_eq!(stderr(&out), "error: No such container: nothing-here\n");
}

#[test]
fn run_d_of_a_command_that_cannot_start_exits_127_or_126_and_leaves_nothing() {
    let Some(r) = Root::new() else { return };
    for (cmd, code, said) in [
        ("/nonexistent", 127, "no such file or directory"),
        ("nothere", 127, "executable file not found in $PATH"),
        ("/etc", 126, "permission denied"),
    ] {
        let out = r.k.run(&["run", "-d", "busybox", cmd]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{cmd}: no id is printed");
        assert!(stderr(&out).contains(said), "{cmd}: {}", stderr(&out));
        assert!(r.ps(true).is_empty(), "{cmd}: {:?}", r.ps(true));
    }
    // A command that started and exited 127 is a container that ran.
    let id = r.run_d(&["busybox", "sh", "-c", "exit 127"]);
    assert_eq!(r.k.ok(&["wait", &id]).trim(), "127");
}
