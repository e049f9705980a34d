//! Container networks without a daemon: docker's user-defined `bridge` networks, with the
//! host's own network configuration and firewall untouched.
//!
//! # Design
//!
//! **Every network lives in a network namespace kiln owns.** A network's namespace is made
//! with its first container (`unshare(CLONE_NEWNET)` on a thread of its own) and bind-mounted
//! at `ROOT/networks/v1/netns/<id>`, so it outlives every kiln process and is found again by
//! the next command. It holds a Linux bridge, `br0`, with the network's gateway address.
//! A container on networks gets a namespace of its own, bind-mounted at
//! `ROOT/networks/v1/sandbox/<container id>` before its sandbox starts (the executor joins it:
//! `kiln_executor::Network::Join`), with one veth per network: `ethN` in the container,
//! with its address from the network's subnet, docker's MAC (`02:42` + the address), and a
//! default route through the gateway of its first network that is not `--internal`; the
//! other end, `kv<short id>`, is a port of that network's bridge. Containers on one network
//! reach each other over the bridge; containers on different networks share no link, so they
//! cannot; a container on two networks has an interface on both bridges.
//!
//! The alternative is Docker's and nerdctl's: the bridge, veths and NAT rules in the host's
//! namespace. It changes the host's interfaces and its firewall tables (and conflicts with
//! the host's own rules); rootless podman with netavark and pasta shows that the bridge can
//! live in a namespace of its own instead (its "rootless-netns"), which is what this crate
//! does as root too. Nothing is added to the host's namespace: `ip link`, `ip route` and
//! `nft list ruleset` of the host are what they were.
//!
//! **Netlink from the process, not `ip`.** Measured on the 2-core development host (loaded by
//! other builds, as always): one `ip` invocation costs 5.2 ms (exec and dynamic link; `nsenter`
//! 4.6 ms), the kernel's work for a veth pair put on a bridge 0.85 ms, a new network
//! namespace 1.3 ms. Setting up a container with `ip` takes three invocations (the container's
//! namespace, the network's namespace, the veth between them): 18 ms a container, measured
//! with a script doing exactly that. `rtnetlink` (the rust-netlink project's, used by
//! netavark and youki) speaks to the kernel from the calling process: see
//! [`netns::attach`]'s measurement below. Namespaces are entered by a short-lived thread
//! (`setns` changes the calling thread only), so the calling process never leaves its own
//! namespace.
//!
//! **Names: a name server per network, not /etc/hosts rewriting.** Each network gets
//! aardvark-dns's design, daemonless (`dns.rs`): the kiln binary in a hidden mode, started by
//! the network's first running container, listening on the gateway's port 53 in the
//! network's namespace, answering from `endpoints.json` (read for every query) and forwarding
//! the rest to the host's resolvers from the host's namespace; it exits when the network has
//! no running container. Containers get `nameserver GATEWAY` (and the host's `search` and
//! `options`). nerdctl's alternative rewrites every running container's `/etc/hosts` at
//! every change: here that file lives on a tmpfs inside each sandbox, so a change of one
//! container (start, rm, connect, disconnect) would rewrite N files through `/proc/PID/root`
//! in place (a reader can see half a file; a new container costs O(N) writes, a network of N
//! containers O(N²)), while the name server sees a change with the next query. Measured
//! (debug build, inside a container on the network): 200 `nslookup db` in 0.19 s, so under
//! 1 ms a resolution including each nslookup's own start; the server's start is one
//! `exec` (about 5 ms here) for a network's first running container only. A network's
//! containers only reach its own server (it listens on that network's gateway), so names
//! never cross networks.
//!
//! **Outbound: `pasta` attached to the network's namespace, NAT in that namespace only**
//! (`outbound.rs`, which has the evidence). A network that is not `--internal` gets, with
//! its namespace, forwarding and a masquerade rule there and a `pasta` daemon whose tap
//! device in that namespace is the bridge's way out; the host's interfaces, routes and
//! firewall are untouched. The first session's failures (a first SYN unanswered, a close
//! that never arrived) were measured again: the hang is a flaw of Debian 12's pasta with
//! connections the namespace's side half-closes first, in kiln's private pasta namespace
//! too, and not the bridge, the veths' checksum offload or the NAT (10 of 10 clean closes
//! where the client does not half-close, 3 to 7 of 10 hung where it does, with or without
//! the bridge). Still to come: published ports into a network, the default `bridge`
//! network, `--dns` and friends, TCP on the name server (UDP only now: answers fit,
//! forwarded answers over 4 KiB are cut), `connect` of a container not made with
//! `--network NAME`. pasta outlives a namespace file that is still mounted (a removed root
//! whose unmount failed), so `network rm` stops it by its pid, not relying on pasta's watch
//! of the file alone.
//!
//! `connect` of a running container adds the next free `ethN` to its namespace at once
//! ([`netns::plug_running`]); `disconnect` deletes the interface holding its address there
//! ([`netns::unplug_running`]); both change `endpoints.json`, which the name servers read per
//! query, so names follow at once. A container on several networks asks the name server of
//! its first network, which answers names of every network the asking container (found by
//! its source address) is on.
//!
//! # Store and crash safety
//!
//! `ROOT/networks/v1/` holds `lock` (an exclusive `flock` held by every change),
//! `nets/<id>/network.json` (the record: name, id, driver, subnet, gateway, internal, labels,
//! created) and `nets/<id>/endpoints.json` (the allocator: which container holds which
//! address), each written to a temporary file, synced and renamed, and the directory synced.
//! Two containers never share an address: allocation reads and writes `endpoints.json` under
//! the lock. A record is written last in `create` and removed last in `rm`, after its
//! namespace; a namespace without a record, a container namespace of a container that is not
//! running, and an endpoint of a container that no longer exists are what a crash can leave,
//! and [`Networks::reconcile`] (run by the next command) removes them.
//!
//! # Start-up cost
//!
//! [`attach`] (a container's namespace, its veth on the bridge, address, MAC, route) takes
//! 14-30 ms in the debug build on the loaded 2-core host (`tests/netns.rs` prints it; the
//! first container of a network also makes the network's namespace and bridge). End to end,
//! `kiln run --rm --network NET busybox true` against `--network none` (debug build, five runs
//! each, interleaved, inside a throwaway `unshare -n`, another container on the network
//! running): 153 and 173 ms against 90 and 98 ms, 1.6-1.8x (the bound is 2x; a run
//! without the name server, before it existed: 156 and 173 ms against 119 and 124 ms).
//! Not measured yet: a release build, and docker's figure for the README (no docker on the
//! development host). Where the time of `attach` goes is not broken down yet.
//!
//! # What a crash leaves
//!
//! A kill -9 of a foreground `kiln run --network NET` kills the container (its sandbox's pid 1
//! has a parent-death signal) but leaves its namespace mounted until `kiln rm` (or its next
//! start, which replaces it); checked by hand: after `rm -f` and `network rm`, no mount under
//! the root and no file under `sandbox/` or `netns/` is left. Namespaces of containers that
//! are gone and of networks without a record are removed by [`Networks::reconcile`], which
//! every `kiln network` command runs first.

