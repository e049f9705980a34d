//! What the caller and the helper agree on: the specs sent to the helper (serialized on the
//! spec pipe) and the environment variables and exit code of the helper protocol, plus the
//! parsers of the user-facing values they hold (`--device`, `--add-host`).

use crate::devices;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Environment variable naming the fd on which the helper reports setup errors (set by
/// [`crate::Executor::run`]).
pub const ERROR_FD_ENV: &str = "KILN_SANDBOX_ERROR_FD";

/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED_EXIT: i32 = 125;

/// Prefix of the setup-error line the helper writes to stderr when it has no error fd.
pub const SETUP_ERROR_PREFIX: &str = "kiln-sandbox-error: ";

/// First argument that makes a binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__kiln-sandbox";

/// Environment variable with the sandbox's cgroup (JSON, set by [`crate::Executor::run`]).
pub(crate) const CGROUP_ENV: &str = "KILN_SANDBOX_CGROUP";

/// Environment variable naming the external OCI runtime (set by [`crate::Executor::run`] for
/// [`crate::Executor::with_runtime`]).
pub(crate) const RUNTIME_ENV: &str = "KILN_SANDBOX_RUNTIME";

/// Environment variable with the sandbox's id (cgroup and OCI container names).
pub(crate) const ID_ENV: &str = "KILN_SANDBOX_ID";

/// Environment variable naming the inherited fd the helper reads its JSON spec from. The spec
/// never travels in argv, where `ps` on the host and `/proc/1/cmdline` in the sandbox would
/// show it (environment values, host paths).
pub(crate) const SPEC_FD_ENV: &str = "KILN_SANDBOX_SPEC_FD";

/// Environment variable naming the inherited fd on which the helper reports a started
/// sandbox ([`crate::Executor::run_observed`]): the outer helper writes `pid PID START_TIME` for pid
/// 1, pid 1 writes `ready` once the sandbox is set up.
pub(crate) const START_FD_ENV: &str = "KILN_SANDBOX_START_FD";

/// Environment variable for tests only: milliseconds the outer helper waits after forking
/// pid 1 before it reports it on the start pipe (so that pid 1's setup, `pivot_root`
/// included, comes first, as it may on a loaded host).
#[doc(hidden)]
pub const TEST_REPORT_DELAY_ENV: &str = "KILN_SANDBOX_TEST_REPORT_DELAY_MS";

/// Environment variable that makes the helper join a running sandbox instead of creating
/// one (value `exec`; the spec on [`SPEC_FD_ENV`] is then an exec request).
pub(crate) const MODE_ENV: &str = "KILN_SANDBOX_MODE";

/// The root filesystem of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    /// Lower dirs, top-most first (may be empty: an empty rootfs).
    pub lowers: Vec<PathBuf>,
    /// Overlay upper dir (must exist, on the same filesystem as `work`).
    pub upper: PathBuf,
    /// Overlay work dir (must exist, empty).
    pub work: PathBuf,
}

/// Network of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with only `lo` (up).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with outbound access through a user-mode network stack
    /// (`pasta`, from Debian's `passt` package; see the crate docs).
    Default,
    /// The network namespace bind-mounted at this path, made and configured by the caller
    /// (`kiln-network`: a container on user-defined networks); `lo` is brought up.
    Join(std::path::PathBuf),
}

/// A bind mount into the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path in the container (created in the upper dir if missing).
    pub destination: String,
    /// Mount read-only.
    pub readonly: bool,
}

/// What to run and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// Root filesystem.
    pub rootfs: RootFs,
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory, created when missing.
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved against the rootfs's /etc/passwd
    /// and /etc/group; empty means root.
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Network.
    pub network: Network,
    /// Extra bind mounts.
    pub mounts: Vec<BindMount>,
    /// More sandbox settings (tmpfs mounts, resource limits, privileges); `Default` is
    /// Docker's default container.
    #[serde(default)]
    pub extra: SandboxOptions,
}

/// A tmpfs mounted in the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub destination: String,
    /// Size limit in bytes.
    pub size: Option<u64>,
    /// Permission bits of its root (`None`: 1777, as docker's).
    #[serde(default)]
    pub mode: Option<u32>,
}

/// Resource limits (cgroups).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Memory limit in bytes (`--memory`).
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`--memory-swap`; -1: unlimited swap), with `memory` only;
    /// `None`: no swap at all (as much as `memory`, kiln's default).
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// CPU quota in CPUs (`--cpus 1.5`).
    pub cpus: Option<f64>,
    /// Maximum number of processes (`--pids-limit`).
    pub pids: Option<i64>,
    /// Give the sandbox a cgroup of its own in each of the memory, cpu, pids and freezer
    /// controllers where the host has them, limits or not, so that its limits can be changed
    /// and it can be frozen while it runs ([`crate::SandboxCgroups`]; containers set this,
    /// build steps need not). A controller the host lacks is skipped here (unlike a limit).
    #[serde(default)]
    pub updatable: bool,
}

