//! Issue 11 (items 4, 5, 6, 10): entitlements, `.dockerignore` bypasses, deep input and the
//! small validations of `run`, `import` and `build -o`, through the kiln binary. Needs root
//! (a local busybox base, RUN sandboxes); the validations that fail before anything runs
//! need nothing.

mod common;
use common::*;
use std::process::Output;

fn build(k: &Kiln, ctx: &std::path::Path, args: &[&str]) -> Output {
    k.cmd()
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .output()
        .unwrap()
}

/// Item 4: `RUN --network=host` needs `--allow network.host` (BuildKit's entitlement);
/// `build --network host` grants it, as buildx does.
#[test]
fn run_network_host_needs_the_entitlement() {
    let Some((k, ctx)) = local_project(&[]) else {
        return;
    };
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN echo first\nRUN --network=host echo hi > /x\n",
    );
    let out = build(&k, c, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:3: "), "{err}");
    assert!(err.contains("network.host is not allowed"), "{err}");
    assert!(
        !err.contains("echo first"),
        "nothing runs before the check:\n{err}"
    );
    let out = build(&k, c, &["--allow", "network.host"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = build(&k, c, &["--network", "host", "--no-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN --security=insecure true\n",
    );
    let out = build(&k, c, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("security.insecure is not allowed"));
}

/// Item 5: a symlink to a `.dockerignore`d file does not bring its content in through
/// COPY, and a bind mount of the context shows neither the file nor its content.
#[test]
fn dockerignored_files_stay_out_through_symlinks_and_bind_mounts() {
    let Some((k, ctx)) = local_project(&[]) else {
        return;
    };
    let c = ctx.path();
    write(c, ".dockerignore", "secret\n");
    write(c, "secret", "TOPSECRET\n");
    write(c, "public", "hello\n");
    std::os::unix::fs::symlink("secret", c.join("link")).unwrap();
    // COPY of the symlink itself: BuildKit follows a named source and finds nothing.
    write(c, "Dockerfile", "FROM busybox\nCOPY link /x\n");
    let out = build(&k, c, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not found"), "{err}");
    assert!(!err.contains("TOPSECRET"));
    // COPY of the whole context: the symlink comes as a symlink, the secret not at all.
    let dest = tempfile::tempdir().unwrap();
    let o = format!("type=local,dest={}", dest.path().join("out").display());
    write(c, "Dockerfile", "FROM busybox\nCOPY . /ctx/\n");
    let out = build(&k, c, &["-o", &o]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = dest.path().join("out/ctx");
    assert_eq!(
        std::fs::read_link(got.join("link")).unwrap(),
        std::path::Path::new("secret")
    );
    assert!(!got.join("secret").exists());
    // A bind mount of the context.
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=bind,target=/ctx ls -a /ctx && cat /ctx/public && (cat /ctx/link && echo LEA\"\"KED || echo no-link)\n",
    );
    let out = build(&k, c, &["--no-cache"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("hello"), "{err}");
    assert!(err.contains("no-link"), "{err}");
    assert!(!err.contains("TOPSECRET"), "{err}");
    assert!(!err.contains("LEAKED"), "{err}");
    assert!(
        !err.lines().any(|l| l.trim_end().ends_with(" secret")),
        "ls lists the secret:\n{err}"
    );
}

/// Item 6: deep input through the binary (main thread): 10,000-deep nested ARG defaults are
/// a clear Dockerfile error (exit 2), 2,500 chained stages build.
#[test]
fn deep_input_is_an_error_or_builds_never_an_abort() {
    let Some((k, ctx)) = local_project(&[]) else {
        return;
    };
    let c = ctx.path();
    let n = 10_000;
    let df = format!(
        "ARG X={}x{}\nFROM busybox\n",
        "${a:-".repeat(n),
        "}".repeat(n)
    );
    write(c, "Dockerfile", &df);
    let out = build(&k, c, &[]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.contains("variable substitutions nested deeper than 100"));
    assert!(err.len() < 1000, "the message shows the line's start only");

    let mut df = String::from("FROM busybox AS s0\n");
    for i in 0..2500 {
        df.push_str(&format!("FROM s{i} AS s{}\n", i + 1));
    }
    write(c, "Dockerfile", &df);
    let out = build(&k, c, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
