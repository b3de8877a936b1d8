//! Checking a commit out into a directory (as the user running Ferry, like
//! `ostree checkout --user-mode`).
//!
//! Every entry is created fresh (`O_EXCL`, `mkdir`, `symlink`), so nothing is ever
//! written through an existing symlink; tree names were validated when parsed, and a
//! name that appears twice in one directory is refused, so a tree cannot smuggle a
//! write outside the target.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::error::{RepoError, Result};
use crate::repo::objects::validate_tree_name;
use crate::repo::store::Repo;

/// Checks `commit` out into `target`, which must not exist yet.
pub fn checkout(repo: &Repo, commit: &Checksum, target: &Path) -> Result<()> {
    let (commit, _) = repo.load_commit(commit)?;
    fs::create_dir(target).map_err(|e| RepoError::io(target, e))?;
    checkout_dir(repo, &commit.root_tree, &commit.root_meta, target)
}

fn checkout_dir(repo: &Repo, tree: &Checksum, meta: &Checksum, dir: &Path) -> Result<()> {
    let tree = repo.load_dirtree(tree)?;
    let meta = repo.load_dirmeta(meta)?;
    // Parsing validated the names already; checking again here keeps checkout safe
    // even if a tree ever reaches it by another path.
    for file in &tree.files {
        validate_tree_name(&file.name)?;
        checkout_file(repo, &file.checksum, &dir.join(&file.name))?;
    }
    for sub in &tree.dirs {
        validate_tree_name(&sub.name)?;
        let path = dir.join(&sub.name);
        fs::create_dir(&path).map_err(|e| RepoError::io(&path, e))?;
        checkout_dir(repo, &sub.tree, &sub.meta, &path)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode & 0o7777))
        .map_err(|e| RepoError::io(dir, e))
}

fn checkout_file(repo: &Repo, checksum: &Checksum, path: &Path) -> Result<()> {
    let name = ObjectName::new(*checksum, ObjectType::File);
    let object = repo.open_file_object(&name)?;
    let (header, mut content) = (object.header, object.content);
    let mut hasher = Sha256::new();
    hasher.update(header.checksum_header_bytes());
    if header.is_symlink() {
        std::os::unix::fs::symlink(&header.symlink_target, path)
            .map_err(|e| RepoError::io(path, e))?;
    } else {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(path)
            .map_err(|e| RepoError::io(path, e))?;
        let mut chunk = vec![0u8; 128 * 1024];
        let mut total = 0u64;
        if header.size > 0 {
            loop {
                let n = content.read(&mut chunk).map_err(|e| corrupt(&name, e))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                hasher.update(&chunk[..n]);
                out.write_all(&chunk[..n])
                    .map_err(|e| RepoError::io(path, e))?;
            }
        }
        if total != header.size {
            return Err(RepoError::CorruptObject {
                name,
                reason: format!("content is {total} bytes, header says {}", header.size),
            });
        }
        // As `ostree checkout --user-mode`: never setuid or setgid files (a checkout
        // run as root must not create setuid-root programs); directories keep theirs.
        let mode = header.mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);
        out.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| RepoError::io(path, e))?;
    }
    let actual = Checksum(hasher.finalize().into());
    if actual != *checksum {
        return Err(RepoError::ChecksumMismatch {
            expected: name,
            actual: actual.to_hex(),
        });
    }
    Ok(())
}

fn corrupt(name: &ObjectName, e: io::Error) -> RepoError {
    RepoError::CorruptObject {
        name: *name,
        reason: e.to_string(),
    }
}
