//! Storing what a delta makes: parts into a transaction, and a whole delta from a
//! directory (`ferryctl apply-delta`, as `ostree static-delta apply-offline`).

use std::fs;
use std::io::Read;
use std::path::Path;

use super::{execute_part, DeltaError, DeltaName, DeltaObject, PartPayload, Superblock};
use crate::repo::closure::{self, TreeWalker};
use crate::repo::filez::write_filez;
use crate::repo::objects::{verify_metadata, Commit};
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};

/// What applying a delta did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeltaStats {
    /// Parts run.
    pub parts_applied: usize,
    /// Parts skipped: every object they make was stored already.
    pub parts_skipped: usize,
    /// Objects stored.
    pub objects: usize,
}

/// Runs part `index` (the bytes of its file) and stages what it makes in `txn`.
/// Nothing of a part that fails is kept only if nothing was staged before the
/// failure: objects made before it are each checked, so they stay valid.
pub fn apply_part(
    txn: &Transaction,
    superblock: &Superblock,
    index: usize,
    file: &[u8],
    inline: bool,
) -> Result<usize, DeltaError> {
    let header = &superblock.parts[index];
    let payload = PartPayload::open(index, header, file, inline)?;
    let repo = txn.repo().clone();
    let mut stored = 0;
    execute_part(
        index,
        header,
        &payload,
        &mut |checksum| read_content(&repo, checksum),
        &mut |object| {
            if txn.has_object(object.name()) {
                return Ok(());
            }
            stage(txn, object)?;
            stored += 1;
            Ok(())
        },
    )?;
    Ok(stored)
}

/// Whether every object part `index` makes is stored already.
pub fn has_all_objects(txn: &Transaction, superblock: &Superblock, index: usize) -> bool {
    superblock.parts[index]
        .objects
        .iter()
        .all(|name| txn.has_object(name))
}

/// Stages one checked object: metadata as it is (after the structural checks
/// every metadata object gets), a file as `.filez`.
fn stage(txn: &Transaction, object: DeltaObject) -> Result<(), DeltaError> {
    match object {
        DeltaObject::Metadata { name, bytes } => {
            verify_metadata(&name, &bytes)?;
            txn.stage_bytes(&name, &bytes)?;
        }
        DeltaObject::File {
            name,
            header,
            content,
        } => {
            // Through `.filez`, the one form every repository mode's writer takes
            // (and checks again as it writes).
            let mut filez = Vec::with_capacity(content.len() / 2 + 256);
            write_filez(&header, &mut content.as_slice(), &mut filez)
                .map_err(|e| RepoError::io(name.relative_path(), e))?;
            txn.stage_filez(&name, filez.as_slice())?;
        }
    }
    Ok(())
}

/// The content of a file object of `repo`, in any mode (a delta's old file).
fn read_content(repo: &Repo, checksum: &Checksum) -> Result<Vec<u8>, RepoError> {
    let name = ObjectName::new(*checksum, ObjectType::File);
    let mut object = repo.open_file_object(&name)?;
    let mut out = Vec::with_capacity(object.header.size.min(64 << 20) as usize);
    object
        .content
        .read_to_end(&mut out)
        .map_err(|e| RepoError::io(name.relative_path(), e))?;
    Ok(out)
}

/// Applies the delta at `path` to `repo`: a directory holding `superblock` and
/// the parts `0`, `1`, …, or the superblock file itself with its parts beside it
/// (as `ostree static-delta generate --filename` writes them). Stores every
/// object it makes and its commit, no ref (as `ostree static-delta
/// apply-offline`). The delta's from-commit must be complete here; the new
/// commit is stored only once its whole tree is, so an interrupted apply leaves
/// the repository as it was plus checked objects.
pub fn apply_offline(repo: &Repo, path: &Path) -> Result<(Checksum, DeltaStats), DeltaError> {
    let (dir, superblock_path) = if path.is_dir() {
        (path.to_owned(), path.join("superblock"))
    } else {
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        (dir, path.to_owned())
    };
    let read = |path: &Path| fs::read(path).map_err(|e| RepoError::io(path, e));
    let bytes = read(&superblock_path)?;
    let superblock = Superblock::parse(&bytes, None)?;
    let DeltaName { from, to } = superblock.name;
    if let Some(from) = from {
        if !closure::is_complete(repo, &from) {
            return Err(DeltaError::BadSuperblock(format!(
                "it updates from commit {}, which this repository does not hold in full",
                from.to_hex()
            )));
        }
    }
    let absent = (superblock.fallbacks.iter())
        .filter(|f| !repo.has_object(&f.object))
        .count();
    if absent > 0 {
        return Err(DeltaError::BadSuperblock(format!(
            "it leaves {absent} objects to be fetched separately (fallbacks) that this \
             repository does not hold"
        )));
    }
    let txn = repo.begin()?;
    let mut stats = DeltaStats::default();
    for index in 0..superblock.parts.len() {
        if has_all_objects(&txn, &superblock, index) {
            stats.parts_skipped += 1;
            continue;
        }
        let (file, inline) = match superblock.inline_part(index) {
            Some(bytes) => (bytes, true),
            None => (read(&dir.join(index.to_string()))?, false),
        };
        stats.objects += apply_part(&txn, &superblock, index, &file, inline)?;
        stats.parts_applied += 1;
    }
    txn.commit()?;
    // The commit last, and only over a complete tree.
    let commit = Commit::parse(&superblock.commit)?;
    TreeWalker::new()
        .walk(
            &commit,
            &mut |tree| repo.load_dirtree(tree),
            &mut |name| match repo.has_object(&name) {
                true => Ok(()),
                false => Err(RepoError::MissingObject(name)),
            },
        )
        .map_err(|e| {
            DeltaError::BadSuperblock(format!(
                "applying it did not make all of commit {}: {e}",
                to.to_hex()
            ))
        })?;
    let name = ObjectName::new(to, ObjectType::Commit);
    verify_metadata(&name, &superblock.commit)?;
    let txn = repo.begin()?;
    txn.stage_bytes(&name, &superblock.commit)?;
    txn.commit()?;
    Ok((to, stats))
}
