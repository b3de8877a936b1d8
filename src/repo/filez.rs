//! File content objects in archive mode (`.filez`): a framed header GVariant followed
//! by the content as raw deflate.
//!
//! A file object's checksum is not the sha256 of the `.filez` bytes but of the
//! uncompressed form (file header + content), so verifying one means inflating it.
//! Verification streams: memory stays the same whatever the file's size.

use std::io::{self, BufRead, Read, Write};

use glib::prelude::*;
use glib::Variant;
use sha2::{Digest, Sha256};

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::error::{RepoError, Result};
use crate::repo::objects::{variant_from_bytes, xattrs_from_variant, xattrs_to_variant, Xattrs};

const ARCHIVE_HEADER_TYPE: &str = "(tuuuusa(ayay))";
/// ostree refuses file headers larger than this; so do we, before allocating.
const MAX_HEADER_SIZE: u32 = 10 * 1024 * 1024;
const CHUNK: usize = 128 * 1024;
/// The compression level `ostree` uses for archive objects.
const DEFLATE_LEVEL: u32 = 6;

/// What a file object says about its file, besides the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Uncompressed content size (0 for symlinks).
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub rdev: u32,
    pub symlink_target: String,
    pub xattrs: Xattrs,
}

impl FileHeader {
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// uid, gid, mode, rdev, symlink target, xattrs: the fields both headers share.
    fn common_fields(&self) -> [Variant; 6] {
        [
            self.uid.to_be().to_variant(),
            self.gid.to_be().to_variant(),
            self.mode.to_be().to_variant(),
            self.rdev.to_be().to_variant(),
            self.symlink_target.to_variant(),
            xattrs_to_variant(&self.xattrs),
        ]
    }

    /// The header that, followed by the content, is hashed into the object's checksum.
    pub fn checksum_header_bytes(&self) -> Vec<u8> {
        frame(Variant::tuple_from_iter(self.common_fields()).data())
    }

    /// The header at the start of a `.filez`: the size, then the common fields.
    pub fn archive_header_bytes(&self) -> Vec<u8> {
        let fields = std::iter::once(self.size.to_be().to_variant()).chain(self.common_fields());
        frame(Variant::tuple_from_iter(fields).data())
    }

    fn from_archive_variant(v: &Variant) -> Self {
        let u32_at = |i: usize| u32::from_be(v.child_value(i).get::<u32>().unwrap_or_default());
        Self {
            size: u64::from_be(v.child_value(0).get::<u64>().unwrap_or_default()),
            uid: u32_at(1),
            gid: u32_at(2),
            mode: u32_at(3),
            rdev: u32_at(4),
            symlink_target: v.child_value(5).str().unwrap_or_default().to_owned(),
            xattrs: xattrs_from_variant(&v.child_value(6)),
        }
    }

    fn validate(&self, name: &ObjectName) -> Result<()> {
        let corrupt = |reason: String| RepoError::CorruptObject {
            name: *name,
            reason,
        };
        if self.is_symlink() {
            if self.symlink_target.is_empty() || self.size != 0 {
                return Err(corrupt(
                    "symlink with an empty target or with content".into(),
                ));
            }
        } else if self.is_regular() {
            if !self.symlink_target.is_empty() {
                return Err(corrupt("regular file with a symlink target".into()));
            }
        } else {
            return Err(corrupt(format!(
                "mode {:o} is neither a regular file nor a symlink",
                self.mode
            )));
        }
        if self.rdev != 0 {
            return Err(corrupt("device file".into()));
        }
        Ok(())
    }
}

/// u32 big-endian length, 4 bytes of padding, the variant: ostree's framing.
fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(data);
    out
}

/// Reads the framed archive header from the start of a `.filez` stream.
pub fn read_archive_header(reader: &mut impl Read, name: &ObjectName) -> Result<FileHeader> {
    let corrupt = |reason: &str| RepoError::CorruptObject {
        name: *name,
        reason: reason.to_owned(),
    };
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| corrupt("truncated header"))?;
    let len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes"));
    if len > MAX_HEADER_SIZE {
        return Err(corrupt("oversized header"));
    }
    let mut data = vec![0u8; len as usize];
    reader
        .read_exact(&mut data)
        .map_err(|_| corrupt("truncated header"))?;
    let v = variant_from_bytes("file header", ARCHIVE_HEADER_TYPE, &data)
        .map_err(|_| corrupt("malformed header"))?;
    let header = FileHeader::from_archive_variant(&v);
    header.validate(name)?;
    Ok(header)
}

/// A buffered reader that copies every byte it reads from `inner` into `sink`, so a
/// `.filez` can be verified and stored in one pass.
struct TeeReader<'a, R, W> {
    inner: R,
    sink: &'a mut W,
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
}

impl<'a, R: Read, W: Write> TeeReader<'a, R, W> {
    fn new(inner: R, sink: &'a mut W) -> Self {
        Self {
            inner,
            sink,
            buf: vec![0u8; CHUNK].into_boxed_slice(),
            pos: 0,
            cap: 0,
        }
    }
}

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read, W: Write> BufRead for TeeReader<'_, R, W> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.cap {
            let n = self.inner.read(&mut self.buf)?;
            self.sink.write_all(&self.buf[..n])?;
            self.pos = 0;
            self.cap = n;
        }
        Ok(&self.buf[self.pos..self.cap])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.cap);
    }
}

