//! Test harness: a real registry (Debian's `docker-registry`) on a free loopback port, a
//! busybox base image made from Debian's `busybox-static`, and the `kiln` binary with a
//! temporary `--root`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// True when the test may run; prints why it is skipped otherwise.
pub(crate) fn can_run(tools: &[&str]) -> bool {
    kiln_testutil::require_root("namespaces, overlayfs, mounts")
        && kiln_testutil::require_tools(tools)
}

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

pub(crate) fn kiln_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The registry crate's throwaway `docker-registry`, which can also run with htpasswd auth
/// (`Registry::start_with_auth`, `USER`/`PASSWORD`): one implementation for both crates'
/// tests, included from there.
#[path = "../../../registry/tests/common/server.rs"]
pub(crate) mod registry_server;

/// A `docker-registry` serving on a free loopback port; killed on drop.
pub(crate) struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_at(&format!("127.0.0.1:{port}"))
    }

    /// A registry on a fixed address (the conformance corpus names 127.0.0.1:5000).
    pub(crate) fn start_at(addr: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = addr.to_string();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}}}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Registry {
    /// The registry's storage directory (`docker/registry/v2/blobs/…` below it).
    pub(crate) fn storage(&self) -> PathBuf {
        self._dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kiln state directory.
pub(crate) struct Kiln {
    pub root: tempfile::TempDir,
}

impl Kiln {
    pub(crate) fn new() -> Kiln {
        Kiln {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(kiln_bin());
        c.arg("--root").arg(self.root.path());
        c.stdin(Stdio::null());
        c
    }

    /// Runs kiln with `args`; returns the output (never panics on failure).
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run kiln")
    }

    /// Runs kiln and asserts success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports the busybox base image as `REGISTRY/busybox:latest` and pushes it.
    pub(crate) fn seed_base(&self, registry: &Registry) -> String {
        let tar = self.root.path().join("busybox-rootfs.tar");
        busybox_rootfs_tar(&tar);
        let name = format!("{}/busybox:latest", registry.addr);
        self.ok(&["import", "-c", "CMD [\"sh\"]", tar.to_str().unwrap(), &name]);
        self.ok(&["push", &name]);
        std::fs::remove_file(&tar).unwrap();
        name
    }
}

impl Kiln {
    /// Imports the busybox base image as `busybox:latest` in this root only (no registry).
    pub(crate) fn seed_local_base(&self) -> String {
        let tar = self.root.path().join("busybox-rootfs.tar");
        busybox_rootfs_tar(&tar);
        let name = "busybox:latest".to_string();
        self.ok(&["import", "-c", "CMD [\"sh\"]", tar.to_str().unwrap(), &name]);
        std::fs::remove_file(&tar).unwrap();
        name
    }

    /// Runs `kiln build --progress plain ARGS… CONTEXT`; returns (success, stderr).
    pub(crate) fn build(&self, context: &Path, args: &[&str]) -> (bool, String) {
        let mut c = self.cmd();
        c.args(["build", "--progress", "plain"])
            .args(args)
            .arg(context);
        let out = c.output().expect("run kiln build");
        (out.status.success(), stderr(&out))
    }
}

/// A root with the local busybox base image and an empty context dir, when the tools a
/// test needs are there (`can_run`).
pub(crate) fn local_project(tools: &[&str]) -> Option<(Kiln, tempfile::TempDir)> {
    if !can_run(tools) {
        return None;
    }
    let k = Kiln::new();
    k.seed_local_base();
    Some((k, tempfile::tempdir().unwrap()))
}

/// The step names a plain build log shows as CACHED, and those it ran (`DONE`).
pub(crate) fn cached_and_run(log: &str) -> (Vec<String>, Vec<String>) {
    let mut names = std::collections::HashMap::new();
    let (mut cached, mut run) = (vec![], vec![]);
    for l in log.lines() {
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let Some((n, what)) = rest.split_once(' ') else {
            continue;
        };
        if what == "CACHED" {
            cached.push(names.get(n).cloned().unwrap_or_default());
        } else if what.starts_with("DONE ") {
            run.push(names.get(n).cloned().unwrap_or_default());
        } else if what.starts_with('[') {
            names.insert(n.to_string(), what.to_string());
        }
    }
    (cached, run)
}

/// Writes the base rootfs the conformance corpus describes: /bin/busybox, a symlink per
/// applet, /etc/passwd and /etc/group with root, empty standard dirs.
pub(crate) fn busybox_rootfs_tar(out: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for dir in [
        "bin", "etc", "tmp", "root", "proc", "sys", "dev", "var", "usr/bin", "sbin",
    ] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::copy(busybox, r.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
    let st = Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
        ])
        .arg(r)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file below `dir` (relative paths), for checking that nothing was left behind.
pub(crate) fn files_below(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v
}

/// Writes `text` to `dir/name`, creating parent directories.
pub(crate) fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A [`Kiln`] with the busybox base image whose containers are removed (`rm -f`) when it is
/// dropped, whatever the test did; `None` when the test cannot run here.
pub(crate) struct ContainerRoot(pub(crate) Kiln);

impl ContainerRoot {
    pub(crate) fn new() -> Option<ContainerRoot> {
        if !can_run(&[]) {
            return None;
        }
        let k = Kiln::new();
        k.seed_local_base();
        Some(ContainerRoot(k))
    }
}

impl Drop for ContainerRoot {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-aq"]);
        for id in stdout(&ids).split_whitespace() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}
