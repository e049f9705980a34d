use super::*;
use serde_json::json;

fn probe(code: i32) -> Probe {
    Probe {
        start: "s".into(),
        end: "e".into(),
        exit_code: code,
        output: format!("{code}"),
    }
}

#[test]
fn the_images_check_in_dockers_shape_is_read_with_its_nanoseconds() {
    let image = json!({"config": {"Healthcheck": {
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 5_000_000_000_i64,
        "Timeout": 2_000_000_000_i64,
        "StartPeriod": 1_000_000_000_i64,
        "Retries": 4,
    }}});
    let c = resolve(&image, &HealthOptions::default()).unwrap().unwrap();
    assert_eq!(c.interval(), Duration::from_secs(5));
    assert_eq!(c.timeout(), Duration::from_secs(2));
    assert_eq!(c.start_period(), Duration::from_secs(1));
    assert_eq!(c.retries(), 4);
    assert_eq!(
        c.probe_args().unwrap().unwrap(),
        ["/bin/sh", "-c", "curl -f localhost"]
    );
}

#[test]
fn zero_missing_or_negative_durations_are_dockers_defaults() {
    let image = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 0}}});
    let c = resolve(&image, &HealthOptions::default()).unwrap().unwrap();
    assert_eq!(c.interval(), Duration::from_secs(30));
    assert_eq!(c.timeout(), Duration::from_secs(30));
    assert_eq!(c.start_period(), Duration::ZERO);
    assert_eq!(c.retries(), 3);
    assert_eq!(c.probe_args().unwrap().unwrap(), ["true"]);
}

#[test]
fn flags_replace_parts_of_the_images_check() {
    let image = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Retries": 7}}});
    let opts = HealthOptions {
        cmd: Some("test -f /ok".into()),
        interval: Some(Duration::from_millis(200)),
        ..HealthOptions::default()
    };
    let c = resolve(&image, &opts).unwrap().unwrap();
    assert_eq!(c.test, ["CMD-SHELL", "test -f /ok"]);
    assert_eq!(c.interval, 200_000_000);
    assert_eq!(c.retries(), 7);
}

#[test]
fn no_test_is_no_check_and_none_or_no_healthcheck_never_runs() {
    let opts = HealthOptions {
        interval: Some(Duration::from_secs(1)),
        ..HealthOptions::default()
    };
    assert_eq!(resolve(&json!({}), &opts).unwrap(), None);
    let image = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"]}}});
    let off = HealthOptions {
        disabled: true,
        ..HealthOptions::default()
    };
    let c = resolve(&image, &off).unwrap().unwrap();
    assert_eq!(c.test, ["NONE"]);
    assert_eq!(c.probe_args().unwrap(), None);
    let none = json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
    let c = resolve(&none, &HealthOptions::default()).unwrap().unwrap();
    assert_eq!(c.probe_args().unwrap(), None);
}

#[test]
fn bad_checks_are_refused_with_a_message() {
    let both = HealthOptions {
        disabled: true,
        cmd: Some("true".into()),
        ..HealthOptions::default()
    };
    assert_eq!(
        resolve(&json!({}), &both).unwrap_err().to_string(),
        "--no-healthcheck conflicts with --health-* options"
    );
    let bad = json!({"config": {"Healthcheck": {"Test": "true"}}});
    assert!(resolve(&bad, &HealthOptions::default())
        .unwrap_err()
        .to_string()
        .starts_with("invalid Healthcheck in the image config"));
    let spin = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1}}});
    assert_eq!(
        resolve(&spin, &HealthOptions::default())
            .unwrap_err()
            .to_string(),
        "Interval in Healthcheck cannot be less than 1ms"
    );
    let short = HealthOptions {
        cmd: Some("true".into()),
        timeout: Some(Duration::from_micros(10)),
        ..HealthOptions::default()
    };
    assert_eq!(
        resolve(&json!({}), &short).unwrap_err().to_string(),
        "Timeout in Healthcheck cannot be less than 1ms"
    );
    let neg = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}});
    assert!(resolve(&neg, &HealthOptions::default()).is_err());
    for test in [json!(["RUN", "x"]), json!(["CMD"])] {
        let img = json!({"config": {"Healthcheck": {"Test": test}}});
        assert!(resolve(&img, &HealthOptions::default()).is_err());
    }
}

#[test]
fn a_pass_is_healthy_and_retries_failures_are_unhealthy() {
    let mut h = Health::default();
    assert_eq!(h.status, HealthStatus::Starting);
    h.record(probe(1), 2, false);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
    h.record(probe(0), 2, false);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
    h.record(probe(1), 2, false);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
    h.record(probe(-1), 2, false);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
    h.record(probe(0), 2, false);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
}

#[test]
fn failures_in_the_start_period_count_only_once_it_is_no_longer_starting() {
    let mut h = Health::default();
    h.record(probe(1), 1, true);
    h.record(probe(1), 1, true);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
    h.record(probe(0), 1, true);
    h.record(probe(1), 1, true);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
    let mut h = Health::default();
    h.record(probe(1), 1, false);
    assert_eq!(h.status, HealthStatus::Unhealthy);
}

#[test]
fn the_log_keeps_the_last_five_probes() {
    let mut h = Health::default();
    for code in 0..7 {
        h.record(probe(code), 3, false);
    }
    let codes: Vec<i32> = h.log.iter().map(|p| p.exit_code).collect();
    assert_eq!(codes, [2, 3, 4, 5, 6]);
}

#[test]
fn health_is_written_as_dockers_state_health() {
    let mut h = Health::default();
    h.record(probe(1), 3, false);
    let v = serde_json::to_value(&h).unwrap();
    assert_eq!(v["Status"], "starting");
    assert_eq!(v["FailingStreak"], 1);
    assert_eq!(v["Log"][0]["ExitCode"], 1);
    assert_eq!(v["Log"][0]["Output"], "1");
    assert_eq!(v["Log"][0]["Start"], "s");
}

#[test]
fn a_stopped_check_is_unhealthy_and_a_restarted_one_starting_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    stopped(dir.path());
    assert!(!dir.path().join(HEALTH_FILE).exists());
    let mut h = Health::default();
    h.record(probe(0), 3, false);
    h.record(probe(1), 3, false);
    write_json_atomic(&dir.path().join(HEALTH_FILE), &h).unwrap();
    stopped(dir.path());
    let data = std::fs::read(dir.path().join(HEALTH_FILE)).unwrap();
    let after: Health = serde_json::from_slice(&data).unwrap();
    assert_eq!(after.status, HealthStatus::Unhealthy);
    assert_eq!((after.failing_streak, &after.log), (1, &h.log));

    // Started again: starting, no streak, the log kept.
    started(dir.path());
    let data = std::fs::read(dir.path().join(HEALTH_FILE)).unwrap();
    let again: Health = serde_json::from_slice(&data).unwrap();
    assert_eq!(again.status, HealthStatus::Starting);
    assert_eq!((again.failing_streak, again.log), (0, h.log));
}

#[test]
fn long_output_is_cut_at_4096_bytes_on_a_character_boundary() {
    let s = "é".repeat(3000);
    let t = truncate(s);
    assert!(t.len() <= MAX_OUTPUT && t.len() >= MAX_OUTPUT - 1);
}
