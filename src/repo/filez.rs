//! File content objects in archive mode (`.filez`): a framed header GVariant followed
//! by the content as raw deflate.
//!
//! A file object's checksum is not the sha256 of the `.filez` bytes but of the
//! uncompressed form (file header + content), so verifying one means inflating it.
//! Verification streams: memory stays the same whatever the file's size.

use std::cell::RefCell;
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

    /// The checksum of the file object this header and `content` make (a
    /// symlink's content is empty).
    pub fn object_checksum(&self, content: &[u8]) -> Checksum {
        let mut hasher = Sha256::new();
        hasher.update(self.checksum_header_bytes());
        hasher.update(content);
        Checksum(hasher.finalize().into())
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

    pub(crate) fn validate(&self, name: &ObjectName) -> Result<()> {
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
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| corrupt(name, "truncated header"))?;
    let len = header_length(&prefix, name)?;
    // Grown as bytes arrive rather than allocated at the announced length: a
    // truncated object must not cost the 10 MiB its prefix may claim.
    let mut data = Vec::new();
    reader
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(|_| corrupt(name, "truncated header"))?;
    if data.len() != len {
        return Err(corrupt(name, "truncated header"));
    }
    parse_archive_header(&data, name)
}

fn corrupt(name: &ObjectName, reason: impl Into<String>) -> RepoError {
    RepoError::CorruptObject {
        name: *name,
        reason: reason.into(),
    }
}

/// The length of the header variant announced by the 8-byte frame prefix.
fn header_length(prefix: &[u8; 8], name: &ObjectName) -> Result<usize> {
    let len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes"));
    if len > MAX_HEADER_SIZE {
        return Err(corrupt(name, "oversized header"));
    }
    Ok(len as usize)
}

fn parse_archive_header(data: &[u8], name: &ObjectName) -> Result<FileHeader> {
    let v = variant_from_bytes("file header", ARCHIVE_HEADER_TYPE, data)
        .map_err(|_| corrupt(name, "malformed header"))?;
    let header = FileHeader::from_archive_variant(&v);
    header.validate(name)?;
    Ok(header)
}

