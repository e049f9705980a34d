//! Network records and endpoints on disk, under one file lock (see the crate docs for the
//! layout and why every change is crash-safe).

use crate::ipam::{self, Subnet};
use crate::{Error, Result};
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Version of the on-disk layout (`ROOT/networks/v1`). Bump it when a record changes
/// incompatibly.
pub const LAYOUT: &str = "v1";

/// A network (`network.json` of its directory).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    /// Unique among the root's networks.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Always `bridge` for now.
    pub driver: String,
    /// IPAM: the subnet.
    pub subnet: Subnet,
    /// IPAM: the gateway (the bridge's address in the network's namespace).
    pub gateway: Ipv4Addr,
    /// `--internal`: no outbound route.
    #[serde(default)]
    pub internal: bool,
    /// `--label K=V`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: i64,
}

/// A container's place on a network: its address, taken from the allocator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's id.
    pub container: String,
    /// The container's name (without `/`).
    pub name: String,
    /// `--network-alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its address in the network's subnet.
    pub ip: Ipv4Addr,
    /// Its interface's MAC address (derived from `ip`, as docker's).
    pub mac: String,
    /// 64 hex digits.
    pub endpoint_id: String,
}

/// What `create` is given.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// `--driver` (only `bridge`).
    pub driver: Option<String>,
    /// `--subnet`.
    pub subnet: Option<String>,
    /// `--gateway`.
    pub gateway: Option<String>,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
}

/// Names docker refuses as user-defined networks.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// The networks of a state directory: `ROOT/networks/v1/`.
#[derive(Clone, Debug)]
pub struct Networks {
    dir: PathBuf,
}

/// The store's lock, held while records or endpoints change.
pub(crate) struct Locked<'a> {
    store: &'a Networks,
    _file: fs::File,
}

/// A record file in a network's directory: its path.
fn record(dir: &Path) -> PathBuf {
    dir.join("network.json")
}

