//! The executor of a [`Plan`]: `up` makes the project's networks and volumes and converges its
//! containers (created, started in `depends_on` order, waiting for `service_healthy` and
//! `service_completed_successfully`); `down` finds everything of a project from its labels
//! alone and removes it. Images are built by the caller before `up` (through the worker's
//! build session); `up` only runs them.
//!
//! Convergence is docker/compose's: a container whose `com.docker.compose.config-hash` and
//! `com.docker.compose.image` (the manifest digest it was made from) labels match the plan is
//! left as it is (started when stopped); any other is recreated, its named volumes kept.
//!
//! A recreated container gets new anonymous volumes (Compose carries the old ones over); the
//! old ones are left, as `down` without `-v` leaves them.
//!
//! Not yet: `ports:` (publishing on a user-defined network is not in kiln-network yet: refused
//! with a clear error), `secrets`/`configs`, `tmpfs`, resource limits and the other keys
//! [`unsupported`] names (warned about and ignored), more than one network per service.

use crate::model::{Project, Service};
use crate::plan::{
    Plan, ServicePlan, LABEL_CONFIG_HASH, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE,
};
use kiln_cache::Store;
use kiln_runtime::{Container, Containers, CreateOptions, HealthStatus, Status, VolumeSpec};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The label holding the manifest digest of the image a container was made from.
pub const LABEL_IMAGE: &str = "com.docker.compose.image";

