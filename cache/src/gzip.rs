//! A gzip writer that stores what does not compress.
//!
//! Deflating data that does not compress (already compressed files, encrypted or random
//! bytes: common in image layers) costs as much as deflating text, ~60 MB/s per core at any
//! level, and saves nothing. This writer looks at the tar stream in 1 MiB chunks: a chunk
//! whose bytes are close to uniformly distributed (Shannon entropy above
//! [`STORE_ABOVE_BITS`] bits per byte, which deflate cannot shrink with Huffman codes) goes
//! out as stored deflate blocks (level 0, at memory speed); other chunks are deflated at the
//! requested level. The result is one ordinary gzip member (RFC 1952: header, one deflate
//! stream, CRC-32 and size), which every gzip reader accepts, and the same input always
//! gives the same bytes.
//!
//! Each chunk is deflated on its own (the compressor is reset, so no back-reference
//! crosses a chunk boundary; at 1 MiB that costs nothing measurable) and ends with a sync
//! flush, which leaves the stream byte-aligned without ending it, so the chunks concatenate
//! into one valid deflate stream; the last one ends it (pigz's `--independent` mode works
//! the same way). `flate2`'s `GzEncoder` cannot change the level mid-stream, so this drives
//! `flate2::Compress` and writes the gzip framing itself.

use flate2::{Compress, Compression, FlushCompress, Status};
use std::io::{self, Write};

/// Chunks with more entropy than this (bits per byte) are stored, not deflated.
pub(crate) const STORE_ABOVE_BITS: f64 = 7.95;
const CHUNK: usize = 1 << 20;

/// The gzip writer (see the module docs). Call [`AdaptiveGzip::finish`] at the end.
pub(crate) struct AdaptiveGzip<W: Write> {
    inner: W,
    deflate: Compress,
    level: Compression,
    crc: crc32fast::Hasher,
    size: u64,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl<W: Write> AdaptiveGzip<W> {
    /// A writer deflating compressible chunks at `level`.
    pub(crate) fn new(mut inner: W, level: Compression) -> io::Result<Self> {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no name, no time, so
        // the bytes depend on the content only.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(AdaptiveGzip {
            inner,
            deflate: Compress::new(level, false),
            level,
            crc: crc32fast::Hasher::new(),
            size: 0,
            pending: Vec::with_capacity(CHUNK),
            out: Vec::with_capacity(CHUNK + CHUNK / 8),
        })
    }

    /// Deflates `input` whole with `flush`, writing all output.
    fn run(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut input = input;
        loop {
            self.out.clear();
            let before_in = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            self.inner.write_all(&self.out)?;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                // A flush is complete when it left room in the output.
                _ => input.is_empty() && self.out.len() < self.out.capacity(),
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Deflates the pending chunk on its own, stored when it would not compress; the last
    /// chunk ends the deflate stream.
    fn chunk(&mut self, last: bool) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let level = if entropy_bits(&pending) > STORE_ABOVE_BITS {
            Compression::none()
        } else {
            self.level
        };
        self.deflate.reset();
        self.deflate.set_level(level).map_err(io::Error::other)?;
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        self.run(&pending, flush)?;
        self.pending = pending;
        self.pending.clear();
        Ok(())
    }

    /// Ends the gzip member and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.chunk(true)?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for AdaptiveGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.pending.len() == CHUNK {
            self.chunk(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Shannon entropy of `data` in bits per byte.
fn entropy_bits(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn noise(n: usize) -> Vec<u8> {
        // xorshift: deterministic, incompressible.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut w = AdaptiveGzip::new(Vec::new(), Compression::default()).unwrap();
        for part in data.chunks(77_777) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn mixed_content_round_trips_as_one_gzip_member() {
        let text: Vec<u8> = b"the same line again and again\n"
            .iter()
            .cycle()
            .take(3 << 20)
            .copied()
            .collect();
        let mut data = text.clone();
        data.extend(noise(3 << 20));
        data.extend(&text[..12345]);
        let gz = gzip(&data);
        // A single-member reader sees all of it.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Text shrank, noise was stored (at most a little larger than itself).
        assert!(gz.len() < (3 << 20) + (3 << 20) / 50, "{}", gz.len());
        assert!(gz.len() > 3 << 20);
        assert_eq!(gzip(&data), gz, "same input, same bytes");
        // The empty stream is valid too.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&[])[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn entropy_tells_noise_from_text() {
        assert!(entropy_bits(&noise(1 << 20)) > STORE_ABOVE_BITS);
        assert!(entropy_bits(b"aaaaaaaabbbbbbbbcccccc") < 2.0);
    }
}
