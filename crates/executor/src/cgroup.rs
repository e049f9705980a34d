//! Per-sandbox cgroups for [`crate::Resources`] and device rules.
//!
//! The caller ([`crate::Executor::run_detailed`]) locates the cgroup (`kiln/<id>` below its own
//! cgroup in each hierarchy it needs, so that limits set on the caller still apply) and passes
//! it to the helper; the sandbox's pid 1 creates it, writes the limits and device rules,
//! moves itself into it (writing `0` to `cgroup.procs` on v2, to `tasks` on v1: see
//! [`V1_JOIN_FILE`]) and only then unshares its cgroup namespace and forks the command.
//! After the helper exits, the caller reads the OOM-kill counter and removes the directories
//! (also when the `run` future is dropped, from a background thread).
//!
//! Each controller is used through cgroup v2 when the `cgroup2` hierarchy offers it (listed
//! in `cgroup.controllers` of the caller's own v2 cgroup): `memory.max`, `memory.swap.max` =
//! 0 (or what `--memory-swap` leaves for swap), `cpu.max` = `QUOTA 100000`, `pids.max`, after enabling the controllers in
//! `cgroup.subtree_control` of the caller's cgroup and of `kiln/` (only those not enabled
//! yet). Otherwise through its v1 hierarchy: `memory.limit_in_bytes` and
//! `memory.memsw.limit_in_bytes` with the same value (so no swap, as `docker run --memory M
//! --memory-swap M`; [`Resources::memory_swap`] sets another total, -1 none), `cpu.cfs_period_us` = 100000 and `cpu.cfs_quota_us`, `pids.max`. So
//! a pure v2 host uses v2 only, a v1 or hybrid host (controllers bound to v1, an empty
//! `unified` v2) v1 only, and a host whose administrator moved some controllers to v2 uses
//! both, as systemd's hybrid mode does. A controller that neither offers is an error naming
//! it.
//!
//! Every sandbox that is not privileged also gets device rules (see `devices.rs`), so it has
//! a cgroup even without limits: through the v1 `devices` controller when a v1 hierarchy has
//! it (this development host), else a BPF device program on the sandbox's cgroup2 directory
//! (a pure v2 host; no controller needs enabling for it). [`DevicePolicy::V2`] takes the BPF
//! path even when the v1 controller is there ([`crate::Executor::with_v2_device_rules`]; the
//! kernel then checks both, the v1 cgroup being the caller's). Privileged sandboxes without
//! limits get no cgroup of their own.
//!
//! A sandbox made with [`Resources::updatable`] (every container) gets a cgroup of its own in
//! memory, cpu, pids and freezer too, where the host has them, without limits: so that
//! `kiln update` can set limits and `kiln pause` freeze it later. The freezer is v1's where
//! a v1 hierarchy has it, else the sandbox's v2 directory (`cgroup.freeze` is built into
//! cgroup v2). A running sandbox's cgroups are found again from its pid 1 ([`live`],
//! [`SandboxCgroups`]).
//!
//! Where the hierarchies are comes from `/proc/self/mountinfo` and `/proc/self/cgroup`
//! ([`Hierarchies`]); the unit tests below pass their own, pointing at a fake cgroupfs in a
//! temporary directory.

use crate::devices::{self, DeviceRule};
use crate::spec::Resources;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// Period for `--cpus` (as Docker).
const CPU_PERIOD: u64 = 100_000;

/// A sandbox's cgroup: a v2 directory for the controllers cgroup v2 offers, and one
/// directory per remaining v1 controller.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Cgroup {
    /// The v2 directory and the controllers limited there.
    v2: Option<(PathBuf, Vec<String>)>,
    /// (controller, directory) in the v1 hierarchies.
    v1: Vec<(String, PathBuf)>,
    /// The device rules are a BPF program on the v2 directory.
    #[serde(default)]
    v2_devices: bool,
}

/// Whether and how a sandbox's device rules are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DevicePolicy {
    /// No device rules (privileged sandboxes).
    None,
    /// The v1 `devices` controller when a v1 hierarchy has it, else a BPF program on v2.
    Auto,
    /// A BPF program on the cgroup2 hierarchy, even when the v1 controller is there.
    V2,
}

#[derive(Debug)]
struct Mount {
    fstype: String,
    root: String,
    point: PathBuf,
    options: Vec<String>,
}

/// The cgroup hierarchies mounted here and this process's place in each.
#[derive(Debug)]
pub(crate) struct Hierarchies {
    /// `cgroup` and `cgroup2` mounts.
    mounts: Vec<Mount>,
    /// `/proc/self/cgroup`: (comma-separated controllers, empty for v2; path).
    membership: Vec<(String, String)>,
}

