//! Hostile trees: every test runs with openat2 and with the fallback walk, and checks that a
//! canary directory outside the root keeps its modes, times, contents and names.

use super::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

type Opener = fn(&Path) -> io::Result<Root>;

const OPENERS: [(&str, Opener); 2] = [
    ("openat2", |p| Root::open(p)),
    ("walk", |p| Root::open_without_openat2(p)),
];

/// Everything observable about a tree: per path, (mode, mtime, content or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let content = if md.is_symlink() {
            std::fs::read_link(&p).unwrap().into_os_string().into_vec()
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

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    canary: PathBuf,
    before: BTreeMap<PathBuf, (u32, i64, Vec<u8>)>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let canary = tmp.path().join("canary");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inner").unwrap();
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("passwd"), "host").unwrap();
        std::fs::write(canary.join("sub/f"), "host f").unwrap();
        std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o750)).unwrap();
        let before = snapshot(&canary);
        Fixture {
            _tmp: tmp,
            root,
            canary,
            before,
        }
    }

    fn link(&self, name: &str, target: impl AsRef<Path>) {
        symlink(target, self.root.join(name)).unwrap();
    }

    fn canary_untouched(&self) {
        assert_eq!(snapshot(&self.canary), self.before, "the canary changed");
    }
}

fn read(fd: OwnedFd) -> String {
    let mut f =
        File::from(rustix::fs::open(proc_fd_path(&fd), OFlags::RDONLY, Mode::empty()).unwrap());
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

fn is_dir(fd: impl AsFd) -> io::Result<bool> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) == FileType::Directory)
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_io_error(e).unwrap()
}

#[test]
fn in_root_absolute_symlink_to_slash_stays_in_root() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("slash", "/");
        fx.link("up", "../../../../../../etc");
        fx.link("abs", fx.canary.join("passwd"));
        let root = open(&fx.root).unwrap();
        let fd = root.resolve("slash/etc/passwd", Follow::InRoot).unwrap();
        assert_eq!(read(fd), "inner", "{how}");
        let fd = root.resolve("up/passwd", Follow::InRoot).unwrap();
        assert_eq!(read(fd), "inner", "{how}");
        let fd = root.resolve("/../../etc/./passwd", Follow::InRoot).unwrap();
        assert_eq!(read(fd), "inner", "{how}");
        // The host path the link names does not exist in the root.
        let e = root.resolve("abs", Follow::InRoot).unwrap_err();
        assert_eq!(errno(&e), Errno::NOENT, "{how}");
        fx.canary_untouched();
    }
}

#[test]
fn in_root_absolute_symlink_below_the_top_restarts_at_the_root() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.root.join("a/b")).unwrap();
        fx.link("a/b/abs", "/etc/passwd");
        fx.link("a/b/absdir", "/etc");
        let root = open(&fx.root).unwrap();
        let fd = root.resolve("a/b/abs", Follow::InRoot).unwrap();
        assert_eq!(read(fd), "inner", "{how}");
        let d = root.mkdir_all("a/b/absdir/new", 0o755, Follow::InRoot);
        assert!(is_dir(d.unwrap()).unwrap(), "{how}");
        assert!(fx.root.join("etc/new").is_dir(), "{how}");
        let p = root.resolve_path("a/b/absdir/passwd", true).unwrap();
        assert_eq!(p, Path::new("etc/passwd"), "{how}");
        fx.canary_untouched();
    }
}

#[test]
fn in_root_symlink_loop_is_eloop() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("a", "b");
        fx.link("b", "/a");
        let root = open(&fx.root).unwrap();
        let e = root.resolve("a/x", Follow::InRoot).unwrap_err();
        assert_eq!(errno(&e), Errno::LOOP, "{how}");
        // Not following the last one: the link itself.
        let fd = root.resolve_no_follow_last("a", Follow::InRoot).unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
    }
}

#[test]
fn never_refuses_any_symlink_component_and_escaping_dotdot() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("etclink", "etc");
        let root = open(&fx.root).unwrap();
        let e = root.resolve("etclink/passwd", Follow::Never).unwrap_err();
        assert_eq!(errno(&e), Errno::LOOP, "{how}");
        assert!(root.open_dir("etclink", Follow::Never).is_err(), "{how}");
        let fd = root.resolve("etclink", Follow::Never).unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(
            FileType::from_raw_mode(st.st_mode),
            FileType::Symlink,
            "{how}"
        );
        let e = root.resolve("../canary/passwd", Follow::Never).unwrap_err();
        assert_eq!(errno(&e), Errno::XDEV, "{how}");
        // Absolute and dotted names are read inside the root.
        let fd = root.resolve("/etc/../etc/passwd", Follow::Never).unwrap();
        assert_eq!(read(fd), "inner", "{how}");
        let e = root
            .mkdir_all("etclink/new", 0o755, Follow::Never)
            .unwrap_err();
        assert_eq!(errno(&e), Errno::LOOP, "{how}");
        assert!(!fx.root.join("etc/new").exists(), "{how}");
    }
}

