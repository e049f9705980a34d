//! The name server of a network (aardvark-dns's design, daemonless): `kiln __kiln-dns ROOT
//! NETWORK_ID`, started by the first container of the network that starts, listening on UDP
//! port 53 of the network's gateway (in the network's namespace), answering A queries for the
//! names, aliases and short ids of the network's containers from `endpoints.json` (read
//! again for every query, so `connect`/`disconnect` show at once), and forwarding every other
//! query, from the host's namespace, to the resolvers of the host's `/etc/resolv.conf` (read
//! again when it changes). It exits once no container of the network runs.
//!
//! Start-up is race-free: under the store lock, the starter takes `dns.lock` of the network
//! (an exclusive `flock`; held: a responder runs), binds the socket in the network's
//! namespace and passes both to the responder, which keeps the lock for its life. The
//! responder decides to exit under the store lock and releases `dns.lock` before it, so a
//! container that starts meanwhile either sees it running or starts a new one.

use crate::netns::is_ns;
use crate::store::{io_err, Network, Networks};
use crate::{Error, Result};
use fs4::fs_std::FileExt;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// First argument that makes the `kiln` binary a network's name server.
pub const DNS_ARG: &str = "__kiln-dns";

/// Environment variable with the fds of the lock and the socket: `LOCK,SOCKET`.
const FDS_ENV: &str = "KILN_DNS_FDS";

/// Time to live of answers (docker's embedded server's).
const TTL: u32 = 600;

/// How often the responder checks whether containers of its network still run.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn lock_path(store: &Networks, net: &Network) -> PathBuf {
    store.dir().join("nets").join(&net.id).join("dns.lock")
}

