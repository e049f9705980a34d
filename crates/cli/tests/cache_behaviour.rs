//! Cache keys, crash safety, concurrency, prune, df and parallelism, end to end on a local
//! busybox base. Needs root and busybox-static.

mod common;
use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn du(p: &Path) -> u64 {
    let o = std::process::Command::new("du")
        .arg("-sb")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn df(k: &Kiln) -> serde_json::Value {
    serde_json::from_str(&k.ok(&["system", "df", "--format", "json"])).unwrap()
}

#[test]
fn ignored_edits_hit_the_cache_and_copied_edits_rerun_from_the_copy() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(c, ".dockerignore", "notes.txt\n");
    write(c, "notes.txt", "1");
    write(c, "app/main.sh", "echo 1");
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN echo before > /before\nCOPY app/ /app/\nRUN cat /app/main.sh > /after\n",
    );
    let (ok, log) = k.build(c, &[]);
    assert!(ok, "{log}");
    write(c, "notes.txt", "2");
    let (ok, log) = k.build(c, &[]);
    assert!(ok, "{log}");
    let (cached, run) = cached_and_run(&log);
    assert!(
        run.is_empty(),
        "an ignored file changed: nothing runs\n{log}"
    );
    assert_eq!(cached.len(), 4, "{log}");
    write(c, "app/main.sh", "echo 2");
    let (ok, log) = k.build(c, &[]);
    assert!(ok, "{log}");
    let (cached, mut run) = cached_and_run(&log);
    run.retain(|n| !n.starts_with("[internal]"));
    assert_eq!(
        run,
        vec![
            "[3/4] COPY app/ /app/",
            "[4/4] RUN cat /app/main.sh > /after"
        ],
        "{log}"
    );
    assert!(
        cached.iter().any(|n| n.contains("RUN echo before")),
        "{log}"
    );
    // --no-cache-filter on the (only, unnamed target) stage is accepted; a named stage:
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest AS base\nRUN echo before > /before\nFROM base\nCOPY app/ /app/\n",
    );
    assert!(k.build(c, &[]).0);
    let (ok, log) = k.build(c, &["--no-cache-filter", "base"]);
    assert!(ok, "{log}");
    let (cached, mut run) = cached_and_run(&log);
    run.retain(|n| !n.starts_with("[internal]"));
    assert_eq!(
        run,
        vec![
            "[base 1/2] FROM busybox:latest",
            "[base 2/2] RUN echo before > /before"
        ],
        "{log}"
    );
    assert!(cached.iter().any(|n| n.contains("COPY app/")), "{log}");
}

fn wait_for(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn kill_9_mid_build_leaves_a_consistent_store() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    // A big file, so the kill can land in the COPY too.
    let big = vec![7u8; 64 << 20];
    std::fs::write(c.join("big.bin"), &big).unwrap();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nARG T=30\nCOPY big.bin /big.bin\nRUN echo started; sleep $T\n",
    );
    let logf = k.root.path().join("killed.log");
    for delay in [None, Some(Duration::from_millis(150))] {
        let mut child = k
            .cmd()
            .args(["build", "--progress", "plain"])
            .arg(c)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logf).unwrap())
            .spawn()
            .unwrap();
        match delay {
            // During the RUN.
            None => assert!(wait_for(&logf, "started", Duration::from_mins(1))),
            // Early: context hashing or the COPY.
            Some(d) => std::thread::sleep(d),
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A new file so the COPY runs again next time.
        std::fs::write(c.join("big.bin"), &big[1..]).unwrap();
    }
    let (ok, log) = k.build(c, &["--build-arg", "T=0", "-t", "after"]);
    assert!(ok, "{log}");
    let d = df(&k);
    assert!(d["total"].as_u64().unwrap() > 0);
    assert!(files_below(&k.root.path().join("ingest")).is_empty());
    assert!(
        files_below(&k.root.path().join("snapshots"))
            .iter()
            .all(|n| !n.starts_with(".tmp-")),
        "no half-extracted snapshot left"
    );
    assert_eq!(
        k.ok(&["run", "--rm", "after", "wc", "-c", "/big.bin"])
            .trim(),
        format!("{} /big.bin", (64 << 20) - 1)
    );
    k.ok(&["builder", "prune", "--all"]);
    assert_eq!(k.ok(&["run", "--rm", "after", "echo", "ok"]), "ok\n");
}

