//! `kiln cp`, `kiln export`, `kiln diff` through the real binary, on running and stopped
//! containers. Needs root and Debian's busybox-static; skipped with a message otherwise.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// A state directory with the busybox base image, whose containers are removed when the
/// test ends.
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

    /// A running container named `name` (pid 1 sleeps) after `setup` ran in it.
    fn running(&self, name: &str, setup: &str) -> String {
        self.k.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            &format!("{setup}; exec sleep 1000"),
        ]);
        // `exec` works once the container runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.k.run(&["exec", name, "true"]).status.success() {
            assert!(std::time::Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        name.to_string()
    }

    /// A stopped container named `name` after `setup` ran in it.
    fn stopped(&self, name: &str, setup: &str) -> String {
        self.k
            .ok(&["run", "--name", name, "busybox", "sh", "-c", setup]);
        name.to_string()
    }

    /// `kiln cp ARGS…` expected to fail: its stderr.
    fn cp_fails(&self, args: &[&str]) -> String {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        let out = self.k.run(&all);
        assert_eq!(out.status.code(), Some(1), "kiln {all:?}: {}", stderr(&out));
        stderr(&out)
    }

    /// The names in the tar `kiln cp CTR:PATH -` writes.
    fn listing(&self, ctr_path: &str) -> Vec<String> {
        let out = self.k.ok(&["cp", ctr_path, "-"]);
        let mut a = tar::Archive::new(out.as_bytes());
        let mut names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        names.sort();
        names
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

const SETUP: &str = "mkdir -p /data/sub && echo one > /data/sub/f && echo top > /data/t";

fn both_ways(r: &Root, ctr: &str) {
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let p = |s: &str| h.join(s).to_str().unwrap().to_string();
    // Out: a file to a new name, a file into a directory, a directory to a new name.
    r.k.ok(&["cp", &format!("{ctr}:/data/t"), &p("t.copy")]);
    assert_eq!(std::fs::read_to_string(h.join("t.copy")).unwrap(), "top\n");
    r.k.ok(&["cp", &format!("{ctr}:/data/t"), &p("")]);
    assert_eq!(std::fs::read_to_string(h.join("t")).unwrap(), "top\n");
    r.k.ok(&["cp", &format!("{ctr}:/data"), &p("out")]);
    assert_eq!(
        std::fs::read_to_string(h.join("out/sub/f")).unwrap(),
        "one\n"
    );
    // In: a file and a directory, owned by root.
    write(h, "in/deep/x", "from the host\n");
    write(h, "file", "a file\n");
    r.k.ok(&["cp", &p("file"), &format!("{ctr}:/data/")]);
    r.k.ok(&["cp", &p("in"), &format!("{ctr}:/data")]);
    assert_eq!(
        r.listing(&format!("{ctr}:/data")),
        [
            "data",
            "data/file",
            "data/in",
            "data/in/deep",
            "data/in/deep/x",
            "data/sub",
            "data/sub/f",
            "data/t"
        ]
    );
    r.k.ok(&["cp", &format!("{ctr}:/data/in/deep/x"), &p("back")]);
    assert_eq!(
        std::fs::read_to_string(h.join("back")).unwrap(),
        "from the host\n"
    );
}

#[test]
fn cp_a_file_and_a_directory_both_ways() {
    let Some(r) = Root::new() else { return };
    let running = r.running("live", SETUP);
    both_ways(&r, &running);
    // What a running container sees.
    assert_eq!(
        r.k.ok(&["exec", "live", "cat", "/data/in/deep/x"]),
        "from the host\n"
    );
    let ls = r.k.ok(&["exec", "live", "ls", "-ln", "/data/file"]);
    assert!(
        ls.contains(" 0        0 ") || ls.split_whitespace().nth(2) == Some("0"),
        "{ls}"
    );
    let stopped = r.stopped("done", SETUP);
    both_ways(&r, &stopped);
}

#[test]
fn cp_tar_streams_both_ways() {
    let Some(r) = Root::new() else { return };
    for ctr in [r.running("live", SETUP), r.stopped("done", SETUP)] {
        assert_eq!(
            r.listing(&format!("{ctr}:/data")),
            ["data", "data/sub", "data/sub/f", "data/t"]
        );
        // A tar on stdin unpacks into a directory of the container.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o600);
        h.set_uid(1234);
        b.append_data(&mut h, "streamed/in.txt", &b"hello"[..])
            .unwrap();
        let data = b.into_inner().unwrap();
        let mut c = r.k.cmd();
        c.args(["cp", "-a", "-", &format!("{ctr}:/data")])
            .stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &data).unwrap();
        assert!(child.wait().unwrap().success());
        let out =
            r.k.ok(&["cp", &format!("{ctr}:/data/streamed/in.txt"), "-"]);
        let mut a = tar::Archive::new(out.as_bytes());
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            (e.header().uid().unwrap(), e.header().mode().unwrap()),
            (1234, 0o600),
            "-a keeps the owner"
        );
        // The destination of a stream must be a directory.
        let mut c = r.k.cmd();
        c.args(["cp", "-", &format!("{ctr}:/data/t")])
            .stderr(Stdio::piped());
        let out = c.spawn().unwrap().wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("must be a directory"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn cp_trailing_slash_rules() {
    let Some(r) = Root::new() else { return };
    let ctr = r.stopped("done", SETUP);
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let p = |s: &str| h.join(s).to_str().unwrap().to_string();
    // A file to a missing directory (trailing `/`) is an error.
    let e = r.cp_fails(&[&format!("{ctr}:/data/t"), &p("nodir/")]);
    assert!(e.contains("does not exist"), "{e}");
    assert!(!h.join("nodir").exists());
    // `SRC/.` copies the contents into an existing directory; `SRC` the directory itself.
    std::fs::create_dir(h.join("a")).unwrap();
    r.k.ok(&["cp", &format!("{ctr}:/data/."), &p("a")]);
    assert!(!h.join("a/data").exists());
    assert!(h.join("a/sub/f").exists() && h.join("a/t").exists());
    r.k.ok(&["cp", &format!("{ctr}:/data/"), &p("a")]);
    assert!(h.join("a/data/sub/f").exists());
    // A directory onto a file is an error; a missing parent is an error.
    let e = r.cp_fails(&[&format!("{ctr}:/data"), &p("a/t")]);
    assert!(e.contains("cannot copy a directory to a file"), "{e}");
    write(h, "f", "x");
    r.cp_fails(&[&p("f"), &format!("{ctr}:/no/such/")]);
    r.cp_fails(&[&p("a"), &format!("{ctr}:/no/such")]);
    // Missing sources.
    let e = r.cp_fails(&[&format!("{ctr}:/nope"), &p("x")]);
    assert_eq!(
        e.trim(),
        "error: Could not find the file /nope in container done"
    );
    let e = r.cp_fails(&[&p("missing"), &format!("{ctr}:/tmp")]);
    assert!(e.contains("no such file"), "{e}");
    let e = r.cp_fails(&[&p("f"), &p("g")]);
    assert!(e.contains("must specify at least one container"), "{e}");
}

/// Symlinks in the container to `/` and to `../../../../` lead to the container's root,
/// never the host's, whether cp reads or writes through them.
#[test]
fn cp_through_hostile_symlinks_stays_in_the_container() {
    let Some(r) = Root::new() else { return };
    let links = "ln -s / /escape && ln -s ../../../../ /up && mkdir -p /tmp/in";
    let marker = format!("kiln-cp-escape-{}", std::process::id());
    let host_file = Path::new("/tmp").join(&marker);
    std::fs::write(&host_file, "host secret\n").unwrap();
    /// Removes the host files whatever happens.
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let root_file = Path::new("/").join(&marker);
    let _cleanup = Cleanup(vec![host_file.clone(), root_file.clone()]);
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join(&marker);
    std::fs::write(&src, "written by cp\n").unwrap();
    let s = src.to_str().unwrap();
    for ctr in [r.running("live", links), r.stopped("done", links)] {
        // Writes through the links land in the container.
        r.k.ok(&["cp", s, &format!("{ctr}:/escape/")]);
        r.k.ok(&["cp", s, &format!("{ctr}:/up/tmp/")]);
        r.k.ok(&["cp", s, &format!("{ctr}:/escape")]);
        assert!(!root_file.exists(), "cp wrote to the host's /");
        assert_eq!(
            std::fs::read_to_string(&host_file).unwrap(),
            "host secret\n",
            "cp wrote to the host's /tmp"
        );
        assert_eq!(r.listing(&format!("{ctr}:/{marker}")), [marker.as_str()]);
        assert_eq!(
            r.listing(&format!("{ctr}:/tmp/{marker}")),
            [marker.as_str()]
        );
        // Reads through them do not reach the host's files.
        let out = host.path().join("read");
        std::fs::remove_file(&out).ok();
        r.k.ok(&[
            "cp",
            &format!("{ctr}:/up/tmp/{marker}"),
            out.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "written by cp\n");
        let e = r.cp_fails(&[
            &format!("{ctr}:/escape/etc/hostname/../../proc/1/root/tmp/{marker}x"),
            out.to_str().unwrap(),
        ]);
        assert!(e.contains("Could not find the file"), "{e}");
        // A link named as the destination itself is followed in the root too.
        // `-L` on a link to `../../../../` copies the container's root, not the host's.
        let copy = host.path().join(format!("rootcopy-{ctr}"));
        r.k.ok(&["cp", "-L", &format!("{ctr}:/up"), copy.to_str().unwrap()]);
        assert!(copy.join(&marker).exists() && copy.join("bin/busybox").exists());
        assert!(!copy.join("usr/lib").exists() && !copy.join(".dockerenv").exists());
        assert!(!copy.join("work").exists() && !copy.join("proc/self").exists());
    }
}

#[test]
fn export_lists_the_files() {
    let Some(r) = Root::new() else { return };
    for ctr in [r.running("live", SETUP), r.stopped("done", SETUP)] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.tar");
        r.k.ok(&["export", "-o", file.to_str().unwrap(), &ctr]);
        let out = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
        assert!(out.status.success());
        let names = stdout(&out);
        for want in ["bin/busybox", "data/sub/f", "data/t", "etc/passwd", "proc"] {
            assert!(
                names.lines().any(|l| l.trim_end_matches('/') == want),
                "{want} missing:\n{names}"
            );
        }
        // Nothing of a running container's /proc: only its mount point.
        assert!(!names.lines().any(|l| l.starts_with("proc/")), "{names}");
        let piped = r.k.ok(&["export", &ctr]);
        assert!(piped.len() > 1000);
    }
}

#[test]
fn diff_shows_added_changed_deleted() {
    let Some(r) = Root::new() else { return };
    let setup = "echo x > /etc/new && echo y >> /etc/group && rm /etc/passwd && mkdir /made";
    for ctr in [r.running("live", setup), r.stopped("done", setup)] {
        assert_eq!(
            r.k.ok(&["diff", &ctr]),
            "C /etc\nC /etc/group\nA /etc/new\nD /etc/passwd\nA /made\n"
        );
    }
}

/// A stopped container's volumes are mounted for `cp` (as docker does), read-only ones
/// refuse writes.
#[test]
fn cp_reaches_a_stopped_containers_volumes() {
    let Some(r) = Root::new() else { return };
    let host = tempfile::tempdir().unwrap();
    let ro = host.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let bind = format!("{}:/ro:ro", ro.display());
    r.k.ok(&[
        "run",
        "--name",
        "vs",
        "-v",
        "cpvol:/v",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo in-volume > /v/a",
    ]);
    assert_eq!(r.listing("vs:/v/a"), ["a"]);
    write(host.path(), "f", "to the volume\n");
    let f = host.path().join("f");
    r.k.ok(&["cp", f.to_str().unwrap(), "vs:/v/"]);
    let out =
        r.k.ok(&["run", "--rm", "-v", "cpvol:/v", "busybox", "cat", "/v/f"]);
    assert_eq!(out, "to the volume\n");
    let e = r.cp_fails(&[f.to_str().unwrap(), "vs:/ro/"]);
    assert!(e.contains("Read-only file system"), "{e}");
    assert!(!ro.join("f").exists());
    r.k.ok(&["rm", "vs"]);
    r.k.ok(&["volume", "rm", "cpvol"]);
}
