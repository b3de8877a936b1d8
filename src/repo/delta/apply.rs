//! Running a part's operations: each makes the next object of the part's list.

use super::{read_varint, DeltaError, PartHeader, PartPayload};
use crate::repo::filez::FileHeader;
use crate::repo::{Checksum, ObjectName, RepoError};

/// An object a part made, checked against its name.
#[derive(Debug)]
pub enum DeltaObject {
    /// A dirtree, dirmeta or commit: the object's bytes.
    Metadata { name: ObjectName, bytes: Vec<u8> },
    /// A file: its header and content (empty for a symlink).
    File {
        name: ObjectName,
        header: FileHeader,
        content: Vec<u8>,
    },
}

impl DeltaObject {
    pub fn name(&self) -> &ObjectName {
        match self {
            DeltaObject::Metadata { name, .. } | DeltaObject::File { name, .. } => name,
        }
    }
}

/// Largest file an operation may make in memory: bigger ones are fallbacks (or
/// bsdiff input libostree would not make: its `--max-bsdiff-size` default is
/// 128 MiB for old and new together).
const MAX_OBJECT_SIZE: u64 = 256 << 20;

/// Opcodes (libostree's `OstreeStaticDeltaOpCode`).
const OPEN_SPLICE_AND_CLOSE: u8 = b'S';
const OPEN: u8 = b'o';
const WRITE: u8 = b'w';
const SET_READ_SOURCE: u8 = b'r';
const UNSET_READ_SOURCE: u8 = b'R';
const CLOSE: u8 = b'c';
const BSPATCH: u8 = b'B';

/// The file being made by `open` … `close`.
struct OpenFile {
    name: ObjectName,
    header: FileHeader,
    content: Vec<u8>,
}

