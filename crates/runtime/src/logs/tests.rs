use super::*;
use crate::container::{Config, State};
use kiln_executor::Stream;
use std::time::UNIX_EPOCH;

/// An exited container in a temporary directory, with `log` as its logging config.
fn container(dir: &Path, log: LogConfig) -> Container {
    let id = "c".repeat(64);
    let dir = dir.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let c = Container {
        config: Config {
            log,
            ..Config::for_test(&id, "ctr", &dir)
        },
        state: State {
            status: Status::Exited,
            ..State::default()
        },
        dir,
    };
    c.save_state().unwrap();
    c
}

/// `logs` with `opts`: (stdout, stderr).
fn logs(c: &Container, opts: &LogOptions) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    c.logs(opts, &mut out, &mut err).unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn records_are_docker_json_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path(), LogConfig::default());
    let mut w = c.log_writer().unwrap();
    w.write(Stream::Stdout, b"one\ntwo").unwrap();
    w.write(Stream::Stderr, b"err \"q\"\n").unwrap();
    w.write(Stream::Stdout, b" more\n\xff<b>\n").unwrap();
    let path = dir
        .path()
        .join("c".repeat(64))
        .join(format!("{}-json.log", "c".repeat(64)));
    assert_eq!(c.log_path().unwrap(), path);
    let records = lines(&path);
    assert_eq!(records.len(), 5);
    for r in &records {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["log", "stream", "time"], "{r}");
        let time = r["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }
    assert_eq!(records[0]["log"], "one\n");
    assert_eq!(records[1]["log"], "two", "a partial line has no newline");
    assert_eq!(records[2]["log"], "err \"q\"\n");
    assert_eq!(records[2]["stream"], "stderr");
    assert_eq!(
        records[4]["log"], "\u{fffd}<b>\n",
        "not UTF-8: replaced, as docker"
    );
    let (out, err) = logs(&c, &LogOptions::default());
    assert_eq!(out, "one\ntwo more\n\u{fffd}<b>\n");
    assert_eq!(err, "err \"q\"\n");
}

#[test]
fn timestamps_tail_and_details() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path(), LogConfig::default());
    let mut w = c.log_writer().unwrap();
    w.write(Stream::Stdout, b"a\nb\nc").unwrap();
    w.write(Stream::Stdout, b"c\n").unwrap();
    let (out, _) = logs(
        &c,
        &LogOptions {
            tail: Some(3),
            ..LogOptions::default()
        },
    );
    assert_eq!(
        out, "b\ncc\n",
        "the last three records (a partial line is one)"
    );
    let (out, _) = logs(
        &c,
        &LogOptions {
            timestamps: true,
            details: true,
            ..LogOptions::default()
        },
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 3, "{out}");
    let (time, rest) = l[2].split_once(' ').unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{out}");
    assert_eq!(
        rest, " cc",
        "one prefix per line, details' empty attributes and a space"
    );
}

/// Writes a record with the given time (seconds since the epoch) by hand.
fn record_at(path: &Path, secs: u64, text: &str) {
    let mut out = Vec::new();
    let time = rfc3339_nanos(UNIX_EPOCH + Duration::from_secs(secs));
    format::encode(&mut out, false, &time, text.as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(&out).unwrap();
}

#[test]
fn since_and_until_window() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path(), LogConfig::default());
    let path = c.json_log();
    for (t, text) in [(100, "a\n"), (200, "b\n"), (300, "c\n"), (400, "d\n")] {
        record_at(&path, t, text);
    }
    let at = |s| Some(UNIX_EPOCH + Duration::from_secs(s));
    let window = |since, until| {
        logs(
            &c,
            &LogOptions {
                since,
                until,
                ..LogOptions::default()
            },
        )
        .0
    };
    assert_eq!(window(at(200), None), "b\nc\nd\n", "since is inclusive");
    assert_eq!(window(None, at(300)), "a\nb\nc\n", "until is inclusive");
    assert_eq!(window(at(150), at(350)), "b\nc\n");
    assert_eq!(window(at(500), None), "");
    // Following a container that has ended stops at the end, within the window too.
    let followed = logs(
        &c,
        &LogOptions {
            follow: true,
            since: at(300),
            ..LogOptions::default()
        },
    );
    assert_eq!(followed.0, "c\nd\n");
}

