//! The shim's side of the attach socket: clients come and go on a thread of their own;
//! the shim hands every chunk of the container's output to [`Hub::output`] (as it writes it
//! to the log), says where input goes with [`Hub::set_input`], and tells the end with
//! [`Hub::ended`].

use super::proto;
use kiln_executor::{Executor, HostProcess, Stream};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a client may take to read a chunk of output before it is dropped (the
/// container's output, and the log, do not wait for a stuck client for longer).
pub(super) const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a start that asked for it waits for its first client ([`Hub::wait_first`]).
const FIRST_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where attached clients' input goes.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// The container's terminal master (`-t`): input, and window sizes.
    Terminal(Arc<OwnedFd>),
    /// The write end of the command's stdin pipe (`-i` without `-t`).
    Stdin(Arc<OwnedFd>),
}

impl Input {
    fn fd(&self) -> RawFd {
        match self {
            Input::Terminal(fd) | Input::Stdin(fd) => fd.as_raw_fd(),
        }
    }
}

/// The attach socket of one container, served for as long as its shim runs.
#[derive(Clone, Debug)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clients: Mutex<Vec<(u64, UnixStream)>>,
    input: Mutex<Option<Input>>,
    size: Mutex<Option<(u16, u16)>>,
    /// Clients that ever connected.
    attached: tokio::sync::watch::Sender<u64>,
    /// The first run waits for a client ([`Hub::wait_first`]).
    await_first: AtomicBool,
    next_id: AtomicU64,
    /// How to exec into the running container (see `exec.rs`).
    exec: Mutex<Option<(Executor, HostProcess)>>,
    /// The shim's runtime, which runs exec'd processes.
    runtime: Option<tokio::runtime::Handle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// Listens on `dir`'s attach socket (mode 0600); `size` is the terminal's first window
    /// size, `await_first` makes the first run wait for a client.
    pub(crate) fn listen(
        dir: &Path,
        size: Option<(u16, u16)>,
        await_first: bool,
    ) -> io::Result<Hub> {
        let dir_fd = super::open_dir(dir)?;
        let path = super::socket_path(&dir_fd);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let hub = Hub {
            inner: Arc::new(Inner {
                clients: Mutex::new(Vec::new()),
                input: Mutex::new(None),
                size: Mutex::new(size),
                attached: tokio::sync::watch::Sender::new(0),
                await_first: AtomicBool::new(await_first),
                next_id: AtomicU64::new(0),
                exec: Mutex::new(None),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        };
        let accepting = hub.clone();
        std::thread::Builder::new()
            .name("attach".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    accepting.accept(stream);
                }
            })?;
        Ok(hub)
    }

    fn accept(&self, stream: UnixStream) {
        let hub = self.clone();
        let _ = std::thread::Builder::new()
            .name("attach-client".into())
            .spawn(move || hub.session(stream));
    }

    /// A client: its first frame says whether it attaches or execs.
    fn session(&self, mut stream: UnixStream) {
        match proto::read(&mut stream) {
            Ok(Some((proto::ATTACH, _))) => {}
            Ok(Some((proto::EXEC, request))) => {
                return super::exec::serve(self, stream, &request);
            }
            _ => return,
        }
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let _ = writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.clients).push((id, writer));
        self.inner.attached.send_modify(|n| *n += 1);
        self.serve(stream);
        lock(&self.inner.clients).retain(|(i, _)| *i != id);
    }

    /// How to exec into the container while it runs (`None` once it ended).
    pub(crate) fn set_exec(&self, exec: Option<(Executor, HostProcess)>) {
        *lock(&self.inner.exec) = exec;
    }

    /// The executor and pid 1 to exec into, and the runtime to do it on.
    pub(super) fn exec_target(&self) -> Option<(Executor, HostProcess, tokio::runtime::Handle)> {
        let (executor, init) = lock(&self.inner.exec).clone()?;
        Some((executor, init, self.inner.runtime.clone()?))
    }

    /// A client's frames, until it goes (or sends what is not a frame).
    fn serve(&self, mut stream: UnixStream) {
        while let Ok(Some((kind, payload))) = proto::read(&mut stream) {
            match kind {
                proto::INPUT => {
                    let input = lock(&self.inner.input).clone();
                    if let Some(input) = input {
                        write_all(input.fd(), &payload);
                    }
                }
                proto::WINDOW => {
                    let Some(size) = proto::parse_window(&payload) else {
                        return;
                    };
                    *lock(&self.inner.size) = Some(size);
                    if let Some(Input::Terminal(master)) = &*lock(&self.inner.input) {
                        kiln_executor::set_window_size(master.as_raw_fd(), size.0, size.1);
                    }
                }
                _ => return,
            }
        }
    }

    /// The window size a client asked for last (or the first one).
    pub(crate) fn size(&self) -> Option<(u16, u16)> {
        *lock(&self.inner.size)
    }

    /// Where input goes from now on (`None`: dropped).
    pub(crate) fn set_input(&self, input: Option<Input>) {
        if let (Some(Input::Terminal(master)), Some((rows, cols))) = (&input, self.size()) {
            kiln_executor::set_window_size(master.as_raw_fd(), rows, cols);
        }
        *lock(&self.inner.input) = input;
    }

    /// When the start asked for it (once): waits until a client is attached, at most
    /// [`FIRST_CLIENT_TIMEOUT`].
    pub(crate) async fn wait_first(&self) {
        if !self.inner.await_first.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut rx = self.inner.attached.subscribe();
        let _ = tokio::time::timeout(FIRST_CLIENT_TIMEOUT, rx.wait_for(|n| *n > 0)).await;
    }

    /// Sends output to every client; a client that cannot take it is dropped.
    pub(crate) fn output(&self, stream: Stream, data: &[u8]) {
        let kind = if stream == Stream::Stderr {
            proto::STDERR
        } else {
            proto::STDOUT
        };
        let frame = proto::encode(kind, data);
        lock(&self.inner.clients).retain_mut(|(_, s)| {
            let ok = io::Write::write_all(s, &frame).is_ok();
            if !ok {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            ok
        });
    }

    /// The container's command ended with `code`: every client gets it and is let go.
    pub(crate) fn ended(&self, code: i32) {
        *lock(&self.inner.input) = None;
        let frame = proto::encode(proto::EXIT, &code.to_be_bytes());
        for (_, mut s) in lock(&self.inner.clients).drain(..) {
            let _ = io::Write::write_all(&mut s, &frame);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Writes all of `data` to `fd` (a blocking pipe or terminal); gives up on an error.
pub(super) fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: valid buffer; `fd` is open (held by the caller's `Input`).
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n.unsigned_abs()..];
    }
}

/// Copies the terminal `master` into `tx` (as stdout) on a thread of its own until `stop`
/// becomes readable (the run ended), then drains what the master still holds (until every
/// slave is closed, or nothing came for 100 ms).
pub(crate) fn pump_terminal(
    master: Arc<OwnedFd>,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, bytes::Bytes)>,
    stop: OwnedFd,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("terminal".into())
        .spawn(move || {
            let m = master.as_raw_fd();
            let mut buf = vec![0u8; 16 * 1024];
            let read = |buf: &mut [u8]| -> Option<usize> {
                loop {
                    // SAFETY: valid buffer.
                    let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        return Some(n.unsigned_abs());
                    }
                    if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                        return None;
                    }
                }
            };
            let mut fds = [
                libc::pollfd {
                    fd: m,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            loop {
                // SAFETY: valid array of pollfds.
                if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    break;
                }
                if fds[0].revents != 0 {
                    match read(&mut buf) {
                        Some(n) => {
                            let _ =
                                tx.send((Stream::Stdout, bytes::Bytes::copy_from_slice(&buf[..n])));
                        }
                        // Every slave closed (EIO): wait for the stop.
                        None => fds[0].fd = -1,
                    }
                }
                if fds[1].revents != 0 {
                    break;
                }
            }
            let mut pfd = libc::pollfd {
                fd: m,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            while unsafe { libc::poll(&raw mut pfd, 1, 100) } > 0 {
                match read(&mut buf) {
                    Some(n) => {
                        let _ = tx.send((Stream::Stdout, bytes::Bytes::copy_from_slice(&buf[..n])));
                    }
                    None => break,
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_get_output_and_the_exit_and_their_input_reaches_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::listen(dir.path(), None, true).unwrap();
        let mode = std::fs::metadata(dir.path().join(super::super::SOCKET)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let (stdin_read, stdin_write) = nix::unistd::pipe().unwrap();
        hub.set_input(Some(Input::Stdin(Arc::new(stdin_write))));
        let mut client = UnixStream::connect(dir.path().join(super::super::SOCKET)).unwrap();
        proto::write(&mut client, proto::ATTACH, b"").unwrap();
        // The first client ends the wait at once.
        tokio::time::timeout(Duration::from_secs(5), hub.wait_first())
            .await
            .unwrap();
        proto::write(&mut client, proto::INPUT, b"typed").unwrap();
        let mut got = [0u8; 5];
        io::Read::read_exact(&mut std::fs::File::from(stdin_read), &mut got).unwrap();
        assert_eq!(&got, b"typed");
        hub.output(Stream::Stderr, b"oops");
        hub.ended(3);
        assert_eq!(
            proto::read(&mut client).unwrap(),
            Some((proto::STDERR, b"oops".to_vec()))
        );
        let (kind, code) = proto::read(&mut client).unwrap().unwrap();
        assert_eq!((kind, proto::parse_exit(&code)), (proto::EXIT, Some(3)));
        assert_eq!(
            proto::read(&mut client).unwrap(),
            None,
            "let go after the exit"
        );
    }

    #[test]
    fn a_window_size_reaches_the_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::listen(dir.path(), Some((10, 20)), false).unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        hub.set_input(Some(Input::Terminal(Arc::new(pty.master))));
        let slave = pty.slave.as_raw_fd();
        assert_eq!(
            kiln_executor::window_size(slave),
            Some((10, 20)),
            "the first size"
        );
        let mut client = UnixStream::connect(dir.path().join(super::super::SOCKET)).unwrap();
        proto::write(&mut client, proto::ATTACH, b"").unwrap();
        proto::write(&mut client, proto::WINDOW, &proto::window(33, 101)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while kiln_executor::window_size(slave) != Some((33, 101)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the size never changed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
