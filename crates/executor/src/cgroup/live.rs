//! A running sandbox's cgroups, found again from its pid 1: freezing and thawing it
//! (`kiln pause`/`unpause`) and changing its limits (`kiln update`).
//!
//! The sandbox's cgroups are the `kiln/<id>` directories [`Cgroup::locate`] chose; they are
//! found from `/proc/PID/cgroup` of its pid 1 (read from the host's cgroup namespace, so the
//! paths are the host's) and the caller's mountinfo. Only directories whose parent is named
//! `kiln` count: in a hierarchy where the sandbox has no cgroup of its own, pid 1 is in its
//! supervisor's cgroup, which must never be frozen or limited. A sandbox gets its own cgroup
//! in every controller when it is made with [`crate::Resources::updatable`].
//!
//! Freezing follows runc: cgroup v1 writes `FROZEN` to `freezer.state` until it reads
//! `FROZEN` (it reads `FREEZING` while tasks are still being stopped), cgroup v2 writes `1`
//! to `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`; a sandbox that does not
//! freeze in time is thawed again and the freeze fails. Memory on v1 keeps kiln's rule of no
//! swap (`memory.memsw.limit_in_bytes` equal to the limit), written in the order the kernel
//! accepts (memsw is never below the limit).

use super::{cpu_quota, pids_max, v1_memsw, v2_swap, write, Hierarchies, CPU_PERIOD};
use crate::spec::Resources;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a freeze may take before it is given up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a running sandbox's cgroups could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading or writing a cgroup file failed (the message names the file).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The sandbox has no cgroup of its own in this controller (made without
    /// [`crate::Resources::updatable`], or the host lacks the controller).
    #[error(
        "the container has no {0} cgroup of its own (it was made by an older kiln, or the \
         host lacks the controller): recreate it"
    )]
    NoCgroup(&'static str),
    /// The sandbox did not freeze in time (it was thawed again).
    #[error("the container did not freeze within {0:?}")]
    FreezeTimeout(Duration),
}

/// The cgroups of a running sandbox (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SandboxCgroups {
    /// Its cgroup v2 directory.
    v2: Option<PathBuf>,
    /// (controllers of the hierarchy, directory) of its cgroup v1 directories.
    v1: Vec<(Vec<String>, PathBuf)>,
}

/// Whether `dir` is a sandbox's cgroup (`…/kiln/<id>`).
fn is_sandbox(dir: &Path) -> bool {
    dir.parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "kiln")
}

fn read(dir: &Path, file: &str) -> io::Result<String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading {}: {e}", dir.join(file).display()),
        )
    })
}

impl SandboxCgroups {
    /// The cgroups of the sandbox whose pid 1 is `pid`.
    pub fn of(pid: libc::pid_t) -> Result<Self, CgroupError> {
        let path = format!("/proc/{pid}/cgroup");
        let proc_cgroup = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
        Ok(Self::of_in(&Hierarchies::current()?, &proc_cgroup))
    }

    /// [`SandboxCgroups::of`] from the hierarchies `h` and pid 1's `/proc/PID/cgroup`.
    pub(crate) fn of_in(h: &Hierarchies, proc_cgroup: &str) -> Self {
        let theirs = Hierarchies::parse("", proc_cgroup);
        let mut out = SandboxCgroups::default();
        for (ctrls, path) in &theirs.membership {
            let mount = if ctrls.is_empty() {
                h.mounts.iter().find(|m| m.fstype == "cgroup2")
            } else {
                h.mounts.iter().find(|m| {
                    m.fstype == "cgroup"
                        && ctrls.split(',').all(|c| m.options.iter().any(|o| o == c))
                })
            };
            let Some(m) = mount else { continue };
            let rel = path
                .strip_prefix(m.root.trim_end_matches('/'))
                .unwrap_or(path)
                .trim_start_matches('/');
            let dir = m.point.join(rel);
            if !is_sandbox(&dir) {
                continue;
            }
            if ctrls.is_empty() {
                out.v2 = Some(dir);
            } else {
                out.v1
                    .push((ctrls.split(',').map(str::to_string).collect(), dir));
            }
        }
        out
    }

    /// Its v1 directory of `controller`.
    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// Its v2 directory when `file` is there (the controller is enabled for it).
    fn v2_with(&self, file: &str) -> Option<&Path> {
        self.v2.as_deref().filter(|d| d.join(file).exists())
    }