#[test]
fn mkdir_all_through_an_absolute_symlink_creates_inside_the_root() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("evil", &fx.canary);
        let root = open(&fx.root).unwrap();
        let d = root
            .mkdir_all("evil/new/deeper", 0o711, Follow::InRoot)
            .unwrap();
        let inside = fx.root.join(fx.canary.strip_prefix("/").unwrap());
        let md = std::fs::metadata(inside.join("new/deeper")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o711, "{how}: mode without umask");
        assert!(is_dir(&d).unwrap());
        // An existing directory is simply opened.
        root.mkdir_all("etc", 0o700, Follow::Never).unwrap();
        assert_eq!(
            std::fs::metadata(fx.root.join("etc")).unwrap().mode() & 0o777,
            0o755,
            "{how}"
        );
        fx.canary_untouched();
    }
}

#[test]
fn create_and_link_through_a_hostile_parent_stay_in_the_root() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("evil", &fx.canary);
        let root = open(&fx.root).unwrap();
        let (dir, name) = root
            .parent("evil/passwd", Follow::InRoot, Some(0o755))
            .unwrap();
        dir.create_file(&name, 0o644)
            .unwrap()
            .write_all(b"mine")
            .unwrap();
        dir.set_mode(&name, 0o4777).unwrap();
        dir.set_times(&name, 1).unwrap();
        let (etc, passwd) = root.parent("etc/passwd", Follow::Never, None).unwrap();
        dir.hard_link(OsStr::new("hl"), &etc, &passwd).unwrap();
        assert!(root.parent("/", Follow::InRoot, None).is_err(), "{how}");
        assert!(root.parent("a/..", Follow::InRoot, None).is_err(), "{how}");
        fx.canary_untouched();
    }
}

#[test]
fn create_file_refuses_a_dangling_symlink() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("l", fx.canary.join("new"));
        let root = open(&fx.root).unwrap();
        let e = root.dir().create_file(OsStr::new("l"), 0o644).unwrap_err();
        assert_eq!(errno(&e), Errno::EXIST, "{how}");
        fx.canary_untouched();
    }
}

#[test]
fn a_dir_swapped_for_a_symlink_after_resolving_keeps_operations_in_the_old_dir() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        std::fs::create_dir(fx.root.join("a")).unwrap();
        let root = open(&fx.root).unwrap();
        let (dir, name) = root.parent("a/passwd", Follow::Never, None).unwrap();
        std::fs::rename(fx.root.join("a"), fx.root.join("a.old")).unwrap();
        fx.link("a", &fx.canary);
        dir.create_file(&name, 0o600).unwrap();
        dir.set_mode(SELF.as_ref(), 0o777).unwrap();
        dir.set_times(SELF.as_ref(), 5).unwrap();
        dir.remove_all(OsStr::new("sub")).unwrap();
        assert!(fx.root.join("a.old/passwd").exists(), "{how}");
        fx.canary_untouched();
    }
}

#[test]
fn metadata_of_a_symlink_never_reaches_its_target() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        fx.link("l", &fx.canary);
        let root = open(&fx.root).unwrap();
        let d = root.dir();
        let e = d.set_mode(OsStr::new("l"), 0o6777).unwrap_err();
        assert_eq!(errno(&e), Errno::LOOP, "{how}");
        d.set_times(OsStr::new("l"), 7).unwrap();
        d.set_owner(
            OsStr::new("l"),
            std::fs::metadata(&fx.root).unwrap().uid(),
            std::fs::metadata(&fx.root).unwrap().gid(),
        )
        .unwrap();
        // trusted.* needs root, user.* is refused on symlinks: any error is fine, the
        // target must not get it.
        let _ = d.set_xattr(OsStr::new("l"), OsStr::new("user.kiln"), b"x");
        assert_eq!(
            std::fs::symlink_metadata(fx.root.join("l"))
                .unwrap()
                .mtime(),
            7,
            "{how}"
        );
        assert!(xattr_absent(&fx.canary));
        fx.canary_untouched();
    }
}

