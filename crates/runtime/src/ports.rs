//! Published ports: `-p` specs (docker's `[IP:][HOST_PORT[-END]:]CTR_PORT[-END][/PROTO]`) and
//! `-P` (every port the image `EXPOSE`s and `--expose` adds), resolved once, by
//! [`resolve`], into concrete [`PortMapping`]s (host address, host port, container port,
//! protocol) that the network setup consumes. The mappings say nothing of how the traffic
//! gets in (pasta today, a bridge later).
//!
//! # Free host ports
//!
//! A spec without a host port (`-p 80`, `-p 127.0.0.1::80`, `-P`) gets a port the kernel
//! picks: a socket of the protocol is bound to port 0 on the host address (all addresses
//! when none is given) and its port taken; a host range (`-p 8000-8010:80`) takes the first
//! port of the range that binds. The fixed host ports of the same container are bound first,
//! and all sockets stay bound until every mapping has its port, so one resolution never
//! picks a port twice nor one the container publishes as fixed; then they are closed and the sandbox's network
//! helper binds the ports for good. That leaves a race: another process may bind a chosen
//! port in between. The start then fails as it does for a busy `-p HOST:CTR` (exit 125, the
//! port named), and a second `run` picks again. The kernel picks from
//! `net.ipv4.ip_local_port_range` (32768-60999 by default), where docker's allocator reads the
//! same setting (its fallback range is 49153-60999).
//!
//! Ports are resolved when the container is created and kept in its config: `start` and
//! `restart` use the same host ports (a port taken meanwhile fails the start).

use kiln_executor::PortMapping;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;

/// A `-p` spec as given: host address, host port range (`None`: any free port), container
/// port range and protocol.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to listen on; `None`: all addresses.
    pub host_ip: Option<String>,
    /// First and last host port; `None`: a free port is picked.
    pub host: Option<(u16, u16)>,
    /// First and last container port.
    pub container: (u16, u16),
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A `-p` or `--expose` spec that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// The spec does not parse.
    #[error("invalid publish spec `{spec}`: {why}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A `--expose` value does not parse.
    #[error("invalid range format for --expose: {0}")]
    Expose(String),
    /// No port of a host range (or no ephemeral port) could be bound.
    #[error("Bind for {addr}:{range} failed: port is already allocated")]
    Allocated {
        /// The host address (`0.0.0.0` for all).
        addr: String,
        /// The port or range.
        range: String,
    },
}

fn bad(spec: &str, why: impl Into<String>) -> PortError {
    PortError::Spec {
        spec: spec.to_string(),
        why: why.into(),
    }
}

/// `N` or `N-M` (1 to 65535, N ≤ M).
fn port_range(s: &str) -> Option<(u16, u16)> {
    let one = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 && !p.starts_with('+') => Some(n),
        _ => None,
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => (one(s)?, one(s)?),
    };
    (a <= b).then_some((a, b))
}

fn protocol(s: &str, spec: &str) -> Result<String, PortError> {
    match s {
        "tcp" | "udp" => Ok(s.to_string()),
        p => Err(bad(spec, format!("unknown protocol `{p}` (tcp or udp)"))),
    }
}

impl FromStr for PortSpec {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<PortSpec, PortError> {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, protocol(p, spec)?),
            None => (spec, "tcp".to_string()),
        };
        let range = |p: &str| {
            port_range(p).ok_or_else(|| {
                bad(
                    spec,
                    format!("invalid port `{p}` (1 to 65535, or a range N-M)"),
                )
            })
        };
        // An IPv6 address is in brackets: split off `[…]:` first.
        let (ip, rest) = match rest.strip_prefix('[') {
            Some(r) => match r.split_once("]:") {
                Some((ip, rest)) => (Some(ip), rest),
                None => return Err(bad(spec, "an IPv6 address needs `]:` after it")),
            },
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match (ip, parts.as_slice()) {
            (None, [ctr]) => (None, "", *ctr),
            (None, [host, ctr]) => (None, *host, *ctr),
            (None, [ip, host, ctr]) => (Some(*ip), *host, *ctr),
            (Some(ip), [host, ctr]) => (Some(ip), *host, *ctr),
            _ => {
                return Err(bad(
                    spec,
                    "expected [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]",
                ))
            }
        };
        let host_ip = match ip {
            Some(ip) if ip.parse::<IpAddr>().is_err() => {
                return Err(bad(spec, format!("invalid IP address `{ip}`")))
            }
            Some(ip) => Some(ip.to_string()),
            None => None,
        };
        let container = range(ctr)?;
        let host = if host.is_empty() {
            None
        } else {
            Some(range(host)?)
        };
        if let Some(h) = host {
            // As docker: a host range maps onto an equal container range, or is where one
            // free port for a single container port is looked for.
            if h.1 - h.0 != container.1 - container.0 && container.0 != container.1 {
                return Err(bad(
                    spec,
                    "invalid ranges specified for container and host Ports",
                ));
            }
        }
        Ok(PortSpec {
            host_ip,
            host,
            container,
            protocol: proto,
        })
    }
}

