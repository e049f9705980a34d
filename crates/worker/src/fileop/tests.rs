use super::archive::{archive_kind, Archive};
use super::copy::{clean_src, Copier};
use super::pool::link_placeholder;
use super::resolve_in;
use kiln_opgraph::{Chown, CopyAction};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

#[test]
fn symlinks_resolve_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    fs::create_dir_all(r.join("real/dir")).unwrap();
    symlink("/real", r.join("abs")).unwrap();
    symlink("../../..", r.join("real/dir/up")).unwrap();
    assert_eq!(resolve_in(r, "/abs/dir", true).unwrap(), r.join("real/dir"));
    assert_eq!(
        resolve_in(r, "/real/dir/up/etc", true).unwrap(),
        r.join("etc")
    );
    assert_eq!(resolve_in(r, "abs", false).unwrap(), r.join("abs"));
    assert_eq!(resolve_in(r, "/../../x", true).unwrap(), r.join("x"));
}

/// Issue 11, item 5: a symlink never brings in a `.dockerignore`d file's content.
#[test]
fn symlinks_to_ignored_files_find_nothing() {
    let ctx = context(&["secret", "public/a", "hidden/b"]);
    let c = ctx.path();
    symlink("secret", c.join("link")).unwrap();
    symlink("/secret", c.join("abslink")).unwrap();
    symlink("hidden", c.join("dirlink")).unwrap();
    symlink("public", c.join("pub")).unwrap();
    fs::write(c.join("public/ignored.txt"), "x").unwrap();
    let ex: Vec<String> = ["secret", "hidden", "public/ignored.txt"]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    let copy = |src: &[&str]| {
        let root = tempfile::tempdir().unwrap();
        let r = Copier::new(root.path(), c, &ex, true, &copy_action(src, "/x/"))
            .unwrap()
            .run();
        (root, r)
    };
    for src in ["link", "abslink", "dirlink/b", "dirlink"] {
        let (_, r) = copy(&[src]);
        let e = r.expect_err(src);
        assert!(e.to_string().contains("not found"), "{src}: {e}");
    }
    // A wildcard does not match through them either.
    let (root, r) = copy(&["*link*"]);
    r.unwrap();
    assert_eq!(files(root.path()), ["x/"]);
    // Below a followed symlink, patterns apply to the real paths.
    let (root, r) = copy(&["pub"]);
    r.unwrap();
    assert_eq!(files(root.path()), ["x/", "x/a"]);
    // Copied as part of a directory, a symlink stays a symlink.
    let (root, r) = copy(&["."]);
    r.unwrap();
    assert_eq!(
        fs::read_link(root.path().join("x/link")).unwrap(),
        Path::new("secret")
    );
    assert!(!root.path().join("x/secret").exists());
}

fn copy_action(src: &[&str], dest: &str) -> CopyAction {
    CopyAction {
        source: kiln_opgraph::Input {
            vertex: kiln_opgraph::VertexDigest("blake3:x".into()),
        },
        src: src.iter().map(std::string::ToString::to_string).collect(),
        dest: dest.into(),
        chown: None,
        chmod: None,
        extract_archives: false,
        parents: false,
        exclude: vec![],
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
        .map(|e| {
            let r = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().is_dir() {
                format!("{r}/")
            } else {
                r
            }
        })
        .collect();
    v.sort();
    v
}

fn context(paths: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for p in paths {
        let f = d.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, p.as_bytes()).unwrap();
    }
    d
}

fn run_copy(ctx: &Path, copy: &CopyAction) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    Copier::new(root.path(), ctx, &[], true, copy)
        .unwrap()
        .run()
        .unwrap();
    root
}

#[test]
fn a_placeholder_becomes_a_link_and_its_directory_keeps_its_mtime() {
    let d = tempfile::tempdir().unwrap();
    let committed = d.path().join("committed");
    fs::write(&committed, b"content").unwrap();
    let dir = d.path().join("upper/app");
    fs::create_dir_all(&dir).unwrap();
    let placeholder = dir.join("big.bin");
    fs::write(&placeholder, b"").unwrap();
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_times(&dir, old, old).unwrap();
    link_placeholder(&placeholder, &committed).unwrap();
    assert_eq!(fs::read(&placeholder).unwrap(), b"content");
    assert_eq!(
        fs::metadata(&placeholder).unwrap().ino(),
        fs::metadata(&committed).unwrap().ino()
    );
    let md = fs::metadata(&dir).unwrap();
    assert_eq!(filetime::FileTime::from_last_modification_time(&md), old);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp name left");
}

