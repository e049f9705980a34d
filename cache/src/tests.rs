use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("root")).unwrap();
    (dir, s)
}

fn is_root() -> bool {
    kiln_testutil::require_root("mknod, trusted.* xattrs, chown")
}

fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[derive(Debug, Clone)]
struct TarEntry {
    ty: tar::EntryType,
    mode: u32,
    uid: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Reads a gzip layer blob back: (names in order, name → entry).
fn read_layer(s: &Store, layer: &kiln_oci::Layer) -> (Vec<String>, BTreeMap<String, TarEntry>) {
    let f = s.open_blob(&layer.digest).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                xattrs.push((x.key().unwrap().to_string(), x.value_bytes().to_vec()));
            }
        }
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        order.push(name.clone());
        map.insert(
            name,
            TarEntry {
                ty: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                link,
                data,
                xattrs,
            },
        );
    }
    (order, map)
}

// ---- content store ----

#[test]
fn a_deferred_store_opens_its_database_when_first_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let s = Store::open_deferred(&root).unwrap();
    assert!(root.join("blobs/sha256").is_dir() && root.join("VERSION").is_file());
    assert!(
        !root.join("meta.db").exists(),
        "not opened before it is used"
    );
    s.set_image("a:1", "sha256:x").unwrap();
    assert!(root.join("meta.db").is_file());
    drop(s);
    let s = Store::open_deferred(&root).unwrap();
    assert_eq!(
        s.get_image("a:1").unwrap().unwrap().manifest_digest,
        "sha256:x"
    );

    // A database that cannot be opened: an error when it is used, not before.
    drop(s);
    for f in ["meta.db", "meta.db-wal", "meta.db-shm"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    std::fs::write(root.join("meta.db"), vec![b'x'; 4096]).unwrap();
    assert!(Store::open(&root).is_err());
    let s = Store::open_deferred(&root).unwrap();
    assert!(matches!(s.get_image("a:1"), Err(Error::Db(_))));
}

#[test]
fn blob_write_commit_dedup() {
    let (_d, s) = store();
    let (d1, n1) = s.write_blob(b"hello").unwrap();
    assert_eq!(d1, kiln_oci::sha256_hex_digest(b"hello"));
    assert_eq!(n1, 5);
    assert!(s.has_blob(&d1));
    assert_eq!(s.read_blob(&d1).unwrap(), b"hello");
    assert_eq!(s.blob_size(&d1).unwrap(), 5);
    assert!(s.blob_path(&d1).starts_with(s.root().join("blobs/sha256")));

    // Same content through a streaming writer: same digest, still one file.
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"hel").unwrap();
    w.write_all(b"lo").unwrap();
    let (d2, n2) = w.commit(Some(&d1)).unwrap();
    assert_eq!((d2.as_str(), n2), (d1.as_str(), 5));
    assert_eq!(dir_entries(&s.root().join("blobs/sha256")).len(), 1);
    assert!(dir_entries(&s.root().join("ingest")).is_empty());

    // Missing and malformed digests.
    let missing = kiln_oci::sha256_hex_digest(b"nope");
    assert!(!s.has_blob(&missing));
    assert!(matches!(s.open_blob(&missing), Err(Error::NotFound(_))));
    assert!(matches!(
        s.read_blob("sha256:../../etc"),
        Err(Error::NotFound(_))
    ));
    assert!(!s.has_blob("md5:abc"));
}

#[test]
fn blob_digest_mismatch_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"actual content").unwrap();
    let expected = kiln_oci::sha256_hex_digest(b"other content");
    match w.commit(Some(&expected)) {
        Err(Error::DigestMismatch {
            expected: e,
            actual,
        }) => {
            assert_eq!(e, expected);
            assert_eq!(actual, kiln_oci::sha256_hex_digest(b"actual content"));
        }
        other => panic!("expected mismatch, got {other:?}"),
    }
    assert!(dir_entries(&s.root().join("blobs/sha256")).is_empty());
    assert!(dir_entries(&s.root().join("ingest")).is_empty());
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.blob_writer().unwrap();
    w.write_all(&vec![7u8; 1 << 20]).unwrap();
    assert_eq!(dir_entries(&s.root().join("ingest")).len(), 1);
    drop(w);
    assert!(dir_entries(&s.root().join("ingest")).is_empty());
    assert!(dir_entries(&s.root().join("blobs/sha256")).is_empty());
}

