//! Regenerating a repository's summary from its refs, as `ostree summary -u` does:
//! `refs/heads` become the summary's refs, `refs/mirrors/COLLECTION/` its
//! collection map; every entry carries the commit's size, timestamp and version.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::repo::checksum::Checksum;
use crate::repo::config::RepoConfig;
use crate::repo::error::Result;
use crate::repo::refs::{self, RefKind};
use crate::repo::store::Repo;
use crate::repo::summary::{Summary, SummaryRef};

/// A summary entry for `name` → `checksum`: commit size, timestamp and version.
pub fn summary_ref(repo: &Repo, name: &str, checksum: Checksum) -> Result<SummaryRef> {
    let (commit, bytes) = repo.load_commit(&checksum)?;
    let mut entry =
        SummaryRef::new(name, checksum, bytes.len() as u64).with_timestamp(commit.timestamp);
    if let Some(version) = commit.version() {
        entry = entry.with_version(version);
    }
    Ok(entry)
}

/// Builds the summary of `repo`'s current refs, stamped `last_modified`.
pub fn build_summary(repo: &Repo, last_modified: u64) -> Result<Summary> {
    let collection_id = RepoConfig::load(repo.root())?.collection_id()?;
    let mut summary = Summary::for_archive_repo(collection_id.as_deref(), last_modified);
    for (kind, name, checksum) in refs::list_refs(repo.root())? {
        match kind {
            RefKind::Head => summary.refs.push(summary_ref(repo, &name, checksum)?),
            RefKind::Mirror(collection) if Some(&collection) == collection_id.as_ref() => {
                summary.refs.push(summary_ref(repo, &name, checksum)?)
            }
            RefKind::Mirror(collection) => summary
                .collection_map
                .entry(collection)
                .or_default()
                .push(summary_ref(repo, &name, checksum)?),
            RefKind::Remote(_) => {}
        }
    }
    summary.refs.sort_by(|a, b| a.name.cmp(&b.name));
    summary.refs.dedup_by(|a, b| a.name == b.name);
    for list in summary.collection_map.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(summary)
}

/// Regenerates and writes `REPO/summary`.
pub fn update_summary(repo: &Repo) -> Result<Summary> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let summary = build_summary(repo, now)?;
    summary.write_to_repo(repo.root())?;
    Ok(summary)
}