/// What [`FilezCheck::update_into`] hands on: the header, then the content.
pub enum FilezPart<'a> {
    Header(&'a FileHeader),
    Content(&'a [u8]),
}

/// Checks a `.filez` fed to it in pieces against its name: parses the header,
/// inflates the content and hashes both as ostree does. Memory stays the same
/// whatever the object's size.
pub struct FilezCheck {
    name: ObjectName,
    /// The frame prefix and header variant, until the header is complete.
    pending_header: Vec<u8>,
    header: Option<FileHeader>,
    inflate: flate2::Decompress,
    hasher: Sha256,
    content_bytes: u64,
    /// Whether any compressed byte came after the header.
    compressed: bool,
    stream_end: bool,
}

impl FilezCheck {
    pub fn new(expected: &Checksum) -> Self {
        Self {
            name: ObjectName::new(*expected, ObjectType::File),
            pending_header: Vec::new(),
            header: None,
            inflate: flate2::Decompress::new(false),
            hasher: Sha256::new(),
            content_bytes: 0,
            compressed: false,
            stream_end: false,
        }
    }

    /// Takes the next bytes of the object. `scratch` receives inflated content; any
    /// size works, a larger one means fewer rounds.
    pub fn update(&mut self, data: &[u8], scratch: &mut [u8]) -> Result<()> {
        self.update_into(data, scratch, &mut |_| Ok(()))
    }

    /// As [`update`](Self::update), and hands `sink` the header once it is parsed,
    /// then each piece of inflated content. Nothing is verified until
    /// [`finish`](Self::finish): the sink must keep what it gets out of sight.
    pub fn update_into(
        &mut self,
        mut data: &[u8],
        scratch: &mut [u8],
        sink: &mut dyn FnMut(FilezPart<'_>) -> Result<()>,
    ) -> Result<()> {
        if self.header.is_none() {
            data = self.take_header(data)?;
            if let Some(header) = &self.header {
                sink(FilezPart::Header(header))?;
            }
            if self.header.is_none() {
                return Ok(());
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.stream_end {
            return Err(corrupt(&self.name, "data after the compressed content"));
        }
        self.compressed = true;
        let size = self.header.as_ref().map_or(0, |h| h.size);
        while !data.is_empty() || !self.stream_end {
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(data, scratch, flate2::FlushDecompress::None)
                .map_err(|e| corrupt(&self.name, e.to_string()))?;
            let consumed = (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            data = &data[consumed..];
            self.content_bytes += produced as u64;
            if self.content_bytes > size {
                return Err(corrupt(&self.name, "content longer than its header says"));
            }
            self.hasher.update(&scratch[..produced]);
            if produced > 0 {
                sink(FilezPart::Content(&scratch[..produced]))?;
            }
            if status == flate2::Status::StreamEnd {
                self.stream_end = true;
                if !data.is_empty() {
                    return Err(corrupt(&self.name, "data after the compressed content"));
                }
            }
            // Stop when the input is used up and the output was not cut short.
            if consumed == 0 && produced == 0 || data.is_empty() && produced < scratch.len() {
                break;
            }
        }
        Ok(())
    }

    /// Collects the frame prefix and header variant; returns the bytes after them.
    fn take_header<'d>(&mut self, data: &'d [u8]) -> Result<&'d [u8]> {
        // Decided before taking bytes: with a 0-byte header, "prefix complete"
        // and "header complete" are both 8 bytes.
        let taking_prefix = self.pending_header.len() < 8;
        let wanted = if taking_prefix {
            8
        } else {
            let prefix: [u8; 8] = self.pending_header[..8].try_into().expect("8 bytes");
            8 + header_length(&prefix, &self.name)?
        };
        let take = (wanted - self.pending_header.len()).min(data.len());
        self.pending_header.extend_from_slice(&data[..take]);
        let rest = &data[take..];
        if self.pending_header.len() < wanted {
            return Ok(rest);
        }
        if taking_prefix {
            // The prefix is complete: now the variant it announces.
            return self.take_header(rest);
        }
        let header = parse_archive_header(&self.pending_header[8..], &self.name)?;
        self.hasher.update(header.checksum_header_bytes());
        self.header = Some(header);
        self.pending_header = Vec::new();
        Ok(rest)
    }

    /// Ends the object: checks it was complete and matches its name.
    pub fn finish(self) -> Result<FileHeader> {
        let name = self.name;
        let header = self
            .header
            .ok_or_else(|| corrupt(&name, "truncated header"))?;
        // A symlink (or an empty file) may carry no deflate stream at all.
        if self.compressed && !self.stream_end {
            return Err(corrupt(&name, "truncated compressed content"));
        }
        if self.content_bytes != header.size {
            return Err(corrupt(
                &name,
                format!(
                    "content is {} bytes, header says {}",
                    self.content_bytes, header.size
                ),
            ));
        }
        let actual = Checksum(self.hasher.finalize().into());
        if actual != name.checksum {
            return Err(RepoError::ChecksumMismatch {
                expected: name,
                actual: actual.to_hex(),
            });
        }
        Ok(header)
    }
}

thread_local! {
    /// Read and inflate buffers, reused by every verification on the thread: a
    /// pull verifies thousands of small objects, and fresh zeroed buffers for
    /// each cost more than the verification itself.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Verifies a `.filez` read from `source` against `expected`, copying its bytes
/// unchanged into `sink`. Returns the header and the number of bytes copied.
pub fn verify_filez(
    source: impl Read,
    expected: &Checksum,
    sink: &mut impl Write,
) -> Result<(FileHeader, u64)> {
    let name = ObjectName::new(*expected, ObjectType::File);
    let mut copied = 0u64;
    let header = read_filez(
        source,
        expected,
        &mut |raw| {
            // A failing sink is the destination's fault (a full disk), not the object's.
            sink.write_all(raw)
                .map_err(|e| RepoError::io(name.relative_path(), e))?;
            copied += raw.len() as u64;
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    Ok((header, copied))
}

/// Reads a `.filez` from `source` and verifies it against `expected`: each raw
/// piece goes to `raw` before it is checked, the header and inflated content to
/// `parts`. Returns the header once the whole object matched its name.
pub fn read_filez(
    mut source: impl Read,
    expected: &Checksum,
    raw: &mut dyn FnMut(&[u8]) -> Result<()>,
    parts: &mut dyn FnMut(FilezPart<'_>) -> Result<()>,
) -> Result<FileHeader> {
    let name = ObjectName::new(*expected, ObjectType::File);
    // Taken out rather than borrowed, so a nested verification gets its own.
    let mut scratch = SCRATCH.with(|cell| cell.take());
    scratch.resize(2 * CHUNK, 0);
    let (input, output) = scratch.split_at_mut(CHUNK);
    let mut check = FilezCheck::new(expected);
    let result = loop {
        let n = match source.read(input) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(corrupt(&name, e.to_string())),
        };
        if let Err(e) = raw(&input[..n]) {
            break Err(e);
        }
        if let Err(e) = check.update_into(&input[..n], output, parts) {
            break Err(e);
        }
    };
    SCRATCH.with(|cell| cell.replace(scratch));
    result?;
    check.finish()
}

/// Opens a `.filez` for reading its content: the header and an inflating reader.
pub fn open_filez<R: BufRead>(
    mut reader: R,
    name: &ObjectName,
) -> Result<(FileHeader, flate2::bufread::DeflateDecoder<R>)> {
    let header = read_archive_header(&mut reader, name)?;
    Ok((header, flate2::bufread::DeflateDecoder::new(reader)))
}

/// The `.filez` of `header` + `content` as a stream: the framed header, then the
/// content deflated as it is read (at ostree's level, as [`write_filez`]).
/// `header.size` must be the content's length.
pub fn filez_stream<R: Read>(header: &FileHeader, content: R) -> impl Read {
    let compressed = header.is_regular().then(|| {
        flate2::read::DeflateEncoder::new(content, flate2::Compression::new(DEFLATE_LEVEL))
    });
    io::Cursor::new(header.archive_header_bytes()).chain(OptionalReader(compressed))
}

/// Reads nothing when there is nothing to read (a symlink has no content).
struct OptionalReader<R>(Option<R>);

impl<R: Read> Read for OptionalReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(reader) => reader.read(buf),
            None => Ok(0),
        }
    }
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

    /// A regular file's `.filez` and its checksum.
    fn filez_of(content: &[u8]) -> (Vec<u8>, Checksum) {
        let mut filez = Vec::new();
        let checksum = write_filez(
            &regular(content.len() as u64),
            &mut &content[..],
            &mut filez,
        )
        .unwrap();
        (filez, checksum)
    }

    /// Found by tests/fuzz: a frame announcing a header of 0 bytes made
    /// `FilezCheck` ask for the prefix again forever. It must be an error.
    #[test]
    fn zero_length_header_is_an_error_not_a_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut filez = vec![0u8; 8];
            filez.extend_from_slice(b"content");
            let checksum = Checksum::digest(b"x");
            let whole = verify_filez(&filez[..], &checksum, &mut Vec::new()).map(drop);
            let mut check = FilezCheck::new(&checksum);
            let mut scratch = [0u8; 64];
            let pieced = check
                .update(&filez[..8], &mut scratch)
                .and_then(|()| check.update(&filez[8..], &mut scratch));
            let _ = tx.send((whole.is_err(), pieced.is_err()));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(result, Ok((true, true)), "an error within 10 s");
    }

    #[test]
    fn write_then_verify() {
        let content = b"hello world".repeat(1000);
        let (filez, checksum) = filez_of(&content);
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

    /// Feeds `filez` to a `FilezCheck` in pieces of the given sizes (cycled).
    fn check_in_pieces(filez: &[u8], checksum: &Checksum, sizes: &[usize]) -> Result<FileHeader> {
        let mut check = FilezCheck::new(checksum);
        let mut scratch = [0u8; 7]; // tiny, so inflating takes many rounds
        let mut rest = filez;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            check.update(piece, &mut scratch)?;
            rest = tail;
        }
        check.finish()
    }

    #[test]
    fn pieces_of_any_size_verify_alike() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (filez, checksum) = filez_of(&content);
        for sizes in [&[1][..], &[3, 1, 7], &[8], &[9, 4096], &[filez.len()]] {
            let header = check_in_pieces(&filez, &checksum, sizes).unwrap();
            assert_eq!(header.size, content.len() as u64, "pieces {sizes:?}");
        }
        // Cut anywhere (inside the header, inside the stream), it is refused.
        for cut in [0, 3, 8, 20, filez.len() / 2, filez.len() - 1] {
            let error = check_in_pieces(&filez[..cut], &checksum, &[5]).unwrap_err();
            assert!(
                matches!(error, RepoError::CorruptObject { .. }),
                "cut {cut}: {error}"
            );
        }
        let mut trailing = filez.clone();
        trailing.extend_from_slice(b"junk");
        let error = check_in_pieces(&trailing, &checksum, &[1]).unwrap_err();
        assert!(error.to_string().contains("data after"), "{error}");
        let mut flipped = filez.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        assert!(check_in_pieces(&flipped, &checksum, &[64]).is_err());
    }

    #[test]
    fn content_longer_than_header_is_refused() {
        let content = vec![b'x'; 1000];
        let mut filez = Vec::new();
        write_filez(&regular(1000), &mut &content[..], &mut filez).unwrap();
        // The same stream, announced as 10 bytes long.
        let short = regular(10);
        let mut lying = short.archive_header_bytes();
        lying.extend_from_slice(&filez[regular(1000).archive_header_bytes().len()..]);
        let error =
            verify_filez(&lying[..], &Checksum::digest(b"any"), &mut io::sink()).unwrap_err();
        assert!(
            error.to_string().contains("longer than its header"),
            "{error}"
        );
    }

    #[test]
    fn a_full_sink_is_a_full_disk_not_a_corrupt_object() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut filez = Vec::new();
        let checksum = write_filez(&regular(5), &mut &b"hello"[..], &mut filez).unwrap();
        let error = verify_filez(&filez[..], &checksum, &mut Full).unwrap_err();
        assert!(matches!(error, RepoError::NoSpace { .. }), "{error}");
        assert!(error.is_local());
        assert!(
            error.to_string().starts_with("not enough space on"),
            "{error}"
        );
    }

    #[test]
    fn streamed_filez_verifies() {
        let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_, checksum) = filez_of(&content);
        let mut streamed = Vec::new();
        filez_stream(&regular(content.len() as u64), &content[..])
            .read_to_end(&mut streamed)
            .unwrap();
        let (header, _) = verify_filez(&streamed[..], &checksum, &mut io::sink()).unwrap();
        assert_eq!(header.size, content.len() as u64);
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
        // Streamed, a symlink is its header alone, as written.
        let mut streamed = Vec::new();
        filez_stream(&header, io::empty())
            .read_to_end(&mut streamed)
            .unwrap();
        assert_eq!(streamed, filez);
    }
}