impl Hierarchies {
    /// Those of the calling process.
    pub(crate) fn current() -> io::Result<Self> {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map_err(|e| io::Error::new(e.kind(), format!("reading {p}: {e}")))
        };
        Ok(Self::parse(
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
        ))
    }

    /// From the contents of `/proc/PID/mountinfo` and `/proc/PID/cgroup`.
    pub(crate) fn parse(mountinfo: &str, proc_cgroup: &str) -> Self {
        let mut mounts = Vec::new();
        for line in mountinfo.lines() {
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
            mounts.push(Mount {
                fstype: post[0].to_string(),
                root: unescape(pre[3]),
                point: PathBuf::from(unescape(pre[4])),
                options: post[2].split(',').map(str::to_string).collect(),
            });
        }
        let membership = proc_cgroup
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                Some((ctrls.to_string(), path.to_string()))
            })
            .collect();
        Hierarchies { mounts, membership }
    }

    /// Our cgroup path in the hierarchy with `key` (`""` for v2, else a controller name).
    fn own_path(&self, key: &str) -> &str {
        self.membership
            .iter()
            .find(|(ctrls, _)| {
                (key.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == key)
            })
            .map_or("/", |(_, path)| path.as_str())
    }

    /// The directory of our cgroup in hierarchy `m`.
    fn own_dir(&self, m: &Mount, key: &str) -> PathBuf {
        let path = self.own_path(key);
        let rel = path
            .strip_prefix(m.root.trim_end_matches('/'))
            .unwrap_or(path)
            .trim_start_matches('/');
        m.point.join(rel)
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Moves the calling process into every cgroup process `pid` is in (for a process joining
/// a running sandbox). Hierarchies where both are already in the same cgroup are left
/// alone; hierarchies that are not mounted cannot be joined and are skipped.
pub(crate) fn join_cgroups_of(pid: libc::pid_t) -> io::Result<()> {
    let ours = Hierarchies::current()?;
    let theirs = Hierarchies::parse("", &std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?);
    for (ctrls, path) in &theirs.membership {
        if ours.membership.iter().any(|(c, p)| c == ctrls && p == path) {
            continue;
        }
        let mount = if ctrls.is_empty() {
            ours.mounts.iter().find(|m| m.fstype == "cgroup2")
        } else {
            ours.mounts.iter().find(|m| {
                m.fstype == "cgroup" && ctrls.split(',').all(|c| m.options.iter().any(|o| o == c))
            })
        };
        let Some(m) = mount else { continue };
        let rel = path
            .strip_prefix(m.root.trim_end_matches('/'))
            .unwrap_or(path)
            .trim_start_matches('/');
        write(&m.point.join(rel), join_file(m), "0")?;
    }
    Ok(())
}

/// The v1 file a single-threaded process joins a cgroup through: `tasks` (moving the
/// calling thread), not `cgroup.procs` (the whole thread group). Both move the same process
/// here, but moving a thread group takes the kernel's `cgroup_threadgroup_rwsem` for writing,
/// which waits for an RCU grace period: 7-15 ms per sandbox on the development host, as much
/// as the rest of a `kiln run --rm IMAGE true`; moving the current thread alone skips that
/// lock (Linux 6.x, `cgroup_procs_write_start`). The sandbox's pid 1 and the `exec` helper
/// are single-threaded when they join. cgroup v2 has no such file (`cgroup.threads` is for
/// threaded subtrees only).
const V1_JOIN_FILE: &str = "tasks";

/// The file through which the calling single-threaded process joins a cgroup of mount `m`.
fn join_file(m: &Mount) -> &'static str {
    if m.fstype == "cgroup" {
        V1_JOIN_FILE
    } else {
        "cgroup.procs"
    }
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

/// The controllers an updatable sandbox gets beyond those its limits need.
fn optional(res: &Resources, needed: &[&'static str]) -> Vec<&'static str> {
    if !res.updatable {
        return Vec::new();
    }
    ["memory", "cpu", "pids", "freezer"]
        .into_iter()
        .filter(|c| !needed.contains(c))
        .collect()
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))
}

/// Enables `controllers` for the children of the v2 cgroup `dir`, those not enabled yet.
fn enable_for_children(dir: &Path, controllers: &[String]) -> io::Result<()> {
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.contains(&c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", &missing.join(" ")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{e} (cgroup v2 cannot delegate controllers from a cgroup that holds \
                 processes; run kiln from a cgroup of its own)"
            ),
        )
    })
}

impl Cgroup {
    /// Where the cgroup of sandbox `id` goes; `None` when `res` sets no limit and there are
    /// no device rules.
    pub(crate) fn locate(
        id: &str,
        res: &Resources,
        devices: DevicePolicy,
    ) -> io::Result<Option<Cgroup>> {
        if needed(res).is_empty() && !res.updatable && devices == DevicePolicy::None {
            return Ok(None);
        }
        Self::locate_in(&Hierarchies::current()?, id, res, devices)
    }

