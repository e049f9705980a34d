//! `kiln logs` through the real binary: docker's json-file log of foreground and detached
//! containers, `--since`/`--until`, rotation with `--log-opt max-size,max-file`, and
//! `--log-driver none`. Needs root and Debian's busybox-static (skipped with a message
//! otherwise, failing under KILN_TEST_STRICT=1).

mod common;
use common::*;
use std::io::Write;
use std::process::Stdio;

/// `kiln inspect NAME`'s one object.
fn inspect(k: &Kiln, name: &str) -> serde_json::Value {
    let out = k.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

#[test]
fn a_foreground_runs_output_is_printed_and_in_logs_as_json_lines() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let out = k.run(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n", "still printed");
    assert_eq!(stderr(&out), "oops\n");
    let logs = k.run(&["logs", "fg"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs), "hello\n");
    assert_eq!(stderr(&logs), "oops\n");

    let v = inspect(k, "fg");
    assert_eq!(
        v["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {}})
    );
    let path = v["LogPath"].as_str().unwrap().to_string();
    let id = v["Id"].as_str().unwrap();
    assert!(path.ends_with(&format!("/{id}/{id}-json.log")), "{path}");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    records.sort_by_key(|r| r["stream"].as_str().unwrap().to_string());
    for r in &records {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["log", "stream", "time"], "{r}");
        assert!(r["time"].as_str().unwrap().ends_with('Z'), "{r}");
    }
    assert_eq!(records[0]["log"], "oops\n");
    assert_eq!(records[0]["stream"], "stderr");
    assert_eq!(records[1]["log"], "hello\n");
    assert_eq!(records[1]["stream"], "stdout");

    // With -i: stdin still reaches it, its output is recorded too.
    let mut child = k
        .cmd()
        .args(["run", "-i", "--name", "fi", "busybox", "sh", "-c"])
        .arg("read x; echo got $x")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"input\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "got input\n");
    assert_eq!(k.ok(&["logs", "fi"]), "got input\n");
}

#[test]
fn since_and_until_pick_a_window_of_the_log() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "--name",
        "win",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 1.2; echo middle; sleep 1.2; echo late",
    ]);
    let stamped = k.ok(&["logs", "-t", "win"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split_once(' ').unwrap().0)
        .collect();
    assert_eq!(times.len(), 3, "{stamped}");
    let logs = |args: &[&str]| {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push("win");
        k.ok(&all)
    };
    // RFC 3339 times, both ends inclusive.
    assert_eq!(logs(&["--since", times[1]]), "middle\nlate\n");
    assert_eq!(logs(&["--until", times[1]]), "early\nmiddle\n");
    assert_eq!(
        logs(&["--since", times[1], "--until", times[1]]),
        "middle\n"
    );
    // A Unix timestamp: the second after "early".
    let early = humantime::parse_rfc3339(times[0]).unwrap();
    let secs = early
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    assert_eq!(
        logs(&["--since", &secs.to_string()]),
        "middle\nlate\n",
        "{stamped}"
    );
    // Durations before now.
    assert_eq!(logs(&["--since", "10m"]), "early\nmiddle\nlate\n");
    assert_eq!(logs(&["--until", "10m"]), "");
    assert_eq!(logs(&["--since", "1h", "-f"]), "early\nmiddle\nlate\n");
    let bad = k.run(&["logs", "--since", "soon", "win"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains(
            "invalid value for \"since\": failed to parse value as time or duration: \"soon\""
        ),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn rotation_keeps_max_file_files_and_logs_shows_the_newest_in_order() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    k.ok(&[
        "run",
        "-d",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
    ]);
    assert_eq!(k.ok(&["wait", "rot"]).trim(), "0");
    let v = inspect(k, "rot");
    assert_eq!(
        v["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}})
    );
    let path = v["LogPath"].as_str().unwrap().to_string();
    let dir = std::path::Path::new(&path).parent().unwrap();
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    logs.sort();
    let base = std::path::Path::new(&path)
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert_eq!(
        logs,
        [base.to_string(), format!("{base}.1"), format!("{base}.2")]
    );
    let out = k.ok(&["logs", "rot"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() > 10 && lines.len() < 100,
        "about three files' worth: {}",
        lines.len()
    );
    let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
    let want: Vec<String> = (first..300).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "the newest lines, in order, across the files");
    assert_eq!(
        k.ok(&["logs", "--tail", "2", "rot"]),
        "line 298\nline 299\n"
    );

    // Bad options: refused before anything is made.
    for (opt, msg) in [
        ("foo=1", "unknown log opt 'foo' for json-file log driver"),
        ("max-file=0", "max-file cannot be less than 1"),
        (
            "compress=true",
            "log opt 'compress=true' is not supported by kiln",
        ),
    ] {
        let out = k.run(&["run", "--rm", "--log-opt", opt, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(2), "{opt}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{opt}: {}", stderr(&out));
    }
}

#[test]
fn the_none_driver_prints_but_logs_cannot_read() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    let k = &r.0;
    let out = k.run(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "shown",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "shown\n");
    let logs = k.run(&["logs", "quiet"]);
    assert_eq!(logs.status.code(), Some(1));
    assert_eq!(stdout(&logs), "");
    assert!(
        stderr(&logs).contains("configured logging driver does not support reading"),
        "{}",
        stderr(&logs)
    );
    k.ok(&[
        "run",
        "-d",
        "--name",
        "quiet-d",
        "--log-driver",
        "none",
        "busybox",
        "true",
    ]);
    let logs = k.run(&["logs", "quiet-d"]);
    assert_eq!(logs.status.code(), Some(1));
    let v = inspect(k, "quiet-d");
    assert_eq!(v["HostConfig"]["LogConfig"]["Type"], "none");
    let out = k.run(&["run", "--rm", "--log-driver", "syslog", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
