//! The tar's bytes with and without threads, errors, and a benchmark.

use super::entry::{read_whole, ExactReader};
use super::*;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use tar::EntryType;

fn is_root() -> bool {
    kiln_testutil::require_root("the privileged part: mknod, trusted.* xattrs, chown")
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

fn diff_id(up: &Path, threads: usize) -> String {
    let w = write_upper_with(up, kiln_oci::Sha256Writer::new(io::sink()), threads).unwrap();
    w.finish().1
}

fn tar_bytes(up: &Path, threads: usize) -> Vec<u8> {
    write_upper_with(up, Vec::new(), threads).unwrap()
}

fn err_string(up: &Path, threads: usize) -> String {
    match write_upper_with(up, io::sink(), threads) {
        Ok(_) => panic!("no error with {threads} threads"),
        Err(e) => e.to_string(),
    }
}

/// The layer of a fixed tree, pinned (computed before `write_upper` had threads): any
/// change to the tar bytes changes every diff id (and so every cache key downstream).
#[test]
fn fixed_tree_has_the_pinned_diff_id() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 400, true);
    for threads in [0, 1, 2, 4] {
        assert_eq!(
            diff_id(dir.path(), threads),
            "sha256:7d636f33d0cf8bbf39d6099e1c7c677d8a41526baac24d1a0afc2a5cf73b6c79",
            "{threads} threads"
        );
    }
    assert_eq!(
        diff_id(dir.path(), 0),
        write_upper(dir.path(), kiln_oci::Sha256Writer::new(io::sink()))
            .unwrap()
            .finish()
            .1
    );
}

/// Many more entries than the window, so that the slots are reused many times.
#[test]
fn parallel_tar_is_byte_identical_to_sequential() {
    let root = is_root();
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 1000, root);
    let seq = tar_bytes(dir.path(), 0);
    for threads in [1, 2, 3, 4, 8] {
        assert!(
            tar_bytes(dir.path(), threads) == seq,
            "the tar with {threads} threads differs from the sequential one"
        );
    }

    // And the tar holds what the tree holds.
    let mut ar = tar::Archive::new(seq.as_slice());
    let mut seen = HashMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let ty = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        seen.insert(name, (ty, data.len()));
    }
    assert_eq!(seen.len(), 1000 + 21 + if root { 4 } else { 0 });
    assert_eq!(seen["at-limit"], (EntryType::Regular, 64 << 10));
    assert_eq!(seen["over-limit"], (EntryType::Regular, (64 << 10) + 1));
    assert_eq!(seen["big"], (EntryType::Regular, 3 << 20));
    assert_eq!(seen["d4/big-link"], (EntryType::Link, 0));
    assert_eq!(seen["d3/small-link"], (EntryType::Link, 0));
    assert_eq!(seen["sym"].0, EntryType::Symlink);
    let long = format!("{}/{}", "D".repeat(120), "n".repeat(150));
    assert_eq!(seen[&long], (EntryType::Regular, 4));
    if root {
        assert_eq!(seen["d1/.wh.gone"], (EntryType::Regular, 0));
        assert_eq!(seen["opq/.wh..wh..opq"], (EntryType::Regular, 0));
    }
}

/// A tree too small for threads is written the same way whatever `threads` says.
#[test]
fn small_tree_is_the_same_with_threads() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 10, false);
    assert_eq!(tar_bytes(dir.path(), 4), tar_bytes(dir.path(), 0));
}

/// Trees around the threading threshold, the batch and the window size (a flat dir:
/// `n` entries in all).
#[test]
fn window_edges_are_the_same_as_sequential() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = 0;
    for n in [
        PARALLEL_MIN_ENTRIES - 1,
        PARALLEL_MIN_ENTRIES,
        PARALLEL_MIN_ENTRIES + BATCH + 1,
        WINDOW - 1,
        WINDOW,
        WINDOW + 1,
        2 * WINDOW + BATCH - 1,
    ] {
        for i in made..n {
            fs::write(dir.path().join(format!("f{i:04}")), bytes(i as u64, i)).unwrap();
        }
        made = n;
        let seq = tar_bytes(dir.path(), 0);
        for threads in [1, 2, 5] {
            assert!(
                tar_bytes(dir.path(), threads) == seq,
                "{n} entries, {threads} threads"
            );
        }
    }
}

/// An unsupported overlay xattr deep in a big tree fails the same way with threads as
/// without, naming the first bad path in walk order (not the first one prepared).
#[test]
fn overlay_errors_deep_in_a_big_tree_name_the_first_path() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path();
    make_tree(up, 1000, false);
    // `user.overlay.*` needs no root and is checked like `trusted.overlay.*`.
    let file = up.join("d3/f0903");
    xattr::set(&file, "user.overlay.metacopy", b"").unwrap();
    xattr::set(up.join("d4"), "user.overlay.redirect", b"/x").unwrap();
    let expect = format!(
        "{}: metadata-only copy-up (overlay metacopy) is not supported; \
         mount overlay with metacopy=off",
        file.display()
    );
    for threads in [0, 1, 2, 4] {
        assert_eq!(err_string(up, threads), expect, "{threads} threads");
    }

    xattr::remove(&file, "user.overlay.metacopy").unwrap();
    let expect = format!(
        "{}: renamed lower directory (overlay redirect_dir) is not supported; \
         mount overlay with redirect_dir=off",
        up.join("d4").display()
    );
    for threads in [0, 1, 2, 4] {
        assert_eq!(err_string(up, threads), expect, "{threads} threads");
    }
}

