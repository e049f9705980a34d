//! The client's side of the attach socket (`kiln attach`, `kiln start -ai`, `kiln run -it`):
//! the container's output to the caller's stdout and stderr, the caller's stdin (through
//! the detach keys) to the container, its window size at attach and on every SIGWINCH, and
//! with `--sig-proxy` the signals it receives to the container's process. The caller's
//! terminal is in raw mode while a `-t` container's input is relayed (restored however it
//! ends).

use super::{proto, DetachKeys};
use crate::container::{io_err, Container};
use crate::terminal::{caller_size, RawMode};
use crate::{Error, Result};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// How to attach.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// Relay the caller's stdin (not `--no-stdin`; only to a container made with `-i`).
    pub stdin: bool,
    /// The detach sequence (`--detach-keys`).
    pub detach_keys: DetachKeys,
    /// Forward the signals the caller receives to the container's process (`--sig-proxy`).
    pub sig_proxy: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            stdin: true,
            detach_keys: DetachKeys::default_keys(),
            sig_proxy: true,
        }
    }
}

/// How an attach ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container's command ended with this code.
    Exited(i32),
    /// The caller typed the detach keys; the container runs on.
    Detached,
}

/// What the stdin thread reads.
enum Typed {
    Data(Vec<u8>),
    Detach,
}

/// Environment variable for tests only: milliseconds [`Container::attach`] waits before it
/// looks at the container and connects (as a client on a loaded host may, while the
/// container's command ends first).
const TEST_ATTACH_DELAY_ENV: &str = "KILN_ATTACH_TEST_DELAY_MS";

/// Signals forwarded with `--sig-proxy` (SIGWINCH is the window size's).
const PROXIED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Where signals the caller receives go (`--sig-proxy`).
#[derive(Clone, Copy)]
enum Proxy {
    /// To the container's pid 1 (`attach`).
    Init(Option<kiln_executor::HostProcess>),
    /// To the exec'd process, through the shim (`exec -t`).
    Shim,
}

/// How a session on the socket ended: as it said, or why the process could not start.
enum SessionEnd {
    Ended(AttachEnd),
    NotStarted(String),
}

