//! RUN: a process in the executor's sandbox on an overlay of the input's layers; the upper
//! dir becomes the new layer.
//!
//! `RUN --mount`s are prepared here as bind mounts of host directories, so the executor
//! needs no knowledge of them: a bind of the context is the context dir itself; a bind of a
//! stage or image is its snapshot (one layer) or a read-only overlay of its snapshots mounted
//! under the store's tmp dir for the duration of the step; a cache mount is a directory under
//! `ROOT/cache-mounts/`; a tmpfs is the executor's tmpfs mount; a
//! secret is a file under /dev/shm (never on disk when /dev/shm is a tmpfs) removed after the
//! step. None of them reach the layer or a cache key.

use crate::{BuildWorker, ExecFailed, Output, StepError, Tail};
use kiln_executor::{BindMount, RootFs, RunSpec};
use kiln_opgraph::{CacheSharing, MountKind, NetworkMode, Security};
use kiln_solver::{BoxError, ExecContext};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What must stay alive (and be cleaned up) while a step runs.
#[derive(Default)]
struct Held {
    mounts: Vec<PathBuf>,
    files: Vec<PathBuf>,
    locks: Vec<std::fs::File>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(&f);
        }
    }
}

impl BuildWorker {
    pub(crate) async fn run_exec(
        &self,
        ctx: &ExecContext,
        e: &kiln_opgraph::ExecOp,
        inputs: Vec<Output>,
    ) -> Result<Output, BoxError> {
        // Checked again here for callers that skip `session::Entitlements::check`.
        if e.security == Security::Insecure && !self.cfg.allow_insecure {
            return Err(Box::new(StepError(
                "security.insecure is not allowed (RUN --security=insecure needs `--allow security.insecure`)".into(),
            )));
        }
        if e.network == NetworkMode::Host && !self.cfg.allow_network_host {
            return Err(Box::new(StepError(
                "network.host is not allowed (RUN --network=host needs `--allow network.host`)"
                    .into(),
            )));
        }
        let mut inputs = inputs.into_iter();
        let base = inputs.next().ok_or("exec without a rootfs")?;
        let base = base.layers().to_vec();
        let store = self.cfg.store.clone();
        let lowers = self.lowers(&base)?;
        let spec_lowers = lowers.clone();
        let tmp = store.temp_dir("exec-")?;
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;

        let mut held = Held::default();
        let mut mounts = Vec::new();
        let mut tmpfs = Vec::new();
        for (i, m) in e.mounts.iter().enumerate() {
            let scratch = tmp.path().join(format!("mount-{i}"));
            let bind = match &m.kind {
                MountKind::Bind {
                    path, readwrite, ..
                } => {
                    let src = inputs.next().ok_or("bind mount without a source")?;
                    let root = self.mount_source(&src, &scratch, &mut held)?;
                    let source = crate::fileop::resolve_in(&root, path, true)?;
                    if !source.exists() {
                        return Err(Box::new(StepError(format!(
                            "RUN --mount=type=bind: \"{path}\" not found in the mount source"
                        ))));
                    }
                    // A read-write bind must not change its source: give it a copy.
                    let source = if *readwrite {
                        let copy = scratch.join("rw");
                        copy_tree(&source, &copy)?;
                        copy
                    } else {
                        source
                    };
                    BindMount {
                        source,
                        destination: m.target.clone(),
                        readonly: !readwrite,
                    }
                }
                MountKind::Cache {
                    id,
                    sharing,
                    from,
                    path,
                    mode,
                    uid,
                    gid,
                    readonly,
                } => {
                    let seed = match from {
                        Some(_) => {
                            let src = inputs.next().ok_or("cache mount without its from")?;
                            let root = self.mount_source(&src, &scratch, &mut held)?;
                            Some(crate::fileop::resolve_in(&root, path, true)?)
                        }
                        None => None,
                    };
                    let dir = self.cache_dir(
                        id,
                        *sharing,
                        seed.as_deref(),
                        (*mode, *uid, *gid),
                        &mut held,
                    )?;
                    BindMount {
                        source: dir,
                        destination: m.target.clone(),
                        readonly: *readonly,
                    }
                }
                MountKind::Tmpfs { size } => {
                    tmpfs.push(kiln_executor::TmpfsMount {
                        destination: m.target.clone(),
                        size: *size,
                        mode: None,
                    });
                    continue;
                }
                MountKind::Secret {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(value) = self.cfg.secrets.get(id) else {
                        if *required {
                            return Err(Box::new(StepError(format!(
                                "secret {id} is required but was not given (use --secret id={id},src=FILE)"
                            ))));
                        }
                        continue;
                    };
                    let file = secret_file(value, *mode, *uid, *gid)?;
                    held.files.push(file.clone());
                    BindMount {
                        source: file,
                        destination: m.target.clone(),
                        readonly: true,
                    }
                }
            };
            mounts.push(bind);
        }

        let spec = RunSpec {
            rootfs: RootFs {
                lowers,
                upper: upper.clone(),
                work,
            },
            args: e.args.clone(),
            env: e.env.clone(),
            cwd: if e.cwd.is_empty() {
                "/".into()
            } else {
                e.cwd.clone()
            },
            user: e.user.clone(),
            hostname: self.cfg.hostname.clone(),
            network: match e.network {
                NetworkMode::Host => kiln_executor::Network::Host,
                NetworkMode::None => kiln_executor::Network::None,
                // A private namespace with outbound access through pasta (executor docs).
                NetworkMode::Default => kiln_executor::Network::Default,
            },
            mounts,
            extra: kiln_executor::SandboxOptions {
                privileged: e.security == Security::Insecure,
                tmpfs,
                // /etc/hosts etc. are bound over existing files only: never created in a layer.
                create_etc_files: false,
                extra_hosts: self.cfg.extra_hosts.clone(),
                ..Default::default()
            },
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let executor = self.cfg.executor.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let run = async move {
            executor
                .run_observed(&spec, kiln_executor::Output::Capture(tx), started_tx)
                .await
                .map(|r| r.exit_code)
        };
        // The scheduler may start more steps once this one's sandbox is set up.
        let started = async {
            if started_rx.await.is_ok() {
                ctx.command_started();
            }
        };
        let mut tail = Tail::new(20);
        let collect = async {
            while let Some((stream, data)) = rx.recv().await {
                let n = if stream == kiln_executor::Stream::Stdout {
                    1
                } else {
                    2
                };
                ctx.log(n, &data);
                tail.push(&data);
            }
        };
        let (code, (), ()) = tokio::join!(run, collect, started);
        drop(held);
        // Mount points the sandbox had to create are not part of the result (BuildKit).
        for m in &e.mounts {
            remove_mount_stub(&upper, &spec_lowers, &m.target);
        }
        let code = code?;
        if code != 0 {
            return Err(Box::new(ExecFailed {
                command: e.args.clone(),
                exit_code: code,
                tail: tail.lines(),
            }));
        }
        let layer = tokio::task::spawn_blocking(move || store.commit_upper(&upper)).await??;
        drop(tmp);
        let mut chain = base;
        chain.extend(layer);
        Ok(Output::Layers(chain))
    }

    /// A host directory showing `src`: the context dir, a single snapshot, or a read-only
    /// overlay of snapshots mounted at `scratch` until `held` is dropped.
    fn mount_source(
        &self,
        src: &Output,
        scratch: &Path,
        held: &mut Held,
    ) -> Result<PathBuf, BoxError> {
        match src {
            Output::Local { name, exclude } if exclude.is_empty() => {
                Ok(self.local_dir(name)?.clone())
            }
            // The context as the build sees it: without its `.dockerignore`d files.
            Output::Local { name, exclude } => {
                let dir = self.local_dir(name)?;
                let view = scratch.join("ctx");
                crate::context::materialize(dir, exclude, &view)?;
                Ok(view)
            }
            Output::Layers(layers) => {
                let lowers = self.lowers(layers)?;
                match lowers.len() {
                    0 => {
                        std::fs::create_dir_all(scratch)?;
                        Ok(scratch.to_path_buf())
                    }
                    1 => Ok(lowers[0].clone()),
                    _ => {
                        let target = scratch.join("src");
                        std::fs::create_dir_all(&target)?;
                        kiln_executor::mount::overlay(&lowers, None, &target)?;
                        held.mounts.push(target.clone());
                        Ok(target)
                    }
                }
            }
        }
    }

    /// The directory of cache mount `id`, created (and seeded from `seed`) on first use.
    fn cache_dir(
        &self,
        id: &str,
        sharing: CacheSharing,
        seed: Option<&Path>,
        (mode, uid, gid): (u32, u32, u32),
        held: &mut Held,
    ) -> Result<PathBuf, BoxError> {
        use fs4::fs_std::FileExt;
        let base = self.cfg.store.root().join("cache-mounts");
        std::fs::create_dir_all(&base)?;
        let name = blake3::hash(id.as_bytes()).to_hex().to_string();
        let dir = base.join(&name);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join(format!("{name}.lock")))?;
        match sharing {
            CacheSharing::Shared => lock.lock_shared()?,
            CacheSharing::Locked => lock.lock_exclusive()?,
            CacheSharing::Private => {
                if lock.try_lock_exclusive().is_err() {
                    // Someone else uses it: this step gets a fresh, throw-away directory.
                    let own = self.cfg.store.temp_dir("cache-private-")?.keep();
                    return Ok(own);
                }
            }
        }
        held.locks.push(lock);
        if !dir.exists() {
            let tmp = base.join(format!(".tmp-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            match seed {
                Some(s) => copy_tree(s, &tmp)?,
                None => std::fs::create_dir(&tmp)?,
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another build created it first.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Ok(dir)
    }
}

/// Removes `target` from the upper dir when it is an empty stub (dir or file) that no lower
/// layer has, and likewise its parents: what the sandbox created only to mount on.
fn remove_mount_stub(upper: &Path, lowers: &[PathBuf], target: &str) {
    let mut rel = PathBuf::from(target.trim_start_matches('/'));
    while !rel.as_os_str().is_empty() {
        if lowers
            .iter()
            .any(|l| std::fs::symlink_metadata(l.join(&rel)).is_ok())
        {
            return;
        }
        let p = upper.join(&rel);
        let removed = match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&p).is_ok(),
            Ok(md) if md.is_file() && md.len() == 0 => std::fs::remove_file(&p).is_ok(),
            _ => false,
        };
        if !removed || !rel.pop() {
            return;
        }
    }
}

/// Writes a secret to a private file (on /dev/shm when it exists).
fn secret_file(value: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<PathBuf> {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("kiln-secret-{}", hex_id()));
    let mut opts = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.write(true).create_new(true).open(&path)?;
    std::io::Write::write_all(&mut f, value)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(path)
}

fn hex_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    blake3::hash(format!("{t}-{}", std::process::id()).as_bytes()).to_hex()[..16].to_string()
}

/// Copies a directory tree (or a file) keeping modes, owners and symlinks.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(src)?;
    if md.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
    } else {
        std::fs::copy(src, dst)?;
    }
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    Ok(())
}