/// Verifies a `.filez` read from `source` against `expected`, copying its bytes
/// unchanged into `sink`. Returns the header and the number of bytes copied.
pub fn verify_filez(
    source: impl Read,
    expected: &Checksum,
    sink: &mut impl Write,
) -> Result<(FileHeader, u64)> {
    let name = ObjectName::new(*expected, ObjectType::File);
    let mut counted = CountingWriter {
        inner: sink,
        count: 0,
    };
    let (header, actual) = {
        let mut tee = TeeReader::new(source, &mut counted);
        let header = read_archive_header(&mut tee, &name)?;
        let actual = hash_content(&header, &mut tee, &name)?;
        if !tee.fill_buf().map_err(|e| io_corrupt(&name, e))?.is_empty() {
            return Err(RepoError::CorruptObject {
                name,
                reason: "data after the compressed content".into(),
            });
        }
        (header, actual)
    };
    if actual != *expected {
        return Err(RepoError::ChecksumMismatch {
            expected: name,
            actual: actual.to_hex(),
        });
    }
    Ok((header, counted.count))
}

fn io_corrupt(name: &ObjectName, e: io::Error) -> RepoError {
    RepoError::CorruptObject {
        name: *name,
        reason: e.to_string(),
    }
}

/// Inflates the content after the header and returns the object checksum.
fn hash_content(
    header: &FileHeader,
    compressed: &mut impl BufRead,
    name: &ObjectName,
) -> Result<Checksum> {
    let mut hasher = Sha256::new();
    hasher.update(header.checksum_header_bytes());
    let mut total = 0u64;
    // A symlink (or an empty file) may carry no deflate stream at all.
    if !compressed
        .fill_buf()
        .map_err(|e| io_corrupt(name, e))?
        .is_empty()
    {
        let mut decoder = flate2::bufread::DeflateDecoder::new(compressed);
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = decoder.read(&mut chunk).map_err(|e| io_corrupt(name, e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > header.size {
                return Err(RepoError::CorruptObject {
                    name: *name,
                    reason: "content longer than its header says".into(),
                });
            }
            hasher.update(&chunk[..n]);
        }
    }
    if total != header.size {
        return Err(RepoError::CorruptObject {
            name: *name,
            reason: format!("content is {total} bytes, header says {}", header.size),
        });
    }
    Ok(Checksum(hasher.finalize().into()))
}

struct CountingWriter<'a, W> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a `.filez` for reading its content: the header and an inflating reader.
pub fn open_filez<R: BufRead>(
    mut reader: R,
    name: &ObjectName,
) -> Result<(FileHeader, flate2::bufread::DeflateDecoder<R>)> {
    let header = read_archive_header(&mut reader, name)?;
    Ok((header, flate2::bufread::DeflateDecoder::new(reader)))
}

/// Writes a `.filez` for `header` + `content` and returns its object checksum.
/// `header.size` must be the content's length.
pub fn write_filez(
    header: &FileHeader,
    content: &mut impl Read,
    out: &mut impl Write,
) -> io::Result<Checksum> {
    let mut hasher = Sha256::new();
    hasher.update(header.checksum_header_bytes());
    out.write_all(&header.archive_header_bytes())?;
    if header.is_regular() {
        let mut encoder =
            flate2::write::DeflateEncoder::new(out, flate2::Compression::new(DEFLATE_LEVEL));
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = content.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            encoder.write_all(&chunk[..n])?;
        }
        encoder.finish()?;
    }
    Ok(Checksum(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(size: u64) -> FileHeader {
        FileHeader {
            size,
            uid: 0,
            gid: 0,
            mode: libc::S_IFREG | 0o644,
            rdev: 0,
            symlink_target: String::new(),
            xattrs: vec![],
        }
    }

    #[test]
    fn write_then_verify() {
        let content = b"hello world".repeat(1000);
        let mut filez = Vec::new();
        let checksum = write_filez(
            &regular(content.len() as u64),
            &mut &content[..],
            &mut filez,
        )
        .unwrap();
        let mut copy = Vec::new();
        let (header, n) = verify_filez(&filez[..], &checksum, &mut copy).unwrap();
        assert_eq!(header.size, content.len() as u64);
        assert_eq!(copy, filez);
        assert_eq!(n, filez.len() as u64);

        let mut flipped = filez.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x55;
        assert!(verify_filez(&flipped[..], &checksum, &mut Vec::new()).is_err());
        assert!(verify_filez(&filez[..filez.len() - 5], &checksum, &mut Vec::new()).is_err());
        let mut trailing = filez.clone();
        trailing.push(0);
        assert!(verify_filez(&trailing[..], &checksum, &mut Vec::new()).is_err());
        let other = Checksum::digest(b"other");
        assert!(matches!(
            verify_filez(&filez[..], &other, &mut Vec::new()),
            Err(RepoError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn symlink_without_content() {
        let header = FileHeader {
            mode: libc::S_IFLNK | 0o777,
            symlink_target: "../target".into(),
            ..regular(0)
        };
        let mut filez = Vec::new();
        let checksum = write_filez(&header, &mut io::empty(), &mut filez).unwrap();
        let (parsed, _) = verify_filez(&filez[..], &checksum, &mut io::sink()).unwrap();
        assert_eq!(parsed, header);
    }
}
