//! Named and anonymous volumes, as docker's `local` driver keeps them.
//!
//! A volume is the directory `ROOT/volumes/NAME/`: `_data/` (what containers mount) and
//! `volume.json` (its name, creation time and labels). A volume is created in a temporary
//! directory `ROOT/volumes/.tmp-…` (metadata written and synced) that is then renamed to its
//! name: the rename is atomic, and fails when the name exists already, so of two processes
//! creating the same volume at once one wins and the other finds the winner's. Removal
//! renames the directory to `.removing-…` first, so a half-removed volume is never listed.
//!
//! Which containers use a volume is in their `config.json` ([`crate::Config::volumes`]);
//! `ROOT/containers.lock` is held while a container is created (and its volumes resolved)
//! and while volumes are removed, so a volume cannot go between the check and the use.
//!
//! Anonymous volumes (`-v /path`, an image's `VOLUME`) get a random 64-hex name and the
//! label `com.docker.volume.anonymous`, as docker 23+ marks them: `volume prune` without
//! `-a` removes only those.

use crate::container::{io_err, now_millis, valid_name, Container, Containers};
use crate::{Error, Result};
use kiln_fsroot::{Dir, FileType, Follow, Root, Stat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The label docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume's metadata (`volume.json`) and where it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: i64,
    /// `--label K=V`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `ROOT/volumes/NAME`.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Volume {
    /// `ROOT/volumes/NAME/_data`: what containers mount.
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.join("_data")
    }

    /// Whether it was created for one container (`-v /path`, an image's `VOLUME`).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// `docker volume inspect`'s object.
    pub fn inspect(&self) -> serde_json::Value {
        let secs = u64::try_from(self.created / 1000).unwrap_or(0);
        let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        serde_json::json!({
            "CreatedAt": humantime::format_rfc3339_seconds(created).to_string(),
            "Driver": "local",
            "Labels": self.labels,
            "Mountpoint": self.mountpoint(),
            "Name": self.name,
            "Options": null,
            "Scope": "local",
        })
    }
}

impl Container {
    /// Removes the container's anonymous volumes (after the container itself went:
    /// `kiln rm -v`, `kiln run --rm`), unless another container uses them.
    pub fn remove_anonymous_volumes(&self) -> Result<()> {
        let names: Vec<String> = self
            .config
            .volumes
            .iter()
            .filter(|v| v.anonymous)
            .map(|v| v.name.clone())
            .collect();
        let Some(root) = self.dir.parent().and_then(Path::parent) else {
            return Ok(());
        };
        Volumes::new(root).remove_anonymous(&names)
    }
}

/// Whether `name` is a valid volume name (docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_volume_name(name: &str) -> bool {
    valid_name(name)
}

/// A random 64-hex name, as docker gives volumes created without one.
pub fn random_volume_name() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The volumes of a root: `ROOT/volumes/`.
#[derive(Clone, Debug)]
pub struct Volumes {
    dir: PathBuf,
    containers: Containers,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Volumes {
    /// The volumes of the state directory `root`.
    pub fn new(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
            containers: Containers::new(root),
        }
    }

