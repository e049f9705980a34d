//! Removing a container: `kiln rm [-f]`.

use crate::container::Container;
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