mod dns;
mod ipam;
pub mod netns;
mod outbound;
mod store;

pub use dns::{dns_main, DNS_ARG};
pub use ipam::{IpamError, Subnet};
pub use netns::{attach, detach, BRIDGE};
pub use store::{
    mac_of, valid_name, CreateOptions, Endpoint, Network, Networks, LAYOUT, PREDEFINED,
};

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Errors of networks: docker's messages where docker has one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No network of that name or id.
    #[error("network {0} not found")]
    NotFound(String),
    /// An id prefix matching several networks.
    #[error("network {0} is ambiguous (more than one network id starts with it)")]
    Ambiguous(String),
    /// `create` of a name in use.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// `create` of `bridge`, `host` or `none`.
    #[error("operation is not permitted on predefined {0} network ")]
    Predefined(String),
    /// A name docker refuses.
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    /// `--driver` other than `bridge`.
    #[error("plugin \"{0}\" not found: kiln supports the bridge driver only")]
    Driver(String),
    /// `--subnet` overlapping another network's.
    #[error("invalid pool request: Pool overlaps with other one on this address space ({0} and network {1})")]
    Overlap(Subnet, String),
    /// Subnet, gateway or address errors.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// `rm` of a network with containers.
    #[error("error while removing network: network {name} has active endpoints (containers: {})", containers.join(", "))]
    ActiveEndpoints {
        /// The network.
        name: String,
        /// Names of the containers on it.
        containers: Vec<String>,
    },
    /// `connect` of a container already on the network.
    #[error("endpoint with name {0} already exists in network {1}")]
    AlreadyConnected(String, String),
    /// `--ip` taken.
    #[error("Address already in use: {0}")]
    AddressInUse(Ipv4Addr),
    /// A file of the store.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A record that does not parse.
    #[error("{path}: corrupt network record: {source}", path = .0.display(), source = .1)]
    Corrupt(PathBuf, #[source] serde_json::Error),
    /// A namespace operation.
    #[error("network namespace: {0}: {1}")]
    Netns(String, #[source] std::io::Error),
    /// A netlink request.
    #[error("netlink: {0}: {1}")]
    Netlink(String, String),
    /// Outbound access of a network (pasta, NAT in its namespace).
    #[error("network {0}: outbound access: {1}")]
    Outbound(String, String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
