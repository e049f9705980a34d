//! A detached container's output: `ROOT/containers/<id>/container.log`, in the CRI log
//! format (see the crate docs), written by the shim and read by `kiln logs`.
//!
//! One record per line: `TIMESTAMP STREAM TAG CONTENT\n`, where TIMESTAMP is RFC 3339 with
//! nanoseconds (UTC), STREAM is `stdout` or `stderr`, TAG is `F` for a full line (CONTENT
//! was followed by a newline, which the record does not repeat) or `P` for a partial one
//! (output that did not end in a newline yet; the next records of the stream continue it).
//! CONTENT is the raw bytes, whatever they are: only newlines delimit records.

use crate::container::{io_err, Container, Status};
use crate::{Error, Result};
use kiln_executor::Stream;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name of the log in the container directory.
pub const LOG_FILE: &str = "container.log";

/// RFC 3339 with nanoseconds, UTC (`2024-05-01T12:00:00.123456789Z`).
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Appends output to a container's log.
pub(crate) struct LogWriter {
    file: File,
}

impl LogWriter {
    pub(crate) fn create(path: &Path) -> Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(LogWriter { file })
    }

    /// Writes `data` from `stream` as records (one write per chunk).
    pub(crate) fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let time = rfc3339_nanos(SystemTime::now());
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut rest = data;
        while !rest.is_empty() {
            let (line, tag, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], "F", &rest[i + 1..]),
                None => (rest, "P", &rest[rest.len()..]),
            };
            out.extend_from_slice(format!("{time} {stream} {tag} ").as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
            rest = next;
        }
        self.file.write_all(&out)
    }
}

/// A parsed record.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    time: &'a [u8],
    stderr: bool,
    full: bool,
    content: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = parts.next()?;
    let stderr = match parts.next()? {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stderr,
        full,
        content: parts.next().unwrap_or_default(),
    })
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
}

/// Copies records to `stdout`/`stderr` by stream.
struct Printer<'w> {
    stdout: &'w mut dyn Write,
    stderr: &'w mut dyn Write,
    timestamps: bool,
    /// Whether each stream is in the middle of a line (no timestamp before a continuation).
    partial: [bool; 2],
}

impl Printer<'_> {
    fn print(&mut self, r: &Record) -> io::Result<()> {
        let i = usize::from(r.stderr);
        let out: &mut dyn Write = if r.stderr {
            &mut *self.stderr
        } else {
            &mut *self.stdout
        };
        if self.timestamps && !self.partial[i] {
            out.write_all(r.time)?;
            out.write_all(b" ")?;
        }
        out.write_all(r.content)?;
        if r.full {
            out.write_all(b"\n")?;
        }
        self.partial[i] = !r.full;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()?;
        self.stderr.flush()
    }
}

/// Prints the complete records in `buf` and returns how many bytes they took.
fn print_records(buf: &[u8], printer: &mut Printer) -> io::Result<usize> {
    let mut used = 0;
    while let Some(n) = buf[used..].iter().position(|&b| b == b'\n') {
        if let Some(r) = parse(&buf[used..used + n]) {
            printer.print(&r)?;
        }
        used += n + 1;
    }
    Ok(used)
}

impl Container {
    /// The path of the log (`None` for a container run in the foreground: its output went
    /// to the terminal and was not recorded).
    pub fn log_path(&self) -> Option<PathBuf> {
        let path = self.dir.join(LOG_FILE);
        // A foreground container started again by `kiln start` has a log from then on.
        (self.config.detach || path.exists()).then_some(path)
    }

    /// The log's current length: where output written from now on starts.
    pub(crate) fn log_len(&self) -> u64 {
        std::fs::metadata(self.dir.join(LOG_FILE)).map_or(0, |m| m.len())
    }

    /// Prints the container's output, stdout records to `stdout` and stderr records to
    /// `stderr`; with [`LogOptions::follow`], until the container has ended (or is
    /// removed).
    pub fn logs(
        &self,
        opts: &LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        self.logs_from(0, opts, stdout, stderr)
    }

    /// [`Container::logs`] of the records from byte `from` of the log on.
    pub(crate) fn logs_from(
        &self,
        from: u64,
        opts: &LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        let path = self
            .log_path()
            .ok_or_else(|| Error::NoLogs(self.config.id.clone()))?;
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut printer = Printer {
            stdout,
            stderr,
            timestamps: opts.timestamps,
            partial: [false; 2],
        };
        let write_err = |e: io::Error| Error::Io {
            path: PathBuf::from("<output>"),
            source: e,
        };
        let mut buf = Vec::new();
        if let Some(f) = &mut file {
            f.seek(SeekFrom::Start(from)).map_err(io_err(&path))?;
            f.read_to_end(&mut buf).map_err(io_err(&path))?;
        }
        // Only complete records: a record being written is printed once it is whole.
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let start = match opts.tail {
            None => 0,
            Some(n) => {
                let mut start = complete;
                let mut count = 0;
                while count < n && start > 0 {
                    start = buf[..start - 1]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    count += 1;
                }
                start
            }
        };
        print_records(&buf[start..complete], &mut printer).map_err(write_err)?;
        printer.flush().map_err(write_err)?;
        if !opts.follow {
            return Ok(());
        }
        buf.drain(..complete);
        let mut offset = from + complete as u64 + buf.len() as u64;
        let mut me = self.clone();
        let mut idle = Duration::from_millis(10);
        loop {
            // Whether it ended is read before the last read of the file: what it wrote
            // before ending is then printed.
            let ended =
                me.reload().is_err() || me.refresh().is_err() || me.state.status != Status::Running;
            if file.is_none() {
                file = File::open(&path).ok();
            }
            let mut grew = false;
            if let Some(f) = &mut file {
                f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
                let n = f.read_to_end(&mut buf).map_err(io_err(&path))?;
                offset += n as u64;
                grew = n > 0;
                let used = print_records(&buf, &mut printer).map_err(write_err)?;
                buf.drain(..used);
                printer.flush().map_err(write_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::create(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntwo").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b" more\n\xff\x00bin\n").unwrap();
        let text = std::fs::read(&path).unwrap();
        let records: Vec<Record> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse(l).unwrap())
            .collect();
        assert_eq!(records.len(), 5);
        assert!(records[1].content == b"two" && !records[1].full && !records[1].stderr);
        assert!(records[2].stderr && records[2].full);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut p = Printer {
            stdout: &mut out,
            stderr: &mut err,
            timestamps: false,
            partial: [false; 2],
        };
        assert_eq!(print_records(&text, &mut p).unwrap(), text.len());
        assert_eq!(out, b"one\ntwo more\n\xff\x00bin\n");
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 5);
        assert_eq!(rfc3339_nanos(t), "2026-11-18T11:06:40.000000005Z");
    }
}
