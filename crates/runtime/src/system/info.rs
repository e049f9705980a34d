//! `kiln version` and `kiln info`: what docker's commands of those names report, as far as
//! a daemonless tool has it. The structs serialize with docker's JSON field names
//! (`ServerVersion`, `NCPU`, `MemTotal`, `DockerRootDir`, …) so that `--format` can read
//! them as it reads docker's; the CLI renders the text.
//!
//! kiln has no daemon: its "server" is the same process, working on the root directory
//! (`--root`), so the Server section describes the root and this host.

use crate::{Containers, Result};
use kiln_cache::Store;
use serde::Serialize;
use std::path::Path;

/// kiln's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `kiln version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionInfo {
    /// The command line.
    pub client: ClientVersion,
    /// The engine (this same process).
    pub server: ServerVersion,
}

/// `kiln version`'s Client section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientVersion {
    /// `{"Name": "kiln"}`.
    pub platform: Platform,
    /// kiln's version.
    pub version: String,
    /// `linux`.
    pub os: String,
    /// Go's name of the architecture (`amd64`, `arm64`).
    pub arch: String,
}

/// A product name, as docker's `Platform`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    /// `kiln`.
    pub name: String,
}

/// `kiln version`'s Server section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerVersion {
    /// `{"Name": "kiln (daemonless)"}`.
    pub platform: Platform,
    /// The engine's parts: kiln itself (no daemon, no separate runtime).
    pub components: Vec<Component>,
    /// kiln's version.
    pub version: String,
    /// `linux`.
    pub os: String,
    /// Go's name of the architecture.
    pub arch: String,
    /// `uname -r`.
    pub kernel_version: String,
}

/// One part of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Component {
    /// `Engine`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// `kiln info`'s Server section, with docker's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Info {
    /// Containers in the root.
    #[serde(rename = "Containers")]
    pub containers: usize,
    /// Of them running (paused ones not counted).
    #[serde(rename = "ContainersRunning")]
    pub containers_running: usize,
    /// Of them paused.
    #[serde(rename = "ContainersPaused")]
    pub containers_paused: usize,
    /// Of them created or exited.
    #[serde(rename = "ContainersStopped")]
    pub containers_stopped: usize,
    /// Images (by ID) in the store.
    #[serde(rename = "Images")]
    pub images: usize,
    /// `overlayfs`: layers are unpacked into snapshot directories a container stacks as
    /// overlay lowers.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// `json-file`.
    #[serde(rename = "LoggingDriver")]
    pub logging_driver: String,
    /// `cgroupfs`: kiln writes the cgroup files itself (no systemd).
    #[serde(rename = "CgroupDriver")]
    pub cgroup_driver: String,
    /// `1` or `2` (a hybrid host is `1`, as docker says).
    #[serde(rename = "CgroupVersion")]
    pub cgroup_version: String,
    /// `uname -r`.
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    /// `VERSION_ID` of `/etc/os-release`.
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    /// `linux`.
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// `uname -m` (`x86_64`).
    #[serde(rename = "Architecture")]
    pub architecture: String,
    /// CPUs this process may run on.
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    #[serde(rename = "MemTotal")]
    pub mem_total: u64,
    /// The host name.
    #[serde(rename = "Name")]
    pub name: String,
    /// kiln's root directory.
    #[serde(rename = "DockerRootDir")]
    pub docker_root_dir: String,
    /// kiln's version.
    #[serde(rename = "ServerVersion")]
    pub server_version: String,
}

/// Go's `GOARCH` for this build's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `kiln version`'s facts.
pub fn version() -> VersionInfo {
    let os = std::env::consts::OS.to_string();
    VersionInfo {
        client: ClientVersion {
            platform: Platform {
                name: "kiln".into(),
            },
            version: VERSION.into(),
            os: os.clone(),
            arch: go_arch().into(),
        },
        server: ServerVersion {
            platform: Platform {
                name: "kiln (daemonless)".into(),
            },
            components: vec![Component {
                name: "Engine".into(),
                version: VERSION.into(),
            }],
            version: VERSION.into(),
            os,
            arch: go_arch().into(),
            kernel_version: uname().release,
        },
    }
}