    /// Reads the volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_volume_name(name) {
            return Err(Error::NoSuchVolume(name.to_string()));
        }
        let dir = self.dir.join(name);
        let meta = dir.join("volume.json");
        let data = match fs::read(&meta) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoSuchVolume(name.to_string()))
            }
            Err(e) => return Err(io_err(&meta)(e)),
        };
        let mut v: Volume = serde_json::from_slice(&data).map_err(|e| Error::Io {
            path: meta.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        v.dir = dir;
        Ok(v)
    }

    /// Creates the volume `name` (a random 64-hex name when `None`, with the anonymous
    /// label); an existing volume of that name is returned as it is. The bool says whether
    /// this call created it.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let mut labels = labels;
        let name = if let Some(n) = name {
            if !valid_volume_name(n) {
                return Err(Error::InvalidVolumeName(n.to_string()));
            }
            if let Ok(v) = self.get(n) {
                return Ok((v, false));
            }
            n.to_string()
        } else {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
            random_volume_name()
        };
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let vol = Volume {
            name: name.clone(),
            created: now_millis(),
            labels,
            dir: self.dir.join(&name),
        };
        let build = || -> io::Result<()> {
            fs::create_dir(&tmp)?;
            let data = tmp.join("_data");
            fs::create_dir(&data)?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o755))?;
            let mut f = fs::File::create(tmp.join("volume.json"))?;
            f.write_all(&serde_json::to_vec(&vol).map_err(io::Error::other)?)?;
            f.sync_all()?;
            sync_dir(&tmp)
        };
        if let Err(e) = build() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(&tmp)(e));
        }
        match fs::rename(&tmp, &vol.dir) {
            Ok(()) => {
                sync_dir(&self.dir).map_err(io_err(&self.dir))?;
                Ok((vol, true))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                // Someone else created it first: theirs it is.
                match self.get(&name) {
                    Ok(v) => Ok((v, false)),
                    Err(_) => Err(io_err(&vol.dir)(e)),
                }
            }
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    // A creation or removal cut short by a crash: leftovers.
                    return None;
                }
                self.get(&n).ok()
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// For each volume some container (running or stopped) uses: the containers' ids.
    pub fn users(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.containers.list()? {
            for v in &c.config.volumes {
                users
                    .entry(v.name.clone())
                    .or_default()
                    .push(c.config.id.clone());
            }
        }
        Ok(users)
    }

    /// Removes the volume `name`; refused while a container (running or stopped) uses it,
    /// as docker refuses even with `-f` (`force` only makes a missing volume no error).
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _lock = self.containers.lock()?;
        let v = match self.get(name) {
            Ok(v) => v,
            Err(Error::NoSuchVolume(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(ids) = self.users()?.get(name) {
            return Err(Error::VolumeInUse {
                name: name.to_string(),
                containers: ids.clone(),
            });
        }
        self.remove_dir(&v)
    }

    /// Removes the volumes no container uses: the anonymous ones, or all with `all`.
    /// Returns the names removed and the bytes they held.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let _lock = self.containers.lock()?;
        let users = self.users()?;
        let mut removed = Vec::new();
        let mut size = 0;
        for v in self.list()? {
            if users.contains_key(&v.name) || !(all || v.is_anonymous()) {
                continue;
            }
            let s = kiln_cache::disk_usage(&v.dir);
            self.remove_dir(&v)?;
            size += s;
            removed.push(v.name);
        }
        Ok((removed, size))
    }

    /// Removes a volume's directory, renamed away first so that it disappears at once.
    pub(crate) fn remove_dir(&self, v: &Volume) -> Result<()> {
        let trash = self.dir.join(format!(
            ".removing-{}-{}",
            v.name,
            hex::encode(rand::random::<[u8; 4]>())
        ));
        match fs::rename(&v.dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&v.dir)(e)),
        }
        fs::remove_dir_all(&trash).map_err(io_err(&trash))
    }

    /// Removes the anonymous volumes among `names` (a removed container's; `rm -v`,
    /// `run --rm`) that no other container uses. Without the containers' lock: it runs
    /// while containers are listed (a `--rm` container whose supervisor died is removed
    /// then), and an anonymous volume is never handed to a new container.
    pub fn remove_anonymous(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let users = self.users()?;
        for n in names {
            if users.contains_key(n) {
                continue;
            }
            if let Ok(v) = self.get(n) {
                if v.is_anonymous() {
                    self.remove_dir(&v)?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Populating a new volume with what the image has at the mount point.

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether `name` in `dir` (`"."`: `dir` itself) is an opaque overlay directory.
fn is_opaque(dir: &Dir, name: &OsStr) -> bool {
    let Ok(p) = CString::new(dir.proc_path().join(name).into_os_string().into_vec()) else {
        return false;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|xname| {
            let n = CString::new(*xname).unwrap_or_default();
            let mut buf = [0u8; 4];
            // SAFETY: valid C strings and a buffer of the given length.
            let r = unsafe {
                libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            r == 1 && buf[0] == b'y'
        })
}

/// The directories (top layer first) whose merged view is `rel` in the overlay of `lowers`
/// (top layer first), or the single non-directory entry it is; `None` when absent.
enum Found {
    Dirs(Vec<Dir>),
    Other,
}

/// Every layer is a root of its own: `rel` is looked up in it one real directory at a time
/// (a symlink in the path is not followed, a `..` never leaves the layer).
fn lookup(lowers: &[PathBuf], rel: &Path) -> io::Result<Option<Found>> {
    let comps: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Ok(None);
    }
    let mut dirs = Vec::new();
    'layers: for layer in lowers {
        let mut cur = Root::open(layer)?.dir().try_clone()?;
        for (i, c) in comps.iter().enumerate() {
            let Some(st) = cur.lstat(c)? else {
                continue 'layers;
            };
            let last = i + 1 == comps.len();
            if is_whiteout(&st) {
                break 'layers;
            }
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                if last && dirs.is_empty() {
                    return Ok(Some(Found::Other));
                }
                // A file over a directory (or a symlink in the path: not followed).
                break 'layers;
            }
            let opaque = is_opaque(&cur, c);
            let next = match cur.open_dir(c) {
                Ok(d) => d,
                // Replaced meanwhile: as if absent.
                Err(_) => continue 'layers,
            };
            if last {
                dirs.push(next);
                if opaque {
                    break 'layers;
                }
            } else if opaque {
                // Lower layers below this directory are hidden; the path goes on in this
                // layer only.
                let rest: PathBuf = comps[i + 1..].iter().collect();
                let (parent, name) = match Root::open(next.proc_path())
                    .and_then(|r| r.parent(&rest, Follow::Never, None))
                {
                    Ok(p) => p,
                    Err(_) => break 'layers,
                };
                match parent.lstat(&name)? {
                    Some(m) if FileType::from_raw_mode(m.st_mode) == FileType::Directory => {
                        dirs.push(parent.open_dir(&name)?);
                    }
                    Some(m) if !is_whiteout(&m) && dirs.is_empty() => {
                        return Ok(Some(Found::Other))
                    }
                    _ => {}
                }
                break 'layers;
            } else {
                cur = next;
                continue;
            }
            break;
        }
    }
    Ok((!dirs.is_empty()).then_some(Found::Dirs(dirs)))
}

/// Gives `name` in `dir` (`"."`: `dir` itself) the owner, mode and times of `st`.
fn set_meta(dir: &Dir, name: &OsStr, st: &Stat) -> io::Result<()> {
    dir.set_owner(name, st.st_uid, st.st_gid)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        // After chown, which clears set-id bits.
        dir.set_mode(name, st.st_mode & 0o7777)?;
    }
    dir.set_times_ns(
        name,
        (st.st_atime, st.st_atime_nsec as i64),
        (st.st_mtime, st.st_mtime_nsec as i64),
    )
}

fn copy_entry(src: &Dir, name: &OsStr, st: &Stat, dst: &Dir) -> io::Result<()> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => dst.symlink(name, &src.read_link(name)?)?,
        FileType::RegularFile => {
            let mut from = src.open_read(name)?;
            let mut to = dst.create_file(name, 0o600)?;
            io::copy(&mut from, &mut to)?;
        }
        kind @ (FileType::Fifo
        | FileType::CharacterDevice
        | FileType::BlockDevice
        | FileType::Socket) => dst.mknod(name, kind, st.st_mode & 0o7777, st.st_rdev)?,
        _ => return Ok(()),
    }
    set_meta(dst, name, st)
}

