//! Overlay upper dir → OCI layer tar (streaming).

use crate::{io_err, Error, Result};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use tar::{EntryType, Header};
use xattr::FileExt as _;

/// Overlayfs' private xattrs; never copied into a layer.
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// Overlayfs' private xattrs when mounted with `userxattr` (unprivileged); never copied.
pub(crate) const OVERLAY_USER_XATTR_PREFIX: &str = "user.overlay.";
/// Marks an opaque directory in an overlay upper (value `y`).
pub(crate) const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";
/// The same with `userxattr`.
const OVERLAY_USER_OPAQUE: &str = "user.overlay.opaque";
/// OCI whiteout prefix.
pub(crate) const WH_PREFIX: &str = ".wh.";
/// OCI opaque-directory marker.
pub(crate) const WH_OPAQUE: &str = ".wh..wh..opq";

/// Entries prepared ahead of the tar writer at most. With small files read ahead only up to
/// [`READ_AHEAD_MAX`] bytes, the window holds at most 16 MiB of file contents.
const WINDOW: usize = 256;
/// Regular files up to this size are read whole while being prepared; larger ones are
/// opened and streamed by the writing thread, never buffered.
const READ_AHEAD_MAX: u64 = 64 << 10;
/// The read size of a large file streamed into the tar.
const STREAM_CHUNK: usize = 64 << 10;
/// A sleeping writer is woken when this many entries are ready in a row, sleeping prepare
/// threads when there is room for this many: one wake-up per entry would cost about as
/// much as the syscalls the threads save. At most `WINDOW / 2` (so that both sides never
/// wait for each other).
const BATCH: usize = 32;
const _: () = assert!(2 * BATCH <= WINDOW);
/// Trees with fewer entries are written without threads (not worth starting them).
const PARALLEL_MIN_ENTRIES: usize = 64;
/// Prepare threads at most: the per-entry syscalls stop paying off beyond this, and the
/// tar writer (hashing, compressing) is a thread of its own.
const MAX_THREADS: usize = 4;

/// Writes the tar of `upper` (sorted, directories before their contents, names relative
/// without a leading `./`) into `w` and returns `w` once the archive is finished.
///
/// Most of the time of a tree of small files goes into per-entry syscalls (lstat, xattrs,
/// open, read), not into the tar writer, so worker threads prepare entries ahead of it (see
/// [`prepare`]) while this thread writes them, in walk order, exactly as it would alone.
pub(crate) fn write_upper<W: Write>(upper: &Path, w: W) -> Result<W> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    write_upper_with(upper, w, threads)
}

/// [`write_upper`] with `threads` prepare threads; `0` prepares every entry on this thread.
/// The tar is the same either way.
fn write_upper_with<W: Write>(upper: &Path, w: W, threads: usize) -> Result<W> {
    let mut walk = walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        .into_iter();
    let mut out = TarOut {
        b: tar::Builder::new(w),
        links: HashMap::new(),
    };
    let head: Vec<_> = if threads == 0 {
        Vec::new()
    } else {
        walk.by_ref().take(PARALLEL_MIN_ENTRIES).collect()
    };
    let parallel = threads > 0 && head.len() == PARALLEL_MIN_ENTRIES;
    let entries = head.into_iter().chain(walk);
    if parallel {
        prepare_parallel(upper, entries, threads, |r| out.emit(r))?;
    } else {
        for ent in entries {
            out.emit(prepare_entry(upper, ent))?;
        }
    }
    out.b.into_inner().map_err(io_err(upper))
}

/// One walk entry with its paths and what [`prepare`] gathered about it.
struct Ready {
    path: PathBuf,
    rel: PathBuf,
    prep: io::Result<Prepared>,
}

/// Prepares one walk entry; `Err` when the walk itself failed there.
fn prepare_entry(upper: &Path, ent: walkdir::Result<walkdir::DirEntry>) -> Result<Ready> {
    let ent = ent.map_err(|e| {
        let path = e.path().unwrap_or(upper).to_path_buf();
        Error::Io {
            path,
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk failed")),
        }
    })?;
    let listed = ent.file_type();
    let path = ent.into_path();
    let rel = path
        .strip_prefix(upper)
        .map_err(|_| io_err(&path)(io::Error::other("entry outside the upper dir")))?
        .to_path_buf();
    let prep = prepare(&path, listed);
    Ok(Ready { path, rel, prep })
}