/// Sandbox settings beyond the process and its root filesystem.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxOptions {
    /// tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// Resource limits.
    #[serde(default)]
    pub resources: Resources,
    /// `RUN --security=insecure` / `--privileged`: all capabilities, no seccomp, every
    /// device.
    #[serde(default)]
    pub privileged: bool,
    /// Create `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` in the rootfs (that is, in
    /// the upper dir) when the image lacks them, so that generated ones can be mounted over
    /// them (`kiln run` sets this). Without it (build steps) only the files the image already
    /// has are covered, and nothing is ever written into the layer.
    #[serde(default)]
    pub create_etc_files: bool,
    /// Published ports (`kiln run -p`), forwarded from the host by pasta; only with
    /// [`Network::Default`].
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Host devices made available in the sandbox (`--device`), beyond Docker's default
    /// device rules (see [`SandboxOptions::privileged`] for all devices).
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `--add-host NAME:IP`: extra `/etc/hosts` entries, as `(name, ip)`; check them with
    /// [`parse_add_host`].
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// Name servers of the generated `/etc/resolv.conf`, in place of the host's (a user-defined
    /// network's name server, on its gateway); its `search` and `options` lines are kept.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--read-only`: the root filesystem is mounted read-only (the mounts on it, `/dev`,
    /// `/proc` and the generated /etc files keep their own modes).
    #[serde(default)]
    pub read_only: bool,
    /// The writable layer is thrown away when the sandbox ends (`--rm`): its overlay is
    /// mounted `volatile` (no write-back to the upper dir's filesystem is waited for).
    #[serde(default)]
    pub discard_upper: bool,
    /// Capabilities, `no_new_privs`, seccomp and resource limits of the sandbox's processes.
    #[serde(default)]
    pub process: ProcessOptions,
}

/// How a sandboxed process is confined beyond [`SandboxOptions::privileged`]: docker's
/// `--cap-add`, `--cap-drop`, `--security-opt` and `--ulimit`. `Default` is docker's
/// default (with kiln's `no_new_privs`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessOptions {
    /// `--cap-add`: names normalized by [`crate::normalize_capability`] (`ALL` allowed).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`: as `cap_add`.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges=false` turns `no_new_privs` off (`None`, and
    /// `true`, keep kiln's default: on unless privileged).
    #[serde(default)]
    pub no_new_privileges: Option<bool>,
    /// `--security-opt seccomp=unconfined`: no seccomp filter.
    #[serde(default)]
    pub seccomp_unconfined: bool,
    /// `--ulimit`: resource limits set before the process starts.
    #[serde(default)]
    pub ulimits: Vec<crate::Ulimit>,
}

/// A host device node made available in the sandbox (`--device HOST[:CONTAINER[:PERMS]]`):
/// the node is created at [`DeviceMapping::container`] with the host node's type, numbers,
/// mode and owner, and the sandbox's device cgroup allows [`DeviceMapping::permissions`] on
/// it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The device node on the host.
    pub host: PathBuf,
    /// Absolute path in the container.
    pub container: String,
    /// `r` (read), `w` (write), `m` (mknod), each at most once; Docker's default is `rwm`.
    pub permissions: String,
}

/// Why a `--device` value was refused ([`DeviceMapping`]'s `FromStr`), with docker's
/// messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceMappingError {
    /// More than three `:`-separated parts.
    #[error("invalid device specification: {0}")]
    Syntax(String),
    /// Permissions other than `r`, `w` and `m`, each at most once.
    #[error("invalid device mode: {0}")]
    Mode(String),
    /// A relative host or container path.
    #[error("{spec}: device paths must be absolute: {path:?}")]
    Relative {
        /// The whole value.
        spec: String,
        /// The relative path.
        path: String,
    },
}

impl std::str::FromStr for DeviceMapping {
    type Err = DeviceMappingError;

    /// Docker's syntax: `HOST`, `HOST:CONTAINER`, `HOST:PERMS` (when the second part is a
    /// valid mode) or `HOST:CONTAINER:PERMS`; the container path defaults to the host path,
    /// the permissions to `rwm`.
    fn from_str(s: &str) -> Result<Self, DeviceMappingError> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if devices::parse_access(p).is_some() => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(DeviceMappingError::Syntax(s.to_string())),
        };
        if devices::parse_access(perms).is_none() {
            return Err(DeviceMappingError::Mode(perms.to_string()));
        }
        for path in [host, container] {
            if !path.starts_with('/') {
                return Err(DeviceMappingError::Relative {
                    spec: s.to_string(),
                    path: path.to_string(),
                });
            }
        }
        Ok(DeviceMapping {
            host: PathBuf::from(host),
            container: container.to_string(),
            permissions: perms.to_string(),
        })
    }
}

