//! Writing a container's log: json-file records, rotated by size as docker's json-file
//! driver rotates (`<id>-json.log` → `.1` → `.2` …, at most `max-file` files).

use super::config::{LogConfig, LogDriver};
use super::format::encode;
use crate::container::io_err;
use crate::Result;
use kiln_executor::Stream;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Appends a container's output to its log (nothing with the `none` driver).
pub(crate) struct LogWriter {
    file: Option<Rotating>,
}

struct Rotating {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
}

/// `path.N`: the Nth rotated file.
pub(crate) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogWriter {
    /// The writer of the log at `path` (made when missing) with `config`.
    pub(crate) fn create(path: &Path, config: &LogConfig) -> Result<LogWriter> {
        if config.driver == LogDriver::None {
            return Ok(LogWriter { file: None });
        }
        let file = open_append(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        Ok(LogWriter {
            file: Some(Rotating {
                path: path.to_path_buf(),
                file,
                size,
                max_size: config.max_size,
                max_file: config.max_file.max(1),
            }),
        })
    }

    /// Writes `data` from `stream`: a record per line (and one for the part of a line after
    /// the last newline), all with the time of the call.
    pub(crate) fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let Some(log) = &mut self.file else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let time = super::rfc3339_nanos(SystemTime::now());
        let stderr = stream == Stream::Stderr;
        let mut out = Vec::with_capacity(data.len() + 80);
        for line in data.split_inclusive(|&b| b == b'\n') {
            // Rotated before a record once the file is full (docker checks the same way: a
            // file ends up at most one record over max-size).
            if log
                .max_size
                .is_some_and(|max| log.size + out.len() as u64 >= max)
            {
                log.file.write_all(&out)?;
                log.rotate()?;
                out.clear();
            }
            encode(&mut out, stderr, &time, line);
        }
        log.file.write_all(&out)?;
        log.size += out.len() as u64;
        Ok(())
    }
}

impl Rotating {
    /// Moves the full file to `.1` (and `.1` to `.2` …, the oldest one dropped) and starts
    /// a new one; with max-file 1 the full file is dropped. The new file is a new inode:
    /// readers following the old one finish it and then open the new one.
    fn rotate(&mut self) -> io::Result<()> {
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.max_file > 1 {
            for n in (1..self.max_file - 1).rev() {
                ignore_missing(std::fs::rename(
                    rotated(&self.path, n),
                    rotated(&self.path, n + 1),
                ))?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        } else {
            ignore_missing(std::fs::remove_file(&self.path))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}
