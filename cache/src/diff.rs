//! Overlay upper dir → OCI layer tar (streaming).

use crate::{io_err, Error, Result};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// Overlayfs' private xattrs; never copied into a layer.
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// Overlayfs' private xattrs when mounted with `userxattr` (unprivileged); never copied.
pub(crate) const OVERLAY_USER_XATTR_PREFIX: &str = "user.overlay.";
/// Marks an opaque directory in an overlay upper (value `y`).
pub(crate) const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";
/// The same with `userxattr`.
const OVERLAY_USER_OPAQUE: &str = "user.overlay.opaque";
/// OCI whiteout prefix.
pub(crate) const WH_PREFIX: &str = ".wh.";
/// OCI opaque-directory marker.
pub(crate) const WH_OPAQUE: &str = ".wh..wh..opq";

/// Writes the tar of `upper` (sorted, directories before their contents, names relative
/// without a leading `./`) into `w` and returns `w` once the archive is finished.
pub(crate) fn write_upper<W: Write>(upper: &Path, w: W) -> Result<W> {
    let mut b = tar::Builder::new(w);
    // First path (relative) of every multiply-linked inode seen so far.
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walk = walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for ent in walk {
        let ent = ent.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_path_buf();
            Error::Io {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("walk failed")),
            }
        })?;
        let path = ent.path();
        let rel = path
            .strip_prefix(upper)
            .map_err(|_| io_err(path)(io::Error::other("entry outside the upper dir")))?
            .to_path_buf();
        add_entry(&mut b, path, &rel, &mut links).map_err(io_err(path))?;
    }
    b.into_inner().map_err(io_err(upper))
}