#[test]
fn two_builds_at_once_on_one_root() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(c, "f", "x");
    write(
        c,
        "A.Dockerfile",
        "FROM busybox:latest\nCOPY f /f\nRUN sleep 1; echo a > /a\n",
    );
    write(
        c,
        "B.Dockerfile",
        "FROM busybox:latest\nCOPY f /f\nRUN sleep 1; echo b > /b\n",
    );
    for (fa, fb) in [("A", "B"), ("A", "A")] {
        // Fresh cache each round: the same steps run in both processes at once.
        k.ok(&["builder", "prune", "--all"]);
        let spawn = |f: &str, tag: &str| {
            k.cmd()
                .args(["build", "--progress", "plain", "-t", tag, "-f"])
                .arg(c.join(format!("{f}.Dockerfile")))
                .arg(c)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let a = spawn(fa, "one");
        let b = spawn(fb, "two");
        for ch in [a, b] {
            let out = ch.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        assert_eq!(k.ok(&["run", "--rm", "two", "cat", "/f"]), "x");
    }
}

#[test]
fn prune_keeps_images_and_frees_what_only_cache_or_removed_images_held() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN head -c 300000 /dev/urandom > /r\nRUN echo hi > /hi\n",
    );
    assert!(k.build(c, &["-t", "keep"]).0);
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN head -c 400000 /dev/urandom > /s\n",
    );
    assert!(k.build(c, &["-t", "gone"]).0);
    let blobs = |k: &Kiln| files_below(&k.root.path().join("blobs/sha256")).len();
    let snapshots = |k: &Kiln| {
        std::fs::read_dir(k.root.path().join("snapshots"))
            .unwrap()
            .count()
    };
    let before = blobs(&k);
    let snapshots_before = snapshots(&k);
    k.ok(&["builder", "prune", "--all"]);
    assert_eq!(df(&k)["build_cache"], 0);
    assert_eq!(k.ok(&["run", "--rm", "keep", "cat", "/hi"]), "hi\n");
    assert_eq!(
        k.ok(&["run", "--rm", "gone", "wc", "-c", "/s"]),
        "400000 /s\n"
    );
    assert_eq!(blobs(&k), before, "images keep all their blobs");
    k.ok(&["rmi", "gone"]);
    k.ok(&["builder", "prune"]);
    // gone's manifest and config are gone, and its layer (a build step's, held only as
    // its snapshot: layers are compressed when pushed or exported); keep still runs.
    assert_eq!(blobs(&k), before - 2);
    assert_eq!(snapshots(&k), snapshots_before - 1);
    assert_eq!(k.ok(&["run", "--rm", "keep", "cat", "/hi"]), "hi\n");
    // df and du agree within 5%.
    let total = df(&k)["total"].as_u64().unwrap();
    let d = du(k.root.path());
    assert!(
        (total as f64 - d as f64).abs() <= 0.05 * d as f64,
        "df {total} du {d}"
    );
    // --filter until and --keep-storage parse and run.
    k.ok(&["builder", "prune", "--filter", "until=24h"]);
    k.ok(&["builder", "prune", "--keep-storage", "1GB"]);
}

