//! `kiln inspect CTR`: a container in the shape of docker's `ContainerInspect` (the fields
//! kiln has; see [`Container::inspect`]).

use crate::container::Status;
use crate::logs::rfc3339_nanos;
use crate::Container;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime};

/// Docker's time for "never" (Go's zero time).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(millis: Option<i64>) -> String {
    match millis.and_then(|m| u64::try_from(m).ok()) {
        Some(m) => rfc3339_nanos(SystemTime::UNIX_EPOCH + Duration::from_millis(m)),
        None => ZERO_TIME.to_string(),
    }
}

impl Container {
    /// Docker's `ContainerInspect` of the container: `Id`, `Name` (with docker's leading
    /// `/`), `Created`, `Path`/`Args`, `State`, `Image`, `Config`, `HostConfig`
    /// (`PortBindings`, `Binds`, `RestartPolicy`, limits), `Mounts` and
    /// `NetworkSettings.Ports`. Call [`Container::refresh`] first for an up-to-date state.
    pub fn inspect(&self) -> Value {
        let spec = &self.config.spec;
        let running = self.is_running();
        let restarting = running && self.state.restarting;
        let paused = running && self.is_paused();
        let status = match self.state.status {
            Status::Running if restarting => "restarting",
            Status::Running if paused => "paused",
            Status::Running if running => "running",
            Status::Created => "created",
            Status::Running | Status::Exited => "exited",
        };
        let pid = self
            .state
            .init
            .or(self.state.supervisor)
            .filter(|_| running)
            .map_or(0, |p| p.pid);
        let mut bindings = Map::new();
        let mut exposed = Map::new();
        for (p, proto) in self.exposed_ports() {
            exposed.insert(format!("{p}/{proto}"), json!({}));
        }
        for p in &spec.extra.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.insert(key.clone(), json!({}));
            push_binding(
                &mut bindings,
                key,
                p.host_ip.as_ref(),
                p.host_port.to_string(),
            );
        }
        // HostConfig.PortBindings: the specs as given (an empty HostPort for a port kiln
        // picks); NetworkSettings.Ports: the ports they got.
        let requested = match &self.config.publish {
            None => bindings.clone(),
            Some(specs) => {
                let mut m = Map::new();
                for s in specs {
                    let host = match s.host {
                        None => String::new(),
                        Some((a, b)) if a == b => a.to_string(),
                        Some((a, b)) if s.container.0 == s.container.1 => format!("{a}-{b}"),
                        Some(_) => String::new(),
                    };
                    for (i, ctr) in (s.container.0..=s.container.1).enumerate() {
                        let host = match s.host {
                            Some((a, b)) if b - a == s.container.1 - s.container.0 && a != b => {
                                (u32::from(a) + u32::try_from(i).unwrap_or(0)).to_string()
                            }
                            _ => host.clone(),
                        };
                        push_binding(
                            &mut m,
                            format!("{ctr}/{}", s.protocol),
                            s.host_ip.as_ref(),
                            host,
                        );
                    }
                }
                m
            }
        };
        let mut labels = self.config.image_config["config"]["Labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &self.config.labels {
            labels.insert(k.clone(), json!(v));
        }
        let volume_of = |dst: &str| self.config.volumes.iter().find(|v| v.destination == dst);
        let binds: Vec<String> = spec
            .mounts
            .iter()
            .filter(|m| volume_of(&m.destination).is_none())
            .map(|m| {
                let ro = if m.readonly { ":ro" } else { "" };
                format!("{}:{}{ro}", m.source.display(), m.destination)
            })
            .collect();
        let mounts: Vec<Value> = spec
            .mounts
            .iter()
            .map(|m| match volume_of(&m.destination) {
                Some(v) => json!({
                    "Type": "volume",
                    "Name": v.name,
                    "Source": m.source,
                    "Destination": m.destination,
                    "Driver": "local",
                    "Mode": if m.readonly { "ro" } else { "" },
                    "RW": !m.readonly,
                    "Propagation": "",
                }),
                None => json!({
                    "Type": "bind",
                    "Source": m.source,
                    "Destination": m.destination,
                    "Mode": if m.readonly { "ro" } else { "" },
                    "RW": !m.readonly,
                    "Propagation": "rprivate",
                }),
            })
            .collect();
        let network_mode = match (&spec.network, &self.config.network_name) {
            (_, Some(name)) => name.as_str(),
            (kiln_executor::Network::None, _) => "none",
            (kiln_executor::Network::Host, _) => "host",
            (kiln_executor::Network::Default | kiln_executor::Network::Join(_), _) => "default",
        };
        // docker's NetworkSettings.Networks, one entry per network (an error reading the
        // networks shows none rather than failing inspect).
        let networks: serde_json::Map<String, Value> = self
            .networks()
            .unwrap_or_default()
            .into_iter()
            .map(|(net, ep)| {
                let running_ep = running;
                (
                    net.name.clone(),
                    json!({
                        "Aliases": ep.aliases,
                        "NetworkID": net.id,
                        "EndpointID": if running_ep { ep.endpoint_id.as_str() } else { "" },
                        "Gateway": net.gateway.to_string(),
                        "IPAddress": ep.ip.to_string(),
                        "IPPrefixLen": net.subnet.prefix(),
                        "MacAddress": ep.mac,
                        "DNSNames": [self.config.name.clone(), self.config.id[..12].to_string()],
                    }),
                )
            })
            .collect();
        let limits = &spec.extra.resources;
        let (path, args) = spec
            .args
            .split_first()
            .map_or((None, &[][..]), |(p, a)| (Some(p), a));
        let mut v = json!({
            "Id": self.config.id,
            "Created": time(Some(self.config.created)),
            "Path": path,
            "Args": args,
            "State": {
                "Status": status,
                "Running": running,
                "Paused": paused,
                "Restarting": restarting,
                "OOMKilled": self.state.oom_killed,
                "Dead": false,
                "Pid": pid,
                "ExitCode": self.state.exit_code.unwrap_or(0),
                "Error": self.state.error.clone().unwrap_or_default(),
                "StartedAt": time(self.state.started),
                "FinishedAt": time(self.state.finished),
            },
            "Image": self.config.image,
            // docker's "" when nothing is recorded (the none driver).
            "LogPath": self.log_path().map_or_else(String::new, |p| p.display().to_string()),
            "Name": format!("/{}", self.config.name),
            "RestartCount": self.state.restart_count,
            "HostConfig": {
                "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
                "NetworkMode": network_mode,
                "PortBindings": requested,
                "PublishAllPorts": self.config.publish_all,
                "Init": if self.config.init { json!(true) } else { Value::Null },
                "RestartPolicy": {
                    "Name": self.config.restart.name(),
                    "MaximumRetryCount": self.config.restart.max_retries(),
                },
                "AutoRemove": self.config.remove,
                "Privileged": spec.extra.privileged,
                "Memory": limits.memory.unwrap_or(0),
                // Memory plus swap: as much as the memory without `--memory-swap`.
                "MemorySwap": limits.memory_swap.unwrap_or_else(|| {
                    limits.memory.map_or(0, |m| i64::try_from(m).unwrap_or(i64::MAX))
                }),
                "NanoCpus": limits.cpus.map_or(0, |c| (c * 1e9) as i64),
                "PidsLimit": limits.pids,
                "LogConfig": self.config.log.inspect(),
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": spec.hostname,
                "User": spec.user,
                "AttachStdin": false,
                "OpenStdin": self.config.interactive,
                "Tty": self.config.tty,
                "ExposedPorts": exposed,
                "Env": spec.env,
                "Cmd": args_as_cmd(&self.config.image_config, &spec.args),
                "Image": self.config.image,
                "WorkingDir": spec.cwd,
                "Entrypoint": self.config.image_config["config"]["Entrypoint"],
                "Labels": labels,
            },
            "NetworkSettings": {
                "Ports": bindings,
                "Networks": networks,
            },
        });
        // Only with a health check, as docker's (omitempty).
        if let Some(h) = &self.config.healthcheck {
            v["Config"]["Healthcheck"] = json!(h);
        }
        if let Some(h) = self.health() {
            v["State"]["Health"] = json!(h);
        }
        v
    }
}