/// The tar being written and what it needs to remember across entries.
struct TarOut<W: Write> {
    b: tar::Builder<W>,
    /// First path (relative) of every multiply-linked inode seen so far.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarOut<W> {
    fn emit(&mut self, r: Result<Ready>) -> Result<()> {
        let r = r?;
        let path = &r.path;
        let prep = r.prep.map_err(io_err(path))?;
        emit(&mut self.b, path, &r.rel, prep, &mut self.links).map_err(io_err(path))
    }
}

/// Shared by the prepare threads and the writing thread of [`prepare_parallel`].
struct Shared<I> {
    /// The walk, and how many entries were taken from it.
    source: Mutex<(I, usize)>,
    window: Mutex<Window>,
    /// Signalled when the entries the writer waits for are ready, or a prepare thread died.
    ready: Condvar,
    /// Signalled when the writer made room in the window, or stopped.
    room: Condvar,
}

struct Window {
    /// Entry `i` is in slot `i % WINDOW` from being prepared until the writer takes it.
    slots: Vec<Option<Result<Ready>>>,
    /// The entry the writer takes next.
    next: usize,
    /// Entries the prepare threads have room for: taking an entry from the walk needs a
    /// reservation, and `reserved <= next + WINDOW`, so entry `i`'s slot is free.
    reserved: usize,
    /// How many entries the walk had, once a prepare thread saw its end.
    end: Option<usize>,
    /// The writer returned (done or failed) or a prepare thread panicked: stop.
    stop: bool,
    /// Whether the writer sleeps on `ready`, and how many threads sleep on `room` (a
    /// notify is a syscall even with nobody waiting).
    writer_waits: bool,
    room_waiters: usize,
}

impl Window {
    /// Whether the sleeping writer has enough to do: the next [`BATCH`] entries (fewer at
    /// the end of the walk) are ready.
    fn batch_ready(&self) -> bool {
        let upto = self.end.unwrap_or(usize::MAX).min(self.next + BATCH);
        (self.next..upto).all(|i| self.slots[i % WINDOW].is_some())
    }
    /// Room for [`BATCH`] more entries.
    fn has_room_for_batch(&self) -> bool {
        self.reserved + BATCH <= self.next + WINDOW
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets `stop` when dropped, so that the other side never waits forever: the writer's
/// drops on return (error or not) or panic, a prepare thread's on panic only.
struct StopOnDrop<'a, I> {
    shared: &'a Shared<I>,
    always: bool,
}

impl<I> Drop for StopOnDrop<'_, I> {
    fn drop(&mut self) {
        if self.always || std::thread::panicking() {
            lock(&self.shared.window).stop = true;
            self.shared.ready.notify_all();
            self.shared.room.notify_all();
        }
    }
}

