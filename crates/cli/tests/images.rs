//! Images named and listed the way docker users name and read them (issue 16): IDs
//! everywhere an image is named, `image …` spellings, `images` columns and filters, dangling
//! images after a retag, `rmi` of an image a container uses, `version` and `info`. Needs
//! root and Debian's busybox-static (docker-registry for the pull by digest); skipped with a
//! message otherwise.

mod common;
use common::*;
use sha2::Digest;
use std::path::Path;
use std::process::Command;

/// The rows of `kiln images ARGS` as whitespace-split columns (header left out).
fn rows(k: &Kiln, args: &[&str]) -> Vec<Vec<String>> {
    let mut a = vec!["images"];
    a.extend_from_slice(args);
    k.ok(&a)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// `REPOSITORY:TAG` of each row.
fn names(k: &Kiln, args: &[&str]) -> Vec<String> {
    rows(k, args)
        .iter()
        .map(|r| format!("{}:{}", r[0], r[1]))
        .collect()
}

/// The SIZE column of a row (the last one).
fn size(row: &[String]) -> &str {
    row.last().unwrap()
}

/// The image ID (`sha256:…`) of `name`, from `inspect`.
fn id_of(k: &Kiln, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&k.ok(&["inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// A docker archive (`docker save`'s format, no OCI index) of one image named `name`,
/// created `created`, labelled `tier=base`: one layer of a 1000-byte file and a symlink to
/// `abcdefghij` (10 bytes), so 1010 bytes unpacked.
fn archive(dir: &Path, name: &str, created: &str) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("file"), vec![b'x'; 1000]).unwrap();
    std::os::unix::fs::symlink("abcdefghij", root.join("link")).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(out.join("layer.tar"))
        .args(["file", "link"])
        .status()
        .unwrap();
    assert!(st.success());
    let layer = std::fs::read(out.join("layer.tar")).unwrap();
    let diff_id = format!("sha256:{}", hex(&sha2::Sha256::digest(&layer)));
    let config = serde_json::json!({
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Labels": {"tier": "base"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]);
    std::fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();
    let tar = dir.join(format!("{}.tar", name.replace([':', '/'], "_")));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-cf")
        .arg(&tar)
        .args(["manifest.json", "config.json", "layer.tar"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    tar
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn an_image_id_names_the_image_everywhere_and_run_never_pulls_it() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let id = id_of(k, "busybox");
    let short = &id[7..19];
    assert_eq!(k.ok(&["images", "-q"]).trim(), short);
    // run and create by short ID, full ID, `sha256:` ID: found here, never pulled.
    for name in [short, &id[7..], &id] {
        let out = k.run(&["run", "--rm", name, "echo", "hi"]);
        assert_eq!(stdout(&out), "hi\n", "{name}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("Unable to find image"),
            "{}",
            stderr(&out)
        );
    }
    let created = k.ok(&["create", "--name", "byid", short]);
    assert_eq!(created.trim().len(), 64, "{created}");
    // inspect, history, tag, save by ID; inspect by name@digest.
    assert_eq!(id_of(k, short), id);
    assert_eq!(id_of(k, &id), id);
    let v: serde_json::Value = serde_json::from_str(&k.ok(&["image", "inspect", short])).unwrap();
    assert_eq!(v[0]["RepoTags"], serde_json::json!(["busybox:latest"]));
    let manifest = v[0]["ManifestDigest"].as_str().unwrap().to_string();
    assert_eq!(id_of(k, &format!("busybox@{manifest}")), id);
    assert!(k.ok(&["history", short]).starts_with("CREATED"));
    k.ok(&["tag", short, "copy:1"]);
    assert_eq!(id_of(k, "copy:1"), id);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("s.tar");
    k.ok(&["image", "save", "-o", saved.to_str().unwrap(), short]);
    assert!(saved.metadata().unwrap().len() > 1000);
    // An ID no image has: docker's words, and no registry asked.
    let out = k.run(&["inspect", "--type", "image", "deadbeef0000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: no such image: deadbeef0000:latest\n");
    let missing = format!("sha256:{}", "0".repeat(64));
    let out = k.run(&["run", "--rm", &missing]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stderr(&out), format!("error: no such image: {missing}\n"));
}

#[test]
fn images_shows_the_configs_creation_time_and_the_unpacked_size_in_every_store() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kiln::new();
    k.ok(&[
        "load",
        "-i",
        archive(dir.path(), "old:1", "2001-01-01T00:00:00Z")
            .to_str()
            .unwrap(),
    ]);
    let row = &rows(&k, &[])[0];
    assert_eq!(row[..2], ["old", "1"]);
    let line = k.ok(&["images"]);
    // The config's 2001, not the load a moment ago.
    let years: u32 = row[row.len() - 4].parse().unwrap();
    assert!(
        years >= 25 && row[row.len() - 3..row.len() - 1] == ["years", "ago"],
        "{line}"
    );
    assert_eq!(size(row), "1.01kB", "1000 + 10 bytes: {line}");
    // A tag does not make the image newer.
    k.ok(&["image", "tag", "old:1", "old:2"]);
    let all = k.ok(&["images"]);
    assert_eq!(all.matches("years ago").count(), 2, "{all}");
    // The same image saved and loaded elsewhere: the same size.
    let saved = dir.path().join("again.tar");
    k.ok(&["save", "-o", saved.to_str().unwrap(), "old:1"]);
    let other = Kiln::new();
    other.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(size(&rows(&other, &[])[0]), "1.01kB");
}

#[test]
fn images_filters_and_the_image_spellings_read_as_dockers() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kiln::new();
    k.ok(&[
        "load",
        "-i",
        archive(dir.path(), "old:1", "2001-01-01T00:00:00Z")
            .to_str()
            .unwrap(),
    ]);
    k.seed_local_base();
    assert_eq!(k.ok(&["image", "ls"]), k.ok(&["images"]));
    assert_eq!(k.ok(&["image", "list", "-a"]), k.ok(&["images"]));
    assert_eq!(names(&k, &[]), ["busybox:latest", "old:1"], "newest first");
    assert_eq!(names(&k, &["busybox"]), ["busybox:latest"]);
    assert_eq!(names(&k, &["old:1"]), ["old:1"]);
    assert_eq!(names(&k, &["old:2"]), Vec::<String>::new());
    assert_eq!(names(&k, &["--filter", "reference=o*"]), ["old:1"]);
    assert_eq!(names(&k, &["--filter", "label=tier=base"]), ["old:1"]);
    assert_eq!(names(&k, &["--filter", "label=tier"]), ["old:1"]);
    assert_eq!(names(&k, &["--filter", "since=old:1"]), ["busybox:latest"]);
    assert_eq!(names(&k, &["--filter", "before=busybox"]), ["old:1"]);
    assert_eq!(names(&k, &["--filter", "dangling=false"]).len(), 2);
    assert!(names(&k, &["--filter", "dangling=true"]).is_empty());
    let digests = k.ok(&["images", "--digests"]);
    assert!(
        digests.lines().next().unwrap().contains(" DIGEST "),
        "{digests}"
    );
    let full = k.ok(&["images", "-q", "--no-trunc"]);
    assert!(
        full.lines()
            .all(|l| l.len() == 71 && l.starts_with("sha256:")),
        "{full}"
    );
    let out = k.run(&["images", "--filter", "dangling=maybe"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: invalid filter 'dangling=maybe'\n");
    let out = k.run(&["images", "--filter", "colour=red"]);
    assert_eq!(stderr(&out), "error: invalid filter 'colour'\n");
}

#[test]
fn a_retagged_image_is_dangling_until_image_prune_reclaims_it() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kiln::new();
    k.ok(&[
        "load",
        "-i",
        archive(dir.path(), "app:1", "2001-01-01T00:00:00Z")
            .to_str()
            .unwrap(),
    ]);
    let old = id_of(&k, "app:1");
    let tar = dir.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar);
    k.ok(&["image", "import", tar.to_str().unwrap(), "app:1"]);
    assert_eq!(names(&k, &[]), ["app:1", "<none>:<none>"]);
    let dangling = rows(&k, &["--filter", "dangling=true"]);
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0][2], old[7..19]);
    // Still an image: by ID.
    assert_eq!(id_of(&k, &old[7..19]), old);
    let out = k.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert_eq!(names(&k, &[]), ["app:1"]);
}

#[test]
fn rmi_refuses_an_image_a_container_uses_unless_forced() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let id = id_of(k, "busybox");
    let short = &id[7..19];
    let c = k.ok(&["create", "busybox", "true"]);
    let out = k.run(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: conflict: unable to remove repository reference \"busybox\" (must force) - container {} is using its referenced image {short}\n",
            &c.trim()[..12]
        )
    );
    let out = k.run(&["image", "rm", short]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}\n",
            &c.trim()[..12]
        )
    );
    // -f untags; the container's image stays, dangling, and it still starts.
    assert_eq!(
        k.ok(&["rmi", "-f", "busybox"]),
        "Untagged: busybox:latest\n"
    );
    assert_eq!(names(k, &[]), ["<none>:<none>"]);
    k.ok(&["start", c.trim()]);
    // An unused image goes, with its ID line.
    k.ok(&["tag", short, "spare:1"]);
    k.ok(&["tag", short, "spare:2"]);
    let out = k.run(&["rmi", short]);
    assert!(
        stderr(&out).contains("image is referenced in multiple repositories"),
        "{}",
        stderr(&out)
    );
    assert_eq!(k.ok(&["rmi", "spare:2"]), "Untagged: spare:2\n");
    // The container's image by its new last name: still refused.
    let out = k.run(&["rmi", "spare:1"]);
    assert!(
        stderr(&out).contains("(must force) - container"),
        "{}",
        stderr(&out)
    );
    // Once the container is gone the image goes, with its ID line; a missing name beside
    // it fails alone.
    k.ok(&["rm", c.trim()]);
    let out = k.run(&["rmi", "nothere", "spare:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: no such image: nothere:latest\n");
    assert_eq!(stdout(&out), format!("Untagged: spare:1\nDeleted: {id}\n"));
    assert!(names(k, &[]).is_empty());
}

