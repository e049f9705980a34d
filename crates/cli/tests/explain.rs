//! `kiln build --explain`: every kind of change is named. Needs root and busybox-static.

mod common;
use common::*;

fn misses(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" CACHE MISS: ").map(|(_, r)| r.to_string()))
        .collect()
}

#[test]
fn explain_names_what_changed() {
    let Some((k, ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let c = ctx.path();
    for f in ["src/a.rs", "src/b.rs", "src/c.rs", "src/main.rs"] {
        write(c, f, f);
    }
    let dockerfile = |cmd: &str| {
        format!(
            "FROM busybox:latest\nARG VERSION=1.2\nCOPY src/ /src/\nRUN {cmd}\nRUN echo $VERSION > /v\n"
        )
    };
    write(c, "Dockerfile", &dockerfile("ls /src > /list"));
    let (ok, log) = k.build(c, &["--explain"]);
    assert!(ok, "{log}");
    assert!(
        misses(&log).is_empty(),
        "first build has nothing to compare:\n{log}"
    );

    // A copied file.
    write(c, "src/main.rs", "fn main() {}");
    let (ok, log) = k.build(c, &["--explain"]);
    assert!(ok, "{log}");
    let m = misses(&log);
    assert_eq!(
        m.first().map(String::as_str),
        Some("src/main.rs changed"),
        "{log}"
    );
    assert!(
        m[1].starts_with("an input changed: [3/5] COPY src/ /src/"),
        "{log}"
    );

    // Several files.
    write(c, "src/a.rs", "x");
    write(c, "src/b.rs", "y");
    std::fs::remove_file(c.join("src/c.rs")).unwrap();
    let (_, log) = k.build(c, &["--explain"]);
    assert_eq!(
        misses(&log).first().map(String::as_str),
        Some("src/a.rs changed (and 2 more files)"),
        "{log}"
    );

    // A build arg.
    let (_, log) = k.build(c, &["--explain", "--build-arg", "VERSION=1.3"]);
    let m = misses(&log);
    assert!(
        m.iter()
            .any(|r| r == "build arg or env VERSION changed 1.2→1.3"),
        "{log}"
    );

    // The command.
    write(c, "Dockerfile", &dockerfile("ls -l /src > /list"));
    let (_, log) = k.build(c, &["--explain", "--build-arg", "VERSION=1.3"]);
    let m = misses(&log);
    assert_eq!(
        m.first().map(String::as_str),
        Some("command changed"),
        "{log}"
    );
    assert!(
        m.iter()
            .any(|r| r.starts_with("an input changed: [4/5] RUN ls -l /src")),
        "{log}"
    );

    // The base image (same name, new digest).
    let tar = k.root.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar);
    k.ok(&[
        "import",
        "-c",
        "CMD [\"true\"]",
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    let (_, log) = k.build(c, &["--explain", "--build-arg", "VERSION=1.3"]);
    let m = misses(&log);
    assert!(
        m.iter()
            .any(|r| r.starts_with("base image digest changed: sha256:")),
        "{log}"
    );

    // No change: no explanation; --no-cache: the reason is the flag.
    let (_, log) = k.build(c, &["--explain", "--build-arg", "VERSION=1.3"]);
    assert!(misses(&log).is_empty(), "{log}");
    let (_, log) = k.build(
        c,
        &["--explain", "--no-cache", "--build-arg", "VERSION=1.3"],
    );
    assert!(
        misses(&log).iter().any(|r| r.contains("cache is disabled")),
        "{log}"
    );
    // Without --explain nothing is printed.
    write(c, "src/main.rs", "fn main() { }");
    let (_, log) = k.build(c, &["--build-arg", "VERSION=1.3"]);
    assert!(misses(&log).is_empty(), "{log}");
}
