//! Health checks, as docker's: the check of the image (`Healthcheck` in its config, as
//! `HEALTHCHECK` writes it) or of `--health-*` flags, resolved at creation
//! ([`resolve`]), run by the container's shim through the exec path every interval
//! ([`Monitor`]); its [`Health`] is written atomically to `health.json` in the container
//! directory, which `ps` and `inspect` read ([`Container::health`]).

use crate::container::{write_json_atomic, Container};
use crate::ExecOptions;
use kiln_executor::{ExecSpec, Executor, HostProcess, Output};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// File of the container directory holding its [`Health`].
const HEALTH_FILE: &str = "health.json";

/// Docker's defaults for a check that does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

/// Probes kept in [`Health::log`], as docker.
const LOG_ENTRIES: usize = 5;

/// Bytes of a probe's output kept, as docker (`maxOutputLen`).
const MAX_OUTPUT: usize = 4096;

/// A health check in docker's shape (image config `Healthcheck`, inspect's
/// `Config.Healthcheck`): durations in nanoseconds, 0 meaning the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", args…]`, `["CMD-SHELL", "command"]`, `["NONE"]`; empty: inherit.
    #[serde(default, deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    /// Between probes (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// A probe running longer fails (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Failures during this time after the start do not count (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Consecutive failures that make the container unhealthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn null_as_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `--health-*` and `--no-healthcheck`: each given one replaces the image's.
#[derive(Clone, Debug, Default)]
pub struct HealthOptions {
    /// `--health-cmd` (run with `/bin/sh -c`).
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<Duration>,
    /// `--health-timeout`.
    pub timeout: Option<Duration>,
    /// `--health-start-period`.
    pub start_period: Option<Duration>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub disabled: bool,
}

/// Why a health check cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// `--no-healthcheck` with `--health-*`.
    #[error("--no-healthcheck conflicts with --health-* options")]
    Conflict,
    /// The image's `Healthcheck` is not docker's shape.
    #[error("invalid Healthcheck in the image config: {0}")]
    Image(#[source] serde_json::Error),
    /// A duration of less than a millisecond (a probe loop that would spin).
    #[error("{0} in Healthcheck cannot be less than 1ms")]
    TooShort(&'static str),
    /// A negative retry count.
    #[error("Retries in Healthcheck cannot be negative")]
    NegativeRetries,
    /// A `Test` that starts with none of CMD, CMD-SHELL, NONE.
    #[error("unknown Healthcheck type {0:?} (CMD, CMD-SHELL or NONE)")]
    UnknownType(String),
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The container's check: the image's (`image_config["config"]["Healthcheck"]`) with the
/// options given replacing its parts, as docker merges them. `None` when there is none; a
/// check whose test is `NONE` (`--no-healthcheck`, `HEALTHCHECK NONE`) is kept, as docker
/// shows it, and never run.
pub(crate) fn resolve(
    image_config: &Value,
    opts: &HealthOptions,
) -> Result<Option<Healthcheck>, HealthError> {
    if opts.disabled {
        if opts.cmd.is_some()
            || opts.interval.is_some()
            || opts.timeout.is_some()
            || opts.start_period.is_some()
            || opts.retries.is_some()
        {
            return Err(HealthError::Conflict);
        }
        return Ok(Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        }));
    }
    let mut check = match &image_config["config"]["Healthcheck"] {
        Value::Null => Healthcheck::default(),
        v => serde_json::from_value(v.clone()).map_err(HealthError::Image)?,
    };
    if let Some(cmd) = &opts.cmd {
        check.test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    if let Some(d) = opts.interval {
        check.interval = nanos(d);
    }
    if let Some(d) = opts.timeout {
        check.timeout = nanos(d);
    }
    if let Some(d) = opts.start_period {
        check.start_period = nanos(d);
    }
    if let Some(r) = opts.retries {
        check.retries = i64::from(r);
    }
    if check.test.is_empty() {
        return Ok(None);
    }
    check.probe_args()?;
    // docker's verifyContainerSettings: 0 is the default, otherwise at least 1ms.
    for (name, ns) in [
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("StartPeriod", check.start_period),
    ] {
        if ns != 0 && ns < 1_000_000 {
            return Err(HealthError::TooShort(name));
        }
    }
    if check.retries < 0 {
        return Err(HealthError::NegativeRetries);
    }
    Ok(Some(check))
}

fn duration_or(ns: i64, default: Duration) -> Duration {
    match u64::try_from(ns) {
        Ok(n) if n > 0 => Duration::from_nanos(n),
        _ => default,
    }
}

impl Healthcheck {
    /// The probe's command line; `None` for a disabled check.
    pub fn probe_args(&self) -> Result<Option<Vec<String>>, HealthError> {
        match self.test.split_first() {
            None => Ok(None),
            Some((t, _)) if t == "NONE" => Ok(None),
            Some((t, rest)) if t == "CMD" && !rest.is_empty() => Ok(Some(rest.to_vec())),
            Some((t, rest)) if t == "CMD-SHELL" && !rest.is_empty() => {
                Ok(Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]))
            }
            Some((t, _)) => Err(HealthError::UnknownType(t.clone())),
        }
    }

    /// Between probes (default 30s).
    pub fn interval(&self) -> Duration {
        duration_or(self.interval, DEFAULT_INTERVAL)
    }

    /// Longest a probe may run (default 30s).
    pub fn timeout(&self) -> Duration {
        duration_or(self.timeout, DEFAULT_TIMEOUT)
    }

    /// Failures during this time after the start do not count (default 0).
    pub fn start_period(&self) -> Duration {
        duration_or(self.start_period, Duration::ZERO)
    }

    /// Consecutive failures that make the container unhealthy (default 3).
    pub fn retries(&self) -> u32 {
        match u32::try_from(self.retries) {
            Ok(n) if n > 0 => n,
            _ => DEFAULT_RETRIES,
        }
    }
}

