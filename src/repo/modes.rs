//! File objects in every repository mode, as libostree 2022.7 stores them
//! (`write_content_object` and `commit_loose_regfile_object` in
//! `ostree-repo-commit.c`, `_ostree_repo_load_file_bare` in `ostree-repo.c`).
//!
//! A file object's checksum is the same in every mode (file header + content), so
//! objects always travel as `.filez` and are verified as such; only how the
//! verified object lands on disk differs:
//!
//! | mode | `objects/XX/REST.` | regular file | symlink |
//! |---|---|---|---|
//! | archive | `filez` | header + raw deflate, 0644 | header only |
//! | bare | `file` | the content; owner, mode, xattrs, mtime 0 | a symlink, owner and xattrs (lchown, lsetxattr) |
//! | bare-user | `file` | the content; mode `(mode & 0775) \| 0400`, mtime 0, `user.ostreemeta` | a 0644 regular file holding the target and a NUL, mtime 0, `user.ostreemeta` |
//! | bare-user-only | `file` | the content; the header's mode, mtime 0 | a symlink |
//!
//! `user.ostreemeta` is the GVariant `(uuua(ayay))`: uid, gid and the full mode
//! (file type included) as big-endian `u32`, then the header's xattrs as they are.
//! Reading back: bare takes owner and mode from `lstat` and every xattr (sorted by
//! name, as libostree reads them); bare-user takes them from `user.ostreemeta`;
//! bare-user-only reports uid 0, gid 0 and no xattrs.
//!
//! What a mode cannot hold is refused ([`cannot_hold`]) after the object is
//! verified and before anything of it is visible. libostree refuses the same modes
//! for bare-user-only (bits outside 0775); for an owner or xattrs there it stores the
//! file anyway and its own `ostree fsck` then calls the object corrupt, so Ferry
//! refuses those too.

use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use glib::prelude::*;
use glib::Variant;
use sha2::{Digest, Sha256};

use crate::repo::checksum::ObjectName;
use crate::repo::config::RepoMode;
use crate::repo::error::{RepoError, Result};
use crate::repo::filez::{open_filez, read_filez, verify_filez, FileHeader, FilezPart};
use crate::repo::objects::{variant_from_bytes, xattrs_from_variant, xattrs_to_variant, Xattrs};

/// Where bare-user keeps owner, mode and xattrs.
pub const OSTREEMETA: &str = "user.ostreemeta";
const OSTREEMETA_TYPE: &str = "(uuua(ayay))";
/// A symlink target longer than this cannot be a symlink (and libostree reads no
/// more of a bare-user symlink object).
const PATH_MAX: usize = 4096;
const BUFFER: usize = 128 * 1024;

/// Why `mode` cannot store a file object with this header faithfully (so that
/// reading it back gives the same checksum), or `None` when it can.
pub fn cannot_hold(mode: RepoMode, header: &FileHeader) -> Option<String> {
    if mode.is_archive() || mode == RepoMode::BareUser {
        // The header (or user.ostreemeta) keeps everything.
        return None;
    }
    let permissions = header.mode & !libc::S_IFMT;
    if header.is_symlink() {
        if permissions != 0o777 {
            return Some(format!(
                "symlink mode 0{:o}: a symlink's permissions are always 0777",
                header.mode
            ));
        }
        if header.symlink_target.len() >= PATH_MAX {
            return Some("symlink target longer than PATH_MAX".into());
        }
    } else if permissions & !0o7777 != 0 {
        return Some(format!("mode 0{:o} has unknown bits", header.mode));
    }
    match mode {
        RepoMode::Bare => {
            let names = header.xattrs.iter().map(|(name, _)| name);
            if names
                .clone()
                .any(|name| CStr::from_bytes_with_nul(name).is_err())
            {
                return Some("an extended attribute name is not a C string".into());
            }
            // Read back sorted (as libostree reads xattrs): the header must be too.
            if !header.xattrs.windows(2).all(|pair| pair[0].0 < pair[1].0) {
                return Some("extended attributes not in sorted order".into());
            }
            None
        }
        RepoMode::BareUserOnly => {
            if header.is_regular() && permissions & !0o775 != 0 {
                // libostree's words (`_ostree_validate_bareuseronly_mode`).
                return Some(format!(
                    "invalid mode 0{:04o} with bits 0{:04o} (no setuid, setgid, sticky or \
                     world-writable files)",
                    header.mode,
                    permissions & !0o775
                ));
            }
            if header.uid != 0 || header.gid != 0 {
                return Some(format!(
                    "owner {}:{} (bare-user-only keeps no owner)",
                    header.uid, header.gid
                ));
            }
            if !header.xattrs.is_empty() {
                return Some("extended attributes (bare-user-only keeps none)".into());
            }
            None
        }
        RepoMode::ArchiveZ2 | RepoMode::Archive | RepoMode::BareUser => None,
    }
}

