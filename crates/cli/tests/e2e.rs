//! End to end, as a user would: build testdata/hello from a base image in a real registry,
//! run it, rebuild from cache, push it, and read the results back with skopeo and umoci.
//! Needs root and Debian's docker-registry, busybox-static, skopeo and umoci (the README's
//! test command installs them); skipped with a message otherwise.

mod common;
use common::*;
use std::process::Command;

#[test]
fn hello_builds_runs_caches_pushes_and_reads_back() {
    if !can_run(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let reg = Registry::start();
    let seeder = Kiln::new();
    let base = seeder.seed_base(&reg);
    // Build on an empty root, so FROM really pulls the base over plain HTTP.
    let k = Kiln::new();
    let hello = repo_root().join("testdata/hello");
    let base_arg = format!("BASE={base}");
    let out = k.run(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        &base_arg,
        "-t",
        "hello",
        hello.to_str().unwrap(),
    ]);
    let log = stderr(&out);
    assert!(out.status.success(), "build failed:\n{log}");
    assert!(
        log.contains("RUN tr a-z A-Z"),
        "plain progress names the steps:\n{log}"
    );
    assert!(log.contains(" DONE "), "{log}");

    // Run: the image's ENTRYPOINT + CMD, then a command given on the line, exit codes.
    let run = k.run(&["run", "--rm", "hello"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(
        stdout(&run),
        "hello from kiln, world!\nKILN BUILDS IMAGES WITHOUT A DAEMON\n"
    );
    assert_eq!(k.ok(&["run", "--rm", "hello", "echo", "hi"]), "hi\n");
    let code = k.run(&["run", "--rm", "hello", "sh", "-c", "exit 7"]);
    assert_eq!(code.status.code(), Some(7));
    assert_eq!(
        k.ok(&[
            "run",
            "--rm",
            "hello",
            "cat",
            "/app/exec.txt",
            "/app/greeting-at-build.txt"
        ]),
        "built by an exec-form RUN\nhello from kiln\n"
    );
    assert!(
        files_below(&k.root.path().join("containers")).is_empty(),
        "--rm removes the container"
    );

    // `kiln pull` into yet another root gets the same image and runs it.
    let k3 = Kiln::new();
    let pulled = k3.ok(&["pull", &base]);
    assert!(pulled.contains("digest: sha256:"), "{pulled}");
    // As `docker pull`, the layers are unpacked then, not by the first run.
    let snapshots = k3.root.path().join("snapshots");
    assert!(
        files_below(&snapshots)
            .iter()
            .any(|s| snapshots.join(s).join("bin/busybox").is_file()),
        "pull leaves no unpacked layer: {:?}",
        files_below(&snapshots)
    );
    assert_eq!(k3.ok(&["pull", "-q", &base]), format!("{base}\n"));
    assert_eq!(k3.ok(&["run", "--rm", &base, "echo", "pulled"]), "pulled\n");
    assert!(k3.ok(&["images"]).contains("busybox"));

    // A second identical build runs nothing and shows every step CACHED.
    let again = k.run(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        &base_arg,
        "-t",
        "hello",
        hello.to_str().unwrap(),
    ]);
    let log2 = stderr(&again);
    assert!(again.status.success(), "{log2}");
    assert!(log2.contains("0 steps run"), "{log2}");
    for step in [
        "RUN tr a-z A-Z",
        "COPY entrypoint.sh",
        "RUN chmod 0755",
        "WORKDIR /src",
    ] {
        let line = log2
            .lines()
            .position(|l| l.contains(step))
            .unwrap_or_else(|| panic!("{step} missing:\n{log2}"));
        assert!(
            log2.lines()
                .nth(line + 1)
                .unwrap_or_default()
                .ends_with("CACHED"),
            "{step} not CACHED:\n{log2}"
        );
    }

    // Push, then skopeo reads the same manifest digest back and copies it to an OCI layout.
    let pushed = format!("{}/hello:1", reg.addr);
    k.ok(&["tag", "hello", &pushed]);
    let push_out = k.ok(&["push", &pushed]);
    let digest = push_out
        .split("digest: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{pushed}"),
        ])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], digest);
    // base + WORKDIR /app + COPY --from + COPY + RUN (the builder stage's layers stay out).
    assert_eq!(info["Layers"].as_array().unwrap().len(), 5, "{info}");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("copied");
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{pushed}"),
        ])
        .arg(format!("oci:{}:hello", layout.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", stderr(&copy));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"], digest,
        "skopeo kept our manifest as it is"
    );

    // -o type=oci: umoci unpacks it into the expected files.
    let oci_tar = tmp.path().join("hello-oci.tar");
    k.ok(&[
        "build",
        "--progress",
        "quiet",
        "--build-arg",
        &base_arg,
        "-t",
        "hello",
        "-o",
        &format!("type=oci,dest={}", oci_tar.display()),
        hello.to_str().unwrap(),
    ]);
    let oci_dir = tmp.path().join("oci");
    std::fs::create_dir(&oci_dir).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&oci_tar)
        .arg("-C")
        .arg(&oci_dir)
        .status()
        .unwrap()
        .success());
    let bundle = tmp.path().join("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", oci_dir.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "umoci: {}", stderr(&unpack));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/shout.txt")).unwrap(),
        "KILN BUILDS IMAGES WITHOUT A DAEMON\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(rootfs.join("usr/local/bin/hello"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755);
    assert!(
        rootfs.join("bin/busybox").exists(),
        "the base layer is in the image"
    );
    assert!(!rootfs.join("app/NOTES.md").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/usr/local/bin/hello", "world"])
    );
}

