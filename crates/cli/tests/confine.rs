//! Issue 11: an image built to escape its root (crafted layers) used as `FROM` and exported
//! with `-o type=local`/`-o type=tar` changes nothing outside kiln's root and the export
//! destination. Needs root (as every build); skipped otherwise.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Everything observable about a tree: per path, (mode, mtime, content or link target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, i64, Vec<u8>)> {
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

/// A tar of `(type, name, mode, link target, data)`, names written verbatim.
fn crafted(entries: &[(tar::EntryType, &str, u32, &str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (ty, name, mode, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*ty);
        h.set_mode(*mode);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(data.as_bytes());
        b.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    b.extend_from_slice(&[0u8; 1024]);
    b
}

#[test]
fn from_a_malicious_image_and_export_touch_nothing_outside() {
    if !can_run(&[]) {
        return;
    }
    let k = Kiln::new();
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    std::fs::create_dir_all(canary.join("f")).unwrap();
    std::fs::write(canary.join("victim"), "host file").unwrap();
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o750)).unwrap();
    let before = tree(&canary);
    let c = canary.to_str().unwrap();
    let abs = |p: &str| format!("{c}/{p}");
    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
    let layer = crafted(&[
        // Item 1: late directory metadata through a symlink that replaced the directory.
        (D, "d/", 0o777, "", ""),
        (L, "d", 0o777, c, ""),
        (D, "p/", 0o755, "", ""),
        (D, "p/f/", 0o6777, "", ""),
        (L, "p", 0o777, c, ""),
        // Item 2: absolute entries and whiteouts.
        (F, &abs("victim"), 0o644, "", "pwned"),
        (F, &abs(".wh.victim"), 0o644, "", ""),
        (F, &abs("f/.wh..wh..opq"), 0o644, "", ""),
        (F, "d/.wh.victim", 0o644, "", ""),
    ]);
    let tar_path = tmp.path().join("evil.tar");
    std::fs::write(&tar_path, layer).unwrap();
    k.ok(&["import", tar_path.to_str().unwrap(), "evil:1"]);
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM evil:1\n");
    let out = tmp.path().join("out");
    let (ok, log) = k.build(&ctx, &["-o", &format!("type=local,dest={}", out.display())]);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read_link(out.join("d")).unwrap(), canary);
    let (ok, log) = k.build(
        &ctx,
        &[
            "-o",
            &format!("type=tar,dest={}", tmp.path().join("out.tar").display()),
        ],
    );
    assert!(ok, "{log}");
    assert_eq!(tree(&canary), before, "the canary changed");
}