/// `--expose PORT[-END][/PROTO]`: the ports it names, as `(port, protocol)`.
pub fn parse_expose(s: &str) -> Result<Vec<(u16, String)>, PortError> {
    let (ports, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return Err(PortError::Expose(s.to_string()));
    }
    let (a, b) = port_range(ports).ok_or_else(|| PortError::Expose(s.to_string()))?;
    Ok((a..=b).map(|p| (p, proto.to_string())).collect())
}

/// The ports an image config (`config.ExposedPorts`: `"80/tcp": {}`) exposes.
pub(crate) fn exposed_by(config: &serde_json::Value) -> Vec<(u16, String)> {
    let Some(map) = config["config"]["ExposedPorts"].as_object() else {
        return vec![];
    };
    map.keys()
        .filter_map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some((p.parse().ok()?, proto.to_string()))
        })
        .filter(|(p, proto)| *p > 0 && (proto == "tcp" || proto == "udp"))
        .collect()
}

impl crate::Container {
    /// The ports it exposes: its image's `EXPOSE`s, then `--expose`, each once.
    pub fn exposed_ports(&self) -> Vec<(u16, String)> {
        let mut all = exposed_by(&self.config.image_config);
        for e in &self.config.expose {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
        all
    }
}

/// A bound socket that holds a chosen port until every mapping has one.
enum Held {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

fn bind(ip: IpAddr, port: u16, protocol: &str) -> Option<(u16, Held)> {
    let addr = SocketAddr::new(ip, port);
    if protocol == "udp" {
        let s = UdpSocket::bind(addr).ok()?;
        Some((s.local_addr().ok()?.port(), Held::Udp(s)))
    } else {
        let s = TcpListener::bind(addr).ok()?;
        Some((s.local_addr().ok()?.port(), Held::Tcp(s)))
    }
}

/// The concrete mappings of `specs`, plus with `publish_all` one for every port of
/// `exposed` no spec publishes (on all addresses, a free port each), in that order. Free
/// ports are picked as the module docs say.
pub(crate) fn resolve(
    specs: &[PortSpec],
    publish_all: bool,
    exposed: &[(u16, String)],
) -> Result<Vec<PortMapping>, PortError> {
    let mut wanted: Vec<PortSpec> = specs.to_vec();
    if publish_all {
        for (port, proto) in exposed {
            let published = wanted
                .iter()
                .any(|s| s.protocol == *proto && (s.container.0..=s.container.1).contains(port));
            if !published {
                wanted.push(PortSpec {
                    host_ip: None,
                    host: None,
                    container: (*port, *port),
                    protocol: proto.clone(),
                });
            }
        }
    }
    // The fixed host ports first, held where they can be bound, so that no free port is
    // picked that this container publishes as a fixed one (a fixed port that cannot be
    // bound is left to the network setup to report).
    let mut held: Vec<Held> = Vec::new();
    for s in &wanted {
        let Some((a, b)) = s.host else { continue };
        let fixed = a == b || b - a == s.container.1 - s.container.0;
        let ip = match s.host_ip.as_deref() {
            Some(ip) => ip.parse().ok(),
            None => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        };
        if let (true, Some(ip)) = (fixed, ip) {
            held.extend((a..=b).filter_map(|p| bind(ip, p, &s.protocol).map(|(_, h)| h)));
        }
    }
    let mut out = Vec::new();
    for s in &wanted {
        let ip: IpAddr = match &s.host_ip {
            Some(ip) => ip.parse().map_err(|_| PortError::Spec {
                spec: ip.clone(),
                why: format!("invalid IP address `{ip}`"),
            })?,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let addr = s.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
        for (i, ctr) in (s.container.0..=s.container.1).enumerate() {
            let host_port = match s.host {
                // An equal range: the same offset.
                Some((a, b)) if b - a == s.container.1 - s.container.0 && a != b => {
                    a + u16::try_from(i).unwrap_or(0)
                }
                Some((a, b)) if a == b => a,
                // A host range for one container port: its first free port.
                Some((a, b)) => {
                    let (p, h) =
                        (a..=b)
                            .find_map(|p| bind(ip, p, &s.protocol))
                            .ok_or_else(|| PortError::Allocated {
                                addr: addr.clone(),
                                range: format!("{a}-{b}"),
                            })?;
                    held.push(h);
                    p
                }
                None => {
                    let (p, h) = bind(ip, 0, &s.protocol).ok_or_else(|| PortError::Allocated {
                        addr: addr.clone(),
                        range: "0".into(),
                    })?;
                    held.push(h);
                    p
                }
            };
            out.push(PortMapping {
                host_ip: s.host_ip.clone(),
                host_port,
                container_port: ctr,
                protocol: s.protocol.clone(),
            });
        }
    }
    drop(held);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn docker_spec_forms_parse() {
        assert_eq!(
            spec("80"),
            PortSpec {
                host_ip: None,
                host: None,
                container: (80, 80),
                protocol: "tcp".into()
            }
        );
        assert_eq!(
            spec("127.0.0.1::53/udp").host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(spec("127.0.0.1::53/udp").host, None);
        assert_eq!(spec("8000-8001:80-81").host, Some((8000, 8001)));
        assert_eq!(spec("8000-8010:80").container, (80, 80));
        assert_eq!(spec("[::1]:8080:80").host_ip.as_deref(), Some("::1"));
        assert_eq!(spec("[::1]::80").host, None);
    }

    #[test]
    fn bad_specs_say_why() {
        for (s, why) in [
            ("8000-8002:80-81", "invalid ranges"),
            ("x:80", "invalid port `x`"),
            ("80/sctp", "unknown protocol"),
            ("nothere:8080:80", "invalid IP address"),
            ("81-80", "invalid port"),
            ("0:80", "invalid port `0`"),
            ("1:2:3:4", "expected"),
        ] {
            let e = s.parse::<PortSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid publish spec `{s}`")), "{e}");
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn expose_takes_ranges_and_protocols() {
        assert_eq!(parse_expose("80").unwrap(), [(80, "tcp".to_string())]);
        assert_eq!(parse_expose("53/udp").unwrap(), [(53, "udp".to_string())]);
        assert_eq!(parse_expose("7-8").unwrap().len(), 2);
        assert_eq!(
            parse_expose("x").unwrap_err().to_string(),
            "invalid range format for --expose: x"
        );
    }

    #[test]
    fn image_exposed_ports_are_read() {
        let c = serde_json::json!({"config": {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "x/tcp": {}}}});
        let mut e = exposed_by(&c);
        e.sort();
        assert_eq!(e, [(53, "udp".into()), (80, "tcp".into())]);
        assert!(exposed_by(&serde_json::Value::Null).is_empty());
    }

    #[test]
    fn free_ports_are_picked_distinct_and_fixed_ones_kept() {
        let specs = [
            spec("127.0.0.1::80"),
            spec("127.0.0.1::81"),
            spec("127.0.0.1:7000-7001:90-91/udp"),
        ];
        let m = resolve(&specs, true, &[(80, "tcp".into()), (443, "tcp".into())]).unwrap();
        assert_eq!(m.len(), 5, "{m:?}");
        assert_ne!(m[0].host_port, 0);
        assert_ne!(m[0].host_port, m[1].host_port);
        assert_eq!((m[2].host_port, m[2].container_port), (7000, 90));
        assert_eq!((m[3].host_port, m[3].container_port), (7001, 91));
        // -P adds 443 (80 is published already), on all addresses.
        assert_eq!((m[4].container_port, m[4].host_ip.as_deref()), (443, None));
        assert_ne!(m[4].host_port, 0);
    }

    #[test]
    fn a_host_range_takes_a_free_port_of_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = taken.local_addr().unwrap().port();
        let Some(next) = p.checked_add(1) else { return };
        let r = format!("127.0.0.1:{p}-{next}:80");
        match resolve(&[spec(&r)], false, &[]) {
            Ok(m) => assert_eq!(m[0].host_port, next),
            // The next port happened to be busy too.
            Err(e) => assert!(matches!(e, PortError::Allocated { .. }), "{e}"),
        }
        let only = format!("127.0.0.1:{p}-{p}:80");
        // A one-port "range" is a fixed port: kept (the network setup reports it busy).
        assert_eq!(resolve(&[spec(&only)], false, &[]).unwrap()[0].host_port, p);
    }
}