/// `kiln info`'s facts about the store at `store` and this host.
///
/// # Errors
/// The store's images cannot be listed.
pub fn info(store: &Store) -> Result<Info> {
    let containers = Containers::new(store.root()).list().unwrap_or_default();
    let paused = containers.iter().filter(|c| c.is_paused()).count();
    let running = containers.iter().filter(|c| c.is_running()).count() - paused;
    let mut ids: Vec<String> = store
        .list_images()?
        .into_iter()
        .map(|r| r.manifest_digest)
        .collect();
    ids.sort();
    ids.dedup();
    let u = uname();
    let (operating_system, os_version) = os_release(Path::new("/etc/os-release"));
    Ok(Info {
        containers: containers.len(),
        containers_running: running,
        containers_paused: paused,
        containers_stopped: containers.len() - running - paused,
        images: ids.len(),
        driver: "overlayfs".into(),
        logging_driver: crate::LogDriver::default().name().into(),
        cgroup_driver: "cgroupfs".into(),
        cgroup_version: if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "2"
        } else {
            "1"
        }
        .into(),
        kernel_version: u.release,
        operating_system,
        os_version,
        os_type: std::env::consts::OS.into(),
        architecture: u.machine,
        ncpu: ncpu(),
        mem_total: std::fs::read_to_string("/proc/meminfo")
            .map(|m| mem_total(&m))
            .unwrap_or_default(),
        name: u.nodename,
        docker_root_dir: store.root().display().to_string(),
        server_version: VERSION.into(),
    })
}

struct Uname {
    release: String,
    machine: String,
    nodename: String,
}

fn uname() -> Uname {
    let u = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        u.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Uname {
        release: field(nix::sys::utsname::UtsName::release),
        machine: field(nix::sys::utsname::UtsName::machine),
        nodename: field(nix::sys::utsname::UtsName::nodename),
    }
}

/// CPUs this process may run on (Go's `runtime.NumCPU`: the affinity mask).
fn ncpu() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `PRETTY_NAME` and `VERSION_ID` of an os-release file (`<unknown>` as docker says when
/// there is none).
fn os_release(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    (
        get("PRETTY_NAME").unwrap_or_else(|| "<unknown>".into()),
        get("VERSION_ID").unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_parse() {
        assert_eq!(
            mem_total("MemTotal:       16318072 kB\nMemFree: 1 kB\n"),
            16_318_072 * 1024
        );
        assert_eq!(mem_total("nothing"), 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("os-release");
        std::fs::write(
            &p,
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .unwrap();
        assert_eq!(
            os_release(&p),
            ("Debian GNU/Linux 12 (bookworm)".into(), "12".into())
        );
        assert_eq!(
            os_release(&dir.path().join("none")),
            ("<unknown>".into(), String::new())
        );
        assert!(ncpu() >= 1);
    }

    #[test]
    fn info_counts_images_by_id_and_uses_dockers_json_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("root")).unwrap();
        s.set_image("docker.io/library/a:1", "sha256:aa").unwrap();
        s.set_image("docker.io/library/a:2", "sha256:aa").unwrap();
        s.set_image("docker.io/library/b:1", "sha256:bb").unwrap();
        let i = info(&s).unwrap();
        assert_eq!((i.images, i.containers), (2, 0));
        let v = serde_json::to_value(&i).unwrap();
        for key in [
            "ServerVersion",
            "Driver",
            "CgroupDriver",
            "CgroupVersion",
            "KernelVersion",
            "OperatingSystem",
            "Architecture",
            "NCPU",
            "MemTotal",
            "DockerRootDir",
            "ContainersRunning",
            "ContainersPaused",
            "ContainersStopped",
            "Images",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(
            v["DockerRootDir"],
            dir.path().join("root").display().to_string()
        );
        let v = serde_json::to_value(version()).unwrap();
        assert_eq!(v["Client"]["Version"], VERSION);
        assert_eq!(v["Server"]["Version"], VERSION);
        assert_eq!(v["Server"]["Components"][0]["Name"], "Engine");
    }
}
