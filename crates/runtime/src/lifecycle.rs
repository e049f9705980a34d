//! A container's life after `create`/`run`: `kiln start [-a]`, `kiln restart`, `kiln rename`.
//! A container started again keeps its directory: the same writable layer (`upper/`), config
//! (volumes, ports, name, id) and log (new output is appended).

use crate::container::{valid_name, write_json_atomic, Containers, Status};
use crate::{AttachEnd, AttachOptions, Container, Error, LogOptions, Result};
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

impl Container {
    /// `docker start`: starts a created or stopped container in the background under a shim
    /// (`shim` as for [`Container::start_detached`]); returns once it runs. A running
    /// container is left alone. A failed start is the error, and the container stays,
    /// "Created" with the error recorded, as docker leaves it.
    pub fn start(&mut self, shim: &[OsString]) -> Result<()> {
        self.start_with(shim, None)
    }

    /// [`Container::start`]; with `attach` (see [`Container::start_shim`]) its shim waits
    /// for a client to attach.
    fn start_with(
        &mut self,
        shim: &[OsString],
        attach: Option<crate::attach::Awaited>,
    ) -> Result<()> {
        self.refresh()?;
        if self.is_running() {
            return Ok(());
        }
        self.reset_state()?;
        self.wait_ports_free(Duration::from_secs(3));
        self.start_shim(shim, attach)
    }

    /// `docker start -ai` (and `start -a` of a `-t` container): starts it as
    /// [`Container::start`] does (a running one is only attached), its shim waiting for
    /// this client, and [`Container::attach`]es to it.
    pub async fn start_and_attach(
        &mut self,
        shim: &[OsString],
        opts: &AttachOptions,
    ) -> Result<AttachEnd> {
        let size = crate::terminal::caller_size();
        self.start_with(shim, Some(crate::attach::Awaited { size }))?;
        self.attach(opts).await
    }

    /// Waits (at most `timeout`) until the host ports the container publishes can be bound:
    /// the pasta of its last run is not waited for when the run ends (see the executor's
    /// `net.rs`) and holds them until it notices. A port still taken then fails the start,
    /// which reports it.
    pub(crate) fn wait_ports_free(&self, timeout: Duration) {
        let ports = &self.config.spec.extra.ports;
        if ports.is_empty() {
            return;
        }
        let free = |p: &kiln_executor::PortMapping| {
            let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
            let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
                return true;
            };
            let addr = std::net::SocketAddr::new(ip, p.host_port);
            if p.protocol == "udp" {
                std::net::UdpSocket::bind(addr).is_ok()
            } else {
                std::net::TcpListener::bind(addr).is_ok()
            }
        };
        crate::kill::poll_until(Some(timeout), || ports.iter().all(free));
    }

    /// `docker start -a`: [`Container::start`], then the output it writes from now on to
    /// `stdout`/`stderr` (by stream) until it ends; returns its exit code (`None` when it was
    /// removed before its end could be read). A running container is only followed.
    pub fn start_attached(
        &mut self,
        shim: &[OsString],
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<Option<i32>> {
        // Held until the end is read: a `--rm` container is removed only after that.
        let lock = self.lock_dir(false)?;
        let from = self.log_mark();
        self.start(shim)?;
        let follow = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        self.logs_from(Some(from), &follow, stdout, stderr)?;
        self.wait_stopped(None)?;
        drop(lock);
        Ok(self.state.exit_code.filter(|_| self.dir.exists()))
    }

    /// `docker restart`: [`Container::stop`] (the stop signal, SIGKILL after `timeout`),
    /// then [`Container::start`]. A container that is not running is just started.
    pub fn restart(&mut self, timeout: Duration, shim: &[OsString]) -> Result<()> {
        self.refresh()?;
        if self.is_running() {
            self.stop(timeout)?;
        }
        if !self.dir.exists() {
            // A `--rm` container went when it stopped.
            return Err(Error::NoSuchContainer(self.config.id.clone()));
        }
        self.start(shim)
    }

    /// The state of a container about to start again: created, nothing of the last run.
    fn reset_state(&mut self) -> Result<()> {
        self.state.status = Status::Created;
        self.state.supervisor = None;
        self.state.init = None;
        self.state.started = None;
        self.state.finished = None;
        self.state.exit_code = None;
        self.state.oom_killed = false;
        self.state.error = None;
        // A start by the user: the policy applies again, counted from zero (as docker).
        self.state.restart_count = 0;
        self.state.restarting = false;
        self.clear_stopped_by_user();
        self.save_state()
    }
}

