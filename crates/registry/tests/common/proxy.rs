//! A fault-injecting HTTP/1.1 proxy on a free loopback port in front of a real registry:
//! each request is forwarded (one connection per request, `Connection: close`) unless a
//! scripted [`Rule`] matches it first, and every request is recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What to do with a matching request.
#[derive(Clone, Debug)]
pub(crate) enum Fault {
    /// Answer with this status and these extra headers (the upstream is not asked).
    Status(u16, Vec<(String, String)>),
    /// Forward, but close the connection after the answer's head and this many body bytes.
    DropAfter(usize),
    /// Forward without the request's `Range` header (a registry that ignores ranges).
    IgnoreRange,
    /// Forward, send the head and this many body bytes, then send nothing more (the
    /// connection stays open).
    StallAfter(usize),
    /// Read the request, then send nothing at all.
    Silent,
}

/// `fault` for the next `times` requests whose method is `method` and whose path contains
/// `path`.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub method: &'static str,
    pub path: String,
    pub fault: Fault,
    pub times: usize,
}

/// A request as the proxy saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub at: Instant,
}

pub(crate) struct Proxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules = Arc::new(Mutex::new(Vec::<Rule>::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (rules.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (r, s, up) = (r.clone(), s.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, up, r, s).await;
                });
            }
        });
        Proxy {
            port,
            rules,
            seen,
            task,
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn add(&self, method: &'static str, path: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            method,
            path: path.to_string(),
            fault,
            times,
        });
    }

    /// The requests seen so far with this method and a path containing `path`.
    pub(crate) fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path.contains(path))
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut conn: TcpStream,
    upstream: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    // The request head.
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    // The request body (Content-Length only; kiln never sends chunked bodies).
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        range: header("range"),
        at: Instant::now(),
    });
    let fault = {
        let mut rules = rules.lock().unwrap();
        let hit = rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && path.contains(&r.path));
        hit.map(|r| {
            r.times -= 1;
            r.fault.clone()
        })
    };
    if let Some(Fault::Status(code, extra)) = &fault {
        let mut answer =
            format!("HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n");
        for (k, v) in extra {
            answer.push_str(&format!("{k}: {v}\r\n"));
        }
        answer.push_str("\r\n");
        conn.write_all(answer.as_bytes()).await?;
        return Ok(());
    }
    if let Some(Fault::Silent) = fault {
        tokio::time::sleep(Duration::from_mins(10)).await;
        return Ok(());
    }
    // Forward, one request per connection.
    let mut out = format!("{request_line}\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("connection")
            || (matches!(fault, Some(Fault::IgnoreRange)) && k.eq_ignore_ascii_case("range"))
        {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(&upstream).await?;
    up.write_all(out.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let limit = match fault {
        Some(Fault::DropAfter(n) | Fault::StallAfter(n)) => {
            let head_len = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(answer.len(), |i| i + 4);
            (head_len + n).min(answer.len())
        }
        _ => answer.len(),
    };
    conn.write_all(&answer[..limit]).await?;
    conn.flush().await?;
    if let Some(Fault::StallAfter(_)) = fault {
        tokio::time::sleep(Duration::from_mins(10)).await;
    }
    Ok(())
}