#[test]
fn a_pull_by_digest_of_a_tagged_repository_adds_no_row() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let reg = Registry::start();
    let k = Kiln::new();
    let name = k.seed_base(&reg);
    let v: serde_json::Value = serde_json::from_str(&k.ok(&["inspect", &name])).unwrap();
    let digest = v[0]["ManifestDigest"].as_str().unwrap().to_string();
    let repo = name.trim_end_matches(":latest");
    k.ok(&["image", "pull", &format!("{repo}@{digest}")]);
    assert_eq!(names(&k, &[]), [name.as_str()]);
    let row = &rows(&k, &["--digests"])[0];
    assert_eq!(row[2], digest, "the digest shows with --digests");
    // Untagged, the digest is the name left: one `<none>` tag row.
    k.ok(&["rmi", &name]);
    assert_eq!(names(&k, &[]), [format!("{repo}:<none>")]);
}

#[test]
fn version_and_info_answer_in_dockers_layout() {
    if !can_run(&[]) {
        return;
    }
    let k = Kiln::new();
    let v = k.ok(&["version"]);
    assert!(v.starts_with("Client: kiln\n Version:"), "{v}");
    assert!(
        v.contains("\nServer: kiln (daemonless)\n Engine:\n  Version:"),
        "{v}"
    );
    k.seed_local_base();
    k.ok(&["create", "busybox", "true"]);
    let info = k.ok(&["info"]);
    for want in [
        "\nServer:\n Containers: 1\n  Running: 0\n  Paused: 0\n  Stopped: 1\n Images: 1\n",
        "\n Server Version: ",
        "\n Storage Driver: overlayfs\n",
        "\n Cgroup Driver: cgroupfs\n",
        "\n Cgroup Version: ",
        "\n Kernel Version: ",
        "\n Operating System: ",
        "\n Architecture: ",
        "\n CPUs: ",
        "\n Total Memory: ",
        &format!("\n Docker Root Dir: {}\n", k.root.path().display()),
    ] {
        assert!(info.contains(want), "{want:?} in\n{info}");
    }
}
