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

/// `kiln ARGS…` in a fresh root; asserts the exit code and that stderr has `msg`.
fn refused(args: &[&str], code: i32, msg: &str) {
    let k = Kiln::new();
    let out = k.run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "kiln {args:?}:\n{err}");
    assert!(
        err.contains(msg),
        "kiln {args:?}: expected {msg:?} in:\n{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line:\n{err}");
}

/// Item 10: `run` flags refused before anything runs, with docker's wording and kiln's
/// usage exit code (2). Needs no root: nothing gets as far as the image.
#[test]
fn run_flags_are_validated() {
    refused(
        &["run", "--cpus", "NaN", "img"],
        2,
        "invalid argument \"NaN\" for \"--cpus\" flag: failed to parse NaN as a rational number",
    );
    refused(
        &["run", "--cpus", "inf", "img"],
        2,
        "invalid argument \"inf\" for \"--cpus\" flag",
    );
    refused(
        &["run", "--cpus", "-1", "img"],
        2,
        "invalid argument \"-1\" for \"--cpus\" flag: the number of CPUs cannot be negative",
    );
    refused(
        &["run", "-w", "relative", "img"],
        2,
        "the working directory 'relative' is invalid, it needs to be an absolute path",
    );
    refused(
        &["run", "-e", "=x", "img"],
        2,
        "invalid environment variable: =x",
    );
    refused(
        &["run", "--hostname", "a\n1.2.3.4 evil", "img"],
        2,
        "invalid hostname format: a\\n1.2.3.4 evil",
    );
    refused(
        &["run", "-h", "bad_name", "img"],
        2,
        "invalid hostname format: bad_name",
    );
    refused(
        &["run", "--add-host", "h:x", "img"],
        2,
        "invalid argument \"h:x\" for \"--add-host\" flag: invalid IP address in add-host: \"x\"",
    );
    refused(
        &["run", "--add-host", "h\n1.1.1.1 evil:1.2.3.4", "img"],
        2,
        "invalid host name in add-host",
    );
    refused(
        &["run", "--add-host", "h", "img"],
        2,
        "bad format for add-host: \"h\"",
    );
}

/// Item 10: `build -o ""` and `--add-host` are usage errors.
#[test]
fn build_output_and_add_host_are_validated() {
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", "FROM busybox\n");
    let c = ctx.path().to_str().unwrap();
    refused(&["build", "-o", "", c], 2, "-o/--output needs a value");
    refused(
        &["build", "-o", "type=local,dest=", c],
        2,
        "output type=local needs dest=PATH",
    );
    refused(
        &["build", "--add-host", "a:b", c],
        2,
        "invalid IP address in add-host: \"b\"",
    );
}

/// Item 10: `kiln import` of something that is not a whole tar fails and stores nothing.
#[test]
fn import_of_a_non_tar_fails_and_stores_nothing() {
    let Some((k, dir)) = local_project(&[]) else {
        return;
    };
    let text = dir.path().join("text");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/sh\n".repeat(100)).unwrap();
    let out = k.run(&["import", text.to_str().unwrap(), "notatar"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!("error: {}: not a tar archive", text.display())
    );
    // A tar cut short.
    let tar = dir.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &std::fs::read(&tar).unwrap()[..3000]).unwrap();
    let out = k.run(&["import", cut.to_str().unwrap(), "cut"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a tar archive"));
    let images = k.ok(&["images"]);
    assert!(
        !images.contains("notatar") && !images.contains("cut"),
        "{images}"
    );
    // From stdin too.
    let out = k
        .cmd()
        .args(["import", "-", "fromstdin"])
        .stdin(std::fs::File::open(&text).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("-: not a tar archive"));
    // A real one still imports, from a file and from stdin.
    k.ok(&["import", tar.to_str().unwrap(), "good"]);
    let out = k
        .cmd()
        .args(["import", "-", "good2"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Item 10: `-m 0` is no limit (it used to kill the container at once), and `--add-host`
/// and `--hostname` land in /etc/hosts, one line each, for `run` and for `build`.
#[test]
fn memory_zero_and_add_host() {
    let Some((k, ctx)) = local_project(&[]) else {
        return;
    };
    assert_eq!(
        k.ok(&["run", "--rm", "-m", "0", "busybox", "echo", "ok"]),
        "ok\n"
    );
    let hosts = k.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db:10.0.0.5",
        "--add-host",
        "v6=::1",
        "-h",
        "web",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains("127.0.1.1\tweb\n"), "{hosts}");
    assert!(hosts.contains("10.0.0.5\tdb\n"), "{hosts}");
    assert!(hosts.contains("::1\tv6\n"), "{hosts}");
    // Build steps get /etc/hosts only over a file the image has.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /etc && : > /etc/hosts\nRUN cat /etc/hosts\n",
    );
    let out = build(&k, ctx.path(), &["--add-host", "db:10.0.0.5"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("10.0.0.5\tdb"), "{err}");
}