#[test]
fn rotation_keeps_max_file_files_and_logs_reads_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(None, &["max-size=100".into(), "max-file=3".into()]).unwrap();
    let c = container(dir.path(), config);
    let mut w = c.log_writer().unwrap();
    for i in 0..40 {
        w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
            .unwrap();
    }
    let path = c.json_log();
    let mut names: Vec<String> = std::fs::read_dir(&c.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    names.sort();
    let base = format!("{}-json.log", c.config.id);
    assert_eq!(
        names,
        [base.clone(), format!("{base}.1"), format!("{base}.2")]
    );
    for p in [
        path.clone(),
        writer::rotated(&path, 1),
        writer::rotated(&path, 2),
    ] {
        let len = std::fs::metadata(&p).unwrap().len();
        // At most one record over the limit, as docker.
        assert!(len < 100 + 90, "{}: {len}", p.display());
    }
    let (out, _) = logs(&c, &LogOptions::default());
    let got: Vec<&str> = out.lines().collect();
    assert!(
        got.len() < 40 && got.len() >= 3,
        "older files dropped: {out}"
    );
    let first: usize = got[0].strip_prefix("line ").unwrap().parse().unwrap();
    let want: Vec<String> = (first..40).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want, "the newest lines, in order, across the files");
    // A writer opened again (a restart) goes on with the same files.
    let mut w = c.log_writer().unwrap();
    w.write(Stream::Stdout, b"again\n").unwrap();
    let (out, _) = logs(
        &c,
        &LogOptions {
            tail: Some(2),
            ..LogOptions::default()
        },
    );
    assert_eq!(out, "line 39\nagain\n");
}

#[test]
fn max_file_one_drops_the_full_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(None, &["max-size=50".into()]).unwrap();
    let c = container(dir.path(), config);
    let mut w = c.log_writer().unwrap();
    for i in 0..10 {
        w.write(Stream::Stdout, format!("l{i}\n").as_bytes())
            .unwrap();
    }
    assert!(!writer::rotated(&c.json_log(), 1).exists());
    let (out, _) = logs(&c, &LogOptions::default());
    assert!(out.ends_with("l9\n") && !out.contains("l0\n"), "{out}");
}

#[test]
fn follow_goes_on_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    // Room for every record (seven files): a reader slowed down by a loaded machine falls
    // behind by several rotations but finds every file still there, in order.
    let config = LogConfig::new(None, &["max-size=60".into(), "max-file=10".into()]).unwrap();
    let mut c = container(dir.path(), config);
    // "Running": supervised by this process.
    c.state.status = Status::Running;
    c.state.supervisor = Some(kiln_executor::HostProcess::current().unwrap());
    c.save_state().unwrap();
    let mut w = c.log_writer().unwrap();
    w.write(Stream::Stdout, b"first\n").unwrap();
    let reader = c.clone();
    let t = std::thread::spawn(move || {
        logs(
            &reader,
            &LogOptions {
                follow: true,
                ..LogOptions::default()
            },
        )
        .0
    });
    // Two rotations at a time (every record fills a file): the reader finds the file after
    // the one it read among the rotated ones, not only the newest.
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(30));
        for j in [2 * i, 2 * i + 1] {
            w.write(Stream::Stdout, format!("next {j}\n").as_bytes())
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    c.state.status = Status::Exited;
    c.save_state().unwrap();
    let out = t.join().unwrap();
    assert_eq!(
        out,
        "first\nnext 0\nnext 1\nnext 2\nnext 3\nnext 4\nnext 5\n"
    );
}

#[test]
fn an_older_kilns_cri_log_is_still_read_first() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path(), LogConfig::default());
    std::fs::write(
        c.dir.join(LEGACY_LOG_FILE),
        "2026-11-18T11:06:40.000000005Z stdout F old\n\
         2026-11-18T11:06:41.000000000Z stderr P par\n\
         2026-11-18T11:06:41.000000000Z stderr F tial\n\
         garbage\n",
    )
    .unwrap();
    c.log_writer()
        .unwrap()
        .write(Stream::Stdout, b"new\n")
        .unwrap();
    let (out, err) = logs(&c, &LogOptions::default());
    assert_eq!(out, "old\nnew\n");
    assert_eq!(err, "partial\n");
    let (out, _) = logs(
        &c,
        &LogOptions {
            timestamps: true,
            ..LogOptions::default()
        },
    );
    assert!(
        out.starts_with("2026-11-18T11:06:40.000000005Z old\n"),
        "{out}"
    );
}