#[test]
fn gc_keep_storage_holds_after_every_build() {
    if !can_run(&["busybox"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let base = du(k.root.path());
    let cap = base + 3_000_000;
    std::fs::write(
        k.root.path().join("config.toml"),
        format!("[gc]\nkeep-storage = \"{cap}\"\n"),
    )
    .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    for i in 0..4 {
        write(
            c,
            "Dockerfile",
            &format!("FROM busybox:latest\nRUN head -c 1000000 /dev/urandom > /r{i}\n"),
        );
        let (ok, log) = k.build(c, &[]);
        assert!(ok, "{log}");
        let d = du(k.root.path());
        assert!(d <= cap, "build {i}: {d} bytes on disk, cap {cap}");
        let total = df(&k)["total"].as_u64().unwrap();
        assert!(
            (total as f64 - d as f64).abs() <= 0.05 * d as f64,
            "df {total} du {d}"
        );
    }
}

#[test]
fn independent_stages_overlap() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest AS a\nRUN sleep 1; echo a > /a\nFROM busybox:latest AS b\nRUN sleep 1; echo b > /b\nFROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    );
    let out = k.run(&[
        "build",
        "--progress",
        "rawjson",
        "--jobs",
        "2",
        c.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut spans: std::collections::HashMap<u64, (f64, f64)> = Default::default();
    let mut sleeps = vec![];
    for l in stderr(&out).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let n = v["number"].as_u64().unwrap_or(0);
        let t = v["time"].as_f64().unwrap_or(0.0);
        match v["type"].as_str() {
            Some("started") => {
                if v["name"].as_str().unwrap_or("").contains("sleep 1") {
                    sleeps.push(n);
                }
                spans.entry(n).or_default().0 = t;
            }
            Some("completed") => spans.entry(n).or_default().1 = t,
            _ => {}
        }
    }
    assert_eq!(sleeps.len(), 2);
    let (a, b) = (spans[&sleeps[0]], spans[&sleeps[1]]);
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two stages overlap: {a:?} {b:?}"
    );
}

#[test]
fn layers_are_compressed_only_when_exported_and_once_per_type() {
    let Some((k, ctx)) = local_project(&["busybox", "skopeo"]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN head -c 200000 /dev/urandom > /r\nCOPY a /a\n",
    );
    write(c, "a", "a\n");
    let blobs = |k: &Kiln| files_below(&k.root.path().join("blobs/sha256")).len();
    let before = blobs(&k);
    let (ok, log) = k.build(c, &["-t", "lazy"]);
    assert!(ok, "{log}");
    let local_id = built_id(&log);
    assert_eq!(
        blobs(&k),
        before + 2,
        "a local build stores its manifest and config, and no layer blob"
    );
    let out = tempfile::tempdir().unwrap();
    let layout = |name: &str, extra: &str| {
        let dest = out.path().join(name);
        let o = format!("type=oci,dest={}{extra}", dest.display());
        let (ok, log) = k.build(c, &["-t", "lazy", "-o", &o]);
        assert!(ok, "{log}");
        (dest, built_id(&log))
    };
    let manifest_of = |dir: &Path| -> serde_json::Value {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0]["digest"].as_str().unwrap();
        let p = dir.join("blobs").join(d.replacen(':', "/", 1));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    // A cached rebuild is the same image only within the same second: kiln stamps the
    // config's `created` when it exports (docker keeps a fully cached image as it was).
    // When the clock ticked between two builds (likely under load), the new config and
    // its manifest are two more blobs (and the layout's manifest one), never a layer.
    let ticked = |a: &str, b: &str| if a == b { 0 } else { 2 };
    // gzip (the default): the two new layers get blobs, once.
    let (gz, gz_id) = layout("gz", ",tar=false");
    let after_gz = blobs(&k);
    assert_eq!(
        after_gz,
        before + 2 + ticked(&local_id, &gz_id) + 2 + 1,
        "two gzip layers and the export's manifest"
    );
    let (again, again_id) = layout("gz-again", ",tar=false");
    assert_eq!(
        blobs(&k),
        after_gz + if gz_id == again_id { 0 } else { 2 + 1 },
        "a second export reuses the compressed blobs"
    );
    assert_eq!(manifest_of(&again)["layers"], manifest_of(&gz)["layers"]);
    let m = manifest_of(&gz);
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["application/vnd.oci.image.layer.v1.tar+gzip"; 3],
        "{m}"
    );
    // zstd on request; skopeo reads the layout and checks every blob's digest on copy.
    let (zst, _) = layout("zst", ",tar=false,compression=zstd");
    let m = manifest_of(&zst);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        layers[2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    for dir in [&gz, &zst] {
        let copy = std::process::Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}", dir.display()))
            .arg(format!("dir:{}-copy", dir.display()))
            .output()
            .unwrap();
        assert!(copy.status.success(), "skopeo: {}", stderr(&copy));
    }
    // Bad compression names are a usage error.
    let o = format!("type=oci,dest={}/x,compression=lz4", out.path().display());
    let r = k.run(&["build", "-o", &o, c.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("gzip, zstd or uncompressed"),
        "{}",
        stderr(&r)
    );
}

