//! Issue 11 item 8: a listing whose reader has gone away (`kiln images | head -1`,
//! `kiln ps -a | true`) ends quietly with exit 0, as ripgrep and docker do, instead of
//! panicking with exit 101 and a backtrace.

mod common;

use common::*;
use std::process::Stdio;

/// Runs kiln with `args` and stdout a pipe whose read end is closed before kiln starts;
/// returns (exit status, stderr).
fn run_into_closed_pipe(k: &Kiln, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = k
        .cmd()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run kiln");
    (out.status, stderr(&out))
}

#[test]
fn issue_11_listings_end_quietly_on_a_closed_pipe() {
    if !can_run(&[]) {
        return;
    }
    let k = Kiln::new();
    // A one-file root filesystem is enough for an image to list.
    let rootfs = tempfile::tempdir().unwrap();
    write(rootfs.path(), "etc/hostname", "kiln\n");
    let tar = rootfs.path().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["-cf"])
        .arg(&tar)
        .arg("etc")
        .status()
        .unwrap();
    assert!(st.success());
    k.ok(&["import", tar.to_str().unwrap(), "listed:0"]);
    // Many rows: more than a pipe buffer would hide if the reader were still there.
    for i in 1..200 {
        k.ok(&["tag", "listed:0", &format!("listed:{i}")]);
    }
    for args in [
        &["images"][..],
        &["images", "-q"],
        &["ps", "-a"],
        &["history", "listed:0"],
        &["inspect", "listed:0"],
        &["volume", "ls"],
    ] {
        let (status, err) = run_into_closed_pipe(&k, args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "kiln {args:?} complained about the closed pipe:\n{err}"
        );
        assert_eq!(status.code(), Some(0), "kiln {args:?}: {status}\n{err}");
    }
}
