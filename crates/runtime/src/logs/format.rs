//! The records of a log file: docker's json-file lines, and the CRI lines of the logs an
//! older kiln wrote (`container.log`), still read.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::SystemTime;

/// How a log file's lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// docker's json-file: `{"log":"…\n","stream":"stdout","time":"RFC 3339"}`.
    Json,
    /// CRI (containerd, CRI-O): `TIME STREAM F|P CONTENT`.
    Cri,
}

/// One record: a line of output, or the part of one written so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// RFC 3339 with nanoseconds, as stored.
    pub(crate) time: Cow<'a, str>,
    pub(crate) stderr: bool,
    /// The output, with its newline when the line ended (none when the rest of the line
    /// follows in the stream's next record).
    pub(crate) content: Cow<'a, [u8]>,
}

impl Entry<'_> {
    /// Its time (`None` when the record's time is not RFC 3339).
    pub(crate) fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.time).ok()
    }

    /// Whether the line ended with this record.
    pub(crate) fn full(&self) -> bool {
        self.content.last() == Some(&b'\n')
    }
}

#[derive(Serialize, Deserialize)]
struct JsonRecord<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Appends the json-file line of `line` (the output, with its newline if it ended) to `out`.
/// Output that is not UTF-8 is stored with replacement characters, as docker does.
pub(crate) fn encode(out: &mut Vec<u8>, stderr: bool, time: &str, line: &[u8]) {
    let record = JsonRecord {
        log: String::from_utf8_lossy(line),
        stream: Cow::Borrowed(if stderr { "stderr" } else { "stdout" }),
        time: Cow::Borrowed(time),
    };
    serde_json::to_writer(&mut *out, &record).expect("JSON of strings into a Vec");
    out.push(b'\n');
}

/// Parses one line (without its newline); `None` for a line that is not a record (a
/// stranger's edit, a torn write): it is skipped.
pub(crate) fn parse(format: Format, line: &[u8]) -> Option<Entry<'_>> {
    match format {
        Format::Json => parse_json(line),
        Format::Cri => parse_cri(line),
    }
}

fn parse_json(line: &[u8]) -> Option<Entry<'_>> {
    let r: JsonRecord = serde_json::from_slice(line).ok()?;
    let stderr = match &*r.stream {
        "stdout" => false,
        "stderr" => true,
        _ => return None,
    };
    Some(Entry {
        time: r.time,
        stderr,
        content: match r.log {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
    })
}

fn parse_cri(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
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
    let content = parts.next().unwrap_or_default();
    Some(Entry {
        time: Cow::Borrowed(time),
        stderr,
        content: if full {
            let mut c = content.to_vec();
            c.push(b'\n');
            Cow::Owned(c)
        } else {
            Cow::Borrowed(content)
        },
    })
}