/// Whether `name` may be a container's hostname: RFC 1123 labels (letters, digits and
/// inner `-`) joined by dots, at most 64 bytes (Linux's HOST_NAME_MAX), as docker checks it.
/// Anything else (a newline, a space) would also write extra lines into `/etc/hosts`.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Why an `--add-host` value was refused ([`parse_add_host`]), with docker's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddHostError {
    /// No `:`/`=` separator, or no name before it.
    #[error("bad format for add-host: {0:?}")]
    Format(String),
    /// Docker's `host-gateway`.
    #[error("add-host: host-gateway is not supported")]
    HostGateway,
    /// Not a literal IP address.
    #[error("invalid IP address in add-host: {0:?}")]
    Address(String),
    /// Not a valid host name ([`valid_hostname`]).
    #[error("invalid host name in add-host: {0:?}")]
    Name(String),
}

/// Parses `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address keeps its colons: the split is
/// at the first separator) with docker's messages: `bad format for add-host: "…"`, `invalid
/// IP address in add-host: "…"`. The name must be a valid host name ([`valid_hostname`]) and
/// the IP a literal address (docker's `host-gateway` is not supported).
pub fn parse_add_host(spec: &str) -> Result<(String, String), AddHostError> {
    let sep = spec.find([':', '=']);
    let (name, ip) = match sep {
        Some(i) => (&spec[..i], &spec[i + 1..]),
        None => return Err(AddHostError::Format(spec.to_string())),
    };
    if name.is_empty() {
        return Err(AddHostError::Format(spec.to_string()));
    }
    if ip == "host-gateway" {
        return Err(AddHostError::HostGateway);
    }
    // docker accepts `[::1]` for an IPv6 address.
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let addr: std::net::IpAddr = bare
        .parse()
        .map_err(|_| AddHostError::Address(ip.to_string()))?;
    if !valid_hostname(name) {
        return Err(AddHostError::Name(name.to_string()));
    }
    Ok((name.to_string(), addr.to_string()))
}

/// A port published from the host into the sandbox (`-p [IP:]HOST:CTR[/PROTO]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    /// Host address to listen on; `None`: all addresses.
    pub host_ip: Option<String>,
    /// Host port.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A process to start in a running sandbox ([`crate::Executor::exec_in`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` environment (plus `HOME` and a default `PATH` when absent).
    pub env: Vec<String>,
    /// Working directory in the sandbox (must exist; empty means `/`).
    pub cwd: String,
    /// User as in [`RunSpec::user`], resolved against the sandbox's /etc/passwd.
    pub user: String,
    /// Every capability, no seccomp, no `no_new_privs` (use the sandbox's own setting).
    pub privileged: bool,
    /// The sandbox's own [`SandboxOptions::process`].
    #[serde(default)]
    pub process: ProcessOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_and_add_hosts() {
        for ok in ["web", "a-b.example.com", "x1", &"a".repeat(64)] {
            assert!(valid_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            "a\nb",
            "a b",
            "bad_name",
            "-a",
            "a-",
            "a..b",
            ".a",
            &"a".repeat(65),
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("v6:::1").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert_eq!(
            parse_add_host("v6=[::1]").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert_eq!(
            parse_add_host("h:x").unwrap_err().to_string(),
            "invalid IP address in add-host: \"x\""
        );
        assert_eq!(
            parse_add_host(":1.2.3.4").unwrap_err().to_string(),
            "bad format for add-host: \":1.2.3.4\""
        );
        assert!(parse_add_host("a\nb:1.2.3.4").is_err());
        assert!(parse_add_host("h:1.2.3.4\nevil").is_err());
    }

    #[test]
    fn device_flag_syntax_is_dockers() {
        let parse = |s: &str| s.parse::<DeviceMapping>().map_err(|e| e.to_string());
        let m = |h: &str, c: &str, p: &str| DeviceMapping {
            host: h.into(),
            container: c.into(),
            permissions: p.into(),
        };
        assert_eq!(parse("/dev/fuse"), Ok(m("/dev/fuse", "/dev/fuse", "rwm")));
        assert_eq!(
            parse("/dev/sda:/dev/xvda"),
            Ok(m("/dev/sda", "/dev/xvda", "rwm"))
        );
        assert_eq!(parse("/dev/sda:r"), Ok(m("/dev/sda", "/dev/sda", "r")));
        assert_eq!(
            parse("/dev/sda:/dev/x:rm"),
            Ok(m("/dev/sda", "/dev/x", "rm"))
        );
        assert_eq!(
            parse("/dev/sda:/dev/x:rwx"),
            Err("invalid device mode: rwx".into())
        );
        assert_eq!(
            parse("/dev/a:/b:r:x"),
            Err("invalid device specification: /dev/a:/b:r:x".into())
        );
        assert_eq!(
            parse("/dev/sda:xvda"),
            Err("/dev/sda:xvda: device paths must be absolute: \"xvda\"".into())
        );
        assert!(parse("").is_err());
    }
}
