//! A container's output: `ROOT/containers/<id>/<id>-json.log` in docker's json-file format,
//! written by whoever supervises the container (the shim of a detached one, `kiln run` of a
//! foreground one) and read by `kiln logs`.
//!
//! One record per line: `{"log":"…\n","stream":"stdout","time":"…"}`, where `log` is the
//! output up to and with its newline (without one when the line had not ended yet: the
//! stream's next record continues it), `stream` is `stdout` or `stderr`, and `time` is RFC
//! 3339 with nanoseconds (UTC). Output that is not UTF-8 is stored with replacement
//! characters, as docker's json-file does. With `--log-opt max-size` the file is rotated as
//! docker rotates it (`<id>-json.log.1`, `.2`, … up to `max-file` files in all), and `logs`
//! reads the rotated files first, oldest first.
//!
//! Containers made by an older kiln have their output in `container.log` in the CRI format
//! (`TIME STREAM F|P CONTENT`); it is still read, before the json-file log.

mod config;
mod format;
mod time;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{LogConfig, LogConfigError, LogDriver};
pub use time::{parse_log_time, LogTimeError};
pub(crate) use writer::LogWriter;

use crate::container::{io_err, Container, Status};
use crate::{Error, Result};
use format::{Entry, Format};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name of the CRI log of containers made by an older kiln.
const LEGACY_LOG_FILE: &str = "container.log";

/// RFC 3339 with nanoseconds, UTC (`2024-05-01T12:00:00.123456789Z`).
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// `kiln logs` options.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// `-f`: keep printing new output until the container ends.
    pub follow: bool,
    /// `--tail N`: only the last N records (lines) at first.
    pub tail: Option<usize>,
    /// `-t`: prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// `--details`: docker's extra attributes before each line (kiln records none: an empty
    /// list and its separating space, as docker prints it then).
    pub details: bool,
    /// `--since`: only records from this time on.
    pub since: Option<SystemTime>,
    /// `--until`: only records up to this time (and `-f` stops then).
    pub until: Option<SystemTime>,
}

/// Where the log ends now: output written from here on is after it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogMark {
    /// The current file's inode (`None`: there was none).
    ino: Option<u64>,
    offset: u64,
}

/// Copies records to `stdout`/`stderr` by stream.
struct Printer<'w> {
    stdout: &'w mut dyn Write,
    stderr: &'w mut dyn Write,
    timestamps: bool,
    details: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    /// Whether each stream is in the middle of a line (no prefix before a continuation).
    partial: [bool; 2],
    /// A record after `until` was seen: nothing more is printed.
    done: bool,
}

impl Printer<'_> {
    fn print(&mut self, e: &Entry) -> io::Result<()> {
        if self.since.is_some() || self.until.is_some() {
            if let Some(t) = e.time() {
                if self.until.is_some_and(|u| t > u) {
                    self.done = true;
                    return Ok(());
                }
                if self.since.is_some_and(|s| t < s) {
                    return Ok(());
                }
            }
        }
        let i = usize::from(e.stderr);
        let out: &mut dyn Write = if e.stderr {
            &mut *self.stderr
        } else {
            &mut *self.stdout
        };
        if !self.partial[i] {
            if self.timestamps {
                out.write_all(e.time.as_bytes())?;
                out.write_all(b" ")?;
            }
            if self.details {
                out.write_all(b" ")?;
            }
        }
        out.write_all(&e.content)?;
        self.partial[i] = !e.full();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()?;
        self.stderr.flush()
    }
}

/// The records of the complete lines of `buf`, and how many bytes those lines took.
fn entries(buf: &[u8], format: Format) -> (Vec<Entry<'_>>, usize) {
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let entries = buf[..complete]
        .split(|&b| b == b'\n')
        .filter_map(|line| format::parse(format, line))
        .collect();
    (entries, complete)
}

/// Prints the complete records in `buf` and returns how many bytes they took.
fn print_records(buf: &[u8], format: Format, printer: &mut Printer) -> io::Result<usize> {
    let (entries, used) = entries(buf, format);
    for e in &entries {
        if printer.done {
            break;
        }
        printer.print(e)?;
    }
    Ok(used)
}

fn write_err(e: io::Error) -> Error {
    Error::Io {
        path: PathBuf::from("<output>"),
        source: e,
    }
}

