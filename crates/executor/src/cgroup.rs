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
//! 0, `cpu.max` = `QUOTA 100000`, `pids.max`, after enabling the controllers in
//! `cgroup.subtree_control` of the caller's cgroup and of `kiln/` (only those not enabled
//! yet). Otherwise through its v1 hierarchy: `memory.limit_in_bytes` and
//! `memory.memsw.limit_in_bytes` with the same value (so no swap, as `docker run --memory M
//! --memory-swap M`), `cpu.cfs_period_us` = 100000 and `cpu.cfs_quota_us`, `pids.max`. So
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
//! Where the hierarchies are comes from `/proc/self/mountinfo` and `/proc/self/cgroup`
//! ([`Hierarchies`]); the unit tests below pass their own, pointing at a fake cgroupfs in a
//! temporary directory.

use crate::devices::{self, DeviceRule};
use crate::Resources;
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
        if needed(res).is_empty() && devices == DevicePolicy::None {
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
        if needed.is_empty() && devices == DevicePolicy::None {
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
        for c in needed {
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
        if let (Some(base), true) = (v2_base, !on_v2.is_empty() || cg.v2_devices) {
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
                    write(dir, "memory.swap.max", "0")?;
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
                            write(dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
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

/// `--pids-limit`: zero or negative means unlimited (as Docker).
fn pids_max(p: i64) -> String {
    if p <= 0 {
        "max".to_string()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    //! Against a fake cgroupfs: plain directories and files in a temporary directory, laid
    //! out as the kernel would (interface files that exist in a new cgroup are created by
    //! the test before [`Cgroup::create`] runs, as `mkdir` in a cgroupfs would).

    use super::*;

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Fake {
            // Not /tmp: it is slow on the development host.
            let dir = tempfile::Builder::new()
                .prefix("kiln-cgroup-test")
                .tempdir_in("/var/tmp")
                .unwrap();
            Fake { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// Writes `content` to `rel`, creating parents.
        fn file(&self, rel: &str, content: &str) {
            let p = self.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }

        fn read(&self, rel: &str) -> String {
            std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
        }

        /// A mountinfo line for a cgroup mount of `fstype` at `rel` with `opts`.
        fn mount(&self, id: u32, rel: &str, fstype: &str, opts: &str) -> String {
            format!(
                "{id} 31 0:{id} / {} rw,relatime - {fstype} {fstype} {opts}\n",
                self.path(rel).display()
            )
        }

        /// A hybrid host: v1 memory, cpu (with cpuacct), pids; cgroup2 at `unified`
        /// offering `v2_controllers`; the caller in `/user.slice/kiln.scope` everywhere.
        fn hybrid(&self, v2_controllers: &str) -> Hierarchies {
            let mountinfo = [
                self.mount(32, "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                self.mount(35, "memory", "cgroup", "rw,memory"),
                self.mount(39, "pids", "cgroup", "rw,pids"),
                self.mount(41, "unified", "cgroup2", "rw,nsdelegate"),
                "22 1 0:21 / /proc rw - proc proc rw\n".to_string(),
            ]
            .concat();
            self.file("unified/cgroup.controllers", v2_controllers);
            self.file(
                "unified/user.slice/kiln.scope/cgroup.controllers",
                v2_controllers,
            );
            self.file("unified/user.slice/kiln.scope/cgroup.subtree_control", "");
            Hierarchies::parse(
                &mountinfo,
                "8:pids:/user.slice/kiln.scope\n4:memory:/user.slice/kiln.scope\n\
                 1:cpu,cpuacct:/user.slice/kiln.scope\n0::/user.slice/kiln.scope\n",
            )
        }

        /// A pure v2 host: cgroup2 at `cg` offering `controllers` to the caller's cgroup
        /// `/kiln.service`.
        fn pure_v2(&self, controllers: &str) -> Hierarchies {
            self.file(
                "cg/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma",
            );
            self.file("cg/kiln.service/cgroup.controllers", controllers);
            self.file("cg/kiln.service/cgroup.subtree_control", "");
            Hierarchies::parse(
                &self.mount(30, "cg", "cgroup2", "rw,nsdelegate,memory_recursiveprot"),
                "0::/kiln.service\n",
            )
        }
    }

    fn all_limits() -> Resources {
        Resources {
            memory: Some(64 * 1024 * 1024),
            cpus: Some(1.5),
            pids: Some(50),
        }
    }

    #[test]
    fn no_limits_no_cgroup() {
        let fake = Fake::new();
        let h = fake.pure_v2("cpu memory pids");
        assert_eq!(
            Cgroup::locate_in(&h, "x", &Resources::default(), DevicePolicy::None).unwrap(),
            None
        );
    }

    #[test]
    fn v2_writes_every_limit() {
        let fake = Fake::new();
        let h = fake.pure_v2("cpuset cpu io memory pids");
        let cg = Cgroup::locate_in(&h, "id1", &all_limits(), DevicePolicy::None)
            .unwrap()
            .unwrap();
        let dir = fake.path("cg/kiln.service/kiln/id1");
        assert_eq!(
            cg,
            Cgroup {
                v2: Some((
                    dir.clone(),
                    vec!["memory".into(), "cpu".into(), "pids".into()]
                )),
                v1: vec![],
                v2_devices: false,
            }
        );
        // What mkdir in a cgroupfs with swap accounting creates.
        fake.file("cg/kiln.service/kiln/id1/memory.swap.max", "max\n");
        cg.create(&all_limits(), &[]).unwrap();
        let sandbox = "cg/kiln.service/kiln/id1";
        assert_eq!(fake.read(&format!("{sandbox}/memory.max")), "67108864");
        assert_eq!(fake.read(&format!("{sandbox}/memory.swap.max")), "0");
        assert_eq!(fake.read(&format!("{sandbox}/cpu.max")), "150000 100000");
        assert_eq!(fake.read(&format!("{sandbox}/pids.max")), "50");
        // Enabled for the children of the caller's cgroup and of kiln/.
        assert_eq!(
            fake.read("cg/kiln.service/cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        assert_eq!(
            fake.read("cg/kiln.service/kiln/cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        // No v1 files.
        for f in ["memory.limit_in_bytes", "cpu.cfs_quota_us"] {
            assert!(!dir.join(f).exists(), "{f}");
        }

        cg.join().unwrap();
        assert_eq!(fake.read(&format!("{sandbox}/cgroup.procs")), "0");

        // The OOM counter is the `oom_kill` line of memory.events.
        assert_eq!(cg.oom_kills(), 0, "no memory.events yet");
        fake.file(
            &format!("{sandbox}/memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(cg.oom_kills(), 1);

        // remove() takes the sandbox's directory only (the fake's files first: a real
        // cgroupfs has no removable files).
        for f in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        // A sandbox of a process that is gone (pid 0x7fffffff) is swept, one of ours stays.
        let stale = fake.path("cg/kiln.service/kiln/7fffffff-1-0");
        let live = fake.path(&format!(
            "cg/kiln.service/kiln/{:x}-1-0",
            std::process::id()
        ));
        std::fs::create_dir(&stale).unwrap();
        std::fs::create_dir(&live).unwrap();
        cg.remove(std::time::Duration::ZERO);
        assert!(!dir.exists());
        assert!(!stale.exists());
        assert!(live.exists());
        assert!(fake.path("cg/kiln.service/kiln").is_dir());
    }

    #[test]
    fn v2_without_swap_accounting_and_odd_values() {
        let fake = Fake::new();
        let h = fake.pure_v2("cpu memory pids");
        let res = Resources {
            memory: Some(1 << 20),
            cpus: Some(0.001),
            pids: Some(0),
        };
        let cg = Cgroup::locate_in(&h, "id2", &res, DevicePolicy::None)
            .unwrap()
            .unwrap();
        cg.create(&res, &[]).unwrap();
        let sandbox = "cg/kiln.service/kiln/id2";
        assert_eq!(fake.read(&format!("{sandbox}/memory.max")), "1048576");
        assert!(!fake.path(&format!("{sandbox}/memory.swap.max")).exists());
        // The kernel's minimum quota is 1 ms; a zero limit means none, as in Docker.
        assert_eq!(fake.read(&format!("{sandbox}/cpu.max")), "1000 100000");
        assert_eq!(fake.read(&format!("{sandbox}/pids.max")), "max");
    }

    #[test]
    fn v2_controllers_already_enabled_are_not_rewritten() {
        let fake = Fake::new();
        let h = fake.pure_v2("cpu memory pids");
        fake.file(
            "cg/kiln.service/cgroup.subtree_control",
            "cpu memory pids\n",
        );
        fake.file("cg/kiln.service/kiln/cgroup.subtree_control", "pids\n");
        let res = Resources {
            memory: Some(1 << 30),
            pids: Some(10),
            ..Default::default()
        };
        let cg = Cgroup::locate_in(&h, "id3", &res, DevicePolicy::None)
            .unwrap()
            .unwrap();
        cg.create(&res, &[]).unwrap();
        assert_eq!(
            fake.read("cg/kiln.service/cgroup.subtree_control"),
            "cpu memory pids\n"
        );
        assert_eq!(
            fake.read("cg/kiln.service/kiln/cgroup.subtree_control"),
            "+memory"
        );
        // cpu was not asked for: no cpu.max.
        assert!(!fake.path("cg/kiln.service/kiln/id3/cpu.max").exists());
    }

    #[test]
    fn v2_delegation_failure_explains_itself() {
        let fake = Fake::new();
        let h = fake.pure_v2("pids");
        // Writing subtree_control fails (here: it is a directory; in the kernel, EBUSY
        // when the caller's cgroup holds processes).
        std::fs::remove_file(fake.path("cg/kiln.service/cgroup.subtree_control")).unwrap();
        std::fs::create_dir(fake.path("cg/kiln.service/cgroup.subtree_control")).unwrap();
        let res = Resources {
            pids: Some(10),
            ..Default::default()
        };
        let cg = Cgroup::locate_in(&h, "id4", &res, DevicePolicy::None)
            .unwrap()
            .unwrap();
        let err = cg.create(&res, &[]).unwrap_err().to_string();
        assert!(err.contains("writing \"+pids\" to"), "{err}");
        assert!(err.contains("cgroup.subtree_control"), "{err}");
        assert!(err.contains("run kiln from a cgroup of its own"), "{err}");
    }

    #[test]
    fn missing_v2_controller_without_v1_names_it() {
        let fake = Fake::new();
        let h = fake.pure_v2("memory pids");
        let err = Cgroup::locate_in(&h, "id5", &all_limits(), DevicePolicy::None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "the cpu cgroup controller is not available: no cgroup v1 hierarchy has it, \
                 and the cgroup2 hierarchy at {} does not offer it (cgroup.controllers: \
                 \"memory pids\")",
                fake.path("cg").display()
            )
        );
        // Without the caller's own cgroup.controllers, the hierarchy root's counts.
        std::fs::remove_file(fake.path("cg/kiln.service/cgroup.controllers")).unwrap();
        let cg = Cgroup::locate_in(&h, "id5", &all_limits(), DevicePolicy::None)
            .unwrap()
            .unwrap();
        assert_eq!(cg.v2.unwrap().1, ["memory", "cpu", "pids"]);
    }

    #[test]
    fn no_hierarchy_at_all_names_the_controller() {
        let h = Hierarchies::parse("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n");
        let res = Resources {
            pids: Some(5),
            ..Default::default()
        };
        let err = Cgroup::locate_in(&h, "x", &res, DevicePolicy::None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the pids cgroup controller is not available: no cgroup v1 hierarchy has it, \
             and no cgroup2 hierarchy is mounted"
        );
    }

    #[test]
    fn hybrid_host_falls_back_to_v1() {
        let fake = Fake::new();
        // This development host: the unified hierarchy offers only hugetlb.
        let h = fake.hybrid("hugetlb");
        let cg = Cgroup::locate_in(&h, "id6", &all_limits(), DevicePolicy::None)
            .unwrap()
            .unwrap();
        let own = "user.slice/kiln.scope/kiln/id6";
        assert_eq!(
            cg,
            Cgroup {
                v2: None,
                v1: vec![
                    ("memory".into(), fake.path(&format!("memory/{own}"))),
                    ("cpu".into(), fake.path(&format!("cpu,cpuacct/{own}"))),
                    ("pids".into(), fake.path(&format!("pids/{own}"))),
                ],
                v2_devices: false,
            }
        );
        // What mkdir in a v1 memory hierarchy with swap accounting creates.
        fake.file(&format!("memory/{own}/memory.memsw.limit_in_bytes"), "0");
        cg.create(&all_limits(), &[]).unwrap();
        let m = 64 * 1024 * 1024;
        assert_eq!(
            fake.read(&format!("memory/{own}/memory.limit_in_bytes")),
            m.to_string()
        );
        assert_eq!(
            fake.read(&format!("memory/{own}/memory.memsw.limit_in_bytes")),
            m.to_string()
        );
        assert_eq!(
            fake.read(&format!("cpu,cpuacct/{own}/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(
            fake.read(&format!("cpu,cpuacct/{own}/cpu.cfs_quota_us")),
            "150000"
        );
        assert_eq!(fake.read(&format!("pids/{own}/pids.max")), "50");
        // Nothing in the unified hierarchy.
        assert!(!fake.path("unified/user.slice/kiln.scope/kiln").exists());
        assert_eq!(
            fake.read("unified/user.slice/kiln.scope/cgroup.subtree_control"),
            ""
        );
        cg.join().unwrap();
        for d in ["memory", "cpu,cpuacct", "pids"] {
            assert_eq!(fake.read(&format!("{d}/{own}/tasks")), "0", "{d}");
        }
        // The v1 OOM counter.
        fake.file(
            &format!("memory/{own}/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );
        assert_eq!(cg.oom_kills(), 3);
    }

    #[test]
    fn controllers_moved_to_v2_are_used_there_and_the_rest_on_v1() {
        let fake = Fake::new();
        // pids and cpu moved to cgroup2 (their v1 hierarchies unmounted), memory still v1.
        let mut h = fake.hybrid("cpu pids hugetlb");
        h.mounts
            .retain(|m| !m.options.iter().any(|o| o == "pids" || o == "cpu"));
        let cg = Cgroup::locate_in(&h, "id7", &all_limits(), DevicePolicy::None)
            .unwrap()
            .unwrap();
        let own = "user.slice/kiln.scope/kiln/id7";
        assert_eq!(
            cg,
            Cgroup {
                v2: Some((
                    fake.path(&format!("unified/{own}")),
                    vec!["cpu".into(), "pids".into()]
                )),
                v1: vec![("memory".into(), fake.path(&format!("memory/{own}")))],
                v2_devices: false,
            }
        );
        cg.create(&all_limits(), &[]).unwrap();
        assert_eq!(
            fake.read("unified/user.slice/kiln.scope/cgroup.subtree_control"),
            "+cpu +pids"
        );
        assert_eq!(fake.read(&format!("unified/{own}/pids.max")), "50");
        assert_eq!(
            fake.read(&format!("unified/{own}/cpu.max")),
            "150000 100000"
        );
        assert!(!fake.path(&format!("unified/{own}/memory.max")).exists());
        assert_eq!(
            fake.read(&format!("memory/{own}/memory.limit_in_bytes")),
            (64 * 1024 * 1024).to_string()
        );
        cg.join().unwrap();
        assert_eq!(fake.read(&format!("unified/{own}/cgroup.procs")), "0");
        assert_eq!(fake.read(&format!("memory/{own}/tasks")), "0");
        // memory is on v1: its OOM counter is memory.oom_control, not v2's memory.events.
        fake.file(&format!("unified/{own}/memory.events"), "oom_kill 9\n");
        fake.file(&format!("memory/{own}/memory.oom_control"), "oom_kill 2\n");
        assert_eq!(cg.oom_kills(), 2);

        // Only pids asked for: v2 only.
        let res = Resources {
            pids: Some(7),
            ..Default::default()
        };
        let cg = Cgroup::locate_in(&h, "id8", &res, DevicePolicy::None)
            .unwrap()
            .unwrap();
        assert_eq!(cg.v1, vec![]);
        assert_eq!(cg.oom_kills(), 0, "no memory controller at all");
    }

    #[test]
    fn cgroup_paths_are_relative_to_the_mount_root() {
        let fake = Fake::new();
        // A container's view: the hierarchy's root is our cgroup, and mountinfo has an
        // escaped space in the mount point.
        let point = fake.path("with space");
        let mountinfo = format!(
            "41 31 0:38 /docker/abc {} rw - cgroup2 cgroup2 rw\n",
            point.display().to_string().replace(' ', "\\040")
        );
        fake.file("with space/cgroup.controllers", "pids");
        let h = Hierarchies::parse(&mountinfo, "0::/docker/abc\n");
        let res = Resources {
            pids: Some(3),
            ..Default::default()
        };
        let cg = Cgroup::locate_in(&h, "id9", &res, DevicePolicy::None)
            .unwrap()
            .unwrap();
        assert_eq!(cg.v2.unwrap().0, point.join("kiln/id9"));
    }

    #[test]
    fn the_cgroup_survives_the_trip_to_the_helper() {
        let fake = Fake::new();
        let h = fake.hybrid("pids");
        let cg = Cgroup::locate_in(&h, "id10", &all_limits(), DevicePolicy::None)
            .unwrap()
            .unwrap();
        let json = serde_json::to_string(&cg).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
    }

    /// The device hierarchy of a hybrid host (this development host) or of none.
    fn with_v1_devices(fake: &Fake, h: Hierarchies) -> Hierarchies {
        let mut mounts = fake.mount(36, "devices", "cgroup", "rw,devices");
        for m in &h.mounts {
            mounts.push_str(&format!(
                "1 1 0:1 {} {} rw - {} {} {}\n",
                m.root,
                m.point.display(),
                m.fstype,
                m.fstype,
                m.options.join(",")
            ));
        }
        let mut membership = String::from("5:devices:/user.slice/kiln.scope\n");
        for (c, p) in &h.membership {
            membership.push_str(&format!("1:{c}:{p}\n"));
        }
        Hierarchies::parse(&mounts, &membership)
    }

    #[test]
    fn device_rules_go_to_the_v1_devices_controller_without_limits() {
        let fake = Fake::new();
        let h = with_v1_devices(&fake, fake.hybrid("hugetlb"));
        let cg = Cgroup::locate_in(&h, "d1", &Resources::default(), DevicePolicy::Auto)
            .unwrap()
            .unwrap();
        let dir = fake.path("devices/user.slice/kiln.scope/kiln/d1");
        assert_eq!(
            cg,
            Cgroup {
                v2: None,
                v1: vec![("devices".into(), dir.clone())],
                v2_devices: false,
            }
        );
        // What mkdir in a devices hierarchy creates.
        fake.file("devices/user.slice/kiln.scope/kiln/d1/devices.allow", "");
        cg.create(&Resources::default(), crate::devices::DEFAULT_ALLOWED)
            .unwrap();
        // Deny all first, then one write per rule (a plain file concatenates them).
        assert_eq!(
            fake.read("devices/user.slice/kiln.scope/kiln/d1/devices.deny"),
            "a"
        );
        assert_eq!(
            fake.read("devices/user.slice/kiln.scope/kiln/d1/devices.allow"),
            "c *:* mb *:* mc 1:3 rwmc 1:8 rwmc 1:7 rwmc 5:0 rwmc 1:5 rwmc 1:9 rwmc 136:* rwm\
             c 5:2 rwmc 10:200 rwm"
        );
        // Privileged: nothing at all.
        assert_eq!(
            Cgroup::locate_in(&h, "d2", &Resources::default(), DevicePolicy::None).unwrap(),
            None
        );
    }

    #[test]
    fn device_rules_without_a_v1_devices_controller_are_a_bpf_program_on_v2() {
        let fake = Fake::new();
        let h = fake.pure_v2("cpu memory pids");
        let cg = Cgroup::locate_in(&h, "d3", &Resources::default(), DevicePolicy::Auto)
            .unwrap()
            .unwrap();
        assert_eq!(
            cg,
            Cgroup {
                v2: Some((fake.path("cg/kiln.service/kiln/d3"), vec![])),
                v1: vec![],
                v2_devices: true,
            }
        );
        // With limits: the same directory.
        let res = Resources {
            pids: Some(3),
            ..Default::default()
        };
        let cg = Cgroup::locate_in(&h, "d4", &res, DevicePolicy::Auto)
            .unwrap()
            .unwrap();
        assert_eq!(
            cg.v2,
            Some((fake.path("cg/kiln.service/kiln/d4"), vec!["pids".into()]))
        );
        assert!(cg.v2_devices);
        // Forced on a hybrid host.
        let h = with_v1_devices(&fake, fake.hybrid("hugetlb"));
        let cg = Cgroup::locate_in(&h, "d5", &Resources::default(), DevicePolicy::V2)
            .unwrap()
            .unwrap();
        assert_eq!(
            (cg.v2, cg.v1, cg.v2_devices),
            (
                Some((fake.path("unified/user.slice/kiln.scope/kiln/d5"), vec![])),
                vec![],
                true
            )
        );
    }

    #[test]
    fn no_device_cgroup_at_all_is_an_error() {
        let h = Hierarchies::parse("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n");
        let err = Cgroup::locate_in(&h, "x", &Resources::default(), DevicePolicy::Auto)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no device cgroup: no cgroup v1 hierarchy has the devices controller, and no \
             cgroup2 hierarchy is mounted"
        );
    }
}
