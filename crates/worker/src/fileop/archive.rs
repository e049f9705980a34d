//! ADD's archive extraction: a local tar, plain or compressed (gzip, bzip2, xz, zstd), is
//! unpacked into the destination.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// How an archive ADD extracts is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Archive {
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// Whether a file is a tar archive ADD extracts (plain, gzip, bzip2, xz or zstd).
pub(super) fn archive_kind(path: &Path) -> io::Result<Option<Archive>> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::GzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Gzip));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut d = zstd::stream::read::Decoder::new(fs::File::open(path)?)?;
        return Ok(is_tar(&mut d).then_some(Archive::Zstd));
    }
    if head.starts_with(b"BZh") {
        let mut d = bzip2::read::BzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Bzip2));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        let mut d = liblzma::read::XzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Xz));
    }
    Ok((n >= 262 && &head[257..262] == b"ustar").then_some(Archive::Tar))
}

fn is_tar(r: &mut dyn Read) -> bool {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n >= 262 && &head[257..262] == b"ustar"
}

/// Unpacks an archive into `into`. With `owner` (ADD --chown) every extracted entry gets
/// that owner, as current BuildKit does; otherwise the archive's owners are kept.
pub(super) fn extract(
    src: &Path,
    kind: Archive,
    into: &Path,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let f = fs::File::open(src)?;
    let reader: Box<dyn Read> = match kind {
        Archive::Tar => Box::new(f),
        Archive::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        Archive::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
        Archive::Bzip2 => Box::new(bzip2::read::BzDecoder::new(f)),
        Archive::Xz => Box::new(liblzma::read::XzDecoder::new(f)),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let Some((uid, gid)) = owner else {
        return ar.unpack(into);
    };
    for entry in ar.entries()? {
        let mut e = entry?;
        let rel = e.path()?.into_owned();
        if e.unpack_in(into)? {
            std::os::unix::fs::lchown(into.join(&rel), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
