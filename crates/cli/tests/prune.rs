//! `kiln image prune` and `kiln system prune` through the real binary. Needs root and
//! Debian's busybox-static (the base image is imported locally); skipped otherwise.

mod common;
use common::*;

/// `kiln system df --format json`.
fn df(k: &Kiln) -> serde_json::Value {
    serde_json::from_str(&k.ok(&["system", "df", "--format", "json"])).unwrap()
}

/// The `REPOSITORY:TAG` rows of `kiln images`.
fn images(k: &Kiln) -> Vec<String> {
    k.ok(&["images"])
        .lines()
        .skip(1)
        .map(|l| {
            let mut cols = l.split_whitespace();
            format!("{}:{}", cols.next().unwrap(), cols.next().unwrap())
        })
        .collect()
}

fn entries(k: &Kiln, dir: &str) -> usize {
    std::fs::read_dir(k.root.path().join(dir)).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

/// A root with busybox, `app:1` and `other:1` (each with a layer of its own).
fn two_images() -> Option<(Kiln, tempfile::TempDir)> {
    let (k, ctx) = local_project(&[])?;
    for (tag, text) in [("app:1", "app"), ("other:1", "other")] {
        write(
            ctx.path(),
            "Dockerfile",
            &format!("FROM busybox:latest\nRUN echo {text} > /who\nCMD [\"cat\", \"/who\"]\n"),
        );
        let (ok, log) = k.build(ctx.path(), &["-t", tag]);
        assert!(ok, "{log}");
    }
    Some((k, ctx))
}

#[test]
fn image_prune_removes_only_dangling_images() {
    let Some((k, ctx)) = two_images() else { return };
    let out = k.ok(&["image", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    assert_eq!(images(&k).len(), 3);
    // An unnamed image (loaded from an OCI layout without a name) is dangling.
    let oci = ctx.path().join("oci.tar");
    let (ok, log) = k.build(
        ctx.path(),
        &["-o", &format!("type=oci,dest={}", oci.display())],
    );
    assert!(ok, "{log}");
    let fresh = Kiln::new();
    fresh.ok(&["import", "-c", "CMD [\"sh\"]", "/dev/null", "x:1"]);
    let loaded = fresh.ok(&["load", "-i", oci.to_str().unwrap()]);
    let id = loaded.trim().strip_prefix("Loaded image ID: ").unwrap();
    assert!(images(&fresh).contains(&"<none>:<none>".to_string()));
    let out = fresh.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(!out.contains("untagged:"), "{out}");
    assert_eq!(images(&fresh), vec!["x:1".to_string()]);
    assert!(df(&fresh)["images"] == 1);
}

#[test]
fn image_prune_all_keeps_the_image_of_a_stopped_container() {
    let Some((k, _ctx)) = two_images() else {
        return;
    };
    // Not --rm: the container stays, exited.
    assert_eq!(k.ok(&["run", "--name", "keeper", "app:1"]), "app\n");
    let before = df(&k);
    assert_eq!(before["images_active"], 1, "{before}");
    let out = k.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: other:1"), "{out}");
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert!(!out.contains("app:1"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(images(&k), vec!["app:1".to_string()]);
    let after = df(&k);
    assert_eq!(before["images"], 3);
    assert_eq!(after["images"], 1);
    assert!(
        after["total"].as_u64() < before["total"].as_u64(),
        "{before} → {after}"
    );
    // What app:1 needs is all still there.
    assert_eq!(k.ok(&["run", "--rm", "app:1"]), "app\n");
}

#[test]
fn prune_without_force_on_a_non_terminal_stdin_asks_for_f() {
    let Some((k, _ctx)) = two_images() else {
        return;
    };
    for args in [
        &["image", "prune", "-a"][..],
        &["system", "prune", "-a"][..],
    ] {
        let out = k.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
        assert!(stderr(&out).contains("WARNING!"), "{}", stderr(&out));
    }
    assert_eq!(images(&k).len(), 3, "nothing was removed");
}

#[test]
fn system_prune_all_empties_the_store_which_builds_again() {
    let Some((k, ctx)) = two_images() else { return };
    k.ok(&["run", "--name", "gone", "app:1"]);
    let out = k.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains("untagged: app:1"), "{out}");
    assert!(out.contains("build cache records"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(k.ok(&["ps", "-a"]).lines().count(), 1, "only the header");
    assert!(images(&k).is_empty());
    let u = df(&k);
    assert_eq!(u["images"], 0);
    assert_eq!(u["build_cache"], 0);
    assert_eq!(entries(&k, "blobs/sha256"), 0);
    assert_eq!(entries(&k, "snapshots"), 0);
    // A second prune has nothing left to do.
    assert_eq!(
        k.ok(&["system", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    // The emptied root still works: a new base, a build, a run.
    k.seed_local_base();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\nRUN echo again > /who\nCMD [\"cat\", \"/who\"]\n",
    );
    let (ok, log) = k.build(ctx.path(), &["-t", "app:1"]);
    assert!(ok, "{log}");
    assert_eq!(k.ok(&["run", "--rm", "app:1"]), "again\n");
}