/// Health status, as docker names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No verdict yet.
    #[default]
    Starting,
    /// The last probe passed.
    Healthy,
    /// `Retries` consecutive probes failed.
    Unhealthy,
}

impl HealthStatus {
    /// `starting`, `healthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe, as docker's `HealthcheckResult`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// RFC 3339 with nanoseconds.
    pub start: String,
    /// RFC 3339 with nanoseconds.
    pub end: String,
    /// 0 passed; -1 could not run or timed out.
    pub exit_code: i32,
    /// Its output (stdout and stderr, the first 4096 bytes).
    pub output: String,
}

/// A container's health, as docker's `State.Health`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// Status.
    pub status: HealthStatus,
    /// Consecutive failed probes that counted.
    pub failing_streak: u32,
    /// The last five probes, oldest first.
    pub log: Vec<Probe>,
}

impl Health {
    /// Takes a probe's result into account, as docker's `handleProbeResult`: a pass makes
    /// it healthy; a failure counts unless the container is still starting within its
    /// start period (`in_start_period`), and `retries` counted ones make it unhealthy.
    pub fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !(self.status == HealthStatus::Starting && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(probe);
        if self.log.len() > LOG_ENTRIES {
            let extra = self.log.len() - LOG_ENTRIES;
            self.log.drain(..extra);
        }
    }
}

impl Container {
    /// The container's health check when it has one that runs.
    pub fn healthcheck(&self) -> Option<&Healthcheck> {
        self.config
            .healthcheck
            .as_ref()
            .filter(|c| matches!(c.probe_args(), Ok(Some(_))))
    }

    /// Its health as the shim last wrote it; `None` without a check or before its first
    /// start.
    pub fn health(&self) -> Option<Health> {
        self.healthcheck()?;
        read(&self.dir.join(HEALTH_FILE))
    }
}