/// Reads `path` from `offset` to its end (nothing when it is missing).
fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
            f.read_to_end(&mut buf).map_err(io_err(path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    Ok(buf)
}

/// The file being followed.
struct Followed {
    file: File,
    ino: u64,
    offset: u64,
}

impl Container {
    /// The json-file log's path (whether it exists or not).
    fn json_log(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.config.id))
    }

    /// The path of the log (`None` with the `none` driver, and for a container whose output
    /// was not recorded: one run in the foreground by an older kiln, or with `-t`).
    pub fn log_path(&self) -> Option<PathBuf> {
        if self.config.log.driver == LogDriver::None {
            return None;
        }
        let path = self.json_log();
        let recorded =
            self.config.detach || path.exists() || self.dir.join(LEGACY_LOG_FILE).exists();
        recorded.then_some(path)
    }

    /// The log files to read, oldest first: an older kiln's CRI log, the rotated json-file
    /// logs (`.N` … `.1`), the current one.
    fn log_files(&self) -> Vec<(PathBuf, Format)> {
        let mut files = Vec::new();
        let legacy = self.dir.join(LEGACY_LOG_FILE);
        if legacy.exists() {
            files.push((legacy, Format::Cri));
        }
        let current = self.json_log();
        let mut rotated: Vec<PathBuf> = (1..self.config.log.max_file)
            .map(|n| writer::rotated(&current, n))
            .take_while(|p| p.exists())
            .collect();
        rotated.reverse();
        files.extend(rotated.into_iter().map(|p| (p, Format::Json)));
        files.push((current, Format::Json));
        files
    }

    /// Where the log ends now ([`Container::logs_from`] prints what is written after it).
    pub(crate) fn log_mark(&self) -> LogMark {
        std::fs::metadata(self.json_log()).map_or(LogMark::default(), |m| LogMark {
            ino: Some(m.ino()),
            offset: m.len(),
        })
    }

    /// The writer of the container's log, for its supervisor.
    pub(crate) fn log_writer(&self) -> Result<LogWriter> {
        LogWriter::create(&self.json_log(), &self.config.log)
    }

    /// Prints the container's output, stdout records to `stdout` and stderr records to
    /// `stderr`; with [`LogOptions::follow`], until the container has ended (or is
    /// removed, or `until` has passed).
    pub fn logs(
        &self,
        opts: &LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        self.logs_from(None, opts, stdout, stderr)
    }

    /// [`Container::logs`] of everything, or (with a `mark`) of what was written after it.
    pub(crate) fn logs_from(
        &self,
        mark: Option<LogMark>,
        opts: &LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        if self.config.log.driver == LogDriver::None {
            return Err(Error::LogsNotSupported);
        }
        let path = self
            .log_path()
            .ok_or_else(|| Error::NoLogs(self.config.id.clone()))?;
        let mut printer = Printer {
            stdout,
            stderr,
            timestamps: opts.timestamps,
            details: opts.details,
            since: opts.since,
            until: opts.until,
            partial: [false; 2],
            done: false,
        };
        // The current file is opened first: what it holds is read through this handle, and
        // a rotation after this is seen when following.
        let mut followed = File::open(&path).ok().and_then(|file| {
            let ino = file.metadata().ok()?.ino();
            Some(Followed {
                file,
                ino,
                offset: 0,
            })
        });
        let files = match mark {
            Some(_) => vec![],
            None => self.log_files(),
        };
        let mut bufs = Vec::new();
        for (p, format) in files.iter().filter(|(p, _)| *p != path) {
            bufs.push((read_from(p, 0)?, *format));
        }
        let mut current = Vec::new();
        if let Some(f) = &mut followed {
            if let Some(LogMark {
                ino: Some(ino),
                offset,
            }) = mark
            {
                if ino == f.ino {
                    f.offset = offset;
                }
            }
            f.file
                .seek(SeekFrom::Start(f.offset))
                .map_err(io_err(&path))?;
            f.file.read_to_end(&mut current).map_err(io_err(&path))?;
        }
        // Only complete records: a record being written is printed once it is whole.
        let (last, used) = entries(&current, Format::Json);
        if let Some(f) = &mut followed {
            f.offset += used as u64;
        }
        let mut all: Vec<Entry> = bufs
            .iter()
            .flat_map(|(b, format)| entries(b, *format).0)
            .chain(last)
            .collect();
        if let Some(n) = opts.tail {
            all.drain(..all.len().saturating_sub(n));
        }
        for e in &all {
            if printer.done {
                break;
            }
            printer.print(e).map_err(write_err)?;
        }
        printer.flush().map_err(write_err)?;
        if !opts.follow || printer.done {
            return Ok(());
        }
        drop(all);
        self.follow(&path, followed, &mut printer)
    }

    /// The file written after the one with inode `ino` (rotated away from `path`): the
    /// one rotated after it, or the current one; the oldest left when it was dropped.
    fn after_rotation(&self, path: &Path, ino: u64) -> PathBuf {
        let mut newer = path.to_path_buf();
        for n in 1..=self.config.log.max_file {
            let p = writer::rotated(path, n);
            match std::fs::metadata(&p) {
                Ok(m) if m.ino() == ino => break,
                Ok(_) => newer = p,
                Err(_) => break,
            }
        }
        newer
    }

    /// `logs -f` once what was there is printed: new records as they come, across
    /// rotations, until the container has ended.
    fn follow(
        &self,
        path: &Path,
        mut followed: Option<Followed>,
        printer: &mut Printer,
    ) -> Result<()> {
        let mut buf = Vec::new();
        let mut me = self.clone();
        let mut idle = Duration::from_millis(10);
        loop {
            // Whether it ended is read before the last read of the file: what it wrote
            // before ending is then printed.
            let ended = me.reload().is_err()
                || me.refresh().is_err()
                || me.state.status != Status::Running
                || printer.until.is_some_and(|u| SystemTime::now() > u);
            // The file at the path now: another one after a rotation (read after this, the
            // one followed then has everything written to it).
            let now_ino = std::fs::metadata(path).ok().map(|m| m.ino());
            let mut grew = false;
            if let Some(f) = &mut followed {
                f.file
                    .seek(SeekFrom::Start(f.offset))
                    .map_err(io_err(path))?;
                let n = f.file.read_to_end(&mut buf).map_err(io_err(path))?;
                f.offset += n as u64;
                grew = n > 0;
                let used = print_records(&buf, Format::Json, printer).map_err(write_err)?;
                buf.drain(..used);
                printer.flush().map_err(write_err)?;
                if printer.done {
                    return Ok(());
                }
            }
            let rotated = now_ino.is_some() && now_ino != followed.as_ref().map(|f| f.ino);
            if rotated {
                buf.clear();
                let next = match &followed {
                    Some(f) => self.after_rotation(path, f.ino),
                    None => path.to_path_buf(),
                };
                followed = File::open(next).ok().and_then(|file| {
                    let ino = file.metadata().ok()?.ino();
                    Some(Followed {
                        file,
                        ino,
                        offset: 0,
                    })
                });
                continue;
            }
            if ended {
                return Ok(());
            }
            idle = if grew {
                Duration::from_millis(10)
            } else {
                (idle * 2).min(Duration::from_millis(100))
            };
            std::thread::sleep(idle);
        }
    }
}