    /// [`Cgroup::locate`] in the hierarchies `h`.
    pub(crate) fn locate_in(
        h: &Hierarchies,
        id: &str,
        res: &Resources,
        devices: DevicePolicy,
    ) -> io::Result<Option<Cgroup>> {
        let needed = needed(res);
        if needed.is_empty() && !res.updatable && devices == DevicePolicy::None {
            return Ok(None);
        }
        let v2_mount = h.mounts.iter().find(|m| m.fstype == "cgroup2");
        // What our own v2 cgroup can hand to its children (the hierarchy's root lists what
        // the hierarchy has, for a caller whose own cgroup is not visible here).
        let (v2_base, offered) = match v2_mount {
            Some(m) => {
                let base = h.own_dir(m, "");
                let offered = std::fs::read_to_string(base.join("cgroup.controllers"))
                    .or_else(|_| std::fs::read_to_string(m.point.join("cgroup.controllers")))
                    .unwrap_or_default();
                (Some(base), offered)
            }
            None => (None, String::new()),
        };
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let mut cg = Cgroup::default();
        let mut on_v2 = Vec::new();
        let v1_mount = |c: &str| {
            h.mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == c))
        };
        for c in needed.iter().copied() {
            if offered.contains(&c) {
                on_v2.push(c.to_string());
                continue;
            }
            let Some(m) = v1_mount(c) else {
                let v2 = match v2_mount {
                    Some(m) => format!(
                        "the cgroup2 hierarchy at {} does not offer it (cgroup.controllers: \
                         {:?})",
                        m.point.display(),
                        offered.join(" ")
                    ),
                    None => "no cgroup2 hierarchy is mounted".to_string(),
                };
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the {c} cgroup controller is not available: no cgroup v1 hierarchy \
                         has it, and {v2}"
                    ),
                ));
            };
            cg.v1
                .push((c.to_string(), h.own_dir(m, c).join("kiln").join(id)));
        }
        // The controllers of an updatable sandbox that no limit asked for: where the host
        // has them. The freezer is built into cgroup v2 (`cgroup.freeze`, not listed in
        // `cgroup.controllers`), so a v1 freezer hierarchy is used where there is one.
        let mut v2_freeze = false;
        for c in optional(res, &needed) {
            if c != "freezer" && offered.contains(&c) {
                on_v2.push(c.to_string());
            } else if let Some(m) = v1_mount(c) {
                cg.v1
                    .push((c.to_string(), h.own_dir(m, c).join("kiln").join(id)));
            } else if c == "freezer" && v2_mount.is_some() {
                v2_freeze = true;
            }
        }
        match (devices, v1_mount("devices")) {
            (DevicePolicy::None, _) => {}
            (DevicePolicy::Auto, Some(m)) => cg.v1.push((
                "devices".to_string(),
                h.own_dir(m, "devices").join("kiln").join(id),
            )),
            _ if v2_mount.is_none() => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no device cgroup: no cgroup v1 hierarchy has the devices controller, and \
                     no cgroup2 hierarchy is mounted",
                ))
            }
            _ => cg.v2_devices = true,
        }
        if let (Some(base), true) = (v2_base, !on_v2.is_empty() || cg.v2_devices || v2_freeze) {
            cg.v2 = Some((base.join("kiln").join(id), on_v2));
        }
        Ok(Some(cg))
    }

    /// Every directory: the v2 one first, then the v1 ones.
    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v2
            .iter()
            .map(|(d, _)| d.as_path())
            .chain(self.v1.iter().map(|(_, d)| d.as_path()))
    }

    /// Creates the directories and writes the limits and the device rules `allowed` (run by
    /// the sandbox's pid 1).
    pub(crate) fn create(&self, res: &Resources, allowed: &[DeviceRule]) -> io::Result<()> {
        if let Some((dir, controllers)) = &self.v2 {
            // Controllers must be enabled for the children of every ancestor we create.
            let kiln = dir.parent().unwrap_or(Path::new("/"));
            let base = kiln.parent().unwrap_or(Path::new("/"));
            create_dir(kiln)?;
            enable_for_children(base, controllers)?;
            enable_for_children(kiln, controllers)?;
            create_dir(dir)?;
            let has = |c: &str| controllers.iter().any(|x| x == c);
            if let (Some(m), true) = (res.memory, has("memory")) {
                write(dir, "memory.max", &m.to_string())?;
                // Absent without swap accounting.
                if dir.join("memory.swap.max").exists() {
                    write(dir, "memory.swap.max", &v2_swap(m, res.memory_swap))?;
                }
            }
            if let (Some(cpus), true) = (res.cpus, has("cpu")) {
                write(dir, "cpu.max", &format!("{} {CPU_PERIOD}", cpu_quota(cpus)))?;
            }
            if let (Some(p), true) = (res.pids, has("pids")) {
                write(dir, "pids.max", &pids_max(p))?;
            }
            if self.v2_devices {
                devices::attach_program(dir, allowed)?;
            }
        }
        for (ctrl, dir) in &self.v1 {
            create_dir(dir)?;
            match ctrl.as_str() {
                "memory" => {
                    if let Some(m) = res.memory {
                        write(dir, "memory.limit_in_bytes", &m.to_string())?;
                        // Absent without swap accounting.
                        if dir.join("memory.memsw.limit_in_bytes").exists() {
                            write(
                                dir,
                                "memory.memsw.limit_in_bytes",
                                &v1_memsw(m, res.memory_swap),
                            )?;
                        }
                    }
                }
                "cpu" => {
                    if let Some(cpus) = res.cpus {
                        write(dir, "cpu.cfs_period_us", &CPU_PERIOD.to_string())?;
                        write(dir, "cpu.cfs_quota_us", &cpu_quota(cpus).to_string())?;
                    }
                }
                "pids" => {
                    if let Some(p) = res.pids {
                        write(dir, "pids.max", &pids_max(p))?;
                    }
                }
                "devices" => {
                    // A new cgroup starts with its parent's list: deny all, then allow, one
                    // rule per write(2) on one open file.
                    write(dir, "devices.deny", "a")?;
                    let path = dir.join("devices.allow");
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                        })?;
                    for r in allowed {
                        let line = devices::v1_line(r);
                        io::Write::write_all(&mut f, line.as_bytes()).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("writing {line:?} to {}: {e}", path.display()),
                            )
                        })?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves the calling (single-threaded) process into the cgroup.
    pub(crate) fn join(&self) -> io::Result<()> {
        if let Some((dir, _)) = &self.v2 {
            write(dir, "cgroup.procs", "0")?;
        }
        for (_, dir) in &self.v1 {
            write(dir, V1_JOIN_FILE, "0")?;
        }
        Ok(())
    }

    /// How many times the kernel OOM-killed a process of the cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = match &self.v2 {
            Some((dir, c)) if c.iter().any(|c| c == "memory") => dir.join("memory.events"),
            _ => match self.v1.iter().find(|(c, _)| c == "memory") {
                Some((_, dir)) => dir.join("memory.oom_control"),
                None => return 0,
            },
        };
        let Ok(s) = std::fs::read_to_string(file) else {
            return 0;
        };
        s.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Removes the directories, retrying while the last processes leave (up to `patience`).
    pub(crate) fn remove(&self, patience: std::time::Duration) {
        let start = std::time::Instant::now();
        for dir in self.dirs() {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if start.elapsed() < patience => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
            if let Some(parent) = dir.parent() {
                sweep_stale(parent);
            }
        }
    }
}