/// Adds `{"HostIp": …, "HostPort": …}` to the list of `key` (`80/tcp`).
fn push_binding(m: &mut Map<String, Value>, key: String, ip: Option<&String>, port: String) {
    let entry = m.entry(key).or_insert_with(|| json!([]));
    if let Some(list) = entry.as_array_mut() {
        list.push(json!({
            "HostIp": ip.cloned().unwrap_or_default(),
            "HostPort": port,
        }));
    }
}

/// `Config.Cmd`: the process's argv without the image's entrypoint in front of it.
fn args_as_cmd(image_config: &Value, args: &[String]) -> Vec<String> {
    let entrypoint: Vec<&str> = image_config["config"]["Entrypoint"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match args.strip_prefix(
        entrypoint
            .iter()
            .map(|s| (*s).to_string())
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        Some(rest) if !entrypoint.is_empty() => rest.to_vec(),
        _ => args.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, MountedVolume, State};
    use kiln_executor::{BindMount, PortMapping, RootFs, RunSpec};

    #[test]
    fn a_stopped_container_in_dockers_shape() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container {
            dir: dir.path().to_path_buf(),
            config: Config {
                image: "busybox".into(),
                created: 1_700_000_000_123,
                spec: RunSpec {
                    rootfs: RootFs {
                        lowers: vec![],
                        upper: "/u".into(),
                        work: "/w".into(),
                    },
                    args: vec!["/ep".into(), "sh".into(), "-c".into(), "x".into()],
                    env: vec!["A=1".into()],
                    cwd: "/".into(),
                    user: String::new(),
                    hostname: "aaaaaaaaaaaa".into(),
                    network: kiln_executor::Network::Default,
                    mounts: vec![
                        BindMount {
                            source: "/host".into(),
                            destination: "/h".into(),
                            readonly: true,
                        },
                        BindMount {
                            source: "/root/volumes/data/_data".into(),
                            destination: "/data".into(),
                            readonly: false,
                        },
                    ],
                    extra: kiln_executor::SandboxOptions {
                        ports: vec![PortMapping {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: 8080,
                            container_port: 80,
                            protocol: "tcp".into(),
                        }],
                        ..Default::default()
                    },
                },
                image_config: json!({"config": {"Entrypoint": ["/ep"]}}),
                volumes: vec![MountedVolume {
                    name: "data".into(),
                    destination: "/data".into(),
                    anonymous: false,
                }],
                ..Config::for_test(&"a".repeat(64), "web", dir.path())
            },
            state: State {
                status: Status::Exited,
                exit_code: Some(3),
                started: Some(1_700_000_001_000),
                finished: Some(1_700_000_002_000),
                ..State::default()
            },
        };
        let v = c.inspect();
        assert_eq!(v["Id"], "a".repeat(64));
        assert_eq!(v["Name"], "/web");
        assert_eq!(v["Path"], "/ep");
        assert_eq!(v["Args"], json!(["sh", "-c", "x"]));
        assert_eq!(v["Config"]["Cmd"], json!(["sh", "-c", "x"]));
        assert_eq!(v["Created"], "2023-11-14T22:13:20.123000000Z");
        assert_eq!(v["State"]["Status"], "exited");
        assert_eq!(v["State"]["Running"], false);
        assert_eq!(v["State"]["ExitCode"], 3);
        assert_eq!(v["State"]["Pid"], 0);
        assert_eq!(v["State"]["StartedAt"], "2023-11-14T22:13:21.000000000Z");
        let ports = json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]});
        assert_eq!(v["HostConfig"]["PortBindings"], ports);
        assert_eq!(v["NetworkSettings"]["Ports"], ports);
        assert_eq!(v["HostConfig"]["Binds"], json!(["/host:/h:ro"]));
        assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
        assert_eq!(v["Mounts"][0]["Type"], "bind");
        assert_eq!(v["Mounts"][1]["Type"], "volume");
        assert_eq!(v["Mounts"][1]["Name"], "data");
        let created = Container {
            state: State::default(),
            ..c
        };
        let v = created.inspect();
        assert_eq!(v["State"]["Status"], "created");
        assert_eq!(v["State"]["StartedAt"], ZERO_TIME);
    }
}