#[test]
fn the_none_driver_records_nothing_and_logs_fails() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path(), LogConfig::new(Some("none"), &[]).unwrap());
    c.log_writer()
        .unwrap()
        .write(Stream::Stdout, b"x\n")
        .unwrap();
    assert!(!c.json_log().exists());
    assert_eq!(c.log_path(), None);
    let e = c
        .logs(&LogOptions::default(), &mut Vec::new(), &mut Vec::new())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "configured logging driver does not support reading"
    );
}

#[test]
fn log_config_is_checked_as_docker_does() {
    let opts = |o: &[&str]| o.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let c = LogConfig::new(Some("local"), &opts(&["max-size=10m", "max-file=3"])).unwrap();
    assert_eq!(c.driver, LogDriver::JsonFile);
    assert_eq!(c.max_size, Some(10_000_000));
    assert_eq!(c.max_file, 3);
    assert_eq!(
        c.inspect(),
        serde_json::json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}})
    );
    assert_eq!(LogConfig::new(None, &[]).unwrap(), LogConfig::default());
    let err = |d: Option<&str>, o: &[&str]| LogConfig::new(d, &opts(o)).unwrap_err().to_string();
    assert_eq!(
        err(None, &["foo=1"]),
        "unknown log opt 'foo' for json-file log driver"
    );
    assert_eq!(
        err(Some("none"), &["max-size=1m"]),
        "unknown log opt 'max-size' for none log driver"
    );
    assert!(err(Some("syslog"), &[]).contains("logging driver `syslog` is not supported"));
    assert!(err(None, &["compress=true"]).contains("not supported by kiln"));
    assert!(LogConfig::new(None, &opts(&["compress=false"])).is_ok());
    assert_eq!(
        err(None, &["max-size=0"]),
        "max-size must be a positive number"
    );
    assert_eq!(err(None, &["max-file=0"]), "max-file cannot be less than 1");
    assert!(err(None, &["max-size=big"]).contains("invalid max-size"));
    assert!(err(None, &["max-size"]).contains("invalid key value pair"));
    // Containers made before: json-file, one file, no limit.
    let old: LogConfig = serde_json::from_str(r#"{"driver":"json-file"}"#).unwrap();
    assert_eq!(old, LogConfig::default());
}

#[test]
fn since_and_until_values_as_docker_reads_them() {
    // Seconds (as docker's values are), not the larger units clippy would prefer.
    let secs = Duration::from_secs;
    let now = UNIX_EPOCH + secs(1_800_000_000);
    let t = |s: &str| {
        parse_log_time(s, now)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
    };
    assert_eq!(t("10m"), secs(1_800_000_000 - 600));
    assert_eq!(t("1h30m"), secs(1_800_000_000 - 5400));
    assert_eq!(t("1700000000"), secs(1_700_000_000));
    assert_eq!(t("1700000000.5"), Duration::new(1_700_000_000, 500_000_000));
    assert_eq!(t("0"), Duration::ZERO);
    assert_eq!(t("2023-11-14T22:13:20Z"), secs(1_700_000_000));
    assert_eq!(
        t("2023-11-14T22:13:20.25Z"),
        Duration::new(1_700_000_000, 250_000_000)
    );
    assert_eq!(t("2023-11-15T00:13:20+02:00"), secs(1_700_000_000));
    assert_eq!(t("2023-11-14Z"), secs(1_699_920_000));
    assert_eq!(t("2023-11-14T22Z"), secs(1_699_999_200));
    // Without a zone: local time (the tests' TZ is whatever the machine's is).
    assert!(parse_log_time("2023-11-14T22:13:20", now).is_ok());
    assert!(parse_log_time("2023-11-14", now).is_ok());
    for bad in [
        "soon",
        "",
        "2023-13-01",
        "2023-11-14T25:00Z",
        "12ab",
        "1.2.3",
    ] {
        assert_eq!(
            parse_log_time(bad, now).unwrap_err().to_string(),
            format!("failed to parse value as time or duration: \"{bad}\""),
        );
    }
}

#[test]
fn timestamps() {
    let t = UNIX_EPOCH + Duration::new(1_795_000_000, 5);
    assert_eq!(rfc3339_nanos(t), "2026-11-18T11:06:40.000000005Z");
}