#[test]
fn copy_parents_case() {
    let ctx = context(&[
        "x/a.txt",
        "y/a.txt",
        "x/y/b.txt",
        "x/y/c.txt",
        "src/s.txt",
        "src/m/t.txt",
        "src/m/n/u.txt",
        "src/m/skip.md",
    ]);
    let mut c = copy_action(&["x/a.txt", "y/a.txt"], "/parents/");
    c.parents = true;
    let r = run_copy(ctx.path(), &c);
    assert_eq!(
        files(r.path()),
        [
            "parents/",
            "parents/x/",
            "parents/x/a.txt",
            "parents/y/",
            "parents/y/a.txt"
        ]
    );
    let mut c = copy_action(&["x/./y/*.txt"], "/pivot/");
    c.parents = true;
    let r = run_copy(ctx.path(), &c);
    assert_eq!(
        files(r.path()),
        ["pivot/", "pivot/y/", "pivot/y/b.txt", "pivot/y/c.txt"]
    );
    let mut c = copy_action(&["src/**/*.txt"], "/deep/");
    c.parents = true;
    let r = run_copy(ctx.path(), &c);
    assert_eq!(
        files(r.path()),
        [
            "deep/",
            "deep/src/",
            "deep/src/m/",
            "deep/src/m/n/",
            "deep/src/m/n/u.txt",
            "deep/src/m/t.txt",
            "deep/src/s.txt"
        ]
    );
    // `**` without --parents flattens, like any glob.
    let c = copy_action(&["src/**/*.txt"], "/flat/");
    let r = run_copy(ctx.path(), &c);
    assert_eq!(
        files(r.path()),
        ["flat/", "flat/s.txt", "flat/t.txt", "flat/u.txt"]
    );
}

#[test]
fn copy_exclude_case() {
    let ctx = context(&[
        "Dockerfile",
        "main.c",
        "README.md",
        "docs/guide.md",
        "docs/keep.txt",
        "tmp/x",
        "logs/a.log",
        "logs/b.txt",
    ]);
    let mut c = copy_action(&["."], "/app/");
    c.exclude = vec!["*.md".into(), "docs/*.md".into(), "tmp".into()];
    let r = run_copy(ctx.path(), &c);
    assert_eq!(
        files(r.path()),
        [
            "app/",
            "app/Dockerfile",
            "app/docs/",
            "app/docs/keep.txt",
            "app/logs/",
            "app/logs/a.log",
            "app/logs/b.txt",
            "app/main.c"
        ]
    );
    let mut c = copy_action(&["logs"], "/logs/");
    c.exclude = vec!["*.log".into()];
    c.extract_archives = true;
    let r = run_copy(ctx.path(), &c);
    assert_eq!(files(r.path()), ["logs/", "logs/b.txt"]);
}

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(7);
    h.set_gid(8);
    h.set_cksum();
    b.append_data(&mut h, "dir/f.txt", &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_extracts_bzip2_and_xz() {
    use std::io::Write;
    let ctx = tempfile::tempdir().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar_bytes()).unwrap();
    fs::write(ctx.path().join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tar_bytes()).unwrap();
    fs::write(ctx.path().join("b.tar.xz"), xz.finish().unwrap()).unwrap();
    assert_eq!(
        archive_kind(&ctx.path().join("a.tar.bz2")).unwrap(),
        Some(Archive::Bzip2)
    );
    assert_eq!(
        archive_kind(&ctx.path().join("b.tar.xz")).unwrap(),
        Some(Archive::Xz)
    );
    for (src, dest) in [("a.tar.bz2", "/bz/"), ("b.tar.xz", "/xz/")] {
        let mut c = copy_action(&[src], dest);
        c.extract_archives = true;
        let r = run_copy(ctx.path(), &c);
        let f = r.path().join(dest.trim_matches('/')).join("dir/f.txt");
        assert_eq!(fs::read(&f).unwrap(), b"abc");
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(fs::metadata(&f).unwrap().uid(), 7);
        }
    }
    // ADD --chown chowns every extracted entry.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = copy_action(&["a.tar.bz2"], "/own/");
        c.extract_archives = true;
        c.chown = Some(Chown {
            user: "100".into(),
            group: Some("200".into()),
        });
        let r = run_copy(ctx.path(), &c);
        let md = fs::metadata(r.path().join("own/dir/f.txt")).unwrap();
        assert_eq!((md.uid(), md.gid()), (100, 200));
    }
}

#[test]
fn clean_src_stays_inside() {
    assert_eq!(clean_src("./a/../b/"), "b");
    assert_eq!(clean_src("../../etc/passwd"), "etc/passwd");
    assert_eq!(clean_src("."), "");
}

/// The messages of a missing source are BuildKit's, `.dockerignore`d or not.
#[test]
fn missing_sources_say_so() {
    let ctx = context(&["secret", "kept"]);
    let ex = vec!["secret".to_string()];
    let run = |src: &str| {
        let root = tempfile::tempdir().unwrap();
        Copier::new(
            root.path(),
            ctx.path(),
            &ex,
            true,
            &copy_action(&[src], "/x/"),
        )
        .unwrap()
        .run()
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        run("missing"),
        "failed to compute cache key: \"/missing\": not found"
    );
    assert_eq!(
        run("secret"),
        "failed to compute cache key: \"/secret\": not found (excluded by .dockerignore)"
    );
}