#[test]
fn layout_and_version_marker() {
    let (d, s) = store();
    let root = s.root().to_path_buf();
    for sub in ["blobs/sha256", "ingest", "snapshots", "tmp"] {
        assert!(root.join(sub).is_dir(), "{sub}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("VERSION"))
            .unwrap()
            .trim(),
        LAYOUT_VERSION
    );
    let t = s.temp_dir("build-").unwrap();
    assert!(t.path().starts_with(root.join("tmp")));
    assert!(t
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&format!("p{}-build-", std::process::id())));
    drop(s);
    std::fs::write(root.join("VERSION"), "99\n").unwrap();
    assert!(Store::open(&root).is_err());
    drop(d);
}

#[test]
fn open_cleans_only_stale_temps() {
    let (_d, s) = store();
    let root = s.root().to_path_buf();
    let fresh_ingest = root.join("ingest/fresh");
    std::fs::write(&fresh_ingest, b"x").unwrap();
    let fresh_snap = root.join("snapshots/.tmp-fresh");
    std::fs::create_dir(&fresh_snap).unwrap();
    drop(s);
    let _s = Store::open(&root).unwrap();
    // Young temps may belong to another running process: kept.
    assert!(fresh_ingest.exists());
    assert!(fresh_snap.exists());
    // Old ones (here: everything before a cutoff in the future) go, finished snapshots stay.
    let done_snap = root.join("snapshots").join("a".repeat(64));
    std::fs::create_dir(&done_snap).unwrap();
    clean_before(&root.join("ingest"), |_| true, now_secs() + 10);
    clean_before(
        &root.join("snapshots"),
        |n| n.starts_with(".tmp-"),
        now_secs() + 10,
    );
    assert!(!fresh_ingest.exists());
    assert!(!fresh_snap.exists());
    assert!(done_snap.exists());
}

// ---- metadata ----

#[test]
fn images_set_get_list_remove() {
    let (_d, s) = store();
    assert_eq!(s.get_image("docker.io/library/a:latest").unwrap(), None);
    s.set_image("docker.io/library/b:latest", "sha256:bb")
        .unwrap();
    s.set_image("docker.io/library/a:latest", "sha256:aa")
        .unwrap();
    let a = s.get_image("docker.io/library/a:latest").unwrap().unwrap();
    assert_eq!(a.manifest_digest, "sha256:aa");
    assert!(a.created > 1_600_000_000);
    s.set_image("docker.io/library/a:latest", "sha256:a2")
        .unwrap();
    let names: Vec<_> = s
        .list_images()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.manifest_digest))
        .collect();
    // The retagged image stays, dangling (its manifest is no blob: named by its digest).
    assert_eq!(
        names,
        vec![
            ("<none>@sha256:aa".to_string(), "sha256:aa".to_string()),
            (
                "docker.io/library/a:latest".to_string(),
                "sha256:a2".to_string()
            ),
            (
                "docker.io/library/b:latest".to_string(),
                "sha256:bb".to_string()
            ),
        ]
    );
    assert!(s.remove_image("docker.io/library/a:latest").unwrap());
    assert!(!s.remove_image("docker.io/library/a:latest").unwrap());
    assert_eq!(s.list_images().unwrap().len(), 2, "b and the dangling one");
}

