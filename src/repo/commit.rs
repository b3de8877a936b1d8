//! The one commit transaction every pull uses (`ferryctl pull`, `ferryctl update`,
//! the window, prepare-usb): how a commit's objects become durable and when its
//! ref moves.
//!
//! 1. [`CommitPull::begin`] marks the commit partial (libostree's
//!    `.commitpartial`) before any of its objects is stored, and opens a
//!    [`Transaction`] its objects are staged into (checkpointed as the pull goes).
//! 2. [`CommitPull::finish`] stages the detached metadata and the commit last,
//!    checkpoints durably, moves the ref and clears the marker.
//!
//! A process killed at any point leaves a repository `ostree fsck` accepts, and a
//! later pull of the same commit resumes from what was checkpointed.

use std::sync::Arc;

use crate::repo::refs::{self, RefKind};
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, ObjectType, Result};

/// A pull of one commit into a repository, from its partial marker to its ref.
pub struct CommitPull {
    repo: Repo,
    commit: Checksum,
    transaction: Arc<Transaction>,
}

impl CommitPull {
    /// Marks `commit` partial and opens the transaction its objects go into.
    pub fn begin(repo: &Repo, commit: Checksum) -> Result<Self> {
        repo.mark_commit_partial(&commit)?;
        Ok(Self {
            repo: repo.clone(),
            commit,
            transaction: Arc::new(repo.begin()?),
        })
    }

    pub fn commit(&self) -> Checksum {
        self.commit
    }

    /// The transaction the closure is staged into; shared with worker threads.
    pub fn transaction(&self) -> &Arc<Transaction> {
        &self.transaction
    }

    /// Completes the pull once the whole closure is staged: stages the detached
    /// metadata and the commit (last, so no commit is visible before what it
    /// names), checkpoints durably, writes the ref `kind`/`ref_name`, clears the
    /// partial marker. Returns the commit the ref pointed at before.
    ///
    /// `commit_bytes` must be the verified commit this pull began with.
    pub fn finish(
        self,
        commit_bytes: &[u8],
        detached_metadata: Option<&[u8]>,
        kind: &RefKind,
        ref_name: &str,
    ) -> Result<Option<Checksum>> {
        let txn = &self.transaction;
        if let Some(detached) = detached_metadata {
            txn.stage_bytes(
                &ObjectName::new(self.commit, ObjectType::CommitMeta),
                detached,
            )?;
        }
        txn.stage_bytes(
            &ObjectName::new(self.commit, ObjectType::Commit),
            commit_bytes,
        )?;
        // A request let go after its object came from elsewhere may still hold
        // the transaction on a worker thread; whatever it stages late goes with
        // the staging directory when the last holder lets go.
        txn.checkpoint()?;
        let previous = refs::read_ref(self.repo.root(), kind, ref_name)?;
        refs::write_ref(self.repo.root(), kind, ref_name, &self.commit)?;
        self.repo.clear_commit_partial(&self.commit)?;
        Ok(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::objects::{Commit, DirMeta, DirTree};

    #[test]
    fn ref_moves_only_at_finish_and_marker_clears() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::create_layout(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("config"),
            "[core]\nrepo_version=1\nmode=archive-z2\n",
        )
        .unwrap();
        let tree = DirTree::default().to_bytes();
        let meta = DirMeta {
            uid: 0,
            gid: 0,
            mode: 0o40755,
            xattrs: Default::default(),
        }
        .to_bytes();
        let commit = Commit {
            metadata: crate::repo::objects::empty_metadata(),
            parent: None,
            related: Vec::new(),
            subject: "s".into(),
            body: String::new(),
            timestamp: 1,
            root_tree: Checksum::digest(&tree),
            root_meta: Checksum::digest(&meta),
        };
        let commit_bytes = commit.to_bytes();
        let checksum = Checksum::digest(&commit_bytes);
        let kind = RefKind::Remote("origin".into());

        let pull = CommitPull::begin(&repo, checksum).unwrap();
        assert!(repo.is_commit_partial(&checksum));
        let txn = pull.transaction();
        txn.stage_bytes(
            &ObjectName::new(commit.root_tree, ObjectType::DirTree),
            &tree,
        )
        .unwrap();
        txn.stage_bytes(
            &ObjectName::new(commit.root_meta, ObjectType::DirMeta),
            &meta,
        )
        .unwrap();
        assert_eq!(refs::read_ref(repo.root(), &kind, "os/x").unwrap(), None);
        let previous = pull.finish(&commit_bytes, None, &kind, "os/x").unwrap();
        assert_eq!(previous, None);
        assert_eq!(
            refs::read_ref(repo.root(), &kind, "os/x").unwrap(),
            Some(checksum)
        );
        assert!(!repo.is_commit_partial(&checksum));
        assert!(repo.has_object(&ObjectName::new(checksum, ObjectType::Commit)));
    }
}