/// Runs part `index`'s operations and hands each object it makes to `emit`, in
/// order, after checking it hashes to its name. `read_source` gives the content
/// of a file object already in the repository (a delta's "old" file).
pub fn execute_part(
    index: usize,
    header: &PartHeader,
    part: &PartPayload,
    read_source: &mut dyn FnMut(&Checksum) -> Result<Vec<u8>, RepoError>,
    emit: &mut dyn FnMut(DeltaObject) -> Result<(), DeltaError>,
) -> Result<(), DeltaError> {
    let mut ops: &[u8] = &part.operations;
    let mut next_object = header.objects.iter();
    let mut open: Option<OpenFile> = None;
    let mut source: Option<Vec<u8>> = None;
    let mut op = 0usize;
    while let Some((&opcode, rest)) = ops.split_first() {
        ops = rest;
        let fail = |reason: String| DeltaError::BadOperation { index, op, reason };
        let mut varint = || read_varint(&mut ops).ok_or_else(|| fail("cut short".into()));
        let slice = |offset: u64, len: u64| -> Result<&[u8], DeltaError> {
            let end = offset
                .checked_add(len)
                .filter(|&end| end <= part.data.len() as u64)
                .ok_or_else(|| fail(format!("bytes {offset}+{len} lie outside the part")))?;
            Ok(&part.data[offset as usize..end as usize])
        };
        match opcode {
            OPEN_SPLICE_AND_CLOSE => {
                let name = *next_object
                    .next()
                    .ok_or_else(|| fail("more objects than the part lists".into()))?;
                if name.kind.is_meta() {
                    let (len, offset) = (varint()?, varint()?);
                    let bytes = slice(offset, len)?.to_vec();
                    emit(checked_metadata(index, name, bytes)?)?;
                } else {
                    let header = file_header(part, varint()?, varint()?)
                        .ok_or_else(|| fail("mode or xattr index out of range".into()))?;
                    let (size, offset) = (varint()?, varint()?);
                    let content = slice(offset, size)?;
                    emit(checked_file(index, name, header, content.to_vec())?)?;
                }
                source = None;
            }
            OPEN => {
                if open.is_some() {
                    return Err(fail("open while a file is open".into()));
                }
                let name = *next_object
                    .next()
                    .ok_or_else(|| fail("more objects than the part lists".into()))?;
                if name.kind.is_meta() {
                    return Err(fail(format!("open of metadata object {name}")));
                }
                let header = file_header(part, varint()?, varint()?)
                    .ok_or_else(|| fail("mode or xattr index out of range".into()))?;
                let size = varint()?;
                if size > MAX_OBJECT_SIZE {
                    return Err(fail(format!("a file of {size} bytes")));
                }
                open = Some(OpenFile {
                    name,
                    header: FileHeader { size, ..header },
                    // Bounded above; grows only as bytes come.
                    content: Vec::with_capacity(size.min(1 << 20) as usize),
                });
            }
            WRITE => {
                let (len, offset) = (varint()?, varint()?);
                let file = open
                    .as_mut()
                    .ok_or_else(|| fail("write with no file open".into()))?;
                let bytes = match &source {
                    Some(old) => offset
                        .checked_add(len)
                        .filter(|&end| end <= old.len() as u64)
                        .map(|end| &old[offset as usize..end as usize])
                        .ok_or_else(|| fail("read past the end of the source file".into()))?,
                    None => slice(offset, len)?,
                };
                if file.content.len() as u64 + len > file.header.size {
                    return Err(fail("write past the end of the file".into()));
                }
                file.content.extend_from_slice(bytes);
            }
            SET_READ_SOURCE => {
                let offset = varint()?;
                let checksum = Checksum::from_bytes(slice(offset, 32)?).expect("32 bytes");
                let content = read_source(&checksum).map_err(|e| DeltaError::MissingSource {
                    index,
                    object: checksum.to_hex(),
                    source: e,
                })?;
                source = Some(content);
            }
            UNSET_READ_SOURCE => source = None,
            CLOSE => {
                let file = open
                    .take()
                    .ok_or_else(|| fail("close with no file open".into()))?;
                if file.content.len() as u64 != file.header.size {
                    return Err(fail(format!(
                        "the file has {} of its {} bytes",
                        file.content.len(),
                        file.header.size
                    )));
                }
                emit(checked_file(index, file.name, file.header, file.content)?)?;
                source = None;
            }
            BSPATCH => {
                let (offset, len) = (varint()?, varint()?);
                let patch = slice(offset, len)?;
                let file = open
                    .as_mut()
                    .ok_or_else(|| fail("bspatch with no file open".into()))?;
                let old = source
                    .as_deref()
                    .ok_or_else(|| fail("bspatch with no source file".into()))?;
                let new = super::bspatch(old, file.header.size as usize, patch)
                    .map_err(|e| fail(e.to_string()))?;
                file.content = new;
            }
            other => return Err(fail(format!("unknown opcode {other:#04x}"))),
        }
        op += 1;
    }
    if open.is_some() {
        return Err(DeltaError::BadOperation {
            index,
            op,
            reason: "the part ends with a file open".into(),
        });
    }
    if next_object.next().is_some() {
        return Err(DeltaError::BadPart {
            index,
            reason: "it made fewer objects than it lists".into(),
        });
    }
    Ok(())
}

/// The header of a file made from mode `mode_index` and xattrs `xattr_index`;
/// the size is filled in by the caller.
fn file_header(part: &PartPayload, mode_index: u64, xattr_index: u64) -> Option<FileHeader> {
    let &(uid, gid, mode) = part.modes.get(usize::try_from(mode_index).ok()?)?;
    let xattrs = part.xattrs.get(usize::try_from(xattr_index).ok()?)?.clone();
    Some(FileHeader {
        size: 0,
        uid,
        gid,
        mode,
        rdev: 0,
        symlink_target: String::new(),
        xattrs,
    })
}

fn checked_metadata(
    index: usize,
    name: ObjectName,
    bytes: Vec<u8>,
) -> Result<DeltaObject, DeltaError> {
    let actual = Checksum::digest(&bytes);
    if actual != name.checksum {
        return Err(DeltaError::ObjectMismatch {
            index,
            object: name,
            actual: actual.to_hex(),
        });
    }
    Ok(DeltaObject::Metadata { name, bytes })
}

