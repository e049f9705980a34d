//! The sandbox both targets share: a temp dir holding a canary tree (that no layer may
//! touch) next to the destination each input is unpacked into, and a decoder that turns
//! fuzz bytes into layer tars.
//!
//! The oracle: after every input, the canary tree (names, types, modes, owners, times,
//! contents, link targets) and the sandbox's own listing are exactly what they were.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub struct Sandbox {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub canary: PathBuf,
    before: Tree,
}

type Tree = BTreeMap<PathBuf, (u32, u32, u32, i64, i64, Vec<u8>)>;

/// The tree at `dir`, without what is below `skip` (only regular files are read: a fifo a
/// layer made would block).
fn tree(dir: &Path, skip: Option<&Path>) -> Tree {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if skip.is_some_and(|s| p.starts_with(s)) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
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
        } else if md.is_file() {
            std::fs::read(&p).unwrap_or_default()
        } else {
            Vec::new()
        };
        out.insert(
            p,
            (
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.ctime(),
                content,
            ),
        );
    }
    out
}

pub fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let canary = dir.join("canary");
        std::fs::create_dir_all(canary.join("a/b")).unwrap();
        std::fs::write(canary.join("a/victim"), "host file").unwrap();
        std::fs::write(canary.join("victim"), "host file").unwrap();
        std::os::unix::fs::symlink("a", canary.join("d")).unwrap();
        let before = tree(&dir, None);
        Sandbox {
            _tmp: tmp,
            dir,
            canary,
            before,
        }
    })
}

impl Sandbox {
    /// A fresh, empty destination inside the sandbox.
    pub fn dest(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("dest")
            .tempdir_in(&self.dir)
            .unwrap()
    }

    /// Panics when anything outside `dest` changed.
    pub fn check(&self, dest: &Path) {
        let mut now = tree(&self.dir, Some(dest));
        let mut before = self.before.clone();
        // The sandbox directory's own times change as destinations come and go.
        before.remove(&self.dir);
        now.remove(&self.dir);
        assert_eq!(now, before, "something outside the destination changed");
    }
}

/// Turns fuzz bytes into layer tars. The first byte picks raw mode (the rest is one tar as
/// it is) or structured mode: entries of 5 bytes (type, depth, name parts, link target,
/// mode) whose names and targets come from a small hostile vocabulary (`..`, the canary's
/// absolute path, whiteouts, symlinks to `/`); 0xff starts the next layer.
pub fn layers(data: &[u8], canary: &Path) -> Vec<Vec<u8>> {
    let Some((&first, rest)) = data.split_first() else {
        return vec![];
    };
    if first & 1 == 0 {
        return vec![rest.to_vec()];
    }
    let abs = canary.to_str().unwrap().to_string();
    let parts = [
        "a".to_string(),
        "b".into(),
        "d".into(),
        "..".into(),
        ".".into(),
        "victim".into(),
        ".wh.victim".into(),
        ".wh.a".into(),
        ".wh..wh..opq".into(),
        abs.clone(),
        "".into(),
    ];
    let targets = [
        abs.clone(),
        "/".into(),
        "..".into(),
        "../..".into(),
        "a".into(),
        format!("{abs}/victim"),
        "d/b".into(),
        "victim".into(),
    ];
    let mut out = vec![];
    let mut cur = Vec::new();
    for chunk in rest.chunks(5) {
        if chunk[0] == 0xff {
            out.push(finish(std::mem::take(&mut cur)));
            continue;
        }
        let [ty, depth, names, target, mode] = [0, 1, 2, 3, 4].map(|i| *chunk.get(i).unwrap_or(&0));
        let n = 1 + depth as usize % 3;
        let mut name = String::new();
        let mut pick = names as usize;
        for i in 0..n {
            if i > 0 {
                name.push('/');
            }
            name.push_str(&parts[(pick + depth as usize * i) % parts.len()]);
            pick /= parts.len().max(1);
            pick += (depth >> 2) as usize;
        }
        let target = &targets[target as usize % targets.len()];
        let kind = match ty % 6 {
            0 => b'5',
            1 => b'0',
            2 => b'2',
            3 => b'1',
            4 => b'3',
            _ => b'6',
        };
        let mode = [0o755u32, 0o777, 0o6777, 0o000, 0o644, 0o4755][mode as usize % 6];
        header(
            &mut cur,
            kind,
            &name,
            target,
            mode,
            if kind == b'0' { b"x" } else { b"" },
        );
    }
    out.push(finish(cur));
    out
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    let w = field.len() - 1;
    field[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
}

fn header(out: &mut Vec<u8>, kind: u8, name: &str, link: &str, mode: u32, data: &[u8]) {
    if name.len() > 100 || link.len() > 100 {
        return;
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    octal(&mut h[148..155], sum as u64);
    h[155] = b' ';
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}
