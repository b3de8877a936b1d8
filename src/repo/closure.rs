//! A commit's closure: the commit, its detached metadata, and every dirmeta,
//! dirtree and file object its tree names. [`TreeWalker`] is the one walk of a
//! tree that fsck, sharing, prepare-usb and the local copier all use; how a
//! dirtree is obtained (read from the store, fetched from a source) is theirs.

use std::collections::HashSet;

use crate::repo::objects::{Commit, DirTree};
use crate::repo::store::Repo;
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};

/// Walks trees depth first, naming each dirmeta, dirtree and file object once over
/// the walker's life (a walker reused for several commits skips what it has seen;
/// an object whose visit failed counts as unseen, so a later commit reports it too).
#[derive(Default)]
pub struct TreeWalker {
    metas: HashSet<Checksum>,
    trees: HashSet<Checksum>,
    files: HashSet<Checksum>,
}

impl TreeWalker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks `commit`'s tree: `visit` gets the root dirmeta, then for each
    /// directory its dirtree (before `load_tree` is asked for it), its files and its
    /// subdirectories' dirmetas. The first error of either stops the walk.
    pub fn walk<E>(
        &mut self,
        commit: &Commit,
        load_tree: &mut dyn FnMut(&Checksum) -> Result<DirTree, E>,
        visit: &mut dyn FnMut(ObjectName) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.metas.contains(&commit.root_meta) {
            visit(ObjectName::new(commit.root_meta, ObjectType::DirMeta))?;
            self.metas.insert(commit.root_meta);
        }
        let mut pending = vec![commit.root_tree];
        while let Some(tree_checksum) = pending.pop() {
            if !self.trees.insert(tree_checksum) {
                continue;
            }
            visit(ObjectName::new(tree_checksum, ObjectType::DirTree))?;
            let tree = load_tree(&tree_checksum)?;
            for file in &tree.files {
                if !self.files.contains(&file.checksum) {
                    visit(ObjectName::new(file.checksum, ObjectType::File))?;
                    self.files.insert(file.checksum);
                }
            }
            for dir in &tree.dirs {
                if !self.metas.contains(&dir.meta) {
                    visit(ObjectName::new(dir.meta, ObjectType::DirMeta))?;
                    self.metas.insert(dir.meta);
                }
                pending.push(dir.tree);
            }
        }
        Ok(())
    }
}

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
    TreeWalker::new().walk(
        &commit_object,
        &mut |tree| repo.load_dirtree(tree),
        &mut |name| {
            if name.kind == ObjectType::DirMeta {
                repo.load_dirmeta(&name.checksum)?;
            }
            out.push(name);
            Ok(())
        },
    )?;
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