#[test]
fn a_failing_run_fails_the_build_and_leaves_nothing_behind() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let reg = Registry::start();
    let k = Kiln::new();
    let base = k.seed_base(&reg);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo first > /first\nRUN echo about-to-fail-marker && exit 3\nRUN echo never\n"),
    )
    .unwrap();
    let blobs_before = files_below(&k.root.path().join("blobs/sha256")).len();
    let snapshots = |k: &Kiln| {
        std::fs::read_dir(k.root.path().join("snapshots"))
            .unwrap()
            .count()
    };
    let snapshots_before = snapshots(&k);
    let out = k.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "broken",
        ctx.path().to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:3"), "names the line:\n{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("about-to-fail-marker"),
        "shows the output tail:\n{err}"
    );
    assert!(!err.contains("never"), "{err}");
    let images = k.ok(&["images"]);
    assert!(!images.contains("broken"), "no image on failure:\n{images}");
    assert!(
        files_below(&k.root.path().join("ingest")).is_empty(),
        "no half-written blob"
    );
    assert!(
        files_below(&k.root.path().join("tmp")).is_empty(),
        "no leftover scratch dirs"
    );
    // Only the layer of the step that succeeded was added (as a snapshot: layers are
    // compressed on export; the other new snapshot is the base image's, extracted), and no
    // image config or manifest.
    assert_eq!(
        files_below(&k.root.path().join("blobs/sha256")).len(),
        blobs_before
    );
    assert_eq!(snapshots(&k), snapshots_before + 2);
}

#[test]
fn bad_input_gets_one_clear_line_and_the_right_exit_code() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let k = Kiln::new();
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path().to_str().unwrap();

    let o = k.run(&["build", dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("failed to read dockerfile"),
        "{}",
        stderr(&o)
    );

    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nFORM x\n").unwrap();
    let o = k.run(&["build", dir]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("Dockerfile:2") && e.contains("FORM") && e.contains("did you mean FROM"),
        "{e}"
    );

    let reg = Registry::start();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/no-such-image\n", reg.addr),
    )
    .unwrap();
    let o = k.run(&["build", dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = k.run(&["pull", &format!("{dead}/x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach registry"),
        "{}",
        stderr(&o)
    );

    let o = k.run(&["run", "--rm", "nothing-here"]);
    assert_ne!(o.status.code(), Some(0));
    let o = k.run(&["build", "--no-such-flag", dir]);
    assert_eq!(o.status.code(), Some(2));
    for o in [
        k.run(&["push", "Bad Name"]),
        k.run(&["build", "-o", "type=nope,dest=x", dir]),
    ] {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}