fn xattr_absent(p: &Path) -> bool {
    let mut buf = [0u8; 16];
    rustix::fs::getxattr(p, "user.kiln", &mut buf[..]).is_err()
}

#[test]
fn remove_all_and_clear_never_follow_symlinks() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.root.join("d/sub/deeper")).unwrap();
        fx.link("d/l", &fx.canary);
        fx.link("d/sub/deeper/l", fx.canary.join("passwd"));
        std::fs::write(fx.root.join("d/keep"), "k").unwrap();
        let root = open(&fx.root).unwrap();
        let d = root.open_dir("d", Follow::Never).unwrap();
        d.clear(|n| n == "keep").unwrap();
        assert_eq!(d.names().unwrap(), vec![OsString::from("keep")], "{how}");
        fx.link("d/l2", &fx.canary);
        assert!(root.dir().remove_all(OsStr::new("d")).unwrap(), "{how}");
        assert!(!root.dir().remove_all(OsStr::new("d")).unwrap(), "{how}");
        assert!(!fx.root.join("d").exists());
        fx.canary_untouched();
    }
}

#[test]
fn mknod_and_symlink_and_read_link() {
    for (how, open) in OPENERS {
        let fx = Fixture::new();
        let root = open(&fx.root).unwrap();
        let d = root.dir();
        d.mknod(OsStr::new("fifo"), FileType::Fifo, 0o600, 0)
            .unwrap();
        d.symlink(OsStr::new("s"), OsStr::new("/etc/passwd"))
            .unwrap();
        assert_eq!(
            d.read_link(OsStr::new("s")).unwrap(),
            "/etc/passwd",
            "{how}"
        );
        assert_eq!(
            d.file_type(OsStr::new("fifo")).unwrap(),
            Some(FileType::Fifo)
        );
        assert_eq!(d.file_type(OsStr::new("none")).unwrap(), None);
        assert_eq!(read(root.resolve("s", Follow::InRoot).unwrap()), "inner");
        let mut s = String::new();
        root.open_dir("etc", Follow::Never)
            .unwrap()
            .open_read(OsStr::new("passwd"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inner");
    }
}

#[test]
fn resolve_path_expands_symlinks_in_the_root_and_keeps_a_missing_tail() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root.join("real/dir")).unwrap();
    fx.link("abs", "/real");
    fx.link("real/dir/up", "../..");
    fx.link("escape", &fx.canary);
    let root = Root::open(&fx.root).unwrap();
    let p = |path: &str, last: bool| root.resolve_path(path, last).unwrap();
    assert_eq!(p("/abs/dir", true), Path::new("real/dir"));
    assert_eq!(p("/real/dir/up/etc/passwd", true), Path::new("etc/passwd"));
    assert_eq!(p("abs", false), Path::new("abs"));
    assert_eq!(p("/../../x", true), Path::new("x"));
    assert_eq!(p("abs/new/../dir/x", true), Path::new("real/dir/x"));
    assert_eq!(p("etc/passwd/x/../y", true), Path::new("etc/passwd/y"));
    let inside = fx.canary.strip_prefix("/").unwrap();
    assert_eq!(p("escape/victim", true), inside.join("victim"));
    fx.link("loop", "loop");
    assert_eq!(
        errno(&root.resolve_path("loop/x", true).unwrap_err()),
        Errno::LOOP
    );
    assert_eq!(p("", true), Path::new(""));
}

#[test]
fn resolve_path_hiding_never_follows_a_hidden_symlink() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root.join("ign/sub")).unwrap();
    fx.link("hid", "/etc");
    fx.link("shown", "/etc");
    let root = Root::open(&fx.root).unwrap();
    let hidden = |r: &Path| r.starts_with("hid") || r.starts_with("ign");
    let p = |path: &str, last: bool| root.resolve_path_hiding(path, last, &hidden).unwrap();
    assert_eq!(p("hid/passwd", true), (PathBuf::from("hid/passwd"), true));
    assert_eq!(p("hid", true), (PathBuf::from("hid"), true));
    assert_eq!(
        p("shown/passwd", true),
        (PathBuf::from("etc/passwd"), false)
    );
    // A hidden directory is walked through, and the result says it is hidden.
    assert_eq!(p("ign/sub/../sub", true), (PathBuf::from("ign/sub"), true));
    // A hidden link is forgotten by a `..` past it; the rest resolves again.
    assert_eq!(
        p("hid/../shown/passwd", true),
        (PathBuf::from("etc/passwd"), true)
    );
    assert_eq!(p("", true), (PathBuf::new(), false));
}
