//! `--cache-to` / `--cache-from`: one machine's build cache reused by another (an empty
//! root), through Debian's docker-registry and through a directory. Needs root,
//! docker-registry, busybox-static and skopeo.

mod common;
use common::*;
use std::path::Path;

const DOCKERFILE: &str = "FROM BASE AS builder
RUN echo built > /out && date +%s%N > /builder-stamp
FROM BASE
COPY --from=builder /out /out
RUN cat /out > /copied && date +%s%N > /stamp
";

/// The Dockerfile on `base`, with `extra` inserted in the final stage before its COPY.
fn context(base: &str, extra: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let df = DOCKERFILE
        .replace("BASE", base)
        .replace("COPY --from", &format!("{extra}COPY --from"));
    write(ctx.path(), "Dockerfile", &df);
    ctx
}

fn build(k: &Kiln, ctx: &Path, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let (ok, log) = k.build(ctx, args);
    assert!(ok, "{log}");
    cached_and_run(&log)
}

fn ran(run: &[String], what: &str) -> bool {
    run.iter().any(|r| r.contains(what))
}

#[test]
fn another_machine_reuses_the_cache_through_a_registry_and_a_directory() {
    if !can_run(&["docker-registry", "busybox", "skopeo"]) {
        return;
    }
    let reg = Registry::start();
    let a = Kiln::new();
    let base = a.seed_base(&reg);
    let ctx = context(&base, "");
    let max = format!("{}/cache:max", reg.addr);
    let min = format!("{}/cache:min", reg.addr);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("cache");
    build(
        &a,
        ctx.path(),
        &[
            "-t",
            "app",
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
    );
    build(
        &a,
        ctx.path(),
        &[
            "-t",
            "app",
            "--cache-to",
            &format!("type=registry,ref={min}"),
        ],
    );
    build(
        &a,
        ctx.path(),
        &[
            "-t",
            "app",
            "--cache-to",
            &format!("type=local,dest={},mode=max", local.display()),
        ],
    );
    let stamp = a.ok(&["run", "--rm", "app", "cat", "/stamp"]);

    // An empty root importing the registry cache: every step cached, nothing run, and the
    // result is the first machine's (same stamp), though the base was never pulled.
    let b = Kiln::new();
    let (cached, run) = build(
        &b,
        ctx.path(),
        &[
            "-t",
            "app",
            "--cache-from",
            &format!("type=registry,ref={max}"),
        ],
    );
    assert!(run.is_empty(), "ran {run:?}");
    assert!(
        cached.iter().any(|c| c.contains("RUN cat /out")),
        "{cached:?}"
    );
    // What was fetched for the image stays through a prune (nothing was extracted yet).
    let b2 = Kiln::new();
    build(&b2, ctx.path(), &["-t", "app", "--cache-from", &max]);
    b2.ok(&["builder", "prune", "--all"]);
    assert_eq!(b2.ok(&["run", "--rm", "app", "cat", "/stamp"]), stamp);
    assert_eq!(b.ok(&["run", "--rm", "app", "cat", "/stamp"]), stamp);
    // The hits were kept: the next build there needs no --cache-from.
    let (_, run) = build(&b, ctx.path(), &["-t", "app"]);
    assert!(run.is_empty(), "ran {run:?}");

    // Same through a directory, which skopeo reads as an OCI layout.
    let c = Kiln::new();
    let (_, run) = build(
        &c,
        ctx.path(),
        &[
            "-t",
            "app",
            "--cache-from",
            &format!("type=local,src={}", local.display()),
        ],
    );
    assert!(run.is_empty(), "ran {run:?}");
    assert_eq!(c.ok(&["run", "--rm", "app", "cat", "/stamp"]), stamp);
    let inspect = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}", local.display()))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", stderr(&inspect));

    // A new step before the COPY --from: with mode=max the builder stage still comes from
    // the cache, with mode=min (only the final image's steps) it runs again.
    let changed = context(&base, "RUN echo pre > /pre\n");
    let d = Kiln::new();
    let (_, run) = build(&d, changed.path(), &["--cache-from", &max]);
    assert!(ran(&run, "RUN cat /out"), "{run:?}");
    assert!(
        !ran(&run, "RUN echo built"),
        "mode=max kept the builder stage: {run:?}"
    );
    let e = Kiln::new();
    let (_, run) = build(
        &e,
        changed.path(),
        &["--cache-from", &format!("type=registry,ref={min}")],
    );
    assert!(
        ran(&run, "RUN echo built"),
        "mode=min has no builder stage: {run:?}"
    );

    // A cache that is not there is a warning; the build runs.
    let f = Kiln::new();
    let (ok, log) = f.build(
        ctx.path(),
        &[
            "--cache-from",
            &format!("type=registry,ref={}/cache:none", reg.addr),
        ],
    );
    assert!(ok, "{log}");
    assert!(log.contains("warning: cannot import cache"), "{log}");
    // Bad specs are usage errors.
    let bad = f.run(&[
        "build",
        "--cache-to",
        "type=registry",
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("needs ref=REF"), "{}", stderr(&bad));
}
