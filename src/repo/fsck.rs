//! Consistency check: every object matches its name, every ref and every complete
//! commit has its whole closure.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::error::{RepoError, Result};
use crate::repo::filez::verify_filez;
use crate::repo::objects::{variant_from_bytes, Commit, DirMeta, DirTree, METADATA_TYPE};
use crate::repo::refs;
use crate::repo::store::Repo;

#[derive(Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub objects_checked: usize,
    pub commits_checked: usize,
    /// Commits whose pull has not finished; their closure may have holes.
    pub partial_commits: Vec<Checksum>,
    /// One plain sentence per problem.
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks one stored object against its name.
pub fn verify_object(repo: &Repo, name: &ObjectName) -> Result<()> {
    match name.kind {
        ObjectType::File => {
            let file = repo.open_object(name)?;
            verify_filez(file, &name.checksum, &mut io::sink())?;
        }
        ObjectType::CommitMeta => {
            variant_from_bytes(
                "detached metadata",
                METADATA_TYPE,
                &repo.read_object_bytes(name)?,
            )?;
        }
        kind => {
            let bytes = repo.read_object_bytes(name)?;
            let actual = Checksum::digest(&bytes);
            if actual != name.checksum {
                return Err(RepoError::ChecksumMismatch {
                    expected: *name,
                    actual: actual.to_hex(),
                });
            }
            match kind {
                ObjectType::Commit => Commit::parse(&bytes).map(drop)?,
                ObjectType::DirTree => DirTree::parse(&bytes).map(drop)?,
                ObjectType::DirMeta => DirMeta::parse(&bytes).map(drop)?,
                _ => {}
            }
        }
    }
    Ok(())
}

pub fn fsck(repo: &Repo, workers: usize) -> Result<FsckReport> {
    let objects = repo.list_objects()?;
    let problems = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                while let Some(name) = objects.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = verify_object(repo, name) {
                        problems.lock().expect("lock").push(e.to_string());
                    }
                }
            });
        }
    });
    let mut report = FsckReport {
        objects_checked: objects.len(),
        problems: problems.into_inner().expect("lock"),
        ..Default::default()
    };

    let present: HashSet<ObjectName> = objects.iter().copied().collect();
    match refs::list_refs(repo.root()) {
        Ok(all) => {
            for (kind, name, checksum) in all {
                if !present.contains(&ObjectName::new(checksum, ObjectType::Commit)) {
                    report.problems.push(format!(
                        "ref {name} ({}) points at missing commit {checksum}",
                        kind.relative_dir().display()
                    ));
                }
            }
        }
        Err(e) => report.problems.push(e.to_string()),
    }
    let mut seen_trees = HashSet::new();
    for name in objects.iter().filter(|n| n.kind == ObjectType::Commit) {
        if repo.is_commit_partial(&name.checksum) {
            report.partial_commits.push(name.checksum);
            continue;
        }
        report.commits_checked += 1;
        if let Err(e) = check_closure(repo, &name.checksum, &present, &mut seen_trees) {
            report
                .problems
                .push(format!("commit {}: {e}", name.checksum));
        }
    }
    Ok(report)
}

fn check_closure(
    repo: &Repo,
    commit: &Checksum,
    present: &HashSet<ObjectName>,
    seen_trees: &mut HashSet<Checksum>,
) -> Result<()> {
    let require = |name: ObjectName| {
        if present.contains(&name) {
            Ok(())
        } else {
            Err(RepoError::MissingObject(name))
        }
    };
    let (commit, _) = repo.load_commit(commit)?;
    require(ObjectName::new(commit.root_meta, ObjectType::DirMeta))?;
    let mut pending = vec![commit.root_tree];
    while let Some(tree) = pending.pop() {
        if !seen_trees.insert(tree) {
            continue;
        }
        require(ObjectName::new(tree, ObjectType::DirTree))?;
        let tree = repo.load_dirtree(&tree)?;
        for file in &tree.files {
            require(ObjectName::new(file.checksum, ObjectType::File))?;
        }
        for dir in &tree.dirs {
            require(ObjectName::new(dir.meta, ObjectType::DirMeta))?;
            pending.push(dir.tree);
        }
    }
    Ok(())
}
