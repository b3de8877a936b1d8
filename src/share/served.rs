//! Which refs the server can offer, and the summary that lists them.
//!
//! Only refs whose commit can be served completely are listed: the commit's pull
//! finished (no `.commitpartial`) and its whole closure is stored. Collections are
//! given as libostree's P2P code expects them:
//!
//! - `refs/heads/REF`: the repository's own collection (the summary's main refs);
//! - `refs/mirrors/COLLECTION/REF`: that collection;
//! - `refs/remotes/REMOTE/REF`: the collection of REMOTE (refs of a remote without a
//!   collection ID cannot be found by peers and are left out).
//!
//! Refs of the repository's own collection are the main refs; the others go into
//! `ostree.summary.collection-map`, as `ostree summary -u` lays them out. When two
//! namespaces offer the same collection-ref, the newer commit wins. A repository
//! without a collection of its own (a typical Ferry repository) also lists the
//! other collections' refs as plain refs when their names are unambiguous, so that
//! a plain `ostree pull REMOTE REF` against the server works as well.
//!
//! When the repository has its own signed summary (`summary` + `summary.sig`)
//! listing exactly the refs that can be served, that summary is served as it is,
//! with its signature; otherwise a summary is generated and no signature is served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use crate::repo::config::RepoConfig;
use crate::repo::refs::{self, RefKind};
use crate::repo::store::Repo;
use crate::repo::summary::{Summary, SummaryRef, SUMMARY_FILE, SUMMARY_SIG_FILE};
use crate::repo::summary_gen::summary_ref;
use crate::repo::{Checksum, RepoError};

use crate::repo::closure;

/// A collection-ref the server offers, with its commit.
pub type OfferedKey = (Option<String>, String, Checksum);

/// A summary, its bytes, and its signature (only for the repository's own).
pub type SummaryParts = (Summary, Vec<u8>, Option<Vec<u8>>);

/// The refs the repository can serve, before a last-modified time is chosen.
#[derive(Clone, Debug)]
pub enum ServableRefs {
    /// Generate a summary with these refs (main refs, collection map).
    Generated {
        collection_id: Option<String>,
        main: Vec<SummaryRef>,
        map: BTreeMap<String, Vec<SummaryRef>>,
    },
    /// Serve the repository's own signed summary.
    OnDisk {
        summary: Summary,
        bytes: Vec<u8>,
        signature: Vec<u8>,
    },
}

impl ServableRefs {
    /// The collection-refs offered, sorted.
    pub fn keys(&self) -> Vec<OfferedKey> {
        let mut keys: Vec<OfferedKey> = match self {
            ServableRefs::Generated {
                collection_id,
                main,
                map,
            } => main
                .iter()
                .map(|r| (collection_id.clone(), r.name.clone(), r.checksum))
                .chain(map.iter().flat_map(|(c, list)| {
                    list.iter()
                        .map(move |r| (Some(c.clone()), r.name.clone(), r.checksum))
                }))
                .collect(),
            ServableRefs::OnDisk { summary, .. } => summary
                .all_refs()
                .map(|(c, r)| (c.map(str::to_owned), r.name.clone(), r.checksum))
                .collect(),
        };
        keys.sort();
        keys
    }

    /// The summary to serve, stamped `last_modified` when it is generated, and its
    /// signature when it is the repository's own.
    pub fn into_summary(self, last_modified: u64) -> Result<SummaryParts, RepoError> {
        match self {
            ServableRefs::Generated {
                collection_id,
                main,
                map,
            } => {
                let mut summary =
                    Summary::for_archive_repo(collection_id.as_deref(), last_modified);
                summary.refs = main;
                summary.collection_map = map;
                let bytes = summary.to_bytes()?;
                Ok((summary, bytes, None))
            }
            ServableRefs::OnDisk {
                summary,
                bytes,
                signature,
            } => Ok((summary, bytes, Some(signature))),
        }
    }
}

/// Commits already found complete (a stored closure does not shrink while served).
#[derive(Debug, Default)]
pub struct CompletenessCache {
    complete: Mutex<HashSet<Checksum>>,
}

impl CompletenessCache {
    pub fn is_complete(&self, repo: &Repo, commit: &Checksum) -> bool {
        // The marker is checked every time: a new pull of the commit may be running.
        if repo.is_commit_partial(commit) {
            return false;
        }
        if self.complete.lock().expect("lock").contains(commit) {
            return true;
        }
        let complete = closure::is_complete(repo, commit);
        if complete {
            self.complete.lock().expect("lock").insert(*commit);
        }
        complete
    }
}

