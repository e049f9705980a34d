//! Volumes through the real `kiln` binary: `run -v NAME:DST[:ro]`, `-v DST`, the image's
//! `VOLUME`s, `volume create|ls|inspect|rm|prune`, `rm -v`, `run --rm`, `system prune
//! --volumes`, `system df`. Needs root and Debian's busybox-static (the base image is
//! imported locally); skipped with a message otherwise.

mod common;
use common::*;

fn root() -> Option<Kiln> {
    if !can_run(&[]) {
        return None;
    }
    let k = Kiln::new();
    k.seed_local_base();
    Some(k)
}

/// `volume ls -q`, sorted.
fn names(k: &Kiln) -> Vec<String> {
    k.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn is_anonymous_name(n: &str) -> bool {
    n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn named_volume_keeps_data_between_runs_and_ro_refuses_writes() {
    let Some(k) = root() else { return };
    k.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/d",
        "busybox",
        "sh",
        "-c",
        "echo hi > /d/f",
    ]);
    assert_eq!(
        k.ok(&["run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f"]),
        "hi\n"
    );
    let ro = k.run(&[
        "run",
        "--rm",
        "-v",
        "data:/d:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /d/g",
    ]);
    assert!(!ro.status.success(), "a write to a :ro volume fails");
    assert!(stderr(&ro).contains("Read-only"), "{}", stderr(&ro));

    assert_eq!(names(&k), vec!["data"], "--rm keeps named volumes");
    let ls = k.ok(&["volume", "ls"]);
    let lines: Vec<_> = ls.lines().collect();
    assert_eq!(lines[0], "DRIVER   VOLUME NAME");
    assert_eq!(lines[1], "local    data");

    assert_eq!(
        k.ok(&["volume", "create", "--label", "a=b", "other"]),
        "other\n"
    );
    assert_eq!(
        k.ok(&["volume", "create", "other"]),
        "other\n",
        "exists: fine"
    );
    let v: serde_json::Value =
        serde_json::from_str(&k.ok(&["volume", "inspect", "data", "other"])).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["Name"], "data");
    assert_eq!(arr[0]["Driver"], "local");
    assert_eq!(arr[0]["Scope"], "local");
    assert_eq!(arr[1]["Labels"]["a"], "b");
    let mp = arr[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(
        mp,
        k.root.path().join("volumes/data/_data").to_str().unwrap()
    );
    assert_eq!(std::fs::read_to_string(format!("{mp}/f")).unwrap(), "hi\n");
    let created = arr[0]["CreatedAt"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "RFC 3339: {created}"
    );
    let missing = k.run(&["volume", "inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no such volume"));
    let bad = k.run(&["volume", "create", "-bad"]);
    assert!(!bad.status.success());
}

#[test]
fn volume_in_use_by_a_stopped_container_is_not_removed() {
    let Some(k) = root() else { return };
    k.ok(&["run", "--name", "c1", "-v", "keep:/k", "busybox", "true"]);
    for args in [
        &["volume", "rm", "keep"][..],
        &["volume", "rm", "-f", "keep"],
    ] {
        let out = k.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("volume is in use"),
            "{}",
            stderr(&out)
        );
    }
    // Prune leaves it too, even with -a.
    k.ok(&["volume", "prune", "-f", "-a"]);
    assert_eq!(names(&k), vec!["keep"]);
    k.ok(&["rm", "c1"]);
    assert_eq!(k.ok(&["volume", "rm", "keep"]), "keep\n");
    assert!(names(&k).is_empty());
    assert_eq!(k.run(&["volume", "rm", "keep"]).status.code(), Some(1));
    k.ok(&["volume", "rm", "-f", "keep"]);
}