    /// Whether it is frozen (or being frozen).
    pub fn frozen(&self) -> bool {
        if let Some(d) = self.v1_dir("freezer") {
            return read(d, "freezer.state").is_ok_and(|s| s.trim() != "THAWED");
        }
        self.v2_with("cgroup.freeze")
            .is_some_and(|d| read(d, "cgroup.freeze").is_ok_and(|s| s.trim() == "1"))
    }

    /// Freezes every process of the sandbox and waits until they are.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.freeze_within(FREEZE_TIMEOUT)
    }

    pub(crate) fn freeze_within(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut interval = Duration::from_millis(1);
        let frozen = if let Some(d) = self.v1_dir("freezer") {
            loop {
                write(d, "freezer.state", "FROZEN")?;
                if read(d, "freezer.state")?.trim() == "FROZEN" {
                    break true;
                }
                if start.elapsed() >= timeout {
                    break false;
                }
                std::thread::sleep(interval);
                interval = (interval * 2).min(Duration::from_millis(50));
            }
        } else if let Some(d) = self.v2_with("cgroup.freeze") {
            write(d, "cgroup.freeze", "1")?;
            loop {
                if read(d, "cgroup.events")?
                    .lines()
                    .any(|l| l.trim() == "frozen 1")
                {
                    break true;
                }
                if start.elapsed() >= timeout {
                    break false;
                }
                std::thread::sleep(interval);
                interval = (interval * 2).min(Duration::from_millis(50));
            }
        } else {
            return Err(CgroupError::NoCgroup("freezer"));
        };
        if frozen {
            Ok(())
        } else {
            self.thaw()?;
            Err(CgroupError::FreezeTimeout(timeout))
        }
    }

    /// Thaws the sandbox.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        if let Some(d) = self.v1_dir("freezer") {
            write(d, "freezer.state", "THAWED")?;
        } else if let Some(d) = self.v2_with("cgroup.freeze") {
            write(d, "cgroup.freeze", "0")?;
        } else {
            return Err(CgroupError::NoCgroup("freezer"));
        }
        Ok(())
    }

    /// Sets the limits `res` gives (`None`: left as they are; a `pids` of 0 or less: no
    /// limit), as [`crate::Resources`] sets them at creation: a `memory` comes with its
    /// `memory_swap` (`None`: no swap).
    pub fn set_limits(&self, res: &Resources) -> Result<(), CgroupError> {
        if let Some(m) = res.memory {
            if let Some(d) = self.v2_with("memory.max") {
                write(d, "memory.max", &m.to_string())?;
                if d.join("memory.swap.max").exists() {
                    write(d, "memory.swap.max", &v2_swap(m, res.memory_swap))?;
                }
            } else if let Some(d) = self.v1_dir("memory") {
                let memsw = v1_memsw(m, res.memory_swap);
                let m = m.to_string();
                if d.join("memory.memsw.limit_in_bytes").exists() {
                    // memsw may not go below the limit: lower the limit first, raise memsw
                    // first.
                    if write(d, "memory.limit_in_bytes", &m).is_err() {
                        write(d, "memory.memsw.limit_in_bytes", &memsw)?;
                        write(d, "memory.limit_in_bytes", &m)?;
                    } else {
                        write(d, "memory.memsw.limit_in_bytes", &memsw)?;
                    }
                } else {
                    write(d, "memory.limit_in_bytes", &m)?;
                }
            } else {
                return Err(CgroupError::NoCgroup("memory"));
            }
        }
        if let Some(cpus) = res.cpus {
            if let Some(d) = self.v2_with("cpu.max") {
                let quota = if cpus > 0.0 {
                    cpu_quota(cpus).to_string()
                } else {
                    "max".to_string()
                };
                write(d, "cpu.max", &format!("{quota} {CPU_PERIOD}"))?;
            } else if let Some(d) = self.v1_dir("cpu") {
                write(d, "cpu.cfs_period_us", &CPU_PERIOD.to_string())?;
                let quota = if cpus > 0.0 {
                    cpu_quota(cpus).to_string()
                } else {
                    "-1".to_string()
                };
                write(d, "cpu.cfs_quota_us", &quota)?;
            } else {
                return Err(CgroupError::NoCgroup("cpu"));
            }
        }
        if let Some(p) = res.pids {
            let d = self
                .v2_with("pids.max")
                .or_else(|| self.v1_dir("pids"))
                .ok_or(CgroupError::NoCgroup("pids"))?;
            write(d, "pids.max", &pids_max(p))?;
        }
        Ok(())
    }
}
