//! Reading a repository on disk (a drive or the sideload directory) the way
//! libostree's mount finder does: its refs in `refs/heads` (the repository's own
//! collection) and `refs/mirrors/COLLECTION-ID/` (what `ostree create-usb` writes),
//! with each commit's timestamp read from the commit object when present.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::repo::beneath::{BeneathError, Tree};
use crate::repo::objects::Commit;
use crate::repo::refs::{self, RefKind};
use crate::repo::{Checksum, ObjectName, ObjectType};

use super::model::OfferedRef;

/// Refuse to list more refs than this from one repository on a drive.
const MAX_REFS: usize = 100_000;

/// A (device, inode) pair identifying a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of what `path` resolves to (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// A repository read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveRepo {
    /// Its canonical path (symlinks resolved).
    pub path: PathBuf,
    pub id: FileId,
    /// `core.collection-id` from its config.
    pub collection_id: Option<String>,
    /// Refs with a collection id, sorted by (collection id, ref).
    pub refs: Vec<OfferedRef>,
    /// `ostree.summary.last-modified` of its summary, else the summary file's mtime.
    pub last_modified: Option<u64>,
}

/// Why a repository on disk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DriveRepoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file refused (a FIFO, device, socket or link out of the repository where a
    /// file should be), unreadable, or too large.
    #[error(transparent)]
    File(#[from] BeneathError),
    #[error("{0}: not an OSTree repository (no config or objects directory)")]
    NotARepository(PathBuf),
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: cannot list refs: {reason}")]
    Refs { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DriveRepoError + '_ {
    move |source| DriveRepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Largest config file read from a drive.
const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// Largest commit object read from a drive for its timestamp.
const MAX_COMMIT_SIZE: u64 = 16 << 20;
/// Largest summary read from a drive for its last-modified time.
const MAX_SUMMARY_SIZE: u64 = 64 << 20;

/// Resolves `path` (following symlinks) and checks that it looks like a repository.
pub fn resolve_repo(path: &Path) -> Result<(PathBuf, FileId), DriveRepoError> {
    let canonical = fs::canonicalize(path).map_err(io_err(path))?;
    let id = FileId::of(&canonical).map_err(io_err(&canonical))?;
    let tree = Tree::open(&canonical)?;
    if !tree.is_file("config") || !tree.is_dir("objects") {
        return Err(DriveRepoError::NotARepository(path.to_owned()));
    }
    Ok((canonical, id))
}

/// Reads the repository at `path` (which may be a symlink). Every file is read
/// beneath the repository root (see [`crate::repo::beneath`]): a FIFO, device,
/// socket or link out of the repository at the config, a ref, the summary or a
/// ref's commit refuses the whole repository, naming the file.
pub fn read_repo(path: &Path) -> Result<DriveRepo, DriveRepoError> {
    let (canonical, id) = resolve_repo(path)?;
    let tree = Tree::open(&canonical)?;
    let config_path = canonical.join("config");
    let config = String::from_utf8(tree.read("config", MAX_CONFIG_SIZE)?).map_err(|_| {
        DriveRepoError::Config {
            path: config_path.clone(),
            reason: "not UTF-8".into(),
        }
    })?;
    let collection_id = config_collection_id(&config).map_err(|reason| DriveRepoError::Config {
        path: config_path.clone(),
        reason,
    })?;

    let listed = refs::list_refs(&canonical).map_err(|e| DriveRepoError::Refs {
        path: canonical.clone(),
        reason: e.to_string(),
    })?;
    let mut offered = Vec::new();
    for (kind, ref_name, commit) in listed.into_iter().take(MAX_REFS) {
        let cid = match kind {
            RefKind::Head => match &collection_id {
                Some(cid) => cid.clone(),
                None => continue,
            },
            RefKind::Mirror(cid) if refs::is_valid_collection_id(&cid) => cid,
            _ => continue,
        };
        let (timestamp, version) = read_commit_info(&tree, &commit)?;
        offered.push(OfferedRef {
            collection_id: Some(cid),
            ref_name,
            commit,
            timestamp,
            version,
        });
    }
    offered.sort_by(|a, b| (&a.collection_id, &a.ref_name).cmp(&(&b.collection_id, &b.ref_name)));
    offered.dedup_by(|a, b| a.collection_id == b.collection_id && a.ref_name == b.ref_name);

    let last_modified = summary_last_modified(&tree)?;
    Ok(DriveRepo {
        path: canonical,
        id,
        collection_id,
        refs: offered,
        last_modified,
    })
}

/// `core.collection-id` of a repository config key file (the text of a drive's
/// `REPO/config`, untrusted).
pub fn config_collection_id(config: &str) -> Result<Option<String>, String> {
    let key_file = glib::KeyFile::new();
    key_file
        // By length: a NUL inside is GKeyFile's to judge, not a panic making a C string.
        .load_from_bytes(
            &glib::Bytes::from(config.as_bytes()),
            glib::KeyFileFlags::NONE,
        )
        .map_err(|e| e.to_string())?;
    match key_file.string("core", "collection-id") {
        Ok(cid) if cid.is_empty() => Ok(None),
        Ok(cid) if refs::is_valid_collection_id(&cid) => Ok(Some(cid.to_string())),
        Ok(cid) => Err(format!("invalid collection id “{cid}”")),
        Err(_) => Ok(None),
    }
}

/// Timestamp and version of `commit`, if its object is in `repo` (the local
/// repository).
pub fn commit_info(repo: &Path, commit: &Checksum) -> (Option<u64>, Option<String>) {
    Tree::open(repo)
        .ok()
        .and_then(|tree| read_commit_info(&tree, commit).ok())
        .unwrap_or((None, None))
}

/// Timestamp and version of `commit`: `None`s if its object is absent or not a
/// commit; an error if something hostile stands where it should be.
fn read_commit_info(
    tree: &Tree,
    commit: &Checksum,
) -> Result<(Option<u64>, Option<String>), BeneathError> {
    let relative = ObjectName::new(*commit, ObjectType::Commit).relative_path();
    let data = match tree.read(&relative, MAX_COMMIT_SIZE) {
        Ok(data) => data,
        Err(BeneathError::NotFound { .. } | BeneathError::TooLarge { .. }) => {
            return Ok((None, None))
        }
        Err(e) => return Err(e),
    };
    Ok(match Commit::parse(&data) {
        Ok(c) => (Some(c.timestamp), c.version()),
        Err(_) => (None, None),
    })
}

/// `ostree.summary.last-modified` of the summary at the root of `repo`, falling
/// back to the file's modification time.
fn summary_last_modified(tree: &Tree) -> Result<Option<u64>, BeneathError> {
    let file = match tree.open_file("summary") {
        Ok(file) => file,
        Err(BeneathError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mtime = file
        .metadata()
        .map_err(|e| tree.read_error("summary", e))?
        .mtime();
    match tree.read("summary", MAX_SUMMARY_SIZE) {
        Ok(bytes) => {
            if let Ok(info) = super::summary::SummaryInfo::parse(&bytes, None) {
                if let Some(t) = info.last_modified {
                    return Ok(Some(t));
                }
            }
        }
        Err(BeneathError::TooLarge { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(u64::try_from(mtime).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_collection() {
        assert_eq!(
            config_collection_id(
                "[core]\nrepo_version=1\nmode=archive-z2\ncollection-id=org.example.Os\n"
            ),
            Ok(Some("org.example.Os".into()))
        );
        assert_eq!(config_collection_id("[core]\nmode=archive\n"), Ok(None));
        assert!(config_collection_id("[core]\ncollection-id=nope\n").is_err());
        assert!(config_collection_id("garbage").is_err());
        // Found by tests/fuzz: a NUL in a drive's config made a panic.
        assert!(config_collection_id("[core]\nrepo_version=1\0\ncollection-id=a.b\n").is_ok());
        assert!(config_collection_id("[co\0re]\n").is_err());
    }
}
