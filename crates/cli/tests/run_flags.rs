//! `kiln run`'s docker flags beyond the basics, through the real binary: what the process in
//! the container sees (`--env-file`, `--read-only`, `--cap-add`/`--cap-drop`, `--ulimit`,
//! `--security-opt`, relative `-v ./dir:/x`), what is stored (`--label`) and docker's
//! refusals. Needs root and Debian's busybox-static (skipped with a message otherwise,
//! failing under KILN_TEST_STRICT=1).

mod common;
use common::*;

/// A root with the busybox base whose containers are removed when the test ends.
struct Root(Kiln);

impl Root {
    fn new() -> Option<Root> {
        if !can_run(&[]) {
            return None;
        }
        let k = Kiln::new();
        k.seed_local_base();
        Some(Root(k))
    }

    /// `kiln run --rm ARGS… busybox sh -c SCRIPT`: its stdout (asserting success).
    fn sh(&self, args: &[&str], script: &str) -> String {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "sh", "-c", script]);
        self.0.ok(&all)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-aq"]);
        for id in stdout(&ids).split_whitespace() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}

/// Asserts `kiln ARGS` fails with `code` and `message` on stderr.
fn refused(k: &Kiln, args: &[&str], code: i32, message: &str) {
    let out = k.run(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(message),
        "{args:?}: expected {message:?} in:\n{}",
        stderr(&out)
    );
}

#[test]
fn env_file_lines_and_env_wins() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.env",
        "# a comment\n\n  A=from file\nB=b=c\nFROM_CALLER\nUNSET_IN_CALLER\nC=file\n",
    );
    write(dir.path(), "b.env", "D=second\r\n");
    let a = dir.path().join("a.env");
    let b = dir.path().join("b.env");
    let out =
        r.0.cmd()
            .env("FROM_CALLER", "caller's")
            .env_remove("UNSET_IN_CALLER")
            .args(["run", "--rm", "--env-file"])
            .arg(&a)
            .arg("--env-file")
            .arg(&b)
            .args(["-e", "C=flag", "busybox", "sh", "-c"])
            .arg("echo \"$A|$B|$FROM_CALLER|${UNSET_IN_CALLER-unset}|$C|$D\"")
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "from file|b=c|caller's|unset|flag|second"
    );

    write(dir.path(), "bad.env", "OK=1\nA B=1\n");
    let bad = dir.path().join("bad.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            bad.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        "poorly formatted environment: variable 'A B' contains whitespaces",
    );
    write(dir.path(), "noname.env", "=1\n");
    let noname = dir.path().join("noname.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            noname.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        "poorly formatted environment: no variable name on line '=1'",
    );
    let missing = dir.path().join("missing.env");
    refused(
        &r.0,
        &[
            "run",
            "--env-file",
            missing.to_str().unwrap(),
            "busybox",
            "true",
        ],
        2,
        &format!("open {}: no such file or directory", missing.display()),
    );
}

#[test]
fn labels_are_stored_in_the_config() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "labels", "# c\nfrom.file=1\nbare\nboth=file\n");
    let file = dir.path().join("labels");
    r.0.ok(&[
        "run",
        "--name",
        "lab",
        "--label",
        "a=b",
        "-l",
        "both=flag",
        "--label-file",
        file.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    let id = stdout(&r.0.run(&["ps", "-aq", "--no-trunc"]))
        .trim()
        .to_string();
    let config = std::fs::read_to_string(
        r.0.root
            .path()
            .join("containers")
            .join(&id)
            .join("config.json"),
    )
    .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["labels"],
        serde_json::json!({"a": "b", "bare": "", "both": "flag", "from.file": "1"})
    );
}

#[test]
fn relative_bind_sources_are_relative_to_the_cwd() {
    let Some(r) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write(&dir.path().join("data"), "f", "here\n");
    let y = format!(
        "../{}/./data:/y:ro",
        dir.path().file_name().unwrap().to_str().unwrap()
    );
    let out =
        r.0.cmd()
            .current_dir(dir.path())
            .args([
                "run",
                "--rm",
                "-v",
                "./data:/x",
                "-v",
                y.as_str(),
                "busybox",
                "sh",
                "-c",
                "cat /x/f /y/f",
            ])
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "here\nhere\n");
}
