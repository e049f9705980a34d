//! Hostile layers (issue 11): crafted tars, applied as a snapshot (pull, import, load, FROM)
//! and flattened (the rootfs exporters), must leave a canary directory outside the
//! destination as it was: names, modes, times, contents.

use super::*;
use crate::Store;
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};

/// Everything observable about a tree: per path, (mode, mtime, content or link target).
pub(crate) fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, (u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let content = if md.is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            Vec::new()
        } else {
            std::fs::read(&p).unwrap()
        };
        out.insert(p, (md.mode(), md.mtime(), content));
    }
    out
}

/// A directory next to the destination that no layer may touch.
struct Canary {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    before: BTreeMap<PathBuf, (u32, i64, Vec<u8>)>,
}

impl Canary {
    fn new() -> Canary {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("canary");
        std::fs::create_dir_all(path.join("f")).unwrap();
        std::fs::write(path.join("victim"), "host file").unwrap();
        std::fs::write(path.join("f/inner"), "inner").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(path.join("f"), Permissions::from_mode(0o700)).unwrap();
        let before = snapshot_tree(&path);
        Canary {
            _tmp: tmp,
            path,
            before,
        }
    }

    fn untouched(&self) {
        assert!(self.path.is_dir(), "the canary is gone");
        assert_eq!(snapshot_tree(&self.path), self.before, "the canary changed");
    }
}

/// A tar built entry by entry, names written verbatim (absolute, `..`, whiteouts).
#[derive(Default)]
struct Layer {
    b: Vec<u8>,
}

impl Layer {
    fn raw(&mut self, ty: EntryType, name: &str, mode: u32, link: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.b.extend_from_slice(h.as_bytes());
        self.b.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.b.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(EntryType::Directory, name, mode, "", b"")
    }
    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.raw(EntryType::Regular, name, 0o644, "", data.as_bytes())
    }
    fn symlink(&mut self, name: &str, target: &Path) -> &mut Self {
        let t = target.to_str().unwrap();
        self.raw(EntryType::Symlink, name, 0o777, t, b"")
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = self.b.clone();
        b.extend_from_slice(&[0u8; 1024]);
        b
    }
}

/// The layer as a snapshot (what pull, import, load and FROM do).
fn snapshot(tar: &[u8]) -> (tempfile::TempDir, Result<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("root")).unwrap();
    let (digest, size) = s.write_blob(tar).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: kiln_oci::sha256_hex_digest(tar),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    let r = s.snapshot(&layer);
    (dir, r)
}

/// The layers flattened into a fresh directory (what `-o type=local|tar` do).
fn flatten(layers: &[Vec<u8>]) -> (tempfile::TempDir, Result<()>) {
    let dir = tempfile::tempdir().unwrap();
    for l in layers {
        let r = apply_merged(&l[..], dir.path(), "sha256:test");
        if r.is_err() {
            return (dir, r);
        }
    }
    (dir, Ok(()))
}

#[test]
fn late_dir_metadata_never_follows_a_symlink_that_replaced_the_dir() {
    let canary = Canary::new();
    let tar = Layer::default()
        .dir("d/", 0o777)
        .symlink("d", &canary.path)
        .bytes();
    let (_d, r) = snapshot(&tar);
    let snap = r.unwrap();
    assert_eq!(std::fs::read_link(snap.join("d")).unwrap(), canary.path);
    canary.untouched();
    let (out, r) = flatten(&[tar]);
    r.unwrap();
    assert_eq!(
        std::fs::read_link(out.path().join("d")).unwrap(),
        canary.path
    );
    canary.untouched();
}

#[test]
fn late_dir_metadata_never_sets_setuid_below_a_replaced_dir() {
    let canary = Canary::new();
    let tar = Layer::default()
        .dir("p/", 0o755)
        .dir("p/f/", 0o6777)
        .symlink("p", &canary.path)
        .bytes();
    let (_d, r) = snapshot(&tar);
    r.unwrap();
    canary.untouched();
    let (_out, r) = flatten(&[tar]);
    r.unwrap();
    canary.untouched();
}