/// The image ID a build log ends with (`built sha256:… in …`).
fn built_id(log: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no image ID in {log}"))
        .to_string()
}

/// Every path below `dir` named `name`, with its inode.
fn find_named(dir: &Path, name: &str, out: &mut Vec<(std::path::PathBuf, u64)>) {
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            find_named(&p, name, out);
        } else if e.file_name() == name {
            out.push((p, md.ino()));
        }
    }
}

#[test]
fn an_unchanged_large_file_is_linked_not_copied_again() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(c, "Dockerfile", "FROM busybox:latest\nCOPY . /app/\n");
    write(c, "small.txt", "one\n");
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(c.join("big.bin"), &big).unwrap();
    // Changed (ctime) more than a second before it is hashed, so the stat cache trusts
    // the first build's hash of it (the racy-git rule).
    std::thread::sleep(Duration::from_millis(1100));
    assert!(k.build(c, &["-t", "first"]).0);
    write(c, "small.txt", "two\n");
    assert!(k.build(c, &["-t", "second"]).0);

    let mut found = Vec::new();
    find_named(&k.root.path().join("snapshots"), "big.bin", &mut found);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].1, found[1].1,
        "the second COPY hard-linked the first one's file"
    );
    assert_eq!(
        k.ok(&["run", "--rm", "second", "cat", "/app/small.txt"]),
        "two\n"
    );
    let sum = |k: &Kiln, img: &str| k.ok(&["run", "--rm", img, "md5sum", "/app/big.bin"]);
    assert_eq!(sum(&k, "second"), sum(&k, "first"));

    // The linked files look exactly like those a store without the first build copies.
    let fresh = Kiln::new();
    fresh.seed_local_base();
    assert!(fresh.build(c, &["-t", "second"]).0);
    let mut found = Vec::new();
    find_named(&fresh.root.path().join("snapshots"), "big.bin", &mut found);
    assert_eq!(found.len(), 1);
    let files = |k: &Kiln| {
        k.ok(&[
            "run",
            "--rm",
            "second",
            "sh",
            "-c",
            "find /app -type f | sort | xargs stat -c '%n %s %a %u %g %Y' && md5sum /app/*",
        ])
    };
    assert_eq!(files(&k), files(&fresh));
}

#[test]
fn compression_level_applies_when_a_blob_is_made() {
    if !can_run(&["busybox"]) {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN seq 1 300000 > /s\n",
    );
    let out = tempfile::tempdir().unwrap();
    let layer_size = |level: &str| -> u64 {
        let k = Kiln::new();
        k.seed_local_base();
        let dest = out.path().join(level);
        let o = format!(
            "type=oci,dest={},tar=false,compression-level={level}",
            dest.display()
        );
        let (ok, log) = k.build(c, &["-o", &o]);
        assert!(ok, "{log}");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0]["digest"].as_str().unwrap();
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dest.join("blobs").join(d.replacen(':', "/", 1))).unwrap(),
        )
        .unwrap();
        m["layers"][1]["size"].as_u64().unwrap()
    };
    let (fast, small) = (layer_size("1"), layer_size("9"));
    assert!(
        small < fast,
        "level 9 ({small} B) smaller than level 1 ({fast} B)"
    );
    let k = Kiln::new();
    let o = format!(
        "type=oci,dest={}/x,compression-level=high",
        out.path().display()
    );
    let r = k.run(&["build", "-o", &o, c.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
}

/// Pids of processes whose command line contains `needle`.
fn pids_running(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// Kills the child when dropped (a failing assertion must not leave a build running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_cancels_running_steps_and_exits_130() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    // Two stages sleeping at once; durations unique to this run find their processes.
    let (ta, tb) = (
        format!("31.{}1", std::process::id()),
        format!("31.{}2", std::process::id()),
    );
    write(
        c,
        "Dockerfile",
        &format!(
            "FROM busybox:latest AS a\nRUN echo up-$((40+2))a; sleep {ta}\n\
             FROM busybox:latest AS b\nRUN echo up-$((40+2))b; sleep {tb}\n\
             FROM busybox:latest\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n"
        ),
    );
    let logf = k.root.path().join("interrupted.log");
    let mut child = KillOnDrop(
        k.cmd()
            .args(["build", "--progress", "plain", "-t", "never"])
            .arg(c)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logf).unwrap())
            .spawn()
            .unwrap(),
    );
    // The steps' output (their command lines in the log say `$((40+2))`).
    assert!(wait_for(&logf, "up-42a", Duration::from_mins(1)));
    assert!(wait_for(&logf, "up-42b", Duration::from_mins(1)));
    let sleeping =
        || pids_running(&format!("sleep {ta}")).len() + pids_running(&format!("sleep {tb}")).len();
    assert!(sleeping() >= 2, "both steps run");
    let sent = Instant::now();
    let sigint = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sigint.success());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping() > 0 {
        assert!(Instant::now() < deadline, "sandboxes left running");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!k.ok(&["images"]).contains("never"));
    assert!(files_below(&k.root.path().join("ingest")).is_empty());
    assert!(
        files_below(&k.root.path().join("tmp")).is_empty(),
        "no scratch dirs left"
    );
}