/// Verifies the `.filez` read from `source` against `name` and writes it at `path`
/// in `mode`'s format (not archive), streaming. Owner, setuid bits and xattrs are
/// applied only once the object is verified (as libostree does, so a forged object
/// is never a setuid file, even in staging). Returns the bytes read from `source`.
/// On error, whatever was created at `path` is the caller's to remove.
pub(crate) fn write_from_filez(
    mode: RepoMode,
    source: impl Read,
    name: &ObjectName,
    path: &Path,
) -> Result<u64> {
    debug_assert!(!mode.is_archive());
    let mut read = 0u64;
    let mut refusal = None;
    let mut out: Option<BufWriter<File>> = None;
    let header = read_filez(
        source,
        &name.checksum,
        &mut |raw| {
            read += raw.len() as u64;
            Ok(())
        },
        &mut |part| match part {
            FilezPart::Header(header) => {
                refusal = cannot_hold(mode, header);
                // Refused: verified to the end all the same (a forged header is the
                // source's fault), but nothing is written.
                let physical_file = header.is_regular() || mode == RepoMode::BareUser;
                if refusal.is_none() && physical_file {
                    let mut writer = BufWriter::with_capacity(BUFFER, create_file(path)?);
                    if header.is_symlink() {
                        // bare-user: the target and a NUL, so it can be mapped.
                        writer
                            .write_all(header.symlink_target.as_bytes())
                            .and_then(|()| writer.write_all(&[0]))
                            .map_err(|e| RepoError::io(path, e))?;
                    }
                    out = Some(writer);
                }
                Ok(())
            }
            FilezPart::Content(chunk) => match out.as_mut() {
                Some(writer) => writer.write_all(chunk).map_err(|e| RepoError::io(path, e)),
                None => Ok(()),
            },
        },
    )?;
    if let Some(reason) = refusal {
        return Err(RepoError::CannotHold {
            name: *name,
            mode: mode.as_str(),
            reason,
        });
    }
    match out {
        Some(writer) => {
            let file = writer
                .into_inner()
                .map_err(|e| RepoError::io(path, e.into_error()))?;
            apply_to_file(mode, &file, &header).map_err(|e| RepoError::io(path, e))?;
            crate::repo::store::start_writeback(&file);
        }
        None => make_symlink(mode, &header, path).map_err(|e| RepoError::io(path, e))?,
    }
    Ok(read)
}

/// A fresh file, readable only by its owner until its mode is applied.
fn create_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(|e| RepoError::io(path, e))
}

