//! Signals, stopping and waiting: `kiln kill`, `kiln stop`, `kiln wait`.
//!
//! Signals go to the sandbox's pid 1 (through a pidfd checked against its start time), which
//! forwards every signal a process may handle to the container's command; SIGKILL ends the
//! whole sandbox at once.

use crate::container::{Container, Status};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// Signal names and numbers, as `kill -l` lists them (without the `SIG` prefix).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// A signal given as a number (`9`), a name (`KILL`, `kill`) or a name with `SIG` (`SIGKILL`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

/// Polls `done` with a growing interval (1 ms up to 50 ms) until it is true or `timeout`
/// passed; returns whether it became true.
pub(crate) fn poll_until(timeout: Option<Duration>, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut interval = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return false;
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}

impl Container {
    /// Sends `signal` to the running container (its pid 1, which forwards it to the
    /// command; SIGKILL ends everything in it).
    /// A kill by the user ends the container's restart policy (see `restart.rs`); one
    /// waiting to be restarted is not restarted, and its shim records its end.
    pub fn kill(&mut self, signal: i32) -> Result<()> {
        self.refresh()?;
        if !self.is_running() {
            return Err(Error::NotRunning(self.config.id.clone()));
        }
        self.mark_stopped_by_user();
        if self.state.restarting {
            return Ok(());
        }
        let Some(init) = self.state.init else {
            return Err(Error::NoInit(self.config.id.clone()));
        };
        match init.signal(signal) {
            Ok(()) => {
                // A paused container gets its stop signal or SIGKILL once thawed (as
                // docker; other signals stay pending until `unpause`).
                if signal == libc::SIGKILL || signal == self.stop_signal() {
                    self.thaw_after_signal();
                }
                Ok(())
            }
            // Ended meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(Error::NotRunning(self.config.id.clone()))
            }
            Err(e) => Err(Error::Io {
                path: format!("/proc/{}", init.pid).into(),
                source: e,
            }),
        }
    }

    /// The signal that stops the container: `--stop-signal`, else the image's
    /// `StopSignal`, else SIGTERM.
    pub fn stop_signal(&self) -> i32 {
        self.config
            .stop_signal
            .as_deref()
            .or_else(|| self.config.image_config["config"]["StopSignal"].as_str())
            .and_then(parse_signal)
            .unwrap_or(libc::SIGTERM)
    }

    /// How long `stop` waits without `-t`: `--stop-timeout` (negative: for ever), else 10 s.
    pub fn stop_timeout(&self) -> Duration {
        match self.config.stop_timeout {
            Some(t) => u64::try_from(t).map_or(Duration::MAX, Duration::from_secs),
            None => Duration::from_secs(10),
        }
    }

    /// Stops the container as `docker stop` does: the stop signal, then SIGKILL after
    /// `timeout`, then waits until its end is recorded. A container that is not running is
    /// left alone.
    pub fn stop(&mut self, timeout: Duration) -> Result<()> {
        match self.kill(self.stop_signal()) {
            Ok(()) => {}
            Err(Error::NotRunning(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        if !self.wait_stopped(Some(timeout))? {
            match self.kill(libc::SIGKILL) {
                Ok(()) | Err(Error::NotRunning(_)) => {}
                Err(e) => return Err(e),
            }
            self.wait_stopped(Some(Duration::from_secs(30)))?;
        }
        Ok(())
    }

    /// Waits (at most `timeout`) until the container is not running; returns whether it
    /// stopped. The state is reloaded as it goes.
    pub fn wait_stopped(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let mut failed = None;
        let stopped = poll_until(timeout, || {
            if let Err(e) = self.reload().and_then(|()| self.refresh()) {
                failed = Some(e);
                return true;
            }
            self.state.status != Status::Running
        });
        match failed {
            // Removed while we waited (`--rm`): it ended.
            Some(_) if !self.dir.exists() => Ok(true),
            Some(e) => Err(e),
            None => Ok(stopped),
        }
    }

    /// `docker wait`: blocks until the container stops and returns its exit code (`None`
    /// when it was removed before its end could be read, e.g. after `--rm`).
    pub fn wait(&mut self) -> Result<Option<i32>> {
        // Held while waiting: a `--rm` container is removed only after we read its end.
        let Some(_lock) = self.lock_dir(false)? else {
            return Ok(None);
        };
        self.wait_stopped(None)?;
        if !self.dir.exists() {
            return Ok(None);
        }
        Ok(self.state.exit_code)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        use super::parse_signal;
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
    }
}
