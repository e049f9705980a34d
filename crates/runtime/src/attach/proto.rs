//! The attach socket's frames (see the module docs of `attach.rs`).

use std::io::{self, Read};

/// Largest payload of a frame.
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// The first frame of a client that attaches to the container (client → shim; empty).
pub(crate) const ATTACH: u8 = b'a';
/// The first frame of a client that starts a process with a terminal in the container
/// (client → shim; JSON [`ExecRequest`]).
pub(crate) const EXEC: u8 = b'e';
/// A signal for the exec'd process (client → shim; a big-endian `i32`).
pub(crate) const SIGNAL: u8 = b's';
/// The exec'd process could not be started (shim → client; the message).
pub(crate) const ERROR: u8 = b'!';
/// Output for stdout (shim → client).
pub(crate) const STDOUT: u8 = b'1';
/// Output for stderr (shim → client).
pub(crate) const STDERR: u8 = b'2';
/// The exit code (shim → client).
pub(crate) const EXIT: u8 = b'x';
/// Input (client → shim).
pub(crate) const INPUT: u8 = b'0';
/// A window size (client → shim).
pub(crate) const WINDOW: u8 = b'w';

/// What an [`EXEC`] frame asks for.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExecRequest {
    /// The process.
    pub(crate) spec: kiln_executor::ExecSpec,
    /// Its terminal's first window size (rows, columns).
    pub(crate) size: Option<(u16, u16)>,
}

/// One frame as bytes.
pub(crate) fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// Writes one frame.
pub(crate) fn write(w: &mut impl io::Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Reads one frame; `None` at a clean end of the stream.
pub(crate) fn read(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// A window size's payload.
pub(crate) fn window(rows: u16, cols: u16) -> [u8; 4] {
    let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
    [r[0], r[1], c[0], c[1]]
}

/// A window size from its payload.
pub(crate) fn parse_window(p: &[u8]) -> Option<(u16, u16)> {
    let [r0, r1, c0, c1] = *p else { return None };
    Some((u16::from_be_bytes([r0, r1]), u16::from_be_bytes([c0, c1])))
}

/// An exit code from its payload.
pub(crate) fn parse_exit(p: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(p.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write(&mut buf, STDOUT, b"hello").unwrap();
        write(&mut buf, WINDOW, &window(40, 120)).unwrap();
        write(&mut buf, EXIT, &4i32.to_be_bytes()).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read(&mut r).unwrap(), Some((STDOUT, b"hello".to_vec())));
        let (k, p) = read(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_window(&p)), (WINDOW, Some((40, 120))));
        let (k, p) = read(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_exit(&p)), (EXIT, Some(4)));
        assert_eq!(read(&mut r).unwrap(), None, "a clean end");
        let mut big = vec![INPUT];
        big.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read(&mut big.as_slice()).is_err());
        // Cut short in the middle of a frame: an error, not a clean end.
        let cut = encode(STDOUT, b"abc");
        assert!(read(&mut &cut[..4]).is_err());
        assert_eq!(parse_window(b"abc"), None);
    }
}