#[test]
fn anonymous_volumes_go_with_rm_v_run_rm_and_prune() {
    let Some(k) = root() else { return };
    k.ok(&[
        "run",
        "--name",
        "a1",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f",
    ]);
    let anon = names(&k);
    assert!(anon.len() == 1 && is_anonymous_name(&anon[0]), "{anon:?}");
    let v: serde_json::Value =
        serde_json::from_str(&k.ok(&["volume", "inspect", &anon[0]])).unwrap();
    assert!(v[0]["Labels"]
        .as_object()
        .unwrap()
        .contains_key("com.docker.volume.anonymous"));
    k.ok(&["rm", "-v", "a1"]);
    assert!(names(&k).is_empty(), "rm -v removes the anonymous volume");

    k.ok(&[
        "run", "--rm", "-v", "/anon", "-v", "named:/n", "busybox", "true",
    ]);
    assert_eq!(
        names(&k),
        vec!["named"],
        "run --rm drops only the anonymous one"
    );

    k.ok(&["run", "--name", "b1", "-v", "/anon", "busybox", "true"]);
    k.ok(&["rm", "b1"]);
    assert_eq!(names(&k).len(), 2, "rm without -v keeps it");
    let df = k.ok(&["system", "df"]);
    let line = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    let cols: Vec<_> = line.split_whitespace().collect();
    assert_eq!(&cols[2..4], &["2", "0"], "{line}");

    // `volume create` without a name: a random name, but not an anonymous volume.
    let unnamed = k.ok(&["volume", "create"]).trim().to_string();
    assert!(is_anonymous_name(&unnamed), "{unnamed}");
    let prompt = k.run(&["volume", "prune"]);
    assert_eq!(
        prompt.status.code(),
        Some(2),
        "-f is needed without a terminal"
    );
    let out = k.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    let mut kept = vec!["named".to_string(), unnamed];
    kept.sort();
    assert_eq!(names(&k), kept, "prune keeps named volumes");
    k.ok(&["volume", "prune", "-f", "-a"]);
    assert!(names(&k).is_empty(), "prune -a removes unused named ones");

    k.ok(&[
        "run", "--name", "c1", "-v", "/anon", "-v", "n2:/n", "busybox", "true",
    ]);
    k.ok(&["rm", "c1"]);
    k.ok(&["system", "prune", "-f", "--volumes"]);
    assert_eq!(
        names(&k),
        vec!["n2"],
        "system prune --volumes: anonymous only"
    );
}

#[test]
fn new_volumes_are_filled_from_the_image_and_image_volumes_are_anonymous() {
    let Some(k) = root() else { return };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN mkdir -p /etc/app/sub /data && echo conf > /etc/app/conf \
         && chown 1000:1001 /etc/app/conf && chmod 640 /etc/app/conf \
         && ln -s conf /etc/app/link && echo s > /etc/app/sub/s \
         && chmod 750 /etc/app && echo seed > /data/seed\n\
         VOLUME /data\n",
    );
    let (ok, log) = k.build(ctx.path(), &["-t", "app"]);
    assert!(ok, "{log}");
    let out = k.ok(&[
        "run",
        "--name",
        "v1",
        "-v",
        "cfg:/etc/app",
        "app",
        "sh",
        "-c",
        "stat -c '%a %u:%g' /etc/app/conf /etc/app; readlink /etc/app/link; \
         cat /etc/app/sub/s /data/seed; echo w > /data/written",
    ]);
    assert_eq!(out, "640 1000:1001\n750 0:0\nconf\ns\nseed\n");
    // The host side holds the same, with the same owners and modes.
    let data = k.root.path().join("volumes/cfg/_data");
    let md = std::fs::metadata(data.join("conf")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o640, 1000, 1001)
    );
    // A volume that is not empty is not filled again.
    std::fs::remove_file(data.join("conf")).unwrap();
    k.ok(&["run", "--rm", "-v", "cfg:/etc/app", "app", "true"]);
    assert!(!data.join("conf").exists());

    // The image's VOLUME /data got an anonymous volume holding what the container wrote.
    let vols = names(&k);
    let anon: Vec<_> = vols.iter().filter(|n| is_anonymous_name(n)).collect();
    assert_eq!(anon.len(), 1, "{vols:?}");
    let v: serde_json::Value =
        serde_json::from_str(&k.ok(&["volume", "inspect", anon[0]])).unwrap();
    let mp = std::path::PathBuf::from(v[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(mp.join("written")).unwrap(), "w\n");
    assert_eq!(std::fs::read_to_string(mp.join("seed")).unwrap(), "seed\n");
    // -v over the image's VOLUME: no anonymous volume for it.
    k.ok(&[
        "run",
        "--rm",
        "-v",
        "mine:/data",
        "app",
        "cat",
        "/data/seed",
    ]);
    assert_eq!(names(&k).len(), vols.len() + 1);
    k.ok(&["rm", "-v", "v1"]);
    assert!(!names(&k).iter().any(|n| is_anonymous_name(n)));
}