#[test]
fn entries_below_a_symlink_of_the_same_layer_are_refused_in_a_snapshot() {
    let canary = Canary::new();
    let tar = Layer::default()
        .symlink("l", &canary.path)
        .file("l/victim", "pwned")
        .bytes();
    let (_d, r) = snapshot(&tar);
    assert!(matches!(r, Err(Error::BadLayer { .. })), "{r:?}");
    canary.untouched();
    // Flattened, the symlink is replaced by a directory (what overlayfs shows).
    let (out, r) = flatten(&[tar]);
    r.unwrap();
    assert_eq!(
        std::fs::read(out.path().join("l/victim")).unwrap(),
        b"pwned"
    );
    canary.untouched();
}

#[test]
fn absolute_entries_and_whiteouts_stay_in_the_destination() {
    let canary = Canary::new();
    let abs = |p: &str| format!("{}/{p}", canary.path.display());
    let tar = Layer::default()
        .file(&abs("victim"), "pwned")
        .dir(&abs("f/"), 0o6777)
        .bytes();
    let (_d, r) = snapshot(&tar);
    let snap = r.unwrap();
    let inside = snap.join(canary.path.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside.join("victim")).unwrap(), b"pwned");
    canary.untouched();
    let wh = Layer::default()
        .file(&abs(".wh.victim"), "")
        .file(&abs("f/.wh..wh..opq"), "")
        .file(&abs(".wh.f"), "")
        .bytes();
    let (out, r) = flatten(&[tar.clone(), wh.clone()]);
    r.unwrap();
    let inside = out.path().join(canary.path.strip_prefix("/").unwrap());
    assert!(!inside.join("victim").exists());
    assert!(!inside.join("f").exists());
    canary.untouched();
    // The whiteouts alone, as a snapshot: overlay whiteouts inside the snapshot.
    let (_d, r) = snapshot(&wh);
    r.unwrap();
    canary.untouched();
}

#[test]
fn whiteouts_below_a_symlinked_parent_delete_nothing_outside() {
    let canary = Canary::new();
    let lower = Layer::default().symlink("evil", &canary.path).bytes();
    let upper = Layer::default()
        .file("evil/.wh.victim", "")
        .file("evil/f/.wh..wh..opq", "")
        .file("evil/.wh.f", "")
        .bytes();
    let (out, r) = flatten(&[lower, upper]);
    r.unwrap();
    assert_eq!(
        std::fs::read_link(out.path().join("evil")).unwrap(),
        canary.path
    );
    canary.untouched();
}

#[test]
fn hard_links_through_symlinks_are_refused() {
    let canary = Canary::new();
    let tar = Layer::default()
        .symlink("l", &canary.path)
        .raw(EntryType::Link, "x", 0o644, "l/victim", b"")
        .bytes();
    let (_d, r) = snapshot(&tar);
    assert!(matches!(r, Err(Error::BadLayer { .. })), "{r:?}");
    let (_out, r) = flatten(&[tar]);
    assert!(r.is_err());
    canary.untouched();
}

#[test]
fn a_later_layer_replacing_a_symlink_with_a_directory_flattens() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = Layer::default()
        .dir("usr/", 0o755)
        .dir("usr/lib/", 0o755)
        .file("usr/lib/a", "a")
        .symlink("lib", Path::new("usr/lib"))
        .bytes();
    // What a RUN `rm lib && mkdir lib && echo b > lib/b` commits.
    let upper = Layer::default()
        .dir("lib/", 0o700)
        .file("lib/b", "b")
        .bytes();
    let (out, r) = flatten(&[lower, upper]);
    r.unwrap();
    let lib = out.path().join("lib");
    assert!(std::fs::symlink_metadata(&lib).unwrap().is_dir());
    assert_eq!(std::fs::read(lib.join("b")).unwrap(), b"b");
    assert_eq!(std::fs::metadata(&lib).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::metadata(&lib).unwrap().mtime(), 1_000_000);
    assert_eq!(std::fs::read(out.path().join("usr/lib/a")).unwrap(), b"a");
    // An existing symlink outside: still never followed.
    symlink("/", tmp.path().join("x")).unwrap();
}

#[test]
fn opaque_whiteout_keeps_what_its_own_layer_wrote() {
    let lower = Layer::default().dir("d/", 0o755).file("d/old", "o").bytes();
    let upper = Layer::default()
        .dir("d/", 0o755)
        .file("d/new", "n")
        .file("d/.wh..wh..opq", "")
        .bytes();
    let (out, r) = flatten(&[lower, upper]);
    r.unwrap();
    assert!(!out.path().join("d/old").exists());
    assert_eq!(std::fs::read(out.path().join("d/new")).unwrap(), b"n");
}
