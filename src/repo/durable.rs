//! Durable writes: every fsync, syncfs and atomic replacement Ferry makes goes
//! through here, so a durability fix is made once.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::repo::error::{RepoError, Result};

/// fsyncs a directory, so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| RepoError::io(dir, err))
}

/// Flushes the whole filesystem holding `path`: one call makes a batch of new
/// files durable, far cheaper than an fsync each.
pub fn syncfs(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| RepoError::io(path, e))?;
    // SAFETY: a valid, open file descriptor.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(RepoError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Creates `dir` and its missing parents; each directory created is made durable by
/// an fsync of its parent.
pub fn create_dirs(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = dir.to_path_buf();
    loop {
        match fs::metadata(&current) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(RepoError::io(
                    &current,
                    std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
                ))
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                missing.push(current.clone());
                match current.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => {
                        current = parent.to_path_buf()
                    }
                    _ => break,
                }
            }
            Err(err) => return Err(RepoError::io(&current, err)),
        }
    }
    for created in missing.iter().rev() {
        match fs::create_dir(created) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists && created.is_dir() => {}
            Err(err) => return Err(RepoError::io(created, err)),
        }
        if let Some(parent) = created.parent() {
            if !parent.as_os_str().is_empty() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

/// Replaces `dir/file_name` with `contents` atomically and durably: a temporary file
/// (`.NAME.tmp-…`, a name no ref, config or keyring reader accepts) in `dir`, fsync,
/// rename, fsync of `dir`. The temporary file is removed on failure. Mode 0644
/// (less umask).
pub fn write_atomic(dir: &Path, file_name: &str, contents: &[u8]) -> Result<()> {
    let target = dir.join(file_name);
    let (tmp_path, mut file) = loop {
        let tmp_path = dir.join(format!(
            ".{file_name}.tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp_path)
        {
            Ok(file) => break (tmp_path, file),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(RepoError::io(&tmp_path, err)),
        }
    };
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| RepoError::io(&tmp_path, err))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp_path, &target).map_err(|err| RepoError::io(&target, err))
        });
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(err);
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_dirs_makes_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dirs(&deep).unwrap();
        assert!(deep.is_dir());
        create_dirs(&deep).unwrap();
    }
}
