//! What discovery needs to know about the local repository: its identity (so a
//! drive never offers it back), the collections it has remotes for, the tracked
//! collection-refs and what is installed for them, and configured static sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::repo::config::{RemoteConfig, RepoConfig};
use crate::repo::store::Repo;

use super::drive_repo::FileId;
use super::error::SourcesError;
use super::model::{CollectionRef, OfferedRef};

/// `[ferry] static-sources=URI;URI;` in the repository config.
pub const STATIC_SOURCES_KEY: &str = "static-sources";
/// `[ferry] sideload-dirs=DIR;DIR;` in the repository config.
pub const SIDELOAD_DIRS_KEY: &str = "sideload-dirs";

/// A configured remote, as discovery sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnRemote {
    pub name: String,
    pub url: String,
    pub collection_id: Option<String>,
    /// Its trust settings when it verifies its summary (`gpg-verify-summary` or
    /// `sign-verify-summary`): then its URL's `summary.sig` must verify.
    pub summary_trust: Option<RemoteConfig>,
}

/// A tracked ref with the collection it belongs to (its remote's collection id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedCollectionRef {
    pub remote: String,
    pub cref: CollectionRef,
}

/// A snapshot of the local repository for discovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnRepo {
    pub path: PathBuf,
    /// (device, inode) of the repository directory, if it exists.
    pub id: Option<FileId>,
    pub remotes: Vec<OwnRemote>,
    pub tracked: Vec<TrackedCollectionRef>,
    /// Timestamps of the commits installed for tracked refs
    /// (`refs/remotes/REMOTE/REF`), where the commit object is present.
    pub installed: BTreeMap<CollectionRef, u64>,
    /// `[ferry] static-sources`.
    pub static_sources: Vec<String>,
    /// `[ferry] sideload-dirs`.
    pub sideload_dirs: Vec<PathBuf>,
}

impl OwnRepo {
    /// Reads the repository at `path`.
    pub fn load(path: &Path) -> Result<Self, SourcesError> {
        let config = RepoConfig::load(path)?;
        let remotes: Vec<OwnRemote> = config
            .remotes()?
            .into_iter()
            .map(|r| OwnRemote {
                summary_trust: (r.gpg_verify_summary || r.sign_verify_summary).then(|| r.clone()),
                name: r.name,
                url: r.url,
                collection_id: r.collection_id,
            })
            .collect();
        let repo = Repo::open(path).ok();
        let mut tracked = Vec::new();
        let mut installed = BTreeMap::new();
        for t in config.tracked()? {
            let collection_id = remotes
                .iter()
                .find(|r| r.name == t.remote)
                .and_then(|r| r.collection_id.clone());
            let cref = CollectionRef {
                collection_id,
                ref_name: t.ref_name.clone(),
            };
            if let Some(Ok(Some((_, commit)))) =
                repo.as_ref().map(|r| r.installed(&t.remote, &t.ref_name))
            {
                installed.insert(cref.clone(), commit.timestamp);
            }
            tracked.push(TrackedCollectionRef {
                remote: t.remote,
                cref,
            });
        }
        let list = |key: &str| -> Vec<String> {
            match config.keyfile().string_list("ferry", key) {
                Ok(list) => list
                    .iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        let static_sources = list(STATIC_SOURCES_KEY);
        let sideload_dirs = list(SIDELOAD_DIRS_KEY)
            .into_iter()
            .map(PathBuf::from)
            .collect();
        Ok(Self {
            path: path.to_owned(),
            id: FileId::of(path).ok(),
            remotes,
            tracked,
            installed,
            static_sources,
            sideload_dirs,
        })
    }

    /// Collection ids the local repository has a remote for.
    pub fn known_collections(&self) -> BTreeSet<&str> {
        self.remotes
            .iter()
            .filter_map(|r| r.collection_id.as_deref())
            .collect()
    }

    /// The tracked collection-refs.
    pub fn tracked_crefs(&self) -> Vec<CollectionRef> {
        let mut out: Vec<CollectionRef> = self.tracked.iter().map(|t| t.cref.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether a ref offered by a source is one the local repository can use: in a
    /// collection it has a remote for, or (for collection-less remotes) tracked.
    pub fn accepts(&self, offered: &OfferedRef) -> bool {
        match &offered.collection_id {
            Some(cid) => self
                .remotes
                .iter()
                .any(|r| r.collection_id.as_deref() == Some(cid)),
            None => self.tracked.iter().any(|t| offered.is(&t.cref)),
        }
    }

    /// Remotes that tracked refs belong to: the upstream sources.
    pub fn upstream_remotes(&self) -> Vec<&OwnRemote> {
        let mut names: Vec<&str> = self.tracked.iter().map(|t| t.remote.as_str()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| self.remotes.iter().find(|r| r.name == n))
            .collect()
    }
}