fn cvt(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Owner, mode, xattrs and modification time of a verified regular file object
/// (or a bare-user symlink object), as `commit_loose_regfile_object` sets them.
fn apply_to_file(mode: RepoMode, file: &File, header: &FileHeader) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let permissions = header.mode & 0o7777;
    match mode {
        RepoMode::Bare => {
            // chown first: it clears setuid bits that a later chmod sets again.
            cvt(unsafe { libc::fchown(fd, header.uid, header.gid) })?;
            cvt(unsafe { libc::fchmod(fd, permissions) })?;
            for (name, value) in &header.xattrs {
                let name = CStr::from_bytes_with_nul(name).map_err(io::Error::other)?;
                cvt(unsafe {
                    libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
                })?;
            }
        }
        RepoMode::BareUser => {
            let meta = ostreemeta_bytes(header);
            let key = CString::new(OSTREEMETA).expect("no NUL");
            cvt(unsafe { libc::fsetxattr(fd, key.as_ptr(), meta.as_ptr().cast(), meta.len(), 0) })?;
            // Never setuid, always readable by the owner; a symlink object 0644.
            let content_mode = if header.is_regular() {
                (permissions & 0o775) | 0o400
            } else {
                0o644
            };
            cvt(unsafe { libc::fchmod(fd, content_mode) })?;
        }
        RepoMode::BareUserOnly => cvt(unsafe { libc::fchmod(fd, permissions) })?,
        RepoMode::ArchiveZ2 | RepoMode::Archive => unreachable!("archive objects are .filez"),
    }
    // libostree sets OSTREE_TIMESTAMP (0) for tools that compare modification times.
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    ];
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) })
}

/// A verified symlink object of bare or bare-user-only: a real symlink (bare also
/// gives it its owner and xattrs; its mtime is left alone, as libostree does).
fn make_symlink(mode: RepoMode, header: &FileHeader, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(&header.symlink_target, path)?;
    if mode == RepoMode::Bare {
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        cvt(unsafe { libc::lchown(c_path.as_ptr(), header.uid, header.gid) })?;
        for (name, value) in &header.xattrs {
            let name = CStr::from_bytes_with_nul(name).map_err(io::Error::other)?;
            cvt(unsafe {
                libc::lsetxattr(
                    c_path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            })?;
        }
    }
    Ok(())
}

/// `user.ostreemeta` for `header`: `(uuua(ayay))`, integers big-endian.
pub fn ostreemeta_bytes(header: &FileHeader) -> Vec<u8> {
    Variant::tuple_from_iter([
        header.uid.to_be().to_variant(),
        header.gid.to_be().to_variant(),
        header.mode.to_be().to_variant(),
        xattrs_to_variant(&header.xattrs),
    ])
    .data()
    .to_vec()
}

/// uid, gid, mode and xattrs from `user.ostreemeta` bytes.
fn parse_ostreemeta(data: &[u8]) -> Result<(u32, u32, u32, Xattrs)> {
    let v = variant_from_bytes(OSTREEMETA, OSTREEMETA_TYPE, data)?;
    let u32_at = |i: usize| u32::from_be(v.child_value(i).get::<u32>().unwrap_or_default());
    Ok((
        u32_at(0),
        u32_at(1),
        u32_at(2),
        xattrs_from_variant(&v.child_value(3)),
    ))
}

/// The content of a stored file object.
pub enum FileContent {
    Archive(flate2::bufread::DeflateDecoder<BufReader<File>>),
    Plain(File),
    Empty,
}

impl Read for FileContent {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            FileContent::Archive(reader) => reader.read(buf),
            FileContent::Plain(file) => file.read(buf),
            FileContent::Empty => Ok(0),
        }
    }
}

/// A stored file object read back in any mode: the header it stands for (what its
/// checksum covers) and its content.
pub struct FileObject {
    pub header: FileHeader,
    pub content: FileContent,
}

fn open_error(name: &ObjectName, path: &Path, e: io::Error) -> RepoError {
    match e.kind() {
        io::ErrorKind::NotFound => RepoError::MissingObject(*name),
        _ => RepoError::io(path, e),
    }
}

fn corrupt(name: &ObjectName, reason: impl Into<String>) -> RepoError {
    RepoError::CorruptObject {
        name: *name,
        reason: reason.into(),
    }
}