/// Starts the network's name server unless one runs; `exe` is the kiln binary. Called with
/// the store lock held, after the network's namespace exists.
pub(crate) fn ensure(store: &Networks, net: &Network, exe: &Path) -> Result<()> {
    let path = lock_path(store, net);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match FileExt::try_lock_exclusive(&lock) {
        Ok(()) => {}
        // Held: a responder runs.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) => return Err(io_err(&path)(e)),
    }
    let ns = store.netns_path(&net.id);
    let gateway = net.gateway;
    let socket = std::thread::scope(|s| {
        s.spawn(|| -> Result<UdpSocket> {
            crate::netns::enter(&ns)?;
            UdpSocket::bind((gateway, 53))
                .map_err(|e| Error::Netns(format!("binding {gateway}:53"), e))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    let (lock_fd, sock_fd) = (lock.as_raw_fd(), socket.as_raw_fd());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(DNS_ARG)
        .arg(store.dir())
        .arg(&net.id)
        .env(FDS_ENV, format!("{lock_fd},{sock_fd}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for fd in [lock_fd, sock_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Netns("starting the network's name server".into(), e))?;
    // Reaped when it exits (a long-lived caller, the shim, must not keep a zombie).
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// `kiln __kiln-dns STORE_DIR NETWORK_ID`: the responder's main loop (see the module docs).
pub fn dns_main(args: &[OsString]) -> i32 {
    let (Some(dir), Some(id)) = (args.first(), args.get(1)) else {
        return 2;
    };
    let Some((lock, sock)) = std::env::var(FDS_ENV).ok().and_then(|v| {
        let (a, b) = v.split_once(',')?;
        Some((a.parse::<i32>().ok()?, b.parse::<i32>().ok()?))
    }) else {
        return 2;
    };
    // SAFETY: the fds the starter passed us, ours alone.
    let (lock, socket) = unsafe {
        (
            OwnedFd::from_raw_fd(lock),
            UdpSocket::from_raw_fd(OwnedFd::from_raw_fd(sock).into_raw_fd()),
        )
    };
    let store = Networks::at(Path::new(dir));
    let id = id.to_string_lossy().into_owned();
    let _ = socket.set_read_timeout(Some(CHECK_EVERY));
    let mut upstream = Upstream::default();
    let mut buf = [0u8; 4096];
    let mut last_check = std::time::Instant::now();
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let query = buf[..n].to_vec();
                if let Some(reply) = answer(&store, &id, &query, from) {
                    let _ = socket.send_to(&reply, from);
                } else {
                    let servers = upstream.servers();
                    let reply_to = socket.try_clone();
                    std::thread::spawn(move || {
                        if let (Ok(s), Some(reply)) = (reply_to, forward(&servers, &query)) {
                            let _ = s.send_to(&reply, from);
                        }
                    });
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return 1,
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = std::time::Instant::now();
            if !any_running(&store, &id) {
                // Decided under the store lock: a container starting now waits for it.
                let Ok(guard) = store.lock() else { continue };
                if !any_running(&store, &id) {
                    drop(lock);
                    drop(guard);
                    return 0;
                }
            }
        }
    }
}

/// A container of network `id` runs: its namespace is mounted.
fn any_running(store: &Networks, id: &str) -> bool {
    store
        .endpoints(id)
        // A network removed under us (it cannot be while containers are on it): stop.
        .is_ok_and(|eps| eps.iter().any(|e| is_ns(&store.sandbox_path(&e.container))))
}

/// The host's resolvers, from `/etc/resolv.conf`, read again when it changes.
#[derive(Default)]
struct Upstream {
    seen: Option<SystemTime>,
    servers: Vec<SocketAddr>,
}

impl Upstream {
    fn servers(&mut self) -> Vec<SocketAddr> {
        let path = Path::new("/etc/resolv.conf");
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime != self.seen || self.servers.is_empty() {
            self.seen = mtime;
            self.servers = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("nameserver"))
                        .then(|| w.next())
                        .flatten()
                        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .collect();
        }
        self.servers.clone()
    }
}

/// Sends `query` to each server in turn (2 s each) from the host's namespace; the first
/// reply.
fn forward(servers: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for s in servers {
        let bind: SocketAddr = if s.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        if sock.connect(s).and_then(|()| sock.send(query)).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            if n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// A parsed question: the name (lower case, no trailing dot), its type, and where the
/// question section ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Question {
    pub(crate) name: String,
    pub(crate) qtype: u16,
    pub(crate) end: usize,
}

/// The one question of a standard query; `None` for anything else.
pub(crate) fn parse_query(q: &[u8]) -> Option<Question> {
    if q.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([q[2], q[3]]);
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    // A query (QR 0), opcode QUERY, one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // No compression in a question; labels of 63 bytes at most.
        if len > 63 {
            return None;
        }
        let label = q.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if i > 12 + 255 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let _class = q.get(i + 2..i + 4)?;
    Some(Question {
        name: labels.join("."),
        qtype,
        end: i + 4,
    })
}

/// The reply to `q` for a name of the network (an A record per address; no record for other
/// types), or `None`: not a name of the network, forward it.
pub(crate) fn reply(q: &[u8], question: &Question, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = Vec::with_capacity(question.end + 16 * addrs.len());
    r.extend_from_slice(&q[..2]);
    // QR, opcode 0, AA, RD as asked, RA; NOERROR.
    let rd = q[2] & 0x01;
    r.extend_from_slice(&[0x84 | rd, 0x80]);
    let answers: &[Ipv4Addr] = if question.qtype == 1 || question.qtype == 255 {
        addrs
    } else {
        &[]
    };
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..question.end]);
    for a in answers {
        // A pointer to the question's name, type A, class IN, TTL, 4 bytes.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&a.octets());
    }
    r
}

/// The addresses `name` has on network `id`: containers by name, alias, short (12) or full
/// id.
pub(crate) fn lookup(eps: &[crate::Endpoint], name: &str) -> Vec<Ipv4Addr> {
    eps.iter()
        .filter(|e| {
            e.name.eq_ignore_ascii_case(name)
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                || (name.len() == 12 || name.len() == 64) && e.container.starts_with(name)
        })
        .map(|e| e.ip)
        .collect()
}

/// The reply for a name of this network, or else of another network the querier (found by
/// its source address) is on (aardvark-dns answers per source as well); `None`: forward.
fn answer(store: &Networks, id: &str, q: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let question = parse_query(q)?;
    let eps = store.endpoints(id).ok()?;
    let mut addrs = lookup(&eps, &question.name);
    if addrs.is_empty() {
        let querier = eps
            .iter()
            .find(|e| std::net::IpAddr::V4(e.ip) == from.ip())
            .map(|e| e.container.clone());
        if let Some(c) = querier {
            for (net, _) in store.of_container(&c).ok()? {
                if net.id != id && addrs.is_empty() {
                    addrs = lookup(&store.endpoints(&net.id).ok()?, &question.name);
                }
            }
        }
    }
    (!addrs.is_empty()).then(|| reply(q, &question, &addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn ep(container: &str, name: &str, aliases: &[&str], ip: [u8; 4]) -> crate::Endpoint {
        crate::Endpoint {
            container: container.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| (*a).to_string()).collect(),
            ip: ip.into(),
            mac: String::new(),
            endpoint_id: String::new(),
        }
    }

    #[test]
    fn names_aliases_and_short_ids_answer_and_others_do_not() {
        let id = format!("abcdef012345{}", "9".repeat(52));
        let eps = [
            ep(&id, "db", &["database"], [172, 18, 0, 2]),
            ep(&"f".repeat(64), "app", &[], [172, 18, 0, 3]),
        ];
        assert_eq!(lookup(&eps, "DB"), [Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(lookup(&eps, "database"), [Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(lookup(&eps, "abcdef012345"), [Ipv4Addr::new(172, 18, 0, 2)]);
        assert!(lookup(&eps, "abcdef").is_empty());
        assert!(lookup(&eps, "example.com").is_empty());
    }

    #[test]
    fn replies_carry_the_question_and_one_a_record() {
        let q = query("Db", 1);
        let question = parse_query(&q).unwrap();
        assert_eq!(question.name, "db");
        let r = reply(&q, &question, &[Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "QR");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "ANCOUNT");
        assert_eq!(&r[r.len() - 4..], &[172, 18, 0, 2]);
        // AAAA of a known name: no answer, no error (the resolver then uses the A record).
        let q6 = query("db", 28);
        let r6 = reply(
            &q6,
            &parse_query(&q6).unwrap(),
            &[Ipv4Addr::new(172, 18, 0, 2)],
        );
        assert_eq!(u16::from_be_bytes([r6[6], r6[7]]), 0);
        // Garbage and responses are not queries.
        assert!(parse_query(&[1, 2, 3]).is_none());
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(parse_query(&resp).is_none());
        let mut long = q[..12].to_vec();
        long.extend([64u8; 70]);
        assert!(parse_query(&long).is_none());
    }
}
