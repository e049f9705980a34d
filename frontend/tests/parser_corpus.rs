//! Runs BuildKit's parser and shell-lexer test vectors (see `testdata/parser/README.md`).

use kiln_frontend::parser::parse;
use kiln_frontend::shell::Lexer;
use std::path::PathBuf;

/// Cases known to fail, with the reason. Empty when the corpus passes entirely.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

fn corpus() -> PathBuf {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/parser");
    if shared.is_dir() {
        shared
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/parser")
    }
}

fn known(name: &str) -> bool {
    KNOWN_FAILURES.iter().any(|(n, _)| *n == name)
}

#[test]
fn testfiles_dump_like_buildkit() {
    let dir = corpus().join("testfiles");
    let mut failed = vec![];
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read(p.join("Dockerfile")).unwrap();
        let want = std::fs::read_to_string(p.join("result")).unwrap();
        n += 1;
        let got = match parse(&String::from_utf8_lossy(&src)) {
            Ok(d) => d.dump(),
            Err(e) => format!("error: {e:?}"),
        };
        if got != want && !known(&name) {
            failed.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
        }
    }
    assert!(n > 30, "corpus not found in {}", dir.display());
    assert!(
        failed.is_empty(),
        "{} of {n} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn negative_testfiles_fail() {
    let dir = corpus().join("testfiles-negative");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let src = std::fs::read(p.join("Dockerfile")).unwrap();
        assert!(
            parse(&String::from_utf8_lossy(&src)).is_err(),
            "{} parsed",
            p.display()
        );
    }
}

#[test]
fn instruction_lines() {
    let src = std::fs::read_to_string(corpus().join("testfile-line/Dockerfile")).unwrap();
    let d = parse(&src).unwrap();
    let lines: Vec<(u32, u32)> = d
        .instructions
        .iter()
        .map(|i| (i.start_line, i.end_line))
        .collect();
    // BuildKit's TestLineInformation.
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}

fn env_of(pairs: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn env_var_test() {
    let src = std::fs::read_to_string(corpus().join("envVarTest")).unwrap();
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let lookup = env_of(&env);
    let lex = Lexer::new('\\');
    let mut failed = vec![];
    for line in src.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.splitn(3, '|').collect();
        if f.len() != 3 || f[0].trim() == "W" {
            continue;
        }
        let (input, want) = (f[1].trim(), f[2].trim());
        let got = lex.process_word(input, &lookup);
        let ok = match &got {
            Ok(w) => w == want,
            Err(_) => want == "error",
        };
        if !ok {
            failed.push(format!("{input:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn words_test() {
    let src = std::fs::read_to_string(corpus().join("wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = vec![];
    let lex = Lexer::new('\\');
    let mut failed = vec![];
    for line in src.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let Some((input, want)) = line.split_once('|') else {
            continue;
        };
        let (input, want) = (input.trim(), want.trim_start());
        let got = lex.process_words(input, &env_of(&env));
        let ok = match &got {
            Ok(ws) => want != "error" && ws.join(",") == want,
            Err(_) => want == "error",
        };
        if !ok {
            failed.push(format!("{input:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
