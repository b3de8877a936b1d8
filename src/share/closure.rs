//! A commit's closure in a local repository: the commit, its detached metadata,
//! and every dirtree, dirmeta and file object its tree names.

use std::collections::HashSet;

use crate::repo::store::Repo;
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};

/// Every object of `commit`'s closure in `repo`, each once: the commit, its
/// detached metadata (when stored), then dirmetas, dirtrees and files, depth first.
///
/// Metadata objects are read to walk the tree, so a missing or corrupt commit,
/// dirtree or dirmeta is an error ([`RepoError::MissingObject`] when missing); file
/// objects are only named, not opened: check them with [`Repo::has_object`].
pub fn closure(repo: &Repo, commit: &Checksum) -> Result<Vec<ObjectName>, RepoError> {
    let (commit_object, _) = repo.load_commit(commit)?;
    let mut out = vec![ObjectName::new(*commit, ObjectType::Commit)];
    let meta = ObjectName::new(*commit, ObjectType::CommitMeta);
    if repo.has_object(&meta) {
        out.push(meta);
    }
    let mut seen_meta = HashSet::new();
    let mut seen_trees = HashSet::new();
    let mut seen_files = HashSet::new();
    let root_meta = ObjectName::new(commit_object.root_meta, ObjectType::DirMeta);
    repo.load_dirmeta(&commit_object.root_meta)?;
    seen_meta.insert(commit_object.root_meta);
    out.push(root_meta);
    let mut pending = vec![commit_object.root_tree];
    while let Some(tree_checksum) = pending.pop() {
        if !seen_trees.insert(tree_checksum) {
            continue;
        }
        let tree = repo.load_dirtree(&tree_checksum)?;
        out.push(ObjectName::new(tree_checksum, ObjectType::DirTree));
        for file in &tree.files {
            if seen_files.insert(file.checksum) {
                out.push(ObjectName::new(file.checksum, ObjectType::File));
            }
        }
        for dir in &tree.dirs {
            if seen_meta.insert(dir.meta) {
                repo.load_dirmeta(&dir.meta)?;
                out.push(ObjectName::new(dir.meta, ObjectType::DirMeta));
            }
            pending.push(dir.tree);
        }
    }
    Ok(out)
}

/// Whether `commit` can be served completely from `repo`: its pull finished (no
/// `.commitpartial` marker) and every object of its closure is stored.
pub fn is_complete(repo: &Repo, commit: &Checksum) -> bool {
    if repo.is_commit_partial(commit) {
        return false;
    }
    match closure(repo, commit) {
        Ok(objects) => objects.iter().all(|name| repo.has_object(name)),
        Err(_) => false,
    }
}
