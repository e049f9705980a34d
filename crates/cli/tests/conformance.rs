//! The shared conformance corpus (../shared/conformance, results recorded from BuildKit),
//! run against kiln. Every case must pass except those in `KNOWN_FAILURES`, each with the
//! issue that will fix it; a known failure that starts passing fails the test too, so the
//! list stays true. Skipped, with a message, when the corpus is not beside the repository.

mod common;
use common::*;
use std::process::Command;

const KNOWN_FAILURES: &[(&str, &str)] = &[];

#[test]
fn conformance_corpus() {
    let corpus = repo_root().join("../shared/conformance");
    if !corpus.join("run.sh").exists() {
        kiln_testutil::skip(format_args!("{} is not there", corpus.display()));
        return;
    }
    if !can_run(&["docker-registry", "python3"]) {
        return;
    }
    // The corpus's Dockerfiles name 127.0.0.1:5000: use the registry there, or start one.
    let _registry = if std::net::TcpStream::connect("127.0.0.1:5000").is_ok() {
        None
    } else {
        Some(Registry::start_at("127.0.0.1:5000"))
    };
    let k = Kiln::new();
    let root = k.root.path().to_str().unwrap().to_string();
    let kiln = kiln_bin();
    let seed = Command::new("bash")
        .arg(corpus.join("seed-base.sh"))
        .arg(&kiln)
        .args(["--root", &root])
        .output()
        .unwrap();
    assert!(seed.status.success(), "seed-base.sh: {}", stderr(&seed));
    let run = Command::new("bash")
        .arg(corpus.join("run.sh"))
        .args(["--timeout", "120"])
        .arg(&kiln)
        .args(["--root", &root])
        .output()
        .unwrap();
    let out = stdout(&run);
    println!("{out}");
    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    let mut passed = 0;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("PASS ") {
            passed += 1;
            if KNOWN_FAILURES.iter().any(|(k, _)| *k == name) {
                fixed.push(name.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let name = rest.split(':').next().unwrap_or(rest);
            if !KNOWN_FAILURES.iter().any(|(k, _)| *k == name) {
                unexpected.push(line.to_string());
            }
        }
    }
    eprintln!(
        "conformance: {passed} cases pass, {} known failures",
        KNOWN_FAILURES.len()
    );
    assert!(passed > 0, "run.sh ran no case:\n{out}\n{}", stderr(&run));
    assert!(
        unexpected.is_empty(),
        "cases that must pass failed:\n{}",
        unexpected.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "known failures now pass, remove them from KNOWN_FAILURES: {fixed:?}"
    );
}
