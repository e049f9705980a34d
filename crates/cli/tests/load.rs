//! `kiln load` through the real binary: archives written by `kiln save`, by
//! `kiln build -o type=oci` and by skopeo, from a file or stdin, and archives that must be
//! refused. Needs root and Debian's busybox-static (skopeo for one test); skipped with a
//! message otherwise.

mod common;
use common::*;
use std::path::Path;
use std::process::Stdio;

/// A root with `app:1` built FROM the local busybox base, and the context dir.
fn built_app() -> Option<(Kiln, tempfile::TempDir)> {
    let (k, ctx) = local_project(&[])?;
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\nRUN echo loaded > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    );
    let (ok, log) = k.build(ctx.path(), &["-t", "app:1"]);
    assert!(ok, "{log}");
    Some((k, ctx))
}

/// `kiln images -q` as a list of IDs.
fn ids(k: &Kiln) -> Vec<String> {
    k.ok(&["images", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn blob_count(k: &Kiln) -> usize {
    std::fs::read_dir(k.root.path().join("blobs/sha256")).map_or(0, std::iter::Iterator::count)
}

#[test]
fn saved_image_loads_into_an_empty_root_runs_builds_and_saves_again() {
    let Some((a, ctx)) = built_app() else { return };
    let archive = ctx.path().join("app.tar");
    a.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    let id = a.ok(&["inspect", "app:1"]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["Id"].as_str().unwrap().to_string();

    let b = Kiln::new();
    let out = b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: app:1\n");
    // The config is kept byte for byte: the image ID survives the round trip.
    let inspected: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "app:1"])).unwrap();
    assert_eq!(inspected[0]["Id"], id.as_str());
    assert_eq!(
        a.ok(&["run", "--rm", "app:1"]),
        b.ok(&["run", "--rm", "app:1"])
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "loaded\n");

    // A loaded image is a base for builds, and saves again.
    let ctx2 = tempfile::tempdir().unwrap();
    write(
        ctx2.path(),
        "Dockerfile",
        "FROM app:1\nRUN cat /greeting /greeting > /twice\nCMD [\"cat\", \"/twice\"]\n",
    );
    let (ok, log) = b.build(ctx2.path(), &["-t", "app:2"]);
    assert!(ok, "{log}");
    assert_eq!(b.ok(&["run", "--rm", "app:2"]), "loaded\nloaded\n");
    let again = ctx2.path().join("again.tar");
    b.ok(&["save", "-o", again.to_str().unwrap(), "app:1"]);
    let c = Kiln::new();
    c.ok(&["load", "-i", again.to_str().unwrap()]);
    assert_eq!(ids(&c), [b.ok(&["images", "-q", "app:1"]).trim()]);
}

#[test]
fn load_reads_stdin_and_quiet_prints_only_the_names() {
    let Some((a, ctx)) = built_app() else { return };
    let archive = ctx.path().join("app.tar");
    a.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    let b = Kiln::new();
    let out = b
        .cmd()
        .args(["load", "-q"])
        .stdin(Stdio::from(std::fs::File::open(&archive).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Loaded image: app:1\n");
    assert_eq!(stderr(&out), "", "-q prints no layer lines");
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "loaded\n");
    // Without -q each layer is reported on stderr.
    let c = Kiln::new();
    let out = c
        .cmd()
        .arg("load")
        .stdin(Stdio::from(std::fs::File::open(&archive).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stderr(&out).matches("Loaded layer").count(), 2);
}

#[test]
fn garbage_truncated_and_manifestless_archives_fail_cleanly() {
    let Some((a, ctx)) = built_app() else { return };
    let archive = ctx.path().join("app.tar");
    a.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    let bytes = std::fs::read(&archive).unwrap();

    let garbage = ctx.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar archive at all\n".repeat(40)).unwrap();
    let truncated = ctx.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // A well-formed tar with neither manifest.json nor index.json.
    let plain = ctx.path().join("plain.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(ctx.path())
        .arg("-cf")
        .arg(&plain)
        .arg("Dockerfile")
        .status()
        .unwrap();
    assert!(st.success());

    let b = Kiln::new();
    for (file, says) in [
        (&garbage, "not a tar archive"),
        (&truncated, "truncated"),
        (&plain, "neither manifest.json nor index.json"),
    ] {
        let out = b.run(&["load", "-i", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{file:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
        assert!(ids(&b).is_empty(), "nothing is listed after {file:?}");
        assert_eq!(blob_count(&b), 0, "nothing is stored after {file:?}");
    }
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let Some((a, ctx)) = built_app() else { return };
    let dir = ctx.path().join("layout");
    a.ok(&[
        "save",
        "-o",
        ctx.path().join("app.tar").to_str().unwrap(),
        "app:1",
    ]);
    std::fs::create_dir(&dir).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-xf")
        .arg(ctx.path().join("app.tar"))
        .status()
        .unwrap();
    assert!(st.success());
    // Point manifest.json's layers at each other: every blob is intact and named by its
    // digest, but the first layer is not the one the config's first diff id names.
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let layers = m[0]["Layers"].as_array_mut().unwrap();
    layers.reverse();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_file(dir.join("index.json")).unwrap();
    let swapped = ctx.path().join("swapped.tar");
    tar_dir(&dir, &swapped);
    let b = Kiln::new();
    let out = b.run(&["load", "-i", swapped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the config says"), "{}", stderr(&out));
    assert!(ids(&b).is_empty());
}

#[test]
fn an_unnamed_oci_layout_loads_as_an_image_id_that_tag_names() {
    let Some((a, ctx)) = built_app() else { return };
    let oci = ctx.path().join("oci.tar");
    let (ok, log) = a.build(
        ctx.path(),
        &["-o", &format!("type=oci,dest={}", oci.display())],
    );
    assert!(ok, "{log}");
    let b = Kiln::new();
    let out = b.ok(&["load", "-i", oci.to_str().unwrap()]);
    let id = out
        .strip_prefix("Loaded image ID: ")
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let listed = b.ok(&["images"]);
    assert!(
        listed.lines().nth(1).unwrap().starts_with("<none>"),
        "{listed}"
    );
    b.ok(&["tag", &id[7..19], "named:1"]);
    assert_eq!(b.ok(&["run", "--rm", "named:1"]), "loaded\n");
}

/// Writes `dir`'s contents as a tar at `out`.
fn tar_dir(dir: &Path, out: &Path) {
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn loads_a_docker_archive_written_by_skopeo() {
    if which("skopeo").is_none() {
        kiln_testutil::skip("`skopeo` is not installed");
        return;
    }
    let Some((a, ctx)) = built_app() else { return };
    let layout = ctx.path().join("layout");
    let (ok, log) = a.build(
        ctx.path(),
        &[
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    assert!(ok, "{log}");
    let archive = ctx.path().join("skopeo.tar");
    let out = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}", layout.display()))
        .arg(format!(
            "docker-archive:{}:example.test/skopeo/app:v2",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", stderr(&out));
    let b = Kiln::new();
    let out = b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: example.test/skopeo/app:v2\n");
    assert_eq!(
        b.ok(&["run", "--rm", "example.test/skopeo/app:v2"]),
        "loaded\n"
    );
    // skopeo writes the layers uncompressed; saving again compresses them from those
    // blobs (not from the extracted snapshots), and the result loads again.
    let again = ctx.path().join("again.tar");
    b.ok(&[
        "save",
        "-o",
        again.to_str().unwrap(),
        "example.test/skopeo/app:v2",
    ]);
    let c = Kiln::new();
    c.ok(&["load", "-i", again.to_str().unwrap()]);
    assert_eq!(
        c.ok(&["run", "--rm", "example.test/skopeo/app:v2"]),
        "loaded\n"
    );
    assert_eq!(ids(&c), ids(&b));
}

#[test]
fn a_loaded_image_pushes_and_pulls_back() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let Some((a, ctx)) = built_app() else { return };
    let archive = ctx.path().join("app.tar");
    a.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    let registry = Registry::start();
    let b = Kiln::new();
    b.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let remote = format!("{}/loaded/app:1", registry.addr);
    b.ok(&["tag", "app:1", &remote]);
    b.ok(&["push", &remote]);
    let c = Kiln::new();
    c.ok(&["pull", "-q", &remote]);
    assert_eq!(c.ok(&["run", "--rm", &remote]), "loaded\n");
    assert_eq!(ids(&c), ids(&b)[..1].to_vec());
}
