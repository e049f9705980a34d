//! A sandboxed process's capabilities and resource limits as docker's `run` flags shape
//! them: `--cap-add`/`--cap-drop` (moby's `caps.TweakCapabilities`), `--ulimit` (go-units'
//! `ParseUlimit`), with docker's messages for what they refuse.

use serde::{Deserialize, Serialize};

/// Capability names by number (`CAP_` left off), as in `linux/capability.h`.
pub(crate) const CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities, by number.
pub(crate) const DEFAULT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// A refused `--cap-add`/`--cap-drop` or `--ulimit` value, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// A capability name the kernel headers do not know (`which` is `CapAdd` or `CapDrop`).
    #[error("invalid {which}: unknown capability: {name:?}")]
    UnknownCapability {
        /// `CapAdd` or `CapDrop`.
        which: &'static str,
        /// The name, upper-cased with `CAP_` in front.
        name: String,
    },
    /// `--ulimit` without `=`.
    #[error("invalid ulimit argument: {0}")]
    UlimitSyntax(String),
    /// An unknown `--ulimit` name.
    #[error("invalid ulimit type: {0}")]
    UlimitType(String),
    /// More than `soft:hard`.
    #[error("too many limit value arguments - {0}, can only have up to two, `soft[:hard]`")]
    UlimitValues(String),
    /// A limit that is not an integer.
    #[error("strconv.ParseInt: parsing {0:?}: invalid syntax")]
    UlimitNumber(String),
    /// soft > hard.
    #[error("ulimit soft limit must be less than or equal to hard limit: {0} > {1}")]
    UlimitOrder(i64, i64),
}

/// `chown`, `cap_chown`, `CAP_CHOWN` → `CAP_CHOWN`; `all` → `ALL` (moby's
/// `NormalizeLegacyCapabilities`). `which` names the flag in the error (`CapAdd`,
/// `CapDrop`).
pub fn normalize_capability(name: &str, which: &'static str) -> Result<String, SecurityError> {
    let up = name.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if CAP_NAMES.iter().any(|n| full[4..] == **n) {
        Ok(full)
    } else {
        Err(SecurityError::UnknownCapability { which, name: full })
    }
}

fn cap_number(name: &str) -> Option<u32> {
    let short = name.strip_prefix("CAP_")?;
    CAP_NAMES
        .iter()
        .position(|n| *n == short)
        .and_then(|i| u32::try_from(i).ok())
}

/// The capabilities (numbers, up to `last`) a process keeps: all when privileged, docker's
/// default set otherwise, changed by `add` and `drop` (normalized names, `ALL` allowed) as
/// moby's `TweakCapabilities`: `--cap-add ALL` is everything but `drop`, `--cap-drop ALL`
/// only `add`.
pub(crate) fn capability_set(
    privileged: bool,
    add: &[String],
    drop: &[String],
    last: u32,
) -> Vec<u32> {
    let all: Vec<u32> = (0..=last).collect();
    let numbers =
        |names: &[String]| -> Vec<u32> { names.iter().filter_map(|n| cap_number(n)).collect() };
    let (add_n, drop_n) = (numbers(add), numbers(drop));
    let mut caps: Vec<u32> = if privileged {
        all
    } else if add.iter().any(|a| a == "ALL") {
        all.into_iter().filter(|c| !drop_n.contains(c)).collect()
    } else if drop.iter().any(|d| d == "ALL") {
        add_n
    } else {
        DEFAULT_CAPS
            .iter()
            .copied()
            .filter(|c| !drop_n.contains(c))
            .chain(add_n)
            .collect()
    };
    caps.retain(|&c| c <= last);
    caps.sort_unstable();
    caps.dedup();
    caps
}

/// The running kernel's highest capability number.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
}

/// A resource limit (`--ulimit NAME=SOFT[:HARD]`; -1 is unlimited).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, …
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// Docker's ulimit names and their `RLIMIT_*` resources.
const ULIMITS: &[(&str, libc::__rlimit_resource_t)] = &[
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

impl std::str::FromStr for Ulimit {
    type Err = SecurityError;

    /// go-units' `ParseUlimit`: `NAME=SOFT[:HARD]`, the hard limit defaulting to the soft.
    fn from_str(val: &str) -> Result<Self, Self::Err> {
        let (name, limits) = val
            .split_once('=')
            .ok_or_else(|| SecurityError::UlimitSyntax(val.to_string()))?;
        if !ULIMITS.iter().any(|(n, _)| *n == name) {
            return Err(SecurityError::UlimitType(name.to_string()));
        }
        let number = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| SecurityError::UlimitNumber(s.to_string()))
        };
        let parts: Vec<&str> = limits.split(':').collect();
        let (soft, hard) = match parts[..] {
            [s] => {
                let s = number(s)?;
                (s, s)
            }
            [s, h] => {
                let h = number(h)?;
                (number(s)?, h)
            }
            _ => return Err(SecurityError::UlimitValues(limits.to_string())),
        };
        if hard != -1 && soft > hard {
            return Err(SecurityError::UlimitOrder(soft, hard));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }
}

impl Ulimit {
    /// The `RLIMIT_*` resource and the limit to set (-1, or any negative, is unlimited).
    pub(crate) fn rlimit(&self) -> Option<(libc::__rlimit_resource_t, libc::rlimit)> {
        let (_, resource) = ULIMITS.iter().find(|(n, _)| *n == self.name)?;
        let v = |n: i64| u64::try_from(n).unwrap_or(libc::RLIM_INFINITY);
        Some((
            *resource,
            libc::rlimit {
                rlim_cur: v(self.soft),
                rlim_max: v(self.hard),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert_eq!(
            normalize_capability("net_admin", "CapAdd").unwrap(),
            "CAP_NET_ADMIN"
        );
        assert_eq!(
            normalize_capability("Cap_Chown", "CapAdd").unwrap(),
            "CAP_CHOWN"
        );
        assert_eq!(normalize_capability("all", "CapDrop").unwrap(), "ALL");
        assert_eq!(
            normalize_capability("foo", "CapAdd")
                .unwrap_err()
                .to_string(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
    }

    #[test]
    fn capability_sets() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        let default = capability_set(false, &[], &[], 40);
        assert_eq!(default, DEFAULT_CAPS.to_vec());
        let c = capability_set(false, &s(&["CAP_NET_ADMIN"]), &s(&["CAP_CHOWN"]), 40);
        assert!(c.contains(&12) && !c.contains(&0));
        assert_eq!(
            capability_set(false, &s(&["CAP_KILL"]), &s(&["ALL"]), 40),
            vec![5]
        );
        let c = capability_set(false, &s(&["ALL"]), &s(&["CAP_KILL"]), 40);
        assert_eq!(c.len(), 40);
        assert!(!c.contains(&5));
        assert_eq!(capability_set(true, &[], &s(&["ALL"]), 37).len(), 38);
    }

    #[test]
    fn ulimits() {
        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        let u: Ulimit = "core=-1".parse().unwrap();
        assert_eq!(u.rlimit().unwrap().1.rlim_max, libc::RLIM_INFINITY);
        let err = |s: &str| s.parse::<Ulimit>().unwrap_err().to_string();
        assert_eq!(err("nofile"), "invalid ulimit argument: nofile");
        assert_eq!(err("files=1"), "invalid ulimit type: files");
        assert_eq!(
            err("nofile=2048:1024"),
            "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"
        );
        assert_eq!(
            err("nofile=x"),
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            err("nofile=1:2:3"),
            "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"
        );
    }
}