/// Copies the merged content of `dirs` (top layer first) into the existing directory `dst`.
fn copy_merged(dirs: &[Dir], dst: &Dir) -> io::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in dirs.iter().enumerate() {
        for name in d.names()? {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(st) = d.lstat(&name)? else { continue };
            if is_whiteout(&st) {
                continue;
            }
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let mut sub = vec![d.open_dir(&name)?];
                if !is_opaque(d, &name) {
                    for lower in &dirs[i + 1..] {
                        match lower.lstat(&name)? {
                            Some(m)
                                if FileType::from_raw_mode(m.st_mode) == FileType::Directory =>
                            {
                                let opaque = is_opaque(lower, &name);
                                sub.push(lower.open_dir(&name)?);
                                if opaque {
                                    break;
                                }
                            }
                            Some(_) => break,
                            None => {}
                        }
                    }
                }
                dst.mkdir(&name, 0o700)?;
                copy_merged(&sub, &dst.open_dir(&name)?)?;
                set_meta(dst, &name, &st)?;
            } else {
                copy_entry(d, &name, &st, dst)?;
            }
        }
    }
    Ok(())
}

/// Docker's copy-up of a new volume: what the image (`lowers`, top layer first) has at
/// `destination` is copied into the volume's `_data` (contents with owners, modes, times,
/// symlinks; `_data` itself takes the directory's owner and mode). Nothing happens when the
/// image has no directory there. The copy is made beside `_data` and then renamed over it
/// (a rename onto an empty directory is atomic), so a copy cut short by a crash never
/// leaves a half-filled volume that would not be filled again. The image's layers are read
/// and the copy written only through directory fds ([`kiln_fsroot`]): no symlink of the
/// image is followed, and a `destination` with `..` copies nothing.
pub(crate) fn populate(lowers: &[PathBuf], destination: &str, volume: &Volume) -> Result<()> {
    let rel = Path::new(destination.trim_start_matches('/'));
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    let data = volume.mountpoint();
    let Some(Found::Dirs(dirs)) = lookup(lowers, rel).map_err(io_err(&data))? else {
        return Ok(());
    };
    let tmp_name = format!(
        ".populate-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    );
    let tmp = volume.dir.join(&tmp_name);
    let run = || -> io::Result<()> {
        let vdir = Root::open(&volume.dir)?;
        let vdir = vdir.dir();
        let tmp_name = OsStr::new(&tmp_name);
        vdir.mkdir(tmp_name, 0o700)?;
        copy_merged(&dirs, &vdir.open_dir(tmp_name)?)?;
        let st = dirs[0]
            .lstat(OsStr::new("."))?
            .ok_or(io::ErrorKind::NotFound)?;
        set_meta(vdir, tmp_name, &st)?;
        vdir.rename(tmp_name, vdir, OsStr::new("_data"))?;
        sync_dir(&volume.dir)
    };
    let r = run();
    let _ = fs::remove_dir_all(&tmp);
    match r {
        Ok(()) => Ok(()),
        // Something was written into `_data` meanwhile: it is not new any more.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(io_err(&data)(e)),
    }
}

/// Whether `dir` is empty (or missing).
pub(crate) fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn create_is_idempotent_and_anonymous_is_labelled() {
        let root = tempfile::tempdir().unwrap();
        let vols = Volumes::new(root.path());
        let (a, created) = vols.create(Some("data"), BTreeMap::new()).unwrap();
        assert!(created);
        assert!(a.mountpoint().is_dir());
        let (b, created) = vols.create(Some("data"), BTreeMap::new()).unwrap();
        assert!(!created);
        assert_eq!(a.created, b.created);
        let (anon, _) = vols.create(None, BTreeMap::new()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.is_anonymous() && !a.is_anonymous());
        assert!(matches!(
            vols.create(Some("-x"), BTreeMap::new()),
            Err(Error::InvalidVolumeName(_))
        ));
        let names: Vec<_> = vols.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names.len(), 2);
        let (removed, _) = vols.prune(false).unwrap();
        assert_eq!(removed, vec![anon.name]);
        vols.remove("data", false).unwrap();
        assert!(vols.list().unwrap().is_empty());
        assert!(vols.remove("data", true).is_ok());
        assert!(matches!(
            vols.remove("data", false),
            Err(Error::NoSuchVolume(_))
        ));
    }

    #[test]
    fn concurrent_creates_agree() {
        let root = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let vols = Volumes::new(root.path());
                std::thread::spawn(move || vols.create(Some("same"), BTreeMap::new()).unwrap())
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1);
        let created = results[0].0.created;
        assert!(results.iter().all(|(v, _)| v.created == created));
        assert_eq!(Volumes::new(root.path()).list().unwrap().len(), 1);
    }

    #[test]
    fn populate_merges_layers() {
        let t = tempfile::tempdir().unwrap();
        let (top, low) = (t.path().join("top"), t.path().join("low"));
        fs::create_dir_all(top.join("d/sub")).unwrap();
        fs::create_dir_all(low.join("d/sub")).unwrap();
        fs::write(low.join("d/a"), "low a").unwrap();
        fs::write(low.join("d/gone"), "x").unwrap();
        fs::write(low.join("d/sub/s"), "s").unwrap();
        fs::write(top.join("d/a"), "top a").unwrap();
        fs::set_permissions(top.join("d/a"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("a", top.join("d/link")).unwrap();
        if nix::sys::stat::mknod(
            &top.join("d/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .is_err()
        {
            kiln_testutil::skip("mknod needs root");
            return;
        }
        let (vol, _) = Volumes::new(&t.path().join("root"))
            .create(Some("v1"), BTreeMap::new())
            .unwrap();
        populate(&[top.clone(), low.clone()], "/d", &vol).unwrap();
        let out = vol.mountpoint();
        assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "top a");
        assert_eq!(fs::metadata(out.join("a")).unwrap().mode() & 0o777, 0o640);
        assert!(!out.join("gone").exists());
        assert_eq!(fs::read_to_string(out.join("sub/s")).unwrap(), "s");
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("a"));
    }

    #[test]
    fn populate_never_leaves_the_image_by_dotdot_or_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        let canary = t.path().join("canary");
        fs::create_dir_all(top.join("v")).unwrap();
        fs::create_dir_all(&canary).unwrap();
        fs::write(canary.join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(&canary, top.join("v/link")).unwrap();
        std::os::unix::fs::symlink(&canary, top.join("abs")).unwrap();
        let vols = Volumes::new(&t.path().join("root"));
        for (name, dest) in [
            ("va", "/../canary"),
            ("vb", "/v/../../canary"),
            ("vc", "/abs"),
        ] {
            let (vol, _) = vols.create(Some(name), BTreeMap::new()).unwrap();
            populate(std::slice::from_ref(&top), dest, &vol).unwrap();
            assert!(is_empty_dir(&vol.mountpoint()), "{dest} copied something");
        }
        let (vol, _) = vols.create(Some("vd"), BTreeMap::new()).unwrap();
        populate(std::slice::from_ref(&top), "/v", &vol).unwrap();
        let out = vol.mountpoint();
        assert_eq!(fs::read_link(out.join("link")).unwrap(), canary);
        assert_eq!(fs::read_dir(&canary).unwrap().count(), 1);
        assert_eq!(
            fs::read_to_string(canary.join("secret")).unwrap(),
            "host secret"
        );
    }
}