/// Errors of `up` and `down`.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A container operation failed.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::Error),
    /// A container could not be made (image missing and not pullable, …).
    #[error(transparent)]
    Run(#[from] kiln_runtime::RunError),
    /// A network operation failed.
    #[error(transparent)]
    Network(#[from] kiln_network::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// A key the executor cannot carry out yet.
    #[error("service {service:?}: {what} is not supported by kiln compose yet")]
    NotYet {
        /// The service.
        service: String,
        /// What.
        what: String,
    },
    /// A value of the file kiln cannot use.
    #[error("service {service:?}: {message}")]
    Invalid {
        /// The service.
        service: String,
        /// Why.
        message: String,
    },
    /// An external network or volume does not exist.
    #[error("{kind} {name} declared as external, but could not be found")]
    ExternalMissing {
        /// `network` or `volume`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A dependency's container failed its health check.
    #[error("dependency failed to start: container {0} is unhealthy")]
    Unhealthy(String),
    /// A dependency's container exited while `up` waited for it to be healthy.
    #[error("dependency failed to start: container {0} exited ({1})")]
    Exited(String, i32),
    /// A `service_completed_successfully` dependency exited with another code.
    #[error("service {service:?} didn't complete successfully: exit {code}")]
    NotCompleted {
        /// The dependency.
        service: String,
        /// Its exit code.
        code: i32,
    },
}

/// `up`'s flags.
#[derive(Clone, Debug, Default)]
pub struct UpOptions {
    /// `--force-recreate`.
    pub force_recreate: bool,
    /// `--no-recreate`.
    pub no_recreate: bool,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// `--wait`: wait for every container to be running (healthy when it has a check).
    pub wait: bool,
}

/// What `up` and `down` do, for the caller to show (Compose's progress lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Network`, `Volume`, `Container`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// `Created`, `Started`, `Running`, `Recreated`, `Healthy`, `Stopped`, `Removed`, …
    pub status: &'static str,
}

fn event(kind: &'static str, name: &str, status: &'static str) -> Event {
    Event {
        kind,
        name: name.to_string(),
        status,
    }
}

/// The containers of `project` (one-off ones included), from their labels alone.
///
/// # Errors
/// The containers cannot be listed.
pub fn project_containers(root: &Path, project: &str) -> Result<Vec<Container>, UpError> {
    let mut list: Vec<Container> = Containers::new(root)
        .list()?
        .into_iter()
        .filter(|c| c.config.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
        .collect();
    list.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    Ok(list)
}

/// Keys of a service `up` does not carry out yet: warned about by the caller.
pub fn unsupported(s: &Service) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut add = |set: bool, key| {
        if set {
            keys.push(key);
        }
    };
    add(!s.secrets.is_empty(), "secrets");
    add(!s.configs.is_empty(), "configs");
    add(!s.tmpfs.is_empty(), "tmpfs");
    add(
        s.deploy.as_ref().is_some_and(|d| d.resources.is_some()),
        "deploy.resources",
    );
    add(!s.cap_add.is_empty(), "cap_add");
    add(!s.cap_drop.is_empty(), "cap_drop");
    add(!s.sysctls.is_empty(), "sysctls");
    add(!s.dns.is_empty(), "dns");
    add(s.platform.is_some(), "platform");
    keys
}

/// The container options of one of `service`'s containers.
fn create_options(
    plan: &Plan,
    project: &Project,
    environment: &BTreeMap<String, String>,
    sp: &ServicePlan,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Result<CreateOptions, UpError> {
    let s = &project.services[&sp.name];
    let invalid = |message: String| UpError::Invalid {
        service: sp.name.clone(),
        message,
    };
    if !s.ports.is_empty() {
        return Err(UpError::NotYet {
            service: sp.name.clone(),
            what: "ports: (publishing ports on a project network)".into(),
        });
    }
    let mut o = CreateOptions {
        name: Some(name.to_string()),
        detach: true,
        labels,
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        stop_signal: s.stop_signal.clone(),
        init: s.init.unwrap_or(false),
        tty: s.tty.unwrap_or(false),
        interactive: s.stdin_open.unwrap_or(false),
        ..CreateOptions::default()
    };
    o.env = s
        .environment
        .iter()
        .filter_map(|(k, v)| {
            v.clone()
                .or_else(|| environment.get(k).cloned())
                .map(|v| format!("{k}={v}"))
        })
        .collect();
    match &s.entrypoint {
        Some(ep) if ep.is_empty() => o.entrypoint = Some(String::new()),
        Some(ep) => {
            o.entrypoint = Some(ep[0].clone());
            o.args = ep[1..].to_vec();
        }
        None => {}
    }
    if let Some(cmd) = &s.command {
        o.args.extend(cmd.iter().cloned());
    }
    if let Some(g) = &s.stop_grace_period {
        let d = kiln_units::parse_duration(g, kiln_units::DurationUnits::Go)
            .map_err(|e| invalid(format!("stop_grace_period: {e}")))?;
        o.stop_timeout = Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    }
    if let Some(r) = &s.restart {
        o.restart = r
            .parse()
            .map_err(|e: kiln_runtime::PolicyError| invalid(e.to_string()))?;
    }
    if let Some(h) = &s.healthcheck {
        o.health = health(h).map_err(invalid)?;
    }
    for e in &s.expose {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let port = port
            .parse()
            .map_err(|_| invalid(format!("expose: invalid port {e:?}")))?;
        o.expose.push((port, proto.to_string()));
    }
    o.extra.privileged = s.privileged.unwrap_or(false);
    o.extra.read_only = s.read_only.unwrap_or(false);
    for h in &s.extra_hosts {
        let (host, ip) = h.split_once('=').unwrap_or((h, ""));
        o.extra.extra_hosts.push((host.to_string(), ip.to_string()));
    }
    for v in &s.volumes {
        match v.kind.as_str() {
            "volume" => {
                let name = v.source.as_ref().map(|key| {
                    plan.volumes
                        .iter()
                        .find(|p| &p.key == key)
                        .map_or_else(|| key.clone(), |p| p.name.clone())
                });
                o.volumes.push(VolumeSpec {
                    name,
                    destination: v.target.clone(),
                    readonly: v.read_only,
                });
            }
            "bind" => o.mounts.push(kiln_executor::BindMount {
                source: v.source.clone().unwrap_or_default().into(),
                destination: v.target.clone(),
                readonly: v.read_only,
            }),
            other => {
                return Err(UpError::NotYet {
                    service: sp.name.clone(),
                    what: format!("volumes of type {other}"),
                })
            }
        }
    }
    match s.network_mode.as_deref() {
        Some("none") => o.network = kiln_executor::Network::None,
        Some("host") => o.network = kiln_executor::Network::Host,
        Some(m) => {
            return Err(UpError::NotYet {
                service: sp.name.clone(),
                what: format!("network_mode: {m}"),
            })
        }
        None => {
            if sp.networks.len() > 1 {
                return Err(UpError::NotYet {
                    service: sp.name.clone(),
                    what: "more than one network per service".into(),
                });
            }
            if let Some((net, aliases)) = sp.networks.iter().next() {
                o.network_name = Some(net.clone());
                o.network_aliases = aliases.clone();
            }
        }
    }
    Ok(o)
}

/// The health check options of a service's `healthcheck:`.
fn health(h: &crate::model::Healthcheck) -> Result<kiln_runtime::HealthOptions, String> {
    let d = |v: &Option<String>, key: &str| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(|s| {
                kiln_units::parse_duration(s, kiln_units::DurationUnits::Go)
                    .map_err(|e| format!("healthcheck.{key}: {e}"))
            })
            .transpose()
    };
    let mut o = kiln_runtime::HealthOptions {
        interval: d(&h.interval, "interval")?,
        timeout: d(&h.timeout, "timeout")?,
        start_period: d(&h.start_period, "start_period")?,
        retries: h
            .retries
            .map(|r| u32::try_from(r).map_err(|_| format!("healthcheck.retries: {r} is too large")))
            .transpose()?,
        disabled: h.disable,
        ..Default::default()
    };
    match h.test.first().map(String::as_str) {
        None => {}
        Some("NONE") => o.disabled = true,
        Some("CMD-SHELL") => o.cmd = Some(h.test[1..].join(" ")),
        // kiln's check runs a shell command line: the exec form's words, quoted for `sh -c`.
        Some("CMD") => {
            o.cmd = Some(
                h.test[1..]
                    .iter()
                    .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        Some(other) => return Err(format!("healthcheck.test: unknown form {other:?}")),
    }
    Ok(o)
}

/// The manifest digest `image` names in the store, if it is there.
fn image_digest(store: &Store, image: &str) -> Option<String> {
    let r = kiln_oci::Reference::parse(image).ok()?;
    store
        .get_image(&r.to_string())
        .ok()
        .flatten()
        .map(|rec| rec.manifest_digest)
}

/// `docker compose up -d`: networks, volumes, then the containers of `plan` in its order.
/// A variable without a value in the file takes the loaded environment's.
///
/// # Errors
/// The first failure; what was done before it stays (as Compose leaves it).
#[allow(clippy::too_many_lines)]
pub async fn up(
    store: &Arc<Store>,
    registry: &kiln_registry::Client,
    shim: &[OsString],
    loaded: &crate::Loaded,
    plan: &Plan,
    opts: &UpOptions,
    mut on: impl FnMut(Event),
) -> Result<(), UpError> {
    let (project, environment) = (&loaded.project, &loaded.environment);
    // What cannot be run is refused before anything is made.
    for sp in &plan.services {
        create_options(plan, project, environment, sp, &sp.name, BTreeMap::new())?;
    }
    let root = store.root();
    let networks = kiln_network::Networks::new(root);
    for n in &plan.networks {
        if networks.find(&n.name).is_ok() {
            continue;
        }
        if n.external {
            return Err(UpError::ExternalMissing {
                kind: "network",
                name: n.name.clone(),
            });
        }
        networks.create(
            &n.name,
            &kiln_network::CreateOptions {
                subnet: n.subnets.first().cloned(),
                internal: n.internal,
                labels: n.labels.clone(),
                ..Default::default()
            },
        )?;
        on(event("Network", &n.name, "Created"));
    }
    let volumes = kiln_runtime::Volumes::new(root);
    for v in &plan.volumes {
        if v.external {
            if volumes.get(&v.name).is_err() {
                return Err(UpError::ExternalMissing {
                    kind: "volume",
                    name: v.name.clone(),
                });
            }
            continue;
        }
        if volumes.create(Some(&v.name), v.labels.clone())?.1 {
            on(event("Volume", &v.name, "Created"));
        }
    }
    let existing = project_containers(root, &plan.project)?;
    if opts.remove_orphans {
        for c in existing.iter().filter(|c| {
            c.config
                .labels
                .get(LABEL_SERVICE)
                .is_none_or(|s| !project.services.contains_key(s))
        }) {
            remove(c.clone(), None, false)?;
            on(event("Container", &c.config.name, "Removed"));
        }
    }
    for sp in &plan.services {
        for (dep, cond) in &sp.depends_on {
            if !plan.services.iter().any(|p| &p.name == dep) {
                continue;
            }
            wait_for(root, &plan.project, dep, &cond.condition, &mut on)?;
        }
        let digest = image_digest(store, &sp.image);
        for cp in &sp.containers {
            let mut labels = cp.labels.clone();
            if let Some(d) = &digest {
                labels.insert(LABEL_IMAGE.into(), d.clone());
            }
            let current = existing.iter().find(|c| c.config.name == cp.name).cloned();
            let mut recreated = false;
            if let Some(mut c) = current {
                let same = c.config.labels.get(LABEL_CONFIG_HASH) == Some(&sp.config_hash)
                    && (digest.is_none() || c.config.labels.get(LABEL_IMAGE) == digest.as_ref());
                if opts.no_recreate || (same && !opts.force_recreate) {
                    c.refresh()?;
                    if c.is_running() {
                        on(event("Container", &cp.name, "Running"));
                    } else {
                        c.start(shim)?;
                        on(event("Container", &cp.name, "Started"));
                    }
                    continue;
                }
                remove(c, None, false)?;
                recreated = true;
            }
            let o = create_options(plan, project, environment, sp, &cp.name, labels)?;
            let reference =
                kiln_oci::Reference::parse(&sp.image).map_err(|e| UpError::Invalid {
                    service: sp.name.clone(),
                    message: format!("image {:?}: {e}", sp.image),
                })?;
            let run = kiln_runtime::RunOptions {
                image: sp.image.clone(),
                reference,
                platform: None,
                container: o,
            };
            let mut c = kiln_runtime::create(store, registry, &run, |_| {}).await?;
            on(event(
                "Container",
                &cp.name,
                if recreated { "Recreated" } else { "Created" },
            ));
            c.start(shim)?;
            on(event("Container", &cp.name, "Started"));
        }
    }
    if opts.wait {
        for sp in &plan.services {
            wait_for(root, &plan.project, &sp.name, "service_healthy", &mut on)?;
        }
    }
    Ok(())
}

/// Waits until every container of `service` meets `condition` (`service_started`: nothing to
/// wait for; `service_healthy`: healthy, or running when it has no check;
/// `service_completed_successfully`: exited 0).
fn wait_for(
    root: &Path,
    project: &str,
    service: &str,
    condition: &str,
    on: &mut impl FnMut(Event),
) -> Result<(), UpError> {
    if condition == "service_started" {
        return Ok(());
    }
    let containers: Vec<Container> = project_containers(root, project)?
        .into_iter()
        .filter(|c| {
            c.config.labels.get(LABEL_SERVICE).map(String::as_str) == Some(service)
                && c.config.labels.get(LABEL_ONEOFF).map(String::as_str) != Some("True")
        })
        .collect();
    for mut c in containers {
        if condition == "service_completed_successfully" {
            let code = c.wait()?.unwrap_or(0);
            if code != 0 {
                return Err(UpError::NotCompleted {
                    service: service.to_string(),
                    code,
                });
            }
            on(event("Container", &c.config.name, "Exited"));
            continue;
        }
        loop {
            c.reload()?;
            c.refresh()?;
            if c.state.status != Status::Running {
                return Err(UpError::Exited(
                    c.config.name.clone(),
                    c.state.exit_code.unwrap_or(255),
                ));
            }
            match c.health().map(|h| h.status) {
                None | Some(HealthStatus::Healthy) => break,
                Some(HealthStatus::Unhealthy) => {
                    return Err(UpError::Unhealthy(c.config.name.clone()))
                }
                Some(HealthStatus::Starting) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        on(event("Container", &c.config.name, "Healthy"));
    }
    Ok(())
}

/// Stops (after `timeout`, else the container's own stop timeout) and removes a container,
/// with its anonymous volumes when `volumes`.
fn remove(mut c: Container, timeout: Option<Duration>, volumes: bool) -> Result<(), UpError> {
    let t = timeout.unwrap_or_else(|| c.stop_timeout());
    c.stop(t)?;
    let anonymous = volumes.then(|| c.clone());
    c.remove(true)?;
    if let Some(c) = anonymous {
        c.remove_anonymous_volumes()?;
    }
    Ok(())
}

/// `down`'s flags.
#[derive(Clone, Debug, Default)]
pub struct DownOptions {
    /// `-v`: the project's named volumes too.
    pub volumes: bool,
    /// `--remove-orphans`: containers of services no longer in the file too.
    pub remove_orphans: bool,
    /// `-t`.
    pub timeout: Option<Duration>,
}

/// `docker compose down`: the project's containers (found by label), then its networks and,
/// with `-v`, its volumes (by label too). Returns the orphans left (services not in `services`,
/// without `--remove-orphans`).
///
/// # Errors
/// The first failure.
pub fn down(
    root: &Path,
    project: &str,
    services: &[String],
    opts: &DownOptions,
    mut on: impl FnMut(Event),
) -> Result<Vec<String>, UpError> {
    let mut orphans = Vec::new();
    for c in project_containers(root, project)? {
        let known = c
            .config
            .labels
            .get(LABEL_SERVICE)
            .is_some_and(|s| services.contains(s));
        if !known && !opts.remove_orphans {
            orphans.push(c.config.name.clone());
            continue;
        }
        let name = c.config.name.clone();
        on(event("Container", &name, "Stopping"));
        remove(c, opts.timeout, opts.volumes)?;
        on(event("Container", &name, "Removed"));
    }
    if !orphans.is_empty() {
        // Their networks and volumes are still in use.
        return Ok(orphans);
    }
    let networks = kiln_network::Networks::new(root);
    for n in networks.list()? {
        if n.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project) {
            networks.remove(&n.name)?;
            on(event("Network", &n.name, "Removed"));
        }
    }
    if opts.volumes {
        let volumes = kiln_runtime::Volumes::new(root);
        for v in volumes.list()? {
            if v.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project) {
                volumes.remove(&v.name, false)?;
                on(event("Volume", &v.name, "Removed"));
            }
        }
    }
    Ok(orphans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Healthcheck;

    #[test]
    fn healthcheck_forms() {
        let h = Healthcheck {
            test: vec!["CMD".into(), "nc".into(), "-z".into(), "it's".into()],
            interval: Some("1s".into()),
            retries: Some(5),
            ..Default::default()
        };
        let o = health(&h).unwrap();
        assert_eq!(o.cmd.as_deref(), Some("'nc' '-z' 'it'\\''s'"));
        assert_eq!(o.interval, Some(Duration::from_secs(1)));
        assert_eq!(o.retries, Some(5));
        let h = Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /x".into()],
            ..Default::default()
        };
        assert_eq!(health(&h).unwrap().cmd.as_deref(), Some("test -f /x"));
        let h = Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert!(health(&h).unwrap().disabled);
        let h = Healthcheck {
            test: vec!["BOGUS".into()],
            ..Default::default()
        };
        assert!(health(&h).is_err());
    }

    fn loaded(text: &str) -> crate::Loaded {
        crate::load(&crate::LoadOptions {
            files: vec!["-".into()],
            project_name: Some("p".into()),
            project_directory: None,
            env_files: vec![],
            profiles: vec![],
            services: vec![],
            cwd: "/srv".into(),
            environ: BTreeMap::from([("FROM_ENV".to_string(), "e".to_string())]),
            stdin: Some(text.to_string()),
        })
        .unwrap()
    }

    fn options(l: &crate::Loaded, service: &str) -> Result<CreateOptions, UpError> {
        let plan = crate::plan(l, &[]).unwrap();
        let sp = plan.services.iter().find(|s| s.name == service).unwrap();
        create_options(
            &plan,
            &l.project,
            &l.environment,
            sp,
            "p-x-1",
            BTreeMap::new(),
        )
    }

    #[test]
    fn services_become_container_options() {
        let l = loaded(
            "services:\n  api:\n    image: busybox\n    entrypoint: [\"/bin/sh\", \"-c\"]\n    command: echo hi\n    environment:\n      A: \"1\"\n      FROM_ENV:\n    volumes:\n      - data:/data:ro\n      - /cache\n    restart: unless-stopped\n    stop_grace_period: 1m\n    networks:\n      default:\n        aliases: [web]\n  plain:\n    image: busybox\n    command: [\"sleep\", \"1\"]\nvolumes:\n  data:\n",
        );
        let o = options(&l, "api").unwrap();
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.args, vec!["-c", "echo", "hi"]);
        assert_eq!(o.env, vec!["A=1", "FROM_ENV=e"]);
        assert_eq!(o.network_name.as_deref(), Some("p_default"));
        assert_eq!(o.network_aliases, vec!["api", "web"]);
        assert_eq!(
            o.volumes,
            vec![
                VolumeSpec {
                    name: Some("p_data".into()),
                    destination: "/data".into(),
                    readonly: true
                },
                VolumeSpec {
                    name: None,
                    destination: "/cache".into(),
                    readonly: false
                }
            ]
        );
        assert_eq!(o.stop_timeout, Some(60));
        assert_eq!(
            o.restart,
            "unless-stopped"
                .parse::<kiln_runtime::RestartPolicy>()
                .unwrap()
        );
        assert!(o.detach);
        let o = options(&l, "plain").unwrap();
        assert_eq!(o.entrypoint, None, "the image's entrypoint stays");
        assert_eq!(o.args, vec!["sleep", "1"]);
    }

    #[test]
    fn ports_are_refused_for_now() {
        let l = loaded("services:\n  web:\n    image: busybox\n    ports: [\"8080:80\"]\n");
        let e = options(&l, "web").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service \"web\": ports: (publishing ports on a project network) is not supported by kiln compose yet"
        );
    }

    #[test]
    fn unsupported_keys_are_named() {
        let s = Service {
            tmpfs: vec!["/run".into()],
            cap_add: vec!["NET_ADMIN".into()],
            ..Default::default()
        };
        assert_eq!(unsupported(&s), vec!["tmpfs", "cap_add"]);
        assert!(unsupported(&Service::default()).is_empty());
    }
}
