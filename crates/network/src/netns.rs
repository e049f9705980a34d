//! Network namespaces kiln owns (bind-mounted under the store, so they outlive every
//! process), the bridge of a network and the veths of a container, through netlink
//! (`rtnetlink`) from a short-lived thread that enters the namespaces: the calling process's
//! own namespace, and so the host's, is never changed.

use crate::store::{io_err, Endpoint, Network, Networks};
use crate::{Error, Result};
use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::ffi::CString;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The bridge's name in a network's namespace.
pub const BRIDGE: &str = "br0";

/// `statfs` magic of nsfs: a bind-mounted namespace.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// `path` is a mounted namespace (not a leftover file from before a reboot).
pub(crate) fn is_ns(path: &Path) -> bool {
    let Ok(c) = cpath(path) else { return false };
    // SAFETY: an all-zero statfs is valid; c is a valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    unsafe { libc::statfs(c.as_ptr(), &raw mut st) == 0 && st.f_type == NSFS_MAGIC }
}

/// Unmounts and removes a bind-mounted namespace; one that is not there is fine. The
/// namespace itself goes when its last process and mount are gone, and its interfaces with it
/// (a veth's peer in another namespace too).
pub(crate) fn remove_ns(path: &Path) -> Result<()> {
    let c = cpath(path).map_err(io_err(path))?;
    // SAFETY: valid path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } < 0 {
        let e = io::Error::last_os_error();
        // Not mounted (EINVAL), or not there (ENOENT).
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(io_err(path)(e));
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Makes the calling thread's network namespace a new one and bind-mounts it at `path`.
fn new_ns_at(path: &Path) -> Result<()> {
    fs::File::create(path).map_err(io_err(path))?;
    // SAFETY: plain system call; affects this thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(Error::Netns(
            "unshare(CLONE_NEWNET)".into(),
            io::Error::last_os_error(),
        ));
    }
    let target = cpath(path).map_err(io_err(path))?;
    // SAFETY: valid paths.
    let r = unsafe {
        libc::mount(
            c"/proc/thread-self/ns/net".as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let _ = fs::remove_file(path);
        return Err(Error::Netns(format!("bind-mounting {}", path.display()), e));
    }
    Ok(())
}

/// Enters the namespace bind-mounted at `path` (this thread only).
pub(crate) fn enter(path: &Path) -> Result<()> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    // SAFETY: our fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(Error::Netns(
            format!("entering {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Runs `f` on a thread of its own (so that the namespaces it enters are its own) with a
/// single-threaded tokio runtime for netlink.
fn on_thread<T: Send>(f: impl FnOnce(&tokio::runtime::Runtime) -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| Error::Netns("starting the netlink runtime".into(), e))?;
            f(&rt)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A netlink connection in the calling thread's current namespace.
fn connect() -> Result<Handle> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::Netns("netlink socket".into(), e))?;
    tokio::spawn(conn);
    Ok(handle)
}

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink(what.to_string(), e.to_string())
}

async fn index(h: &Handle, name: &str) -> Result<u32> {
    let link = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(nl(name))?
        .ok_or_else(|| Error::Netlink(name.to_string(), "no such interface".into()))?;
    Ok(link.header.index)
}

async fn up(h: &Handle, name: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_name(name).up().build())
        .execute()
        .await
        .map_err(nl(name))
}

