//! `kiln update`: a container's limits (memory, CPUs, processes) and restart policy,
//! changed in its stored config (so they hold after a stop and start, and for the shim's
//! next run under the restart policy: it reads the config again before each) and, for
//! the limits of a running container, in its cgroups at once.

use crate::container::{io_err, write_json_atomic, Container};
use crate::{Error, RestartPolicy, Result};
use kiln_executor::{Resources, SandboxCgroups};

/// docker's lowest memory limit.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// What `kiln update` changes (`None`: left as it is).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateOptions {
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap, in bytes (-1: unlimited swap).
    pub memory_swap: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit` (0 or less: no limit).
    pub pids: Option<i64>,
    /// `--restart`.
    pub restart: Option<RestartPolicy>,
}

impl Container {
    /// `docker update`: applies `opts` to the container (its cgroups too when it runs).
    pub fn update(&mut self, opts: &UpdateOptions) -> Result<()> {
        if opts.memory.is_some_and(|m| m < MIN_MEMORY) {
            return Err(Error::MemoryTooLow);
        }
        self.reload_config()?;
        if self.config.remove && opts.restart.is_some_and(|r| r != RestartPolicy::No) {
            return Err(Error::RestartWithAutoRemove);
        }
        let (memory, memory_swap) = self.memory_pair(opts)?;
        let limits = Resources {
            memory,
            memory_swap,
            cpus: opts.cpus,
            pids: opts.pids,
            updatable: false,
        };
        self.refresh()?;
        let changes_limits =
            limits.memory.is_some() || limits.cpus.is_some() || limits.pids.is_some();
        // One waiting to be restarted gets them from its config when it runs again.
        if changes_limits && self.is_running() && !self.state.restarting {
            let Some(init) = self.state.init.filter(kiln_executor::HostProcess::is_alive) else {
                return Err(Error::NoInit(self.config.id.clone()));
            };
            SandboxCgroups::of(init.pid)?.set_limits(&limits)?;
        }
        let res = &mut self.config.spec.extra.resources;
        if memory.is_some() {
            res.memory = memory;
            res.memory_swap = memory_swap;
        }
        if let Some(c) = opts.cpus {
            res.cpus = (c > 0.0).then_some(c);
        }
        if let Some(p) = opts.pids {
            res.pids = (p > 0).then_some(p);
        }
        if let Some(r) = opts.restart {
            self.config.restart = r;
        }
        write_json_atomic(&self.dir.join("config.json"), &self.config)
    }

    /// The memory limit and swap to set (both `None`: memory is not changed), checked as
    /// docker checks them: a swap limit needs a memory limit (given or set before) no larger
    /// than it; a memory limit alone keeps the swap limit set before, which it must not
    /// exceed (without one, kiln's default: no swap).
    fn memory_pair(&self, opts: &UpdateOptions) -> Result<(Option<u64>, Option<i64>)> {
        if opts.memory.is_none() && opts.memory_swap.is_none() {
            return Ok((None, None));
        }
        let now = &self.config.spec.extra.resources;
        let Some(memory) = opts.memory.or(now.memory) else {
            return Err(Error::SwapWithoutMemory);
        };
        let as_i64 = |m: u64| i64::try_from(m).unwrap_or(i64::MAX);
        let swap = match opts.memory_swap {
            Some(s) if s > 0 && s < as_i64(memory) => return Err(Error::SwapBelowMemory),
            Some(s) => Some(s),
            None => match now.memory_swap {
                Some(s) if s > 0 && s < as_i64(memory) => return Err(Error::MemoryAboveSwap),
                s => s,
            },
        };
        Ok((Some(memory), swap))
    }

    /// Re-reads `config.json` (changed by `update` or `rename` since it was loaded).
    pub(crate) fn reload_config(&mut self) -> Result<()> {
        let p = self.dir.join("config.json");
        let data = std::fs::read(&p).map_err(io_err(&p))?;
        self.config = serde_json::from_slice(&data).map_err(|e| Error::Io {
            path: p,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, State, Status};

    fn stopped(dir: &std::path::Path) -> Container {
        let c = Container {
            config: Config::for_test(&"a".repeat(64), "web", dir),
            state: State {
                status: Status::Exited,
                ..State::default()
            },
            dir: dir.to_path_buf(),
        };
        c.save_state().unwrap();
        write_json_atomic(&dir.join("config.json"), &c.config).unwrap();
        c
    }

    #[test]
    fn a_stopped_container_keeps_its_new_limits_and_policy() {
        let root = tempfile::tempdir().unwrap();
        let mut c = stopped(root.path());
        c.update(&UpdateOptions {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(20),
            restart: Some(RestartPolicy::Always),
            memory_swap: None,
        })
        .unwrap();
        let again = Container::load(root.path()).unwrap();
        let res = &again.config.spec.extra.resources;
        assert_eq!(res.memory, Some(64 << 20));
        assert_eq!(res.cpus, Some(0.5));
        assert_eq!(res.pids, Some(20));
        assert_eq!(again.config.restart, RestartPolicy::Always);
        // Only what is given changes; a pids limit of 0 or less is none.
        c.update(&UpdateOptions {
            pids: Some(-1),
            ..UpdateOptions::default()
        })
        .unwrap();
        let again = Container::load(root.path()).unwrap();
        assert_eq!(again.config.spec.extra.resources.pids, None);
        assert_eq!(again.config.spec.extra.resources.memory, Some(64 << 20));
        assert_eq!(again.config.restart, RestartPolicy::Always);
    }

    #[test]
    fn memory_and_swap_as_docker_checks_them() {
        let root = tempfile::tempdir().unwrap();
        let mut c = stopped(root.path());
        let swap_only = UpdateOptions {
            memory_swap: Some(128 << 20),
            ..UpdateOptions::default()
        };
        let e = c.update(&swap_only).unwrap_err();
        assert_eq!(
            e.to_string(),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        let e = c
            .update(&UpdateOptions {
                memory: Some(256 << 20),
                ..swap_only.clone()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        c.update(&UpdateOptions {
            memory: Some(64 << 20),
            ..swap_only.clone()
        })
        .unwrap();
        let e = c
            .update(&UpdateOptions {
                memory: Some(256 << 20),
                ..UpdateOptions::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Memory limit should be smaller than already set memoryswap limit, update the \
             memoryswap at the same time"
        );
        // Below the swap limit: the swap limit stays; -1: unlimited swap.
        c.update(&UpdateOptions {
            memory: Some(100 << 20),
            ..UpdateOptions::default()
        })
        .unwrap();
        let res = Container::load(root.path())
            .unwrap()
            .config
            .spec
            .extra
            .resources;
        assert_eq!(
            (res.memory, res.memory_swap),
            (Some(100 << 20), Some(128 << 20))
        );
        c.update(&UpdateOptions {
            memory_swap: Some(-1),
            ..UpdateOptions::default()
        })
        .unwrap();
        let again = Container::load(root.path()).unwrap();
        let res = &again.config.spec.extra.resources;
        assert_eq!((res.memory, res.memory_swap), (Some(100 << 20), Some(-1)));
        assert_eq!(again.inspect()["HostConfig"]["MemorySwap"], -1);
    }

    #[test]
    fn docker_refusals() {
        let root = tempfile::tempdir().unwrap();
        let mut c = stopped(root.path());
        let e = c
            .update(&UpdateOptions {
                memory: Some(1 << 20),
                ..UpdateOptions::default()
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "Minimum memory limit allowed is 6MB");
        c.config.remove = true;
        write_json_atomic(&root.path().join("config.json"), &c.config).unwrap();
        let e = c
            .update(&UpdateOptions {
                restart: Some(RestartPolicy::Always),
                ..UpdateOptions::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        );
        // Nothing was written.
        let again = Container::load(root.path()).unwrap();
        assert_eq!(again.config.restart, RestartPolicy::No);
    }
}