fn endpoints_file(dir: &Path) -> PathBuf {
    dir.join("endpoints.json")
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` through a temporary file, synced, renamed into place, and the
/// directory synced: after a crash either the old or the new content is there.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// docker's MAC for an address: `02:42` and the four bytes.
pub fn mac_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Network {
    /// docker's `network inspect` object for the network with `endpoints`.
    pub fn inspect(&self, endpoints: &[Endpoint]) -> serde_json::Value {
        let created = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(self.created).unwrap_or(0));
        let containers: serde_json::Map<String, serde_json::Value> = endpoints
            .iter()
            .map(|e| {
                (
                    e.container.clone(),
                    serde_json::json!({
                        "Name": e.name,
                        "EndpointID": e.endpoint_id,
                        "MacAddress": e.mac,
                        "IPv4Address": format!("{}/{}", e.ip, self.subnet.prefix()),
                        "IPv6Address": "",
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "Name": self.name,
            "Id": self.id,
            "Created": humantime::format_rfc3339_nanos(created).to_string(),
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [{"Subnet": self.subnet.to_string(), "Gateway": self.gateway.to_string()}],
            },
            "Internal": self.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": {},
            "Labels": self.labels,
        })
    }
}

impl Networks {
    /// The networks of the state directory `root`.
    pub fn new(root: &Path) -> Networks {
        Networks {
            dir: root.join("networks").join(LAYOUT),
        }
    }

    /// The store at `dir` (a [`Networks::dir`]).
    pub fn at(dir: &Path) -> Networks {
        Networks {
            dir: dir.to_path_buf(),
        }
    }

    /// `ROOT/networks/v1`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the namespace of the container `id` is bind-mounted while it runs on a network.
    pub fn sandbox_path(&self, container: &str) -> PathBuf {
        self.dir.join("sandbox").join(container)
    }

    /// Where the namespace a network's bridge lives in is bind-mounted.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.dir.join("netns").join(id)
    }

    /// Takes the store's lock (created on first use).
    pub(crate) fn lock(&self) -> Result<Locked<'_>> {
        for d in ["nets", "netns", "sandbox"] {
            let p = self.dir.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let path = self.dir.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock_exclusive().map_err(io_err(&path))?;
        Ok(Locked {
            store: self,
            _file: f,
        })
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let dir = self.dir.join("nets");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(&dir))?;
            let path = record(&e.path());
            match fs::read(&path) {
                // A network whose record was never written (a crash in create) or is gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
                Ok(b) => out
                    .push(serde_json::from_slice(&b).map_err(|e| Error::Corrupt(path.clone(), e))?),
            }
        }
        out.sort_by(|a: &Network, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The network named `what`, or whose id is or starts with `what` (docker's lookup: an
    /// exact name or id first, then a unique id prefix).
    pub fn find(&self, what: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == what || n.id == what) {
            return Ok(n.clone());
        }
        let mut by_prefix = all.into_iter().filter(|n| n.id.starts_with(what));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !what.is_empty() => Ok(n),
            (Some(_), Some(_)) => Err(Error::Ambiguous(what.to_string())),
            _ => Err(Error::NotFound(what.to_string())),
        }
    }

    /// The endpoints of network `id`.
    pub fn endpoints(&self, id: &str) -> Result<Vec<Endpoint>> {
        let path = endpoints_file(&self.dir.join("nets").join(id));
        match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(io_err(&path)(e)),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt(path, e)),
        }
    }

    /// Creates a network (its record only: its namespace and bridge come with its first
    /// container).
    pub fn create(&self, name: &str, opts: &CreateOptions) -> Result<Network> {
        if !valid_name(name) {
            return Err(Error::BadName(name.to_string()));
        }
        let driver = opts.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(Error::Driver(driver));
        }
        if PREDEFINED.contains(&name) {
            return Err(Error::Predefined(name.to_string()));
        }
        let subnet = opts
            .subnet
            .as_deref()
            .map(str::parse::<Subnet>)
            .transpose()?;
        let gateway = opts
            .gateway
            .as_deref()
            .map(ipam::parse_address)
            .transpose()?;
        let _lock = self.lock()?;
        let all = self.list()?;
        if all.iter().any(|n| n.name == name) {
            return Err(Error::Exists(name.to_string()));
        }
        let used: Vec<Subnet> = all.iter().map(|n| n.subnet).collect();
        if let Some(s) = subnet {
            if let Some(other) = all.iter().find(|n| n.subnet.overlaps(&s)) {
                return Err(Error::Overlap(s, other.name.clone()));
            }
        }
        let (subnet, gateway) = ipam::choose(subnet, gateway, &used, false)?;
        let net = Network {
            name: name.to_string(),
            id: new_id(),
            driver,
            subnet,
            gateway,
            internal: opts.internal,
            labels: opts.labels.clone(),
            created: now_millis(),
        };
        let dir = self.dir.join("nets").join(&net.id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let bytes = serde_json::to_vec_pretty(&net).expect("a network serialises");
        write_atomic(&record(&dir), &bytes)?;
        Ok(net)
    }

    /// Removes a network without endpoints: its namespace (and so its bridge) first, its
    /// record last, so that a crash in between leaves a record whose namespace is made
    /// again when needed, never a namespace nobody knows.
    pub fn remove(&self, what: &str) -> Result<Network> {
        let lock = self.lock()?;
        let net = self.find(what)?;
        let eps = self.endpoints(&net.id)?;
        if !eps.is_empty() {
            return Err(Error::ActiveEndpoints {
                name: net.name.clone(),
                containers: eps.iter().map(|e| e.name.clone()).collect(),
            });
        }
        crate::outbound::stop(self, &net.id)?;
        crate::netns::remove_ns(&self.netns_path(&net.id))?;
        let dir = self.dir.join("nets").join(&net.id);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        drop(lock);
        Ok(net)
    }

    /// Gives container `container` (named `name`) an address on network `what` (`ip`: the one
    /// it asks for, `--ip`). A container already on the network is refused.
    pub fn connect(
        &self,
        what: &str,
        container: &str,
        name: &str,
        aliases: &[String],
        ip: Option<Ipv4Addr>,
    ) -> Result<(Network, Endpoint)> {
        let _lock = self.lock()?;
        let net = self.find(what)?;
        let mut eps = self.endpoints(&net.id)?;
        if eps.iter().any(|e| e.container == container) {
            return Err(Error::AlreadyConnected(name.to_string(), net.name.clone()));
        }
        let taken = |ip: Ipv4Addr| eps.iter().any(|e| e.ip == ip);
        let ip = match ip {
            Some(ip) if !net.subnet.is_host(ip) || ip == net.gateway => {
                return Err(ipam::IpamError::NotInSubnet(ip, net.subnet).into())
            }
            Some(ip) if taken(ip) => return Err(Error::AddressInUse(ip)),
            Some(ip) => ip,
            None => net.subnet.free_host(net.gateway, taken)?,
        };
        let ep = Endpoint {
            container: container.to_string(),
            name: name.to_string(),
            aliases: aliases.to_vec(),
            ip,
            mac: mac_of(ip),
            endpoint_id: new_id(),
        };
        eps.push(ep.clone());
        self.write_endpoints(&net.id, &eps)?;
        Ok((net, ep))
    }

    fn write_endpoints(&self, id: &str, eps: &[Endpoint]) -> Result<()> {
        let path = endpoints_file(&self.dir.join("nets").join(id));
        let bytes = serde_json::to_vec_pretty(eps).expect("endpoints serialise");
        write_atomic(&path, &bytes)
    }

    /// Frees the addresses of `container` on network `what` (every network when `None`);
    /// returns the networks it left.
    pub fn disconnect(&self, what: Option<&str>, container: &str) -> Result<Vec<Network>> {
        let _lock = self.lock()?;
        let nets = match what {
            Some(w) => vec![self.find(w)?],
            None => self.list()?,
        };
        let mut left = Vec::new();
        for net in nets {
            let mut eps = self.endpoints(&net.id)?;
            let before = eps.len();
            eps.retain(|e| e.container != container);
            if eps.len() != before {
                self.write_endpoints(&net.id, &eps)?;
                left.push(net);
            }
        }
        Ok(left)
    }

    /// The networks `container` has an address on, with its endpoint on each.
    pub fn of_container(&self, container: &str) -> Result<Vec<(Network, Endpoint)>> {
        let mut out = Vec::new();
        for net in self.list()? {
            if let Some(ep) = self
                .endpoints(&net.id)?
                .into_iter()
                .find(|e| e.container == container)
            {
                out.push((net, ep));
            }
        }
        Ok(out)
    }

    /// Makes the store consistent after crashes: endpoints of containers for which `exists`
    /// is false are freed, container namespaces of containers for which `running` is false
    /// are unmounted, and namespaces of networks without a record are removed.
    pub fn reconcile(
        &self,
        exists: impl Fn(&str) -> bool,
        running: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let nets = self.list()?;
        for net in &nets {
            let mut eps = self.endpoints(&net.id)?;
            let before = eps.len();
            eps.retain(|e| exists(&e.container));
            if eps.len() != before {
                self.write_endpoints(&net.id, &eps)?;
            }
        }
        for (sub, keep) in [
            ("sandbox", &(|n: &str| running(n)) as &dyn Fn(&str) -> bool),
            ("netns", &|n: &str| nets.iter().any(|x| x.id == n)),
        ] {
            let dir = self.dir.join(sub);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep(&name) {
                    crate::netns::remove_ns(&e.path())?;
                }
            }
        }
        crate::outbound::reconcile(self, |id| nets.iter().any(|x| x.id == id))?;
        Ok(())
    }
}

impl Locked<'_> {
    pub(crate) fn store(&self) -> &Networks {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CreateOptions {
        CreateOptions::default()
    }

    #[test]
    fn create_find_and_refuse_duplicates_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = Networks::new(dir.path());
        let a = s.create("mynet", &opts()).unwrap();
        assert_eq!(a.subnet.to_string(), "172.18.0.0/16");
        assert_eq!(a.gateway, Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(s.find("mynet").unwrap(), a);
        assert_eq!(s.find(&a.id[..5]).unwrap(), a);
        let b = s.create("other", &opts()).unwrap();
        assert_eq!(b.subnet.to_string(), "172.19.0.0/16");
        assert!(matches!(s.create("mynet", &opts()), Err(Error::Exists(_))));
        assert!(matches!(
            s.create("bridge", &opts()),
            Err(Error::Predefined(_))
        ));
        assert!(matches!(s.create("-x", &opts()), Err(Error::BadName(_))));
        let overlap = CreateOptions {
            subnet: Some("172.18.5.0/24".into()),
            ..opts()
        };
        assert!(matches!(s.create("c", &overlap), Err(Error::Overlap(..))));
        let macvlan = CreateOptions {
            driver: Some("macvlan".into()),
            ..opts()
        };
        assert!(matches!(s.create("c", &macvlan), Err(Error::Driver(_))));
        assert!(matches!(s.find("nope"), Err(Error::NotFound(_))));
        let names: Vec<String> = s.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["mynet", "other"]);
    }

    #[test]
    fn addresses_are_unique_freed_on_disconnect_and_a_network_in_use_stays() {
        let dir = tempfile::tempdir().unwrap();
        let s = Networks::new(dir.path());
        let small = CreateOptions {
            subnet: Some("10.9.0.0/29".into()),
            ..opts()
        };
        s.create("n", &small).unwrap();
        let mut ips = Vec::new();
        for i in 0..5 {
            let (_, ep) = s
                .connect("n", &format!("c{i}"), &format!("c{i}"), &[], None)
                .unwrap();
            ips.push(ep.ip);
        }
        // .1 is the gateway, .7 broadcast: .2 to .6.
        assert_eq!(
            ips,
            (2..=6)
                .map(|d| Ipv4Addr::new(10, 9, 0, d))
                .collect::<Vec<_>>()
        );
        assert!(matches!(
            s.connect("n", "c9", "c9", &[], None),
            Err(Error::Ipam(ipam::IpamError::Exhausted(_)))
        ));
        assert!(matches!(
            s.connect("n", "c0", "c0", &[], None),
            Err(Error::AlreadyConnected(..))
        ));
        assert!(matches!(s.remove("n"), Err(Error::ActiveEndpoints { .. })));
        assert_eq!(s.disconnect(None, "c2").unwrap().len(), 1);
        let (_, ep) = s.connect("n", "c9", "c9", &[], None).unwrap();
        assert_eq!(ep.ip, Ipv4Addr::new(10, 9, 0, 4));
        assert!(matches!(
            s.connect("n", "c10", "c10", &[], Some(ep.ip)),
            Err(Error::AddressInUse(_))
        ));
        // A store opened again (the next command) sees the same allocations.
        let again = Networks::new(dir.path());
        assert_eq!(again.of_container("c9").unwrap()[0].1.ip, ep.ip);
        // Reconcile frees the addresses of containers that are gone.
        again.reconcile(|c| c == "c9", |_| false).unwrap();
        let left: Vec<String> = again
            .endpoints(&again.find("n").unwrap().id)
            .unwrap()
            .into_iter()
            .map(|e| e.container)
            .collect();
        assert_eq!(left, ["c9"]);
        again.disconnect(Some("n"), "c9").unwrap();
        assert_eq!(again.remove("n").unwrap().name, "n");
        assert!(again.list().unwrap().is_empty());
    }

    #[test]
    fn concurrent_connects_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let s = Networks::new(dir.path());
        s.create("n", &opts()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| {
                            let c = format!("c{t}-{i}");
                            s.connect("n", &c, &c, &[], None).unwrap().1.ip
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 80);
    }
}