/// Prepares the entries of `walk` on `threads` threads, at most [`WINDOW`] entries ahead of
/// `emit`, which gets them on this thread in walk order. Returns `emit`'s first error;
/// the prepare threads stop taking entries as soon as `emit` fails.
fn prepare_parallel<I, F>(upper: &Path, walk: I, threads: usize, mut emit: F) -> Result<()>
where
    I: Iterator<Item = walkdir::Result<walkdir::DirEntry>> + Send,
    F: FnMut(Result<Ready>) -> Result<()>,
{
    let shared = Shared {
        source: Mutex::new((walk, 0)),
        window: Mutex::new(Window {
            slots: std::iter::repeat_with(|| None).take(WINDOW).collect(),
            next: 0,
            reserved: 0,
            end: None,
            stop: false,
            writer_waits: false,
            room_waiters: 0,
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    };
    std::thread::scope(|s| {
        // Before the spawns: a failed spawn (a panic) must stop the threads already running.
        let _stop = StopOnDrop {
            shared: &shared,
            always: true,
        };
        for _ in 0..threads {
            s.spawn(|| prepare_worker(upper, &shared));
        }
        loop {
            let (r, wake) = {
                let mut w = lock(&shared.window);
                loop {
                    let i = w.next % WINDOW;
                    if let Some(r) = w.slots[i].take() {
                        w.next += 1;
                        break (r, w.room_waiters > 0 && w.has_room_for_batch());
                    }
                    if w.end == Some(w.next) {
                        return Ok(());
                    }
                    if w.stop {
                        return Err(io_err(upper)(io::Error::other(
                            "a thread preparing entries panicked",
                        )));
                    }
                    w.writer_waits = true;
                    w = shared.ready.wait(w).unwrap_or_else(PoisonError::into_inner);
                    w.writer_waits = false;
                }
            };
            if wake {
                shared.room.notify_all();
            }
            emit(r)?;
        }
    })
}

/// A prepare thread: reserves room in the window, takes the next entry of the walk,
/// prepares it and puts it in its slot, until the walk ends or the writer stops.
fn prepare_worker<I>(upper: &Path, shared: &Shared<I>)
where
    I: Iterator<Item = walkdir::Result<walkdir::DirEntry>>,
{
    let _stop = StopOnDrop {
        shared,
        always: false,
    };
    let mut w = lock(&shared.window);
    loop {
        while !w.stop && w.end.is_none() && w.reserved >= w.next + WINDOW {
            w.room_waiters += 1;
            w = shared.room.wait(w).unwrap_or_else(PoisonError::into_inner);
            w.room_waiters -= 1;
        }
        if w.stop || w.end.is_some() {
            return;
        }
        w.reserved += 1;
        drop(w);
        let mut src = lock(&shared.source);
        let Some(ent) = src.0.next() else {
            let n = src.1;
            drop(src);
            let mut w = lock(&shared.window);
            w.end = Some(n);
            let wake = w.writer_waits && w.batch_ready();
            drop(w);
            if wake {
                shared.ready.notify_one();
            }
            return;
        };
        let i = src.1;
        src.1 += 1;
        drop(src);
        let r = prepare_entry(upper, ent);
        w = lock(&shared.window);
        w.slots[i % WINDOW] = Some(r);
        if w.writer_waits && w.batch_ready() {
            drop(w);
            shared.ready.notify_one();
            w = lock(&shared.window);
        }
    }
}

fn base_header(md: &std::fs::Metadata, ty: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// A PAX record (`SCHILY.xattr.NAME`, value).
type Pax = (String, Vec<u8>);

/// Where an entry's xattrs are read: its open file when it has one (no path lookup), else
/// its path (not following symlinks).
#[derive(Clone, Copy)]
enum Node<'a> {
    Path(&'a Path),
    File(&'a std::fs::File),
}

impl Node<'_> {
    /// One xattr; `None` when absent or unsupported.
    fn xget(self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let r = match self {
            Node::Path(p) => xattr::get(p, name),
            Node::File(f) => f.get_xattr(name),
        };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
            r => r,
        }
    }

    /// The xattrs to carry in the layer (everything but overlayfs' own), as PAX records.
    fn layer_xattrs(self) -> io::Result<Vec<Pax>> {
        let names = match self {
            Node::Path(p) => xattr::list(p),
            Node::File(f) => f.list_xattr(),
        };
        let names = match names {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for name in names {
            let Some(n) = name.to_str() else { continue };
            if n.starts_with(OVERLAY_XATTR_PREFIX) || n.starts_with(OVERLAY_USER_XATTR_PREFIX) {
                continue;
            }
            let v = match self {
                Node::Path(p) => xattr::get(p, &name)?,
                Node::File(f) => f.get_xattr(&name)?,
            };
            if let Some(v) = v {
                out.push((format!("SCHILY.xattr.{n}"), v));
            }
        }
        out.sort();
        Ok(out)
    }
}

fn append_pax<W: Write>(b: &mut tar::Builder<W>, recs: &[Pax]) -> io::Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn with_name(rel: &Path, name: &[u8]) -> PathBuf {
    let mut p = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    p.push(OsString::from_vec(name.to_vec()));
    p
}

/// What [`emit`] needs of one entry, gathered by [`prepare`] on any thread.
struct Prepared {
    md: std::fs::Metadata,
    /// The lookups after the lstat. Their error surfaces only if `emit` writes the entry
    /// itself: a later path of a hard-linked inode becomes a link without them.
    body: io::Result<Body>,
}

enum Body {
    Whiteout,
    Dir {
        xattrs: Vec<Pax>,
        opaque: bool,
    },
    Symlink {
        target: PathBuf,
        xattrs: Vec<Pax>,
    },
    File {
        xattrs: Vec<Pax>,
        /// The content when the file is small; a large file is streamed by `emit`.
        data: Option<Vec<u8>>,
    },
    /// A char or block device or a fifo.
    Special {
        ty: EntryType,
        xattrs: Vec<Pax>,
    },
    /// Sockets have no place in an image (docker skips them too).
    Socket,
}

/// Overlay whiteout: a 0:0 char device (possibly one of many hard links to a shared
/// whiteout inode).
fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// The syscalls of one entry (lstat, xattrs, readlink, small-file content): everything of
/// [`emit`]'s work that does not depend on the entries before it. `listed` is the type
/// the entry's directory listed it with.
fn prepare(path: &Path, listed: std::fs::FileType) -> io::Result<Prepared> {
    // Most entries of a layer are regular files: opened first and looked at through the
    // descriptor, they cost one path lookup instead of five. One that is not a regular
    // file any more or cannot be opened takes the path route, which reports it as before.
    if listed.is_file() {
        if let Ok(f) = open_file(path) {
            let md = f.metadata()?;
            if md.is_file() {
                let body = prepare_file(Node::File(&f), &md, || Ok(&f));
                return Ok(Prepared { md, body });
            }
        }
    }
    let md = std::fs::symlink_metadata(path)?;
    let body = prepare_body(path, &md);
    Ok(Prepared { md, body })
}

fn prepare_body(path: &Path, md: &std::fs::Metadata) -> io::Result<Body> {
    let ft = md.file_type();
    let node = Node::Path(path);
    if is_whiteout(md) {
        return Ok(Body::Whiteout);
    }
    if ft.is_dir() {
        if node.xget("trusted.overlay.redirect")?.is_some()
            || node.xget("user.overlay.redirect")?.is_some()
        {
            return Err(io::Error::other(
                "renamed lower directory (overlay redirect_dir) is not supported; \
                 mount overlay with redirect_dir=off",
            ));
        }
        let xattrs = node.layer_xattrs()?;
        // `y` only: newer kernels also use `x` ("has xattr whiteouts"), which is not opaque.
        let opaque = node.xget(OVERLAY_OPAQUE)?.as_deref() == Some(b"y")
            || node.xget(OVERLAY_USER_OPAQUE)?.as_deref() == Some(b"y");
        return Ok(Body::Dir { xattrs, opaque });
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(path)?;
        let xattrs = node.layer_xattrs()?;
        return Ok(Body::Symlink { target, xattrs });
    }
    if ft.is_file() {
        return prepare_file(node, md, || open_file(path));
    }
    let ty = if ft.is_char_device() {
        EntryType::Char
    } else if ft.is_block_device() {
        EntryType::Block
    } else if ft.is_fifo() {
        EntryType::Fifo
    } else {
        return Ok(Body::Socket);
    };
    let xattrs = node.layer_xattrs()?;
    Ok(Body::Special { ty, xattrs })
}

/// A regular file's checks, xattrs and (when small) content, read through `open`.
fn prepare_file<R: Read>(
    node: Node<'_>,
    md: &std::fs::Metadata,
    open: impl FnOnce() -> io::Result<R>,
) -> io::Result<Body> {
    if node.xget("trusted.overlay.metacopy")?.is_some()
        || node.xget("user.overlay.metacopy")?.is_some()
    {
        return Err(io::Error::other(
            "metadata-only copy-up (overlay metacopy) is not supported; \
             mount overlay with metacopy=off",
        ));
    }
    let data = if md.len() <= READ_AHEAD_MAX {
        Some(read_whole(open()?, md.len())?)
    } else {
        None
    };
    let xattrs = node.layer_xattrs()?;
    Ok(Body::File { xattrs, data })
}

/// Opens a regular file for reading. `O_NONBLOCK`: an entry replaced by a fifo since it
/// was listed or stat'ed must not block the open (it has no effect on a regular file).
fn open_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// All of `f`, which must be `len` bytes long (its lstat size): a file that changed size
/// since would otherwise corrupt the tar.
fn read_whole(f: impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len as usize + 1);
    f.take(len + 1).read_to_end(&mut data)?;
    match (data.len() as u64).cmp(&len) {
        std::cmp::Ordering::Equal => Ok(data),
        std::cmp::Ordering::Less => Err(shrank()),
        std::cmp::Ordering::Greater => Err(io::Error::other("file grew while being archived")),
    }
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while being archived",
    )
}

/// Writes one prepared entry (on the writing thread, in walk order).
fn emit<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
    prep: Prepared,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let md = &prep.md;
    let ft = md.file_type();

    // Hard links within the layer: every later path of an inode points at the first one.
    // (A whiteout is one whatever its link count, a directory has no hard links.)
    if !ft.is_dir() && !is_whiteout(md) && md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        if let Some(first) = links.get(&key) {
            let mut h = base_header(md, EntryType::Link);
            return b.append_link(&mut h, rel, first);
        }
        links.insert(key, rel.to_path_buf());
    }

    match prep.body? {
        Body::Whiteout => {
            // → empty regular `.wh.NAME`.
            let mut name = WH_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(rel.file_name().unwrap_or_default().as_bytes());
            let mut h = base_header(md, EntryType::Regular);
            h.set_mode(0o600);
            b.append_data(&mut h, with_name(rel, &name), io::empty())
        }
        Body::Dir { xattrs, opaque } => {
            append_pax(b, &xattrs)?;
            let mut h = base_header(md, EntryType::Directory);
            let mut name = rel.as_os_str().as_bytes().to_vec();
            name.push(b'/');
            b.append_data(&mut h, OsString::from_vec(name), io::empty())?;
            if opaque {
                let mut h = base_header(md, EntryType::Regular);
                h.set_mode(md.mode() & 0o777);
                b.append_data(&mut h, rel.join(WH_OPAQUE), io::empty())?;
            }
            Ok(())
        }
        Body::Symlink { target, xattrs } => {
            append_pax(b, &xattrs)?;
            let mut h = base_header(md, EntryType::Symlink);
            b.append_link(&mut h, rel, target)
        }
        Body::File { xattrs, data } => {
            let len = md.len();
            // A large file is opened before anything of its entry is written, as all were.
            let large = match data {
                None => Some(open_file(path)?),
                Some(_) => None,
            };
            append_pax(b, &xattrs)?;
            let mut h = base_header(md, EntryType::Regular);
            h.set_size(len);
            match large {
                Some(f) => {
                    // tar copies through an 8 KiB buffer: read the file in larger chunks
                    // (an eighth of the syscalls; ~8% faster on a 200 MiB file).
                    let data = ExactReader {
                        inner: io::BufReader::with_capacity(STREAM_CHUNK, f).take(len),
                        left: len,
                    };
                    b.append_data(&mut h, rel, data)
                }
                None => b.append_data(&mut h, rel, data.unwrap_or_default().as_slice()),
            }
        }
        Body::Special { ty, xattrs } => {
            append_pax(b, &xattrs)?;
            let mut h = base_header(md, ty);
            if ty != EntryType::Fifo {
                let rdev = md.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
            }
            b.append_data(&mut h, rel, io::empty())
        }
        Body::Socket => Ok(()),
    }
}