/// The foreground container's output on its way to the caller's stdout and stderr and
/// into its log ([`tee`]).
pub(crate) struct Tee {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Tee {
    /// Waits until all output is printed and recorded (the sandbox's processes are gone:
    /// the pipes' write ends are closed).
    pub(crate) fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// For `kiln run` without `-d` or `-t`: the container's stdout and stderr as pipes (as
/// docker gives them) copied by a thread each to the caller's and into the log. `None` with
/// the `none` driver: the output goes to the caller's directly, as before logs existed.
///
/// When the caller's stdout is a pipe that was closed (`kiln run IMAGE yes | head -1`), the
/// copying of that stream stops and its pipe is closed: the container's next write fails
/// (EPIPE, SIGPIPE) as if it had written to the closed pipe itself.
pub(crate) fn tee(c: &Container, stdin: bool) -> Result<Option<(kiln_executor::Output, Tee)>> {
    if c.config.log.driver == LogDriver::None {
        return Ok(None);
    }
    let log = std::sync::Arc::new(std::sync::Mutex::new(c.log_writer()?));
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
            path: PathBuf::from("<pipe>"),
            source: e.into(),
        })
    };
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let copy = |read: std::os::fd::OwnedFd, stream: kiln_executor::Stream| {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut from = File::from(read);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if let Ok(mut log) = log.lock() {
                    // A full disk loses output, not the container.
                    let _ = log.write(stream, &buf[..n]);
                }
                let printed = match stream {
                    kiln_executor::Stream::Stdout => {
                        let mut o = io::stdout().lock();
                        o.write_all(&buf[..n]).and_then(|()| o.flush())
                    }
                    kiln_executor::Stream::Stderr => io::stderr().lock().write_all(&buf[..n]),
                };
                if matches!(&printed, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
                    break;
                }
            }
        })
    };
    let threads = vec![
        copy(out_read, kiln_executor::Stream::Stdout),
        copy(err_read, kiln_executor::Stream::Stderr),
    ];
    let output = kiln_executor::Output::Given {
        stdin,
        stdout: out_write,
        stderr: err_write,
    };
    Ok(Some((output, Tee { threads })))
}