/// Removes the sandbox cgroups below `kiln` whose creator is gone (a `kiln run -d`
/// supervisor that was SIGKILLed never removes its container's cgroup). A sandbox's id starts
/// with its creator's pid in hex (`run.rs`); a cgroup that still has processes cannot be
/// removed, so a recycled pid or a live sandbox only means the directory stays for now.
fn sweep_stale(kiln: &Path) {
    let Ok(entries) = std::fs::read_dir(kiln) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| libc::pid_t::from_str_radix(p, 16).ok())
            .filter(|p| *p > 0)
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        if unsafe { libc::kill(pid, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// `--cpus` as a quota per [`CPU_PERIOD`] (at least 1 ms, as the kernel requires).
fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD as f64).round() as u64).max(1000)
}

/// cgroup v2's `memory.swap.max` (swap alone) for `--memory M --memory-swap S`.
fn v2_swap(memory: u64, swap: Option<i64>) -> String {
    match swap {
        None => "0".to_string(),
        Some(s) if s < 0 => "max".to_string(),
        Some(s) => u64::try_from(s)
            .unwrap_or(0)
            .saturating_sub(memory)
            .to_string(),
    }
}

/// cgroup v1's `memory.memsw.limit_in_bytes` (memory plus swap) for the same.
fn v1_memsw(memory: u64, swap: Option<i64>) -> String {
    match swap {
        None => memory.to_string(),
        Some(s) if s < 0 => "-1".to_string(),
        Some(s) => s.to_string(),
    }
}

/// `--pids-limit`: zero or negative means unlimited (as Docker).
fn pids_max(p: i64) -> String {
    if p <= 0 {
        "max".to_string()
    } else {
        p.to_string()
    }
}

mod live;
pub use live::{CgroupError, SandboxCgroups};

#[cfg(test)]
mod tests;