/// Reads exactly `left` bytes or fails (a file that shrank while being archived would
/// otherwise corrupt the tar).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(shrank());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            true
        } else {
            eprintln!("skipping the privileged part: needs root (mknod, trusted.* xattrs, chown)");
            false
        }
    }

    /// Deterministic bytes (xorshift), so that the tree and its tar never change.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// An upper dir holding every kind of entry `write_upper` handles, with fixed contents,
    /// modes, owners and mtimes: `files` small files spread over five dirs (more than the
    /// threading threshold and the prepare window), files around the read-ahead limit, a
    /// big file, nested dirs, symlinks, hard links (small and big), long names, a user
    /// xattr, a fifo and, as root, a whiteout and an opaque dir.
    fn make_tree(up: &Path, files: usize, privileged: bool) {
        for d in 0..5 {
            fs::create_dir(up.join(format!("d{d}"))).unwrap();
        }
        for i in 0..files {
            let len = (i * 977) % 9000;
            fs::write(up.join(format!("d{}/f{i:04}", i % 5)), bytes(i as u64, len)).unwrap();
        }
        fs::create_dir_all(up.join("a/b/c")).unwrap();
        fs::write(up.join("a/b/c/deep"), b"deep").unwrap();
        fs::write(up.join("empty"), b"").unwrap();
        fs::write(up.join("at-limit"), bytes(1, 64 << 10)).unwrap();
        fs::write(up.join("over-limit"), bytes(2, (64 << 10) + 1)).unwrap();
        fs::write(up.join("big"), bytes(3, 3 << 20)).unwrap();
        fs::hard_link(up.join("big"), up.join("d4/big-link")).unwrap();
        fs::hard_link(up.join("d0/f0000"), up.join("d3/small-link")).unwrap();
        fs::hard_link(up.join("d0/f0000"), up.join("z-small-link")).unwrap();
        std::os::unix::fs::symlink("d0/f0005", up.join("sym")).unwrap();
        std::os::unix::fs::symlink("../nowhere", up.join("a/dangling")).unwrap();
        let long_dir = "D".repeat(120);
        fs::create_dir(up.join(&long_dir)).unwrap();
        fs::write(up.join(&long_dir).join("n".repeat(150)), b"long").unwrap();
        xattr::set(up.join("d1/f0001"), "user.note", b"hi").unwrap();
        xattr::set(up.join("d2"), "user.dir", b"d").unwrap();
        nix::unistd::mkfifo(&up.join("fifo"), nix::sys::stat::Mode::S_IRUSR).unwrap();
        if privileged {
            nix::sys::stat::mknod(
                &up.join("d1/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            fs::create_dir(up.join("opq")).unwrap();
            xattr::set(up.join("opq"), OVERLAY_OPAQUE, b"y").unwrap();
            xattr::set(up.join("opq"), "trusted.overlay.origin", b"o").unwrap();
            fs::write(up.join("opq/new"), b"n").unwrap();
        }
        // Fixed metadata, contents first so that a directory's mtime is set last.
        let t = nix::sys::time::TimeSpec::new(1_577_836_800, 0);
        for ent in walkdir::WalkDir::new(up).contents_first(true) {
            let ent = ent.unwrap();
            let p = ent.path();
            let ft = ent.file_type();
            if privileged {
                std::os::unix::fs::lchown(p, Some(0), Some(0)).unwrap();
            }
            if !ft.is_symlink() {
                let mode = if ft.is_dir() { 0o755 } else { 0o644 };
                fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
            }
            nix::sys::stat::utimensat(
                None,
                p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }

    fn diff_id(up: &Path, threads: usize) -> String {
        let w = write_upper_with(up, kiln_oci::Sha256Writer::new(io::sink()), threads).unwrap();
        w.finish().1
    }

    fn tar_bytes(up: &Path, threads: usize) -> Vec<u8> {
        write_upper_with(up, Vec::new(), threads).unwrap()
    }

    fn err_string(up: &Path, threads: usize) -> String {
        match write_upper_with(up, io::sink(), threads) {
            Ok(_) => panic!("no error with {threads} threads"),
            Err(e) => e.to_string(),
        }
    }

    /// The layer of a fixed tree, pinned (computed before `write_upper` had threads): any
    /// change to the tar bytes changes every diff id (and so every cache key downstream).
    #[test]
    fn fixed_tree_has_the_pinned_diff_id() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 400, true);
        for threads in [0, 1, 2, 4] {
            assert_eq!(
                diff_id(dir.path(), threads),
                "sha256:7d636f33d0cf8bbf39d6099e1c7c677d8a41526baac24d1a0afc2a5cf73b6c79",
                "{threads} threads"
            );
        }
        assert_eq!(
            diff_id(dir.path(), 0),
            write_upper(dir.path(), kiln_oci::Sha256Writer::new(io::sink()))
                .unwrap()
                .finish()
                .1
        );
    }

    /// Many more entries than the window, so that the slots are reused many times.
    #[test]
    fn parallel_tar_is_byte_identical_to_sequential() {
        let root = is_root();
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 1000, root);
        let seq = tar_bytes(dir.path(), 0);
        for threads in [1, 2, 3, 4, 8] {
            assert!(
                tar_bytes(dir.path(), threads) == seq,
                "the tar with {threads} threads differs from the sequential one"
            );
        }

        // And the tar holds what the tree holds.
        let mut ar = tar::Archive::new(seq.as_slice());
        let mut seen = HashMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let ty = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.insert(name, (ty, data.len()));
        }
        assert_eq!(seen.len(), 1000 + 21 + if root { 4 } else { 0 });
        assert_eq!(seen["at-limit"], (EntryType::Regular, 64 << 10));
        assert_eq!(seen["over-limit"], (EntryType::Regular, (64 << 10) + 1));
        assert_eq!(seen["big"], (EntryType::Regular, 3 << 20));
        assert_eq!(seen["d4/big-link"], (EntryType::Link, 0));
        assert_eq!(seen["d3/small-link"], (EntryType::Link, 0));
        assert_eq!(seen["sym"].0, EntryType::Symlink);
        let long = format!("{}/{}", "D".repeat(120), "n".repeat(150));
        assert_eq!(seen[&long], (EntryType::Regular, 4));
        if root {
            assert_eq!(seen["d1/.wh.gone"], (EntryType::Regular, 0));
            assert_eq!(seen["opq/.wh..wh..opq"], (EntryType::Regular, 0));
        }
    }

    /// A tree too small for threads is written the same way whatever `threads` says.
    #[test]
    fn small_tree_is_the_same_with_threads() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 10, false);
        assert_eq!(tar_bytes(dir.path(), 4), tar_bytes(dir.path(), 0));
    }

    /// Trees around the threading threshold, the batch and the window size (a flat dir:
    /// `n` entries in all).
    #[test]
    fn window_edges_are_the_same_as_sequential() {
        let dir = tempfile::tempdir().unwrap();
        let mut made = 0;
        for n in [
            PARALLEL_MIN_ENTRIES - 1,
            PARALLEL_MIN_ENTRIES,
            PARALLEL_MIN_ENTRIES + BATCH + 1,
            WINDOW - 1,
            WINDOW,
            WINDOW + 1,
            2 * WINDOW + BATCH - 1,
        ] {
            for i in made..n {
                fs::write(dir.path().join(format!("f{i:04}")), bytes(i as u64, i)).unwrap();
            }
            made = n;
            let seq = tar_bytes(dir.path(), 0);
            for threads in [1, 2, 5] {
                assert!(
                    tar_bytes(dir.path(), threads) == seq,
                    "{n} entries, {threads} threads"
                );
            }
        }
    }

    /// An unsupported overlay xattr deep in a big tree fails the same way with threads as
    /// without, naming the first bad path in walk order (not the first one prepared).
    #[test]
    fn overlay_errors_deep_in_a_big_tree_name_the_first_path() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        make_tree(up, 1000, false);
        // `user.overlay.*` needs no root and is checked like `trusted.overlay.*`.
        let file = up.join("d3/f0903");
        xattr::set(&file, "user.overlay.metacopy", b"").unwrap();
        xattr::set(up.join("d4"), "user.overlay.redirect", b"/x").unwrap();
        let expect = format!(
            "{}: metadata-only copy-up (overlay metacopy) is not supported; \
             mount overlay with metacopy=off",
            file.display()
        );
        for threads in [0, 1, 2, 4] {
            assert_eq!(err_string(up, threads), expect, "{threads} threads");
        }

        xattr::remove(&file, "user.overlay.metacopy").unwrap();
        let expect = format!(
            "{}: renamed lower directory (overlay redirect_dir) is not supported; \
             mount overlay with redirect_dir=off",
            up.join("d4").display()
        );
        for threads in [0, 1, 2, 4] {
            assert_eq!(err_string(up, threads), expect, "{threads} threads");
        }
    }

    /// Accepts `left` bytes, then fails (an exporter whose reader went away).
    struct FailAfter {
        left: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A failing writer ends the archive with its error (naming the entry being written),
    /// and the prepare threads stop instead of waiting for room forever.
    #[test]
    fn a_failing_writer_stops_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 1000, false);
        for left in [0, 100_000, 1 << 20] {
            for threads in [0, 1, 4] {
                let e = write_upper_with(dir.path(), FailAfter { left }, threads)
                    .err()
                    .expect("the writer fails");
                let Error::Io { path, source } = &e else {
                    panic!("{e}")
                };
                assert_eq!(source.kind(), io::ErrorKind::BrokenPipe, "{e}");
                assert!(path.starts_with(dir.path()), "{e}");
            }
        }
    }

    /// A file whose size is not its lstat size fails instead of corrupting the tar, read
    /// ahead (small) or streamed (large).
    #[test]
    fn read_ahead_and_streamed_files_check_the_size() {
        let mut streamed = ExactReader {
            inner: io::BufReader::with_capacity(STREAM_CHUNK, &b"01234"[..]).take(10),
            left: 10,
        };
        let e = io::copy(&mut streamed, &mut io::sink()).unwrap_err();
        assert_eq!(e.to_string(), "file shrank while being archived");
        let mut streamed = ExactReader {
            inner: io::BufReader::with_capacity(STREAM_CHUNK, &b"0123456789"[..]).take(5),
            left: 5,
        };
        assert_eq!(io::copy(&mut streamed, &mut io::sink()).unwrap(), 5);

        assert_eq!(read_whole(&b"0123456789"[..], 10).unwrap(), b"0123456789");
        assert_eq!(read_whole(&b""[..], 0).unwrap(), b"");
        let e = read_whole(&b"01234"[..], 10).unwrap_err();
        assert_eq!(e.to_string(), "file shrank while being archived");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = read_whole(&b"0123456789"[..], 5).unwrap_err();
        assert_eq!(e.to_string(), "file grew while being archived");
    }
}

