//! Per-sandbox cgroups for [`crate::Resources`].
//!
//! The caller ([`crate::Executor::run_detailed`]) locates the cgroup (`kiln/<id>` below its own
//! cgroup in each hierarchy it needs, so that limits set on the caller still apply) and passes
//! it to the helper; the sandbox's pid 1 creates it, writes the limits, moves itself into it
//! (writing `0` to `cgroup.procs`) and only then unshares its cgroup namespace and forks the
//! command. After the helper exits, the caller reads the OOM-kill counter and removes the
//! directories (also when the `run` future is dropped, from a background thread).
//!
//! cgroup v2 is used when a `cgroup2` hierarchy offers every controller needed (`memory.max`,
//! `memory.swap.max` = 0, `cpu.max`, `pids.max`), otherwise the v1 hierarchies
//! (`memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` with the same value, so no
//! swap, as `docker run --memory M --memory-swap M`; `cpu.cfs_period_us` = 100000 and
//! `cpu.cfs_quota_us`; `pids.max`). Sandboxes without limits get no cgroup of their own.

use crate::Resources;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// Period for `--cpus` (as Docker).
const CPU_PERIOD: u64 = 100_000;

/// A sandbox's cgroup: one directory per v1 controller, or one v2 directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    v2: bool,
    /// (controller, directory); on v2 the controller is empty.
    dirs: Vec<(String, PathBuf)>,
}

struct Mount {
    fstype: String,
    root: String,
    point: PathBuf,
    options: Vec<String>,
}

