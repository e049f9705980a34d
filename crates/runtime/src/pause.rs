//! `kiln pause` / `kiln unpause`: the cgroup freezer (see the executor's
//! [`kiln_executor::SandboxCgroups`]: v1 `freezer.state`, v2 `cgroup.freeze`). Whether a
//! container is paused is read from its cgroup, not stored: nothing has to be written back
//! when it ends or is thawed by someone else. While paused, `exec` is refused and the health
//! check does not probe; `kill` and `stop` (and `rm -f`) thaw it right after signalling, as
//! docker does, so the signal is the first thing it sees.

use crate::container::Container;
use crate::{Error, Result};
use kiln_executor::SandboxCgroups;

impl Container {
    /// The cgroups of the running container's sandbox (`None` when it is not running or
    /// its pid 1 is not known).
    fn sandbox_cgroups(&self) -> Option<SandboxCgroups> {
        let init = self
            .state
            .init
            .filter(kiln_executor::HostProcess::is_alive)?;
        SandboxCgroups::of(init.pid).ok()
    }

    /// Whether the container runs and is frozen (`kiln pause`).
    pub fn is_paused(&self) -> bool {
        self.is_running()
            && !self.state.restarting
            && self.sandbox_cgroups().is_some_and(|c| c.frozen())
    }

    /// `docker pause`: freezes every process of the running container, waiting until they
    /// are.
    pub fn pause(&mut self) -> Result<()> {
        let cgroups = self.cgroups_to_change()?;
        if cgroups.frozen() {
            return Err(Error::AlreadyPaused(self.config.id.clone()));
        }
        Ok(cgroups.freeze()?)
    }

    /// `docker unpause`: thaws the paused container (one that is not running is not
    /// paused, as docker says first).
    pub fn unpause(&mut self) -> Result<()> {
        self.refresh()?;
        if !self.is_running() {
            return Err(Error::NotPaused(self.config.id.clone()));
        }
        let cgroups = self.cgroups_to_change()?;
        if !cgroups.frozen() {
            return Err(Error::NotPaused(self.config.id.clone()));
        }
        Ok(cgroups.thaw()?)
    }

    /// The cgroups of the container, which must be running (and not waiting to restart).
    pub(crate) fn cgroups_to_change(&mut self) -> Result<SandboxCgroups> {
        self.refresh()?;
        if !self.is_running() {
            return Err(Error::NotRunning(self.config.id.clone()));
        }
        if self.state.restarting {
            return Err(Error::Restarting(self.config.id.clone()));
        }
        let Some(init) = self.state.init.filter(kiln_executor::HostProcess::is_alive) else {
            return Err(Error::NoInit(self.config.id.clone()));
        };
        Ok(SandboxCgroups::of(init.pid)?)
    }

    /// After a signal: thaws a paused container, so it receives the signal (stop, kill).
    pub(crate) fn thaw_after_signal(&self) {
        if let Some(c) = self.sandbox_cgroups().filter(SandboxCgroups::frozen) {
            let _ = c.thaw();
        }
    }
}
