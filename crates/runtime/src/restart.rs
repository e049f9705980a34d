//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), carried out by a
//! detached container's shim: when the container's command ends, the shim asks
//! [`RestartPolicy::should_restart`], waits [`Backoff::next`] (docker's restartmanager: 100 ms,
//! doubled after each restart up to a minute, back to 100 ms once a run lasted 10 s) and runs
//! it again in the same directory (writable layer, volumes, ports, log). A user's `kiln stop`
//! or `kiln kill` ends the policy: it leaves a marker ([`STOPPED_MARKER`]) the shim reads.
//!
//! There is no daemon: nothing restarts after a reboot (or after the shim was killed) until
//! `kiln start --all-restartable` ([`Containers::restartable`]) is called, e.g. by a boot unit.
//! That is where `always` and `unless-stopped` differ: `always` containers are started again
//! even after the user stopped them, `unless-stopped` ones only when they were not.

use crate::container::{now_millis, Containers, Status};
use crate::{Container, Result};
use kiln_executor::RunResult;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// File in the container directory: the user stopped (or killed) the container, so its
/// policy ends. Removed when it is started again.
pub(crate) const STOPPED_MARKER: &str = "stopped-by-user";

/// A container's restart policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", content = "max", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// `no`: never restarted (the default).
    #[default]
    No,
    /// `on-failure[:N]`: restarted when it exits non-zero, at most N times (0: no limit).
    OnFailure(u32),
    /// `always`: restarted whenever it ends, unless the user stopped it.
    Always,
    /// `unless-stopped`: as `always`; after a reboot only if the user had not stopped it.
    UnlessStopped,
}

/// Why a `--restart` value was refused (docker's messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// `:N` with nothing before the colon.
    #[error("invalid restart policy format: no policy provided before colon")]
    NoName,
    /// `:N` that is not an integer.
    #[error("invalid restart policy format: maximum retry count must be an integer")]
    BadCount,
    /// `always:3` and the like.
    #[error("invalid restart policy: maximum retry count can only be used with 'on-failure'")]
    CountNotAllowed,
    /// `on-failure:-1`.
    #[error("invalid restart policy: maximum retry count cannot be negative")]
    Negative,
    /// An unknown name.
    #[error(
        "invalid restart policy: unknown policy '{0}'; use one of 'no', 'always', \
         'on-failure', or 'unless-stopped'"
    )]
    Unknown(String),
}

impl std::str::FromStr for RestartPolicy {
    type Err = PolicyError;

    /// docker's `ParseRestartPolicy` and `ValidateRestartPolicy`; `""` is `no`.
    fn from_str(s: &str) -> std::result::Result<Self, PolicyError> {
        let (name, count) = match s.split_once(':') {
            Some(("", _)) => return Err(PolicyError::NoName),
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let count: i64 = match count.filter(|c| !c.is_empty()) {
            Some(c) => c.parse().map_err(|_| PolicyError::BadCount)?,
            None => 0,
        };
        match name {
            "no" | "" | "always" | "unless-stopped" if count != 0 => {
                Err(PolicyError::CountNotAllowed)
            }
            "no" | "" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" if count < 0 => Err(PolicyError::Negative),
            "on-failure" => Ok(RestartPolicy::OnFailure(
                u32::try_from(count).map_err(|_| PolicyError::BadCount)?,
            )),
            other => Err(PolicyError::Unknown(other.to_string())),
        }
    }
}

impl RestartPolicy {
    /// The name docker shows in `HostConfig.RestartPolicy.Name`.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// `MaximumRetryCount`.
    pub fn max_retries(self) -> u32 {
        match self {
            RestartPolicy::OnFailure(n) => n,
            _ => 0,
        }
    }

    /// Whether the shim runs the container again after it exited with `exit_code`, having
    /// been restarted `restarts` times; never once the user stopped it.
    pub fn should_restart(self, exit_code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => exit_code != 0 && (max == 0 || restarts < max),
        }
    }

    /// Whether `kiln start --all-restartable` (after a reboot) starts a stopped container
    /// that last exited with `exit_code`: docker's daemon-restart rule.
    pub fn restart_at_boot(self, exit_code: i32, stopped_by_user: bool) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !stopped_by_user,
            RestartPolicy::OnFailure(_) => exit_code != 0,
        }
    }
}

/// docker's restart back-off: the first wait 100 ms, doubled after each restart up to a
/// minute; a run that lasted 10 s or more starts over at 100 ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backoff {
    timeout: Duration,
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_mins(1);
const RESET_AFTER: Duration = Duration::from_secs(10);

impl Backoff {
    /// How long to wait before the next restart, after a run that lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER || self.timeout.is_zero() {
            self.timeout = FIRST;
        } else {
            self.timeout = (self.timeout * 2).min(MAX);
        }
        self.timeout
    }
}

impl Container {
    /// Whether the user stopped or killed the container since it was last started.
    pub fn stopped_by_user(&self) -> bool {
        self.dir.join(STOPPED_MARKER).exists()
    }

    /// Records that the user stops the container: its policy ends.
    pub(crate) fn mark_stopped_by_user(&self) {
        let _ = std::fs::write(self.dir.join(STOPPED_MARKER), b"");
    }