#[test]
fn an_image_built_here_is_a_base_for_the_next_build() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\nRUN echo one > /one\n",
    );
    assert!(k.build(c, &["-t", "localbase"]).0);
    // Its build-step layer is a snapshot with no blob: FROM must use it, not a registry.
    write(c, "Dockerfile", "FROM localbase\nRUN cat /one > /two\n");
    let (ok, log) = k.build(c, &["-t", "child"]);
    assert!(ok, "{log}");
    assert_eq!(k.ok(&["run", "--rm", "child", "cat", "/two"]), "one\n");
}

#[test]
fn a_copy_into_new_directories_keeps_metadata_and_hides_deleted_lower_files() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN mkdir -p /x/old && echo gone > /x/old/file && echo file > /x/f\n\
         RUN rm -rf /x/old\n\
         COPY --chown=7:8 tree/ /x/\n",
    );
    use std::os::unix::fs::PermissionsExt;
    let set = |rel: &str, mode: u32, mtime: i64| {
        let p = c.join(rel);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let t = filetime::FileTime::from_unix_time(mtime, 0);
        filetime::set_file_times(&p, t, t).unwrap();
    };
    // More files than one copy thread takes, so the copy runs on several.
    for i in 0..150 {
        write(c, &format!("tree/new/many/{i:03}"), &format!("{i}\n"));
        set(&format!("tree/new/many/{i:03}"), 0o644, 1_600_000_100 + i);
    }
    write(c, "tree/new/a.txt", "a\n");
    write(c, "tree/new/sub/b.sh", "echo b\n");
    write(c, "tree/old/n.txt", "n\n");
    write(c, "tree/f/g.txt", "g\n");
    set("tree/new/a.txt", 0o640, 1_600_000_000);
    set("tree/new/sub/b.sh", 0o755, 1_600_000_001);
    set("tree/old/n.txt", 0o644, 1_600_000_002);
    set("tree/f/g.txt", 0o600, 1_600_000_003);
    // Directories last: writing their entries changed their mtimes.
    set("tree/new/many", 0o711, 1_500_000_004);
    set("tree/new/sub", 0o700, 1_500_000_001);
    set("tree/new", 0o750, 1_500_000_000);
    set("tree/old", 0o755, 1_500_000_002);
    set("tree/f", 0o755, 1_500_000_003);
    let (ok, log) = k.build(c, &["-t", "copied"]);
    assert!(ok, "{log}");
    let listing = k.ok(&[
        "run",
        "--rm",
        "copied",
        "sh",
        "-c",
        "cd /x && find . -mindepth 1 ! -path './new/many/*' | sort | xargs stat -c '%n %F %a %u:%g %Y' \
         && cat old/* f/* new/a.txt && ls new/many | wc -l \
         && stat -c '%a %u:%g %Y %s' new/many/* | sort | uniq -c | wc -l",
    ]);
    assert_eq!(
        listing,
        "./f directory 755 7:8 1500000003\n\
         ./f/g.txt regular file 600 7:8 1600000003\n\
         ./new directory 750 7:8 1500000000\n\
         ./new/a.txt regular file 640 7:8 1600000000\n\
         ./new/many directory 711 7:8 1500000004\n\
         ./new/sub directory 700 7:8 1500000001\n\
         ./new/sub/b.sh regular file 755 7:8 1600000001\n\
         ./old directory 755 7:8 1500000002\n\
         ./old/n.txt regular file 644 7:8 1600000002\n\
         n\ng\na\n150\n150\n",
        "the deleted /x/old/file stays deleted, the file /x/f became a directory"
    );
    let many = k.ok(&[
        "run",
        "--rm",
        "copied",
        "sh",
        "-c",
        "cd /x/new/many && for f in *; do echo \"$f $(cat $f) $(stat -c '%a %u:%g %Y' $f)\"; done",
    ]);
    for (i, line) in many.lines().enumerate() {
        assert_eq!(
            line,
            format!("{i:03} {i} 644 7:8 {}", 1_600_000_100 + i as i64)
        );
    }
    assert_eq!(many.lines().count(), 150);
}