fn base_header(md: &std::fs::Metadata, ty: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// The xattrs to carry in the layer (everything but overlayfs' own), as PAX records.
fn layer_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(n) = name.to_str() else { continue };
        if n.starts_with(OVERLAY_XATTR_PREFIX) || n.starts_with(OVERLAY_USER_XATTR_PREFIX) {
            continue;
        }
        if let Some(v) = xattr::get(path, &name)? {
            out.push((format!("SCHILY.xattr.{n}"), v));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr of `path` (not following symlinks); `None` when absent or unsupported.
fn xget(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match xattr::get(path, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        r => r,
    }
}

fn append_pax<W: Write>(b: &mut tar::Builder<W>, recs: &[(String, Vec<u8>)]) -> io::Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn with_name(rel: &Path, name: &[u8]) -> PathBuf {
    let mut p = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    p.push(OsString::from_vec(name.to_vec()));
    p
}

fn add_entry<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let md = std::fs::symlink_metadata(path)?;
    let ft = md.file_type();

    // Overlay whiteout: a 0:0 char device (possibly one of many hard links to a shared
    // whiteout inode) → empty regular `.wh.NAME`.
    if ft.is_char_device() && md.rdev() == 0 {
        let mut name = WH_PREFIX.as_bytes().to_vec();
        name.extend_from_slice(rel.file_name().unwrap_or_default().as_bytes());
        let mut h = base_header(&md, EntryType::Regular);
        h.set_mode(0o600);
        return b.append_data(&mut h, with_name(rel, &name), io::empty());
    }

    if ft.is_dir() {
        if xget(path, "trusted.overlay.redirect")?.is_some()
            || xget(path, "user.overlay.redirect")?.is_some()
        {
            return Err(io::Error::other(
                "renamed lower directory (overlay redirect_dir) is not supported; \
                 mount overlay with redirect_dir=off",
            ));
        }
        let xattrs = layer_xattrs(path)?;
        append_pax(b, &xattrs)?;
        let mut h = base_header(&md, EntryType::Directory);
        let mut name = rel.as_os_str().as_bytes().to_vec();
        name.push(b'/');
        b.append_data(&mut h, OsString::from_vec(name), io::empty())?;
        // `y` only: newer kernels also use `x` ("has xattr whiteouts"), which is not opaque.
        let opaque = xget(path, OVERLAY_OPAQUE)?.as_deref() == Some(b"y")
            || xget(path, OVERLAY_USER_OPAQUE)?.as_deref() == Some(b"y");
        if opaque {
            let mut h = base_header(&md, EntryType::Regular);
            h.set_mode(md.mode() & 0o777);
            b.append_data(&mut h, rel.join(WH_OPAQUE), io::empty())?;
        }
        return Ok(());
    }

    // Hard links within the layer: every later path of an inode points at the first one.
    if md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        if let Some(first) = links.get(&key) {
            let mut h = base_header(&md, EntryType::Link);
            return b.append_link(&mut h, rel, first);
        }
        links.insert(key, rel.to_path_buf());
    }

    if ft.is_symlink() {
        let target = std::fs::read_link(path)?;
        append_pax(b, &layer_xattrs(path)?)?;
        let mut h = base_header(&md, EntryType::Symlink);
        return b.append_link(&mut h, rel, target);
    }

    if ft.is_file() {
        if xget(path, "trusted.overlay.metacopy")?.is_some()
            || xget(path, "user.overlay.metacopy")?.is_some()
        {
            return Err(io::Error::other(
                "metadata-only copy-up (overlay metacopy) is not supported; \
                 mount overlay with metacopy=off",
            ));
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        append_pax(b, &layer_xattrs(path)?)?;
        let mut h = base_header(&md, EntryType::Regular);
        h.set_size(md.len());
        let data = ExactReader {
            inner: f.take(md.len()),
            left: md.len(),
        };
        return b.append_data(&mut h, rel, data);
    }

    let ty = if ft.is_char_device() {
        EntryType::Char
    } else if ft.is_block_device() {
        EntryType::Block
    } else if ft.is_fifo() {
        EntryType::Fifo
    } else {
        // Sockets have no place in an image (docker skips them too).
        return Ok(());
    };
    append_pax(b, &layer_xattrs(path)?)?;
    let mut h = base_header(&md, ty);
    if ty != EntryType::Fifo {
        let rdev = md.rdev();
        h.set_device_major(libc::major(rdev))?;
        h.set_device_minor(libc::minor(rdev))?;
    }
    b.append_data(&mut h, rel, io::empty())
}

/// Reads exactly `left` bytes or fails (a file that shrank while being archived would
/// otherwise corrupt the tar).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            true
        } else {
            eprintln!("skipping the privileged part: needs root (mknod, trusted.* xattrs, chown)");
            false
        }
    }

    /// Deterministic bytes (xorshift), so that the tree and its tar never change.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// An upper dir holding every kind of entry `write_upper` handles, with fixed contents,
    /// modes, owners and mtimes: `files` small files spread over five dirs (more than the
    /// threading threshold and the prepare window), files around the read-ahead limit, a
    /// big file, nested dirs, symlinks, hard links (small and big), long names, a user
    /// xattr, a fifo and, as root, a whiteout and an opaque dir.
    fn make_tree(up: &Path, files: usize, privileged: bool) {
        for d in 0..5 {
            fs::create_dir(up.join(format!("d{d}"))).unwrap();
        }
        for i in 0..files {
            let len = (i * 977) % 9000;
            fs::write(up.join(format!("d{}/f{i:04}", i % 5)), bytes(i as u64, len)).unwrap();
        }
        fs::create_dir_all(up.join("a/b/c")).unwrap();
        fs::write(up.join("a/b/c/deep"), b"deep").unwrap();
        fs::write(up.join("empty"), b"").unwrap();
        fs::write(up.join("at-limit"), bytes(1, 64 << 10)).unwrap();
        fs::write(up.join("over-limit"), bytes(2, (64 << 10) + 1)).unwrap();
        fs::write(up.join("big"), bytes(3, 3 << 20)).unwrap();
        fs::hard_link(up.join("big"), up.join("d4/big-link")).unwrap();
        fs::hard_link(up.join("d0/f0000"), up.join("d3/small-link")).unwrap();
        fs::hard_link(up.join("d0/f0000"), up.join("z-small-link")).unwrap();
        std::os::unix::fs::symlink("d0/f0005", up.join("sym")).unwrap();
        std::os::unix::fs::symlink("../nowhere", up.join("a/dangling")).unwrap();
        let long_dir = "D".repeat(120);
        fs::create_dir(up.join(&long_dir)).unwrap();
        fs::write(up.join(&long_dir).join("n".repeat(150)), b"long").unwrap();
        xattr::set(up.join("d1/f0001"), "user.note", b"hi").unwrap();
        xattr::set(up.join("d2"), "user.dir", b"d").unwrap();
        nix::unistd::mkfifo(&up.join("fifo"), nix::sys::stat::Mode::S_IRUSR).unwrap();
        if privileged {
            nix::sys::stat::mknod(
                &up.join("d1/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            fs::create_dir(up.join("opq")).unwrap();
            xattr::set(up.join("opq"), OVERLAY_OPAQUE, b"y").unwrap();
            xattr::set(up.join("opq"), "trusted.overlay.origin", b"o").unwrap();
            fs::write(up.join("opq/new"), b"n").unwrap();
        }
        // Fixed metadata, contents first so that a directory's mtime is set last.
        let t = nix::sys::time::TimeSpec::new(1_577_836_800, 0);
        for ent in walkdir::WalkDir::new(up).contents_first(true) {
            let ent = ent.unwrap();
            let p = ent.path();
            let ft = ent.file_type();
            if privileged {
                std::os::unix::fs::lchown(p, Some(0), Some(0)).unwrap();
            }
            if !ft.is_symlink() {
                let mode = if ft.is_dir() { 0o755 } else { 0o644 };
                fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
            }
            nix::sys::stat::utimensat(
                None,
                p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }

    fn diff_id(up: &Path) -> String {
        let w = write_upper(up, kiln_oci::Sha256Writer::new(io::sink())).unwrap();
        w.finish().1
    }

    /// The layer of a fixed tree, pinned: any change to the tar bytes changes every diff id
    /// (and so every cache key downstream).
    #[test]
    fn fixed_tree_has_the_pinned_diff_id() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 400, true);
        assert_eq!(
            diff_id(dir.path()),
            "sha256:7d636f33d0cf8bbf39d6099e1c7c677d8a41526baac24d1a0afc2a5cf73b6c79"
        );
    }
}

/// Times `write_upper` into a sha256 sink, the way `Store::commit_upper` computes a diff id.
/// Run with `cargo test --release -p kiln-cache --lib bench_write_upper -- --ignored
/// --nocapture`; the tree is `$KILN_HASHBENCH` or `/var/tmp/hashbench/src` (made by
/// `bench/workloads/big-context/gen.py /var/tmp/hashbench`).
#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore = "benchmark: needs a generated tree, run in release"]
    fn bench_write_upper() {
        let tree = std::env::var_os("KILN_HASHBENCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/hashbench/src"));
        assert!(tree.is_dir(), "no tree at {}", tree.display());
        let runs = 5;
        // Warm the page cache and the dentry/inode caches first.
        let id = write_upper(&tree, kiln_oci::Sha256Writer::new(io::sink()))
            .unwrap()
            .finish()
            .1;
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = std::time::Instant::now();
            let w = write_upper(&tree, kiln_oci::Sha256Writer::new(io::sink())).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(w.finish().1, id);
        }
        let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t * 1e3)).collect();
        times.sort_by(f64::total_cmp);
        eprintln!(
            "write_upper: median {:.0} ms, min {:.0} ms (runs: {} ms) {id}",
            times[runs / 2] * 1e3,
            times[0] * 1e3,
            ms.join(" ")
        );
    }
}