/// The network's namespace with its bridge: there, or made now (the first container of the
/// network, or the first after a reboot or a crash).
fn ensure_network_ns(store: &Networks, net: &Network) -> Result<()> {
    let path = store.netns_path(&net.id);
    if is_ns(&path) {
        return Ok(());
    }
    // A pasta of a namespace gone (a namespace unmounted by hand) would pass for this one's.
    crate::outbound::stop(store, &net.id)?;
    remove_ns(&path)?;
    on_thread(|rt| {
        new_ns_at(&path)?;
        let made = rt.block_on(async {
            let h = connect()?;
            up(&h, "lo").await?;
            h.link()
                .add(LinkBridge::new(BRIDGE).build())
                .execute()
                .await
                .map_err(nl("adding the bridge"))?;
            let br = index(&h, BRIDGE).await?;
            h.address()
                .add(br, IpAddr::V4(net.gateway), net.subnet.prefix())
                .execute()
                .await
                .map_err(nl("the bridge's address"))?;
            up(&h, BRIDGE).await
        });
        if made.is_err() {
            let _ = remove_ns(&path);
        }
        made
    })
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// Puts an interface `eth` on `net`'s bridge into the calling thread's namespace (the
/// container's, whose fd is `sandbox_ns`; `h` speaks there): a veth whose other end,
/// `kv<short id>`, goes to the network's namespace onto the bridge; the container's end gets
/// `ep`'s MAC and address, then comes up (after the bridge's end: see below), and with
/// `route` the default route through the gateway.
async fn plug(
    h: &Handle,
    store: &Networks,
    sandbox_ns: &fs::File,
    container: &str,
    eth: &str,
    (net, ep): (&Network, &Endpoint),
    route: bool,
) -> Result<()> {
    let short: String = container.chars().take(12).collect();
    let host_side = format!("kv{short}");
    let owned_path = store.netns_path(&net.id);
    h.link()
        .add(LinkVeth::new(eth, &host_side).build())
        .execute()
        .await
        .map_err(nl("adding a veth"))?;
    let owned = fs::File::open(&owned_path).map_err(io_err(&owned_path))?;
    h.link()
        .set(
            LinkUnspec::new_with_name(&host_side)
                .setns_by_fd(owned.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(nl("moving the veth to the network"))?;
    // The other end, on the bridge, from inside the network's namespace, up first: a veth
    // whose peer comes up later keeps its carrier (with the container's end up first, the
    // bridge's end stayed NO-CARRIER here).
    enter(&owned_path)?;
    let o = connect()?;
    let br = index(&o, BRIDGE).await?;
    o.link()
        .set(
            LinkUnspec::new_with_name(&host_side)
                .controller(br)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("attaching the veth to the bridge"))?;
    // SAFETY: our fd.
    if unsafe { libc::setns(sandbox_ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(Error::Netns(
            "re-entering the container's namespace".into(),
            io::Error::last_os_error(),
        ));
    }
    h.link()
        .set(
            LinkUnspec::new_with_name(eth)
                .address(mac_bytes(&ep.mac))
                .build(),
        )
        .execute()
        .await
        .map_err(nl("the MAC address"))?;
    let idx = index(h, eth).await?;
    h.address()
        .add(idx, IpAddr::V4(ep.ip), net.subnet.prefix())
        .execute()
        .await
        .map_err(nl("the container's address"))?;
    up(h, eth).await?;
    if route {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(net.gateway)
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("the default route"))?;
    }
    Ok(())
}

/// Makes each network's namespace with its way out (see `outbound.rs`) and, with `dns` (the kiln binary), starts its name server
/// unless it runs (see `dns.rs`).
fn ensure_networks(
    store: &Networks,
    nets: &[(Network, Endpoint)],
    dns: Option<&Path>,
) -> Result<()> {
    for (net, _) in nets {
        ensure_network_ns(store, net)?;
        crate::outbound::ensure(store, net)?;
        if let Some(exe) = dns {
            crate::dns::ensure(store, net, exe)?;
        }
    }
    Ok(())
}

/// Gives container `container` a namespace of its own, bind-mounted at
/// [`Networks::sandbox_path`], with an interface `ethN` on each network's bridge (N in the
/// order given), its address and, through the first network that is not internal, its
/// default route. A namespace left from an earlier run is replaced. With `dns` (the kiln
/// binary), each network's name server is started unless it runs (see `dns.rs`).
pub fn attach(
    store: &Networks,
    container: &str,
    nets: &[(Network, Endpoint)],
    dns: Option<&Path>,
) -> Result<()> {
    let lock = store.lock()?;
    ensure_networks(lock.store(), nets, dns)?;
    let path = store.sandbox_path(container);
    remove_ns(&path)?;
    on_thread(|rt| {
        new_ns_at(&path)?;
        let sandbox_ns = fs::File::open(&path).map_err(io_err(&path))?;
        let done = rt.block_on(async {
            let h = connect()?;
            up(&h, "lo").await?;
            let mut routed = false;
            for (i, (net, ep)) in nets.iter().enumerate() {
                let route = !net.internal && !routed;
                routed |= route;
                let eth = format!("eth{i}");
                plug(&h, store, &sandbox_ns, container, &eth, (net, ep), route).await?;
            }
            Ok(())
        });
        if done.is_err() {
            let _ = remove_ns(&path);
        }
        done
    })?;
    drop(lock);
    Ok(())
}

/// `network connect` of a running container: one more interface, the first `ethN` free, in
/// its namespace (no default route: it has one through its first network).
pub fn plug_running(
    store: &Networks,
    container: &str,
    net: &Network,
    ep: &Endpoint,
    dns: Option<&Path>,
) -> Result<()> {
    let lock = store.lock()?;
    ensure_networks(lock.store(), &[(net.clone(), ep.clone())], dns)?;
    let path = store.sandbox_path(container);
    on_thread(|rt| {
        enter(&path)?;
        let sandbox_ns = fs::File::open(&path).map_err(io_err(&path))?;
        rt.block_on(async {
            let h = connect()?;
            let names = link_names(&h).await?;
            let eth = (0..=names.len())
                .map(|i| format!("eth{i}"))
                .find(|n| !names.contains(n))
                .unwrap_or_default();
            plug(&h, store, &sandbox_ns, container, &eth, (net, ep), false).await
        })
    })?;
    drop(lock);
    Ok(())
}

async fn link_names(h: &Handle) -> Result<Vec<String>> {
    use netlink_packet_route::link::LinkAttribute;
    let links: Vec<_> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing interfaces"))?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        })
        .collect())
}

/// `network disconnect` of a running container: removes its interface with `ep`'s address
/// (the veth's other end goes with it).
pub fn unplug_running(store: &Networks, container: &str, ep: &Endpoint) -> Result<()> {
    let path = store.sandbox_path(container);
    if !is_ns(&path) {
        return Ok(());
    }
    on_thread(|rt| {
        enter(&path)?;
        rt.block_on(async {
            let h = connect()?;
            let addrs: Vec<_> = h
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(nl("listing addresses"))?;
            for a in addrs {
                use netlink_packet_route::address::AddressAttribute;
                let ours = a.attributes.iter().any(
                    |x| matches!(x, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == ep.ip),
                );
                if ours {
                    h.link()
                        .del(a.header.index)
                        .execute()
                        .await
                        .map_err(nl("removing the interface"))?;
                }
            }
            Ok(())
        })
    })
}

/// Removes container `container`'s namespace (its veths go with it once its processes are
/// gone).
pub fn detach(store: &Networks, container: &str) -> Result<()> {
    remove_ns(&store.sandbox_path(container))
}
