//! End to end: the newer Dockerfile syntax of ../shared/conformance/cases-newer-syntax.md
//! (heredocs, COPY --parents/--exclude/--link, RUN --network/--mount, ADD URL and
//! compressed tars, --build-context, --secret, --check). Each test builds on a fresh busybox
//! base in a real registry and exports the root filesystem with `-o type=local` to check
//! files. Needs root and Debian's docker-registry and busybox-static.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

struct Env {
    _reg: Registry,
    k: Kiln,
    base: String,
    dir: tempfile::TempDir,
}

fn setup() -> Option<Env> {
    if !can_run(&["docker-registry"]) {
        return None;
    }
    let reg = Registry::start();
    let k = Kiln::new();
    let base = k.seed_base(&reg);
    Some(Env {
        _reg: reg,
        k,
        base,
        dir: tempfile::tempdir().unwrap(),
    })
}

impl Env {
    /// Writes a context (Dockerfile with `BASE` replaced + files), builds it with `extra`
    /// flags and exports the root filesystem; returns its path.
    fn build(
        &self,
        name: &str,
        dockerfile: &str,
        files: &[(&str, &str)],
        extra: &[&str],
    ) -> std::path::PathBuf {
        let out = self.try_build(name, dockerfile, files, extra);
        assert!(
            out.status.success(),
            "{name}: build failed:\n{}",
            stderr(&out)
        );
        self.dir.path().join(name).join("out")
    }