fn mounts() -> io::Result<Vec<Mount>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        if post[0] != "cgroup" && post[0] != "cgroup2" {
            continue;
        }
        out.push(Mount {
            fstype: post[0].to_string(),
            root: unescape(pre[3]),
            point: PathBuf::from(unescape(pre[4])),
            options: post[2].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Our cgroup path in the hierarchy with `key` (`""` for v2, else a controller name).
fn own_path(key: &str) -> io::Result<String> {
    let s = std::fs::read_to_string("/proc/self/cgroup")?;
    for line in s.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if (key.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == key) {
            return Ok(path.to_string());
        }
    }
    Ok("/".into())
}

/// The directory of our cgroup in hierarchy `m`.
fn own_dir(m: &Mount, key: &str) -> io::Result<PathBuf> {
    let path = own_path(key)?;
    let rel = path
        .strip_prefix(m.root.trim_end_matches('/'))
        .unwrap_or(&path)
        .trim_start_matches('/');
    Ok(m.point.join(rel))
}

/// `(controllers, path)` for each hierarchy in a `/proc/PID/cgroup` text (the v2 line has no
/// controllers).
fn membership(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// Moves the calling process into every cgroup process `pid` is in (for a process joining
/// a running sandbox). Hierarchies where both are already in the same cgroup are left
/// alone; hierarchies that are not mounted cannot be joined and are skipped.
pub(crate) fn join_cgroups_of(pid: libc::pid_t) -> io::Result<()> {
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let ours = membership(&std::fs::read_to_string("/proc/self/cgroup")?);
    let mounts = mounts()?;
    for (ctrls, path) in membership(&theirs) {
        if ours.iter().any(|(c, p)| *c == ctrls && *p == path) {
            continue;
        }
        let mount = if ctrls.is_empty() {
            mounts.iter().find(|m| m.fstype == "cgroup2")
        } else {
            mounts.iter().find(|m| {
                m.fstype == "cgroup" && ctrls.split(',').all(|c| m.options.iter().any(|o| o == c))
            })
        };
        let Some(m) = mount else { continue };
        let rel = path
            .strip_prefix(m.root.trim_end_matches('/'))
            .unwrap_or(&path)
            .trim_start_matches('/');
        write(&m.point.join(rel), "cgroup.procs", "0")?;
    }
    Ok(())
}

fn needed(res: &Resources) -> Vec<&'static str> {
    let mut v = Vec::new();
    if res.memory.is_some() {
        v.push("memory");
    }
    if res.cpus.is_some() {
        v.push("cpu");
    }
    if res.pids.is_some() {
        v.push("pids");
    }
    v
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

impl Cgroup {
    /// Where the cgroup of sandbox `id` goes; `None` when `res` sets no limit.
    pub(crate) fn locate(id: &str, res: &Resources) -> io::Result<Option<Cgroup>> {
        let needed = needed(res);
        if needed.is_empty() {
            return Ok(None);
        }
        let mounts = mounts()?;
        if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            let base = own_dir(m, "")?;
            let avail = std::fs::read_to_string(base.join("cgroup.controllers"))
                .or_else(|_| std::fs::read_to_string(m.point.join("cgroup.controllers")))
                .unwrap_or_default();
            let avail: Vec<&str> = avail.split_whitespace().collect();
            if needed.iter().all(|c| avail.contains(c)) {
                return Ok(Some(Cgroup {
                    v2: true,
                    dirs: vec![(String::new(), base.join("kiln").join(id))],
                }));
            }
        }
        let mut dirs = Vec::new();
        for c in needed {
            let Some(m) = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == c))
            else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the {c} cgroup controller is not available (no cgroup v1 hierarchy \
                         with it, and no cgroup v2 hierarchy offering it)"
                    ),
                ));
            };
            dirs.push((c.to_string(), own_dir(m, c)?.join("kiln").join(id)));
        }
        Ok(Some(Cgroup { v2: false, dirs }))
    }

    /// Creates the directories and writes the limits (run by the sandbox's pid 1).
    pub(crate) fn create(&self, res: &Resources) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            if self.v2 {
                // Controllers must be enabled for the children of every ancestor we create.
                let kiln = dir.parent().unwrap_or(Path::new("/"));
                let base = kiln.parent().unwrap_or(Path::new("/"));
                std::fs::create_dir_all(kiln)?;
                let enable: String = needed(res).iter().map(|c| format!("+{c} ")).collect();
                for d in [base, kiln] {
                    write(d, "cgroup.subtree_control", enable.trim()).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "{e} (cgroup v2 cannot delegate controllers from a cgroup \
                                 that holds processes; run kiln from a cgroup of its own)"
                            ),
                        )
                    })?;
                }
            }
            match std::fs::create_dir_all(dir) {
                Ok(()) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("creating cgroup {}: {e}", dir.display()),
                    ))
                }
            }
        }
        for (ctrl, dir) in &self.dirs {
            let is = |c: &str| self.v2 || ctrl == c;
            if let (Some(m), true) = (res.memory, is("memory")) {
                if self.v2 {
                    write(dir, "memory.max", &m.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(dir, "memory.swap.max", "0")?;
                    }
                } else {
                    write(dir, "memory.limit_in_bytes", &m.to_string())?;
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
                    }
                }
            }
            if let (Some(cpus), true) = (res.cpus, is("cpu")) {
                let quota = ((cpus * CPU_PERIOD as f64).round() as u64).max(1000);
                if self.v2 {
                    write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD}"))?;
                } else {
                    write(dir, "cpu.cfs_period_us", &CPU_PERIOD.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
            }
            if let (Some(p), true) = (res.pids, is("pids")) {
                let v = if p <= 0 {
                    "max".to_string()
                } else {
                    p.to_string()
                };
                write(dir, "pids.max", &v)?;
            }
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup.
    pub(crate) fn join(&self) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            write(dir, "cgroup.procs", "0")?;
        }
        Ok(())
    }

    /// Whether the kernel OOM-killed a process of the cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        for (ctrl, dir) in &self.dirs {
            let file = if self.v2 {
                "memory.events"
            } else if ctrl == "memory" {
                "memory.oom_control"
            } else {
                continue;
            };
            let Ok(s) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            for line in s.lines() {
                if let Some(n) = line.strip_prefix("oom_kill ") {
                    return n.trim().parse().unwrap_or(0);
                }
            }
        }
        0
    }

    /// Removes the directories, retrying while the last processes leave (up to `patience`).
    pub(crate) fn remove(&self, patience: std::time::Duration) {
        let start = std::time::Instant::now();
        for (_, dir) in &self.dirs {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if start.elapsed() < patience => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