/// A file object from `header` and `content` (a symlink's content is its
/// target), checked against `name`.
fn checked_file(
    index: usize,
    name: ObjectName,
    mut header: FileHeader,
    content: Vec<u8>,
) -> Result<DeltaObject, DeltaError> {
    let bad = |reason: &str| DeltaError::BadPart {
        index,
        reason: format!("{name}: {reason}"),
    };
    let content = if header.is_symlink() {
        // libostree takes the target up to the first NUL (g_strndup).
        let end = content
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(content.len());
        header.symlink_target = String::from_utf8(content[..end].to_vec())
            .map_err(|_| bad("a symlink target that is not UTF-8"))?;
        header.size = 0;
        Vec::new()
    } else if header.is_regular() {
        header.size = content.len() as u64;
        content
    } else {
        return Err(bad("neither a regular file nor a symlink"));
    };
    let actual = header.object_checksum(&content);
    if actual != name.checksum {
        return Err(DeltaError::ObjectMismatch {
            index,
            object: name,
            actual: actual.to_hex(),
        });
    }
    Ok(DeltaObject::File {
        name,
        header,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::ObjectType;

    const REGULAR: u32 = libc::S_IFREG | 0o644;

    /// The name of a regular file holding `content`.
    fn file_name(content: &[u8]) -> ObjectName {
        let header = FileHeader {
            size: content.len() as u64,
            uid: 0,
            gid: 0,
            mode: REGULAR,
            rdev: 0,
            symlink_target: String::new(),
            xattrs: vec![],
        };
        ObjectName::new(header.object_checksum(content), ObjectType::File)
    }

    fn run(
        objects: Vec<ObjectName>,
        data: &[u8],
        ops: &[u8],
    ) -> Result<Vec<DeltaObject>, DeltaError> {
        let header = PartHeader {
            checksum: Checksum([0; 32]),
            size: 0,
            uncompressed_size: 0,
            objects,
        };
        let part = PartPayload {
            modes: vec![(0, 0, REGULAR)],
            xattrs: vec![vec![]],
            data: data.to_vec(),
            operations: ops.to_vec(),
        };
        let old = b"old content".to_vec();
        let mut made = Vec::new();
        execute_part(0, &header, &part, &mut |_| Ok(old.clone()), &mut |object| {
            made.push(object);
            Ok(())
        })?;
        Ok(made)
    }

    #[test]
    fn open_write_close_makes_a_checked_file() {
        let name = file_name(b"hello");
        // open (mode 0, xattrs 0, size 5), write 5 bytes at 0, close.
        let made = run(vec![name], b"hello", &[OPEN, 0, 0, 5, WRITE, 5, 0, CLOSE]).unwrap();
        assert!(matches!(&made[..], [DeltaObject::File { content, .. }] if content == b"hello"));

        let err = run(vec![name], b"jello", &[OPEN, 0, 0, 5, WRITE, 5, 0, CLOSE]).unwrap_err();
        assert!(matches!(err, DeltaError::ObjectMismatch { .. }), "{err}");
    }

    #[test]
    fn out_of_bounds_operations_are_refused() {
        let name = file_name(b"hello");
        let cases: [(&[u8], &str); 6] = [
            (&[WRITE, 1, 0], "write with no file open"),
            (&[OPEN, 0, 0, 5, WRITE, 9, 0], "outside the part"),
            (&[OPEN, 0, 0, 2, WRITE, 5, 0], "past the end of the file"),
            (&[OPEN, 0, 7, 5], "out of range"),
            (&[OPEN, 0, 0, 5, WRITE, 2, 0], "ends with a file open"),
            (&[0x7f], "unknown opcode"),
        ];
        for (ops, expected) in cases {
            let err = run(vec![name], b"hello", ops).unwrap_err().to_string();
            assert!(err.contains(expected), "{ops:?}: {err}");
        }
        // A bspatch whose control says to write 9 bytes into a 5-byte file.
        let mut data = vec![0u8; 32];
        data.extend(9u64.to_le_bytes());
        data.extend([0u8; 16]);
        let ops = [OPEN, 0, 0, 5, SET_READ_SOURCE, 0, BSPATCH, 32, 24];
        let err = run(vec![name], &data, &ops).unwrap_err().to_string();
        assert!(err.contains("writes past"), "{err}");
        // More objects made than listed.
        let err = run(vec![], b"hello", &[OPEN, 0, 0, 5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("more objects than the part lists"), "{err}");
    }
}