    fn try_build(
        &self,
        name: &str,
        dockerfile: &str,
        files: &[(&str, &str)],
        extra: &[&str],
    ) -> std::process::Output {
        let ctx = self.dir.path().join(name).join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            dockerfile.replace("BASE", &self.base),
        )
        .unwrap();
        for (p, c) in files {
            let f = ctx.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, c).unwrap();
        }
        let out = self.dir.path().join(name).join("out");
        let dest = format!("type=local,dest={}", out.display());
        let mut args = vec!["build", "--progress", "plain", "-o", &dest];
        args.extend_from_slice(extra);
        let ctx_s = ctx.to_str().unwrap().to_string();
        args.push(&ctx_s);
        self.k.run(&args)
    }
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn mode(root: &Path, p: &str) -> u32 {
    std::fs::symlink_metadata(root.join(p.trim_start_matches('/')))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn exists(root: &Path, p: &str) -> bool {
    root.join(p.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok()
}

#[test]
fn heredocs_run_and_copy() {
    let Some(e) = setup() else { return };
    let r = e.build(
        "heredoc",
        "FROM BASE\nRUN <<EOF\necho \"line one\" > /heredoc.txt\necho \"HOME is $HOME\" >> /heredoc.txt\nEOF\nRUN <<-EOF\n\techo tab-stripped > /tabs.txt\n\tEOF\nRUN <<FILE1 cat > /file1 && <<FILE2 cat > /file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\nARG NAME=kiln\nCOPY <<EOF /greeting.txt\nhello $NAME\nEOF\nCOPY <<'EOF' /literal.txt\nhello $NAME\nEOF\nWORKDIR /dest\nCOPY <<EOF <<EOF2 double/\nfirst file\nEOF\nsecond file\nEOF2\nCOPY --chmod=755 <<EOF /usr/local/bin/hello\n#!/bin/sh\necho hello\nEOF\n",
        &[],
        &[],
    );
    assert_eq!(read(&r, "/heredoc.txt"), "line one\nHOME is /root\n");
    assert_eq!(read(&r, "/tabs.txt"), "tab-stripped\n");
    assert_eq!(read(&r, "/file1"), "I am\nfirst\n");
    assert_eq!(read(&r, "/file2"), "I am\nsecond\n");
    assert_eq!(read(&r, "/greeting.txt"), "hello kiln\n");
    assert_eq!(read(&r, "/literal.txt"), "hello $NAME\n");
    assert_eq!(read(&r, "/dest/double/EOF"), "first file\n");
    assert_eq!(read(&r, "/dest/double/EOF2"), "second file\n");
    assert_eq!(mode(&r, "/usr/local/bin/hello"), 0o755);
    assert_eq!(mode(&r, "/greeting.txt"), 0o644);
}

#[test]
fn heredoc_run_with_shebang() {
    // Needs RUN --mount=type=bind of a file-op vertex (the lead's RUN --mount work).
    let Some(e) = setup() else { return };
    let r = e.build(
        "shebang",
        "FROM BASE\nRUN <<EOF\n#!/bin/sh -e\necho from-shebang > /shebang.txt\nEOF\n",
        &[],
        &[],
    );
    assert_eq!(read(&r, "/shebang.txt"), "from-shebang\n");
    assert!(!exists(&r, "/dev/pipes/EOF"));
}

#[test]
fn copy_parents_exclude_link() {
    let Some(e) = setup() else { return };
    let files = [
        ("x/a.txt", "xa"),
        ("y/a.txt", "ya"),
        ("x/y/b.txt", "b"),
        ("x/y/c.txt", "c"),
        ("src/s.txt", "s"),
        ("src/m/t.txt", "t"),
        ("src/m/n/u.txt", "u"),
        ("src/m/skip.md", "skip"),
        ("main.c", "int main;"),
        ("README.md", "readme"),
        ("docs/guide.md", "g"),
        ("docs/keep.txt", "k"),
        ("tmp/x", "tmp"),
        ("logs/a.log", "a"),
        ("logs/b.txt", "b"),
        ("file.txt", "linked\n"),
    ];
    let r = e.build(
        "copyflags",
        "FROM BASE\nCOPY --parents x/a.txt y/a.txt /parents/\nCOPY --parents ./x/./y/*.txt /pivot/\nCOPY --parents ./src/**/*.txt /deep/\nCOPY --exclude=*.md --exclude=docs/*.md --exclude=tmp . /app/\nADD --exclude=*.log logs /logs/\nCOPY --link file.txt /linked/file.txt\nRUN cat /linked/file.txt > /after-link.txt\n",
        &files,
        &[],
    );
    assert_eq!(read(&r, "/parents/x/a.txt"), "xa");
    assert_eq!(read(&r, "/parents/y/a.txt"), "ya");
    assert_eq!(read(&r, "/pivot/y/b.txt"), "b");
    assert_eq!(read(&r, "/pivot/y/c.txt"), "c");
    assert!(!exists(&r, "/pivot/x"));
    for p in [
        "/deep/src/s.txt",
        "/deep/src/m/t.txt",
        "/deep/src/m/n/u.txt",
    ] {
        assert!(exists(&r, p), "{p}");
    }
    assert!(!exists(&r, "/deep/src/m/skip.md"));
    for p in [
        "/app/Dockerfile",
        "/app/main.c",
        "/app/docs/keep.txt",
        "/app/logs/a.log",
        "/app/logs/b.txt",
    ] {
        assert!(exists(&r, p), "{p}");
    }
    for p in ["/app/README.md", "/app/docs/guide.md", "/app/tmp"] {
        assert!(!exists(&r, p), "{p}");
    }
    assert!(exists(&r, "/logs/b.txt") && !exists(&r, "/logs/a.log"));
    assert_eq!(read(&r, "/after-link.txt"), "linked\n");
}

#[test]
fn run_network_and_tmpfs_size() {
    // run-mount-tmpfs-size needs the lead's RUN --mount=type=tmpfs.
    let Some(e) = setup() else { return };
    let r = e.build(
        "network",
        "FROM BASE\nRUN --network=none echo ok > /net.txt\nRUN --network=default echo default >> /net.txt\nRUN mkdir /t\nRUN --mount=type=tmpfs,target=/t,size=1m touch /t/x && echo ok > /sized.txt\n",
        &[],
        &[],
    );
    assert_eq!(read(&r, "/net.txt"), "ok\ndefault\n");
    assert_eq!(read(&r, "/sized.txt"), "ok\n");
    assert_eq!(std::fs::read_dir(r.join("t")).unwrap().count(), 0);
}

#[test]
fn chmod_invalid_fails_with_buildkit_message() {
    let Some(e) = setup() else { return };
    let out = e.try_build(
        "chmodbad",
        "FROM BASE\nCOPY --chmod=64a file.txt /f\n",
        &[("file.txt", "x")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        ),
        "{}",
        stderr(&out)
    );
    let r = e.build(
        "chmodsuid",
        "FROM BASE\nCOPY --chmod=4750 file.txt /f\n",
        &[("file.txt", "x")],
        &[],
    );
    assert_eq!(mode(&r, "/f"), 0o4750);
}

/// A loopback HTTP server answering every request with `body`; returns its base URL.
fn serve(body: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_with_checksum() {
    let Some(e) = setup() else { return };
    let url = serve(b"hello\n");
    let sum = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let r = e.build(
        "addurl",
        &format!(
            "FROM BASE\nADD --checksum={sum} {url}/files/hello.txt /dl/\nADD {url}/x /named\n"
        ),
        &[],
        &[],
    );
    assert_eq!(read(&r, "/dl/hello.txt"), "hello\n");
    assert_eq!(mode(&r, "/dl/hello.txt"), 0o600);
    let md = std::fs::metadata(r.join("dl/hello.txt")).unwrap();
    assert_eq!(md.mtime(), 1445412480);
    assert_eq!(read(&r, "/named"), "hello\n");
    let bad = format!("sha256:{}", "0".repeat(64));
    let out = e.try_build(
        "addurlbad",
        &format!("FROM BASE\nADD --checksum={bad} {url}/files/hello.txt /dl/\n"),
        &[],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
}

/// Like [`serve`], with a body the test can change.
fn serve_changing(body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let b = body.lock().unwrap().clone();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = s.write_all(&b);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_without_checksum_refetches_changed_content() {
    let Some(e) = setup() else { return };
    let body = std::sync::Arc::new(std::sync::Mutex::new(b"one\n".to_vec()));
    let url = serve_changing(body.clone());
    let df = format!("FROM BASE\nADD {url}/f.txt /f.txt\n");
    let r = e.build("addurl-a", &df, &[], &[]);
    assert_eq!(read(&r, "/f.txt"), "one\n");
    *body.lock().unwrap() = b"two\n".to_vec();
    let r = e.build("addurl-b", &df, &[], &[]);
    assert_eq!(
        read(&r, "/f.txt"),
        "two\n",
        "a changed URL body is fetched again"
    );
}

#[test]
fn add_extracts_bzip2_and_xz_tars() {
    let Some(e) = setup() else { return };
    let ctx = e.dir.path().join("tars");
    std::fs::create_dir_all(ctx.join("content/sub")).unwrap();
    std::fs::write(ctx.join("content/sub/f.txt"), "in tar\n").unwrap();
    for (flag, name) in [("-j", "t.tar.bz2"), ("-J", "t.tar.xz")] {
        let st = std::process::Command::new("tar")
            .arg(flag)
            .arg("-cf")
            .arg(ctx.join(name))
            .arg("-C")
            .arg(ctx.join("content"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    }
    let bz = std::fs::read(ctx.join("t.tar.bz2")).unwrap();
    let xz = std::fs::read(ctx.join("t.tar.xz")).unwrap();
    let bz: &'static str = Box::leak(unsafe { String::from_utf8_unchecked(bz) }.into_boxed_str());
    let xz: &'static str = Box::leak(unsafe { String::from_utf8_unchecked(xz) }.into_boxed_str());
    let r = e.build(
        "addtars",
        "FROM BASE\nADD t.tar.bz2 /bz/\nADD t.tar.xz /xz/\n",
        &[("t.tar.bz2", bz), ("t.tar.xz", xz)],
        &[],
    );
    assert_eq!(read(&r, "/bz/sub/f.txt"), "in tar\n");
    assert_eq!(read(&r, "/xz/sub/f.txt"), "in tar\n");
}

#[test]
fn build_contexts_dir_and_image() {
    let Some(e) = setup() else { return };
    let extra = e.dir.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("x.txt"), "from named context\n").unwrap();
    let c1 = format!("extra={}", extra.display());
    let c2 = format!("base=docker-image://{}", e.base);
    let r = e.build(
        "namedctx",
        "FROM base\nCOPY --from=extra x.txt /x.txt\nRUN --mount=from=extra,target=/mnt cat /mnt/x.txt > /via-mount.txt\n",
        &[],
        &["--build-context", &c1, "--build-context", &c2],
    );
    assert_eq!(read(&r, "/x.txt"), "from named context\n");
    // The bind mount needs the lead's RUN --mount work.
    assert_eq!(read(&r, "/via-mount.txt"), "from named context\n");
    let out = e.try_build(
        "namedbad",
        "FROM BASE\n",
        &[],
        &["--build-context", "x=/nonexistent-dir"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn secret_mount() {
    // Needs the lead's RUN --mount=type=secret and WorkerConfig.secrets wiring.
    let Some(e) = setup() else { return };
    let s = e.dir.path().join("token");
    std::fs::write(&s, "s3cr3t").unwrap();
    let arg = format!("id=token,src={}", s.display());
    let r = e.build(
        "secret",
        "FROM BASE\nRUN --mount=type=secret,id=token,required cat /run/secrets/token > /seen.txt\n",
        &[],
        &["--secret", &arg],
    );
    assert_eq!(read(&r, "/seen.txt"), "s3cr3t");
    // The value never reaches a layer (an empty mount point may; see the next test).
    if exists(&r, "/run/secrets/token") {
        assert_eq!(read(&r, "/run/secrets/token"), "");
    }
    let out = e.try_build(
        "secretbad",
        "FROM BASE\n",
        &[],
        &["--secret", "id=x,src=/nonexistent"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_reports_lint_warnings_without_building() {
    let Some(e) = setup() else { return };
    let out = e.try_build(
        "check",
        "FROM BASE AS Builder\nMAINTAINER me\nENV key value\nCMD echo hi\n",
        &[],
        &["--check"],
    );
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for rule in [
        "StageNameCasing",
        "MaintainerDeprecated",
        "LegacyKeyValueFormat",
        "JSONArgsRecommended",
    ] {
        assert!(log.contains(rule), "{rule}:\n{log}");
    }
    assert!(log.contains("Dockerfile:2"), "{log}");
    assert!(
        log.contains("https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"),
        "{log}"
    );
    assert!(
        !e.dir.path().join("check/out").exists(),
        "--check must not build"
    );
    let out = e.try_build(
        "checkerr",
        "# check=error=true\nFROM BASE\nMAINTAINER me\n",
        &[],
        &["--check"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn secret_mount_point_is_removed() {
    // Current BuildKit removes the mount points it created for RUN --mount (worker side).
    let Some(e) = setup() else { return };
    let s = e.dir.path().join("token");
    std::fs::write(&s, "s3cr3t").unwrap();
    let arg = format!("id=token,src={}", s.display());
    let r = e.build(
        "secretpoint",
        "FROM BASE\nRUN --mount=type=secret,id=token true\n",
        &[],
        &["--secret", &arg],
    );
    assert!(!exists(&r, "/run/secrets/token"));
    assert!(!exists(&r, "/run/secrets"));
}
