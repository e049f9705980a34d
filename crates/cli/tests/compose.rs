//! Issue 15: `kiln compose config` and `kiln compose version` as a user runs them. The
//! `config` output is pinned by snapshots (testdata/compose/config/CASE/expected.yaml, the
//! project directory written as `${DIR}`); `KILN_UPDATE_SNAPSHOTS=1` rewrites them. No root
//! needed: nothing here touches a container or the store.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cases() -> PathBuf {
    repo_root().join("testdata/compose/config")
}

/// `kiln compose ARGS…` in `dir` with a clean environment (PATH, HOME and `env`).
fn compose(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(kiln_bin());
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/home/user")
        .envs(env.iter().copied())
        .arg("compose")
        .args(args);
    c.output().expect("run kiln compose")
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn snapshot(case: &str, env: &[(&str, &str)], args: &[&str]) {
    let dir = cases().join(case);
    let mut all = args.to_vec();
    all.push("config");
    let out = compose(&dir, env, &all);
    assert!(out.status.success(), "config failed:\n{}", stderr(&out));
    let got = stdout_of(&out).replace(dir.to_str().unwrap(), "${DIR}");
    let again = stdout_of(&compose(&dir, env, &all)).replace(dir.to_str().unwrap(), "${DIR}");
    assert_eq!(got, again, "the output is stable from run to run");
    let expected = dir.join("expected.yaml");
    if std::env::var_os("KILN_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected, &got).unwrap();
    }
    let want = std::fs::read_to_string(&expected).unwrap_or_default();
    assert_eq!(got, want, "snapshot {} differs", expected.display());
}

#[test]
fn issue_15_config_of_the_tutorial_project() {
    snapshot("tutorial", &[("LOG_LEVEL", "debug")], &[]);
}

#[test]
fn issue_15_config_normalises_every_form() {
    snapshot("forms", &[], &["--profile", "jobs"]);
}

#[test]
fn issue_15_config_lists_services_volumes_and_json() {
    let dir = cases().join("tutorial");
    let out = compose(&dir, &[], &["config", "--services"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "api\ndb\n");
    let out = compose(&dir, &[], &["config", "--volumes"]);
    assert_eq!(stdout_of(&out), "db-data\n");
    let out = compose(&dir, &[], &["config", "-q"]);
    assert!(out.status.success());
    assert_eq!(stdout_of(&out), "");
    let out = compose(&dir, &[], &["-p", "other", "config", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["name"], "other");
    assert_eq!(v["services"]["api"]["ports"][0]["published"], "18080");
    assert_eq!(v["volumes"]["db-data"]["name"], "other_db-data");
    // A service named: it and what it depends on.
    let forms = cases().join("forms");
    let out = compose(&forms, &[], &["config", "--services", "worker"]);
    assert_eq!(stdout_of(&out), "web\nworker\n", "{}", stderr(&out));
}

#[test]
fn issue_15_config_errors_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    colour: blue\n",
    );
    let out = compose(dir.path(), &[], &["config", "-q"]);
    assert!(out.status.success());
    let file = dir.path().join("compose.yaml");
    assert_eq!(
        stderr(&out),
        format!(
            "warning: {}:4: services.web.colour: unknown key, ignored\n",
            file.display()
        )
    );

    write(
        dir.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    ports:\n      - 80\n      - \"80:eighty\"\n",
    );
    let out = compose(dir.path(), &[], &["config"]);
    assert_eq!(
        out.status.code(),
        Some(15),
        "docker compose's parse failure"
    );
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:6: services.web.ports[1]: invalid port \"80:eighty\": invalid port \"eighty\": expected a number from 0 to 65535\n",
            file.display()
        )
    );

    let out = compose(dir.path(), &[("TAG", "x")], &["-f", "nope.yaml", "config"]);
    assert_eq!(
        out.status.code(),
        Some(14),
        "docker compose's file not found"
    );
    assert!(stderr(&out).starts_with(&format!(
        "error: cannot read {}: ",
        dir.path().join("nope.yaml").display()
    )));

    let empty = tempfile::tempdir().unwrap();
    let out = compose(empty.path(), &[], &["config"]);
    assert_eq!(out.status.code(), Some(14));
    assert_eq!(
        stderr(&out),
        "error: no configuration file provided: not found\n"
    );
}

#[test]
fn issue_15_config_reads_a_file_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(kiln_bin());
    c.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["compose", "-p", "piped", "-f", "-", "config", "--services"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"services:\n  one:\n    image: busybox\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "one\n");
}

#[test]
fn issue_15_compose_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = compose(dir.path(), &[], &["version"]);
    assert!(out.status.success());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        stdout_of(&out),
        format!("kiln compose version v{version}\n")
    );
    let out = compose(dir.path(), &[], &["version", "--short"]);
    assert_eq!(stdout_of(&out), format!("{version}\n"));
}
