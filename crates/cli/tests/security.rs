//! Hostile images through the real binary (issue 11): layers crafted here, loaded with
//! `kiln load` or pulled from a loopback `docker-registry`, then unpacked (`run`, `FROM`,
//! `pull`) and exported (`-o type=local`, `-o type=tar`). A canary directory outside every
//! root must come out exactly as it went in: existence, mode, mtime and content of each
//! entry. Needs root, Debian's busybox-static and docker-registry.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One tar entry, its name written byte for byte (absolute names and all).
enum Entry {
    Dir(&'static str, u32),
    File(String, u32, Vec<u8>),
    Symlink(String, String),
}

/// A layer tar of `entries`, in order, with raw names (the `tar` crate's `set_path` refuses
/// absolute names, which is the point here).
fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, data): (&str, &[u8]) = match e {
            Entry::Dir(n, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (n, &[])
            }
            Entry::File(n, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n.as_str(), data.as_slice())
            }
            Entry::Symlink(n, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                (n.as_str(), &[])
            }
        };
        let raw = &mut h.as_ustar_mut().unwrap().name;
        assert!(
            name.len() < raw.len(),
            "{name}: name too long for this helper"
        );
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha256(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A docker archive (`docker save` layout) of an image named `tag` with `layers`, written
/// to `out`. The first layer is busybox (so the image runs), then the given ones.
fn docker_archive(out: &Path, tag: &str, layers: &[Vec<u8>]) {
    let dir = tempfile::tempdir().unwrap();
    let busybox = std::fs::read(which("busybox").unwrap()).unwrap();
    let mut all = vec![layer(&[
        Entry::Dir("bin/", 0o755),
        Entry::File("bin/busybox".into(), 0o755, busybox),
        Entry::Symlink("bin/sh".into(), "busybox".into()),
        Entry::Symlink("bin/true".into(), "busybox".into()),
        Entry::Dir("tmp/", 0o1777),
    ])];
    all.extend_from_slice(layers);
    let mut names = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &all {
        let h = sha256(l);
        std::fs::create_dir(dir.path().join(&h)).unwrap();
        std::fs::write(dir.path().join(&h).join("layer.tar"), l).unwrap();
        names.push(format!("{h}/layer.tar"));
        diff_ids.push(format!("sha256:{h}"));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": all.iter().map(|_| serde_json::json!({"created_by": "crafted"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cname = format!("{}.json", sha256(&config));
    std::fs::write(dir.path().join(&cname), &config).unwrap();
    let manifest = serde_json::json!([{"Config": cname, "RepoTags": [tag], "Layers": names}]);
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// A directory outside every root, with a subdirectory and a file, whose state the tests
/// compare before and after.
struct Canary {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// (kind, mode, mtime, size, content) of each entry below a canary, by relative path.
type State = BTreeMap<PathBuf, (u32, u32, i64, u64, Vec<u8>)>;

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("kiln-canary-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let path = dir.path().join("canary");
        std::fs::create_dir(&path).unwrap();
        std::fs::create_dir(path.join("f")).unwrap();
        std::fs::write(path.join("f/inner"), b"inner").unwrap();
        std::fs::write(path.join("victim"), b"do not touch").unwrap();
        let set = |p: &Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(1_234_567, 0)).unwrap();
        };
        set(&path.join("f/inner"), 0o640);
        set(&path.join("victim"), 0o600);
        set(&path.join("f"), 0o750);
        set(&path, 0o700);
        Canary { _dir: dir, path }
    }

    fn state(&self) -> State {
        let mut out = State::new();
        for e in walkdir(&self.path) {
            let md = std::fs::symlink_metadata(&e).unwrap();
            let content = if md.is_file() {
                std::fs::read(&e).unwrap()
            } else {
                Vec::new()
            };
            let rel = e.strip_prefix(&self.path).unwrap().to_path_buf();
            out.insert(
                rel,
                (
                    md.mode() & 0o170000,
                    md.mode() & 0o7777,
                    md.mtime(),
                    md.size(),
                    content,
                ),
            );
        }
        out
    }
}

fn walkdir(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            out.extend(walkdir(&e.unwrap().path()));
        }
    }
    out
}

/// Layers that change the canary through a directory that a symlink replaced (finding 1):
/// `d/` 0777 then `d -> CANARY`; `p/`, `p/f/` 06777, then `p -> CANARY`.
fn late_metadata_layers(canary: &Path) -> Vec<Vec<u8>> {
    let c = canary.to_str().unwrap().to_string();
    vec![layer(&[
        Entry::Dir("d/", 0o777),
        Entry::Symlink("d".into(), c.clone()),
        Entry::Dir("p/", 0o755),
        Entry::Dir("p/f/", 0o6777),
        Entry::Symlink("p".into(), c),
    ])]
}