#[test]
fn a_rerun_copy_links_its_unchanged_files_from_its_last_result() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    write(c, "Dockerfile", "FROM busybox:latest\nCOPY src/ /app/\n");
    for i in 0..100 {
        write(c, &format!("src/d/f{i:02}"), &format!("file {i}\n"));
    }
    // A hard-linked pair: one inode in the first layer.
    write(c, "src/d/pair1", "same\n");
    std::fs::hard_link(c.join("src/d/pair1"), c.join("src/d/pair2")).unwrap();
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for f in ["f00", "f01", "pair1"] {
        filetime::set_file_times(c.join("src/d").join(f), t, t).unwrap();
    }
    assert!(k.build(c, &["-t", "first"]).0);
    let snapshots = k.root.path().join("snapshots");
    let layer_of = |file: &str| {
        let mut found = Vec::new();
        find_named(&snapshots, file, &mut found);
        found
    };
    assert_eq!(layer_of("f50").len(), 1);

    // Edit one file; break the pair into two files with the same content and mtime.
    write(c, "src/d/f50", "edited\n");
    std::fs::remove_file(c.join("src/d/pair2")).unwrap();
    write(c, "src/d/pair2", "same\n");
    filetime::set_file_times(c.join("src/d/pair2"), t, t).unwrap();
    assert!(k.build(c, &["-t", "second"]).0);

    let f01 = layer_of("f01");
    assert_eq!(f01.len(), 2, "{f01:?}");
    assert_eq!(
        f01[0].1, f01[1].1,
        "an unchanged file is linked, not copied"
    );
    let f50 = layer_of("f50");
    assert_eq!(f50.len(), 2);
    assert_ne!(f50[0].1, f50[1].1, "the edited file is new");
    let run = |img: &str, cmd: &str| k.ok(&["run", "--rm", img, "sh", "-c", cmd]);
    assert_eq!(
        run("second", "cat /app/d/f50 /app/d/f01"),
        "edited\nfile 1\n"
    );
    assert_eq!(run("first", "cat /app/d/f50"), "file 50\n");
    // The pair is two files in the second image, though the first layer's pair is one inode.
    let inodes = run("second", "stat -c %i /app/d/pair1 /app/d/pair2");
    let inodes: Vec<&str> = inodes.lines().collect();
    assert_ne!(
        inodes[0], inodes[1],
        "two files of the source are not linked"
    );

    // The files look exactly like those a store without the first build copies (but for
    // their link counts). /app itself is made when the COPY runs, with that time.
    let fresh = Kiln::new();
    fresh.seed_local_base();
    assert!(fresh.build(c, &["-t", "second"]).0);
    let files = |k: &Kiln| {
        k.ok(&[
            "run",
            "--rm",
            "second",
            "sh",
            "-c",
            "find /app -mindepth 1 | sort | xargs stat -c '%n %F %s %a %u %g %Y' && md5sum /app/d/*",
        ])
    };
    assert_eq!(files(&k), files(&fresh));
}
