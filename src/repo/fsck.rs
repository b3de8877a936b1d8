//! Consistency check: every object matches its name, every ref and every complete
//! commit has its whole closure.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::closure::TreeWalker;
use crate::repo::error::{RepoError, Result};
use crate::repo::objects::verify_metadata;
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
        ObjectType::File => repo.verify_file_object(name)?,
        _ => {
            verify_metadata(name, &repo.read_object_bytes(name)?)?;
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
    // One walker for all commits: a tree shared by several is checked once.
    let mut walker = TreeWalker::new();
    for name in objects.iter().filter(|n| n.kind == ObjectType::Commit) {
        if repo.is_commit_partial(&name.checksum) {
            report.partial_commits.push(name.checksum);
            continue;
        }
        report.commits_checked += 1;
        if let Err(e) = check_closure(repo, &name.checksum, &present, &mut walker) {
            report
                .problems
                .push(format!("commit {}: {e}", name.checksum));
        }
    }
    Ok(report)
}

/// Checks that every object `commit`'s tree names is in `present`.
fn check_closure(
    repo: &Repo,
    commit: &Checksum,
    present: &HashSet<ObjectName>,
    walker: &mut TreeWalker,
) -> Result<()> {
    let (commit, _) = repo.load_commit(commit)?;
    walker.walk(&commit, &mut |tree| repo.load_dirtree(tree), &mut |name| {
        if present.contains(&name) {
            Ok(())
        } else {
            Err(RepoError::MissingObject(name))
        }
    })
}