/// Opens the file object `name` stored at `path` in a repository of `mode`.
pub fn open_file_object(mode: RepoMode, path: &Path, name: &ObjectName) -> Result<FileObject> {
    if mode.is_archive() {
        let file = File::open(path).map_err(|e| open_error(name, path, e))?;
        let (header, content) = open_filez(BufReader::new(file), name)?;
        return Ok(FileObject {
            header,
            content: FileContent::Archive(content),
        });
    }
    let meta = fs::symlink_metadata(path).map_err(|e| open_error(name, path, e))?;
    let (uid, gid) = match mode {
        RepoMode::Bare => (meta.uid(), meta.gid()),
        _ => (0, 0),
    };
    let object = if meta.file_type().is_symlink() {
        if mode == RepoMode::BareUser {
            return Err(corrupt(name, "a symlink in a bare-user repository"));
        }
        let target = fs::read_link(path).map_err(|e| RepoError::io(path, e))?;
        let symlink_target = target
            .into_os_string()
            .into_string()
            .map_err(|_| corrupt(name, "symlink target is not UTF-8"))?;
        let xattrs = match mode {
            RepoMode::Bare => path_xattrs(path).map_err(|e| RepoError::io(path, e))?,
            _ => Vec::new(),
        };
        FileObject {
            header: FileHeader {
                size: 0,
                uid,
                gid,
                mode: meta.mode(),
                rdev: 0,
                symlink_target,
                xattrs,
            },
            content: FileContent::Empty,
        }
    } else if meta.file_type().is_file() {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_error(name, path, e))?;
        let mut header = FileHeader {
            size: meta.len(),
            uid,
            gid,
            mode: meta.mode(),
            rdev: 0,
            symlink_target: String::new(),
            xattrs: Vec::new(),
        };
        match mode {
            RepoMode::Bare => {
                header.xattrs = fd_xattrs(&file).map_err(|e| RepoError::io(path, e))?;
            }
            RepoMode::BareUser => {
                let data = fd_xattr(&file, OSTREEMETA)
                    .map_err(|e| RepoError::io(path, e))?
                    .ok_or_else(|| corrupt(name, format!("no {OSTREEMETA} attribute")))?;
                let (uid, gid, mode, xattrs) = parse_ostreemeta(&data)?;
                (header.uid, header.gid, header.mode, header.xattrs) = (uid, gid, mode, xattrs);
            }
            _ => {}
        }
        if mode == RepoMode::BareUser && header.is_symlink() {
            // The target and a NUL (libostree reads up to PATH_MAX + 1 bytes).
            let mut target = Vec::new();
            (&mut file)
                .take(PATH_MAX as u64 + 1)
                .read_to_end(&mut target)
                .map_err(|e| RepoError::io(path, e))?;
            let end = target.iter().position(|&b| b == 0).unwrap_or(target.len());
            target.truncate(end);
            header.symlink_target = String::from_utf8(target)
                .map_err(|_| corrupt(name, "symlink target is not UTF-8"))?;
            header.size = 0;
            FileObject {
                header,
                content: FileContent::Empty,
            }
        } else {
            FileObject {
                header,
                content: FileContent::Plain(file),
            }
        }
    } else {
        return Err(corrupt(name, "neither a regular file nor a symlink"));
    };
    object.header.validate(name)?;
    Ok(object)
}

