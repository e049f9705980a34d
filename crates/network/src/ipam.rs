//! Addresses: IPv4 subnets (`--subnet`, `--gateway`), the default subnet of a new network, and
//! the choice of a free address. Pure logic; the store (`store.rs`) keeps what is taken.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Errors parsing or choosing addresses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// Not `A.B.C.D/N`.
    #[error("invalid subnet {0}: expected an IPv4 CIDR such as 172.20.0.0/16")]
    BadSubnet(String),
    /// Not an IPv4 address.
    #[error("invalid address {0}: expected an IPv4 address")]
    BadAddress(String),
    /// Too small to hold a gateway and a container.
    #[error("subnet {0} is too small: use a prefix of /30 or shorter")]
    TooSmall(Subnet),
    /// `--gateway` outside `--subnet`.
    #[error("no matching subnet for gateway {0}")]
    GatewayOutside(Ipv4Addr),
    /// `--gateway` without `--subnet`.
    #[error("gateway specified without a subnet (use --subnet)")]
    GatewayWithoutSubnet,
    /// Every address is taken.
    #[error("no available IPv4 address in subnet {0}")]
    Exhausted(Subnet),
    /// `--ip` outside the subnet or not usable.
    #[error("address {0} is not a usable address of subnet {1}")]
    NotInSubnet(Ipv4Addr, Subnet),
}

/// An IPv4 subnet; the address is the network address (host bits zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet of `addr`/`prefix` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, IpamError> {
        if prefix > 32 {
            return Err(IpamError::BadSubnet(format!("{addr}/{prefix}")));
        }
        let s = Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)),
            prefix,
        };
        if prefix > 30 {
            return Err(IpamError::TooSmall(s));
        }
        Ok(s)
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.addr)
    }

    /// The two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// A host address: neither the network nor the broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let first = u32::from(self.addr);
        let last = first | !Self::mask_of(self.prefix);
        self.contains(ip) && u32::from(ip) != first && u32::from(ip) != last
    }

    /// The first host address (docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The lowest host address that is not `gateway` and for which `taken` is false.
    pub fn free_host(
        &self,
        gateway: Ipv4Addr,
        taken: impl Fn(Ipv4Addr) -> bool,
    ) -> Result<Ipv4Addr, IpamError> {
        let first = u32::from(self.addr) + 1;
        let last = (u32::from(self.addr) | !Self::mask_of(self.prefix)) - 1;
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| *ip != gateway && !taken(*ip))
            .ok_or(IpamError::Exhausted(*self))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    /// `A.B.C.D/N`; host bits must be zero (docker refuses `172.20.0.1/16` too).
    fn from_str(s: &str) -> Result<Subnet, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Subnet::new(addr, prefix)?;
        if subnet.addr != addr {
            return Err(bad());
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = IpamError;
    fn try_from(s: String) -> Result<Subnet, IpamError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// Parses `--gateway`.
pub(crate) fn parse_address(s: &str) -> Result<Ipv4Addr, IpamError> {
    s.parse().map_err(|_| IpamError::BadAddress(s.to_string()))
}

/// The subnet and gateway of a new network: the given ones, checked, or docker's default pools
/// (172.17-31.0.0/16, then 192.168.0-240.0/20; 172.17.0.0/16 kept for the default `bridge`
/// network) minus every subnet in `used`.
pub(crate) fn choose(
    subnet: Option<Subnet>,
    gateway: Option<Ipv4Addr>,
    used: &[Subnet],
    default_bridge: bool,
) -> Result<(Subnet, Ipv4Addr), IpamError> {
    match (subnet, gateway) {
        (None, Some(_)) => Err(IpamError::GatewayWithoutSubnet),
        (Some(s), Some(g)) if !s.is_host(g) => Err(IpamError::GatewayOutside(g)),
        (Some(s), g) => Ok((s, g.unwrap_or_else(|| s.first_host()))),
        (None, None) => {
            let first = if default_bridge { 17 } else { 18 };
            let pool = (first..=31u8)
                .map(|b| Subnet {
                    addr: Ipv4Addr::new(172, b, 0, 0),
                    prefix: 16,
                })
                .chain((0..16u8).map(|n| Subnet {
                    addr: Ipv4Addr::new(192, 168, n * 16, 0),
                    prefix: 20,
                }));
            let mut pool = pool;
            let s =
                pool.find(|c| !used.iter().any(|u| u.overlaps(c)))
                    .ok_or(IpamError::BadSubnet(
                        "(default pools): all of them are in use; give --subnet".into(),
                    ))?;
            Ok((s, s.first_host()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_strictly() {
        let s: Subnet = "172.20.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.20.0.0/16");
        for bad in [
            "172.20.0.1/16",
            "172.20.0.0",
            "172.20.0.0/33",
            "x/16",
            "172.20.0.0/",
            "::1/64",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        assert!(matches!(
            "10.0.0.0/31".parse::<Subnet>(),
            Err(IpamError::TooSmall(_))
        ));
    }

    #[test]
    fn free_hosts_skip_network_gateway_broadcast_and_taken() {
        let s: Subnet = "10.1.0.0/30".parse().unwrap();
        let gw = s.first_host();
        assert_eq!(gw, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(s.free_host(gw, |_| false), Ok(Ipv4Addr::new(10, 1, 0, 2)));
        let taken = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(
            s.free_host(gw, |ip| ip == taken),
            Err(IpamError::Exhausted(s))
        );
        assert!(!s.is_host(Ipv4Addr::new(10, 1, 0, 3)));
        assert!(!s.is_host(Ipv4Addr::new(10, 1, 0, 0)));
    }

    #[test]
    fn default_subnets_avoid_the_used_ones_and_the_gateway_must_fit() {
        let (s, g) = choose(None, None, &[], false).unwrap();
        assert_eq!(
            (s.to_string(), g),
            ("172.18.0.0/16".into(), Ipv4Addr::new(172, 18, 0, 1))
        );
        let used = [
            "172.18.0.0/16".parse().unwrap(),
            "172.19.5.0/24".parse().unwrap(),
        ];
        assert_eq!(
            choose(None, None, &used, false).unwrap().0.to_string(),
            "172.20.0.0/16"
        );
        assert_eq!(
            choose(None, None, &[], true).unwrap().0.to_string(),
            "172.17.0.0/16"
        );
        let s: Subnet = "10.5.0.0/24".parse().unwrap();
        assert_eq!(
            choose(Some(s), Some(Ipv4Addr::new(10, 6, 0, 1)), &[], false),
            Err(IpamError::GatewayOutside(Ipv4Addr::new(10, 6, 0, 1)))
        );
        assert_eq!(
            choose(None, Some(Ipv4Addr::new(10, 6, 0, 1)), &[], false),
            Err(IpamError::GatewayWithoutSubnet)
        );
        assert_eq!(
            choose(Some(s), Some(Ipv4Addr::new(10, 5, 0, 254)), &[], false)
                .unwrap()
                .1,
            Ipv4Addr::new(10, 5, 0, 254)
        );
    }
}