/// Finds the refs `repo` can serve completely.
pub fn servable_refs(repo: &Repo, cache: &CompletenessCache) -> Result<ServableRefs, RepoError> {
    let config = RepoConfig::load(repo.root())?;
    let own = config.collection_id()?;
    let remotes: HashMap<String, Option<String>> = config
        .remotes()?
        .into_iter()
        .map(|r| (r.name, r.collection_id))
        .collect();

    // (collection, ref) → entry; the newest commit wins.
    let mut chosen: BTreeMap<(Option<String>, String), SummaryRef> = BTreeMap::new();
    let listed = refs::list_refs_skipping_unsafe(repo.root(), &mut |refused| {
        eprintln!("ferry: not sharing a ref: {refused}");
    })?;
    for (kind, name, checksum) in listed {
        let collection = match &kind {
            RefKind::Head => own.clone(),
            RefKind::Mirror(collection) => Some(collection.clone()),
            RefKind::Remote(remote) => match remotes.get(remote) {
                Some(Some(collection)) => Some(collection.clone()),
                _ => continue,
            },
        };
        if !cache.is_complete(repo, &checksum) {
            continue;
        }
        let Ok(entry) = summary_ref(repo, &name, checksum) else {
            continue;
        };
        let key = (collection, name);
        let newer = chosen
            .get(&key)
            .is_none_or(|old| entry.timestamp.unwrap_or(0) > old.timestamp.unwrap_or(0));
        if newer {
            chosen.insert(key, entry);
        }
    }

    let mut main = Vec::new();
    let mut map: BTreeMap<String, Vec<SummaryRef>> = BTreeMap::new();
    for ((collection, _), entry) in chosen {
        match collection {
            c if c == own => main.push(entry),
            Some(c) => map.entry(c).or_default().push(entry),
            None => main.push(entry),
        }
    }
    // A repository without a collection of its own also lists other collections'
    // refs as plain refs (when the name is unambiguous), so that a plain
    // `ostree pull REMOTE REF` finds them; collection-aware clients use the map.
    if own.is_none() {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for entry in main.iter().chain(map.values().flatten()) {
            *count.entry(entry.name.as_str()).or_default() += 1;
        }
        let plain: Vec<SummaryRef> = map
            .values()
            .flatten()
            .filter(|entry| count.get(entry.name.as_str()) == Some(&1))
            .cloned()
            .collect();
        main.extend(plain);
        main.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let generated = ServableRefs::Generated {
        collection_id: own,
        main,
        map,
    };
    Ok(own_signed_summary(repo.root(), &generated).unwrap_or(generated))
}

/// The repository's own signed summary, if it lists exactly what can be served
/// and names no mode but archive.
fn own_signed_summary(root: &Path, generated: &ServableRefs) -> Option<ServableRefs> {
    let signature = fs::read(root.join(SUMMARY_SIG_FILE)).ok()?;
    let bytes = fs::read(root.join(SUMMARY_FILE)).ok()?;
    let summary = Summary::parse(&bytes).ok()?;
    // A bare repository is served as archive: its own summary names its real
    // mode, which libostree would pull by (asking for `.file` objects).
    if summary
        .mode
        .as_deref()
        .is_some_and(|mode| !mode.starts_with("archive"))
    {
        return None;
    }
    let on_disk = ServableRefs::OnDisk {
        summary,
        bytes,
        signature,
    };
    (on_disk.keys() == generated.keys()).then_some(on_disk)
}

/// What the served summary depends on, cheaply: the refs (names, inodes, sizes,
/// times), the `.commitpartial` markers, the config, and the repository's own
/// summary and signature. When it changes, the summary is regenerated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoFingerprint(Vec<(String, u64, u64, i64, i64)>);

/// Stops a pathological refs tree from making every check slow.
const MAX_FINGERPRINT_ENTRIES: usize = 200_000;

impl RepoFingerprint {
    pub fn of(root: &Path) -> Self {
        let mut entries = Vec::new();
        for name in ["config", SUMMARY_FILE, SUMMARY_SIG_FILE] {
            push_entry(&mut entries, name.to_owned(), &root.join(name));
        }
        walk(&root.join("refs"), "refs", &mut entries);
        if let Ok(dir) = fs::read_dir(root.join("state")) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".commitpartial") {
                    entries.push((format!("state/{name}"), 0, 0, 0, 0));
                }
            }
        }
        entries.sort();
        Self(entries)
    }
}

fn push_entry(entries: &mut Vec<(String, u64, u64, i64, i64)>, name: String, path: &Path) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        entries.push((
            name,
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        ));
    }
}

fn walk(dir: &Path, prefix: &str, entries: &mut Vec<(String, u64, u64, i64, i64)>) {
    let Ok(read) = fs::read_dir(dir) else { return };
    for entry in read.flatten() {
        if entries.len() >= MAX_FINGERPRINT_ENTRIES {
            return;
        }
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        push_entry(entries, name.clone(), &path);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, &name, entries);
        }
    }
}