/// Times `write_upper` into a sha256 sink, the way `Store::commit_upper` computes a diff id:
/// sequential (no prepare threads), then with 1, 2 and 4 threads and the default count.
/// Run with `cargo test --release -p kiln-cache --lib bench_write_upper -- --ignored
/// --nocapture`; the tree is `$KILN_HASHBENCH` or `/var/tmp/hashbench/src` (made by
/// `bench/workloads/big-context/gen.py /var/tmp/hashbench`).
#[cfg(test)]
mod bench {
    use super::*;

    fn time(tree: &Path, threads: Option<usize>, runs: usize, id: &str) -> String {
        let mut times = Vec::new();
        for _ in 0..runs {
            let w = kiln_oci::Sha256Writer::new(io::sink());
            let t = std::time::Instant::now();
            let w = match threads {
                Some(n) => write_upper_with(tree, w, n),
                None => write_upper(tree, w),
            };
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(w.unwrap().finish().1, id);
        }
        let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t * 1e3)).collect();
        times.sort_by(f64::total_cmp);
        format!(
            "median {:.0} ms, min {:.0} ms (runs: {} ms)",
            times[runs / 2] * 1e3,
            times[0] * 1e3,
            ms.join(" ")
        )
    }

    #[test]
    #[ignore = "benchmark: needs a generated tree, run in release"]
    fn bench_write_upper() {
        let tree = std::env::var_os("KILN_HASHBENCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/hashbench/src"));
        assert!(tree.is_dir(), "no tree at {}", tree.display());
        // Warm the page cache and the dentry/inode caches first.
        let id = write_upper_with(&tree, kiln_oci::Sha256Writer::new(io::sink()), 0)
            .unwrap()
            .finish()
            .1;
        eprintln!("{} → {id}", tree.display());
        for (name, threads) in [
            ("sequential", Some(0)),
            ("1 thread", Some(1)),
            ("2 threads", Some(2)),
            ("4 threads", Some(4)),
            ("default", None),
        ] {
            // `KILN_HASHBENCH_ONLY=2` times 2 threads only (`s` sequential, `d` default).
            if let Ok(only) = std::env::var("KILN_HASHBENCH_ONLY") {
                let key = threads.map_or("d".to_string(), |n| n.to_string());
                if only != key && !(only == "s" && threads == Some(0)) {
                    continue;
                }
            }
            eprintln!("{name:>10}: {}", time(&tree, threads, 5, &id));
        }
    }
}