impl Container {
    /// `docker attach`: relays the running container's output (and input, see
    /// [`AttachOptions`]) until its command ends (its exit code) or the caller detaches.
    ///
    /// # Errors
    ///
    /// The container is not running, or its shim cannot be reached.
    pub async fn attach(&mut self, opts: &AttachOptions) -> Result<AttachEnd> {
        if let Some(ms) = std::env::var(TEST_ATTACH_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        self.refresh()?;
        if !self.is_running() {
            return Err(Error::AttachStopped);
        }
        let tty = self.config.tty;
        let stdin = opts.stdin && self.config.interactive;
        let mut first = proto::encode(proto::ATTACH, b"");
        if tty {
            if let Some((rows, cols)) = caller_size() {
                first.extend(proto::encode(proto::WINDOW, &proto::window(rows, cols)));
            }
        }
        let proxy = Proxy::Init(self.state.init);
        match self.session(&first, tty, stdin, opts, proxy).await? {
            Some(SessionEnd::Ended(end)) => Ok(end),
            Some(SessionEnd::NotStarted(m)) => Err(Error::Shim(m)),
            // The shim went without telling the end: what the state says.
            None => {
                self.refresh()?;
                match self.state.exit_code {
                    Some(code) if !self.is_running() => Ok(AttachEnd::Exited(code)),
                    _ => Err(Error::Shim(format!(
                        "the shim of container {} closed the attach socket",
                        self.config.id
                    ))),
                }
            }
        }
    }

    /// Whether the container runs under a shim that serves its attach socket.
    pub(crate) fn has_attach_socket(&self) -> bool {
        self.dir.join(super::SOCKET).exists()
    }

    /// `exec -t` through the container's shim (see `exec.rs`): `spec` with a terminal of
    /// its own, the caller's stdin relayed with `stdin`, until it ends or the caller types
    /// the detach keys (the process runs on).
    pub(crate) async fn exec_through_shim(
        &mut self,
        spec: &kiln_executor::ExecSpec,
        stdin: bool,
        opts: &AttachOptions,
    ) -> Result<AttachEnd> {
        let request = proto::ExecRequest {
            spec: spec.clone(),
            size: caller_size(),
        };
        let json = serde_json::to_vec(&request).map_err(|e| Error::Shim(e.to_string()))?;
        let first = proto::encode(proto::EXEC, &json);
        match self.session(&first, true, stdin, opts, Proxy::Shim).await? {
            Some(SessionEnd::Ended(end)) => Ok(end),
            Some(SessionEnd::NotStarted(m)) => Err(kiln_executor::Error::Setup(m).into()),
            None => Err(Error::Shim(format!(
                "the shim of container {} closed the attach socket",
                self.config.id
            ))),
        }
    }

    /// One session on the attach socket: `first` (frames) sent, then output to the
    /// caller's stdout/stderr and its stdin (through the detach keys), window sizes (with
    /// `tty`) and signals (with `--sig-proxy`) to the shim, until the end comes (`None`: the
    /// shim closed the socket without one).
    async fn session(
        &self,
        first: &[u8],
        tty: bool,
        stdin: bool,
        opts: &AttachOptions,
        proxy: Proxy,
    ) -> Result<Option<SessionEnd>> {
        let socket = self.dir.join(super::SOCKET);
        if !socket.exists() {
            return Err(Error::NotAttachable(self.config.id.clone()));
        }
        let dir_fd = super::open_dir(&self.dir).map_err(io_err(&self.dir))?;
        let stream = tokio::net::UnixStream::connect(super::socket_path(&dir_fd))
            .await
            .map_err(io_err(&socket))?;
        drop(dir_fd);
        let (mut rd, mut wr) = stream.into_split();
        let raw = if tty && stdin { RawMode::enter() } else { None };
        wr.write_all(first).await.map_err(io_err(&socket))?;
        let (typed_tx, mut typed) = mpsc::unbounded_channel();
        // Dropped at the end: the stdin thread stops.
        let stop = if stdin {
            let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| io_err(&socket)(e.into()))?;
            let keys = opts.detach_keys.clone();
            std::thread::spawn(move || read_stdin(keys, &stop_read, &typed_tx));
            Some(stop_write)
        } else {
            drop(typed_tx);
            None
        };
        let mut winch = if tty {
            signal(SignalKind::window_change()).ok()
        } else {
            None
        };
        let mut proxied: Vec<_> = if opts.sig_proxy {
            PROXIED
                .iter()
                .filter_map(|&s| Some((s, signal(SignalKind::from_raw(s)).ok()?)))
                .collect()
        } else {
            Vec::new()
        };
        let (frames_tx, mut frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(Some(frame)) = read_frame(&mut rd).await {
                if frames_tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let mut stdin_open = stdin;
        let end = loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some((proto::STDOUT, data)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&data).and_then(|()| out.flush());
                    }
                    Some((proto::STDERR, data)) => {
                        let _ = std::io::stderr().write_all(&data);
                    }
                    Some((proto::EXIT, code)) => {
                        break proto::parse_exit(&code)
                            .map(|c| SessionEnd::Ended(AttachEnd::Exited(c)));
                    }
                    Some((proto::ERROR, message)) => {
                        let message = String::from_utf8_lossy(&message).into_owned();
                        break Some(SessionEnd::NotStarted(message));
                    }
                    Some(_) => {}
                    None => break None,
                },
                t = typed.recv(), if stdin_open => match t {
                    Some(Typed::Data(data)) => {
                        // A shim that went away shows as the end of its frames.
                        let _ = wr.write_all(&proto::encode(proto::INPUT, &data)).await;
                    }
                    Some(Typed::Detach) => break Some(SessionEnd::Ended(AttachEnd::Detached)),
                    None => stdin_open = false,
                },
                Some(()) = async { winch.as_mut()?.recv().await } => {
                    if let Some((rows, cols)) = caller_size() {
                        let frame = proto::encode(proto::WINDOW, &proto::window(rows, cols));
                        let _ = wr.write_all(&frame).await;
                    }
                }
                Some(sig) = next_signal(&mut proxied) => match proxy {
                    Proxy::Init(Some(init)) => {
                        let _ = init.signal(sig);
                    }
                    Proxy::Init(None) => {}
                    Proxy::Shim => {
                        let _ = wr.write_all(&proto::encode(proto::SIGNAL, &sig.to_be_bytes())).await;
                    }
                },
            }
        };
        reader.abort();
        drop(stop);
        drop(raw);
        Ok(end)
    }
}

/// The next of `signals` to arrive (pending forever without any).
async fn next_signal(
    signals: &mut [(libc::c_int, tokio::signal::unix::Signal)],
) -> Option<libc::c_int> {
    std::future::poll_fn(|cx| {
        for (sig, s) in signals.iter_mut() {
            if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                return std::task::Poll::Ready(Some(*sig));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn read_frame(
    r: &mut tokio::net::unix::OwnedReadHalf,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    if r.read(&mut head[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > proto::MAX_FRAME {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// Reads stdin (blocking, on a thread of its own) through the detach keys until it ends,
/// the keys are typed or `stop` closes.
fn read_stdin(mut keys: DetachKeys, stop: &OwnedFd, tx: &mpsc::UnboundedSender<Typed>) {
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: valid array of pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return;
        }
        let mut out = Vec::new();
        let detach = keys.feed(&buf[..n.unsigned_abs()], &mut out);
        if !out.is_empty() && tx.send(Typed::Data(out)).is_err() {
            return;
        }
        if detach {
            let _ = tx.send(Typed::Detach);
            return;
        }
    }
}