    /// Forgets [`Container::mark_stopped_by_user`] (a new start).
    pub(crate) fn clear_stopped_by_user(&self) {
        let _ = std::fs::remove_file(self.dir.join(STOPPED_MARKER));
    }

    /// The shim's hook after a run that ended with `result`: when the policy says so,
    /// records the container as restarting (the count up, the last exit code and end
    /// time), waits the back-off and returns `true` for the shim to run it again. Returns
    /// `false` at once (or when the user stops it during the wait) for the shim to record
    /// its end.
    pub(crate) async fn wait_to_restart(
        &mut self,
        result: &Result<RunResult>,
        backoff: &mut Backoff,
    ) -> Result<bool> {
        let Ok(r) = result else {
            return Ok(false);
        };
        // `kiln update` may have changed the policy and limits since the last run.
        let _ = self.reload_config();
        let policy = self.config.restart;
        if !policy.should_restart(
            r.exit_code,
            self.state.restart_count,
            self.stopped_by_user(),
        ) {
            return Ok(false);
        }
        let now = now_millis();
        let ran = now.saturating_sub(self.state.started.unwrap_or(now)).max(0);
        let delay = backoff.next(Duration::from_millis(ran.unsigned_abs()));
        self.state.restarting = true;
        self.state.restart_count += 1;
        self.state.init = None;
        self.state.exit_code = Some(r.exit_code);
        self.state.oom_killed = r.oom_killed;
        self.state.finished = Some(now);
        self.save_state()?;
        let until = Instant::now() + delay;
        loop {
            // Removed meanwhile (`rm -f` gave up waiting): nothing left to run.
            if self.stopped_by_user() || !self.dir.join("config.json").exists() {
                self.state.restarting = false;
                return Ok(false);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
        self.wait_ports_free(Duration::from_secs(3));
        self.state.restarting = false;
        self.state.started = None;
        self.state.finished = None;
        self.state.exit_code = None;
        Ok(true)
    }
}

impl Containers {
    /// The containers `kiln start --all-restartable` starts: not running, started before,
    /// and [`RestartPolicy::restart_at_boot`].
    pub fn restartable(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for mut c in self.list()? {
            if c.refresh().is_err() || !c.dir.exists() || c.is_running() {
                continue;
            }
            if c.state.status != Status::Exited {
                continue;
            }
            let code = c.state.exit_code.unwrap_or(255);
            if c.config.restart.restart_at_boot(code, c.stopped_by_user()) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_dockers() {
        let p = |s: &str| s.parse::<RestartPolicy>();
        assert_eq!(p("no"), Ok(RestartPolicy::No));
        assert_eq!(p(""), Ok(RestartPolicy::No));
        assert_eq!(p("always"), Ok(RestartPolicy::Always));
        assert_eq!(p("unless-stopped"), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(p("on-failure"), Ok(RestartPolicy::OnFailure(0)));
        assert_eq!(p("on-failure:2"), Ok(RestartPolicy::OnFailure(2)));
        assert_eq!(p("on-failure:"), Ok(RestartPolicy::OnFailure(0)));
        assert_eq!(p(":3"), Err(PolicyError::NoName));
        assert_eq!(p("on-failure:x"), Err(PolicyError::BadCount));
        assert_eq!(p("on-failure:-1"), Err(PolicyError::Negative));
        assert_eq!(p("always:3"), Err(PolicyError::CountNotAllowed));
        assert_eq!(
            p("sometimes").unwrap_err().to_string(),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', \
             'on-failure', or 'unless-stopped'"
        );
    }

    #[test]
    fn when_to_restart() {
        use RestartPolicy::*;
        assert!(!No.should_restart(1, 0, false));
        assert!(Always.should_restart(0, 100, false));
        assert!(!Always.should_restart(0, 0, true));
        assert!(UnlessStopped.should_restart(137, 0, false));
        assert!(!OnFailure(2).should_restart(0, 0, false));
        assert!(OnFailure(2).should_restart(3, 1, false));
        assert!(!OnFailure(2).should_restart(3, 2, false));
        assert!(OnFailure(0).should_restart(3, 1000, false));
        assert!(!OnFailure(0).should_restart(3, 0, true));
    }

    #[test]
    fn at_boot() {
        use RestartPolicy::*;
        assert!(Always.restart_at_boot(0, true));
        assert!(UnlessStopped.restart_at_boot(255, false));
        assert!(!UnlessStopped.restart_at_boot(143, true));
        assert!(OnFailure(1).restart_at_boot(255, false));
        assert!(!OnFailure(1).restart_at_boot(0, false));
        assert!(!No.restart_at_boot(255, false));
    }

    #[test]
    fn backoff_doubles_and_resets_after_ten_seconds() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let waits: Vec<u128> = (0..5).map(|_| b.next(short).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600]);
        assert_eq!(b.next(Duration::from_secs(10)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), Duration::from_mins(1));
    }

    #[test]
    fn the_policy_round_trips_through_json() {
        for p in [
            RestartPolicy::No,
            RestartPolicy::OnFailure(3),
            RestartPolicy::Always,
            RestartPolicy::UnlessStopped,
        ] {
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<RestartPolicy>(&j).unwrap(), p);
        }
    }
}
