//! A commit's closure: the commit, its detached metadata, and every dirmeta,
//! dirtree and file object its tree names. [`TreeWalker`] is the one walk of a
//! tree that fsck, sharing and the engine (pull, update, prepare-usb) all use; how a
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
        self.walk_from(
            &commit.children(),
            &mut |tree| load_tree(tree).map(Some),
            visit,
        )
    }

    /// Walks from `names` (dirmetas, dirtrees, files; e.g. a dirtree's children):
    /// `visit` gets each one not seen before, and the walk goes on beneath each
    /// dirtree `load_tree` returns. A dirtree it returns `None` for (not stored
    /// yet: a pull fetches it, then walks on from its children) is not entered.
    pub fn walk_from<E>(
        &mut self,
        names: &[ObjectName],
        load_tree: &mut dyn FnMut(&Checksum) -> Result<Option<DirTree>, E>,
        visit: &mut dyn FnMut(ObjectName) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pending: Vec<ObjectName> = names.iter().rev().copied().collect();
        while let Some(name) = pending.pop() {
            let seen = match name.kind {
                ObjectType::DirMeta => &mut self.metas,
                ObjectType::DirTree => &mut self.trees,
                ObjectType::File => &mut self.files,
                // Not part of a tree.
                _ => continue,
            };
            if seen.contains(&name.checksum) {
                continue;
            }
            visit(name)?;
            seen.insert(name.checksum);
            if name.kind != ObjectType::DirTree {
                continue;
            }
            if let Some(tree) = load_tree(&name.checksum)? {
                // Reversed onto the stack: files first, then each subdirectory's
                // dirmeta before its dirtree, as met.
                pending.extend(tree.children().into_iter().rev());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::objects::{DirTreeDir, DirTreeFile};

    fn name(byte: u8, kind: ObjectType) -> ObjectName {
        ObjectName::new(Checksum::digest(&[byte]), kind)
    }

    /// A dirtree with file `f` and subdirectory (`meta`, `tree`).
    fn tree(f: ObjectName, meta: ObjectName, sub: ObjectName) -> DirTree {
        DirTree {
            files: vec![DirTreeFile {
                name: "f".into(),
                checksum: f.checksum,
            }],
            dirs: vec![DirTreeDir {
                name: "d".into(),
                tree: sub.checksum,
                meta: meta.checksum,
            }],
        }
    }

    #[test]
    fn walks_on_beneath_loaded_trees_stops_at_absent_ones_and_names_each_once() {
        let (root, file, meta, sub) = (
            name(1, ObjectType::DirTree),
            name(2, ObjectType::File),
            name(3, ObjectType::DirMeta),
            name(4, ObjectType::DirTree),
        );
        let root_tree = tree(file, meta, sub);
        let mut walker = TreeWalker::new();
        let mut visited = Vec::new();
        // The root is stored, its subdirectory's tree is not (a pull fetches it).
        walker
            .walk_from::<()>(
                &[root, file],
                &mut |c| Ok((*c == root.checksum).then(|| root_tree.clone())),
                &mut |n| {
                    visited.push(n);
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(visited, [root, file, meta, sub]);

        // Walking on from the fetched subdirectory's children: what was met is
        // not named again, the new file is.
        visited.clear();
        let new_file = name(5, ObjectType::File);
        walker
            .walk_from::<()>(&[file, new_file, meta], &mut |_| Ok(None), &mut |n| {
                visited.push(n);
                Ok(())
            })
            .unwrap();
        assert_eq!(visited, [new_file]);
    }
}