/// Images (as layer lists) that a rootfs export would write outside its destination with
/// (finding 2): an absolute file entry, an absolute whiteout, an absolute opaque whiteout,
/// and whiteouts (plain and opaque) below a symlinked parent that an earlier layer made.
fn export_attacks(canary: &Path) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let abs = canary.to_str().unwrap();
    let c = abs.trim_start_matches('/');
    let link = || layer(&[Entry::Symlink("evil".into(), abs.into())]);
    // (No entry for `evil/` itself in the later layers: unpacked on its own, such a layer's
    // snapshot gets a real directory there; only an export that stacks the layers meets the
    // link.)
    vec![
        (
            "absolute file",
            vec![layer(&[Entry::File(
                format!("/{c}/abs"),
                0o644,
                b"outside".to_vec(),
            )])],
        ),
        (
            "absolute whiteout",
            vec![layer(&[Entry::File(
                format!("/{c}/.wh.victim"),
                0o644,
                vec![],
            )])],
        ),
        (
            "absolute opaque whiteout",
            vec![layer(&[Entry::File(
                format!("/{c}/f/.wh..wh..opq"),
                0o644,
                vec![],
            )])],
        ),
        (
            "whiteout below a symlink",
            vec![
                link(),
                layer(&[Entry::File("evil/.wh.victim".into(), 0o644, vec![])]),
            ],
        ),
        (
            "opaque whiteout below a symlink",
            vec![
                link(),
                layer(&[Entry::File("evil/f/.wh..wh..opq".into(), 0o644, vec![])]),
            ],
        ),
        (
            "file below a symlink",
            vec![
                link(),
                layer(&[Entry::File("evil/abs".into(), 0o644, b"x".to_vec())]),
            ],
        ),
    ]
}

/// A root holding the crafted image `evil:1` (loaded from a docker archive).
fn load_crafted(k: &Kiln, layers: &[Vec<u8>]) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("evil.tar");
    docker_archive(&archive, "evil:1", layers);
    let out = k.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
}

/// Builds `FROM evil:1` with `-o OUTPUT`; returns (success, log).
fn export(k: &Kiln, output: &str) -> (bool, String) {
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", "FROM evil:1\n");
    k.build(ctx.path(), &["-o", output])
}

#[test]
fn late_dir_metadata_never_reaches_a_symlink_target_on_run_from_and_pull() {
    if !can_run(&["busybox", "docker-registry"]) {
        return;
    }
    let canary = Canary::new();
    let before = canary.state();
    let k = Kiln::new();
    load_crafted(&k, &late_metadata_layers(&canary.path));
    // `run` unpacks the layers (whatever it answers, the canary must be untouched).
    let _ = k.run(&["run", "--rm", "evil:1", "true"]);
    assert_eq!(canary.state(), before, "run changed the canary");
    let out = tempfile::tempdir().unwrap();
    let _ = export(&k, &format!("type=local,dest={}", out.path().display()));
    assert_eq!(canary.state(), before, "FROM + export changed the canary");

    // The same image pushed to a registry and pulled into an empty root.
    let reg = Registry::start();
    let name = format!("{}/evil:1", reg.addr);
    k.ok(&["tag", "evil:1", &name]);
    k.ok(&["push", &name]);
    let fresh = Kiln::new();
    let _ = fresh.run(&["pull", &name]);
    let _ = fresh.run(&["run", "--rm", &name, "true"]);
    assert_eq!(canary.state(), before, "pull changed the canary");
}

#[test]
fn rootfs_exports_never_write_or_delete_outside_their_destination() {
    if !can_run(&["busybox"]) {
        return;
    }
    let canary = Canary::new();
    let before = canary.state();
    for (what, layers) in export_attacks(&canary.path) {
        let k = Kiln::new();
        load_crafted(&k, &layers);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("rootfs");
        let _ = export(&k, &format!("type=local,dest={}", dest.display()));
        assert_eq!(
            canary.state(),
            before,
            "{what}: -o type=local touched the canary"
        );
        let tar = out.path().join("rootfs.tar");
        let _ = export(&k, &format!("type=tar,dest={}", tar.display()));
        assert_eq!(
            canary.state(),
            before,
            "{what}: -o type=tar touched the canary"
        );
    }
}

#[test]
fn a_directory_that_replaced_a_symlink_exports_as_a_directory() {
    let Some((k, ctx)) = local_project(&[]) else {
        return;
    };
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\nRUN ln -s /tmp /x\nRUN rm /x && mkdir /x && echo f > /x/f\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("rootfs");
    let (ok, log) = k.build(
        ctx.path(),
        &["-o", &format!("type=local,dest={}", dest.display())],
    );
    assert!(ok, "{log}");
    let md = std::fs::symlink_metadata(dest.join("x")).unwrap();
    assert!(md.is_dir(), "/x is a directory in the export");
    assert_eq!(std::fs::read(dest.join("x/f")).unwrap(), b"f\n");
}

#[test]
fn container_setup_never_follows_an_image_symlink_out_of_the_rootfs() {
    if !can_run(&["busybox"]) {
        return;
    }
    let canary = Canary::new();
    let before = canary.state();
    let abs = canary.path.to_str().unwrap().to_string();
    let k = Kiln::new();
    // /etc/hosts, /etc/hostname and /etc/resolv.conf (written by kiln for each container),
    // a volume target and a tmpfs target, each a symlink to the canary.
    load_crafted(
        &k,
        &[layer(&[
            Entry::Dir("etc/", 0o755),
            Entry::Symlink("etc/hosts".into(), format!("{abs}/victim")),
            Entry::Symlink("etc/hostname".into(), format!("{abs}/victim")),
            Entry::Symlink("etc/resolv.conf".into(), format!("{abs}/victim")),
            Entry::Symlink("data".into(), abs.clone()),
            Entry::Symlink("scratch".into(), format!("{abs}/f")),
        ])],
    );
    let o = k.run(&["run", "--rm", "-v", "vol1:/data", "evil:1", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = k.run(&["run", "--rm", "--tmpfs", "/scratch", "evil:1", "true"]);
    let _ = k.run(&["run", "--rm", "-v", "/data", "evil:1", "true"]);
    assert_eq!(canary.state(), before, "container setup touched the canary");
    // The new volume was not filled from the host directory the link names.
    let vol = k.root.path().join("volumes/vol1/_data");
    if vol.exists() {
        assert!(
            !vol.join("victim").exists(),
            "the host's canary was copied into the volume"
        );
    }
}
