//! Removing a container: `kiln rm [-f]`; removing the stopped ones: `kiln container prune`,
//! `kiln system prune`.

use crate::container::{Container, Containers};
use crate::kill::poll_until;
use crate::{Error, Result};
use std::time::Duration;

impl Container {
    /// Removes the container's directory (its filesystem changes and log). A running
    /// container is refused unless `force`, which kills it first and waits until its
    /// supervisor has recorded its end and exited, so that nothing writes into the directory
    /// while it goes.
    pub fn remove(mut self, force: bool) -> Result<()> {
        self.refresh()?;
        if self.is_running() {
            if !force {
                return Err(Error::Running(self.config.id.clone()));
            }
            match self.kill(libc::SIGKILL) {
                Ok(()) | Err(Error::NotRunning(_)) => {}
                // Without a known pid 1 (an external runtime), the supervisor is stopped
                // instead; its sandbox helper then kills the container.
                Err(Error::NoInit(_)) => {
                    if let Some(s) = self.state.supervisor {
                        let _ = s.signal(libc::SIGKILL);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(s) = self.state.supervisor {
            poll_until(Some(Duration::from_secs(30)), || !s.is_alive());
        }
        self.remove_dir()
    }
}

/// What a container prune did.
#[derive(Debug, Default)]
pub struct ContainersPruned {
    /// The ids of the containers removed.
    pub removed: Vec<String>,
    /// What the removed containers' directories held (writable layer, log), in bytes.
    pub reclaimed: u64,
    /// Containers that could not be removed (started meanwhile, say: they stay, as
    /// `docker container prune` leaves them), with why.
    pub failed: Vec<(String, Error)>,
}

impl Containers {
    /// Removes every container that is not running.
    pub fn prune(&self) -> Result<ContainersPruned> {
        self.prune_created_before(None)
    }

    /// `docker container prune [--filter until=…]`: removes every container that is not
    /// running and, with `before` (milliseconds since the Unix epoch), was created before it.
    pub fn prune_created_before(&self, before: Option<i64>) -> Result<ContainersPruned> {
        let mut out = ContainersPruned::default();
        for c in self.list()? {
            if c.is_running() || before.is_some_and(|b| c.config.created >= b) {
                continue;
            }
            let id = c.id().to_string();
            let size = kiln_cache::disk_usage(&c.dir);
            match c.remove(false) {
                Ok(()) => {
                    out.removed.push(id);
                    out.reclaimed += size;
                }
                Err(e) => out.failed.push((id, e)),
            }
        }
        Ok(out)
    }
}
