use super::*;

fn into(dir: &str, name: Option<&str>) -> CopyPlan {
    CopyPlan::Into {
        dir: dir.into(),
        name: name.map(OsString::from),
    }
}

#[test]
fn docker_cp_rules() {
    // A file into an existing directory keeps its name.
    assert_eq!(
        plan("/etc/hosts", false, "/tmp", Some(true), true).unwrap(),
        into("/tmp", Some("hosts"))
    );
    // A file to a missing name is saved under that name; to an existing file overwrites it.
    assert_eq!(
        plan("/a/f", false, "/tmp/g", None, true).unwrap(),
        into("/tmp", Some("g"))
    );
    assert_eq!(
        plan("/a/f", false, "/tmp/g", Some(false), true).unwrap(),
        into("/tmp", Some("g"))
    );
    // A missing destination ending in `/` must exist for a file.
    assert!(matches!(
        plan("/a/f", false, "/tmp/g/", None, true),
        Err(CopyError::NoDestDir(_))
    ));
    // A directory to a missing name is created with the source's contents.
    assert_eq!(
        plan("/a/d", true, "/tmp/new", None, true).unwrap(),
        into("/tmp", Some("new"))
    );
    assert_eq!(
        plan("/a/d", true, "/tmp/new/", None, true).unwrap(),
        into("/tmp", Some("new"))
    );
    // A directory onto a file is an error.
    assert!(matches!(
        plan("/a/d", true, "/tmp/f", Some(false), true),
        Err(CopyError::DirToFile(_))
    ));
    // Into an existing directory: the directory itself, or with `/.` its contents.
    assert_eq!(
        plan("/a/d", true, "/tmp", Some(true), true).unwrap(),
        into("/tmp", Some("d"))
    );
    assert_eq!(
        plan("/a/d/", true, "/tmp", Some(true), true).unwrap(),
        into("/tmp", Some("d"))
    );
    assert_eq!(
        plan("/a/d/.", true, "/tmp", Some(true), true).unwrap(),
        into("/tmp", None)
    );
    // The parent of a missing destination must exist.
    assert!(
        matches!(plan("/a/d", true, "/no/such", None, false), Err(CopyError::NoDestDir(p)) if p == "/no")
    );
    assert_eq!(parent_of("rel"), ".");
}

#[test]
fn diff_lists_added_changed_deleted() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/passwd"), "x").unwrap();
    std::fs::write(lower.join("gone"), "x").unwrap();
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/passwd"), "y").unwrap();
    std::fs::write(upper.join("new"), "y").unwrap();
    // (Deletions are 0/0 device nodes only root can make: tests/cp.rs covers them.)
    let lowers = vec![Root::open(&lower).unwrap()];
    let up = Root::open(&upper).unwrap();
    let mut out = Vec::new();
    diff_dir(up.dir(), Path::new("/"), &lowers, &mut out).unwrap();
    let lines: Vec<String> = out
        .iter()
        .map(|c| format!("{} {}", c.kind, c.path))
        .collect();
    assert_eq!(lines, ["C /etc", "C /etc/passwd", "A /new"]);
}

#[test]
fn unpack_refuses_parent_climbing_entries() {
    assert!(entry_path(Path::new("a/../../x")).is_err());
    assert_eq!(
        entry_path(Path::new("./a/b")).unwrap(),
        Some(PathBuf::from("a/b"))
    );
    assert_eq!(entry_path(Path::new("./")).unwrap(), None);
}

#[test]
fn diff_hides_the_sandboxs_mount_points() {
    let c = |kind, path: &str| Change {
        kind,
        path: path.into(),
    };
    let shown = hide_mountpoints(vec![
        c('A', "/dev"),
        c('A', "/dev/null"),
        c('C', "/etc"),
        c('A', "/etc/hosts"),
        c('A', "/etc/resolv.conf"),
        c('A', "/proc"),
        c('C', "/tmp"),
        c('A', "/tmp/x"),
        c('C', "/sys"),
    ]);
    // `/etc` changed only because the sandbox made its files there; `/sys` came from the
    // image and changed.
    let lines: Vec<String> = shown
        .iter()
        .map(|c| format!("{} {}", c.kind, c.path))
        .collect();
    assert_eq!(lines, ["C /sys", "C /tmp", "A /tmp/x"]);
    let kept = hide_mountpoints(vec![
        c('C', "/etc"),
        c('D', "/etc/passwd"),
        c('A', "/etc/hosts"),
    ]);
    assert_eq!(kept.len(), 2, "{kept:?}");
}