/// Accepts `left` bytes, then fails (an exporter whose reader went away).
struct FailAfter {
    left: usize,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Tars written at once from the tasks of another rayon pool (the exporter compresses
/// layers on the global pool) share the prepare pool without waiting on each other forever,
/// and each is the sequential tar.
#[test]
fn tars_written_from_rayon_tasks_are_the_sequential_ones() {
    use rayon::iter::{IntoParallelIterator as _, ParallelIterator as _};
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 1000, false);
    let seq = tar_bytes(dir.path(), 0);
    let outer = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let tars: Vec<Vec<u8>> = outer.install(|| {
        (0..6)
            .into_par_iter()
            .map(|_| write_upper(dir.path(), Vec::new()).unwrap())
            .collect()
    });
    for t in tars {
        assert!(t == seq);
    }
}

/// A failing writer ends the archive with its error (naming the entry being written),
/// and the prepare threads stop instead of waiting for room forever.
#[test]
fn a_failing_writer_stops_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 1000, false);
    for left in [0, 100_000, 1 << 20] {
        for threads in [0, 1, 4] {
            let e = write_upper_with(dir.path(), FailAfter { left }, threads)
                .err()
                .expect("the writer fails");
            let Error::Io { path, source } = &e else {
                panic!("{e}")
            };
            assert_eq!(source.kind(), io::ErrorKind::BrokenPipe, "{e}");
            assert!(path.starts_with(dir.path()), "{e}");
        }
    }
}

/// A file whose size is not its lstat size fails instead of corrupting the tar, read
/// ahead (small) or streamed (large).
#[test]
fn read_ahead_and_streamed_files_check_the_size() {
    let mut streamed = ExactReader {
        inner: io::BufReader::with_capacity(STREAM_CHUNK, &b"01234"[..]).take(10),
        left: 10,
    };
    let e = io::copy(&mut streamed, &mut io::sink()).unwrap_err();
    assert_eq!(e.to_string(), "file shrank while being archived");
    let mut streamed = ExactReader {
        inner: io::BufReader::with_capacity(STREAM_CHUNK, &b"0123456789"[..]).take(5),
        left: 5,
    };
    assert_eq!(io::copy(&mut streamed, &mut io::sink()).unwrap(), 5);

    assert_eq!(read_whole(&b"0123456789"[..], 10).unwrap(), b"0123456789");
    assert_eq!(read_whole(&b""[..], 0).unwrap(), b"");
    let e = read_whole(&b"01234"[..], 10).unwrap_err();
    assert_eq!(e.to_string(), "file shrank while being archived");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let e = read_whole(&b"0123456789"[..], 5).unwrap_err();
    assert_eq!(e.to_string(), "file grew while being archived");
}

/// Times `write_upper` into a sha256 sink, the way `Store::commit_upper` computes a diff id:
/// sequential (no prepare threads), then with 1, 2 and 4 threads and the default count.
/// Run with `cargo test --release -p kiln-cache --lib bench_write_upper -- --ignored
/// --nocapture`; the tree is `$KILN_HASHBENCH` or `/var/tmp/hashbench/src` (made by
/// `bench/workloads/big-context/gen.py /var/tmp/hashbench`).
#[cfg(test)]
mod bench {
    use super::*;

    fn time(tree: &Path, threads: Option<usize>, runs: usize, id: &str) -> String {
        let mut times = Vec::new();
        for _ in 0..runs {
            let w = kiln_oci::Sha256Writer::new(io::sink());
            let t = std::time::Instant::now();
            let w = match threads {
                Some(n) => write_upper_with(tree, w, n),
                None => write_upper(tree, w),
            };
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(w.unwrap().finish().1, id);
        }
        let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t * 1e3)).collect();
        times.sort_by(f64::total_cmp);
        format!(
            "median {:.0} ms, min {:.0} ms (runs: {} ms)",
            times[runs / 2] * 1e3,
            times[0] * 1e3,
            ms.join(" ")
        )
    }

    #[test]
    #[ignore = "benchmark: needs a generated tree, run in release"]
    fn bench_write_upper() {
        let tree = std::env::var_os("KILN_HASHBENCH")
            .map_or_else(|| PathBuf::from("/var/tmp/hashbench/src"), PathBuf::from);
        assert!(tree.is_dir(), "no tree at {}", tree.display());
        // Warm the page cache and the dentry/inode caches first.
        let id = write_upper_with(&tree, kiln_oci::Sha256Writer::new(io::sink()), 0)
            .unwrap()
            .finish()
            .1;
        eprintln!("{} → {id}", tree.display());
        for (name, threads) in [
            ("sequential", Some(0)),
            ("1 thread", Some(1)),
            ("2 threads", Some(2)),
            ("4 threads", Some(4)),
            ("default", None),
        ] {
            // `KILN_HASHBENCH_ONLY=2` times 2 threads only (`s` sequential, `d` default).
            if let Ok(only) = std::env::var("KILN_HASHBENCH_ONLY") {
                let key = threads.map_or("d".to_string(), |n| n.to_string());
                if only != key && !(only == "s" && threads == Some(0)) {
                    continue;
                }
            }
            eprintln!("{name:>10}: {}", time(&tree, threads, 5, &id));
        }
    }
}
