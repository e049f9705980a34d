//! The short syntaxes of `ports` and `volumes`, turned into their long forms as Compose does
//! (compose-go's `ParsePortConfig` and `ParseVolume`).

use crate::model::{BindOptions, Port, ServiceVolume, VolumeOptions};

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let num = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?}: expected a number from 0 to 65535"))
    };
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(format!(
                "invalid port range {s:?}: the end is before the start"
            ));
        }
        Ok((a, b))
    } else {
        let p = num(s)?;
        Ok((p, p))
    }
}

/// `[[IP:](HOST|RANGE):](PORT|RANGE)[/PROTO]` → one long-syntax port per container port.
pub fn parse_port(spec: &str) -> Result<Vec<Port>, String> {
    let bad = |why: &str| format!("invalid port {spec:?}: {why}");
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) if !p.is_empty() => (r, p.to_string()),
        Some(_) => return Err(bad("empty protocol")),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let (ip, host, container) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected : after ]"))?;
        let (host, container) = after
            .split_once(':')
            .ok_or_else(|| bad("expected HOST:CONTAINER after the address"))?;
        (Some(ip.to_string()), host, container)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 => (None, "", parts[0]),
            2 => (None, parts[0], parts[1]),
            n => (Some(parts[..n - 2].join(":")), parts[n - 2], parts[n - 1]),
        }
    };
    let host_ip = ip.filter(|i| !i.is_empty());
    let (c_start, c_end) = port_range(container).map_err(|e| bad(&e))?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(host).map_err(|e| bad(&e))?)
    };
    let port = |target: u16, published: Option<String>| Port {
        mode: "ingress".into(),
        host_ip: host_ip.clone(),
        target,
        published,
        protocol: protocol.clone(),
        ..Port::default()
    };
    match host_range {
        None => Ok((c_start..=c_end).map(|t| port(t, None)).collect()),
        Some((h_start, h_end)) if c_start == c_end => {
            let published = if h_start == h_end {
                h_start.to_string()
            } else {
                format!("{h_start}-{h_end}")
            };
            Ok(vec![port(c_start, Some(published))])
        }
        Some((h_start, h_end)) => {
            if h_end - h_start != c_end - c_start {
                return Err(bad("the host and container ranges differ in length"));
            }
            Ok((c_start..=c_end)
                .zip(h_start..=h_end)
                .map(|(t, h)| port(t, Some(h.to_string())))
                .collect())
        }
    }
}

/// Whether a short-syntax volume source is a host path (else it names a volume).
fn is_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

/// `[SOURCE:]TARGET[:MODE,…]` → a long-syntax mount. Relative bind sources stay relative
/// here; the loader makes them absolute against the project directory.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let bad = |why: &str| format!("invalid volume {spec:?}: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(bad("too many colons")),
    };
    if target.is_empty() {
        return Err(bad("empty container path"));
    }
    if !target.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    if source == Some("") {
        return Err(bad("empty section between colons"));
    }
    let bind = source.is_some_and(is_path);
    let mut v = ServiceVolume {
        kind: if bind { "bind" } else { "volume" }.into(),
        source: source.map(str::to_string),
        target: target.to_string(),
        ..ServiceVolume::default()
    };
    if bind {
        v.bind = Some(BindOptions {
            create_host_path: true,
            ..BindOptions::default()
        });
    } else {
        v.volume = Some(VolumeOptions::default());
    }
    for opt in mode
        .map(|m| m.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        match opt {
            "ro" => v.read_only = true,
            "rw" => v.read_only = false,
            "nocopy" if !bind => {
                v.volume.get_or_insert_with(Default::default).nocopy = true;
            }
            "z" | "Z" if bind => {
                v.bind.get_or_insert_with(Default::default).selinux = Some(opt.into());
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" if bind => {
                v.bind.get_or_insert_with(Default::default).propagation = Some(opt.into());
            }
            "consistent" | "cached" | "delegated" => v.consistency = Some(opt.into()),
            other => return Err(bad(&format!("unknown mode {other:?}"))),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(s: &str) -> Vec<(Option<String>, u16, Option<String>, String)> {
        parse_port(s)
            .unwrap()
            .into_iter()
            .map(|p| (p.host_ip, p.target, p.published, p.protocol))
            .collect()
    }

    #[test]
    fn port_short_forms() {
        assert_eq!(ports("80"), vec![(None, 80, None, "tcp".into())]);
        assert_eq!(
            ports("8080:80"),
            vec![(None, 80, Some("8080".into()), "tcp".into())]
        );
        assert_eq!(
            ports("127.0.0.1:8080:80/udp"),
            vec![(
                Some("127.0.0.1".into()),
                80,
                Some("8080".into()),
                "udp".into()
            )]
        );
        assert_eq!(
            ports("127.0.0.1::80"),
            vec![(Some("127.0.0.1".into()), 80, None, "tcp".into())]
        );
        assert_eq!(
            ports("[::1]:8080:80"),
            vec![(Some("::1".into()), 80, Some("8080".into()), "tcp".into())]
        );
        assert_eq!(
            ports("9000-9001:80-81"),
            vec![
                (None, 80, Some("9000".into()), "tcp".into()),
                (None, 81, Some("9001".into()), "tcp".into())
            ]
        );
        assert_eq!(ports("3000-3001").len(), 2);
        assert_eq!(
            ports("8000-8010:80"),
            vec![(None, 80, Some("8000-8010".into()), "tcp".into())]
        );
    }

    #[test]
    fn port_errors() {
        for bad in ["", "x", "80/http", "70000", "1-2:80-82", "9-8", "a:b:c:80x"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_port("80/http").unwrap_err(),
            "invalid port \"80/http\": the protocol must be tcp, udp or sctp"
        );
    }

    #[test]
    fn volume_short_forms() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_deref(), v.read_only),
            ("volume", Some("data"), true)
        );
        let v = parse_volume("./src:/app").unwrap();
        assert_eq!(v.kind, "bind");
        assert!(v.bind.unwrap().create_host_path);
        let v = parse_volume("/cache").unwrap();
        assert_eq!((v.kind.as_str(), v.source), ("volume", None));
        assert!(parse_volume(":/x").is_err());
        assert!(parse_volume("a:b").is_err());
        assert!(parse_volume("a:/b:bogus").is_err());
    }
}