impl Containers {
    /// `docker rename`: gives the container `what` names the name `new` (unique, docker's
    /// rule for names, not its current one).
    pub fn rename(&self, what: &str, new: &str) -> Result<Container> {
        let new = new.strip_prefix('/').unwrap_or(new);
        let _lock = self.lock()?;
        let mut c = self.find(what)?;
        if !valid_name(new) {
            return Err(Error::InvalidName(new.to_string()));
        }
        if c.config.name == new {
            return Err(Error::SameName);
        }
        if let Some(other) = self.list()?.into_iter().find(|o| o.config.name == new) {
            return Err(Error::NameInUse {
                name: new.to_string(),
                id: other.config.id,
            });
        }
        c.config.name = new.to_string();
        write_json_atomic(&c.dir.join("config.json"), &c.config)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, State};

    fn make(containers: &Containers, name: &str, id: &str) -> Container {
        let dir = containers.dir().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Container {
            config: Config {
                created: crate::now_millis(),
                ..Config::for_test(id, name, &dir)
            },
            state: State {
                status: Status::Exited,
                exit_code: Some(3),
                ..State::default()
            },
            dir,
        };
        c.save_state().unwrap();
        write_json_atomic(&c.dir.join("config.json"), &c.config).unwrap();
        c
    }

    #[test]
    fn rename_checks_the_name_and_keeps_it_unique() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::new(root.path());
        let a = make(&cs, "first", &"a".repeat(64));
        make(&cs, "second", &"b".repeat(64));
        let renamed = cs.rename("first", "third").unwrap();
        assert_eq!(renamed.id(), a.id());
        assert_eq!(cs.find("third").unwrap().id(), a.id());
        assert!(matches!(
            cs.find("first"),
            Err(Error::NoSuchContainer(n)) if n == "first"
        ));
        let e = cs.rename("third", "second").unwrap_err();
        assert!(
            matches!(&e, Error::NameInUse { name, .. } if name == "second"),
            "{e}"
        );
        assert!(matches!(cs.rename("third", "third"), Err(Error::SameName)));
        assert!(matches!(
            cs.rename("third", "a b"),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            cs.rename("nope", "fourth"),
            Err(Error::NoSuchContainer(_))
        ));
        // The container first, as docker: a missing one is what is reported.
        assert!(matches!(
            cs.rename("nope", "x"),
            Err(Error::NoSuchContainer(_))
        ));
    }

    #[test]
    fn prune_until_removes_only_stopped_containers_created_before() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::new(root.path());
        let with_created = |name: &str, id: &str, created: i64| {
            let mut c = make(&cs, name, id);
            c.config.created = created;
            write_json_atomic(&c.dir.join("config.json"), &c.config).unwrap();
            std::fs::write(c.dir.join("container.log"), b"0123456789").unwrap();
        };
        with_created("old", &"a".repeat(64), 1_000);
        with_created("new", &"b".repeat(64), 5_000);
        let mut running = make(&cs, "running", &"c".repeat(64));
        running.config.created = 1_000;
        write_json_atomic(&running.dir.join("config.json"), &running.config).unwrap();
        running.state.status = Status::Running;
        running.state.supervisor = Some(kiln_executor::HostProcess::current().unwrap());
        running.save_state().unwrap();

        let r = cs.prune_created_before(Some(5_000)).unwrap();
        assert_eq!(r.removed, ["a".repeat(64)]);
        assert!(r.reclaimed >= 10, "{}", r.reclaimed);
        let r = cs.prune_created_before(None).unwrap();
        assert_eq!(r.removed, ["b".repeat(64)]);
        let left: Vec<String> = cs
            .list()
            .unwrap()
            .iter()
            .map(|c| c.config.name.clone())
            .collect();
        assert_eq!(left, ["running"]);
    }

    #[test]
    fn a_failed_start_keeps_the_container_created_with_the_error() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::new(root.path());
        let mut c = make(&cs, "web", &"c".repeat(64));
        // A shim that exits without starting anything.
        let e = c.start(&["/bin/false".into()]).unwrap_err();
        assert!(matches!(e, Error::Shim(_)), "{e}");
        let c = cs.find("web").unwrap();
        assert_eq!(c.state.status, Status::Created);
        assert_eq!(c.state.exit_code, None, "the last run's exit code is gone");
    }
}