/// Checks the file object `name` stored at `path` against its name.
pub fn verify_file_object(mode: RepoMode, path: &Path, name: &ObjectName) -> Result<()> {
    if mode.is_archive() {
        // Stricter than reading it back: the deflate framing is checked too.
        let file = File::open(path).map_err(|e| open_error(name, path, e))?;
        verify_filez(file, &name.checksum, &mut io::sink())?;
        return Ok(());
    }
    let mut object = open_file_object(mode, path, name)?;
    let mut hasher = Sha256::new();
    hasher.update(object.header.checksum_header_bytes());
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match object.content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RepoError::io(path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != object.header.size {
        return Err(corrupt(name, "changed while it was read"));
    }
    let actual = crate::repo::Checksum(hasher.finalize().into());
    if actual != name.checksum {
        return Err(RepoError::ChecksumMismatch {
            expected: *name,
            actual: actual.to_hex(),
        });
    }
    Ok(())
}

/// Splits a `listxattr` buffer into names (each with its NUL), sorted.
fn xattr_names(list: &[u8]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = list
        .split_inclusive(|&b| b == 0)
        .filter(|name| name.len() > 1)
        .map(<[u8]>::to_vec)
        .collect();
    names.sort();
    names
}

/// Calls `get(buf)` (a `*getxattr`/`*listxattr`) with a buffer large enough.
fn sized(mut get: impl FnMut(&mut [u8]) -> isize) -> io::Result<Option<Vec<u8>>> {
    loop {
        let size = get(&mut []);
        if size < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        let got = get(&mut buf);
        if got < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Grew between the two calls: ask again.
                Some(libc::ERANGE) => continue,
                Some(libc::ENODATA) => return Ok(None),
                _ => return Err(e),
            }
        }
        buf.truncate(got as usize);
        return Ok(Some(buf));
    }
}

fn buf_ptr(buf: &mut [u8]) -> *mut libc::c_void {
    if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    }
}

fn fd_xattr(file: &File, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = CString::new(name)?;
    sized(|buf| unsafe {
        libc::fgetxattr(file.as_raw_fd(), name.as_ptr(), buf_ptr(buf), buf.len())
    })
}

/// Every xattr of an open file, sorted by name, names with their NUL.
fn fd_xattrs(file: &File) -> io::Result<Xattrs> {
    let fd = file.as_raw_fd();
    let list = sized(|buf| unsafe { libc::flistxattr(fd, buf_ptr(buf).cast(), buf.len()) })?;
    let mut xattrs = Vec::new();
    for name in xattr_names(&list.unwrap_or_default()) {
        let c_name = CStr::from_bytes_with_nul(&name).map_err(io::Error::other)?;
        let value =
            sized(|buf| unsafe { libc::fgetxattr(fd, c_name.as_ptr(), buf_ptr(buf), buf.len()) })?;
        // Removed since it was listed: it is not there.
        if let Some(value) = value {
            xattrs.push((name, value));
        }
    }
    Ok(xattrs)
}

