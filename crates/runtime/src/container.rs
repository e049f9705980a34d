//! A container on disk: `config.json` (what it runs, fixed at creation) and `state.json`
//! (where it is in its life, rewritten atomically), and the set of containers of a root.

use crate::{Error, Result};
use kiln_executor::{HostProcess, RunSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Version of the on-disk layout of a container directory. Bump it when `config.json` or
/// `state.json` change incompatibly; directories of other versions are not listed.
pub const LAYOUT_VERSION: u32 = 1;

/// What a container runs, written once when it is created (`config.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    /// Unique among the root's containers (generated when not given).
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: i64,
    /// The sandbox: root filesystem, process, hostname, network, mounts, limits.
    pub spec: RunSpec,
    /// `--rm`.
    pub remove: bool,
    /// `-d`: run under a supervisor of its own with its output in the log.
    pub detach: bool,
    /// `-i` (with `-d`: stdin stays open, without data).
    pub interactive: bool,
    /// `-t` (foreground runs only, for now).
    #[serde(default)]
    pub tty: bool,
    /// The image's config (for `StopSignal`, and for `inspect` later).
    pub image_config: serde_json::Value,
    /// The volumes it mounts (their mounts are in `spec.mounts` too).
    #[serde(default)]
    pub volumes: Vec<MountedVolume>,
    /// `--label K=V`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--stop-signal` (as given; the image's `StopSignal` otherwise).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits without `-t` (-1: forever; 10 otherwise).
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    /// `--restart`.
    #[serde(default)]
    pub restart: crate::RestartPolicy,
    /// Its health check (the image's with `--health-*` applied), as docker's
    /// `Config.Healthcheck`.
    #[serde(default)]
    pub healthcheck: Option<crate::Healthcheck>,
    /// The `-p` specs as given (`HostConfig.PortBindings`; their host ports, picked when
    /// the container was made, are in `spec.extra.ports`); `None` for containers made
    /// before kiln kept them.
    #[serde(default)]
    pub publish: Option<Vec<crate::PortSpec>>,
    /// `-P`.
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose`, as `(port, protocol)`.
    #[serde(default)]
    pub expose: Vec<(u16, String)>,
    /// `--init`.
    #[serde(default)]
    pub init: bool,
    /// `--log-driver`, `--log-opt` (json-file without rotation for containers made before).
    #[serde(default)]
    pub log: crate::LogConfig,
    /// `--network NAME` of a user-defined network (`spec.network` joins the namespace
    /// `kiln-network` makes for it at each start).
    #[serde(default)]
    pub network_name: Option<String>,
    /// `--network-alias`.
    #[serde(default)]
    pub network_aliases: Vec<String>,
}

#[cfg(test)]
impl Config {
    /// A container config for unit tests: `true` in container `id` named `name`, its overlay
    /// dirs under `dir`, everything else at its default; tests override fields with
    /// `Config { …, ..Config::for_test(…) }`, so a new field is added here once.
    pub(crate) fn for_test(id: &str, name: &str, dir: &Path) -> Config {
        Config {
            version: LAYOUT_VERSION,
            id: id.to_string(),
            name: name.to_string(),
            image: "img".into(),
            created: 0,
            spec: RunSpec {
                rootfs: kiln_executor::RootFs {
                    lowers: vec![],
                    upper: dir.join("upper"),
                    work: dir.join("work"),
                },
                args: vec!["true".into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                hostname: "h".into(),
                network: kiln_executor::Network::None,
                mounts: vec![],
                extra: kiln_executor::SandboxOptions::default(),
            },
            remove: false,
            detach: true,
            interactive: false,
            tty: false,
            labels: std::collections::BTreeMap::new(),
            stop_signal: None,
            stop_timeout: None,
            restart: crate::RestartPolicy::No,
            image_config: serde_json::Value::Null,
            volumes: vec![],
            healthcheck: None,
            publish: None,
            publish_all: false,
            expose: vec![],
            init: false,
            log: crate::LogConfig::default(),
            network_name: None,
            network_aliases: vec![],
        }
    }
}

/// A volume a container mounts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountedVolume {
    /// The volume's name.
    pub name: String,
    /// Where it is mounted in the container.
    pub destination: String,
    /// Created for this container (`-v DST`, an image's `VOLUME`): `rm -v` and `run --rm`
    /// remove it.
    pub anonymous: bool,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, not started (or its start failed: see [`State::error`]).
    #[default]
    Created,
    /// Started; running as long as its supervisor lives (see [`Container::is_running`]).
    Running,
    /// Its process ended.
    Exited,
}

/// A container's changing state (`state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Status.
    pub status: Status,
    /// The process that runs the container and records its end: the shim of a detached
    /// container, the `kiln run` process of a foreground one.
    pub supervisor: Option<HostProcess>,
    /// The sandbox's pid 1 (what `exec` joins and signals go to); unknown for containers
    /// run through an external OCI runtime.
    pub init: Option<HostProcess>,
    /// Start time, milliseconds since the Unix epoch.
    pub started: Option<i64>,
    /// End time, milliseconds since the Unix epoch.
    pub finished: Option<i64>,
    /// Exit code (128+N when killed by signal N; 255 when the supervisor died first).
    pub exit_code: Option<i32>,
    /// Killed by the OOM killer because of its memory limit.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not start, or why its end was not recorded.
    pub error: Option<String>,
    /// How often the shim restarted it (its policy) since the user last started it.
    #[serde(default)]
    pub restart_count: u32,
    /// Its command ended and the shim waits to restart it (the status stays running; the
    /// exit code and end time are the last run's).
    #[serde(default)]
    pub restarting: bool,
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` as JSON to `path` atomically: a temporary file next to it, then a rename.
pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let data = serde_json::to_vec(value).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&data)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// A container: its directory, config and last read state.
#[derive(Clone, Debug)]
pub struct Container {
    /// `ROOT/containers/<id>`.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: Config,
    /// `state.json` as last read or written.
    pub state: State,
}

impl Container {
    /// Reads the container in `dir`.
    pub fn load(dir: &Path) -> Result<Container> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            fs::read(&p).map_err(io_err(&p))
        };
        let parse_err = |name: &str, e: serde_json::Error| Error::Io {
            path: dir.join(name),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| parse_err("config.json", e))?;
        if config.version != LAYOUT_VERSION {
            return Err(parse_err(
                "config.json",
                serde::de::Error::custom(format!("layout version {}", config.version)),
            ));
        }
        let state: State =
            serde_json::from_slice(&read("state.json")?).map_err(|e| parse_err("state.json", e))?;
        Ok(Container {
            dir: dir.to_path_buf(),
            config,
            state,
        })
    }

    /// The full id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The first 12 characters of the id.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12.min(self.config.id.len())]
    }

    /// Locks the container directory (`flock` on it): shared while someone waits for the
    /// container's end ([`Container::wait`]), exclusive before a `--rm` run removes it, so
    /// that waiters read the exit code first. `None` when the directory is gone.
    pub(crate) fn lock_dir(&self, exclusive: bool) -> Result<Option<fs::File>> {
        let f = match fs::File::open(&self.dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on an fd we own.
        while unsafe { libc::flock(f.as_raw_fd(), op) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(&self.dir)(e));
            }
        }
        Ok(Some(f))
    }

    /// Writes [`Container::state`] (atomically).
    pub fn save_state(&self) -> Result<()> {
        write_json_atomic(&self.dir.join("state.json"), &self.state)
    }

    /// Re-reads `state.json`.
    pub fn reload(&mut self) -> Result<()> {
        let p = self.dir.join("state.json");
        let data = fs::read(&p).map_err(io_err(&p))?;
        self.state = serde_json::from_slice(&data).map_err(|e| Error::Io {
            path: p,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        Ok(())
    }

    /// Whether the container runs: its state says so and its supervisor is alive.
    pub fn is_running(&self) -> bool {
        self.state.status == Status::Running && self.state.supervisor.is_some_and(|s| s.is_alive())
    }

    /// Brings the state up to date: a container whose state says running but whose
    /// supervisor is gone (killed, or its machine rebooted) without recording the end is
    /// recorded as exited with code 255 now, and removed if it was run with `--rm` (its
    /// directory is then gone). The state is read again after the supervisor was found dead,
    /// so an end it recorded just before exiting wins.
    pub fn refresh(&mut self) -> Result<()> {
        if self.state.status != Status::Running || self.is_running() {
            return Ok(());
        }
        self.reload()?;
        if self.state.status != Status::Running || self.is_running() {
            return Ok(());
        }
        let pid = self.state.supervisor.map_or(0, |s| s.pid);
        self.state.status = Status::Exited;
        self.state.restarting = false;
        self.state.exit_code = Some(255);
        self.state.finished = Some(now_millis());
        self.state.error = Some(format!(
            "the container's supervisor (pid {pid}) died without recording its end"
        ));
        self.save_state()?;
        if self.config.remove {
            self.remove_dir()?;
            self.remove_anonymous_volumes()?;
        }
        Ok(())
    }
}

/// The containers of a root: `ROOT/containers/<id>/`, and `ROOT/containers.lock`, which
/// serialises creations (names are unique).
#[derive(Clone, Debug)]
pub struct Containers {
    dir: PathBuf,
    lock: PathBuf,
}

/// An exclusive lock on the set of containers (released on drop).
pub(crate) struct Lock(#[allow(dead_code)] fs::File);

impl Containers {
    /// The containers of the state directory `root`.
    pub fn new(root: &Path) -> Containers {
        Containers {
            dir: root.join("containers"),
            lock: root.join("containers.lock"),
        }
    }

    /// `ROOT/containers`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock(&self) -> Result<Lock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(io_err(&self.lock))?;
        // SAFETY: flock on an fd we own.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(&self.lock)(e));
            }
        }
        Ok(Lock(f))
    }

    /// Every container, newest first, with its state brought up to date
    /// ([`Container::refresh`]). Directories that are not (or no longer, or not yet) a
    /// container of this layout are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.len() != 64 {
                continue;
            }
            let Ok(mut c) = Container::load(&entry.path()) else {
                continue;
            };
            // A container removed meanwhile (or now, see refresh) is simply gone; one whose
            // state cannot be brought up to date is listed as it is.
            let _ = c.refresh();
            if !c.dir.exists() {
                continue;
            }
            out.push(c);
        }
        out.sort_by(|a, b| {
            b.config
                .created
                .cmp(&a.config.created)
                .then_with(|| a.config.id.cmp(&b.config.id))
        });
        Ok(out)
    }

    /// The container `what` names, as docker resolves it: a full id, then a name (with or
    /// without a leading `/`), then a unique id prefix.
    pub fn find(&self, what: &str) -> Result<Container> {
        let all = self.list()?;
        let name = what.strip_prefix('/').unwrap_or(what);
        if let Some(c) = all.iter().find(|c| c.config.id == what) {
            return Ok(c.clone());
        }
        if let Some(c) = all.iter().find(|c| c.config.name == name) {
            return Ok(c.clone());
        }
        let lower = what.to_ascii_lowercase();
        let mut matches = all
            .iter()
            .filter(|c| !lower.is_empty() && c.config.id.starts_with(&lower));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(Error::AmbiguousContainer(what.to_string())),
            _ => Err(Error::NoSuchContainer(what.to_string())),
        }
    }
}

impl Containers {
    /// Diff ids (`sha256:…`) of the layer snapshots containers, running or stopped, stack:
    /// a prune must keep them, even after `rmi` of their image (see
    /// [`kiln_cache::GcRoots::snapshots`]). None when the containers cannot be listed.
    pub fn stacked_snapshots(&self) -> Vec<String> {
        let Ok(containers) = self.list() else {
            return Vec::new();
        };
        containers
            .iter()
            .flat_map(|c| &c.config.spec.rootfs.lowers)
            .filter_map(|lower| lower.file_name())
            .map(|hex| format!("sha256:{}", hex.to_string_lossy()))
            .collect()
    }

    /// The manifests of the images containers (running or stopped) were made from (see
    /// [`Container::image_manifest`]): `image prune` keeps them. None when the containers
    /// cannot be listed.
    pub fn image_manifests(&self, store: &kiln_cache::Store) -> Result<HashSet<String>> {
        let Ok(containers) = self.list() else {
            return Ok(HashSet::new());
        };
        let images = store.list_images()?;
        Ok(containers
            .iter()
            .filter_map(|c| c.image_manifest(store, &images))
            .collect())
    }
}

impl Container {
    /// The manifest of the image the container was made from: the one its image reference
    /// (an ID, a name, `name@digest`, as its `kiln run` named it) finds now when that one
    /// has the container's layers, else any of `images` that has them (the name may have
    /// moved on since, or be gone), else the one the reference finds.
    pub fn image_manifest(
        &self,
        store: &kiln_cache::Store,
        images: &[kiln_cache::ImageRecord],
    ) -> Option<String> {
        let want: Vec<String> = self
            .config
            .spec
            .rootfs
            .lowers
            .iter()
            .rev()
            .filter_map(|l| l.file_name())
            .map(|hex| format!("sha256:{}", hex.to_string_lossy()))
            .collect();
        let named = kiln_cache::image::lookup(store, &self.config.image)
            .ok()
            .map(|f| f.manifest_digest);
        let mut seen = HashSet::new();
        named
            .iter()
            .cloned()
            .chain(images.iter().map(|r| r.manifest_digest.clone()))
            .filter(|m| seen.insert(m.clone()))
            .find(|m| {
                kiln_cache::image::layers(store, m)
                    .is_ok_and(|l| l.iter().map(|l| &l.diff_id).eq(want.iter()))
            })
            .or(named)
    }
}

/// Whether `name` is a valid container name (docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["ab", "web-1", "a.b_c", "X9"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", "_ab", "a b", "a/b", "é1"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }
}