/// The health in `file`, if there is one that can be read.
fn read(file: &Path) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

/// Records that the health check of the container in `dir` starts (before its start is
/// reported, so that `ps` right after `run -d` shows it): `starting`, as docker's, with the
/// log of earlier runs kept.
pub(crate) fn started(dir: &Path) {
    let file = dir.join(HEALTH_FILE);
    let health = Health {
        log: read(&file).map(|h| h.log).unwrap_or_default(),
        ..Health::default()
    };
    if let Err(e) = write_json_atomic(&file, &health) {
        eprintln!("kiln: {e}");
    }
}

/// Records that the health check of the container in `dir` stopped with the container:
/// as docker, its status is then `unhealthy` (streak and log kept). Nothing without one.
pub(crate) fn stopped(dir: &Path) {
    let file = dir.join(HEALTH_FILE);
    let Some(mut health) = read(&file) else {
        return;
    };
    health.status = HealthStatus::Unhealthy;
    if let Err(e) = write_json_atomic(&file, &health) {
        eprintln!("kiln: {e}");
    }
}

/// Runs a container's health check in the shim.
pub(crate) struct Monitor {
    file: PathBuf,
    check: Healthcheck,
    spec: ExecSpec,
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Monitor {
    /// The monitor of `c`, `None` without a check that runs.
    pub(crate) fn new(c: &Container) -> Option<Monitor> {
        let check = c.healthcheck()?.clone();
        let args = check.probe_args().ok()??;
        let spec = c.exec_spec(&ExecOptions {
            args,
            ..ExecOptions::default()
        });
        Some(Monitor {
            file: c.dir.join(HEALTH_FILE),
            check,
            spec,
        })
    }

    fn save(&self, health: &Health) {
        // A full disk loses the health, not the container.
        if let Err(e) = write_json_atomic(&self.file, health) {
            eprintln!("kiln shim: {e}");
        }
    }

    /// Probes the container whose pid 1 is `init` every interval, forever (the shim drops
    /// it when the container ends; a probe running then is killed).
    pub(crate) async fn run(self, executor: &Executor, init: HostProcess) -> Infallible {
        let started = Instant::now();
        // As `started` wrote it.
        let mut health = read(&self.file).unwrap_or_default();
        let cgroups = kiln_executor::SandboxCgroups::of(init.pid).ok();
        loop {
            tokio::time::sleep(self.check.interval()).await;
            // Paused (`kiln pause`): no probe, as docker (a probe would freeze with it).
            if cgroups
                .as_ref()
                .is_some_and(kiln_executor::SandboxCgroups::frozen)
            {
                continue;
            }
            let probe = self.probe(executor, &init).await;
            let in_start_period = started.elapsed() < self.check.start_period();
            health.record(probe, self.check.retries(), in_start_period);
            self.save(&health);
        }
    }

    async fn probe(&self, executor: &Executor, init: &HostProcess) -> Probe {
        let start = SystemTime::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut output = Vec::new();
        let exec = executor.exec_in(init, &self.spec, Output::Capture(tx));
        let collect = async {
            while let Some((_, data)) = rx.recv().await {
                if output.len() < MAX_OUTPUT {
                    output.extend_from_slice(&data);
                }
            }
        };
        let timeout = self.check.timeout();
        let result = tokio::time::timeout(timeout, async { tokio::join!(exec, collect).0 }).await;
        let (exit_code, text) = match result {
            Ok(Ok(code)) => (code, String::from_utf8_lossy(&output).into_owned()),
            Ok(Err(e)) => (-1, e.to_string()),
            Err(_) => (
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    kiln_units::go_duration(timeout)
                ),
            ),
        };
        Probe {
            start: crate::logs::rfc3339_nanos(start),
            end: crate::logs::rfc3339_nanos(SystemTime::now()),
            exit_code,
            output: truncate(text),
        }
    }
}

#[cfg(test)]
mod tests;