#[test]
fn cache_put_get() {
    let (_d, s) = store();
    assert_eq!(s.cache_get("k").unwrap(), None);
    s.cache_put("k", b"v1").unwrap();
    assert_eq!(s.cache_get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    s.cache_put("k", b"v2").unwrap();
    assert_eq!(s.cache_get("k").unwrap().as_deref(), Some(&b"v2"[..]));
    s.cache_put("empty", b"").unwrap();
    assert_eq!(s.cache_get("empty").unwrap().as_deref(), Some(&b""[..]));
}

#[test]
fn metadata_survives_reopen() {
    let (_d, s) = store();
    let root = s.root().to_path_buf();
    s.set_image("x", "sha256:11").unwrap();
    s.cache_put("k", b"v").unwrap();
    drop(s);
    let s = Store::open(&root).unwrap();
    assert_eq!(
        s.get_image("x").unwrap().unwrap().manifest_digest,
        "sha256:11"
    );
    assert_eq!(s.cache_get("k").unwrap().unwrap(), b"v");
}

#[test]
fn two_stores_one_root_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let s = Store::open(&root).unwrap();
                for i in 0..100 {
                    s.set_image(&format!("img-{t}-{i}"), &format!("sha256:{t}{i}"))
                        .unwrap();
                    s.cache_put(&format!("key-{t}-{i}"), format!("{t}/{i}").as_bytes())
                        .unwrap();
                    assert!(s.cache_get(&format!("key-{t}-{i}")).unwrap().is_some());
                    s.write_blob(format!("blob {i}").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = Store::open(&root).unwrap();
    assert_eq!(s.list_images().unwrap().len(), 200);
    for t in 0..2 {
        for i in 0..100 {
            assert_eq!(
                s.cache_get(&format!("key-{t}-{i}")).unwrap().unwrap(),
                format!("{t}/{i}").as_bytes()
            );
        }
    }
    assert_eq!(dir_entries(&root.join("blobs/sha256")).len(), 100);
    assert!(dir_entries(&root.join("ingest")).is_empty());
}

// ---- layers ----

#[test]
fn empty_upper_is_no_layer() {
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    assert_eq!(s.diff_to_layer(up.path()).unwrap(), None);
}

#[test]
fn import_layer_and_snapshot() {
    let (_d, s) = store();
    // A rootfs tar as `tar -C dir -cf - .` writes it (`./` prefixes).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "./", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_mtime(1_000_000);
    h.set_size(0);
    b.append_data(&mut h, "./etc/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_size(6);
    h.set_mtime(1_234_567);
    b.append_data(&mut h, "./etc/hosts", &b"hello\n"[..])
        .unwrap();
    let long = format!("./{}/file", "d".repeat(150));
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    let tar_bytes = b.into_inner().unwrap();

    let layer = s.import_layer(&mut &tar_bytes[..]).unwrap();
    assert_eq!(layer.diff_id, kiln_oci::sha256_hex_digest(&tar_bytes));
    assert_eq!(layer.media_type, kiln_oci::media::OCI_LAYER_GZIP);
    assert_eq!(layer.size, s.blob_size(&layer.digest).unwrap());
    assert_eq!(s.find_layer(&layer.diff_id).unwrap(), Some(layer.clone()));

    let snap = s.snapshot(&layer).unwrap();
    assert_eq!(
        snap,
        s.root()
            .join("snapshots")
            .join(layer.diff_id.strip_prefix("sha256:").unwrap())
    );
    assert_eq!(std::fs::read(snap.join("etc/hosts")).unwrap(), b"hello\n");
    let md = std::fs::metadata(snap.join("etc/hosts")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mtime(), 1_234_567);
    let md = std::fs::metadata(snap.join("etc")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750);
    assert_eq!(md.mtime(), 1_000_000);
    assert_eq!(std::fs::read(snap.join(&long[2..])).unwrap(), b"x");
    // Second call: already there.
    assert_eq!(s.snapshot(&layer).unwrap(), snap);
    // No leftovers.
    assert_eq!(
        dir_entries(&s.root().join("snapshots")),
        vec![layer.diff_id[7..].to_string()]
    );
}

#[test]
fn snapshot_of_zstd_and_plain_layers() {
    let (_d, s) = store();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(3);
    b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
    let tar_bytes = b.into_inner().unwrap();
    let diff_id = kiln_oci::sha256_hex_digest(&tar_bytes);

    let zst = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    let (digest, size) = s.write_blob(&zst).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: diff_id.clone(),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_ZSTD.into(),
    };
    let snap = s.snapshot(&layer).unwrap();
    assert_eq!(std::fs::read(snap.join("f")).unwrap(), b"abc");
    std::fs::remove_dir_all(&snap).unwrap();

    let (digest, size) = s.write_blob(&tar_bytes).unwrap();
    let layer = kiln_oci::Layer {
        diff_id,
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    let snap = s.snapshot(&layer).unwrap();
    assert_eq!(std::fs::read(snap.join("f")).unwrap(), b"abc");
}

#[test]
fn snapshot_rejects_wrong_diff_id_and_escapes() {
    let (_d, s) = store();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(3);
    b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
    let tar_bytes = b.into_inner().unwrap();
    let (digest, size) = s.write_blob(&tar_bytes).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: kiln_oci::sha256_hex_digest(b"something else"),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    assert!(matches!(s.snapshot(&layer), Err(Error::BadLayer { .. })));
    assert!(dir_entries(&s.root().join("snapshots")).is_empty());

    // `..` in a name.
    let mut raw = Vec::new();
    {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(1);
        // Bypass the builder's own `..` check by writing the name bytes directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        let mut block = [0u8; 512];
        block[0] = b'x';
        raw.extend_from_slice(&block);
        raw.extend_from_slice(&[0u8; 1024]);
    }
    let (digest, size) = s.write_blob(&raw).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: kiln_oci::sha256_hex_digest(&raw),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    assert!(matches!(s.snapshot(&layer), Err(Error::BadLayer { .. })));
    assert!(!s.root().join("snapshots/escape").exists());

    // A symlink in the layer, then a file "through" it.
    let outside = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "link", outside.path()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(1);
    b.append_data(&mut h, "link/pwned", &b"x"[..]).unwrap();
    let tar_bytes = b.into_inner().unwrap();
    let (digest, size) = s.write_blob(&tar_bytes).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: kiln_oci::sha256_hex_digest(&tar_bytes),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    assert!(matches!(s.snapshot(&layer), Err(Error::BadLayer { .. })));
    assert!(!outside.path().join("pwned").exists());
    assert!(dir_entries(&s.root().join("snapshots")).is_empty());

    // Missing blob.
    let layer = kiln_oci::Layer {
        diff_id: kiln_oci::sha256_hex_digest(b"a"),
        digest: kiln_oci::sha256_hex_digest(b"b"),
        size: 1,
        media_type: kiln_oci::media::OCI_LAYER_GZIP.into(),
    };
    assert!(matches!(s.snapshot(&layer), Err(Error::NotFound(_))));
}

/// Builds the upper dir used by the round-trip test.
fn make_upper(up: &Path) {
    use std::fs;
    fs::create_dir(up.join("etc")).unwrap();
    fs::write(up.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    fs::set_permissions(up.join("etc/passwd"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(up.join("bin")).unwrap();
    fs::write(up.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(up.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(up.join("bin/su"), b"suid").unwrap();
    std::os::unix::fs::chown(up.join("bin/su"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(up.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("tool", up.join("bin/sym")).unwrap();
    fs::write(up.join("bin/a"), b"linked").unwrap();
    fs::hard_link(up.join("bin/a"), up.join("bin/b")).unwrap();
    fs::create_dir(up.join("empty")).unwrap();
    // Whiteout of a lower file.
    nix::sys::stat::mknod(
        &up.join("etc/gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    // Opaque dir with one file.
    fs::create_dir(up.join("opq")).unwrap();
    xattr::set(up.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(up.join("opq/new"), b"n").unwrap();
    // A user xattr is kept, an overlay one is not.
    xattr::set(up.join("etc/passwd"), "user.note", b"hi").unwrap();
    xattr::set(up.join("etc/passwd"), "trusted.overlay.origin", b"zz").unwrap();
    // A long name.
    let long = "l".repeat(200);
    fs::write(up.join(&long), b"long").unwrap();
    fs::set_permissions(up.join(&long), fs::Permissions::from_mode(0o644)).unwrap();
    // A fifo.
    nix::unistd::mkfifo(
        &up.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::set_permissions(up.join("fifo"), fs::Permissions::from_mode(0o640)).unwrap();
}

#[test]
fn diff_round_trip() {
    if !is_root() {
        return;
    }
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    make_upper(up.path());
    let layer = s.diff_to_layer(up.path()).unwrap().unwrap();
    assert_eq!(layer.media_type, kiln_oci::media::OCI_LAYER_GZIP);
    assert_eq!(layer.size, s.blob_size(&layer.digest).unwrap());

    let (order, m) = read_layer(&s, &layer);
    let long = "l".repeat(200);
    let mut expect_order = vec![
        "bin/",
        "bin/a",
        "bin/b",
        "bin/su",
        "bin/sym",
        "bin/tool",
        "empty/",
        "etc/",
        "etc/.wh.gone",
        "etc/passwd",
        "fifo",
    ];
    expect_order.push(&long);
    expect_order.extend(["opq/", "opq/.wh..wh..opq", "opq/new"]);
    assert_eq!(order, expect_order);

    use tar::EntryType as T;
    assert_eq!(m["etc/"].ty, T::Directory);
    assert_eq!(m["etc/passwd"].mode, 0o644);
    assert_eq!(m["etc/passwd"].data, b"root:x:0:0\n");
    assert_eq!(
        m["etc/passwd"].xattrs,
        vec![("SCHILY.xattr.user.note".to_string(), b"hi".to_vec())]
    );
    assert_eq!(m["bin/tool"].mode, 0o755);
    assert_eq!(m["bin/su"].mode, 0o4755);
    assert_eq!(m["bin/su"].uid, 1000);
    assert_eq!(m["bin/sym"].ty, T::Symlink);
    assert_eq!(m["bin/sym"].link.as_deref(), Some("tool"));
    assert_eq!(m["bin/a"].ty, T::Regular);
    assert_eq!(m["bin/b"].ty, T::Link);
    assert_eq!(m["bin/b"].link.as_deref(), Some("bin/a"));
    assert_eq!(m["etc/.wh.gone"].ty, T::Regular);
    assert!(m["etc/.wh.gone"].data.is_empty());
    assert_eq!(m["opq/.wh..wh..opq"].ty, T::Regular);
    assert!(m["opq/"].xattrs.is_empty(), "overlay xattrs must not leak");
    assert_eq!(m["fifo"].ty, T::Fifo);
    assert_eq!(m[&long].data, b"long");

    // Same upper → same layer (deterministic).
    let again = s.diff_to_layer(up.path()).unwrap().unwrap();
    assert_eq!(again, layer);

    // Back to a snapshot.
    let snap = s.snapshot(&layer).unwrap();
    let md = std::fs::symlink_metadata(snap.join("etc/gone")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    assert!(!snap.join("etc/.wh.gone").exists());
    assert_eq!(
        xattr::get(snap.join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!snap.join("opq/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(snap.join("opq/new")).unwrap(), b"n");
    let su = std::fs::metadata(snap.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_link(snap.join("bin/sym")).unwrap(),
        Path::new("tool")
    );
    let a = std::fs::metadata(snap.join("bin/a")).unwrap();
    let b = std::fs::metadata(snap.join("bin/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert!(snap.join("empty").is_dir());
    assert_eq!(
        xattr::get(snap.join("etc/passwd"), "user.note").unwrap(),
        Some(b"hi".to_vec())
    );
    assert_eq!(
        xattr::get(snap.join("etc/passwd"), "trusted.overlay.origin").unwrap(),
        None
    );
    let fifo = std::fs::symlink_metadata(snap.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read(snap.join(&long)).unwrap(), b"long");
    // Directory mtimes survive their contents being written.
    let up_etc = std::fs::metadata(up.path().join("etc")).unwrap();
    let snap_etc = std::fs::metadata(snap.join("etc")).unwrap();
    assert_eq!(up_etc.mtime(), snap_etc.mtime());

    // And the snapshot, diffed again, gives the same layer.
    let again = s.diff_to_layer(&snap).unwrap().unwrap();
    assert_eq!(again.diff_id, layer.diff_id);
}

#[test]
fn real_overlay_diff() {
    if !is_root() {
        return;
    }
    let (_d, s) = store();
    // Base layer: keep, deleted, dir/inner.
    let base = s.temp_dir("base-").unwrap();
    std::fs::write(base.path().join("keep"), b"k").unwrap();
    std::fs::write(base.path().join("deleted"), b"d").unwrap();
    std::fs::create_dir(base.path().join("dir")).unwrap();
    std::fs::write(base.path().join("dir/inner"), b"i").unwrap();
    let base_layer = s.diff_to_layer(base.path()).unwrap().unwrap();
    let lower = s.snapshot(&base_layer).unwrap();

    let work = s.temp_dir("ovl-").unwrap();
    let upper = work.path().join("upper");
    let wdir = work.path().join("work");
    let merged = work.path().join("merged");
    for d in [&upper, &wdir, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        wdir.display()
    );
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    ) {
        kiln_testutil::skip(format_args!("cannot mount overlay: {e}"));
        return;
    }
    let changed = (|| -> std::io::Result<()> {
        assert_eq!(std::fs::read(merged.join("keep"))?, b"k");
        std::fs::remove_file(merged.join("deleted"))?;
        std::fs::write(merged.join("added"), b"new")?;
        // Replace a lower dir wholesale: overlay makes it opaque.
        std::fs::remove_dir_all(merged.join("dir"))?;
        std::fs::create_dir(merged.join("dir"))?;
        std::fs::write(merged.join("dir/fresh"), b"f")?;
        Ok(())
    })();
    nix::mount::umount2(&merged, nix::mount::MntFlags::empty()).unwrap();
    changed.unwrap();

    let layer = s.diff_to_layer(&upper).unwrap().unwrap();
    let (order, m) = read_layer(&s, &layer);
    assert!(order.contains(&".wh.deleted".to_string()), "{order:?}");
    assert_eq!(m["added"].data, b"new");
    assert!(order.contains(&"dir/.wh..wh..opq".to_string()), "{order:?}");
    assert_eq!(m["dir/fresh"].data, b"f");
    assert!(!order.iter().any(|n| n.contains("keep")), "{order:?}");

    // Stack the new layer on the base again: the result shows the changes.
    let top = s.snapshot(&layer).unwrap();
    let merged2 = work.path().join("merged2");
    std::fs::create_dir(&merged2).unwrap();
    let opts = format!("lowerdir={}:{}", top.display(), lower.display());
    nix::mount::mount(
        Some("overlay"),
        &merged2,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .unwrap();
    let seen = (
        dir_entries(&merged2),
        dir_entries(&merged2.join("dir")),
        std::fs::read(merged2.join("added")).ok(),
    );
    nix::mount::umount2(&merged2, nix::mount::MntFlags::empty()).unwrap();
    assert_eq!(seen.0, vec!["added", "dir", "keep"]);
    assert_eq!(seen.1, vec!["fresh"]);
    assert_eq!(seen.2.as_deref(), Some(&b"new"[..]));
}

#[test]
fn many_openers_of_a_fresh_root() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let root = root.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let s = Store::open(&root).unwrap();
                    s.cache_put(&format!("k{t}"), b"v").unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = Store::open(&root).unwrap();
        for t in 0..8 {
            assert!(s.cache_get(&format!("k{t}")).unwrap().is_some());
        }
    }
}

#[test]
fn system_tar_reads_our_layers() {
    if !is_root() {
        return;
    }
    let Ok(out) = std::process::Command::new("tar").arg("--version").output() else {
        kiln_testutil::skip("no tar binary");
        return;
    };
    if !out.status.success() {
        kiln_testutil::skip("no usable tar binary");
        return;
    }
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    make_upper(up.path());
    let layer = s.diff_to_layer(up.path()).unwrap().unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(s.blob_path(&layer.digest))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert!(names.contains(&"etc/.wh.gone"), "{names:?}");
    assert!(names.contains(&"opq/.wh..wh..opq"), "{names:?}");
    assert!(names.contains(&"l".repeat(200).as_str()), "{names:?}");
    // And it extracts (hard links, long names and all) without complaint.
    let x = s.temp_dir("x-").unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(s.blob_path(&layer.digest))
        .arg("-C")
        .arg(x.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = std::fs::metadata(x.path().join("bin/a")).unwrap();
    let b = std::fs::metadata(x.path().join("bin/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn temps_of_dead_processes_go_at_once() {
    let (_d, s) = store();
    let root = s.root().to_path_buf();
    // pid 0x7fffffff does not exist; our own pid does.
    let dead = root.join("ingest/p2147483646-0000");
    let ours = root.join(format!("ingest/p{}-0000", std::process::id()));
    let dead_tmp = root.join("tmp/p2147483646-exec-x");
    let dead_snap = root.join("snapshots/.tmp-p2147483646-y");
    std::fs::write(&dead, b"x").unwrap();
    std::fs::write(&ours, b"x").unwrap();
    std::fs::create_dir(&dead_tmp).unwrap();
    std::fs::create_dir(&dead_snap).unwrap();
    drop(s);
    let _s = Store::open(&root).unwrap();
    assert!(!dead.exists());
    assert!(!dead_tmp.exists());
    assert!(!dead_snap.exists());
    assert!(ours.exists());
}

#[test]
fn stat_cache_round_trip_and_gc_listing() {
    let (_d, s) = store();
    let f = s.root().join("VERSION");
    let md = std::fs::symlink_metadata(&f).unwrap();
    let e = StatEntry::new(&md, [3; 32]);
    s.stat_cache_put_many("/ctx", &[("a".into(), e.clone())])
        .unwrap();
    let m = s.stat_cache_get_many("/ctx").unwrap();
    assert_eq!(m.get("a"), Some(&e));
    assert!(s.stat_cache_get_many("/other").unwrap().is_empty());
    // Just hashed: racy, not trusted.
    assert!(!e.matches(&md));
    let old = StatEntry {
        recorded_ns: e.recorded_ns + 5_000_000_000,
        ..e
    };
    assert!(old.matches(&md));
    s.cache_put("k", b"{}").unwrap();
    assert_eq!(s.cache_records().unwrap().len(), 1);
    s.cache_remove(&["k".to_string()]).unwrap();
    assert!(s.cache_records().unwrap().is_empty());
    let (digest, _) = s.write_blob(b"hello").unwrap();
    assert!(s.list_blobs().unwrap().iter().any(|(d, _)| *d == digest));
    s.remove_blobs(std::slice::from_ref(&digest)).unwrap();
    assert!(!s.has_blob(&digest));
}

#[test]
fn commit_is_lazy_and_compression_happens_once_per_type() {
    if !is_root() {
        return;
    }
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    make_upper(up.path());
    let layer = s.commit_upper(up.path()).unwrap().unwrap();
    assert_eq!(layer.digest, layer.diff_id);
    assert_eq!(layer.media_type, kiln_oci::media::OCI_LAYER_TAR);
    assert!(!up.path().exists(), "the upper dir became the snapshot");
    assert_eq!(s.list_blobs().unwrap(), vec![], "commit wrote no blob");
    assert!(s.layer_available(&layer));
    assert!(!s.has_blob(&layer.digest));

    // The eager path over the snapshot gives the same diff id (and records its blob).
    let eager = s
        .diff_to_layer(&s.snapshot(&layer).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(eager.diff_id, layer.diff_id);
    let blobs_before = s.list_blobs().unwrap();

    // The eager blob is already recorded for this diff id: reused, not remade.
    let gz = s.compressed_layer(&layer, Compression::Gzip).unwrap();
    assert_eq!(gz, eager);
    assert_eq!(s.list_blobs().unwrap(), blobs_before);

    // zstd: made once from the snapshot, then found again.
    let zst = s.compressed_layer(&layer, Compression::Zstd).unwrap();
    assert_eq!(zst.media_type, kiln_oci::media::OCI_LAYER_ZSTD);
    assert_eq!(zst.diff_id, layer.diff_id);
    let f = s.open_blob(&zst.digest).unwrap();
    let mut tar = Vec::new();
    zstd::Decoder::new(f)
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(kiln_oci::sha256_hex_digest(&tar), layer.diff_id);
    assert_eq!(tar.len() as u64, layer.size);
    let n = s.list_blobs().unwrap().len();
    assert_eq!(s.compressed_layer(&layer, Compression::Zstd).unwrap(), zst);
    assert_eq!(
        s.list_blobs().unwrap().len(),
        n,
        "second zstd request reused the blob"
    );

    // Uncompressed: the blob's digest is the diff id.
    let plain = s
        .compressed_layer(&layer, Compression::Uncompressed)
        .unwrap();
    assert_eq!(plain.digest, layer.diff_id);
    assert!(s.has_blob(&plain.digest));
    let mut again = Vec::new();
    s.layer_tar(&layer)
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    assert_eq!(again, tar);
}

#[test]
fn a_changed_snapshot_is_refused_not_exported() {
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    std::fs::write(up.path().join("f"), b"one").unwrap();
    let layer = s.commit_upper(up.path()).unwrap().unwrap();
    let snap = s.snapshot(&layer).unwrap();
    std::fs::write(snap.join("f"), b"two").unwrap();
    let err = s.compressed_layer(&layer, Compression::Gzip).unwrap_err();
    assert!(err.to_string().contains("content changed"), "{err}");
    assert_eq!(s.list_blobs().unwrap(), vec![], "no blob left behind");
    // Gone snapshot: not available, and asking for a blob says what is missing.
    s.remove_snapshot(&layer.diff_id).unwrap();
    assert!(!s.layer_available(&layer));
    assert!(matches!(
        s.compressed_layer(&layer, Compression::Gzip),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn commit_file_moves_a_checked_file_into_the_content_store() {
    let (_d, s) = store();
    let scratch = s.temp_dir("t").unwrap();
    let f = scratch.path().join("spooled");
    std::fs::write(&f, b"blob bytes").unwrap();
    let wrong = kiln_oci::sha256_hex_digest(b"other");
    assert!(matches!(
        s.commit_file(&f, &wrong),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(!s.has_blob(&wrong));
    let digest = kiln_oci::sha256_hex_digest(b"blob bytes");
    assert_eq!(s.commit_file(&f, &digest).unwrap(), 10);
    assert!(s.has_blob(&digest) && !f.exists());
    // Already present: the spooled copy is dropped, the blob stays.
    std::fs::write(&f, b"blob bytes").unwrap();
    assert_eq!(s.commit_file(&f, &digest).unwrap(), 10);
    assert!(!f.exists());
    assert_eq!(s.read_blob(&digest).unwrap(), b"blob bytes");
}

/// A loaded uncompressed layer (`digest == diff_id`, a plain tar blob) whose snapshot is
/// extracted: its tar comes from the blob, byte for byte, not regenerated from the
/// snapshot (which would be kiln's tar of the same files, with another diff id).
#[test]
fn layer_tar_prefers_the_layers_own_uncompressed_blob() {
    if !is_root() {
        return;
    }
    let (_d, s) = store();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(3);
    h.set_mtime(12345);
    b.append_data(&mut h, "./f", &b"abc"[..]).unwrap();
    let tar_bytes = b.into_inner().unwrap();
    let (digest, size) = s.write_blob(&tar_bytes).unwrap();
    let layer = kiln_oci::Layer {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: kiln_oci::media::OCI_LAYER_TAR.into(),
    };
    s.snapshot(&layer).unwrap();
    let mut out = Vec::new();
    s.layer_tar(&layer).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, tar_bytes);
    let gz = s.compressed_layer(&layer, Compression::Gzip).unwrap();
    assert_eq!(gz.diff_id, layer.diff_id);
}

#[test]
fn diff_to_layer_excluding_leaves_out_mount_points_and_what_is_below() {
    let (_d, s) = store();
    let up = s.temp_dir("upper-").unwrap();
    let p = up.path();
    std::fs::create_dir_all(p.join("etc")).unwrap();
    std::fs::write(p.join("etc/hosts"), "").unwrap();
    std::fs::write(p.join("etc/motd"), "hi").unwrap();
    std::fs::create_dir_all(p.join("data/sub")).unwrap();
    std::fs::write(p.join("data/sub/x"), "volume").unwrap();
    std::fs::write(p.join("database"), "kept: not below /data").unwrap();
    let exclude = ["/etc/hosts".into(), "/data".into()];
    let layer = s.diff_to_layer_excluding(p, &exclude).unwrap().unwrap();
    let (order, _) = read_layer(&s, &layer);
    assert_eq!(order, ["database", "etc/", "etc/motd"]);
    // Nothing left: no layer.
    let up = s.temp_dir("upper-").unwrap();
    std::fs::create_dir_all(up.path().join("proc")).unwrap();
    assert_eq!(
        s.diff_to_layer_excluding(up.path(), &["/proc".into()])
            .unwrap(),
        None
    );
}