/// Every xattr of a symlink itself, sorted by name.
fn path_xattrs(path: &Path) -> io::Result<Xattrs> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let p = c_path.as_ptr();
    let list = sized(|buf| unsafe { libc::llistxattr(p, buf_ptr(buf).cast(), buf.len()) })?;
    let mut xattrs = Vec::new();
    for name in xattr_names(&list.unwrap_or_default()) {
        let c_name = CStr::from_bytes_with_nul(&name).map_err(io::Error::other)?;
        let value =
            sized(|buf| unsafe { libc::lgetxattr(p, c_name.as_ptr(), buf_ptr(buf), buf.len()) })?;
        if let Some(value) = value {
            xattrs.push((name, value));
        }
    }
    Ok(xattrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(mode: u32) -> FileHeader {
        FileHeader {
            size: 0,
            uid: 0,
            gid: 0,
            mode: libc::S_IFREG | mode,
            rdev: 0,
            symlink_target: String::new(),
            xattrs: vec![],
        }
    }

    /// Bytes taken from `ostree` 2022.7 (`ostree init --mode=bare-user`, a commit
    /// of a file owned by 1000:1000 with mode 0666; `getxattr user.ostreemeta`).
    #[test]
    fn ostreemeta_matches_ostree() {
        let header = FileHeader {
            uid: 1000,
            gid: 1000,
            ..regular(0o666)
        };
        assert_eq!(
            hex::encode(ostreemeta_bytes(&header)),
            "000003e8000003e8000081b6"
        );
        let with_xattrs = FileHeader {
            xattrs: vec![
                (b"security.test\0".to_vec(), b"sec".to_vec()),
                (b"user.foo\0".to_vec(), b"bar".to_vec()),
            ],
            ..regular(0o644)
        };
        let bytes = ostreemeta_bytes(&with_xattrs);
        assert_eq!(
            hex::encode(&bytes),
            "0000000000000000000081a473656375726974792e74657374007365630e757365722e666f6f0062617209121f"
        );
        let (uid, gid, mode, xattrs) = parse_ostreemeta(&bytes).unwrap();
        assert_eq!((uid, gid, mode), (0, 0, libc::S_IFREG | 0o644));
        assert_eq!(xattrs, with_xattrs.xattrs);
    }

    /// A `.filez` of `header` + `content` and its checksum.
    fn filez(header: &FileHeader, content: &[u8]) -> (Vec<u8>, ObjectName) {
        let mut bytes = Vec::new();
        let checksum =
            crate::repo::filez::write_filez(header, &mut &content[..], &mut bytes).unwrap();
        (
            bytes,
            ObjectName::new(checksum, crate::repo::ObjectType::File),
        )
    }

    /// A setuid object is refused by bare-user-only only once it is verified: a
    /// forged header that does not match the name is the source's fault (a bad
    /// object), not something the destination cannot hold. Nothing is written
    /// either way.
    #[test]
    fn refusal_comes_after_verification_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        let content = b"#!/bin/sh\n";
        let setuid = FileHeader {
            size: content.len() as u64,
            ..regular(0o4755)
        };
        let (bytes, name) = filez(&setuid, content);
        let error = write_from_filez(RepoMode::BareUserOnly, &bytes[..], &name, &path).unwrap_err();
        assert!(matches!(error, RepoError::CannotHold { .. }), "{error}");
        assert!(error.is_local());
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "something was written"
        );

        // The same header in front of other content: named as the honest object.
        let (forged, _) = filez(&setuid, b"#!/bin/sh\nrm\n");
        let error =
            write_from_filez(RepoMode::BareUserOnly, &forged[..], &name, &path).unwrap_err();
        assert!(!error.is_local(), "{error}");
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "something was written"
        );

        // bare-user holds it, without the setuid bit on disk.
        let size = write_from_filez(RepoMode::BareUser, &bytes[..], &name, &path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        let object = open_file_object(RepoMode::BareUser, &path, &name).unwrap();
        assert_eq!(object.header, setuid);
        verify_file_object(RepoMode::BareUser, &path, &name).unwrap();
    }

    #[test]
    fn what_each_mode_holds() {
        let setuid = regular(0o4755);
        let world_writable = regular(0o666);
        let owned = FileHeader {
            uid: 1000,
            ..regular(0o644)
        };
        let unsorted = FileHeader {
            xattrs: vec![
                (b"user.b\0".to_vec(), vec![]),
                (b"user.a\0".to_vec(), vec![]),
            ],
            ..regular(0o644)
        };
        for header in [&setuid, &world_writable, &owned, &unsorted] {
            assert_eq!(cannot_hold(RepoMode::BareUser, header), None);
            assert_eq!(cannot_hold(RepoMode::ArchiveZ2, header), None);
        }
        assert_eq!(cannot_hold(RepoMode::Bare, &setuid), None);
        assert!(cannot_hold(RepoMode::Bare, &unsorted).is_some());
        let refusal = cannot_hold(RepoMode::BareUserOnly, &setuid).unwrap();
        assert!(
            refusal.contains("invalid mode 0104755 with bits 04000"),
            "{refusal}"
        );
        assert!(cannot_hold(RepoMode::BareUserOnly, &world_writable).is_some());
        assert!(cannot_hold(RepoMode::BareUserOnly, &owned).is_some());
        assert_eq!(cannot_hold(RepoMode::BareUserOnly, &regular(0o775)), None);
    }
}
