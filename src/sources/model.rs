//! The source model: what discovery knows about one place that may serve objects,
//! and the events it emits when that knowledge changes. Serialized as the
//! `ferryctl sources --json` contract.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::repo::config::{RemoteConfig, RepoConfig};
use crate::repo::{Checksum, RepoError};

/// Where a source lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A repository on a mounted drive (or in the sideload directory): `file://`.
    Usb,
    /// A nearby computer advertising `_ostree_repo._tcp` over DNS-SD.
    Lan,
    /// A configured remote of a tracked ref (the upstream).
    Internet,
    /// A source given by hand (`--static-source`, `static-sources=` in the config).
    Static,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Usb => "usb",
            SourceKind::Lan => "lan",
            SourceKind::Internet => "internet",
            SourceKind::Static => "static",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What discovery currently knows about a source. Also a GLib enum type, so the
/// window's source models carry it as a typed property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, glib::Enum)]
#[serde(rename_all = "kebab-case")]
#[enum_type(name = "FerrySourceState")]
pub enum SourceState {
    /// Seen, but its refs are not known yet (summary being fetched).
    #[default]
    Discovered,
    /// Its refs are known and it has the newest known commit of at least one
    /// tracked ref (or nothing newer is known anywhere).
    Ready,
    /// Its refs are known, but for every tracked ref it offers something newer is
    /// known (elsewhere or installed). Its objects may still help.
    Outdated,
    /// The host could not be reached (connection refused, no route, timeout).
    Unreachable,
    /// It answers, but does not serve an OSTree repository (no summary: 404).
    NotServing,
    /// It answered with something unusable (bad summary, server error, I/O error).
    Failed,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Discovered => "discovered",
            SourceState::Ready => "ready",
            SourceState::Outdated => "outdated",
            SourceState::Unreachable => "unreachable",
            SourceState::NotServing => "not-serving",
            SourceState::Failed => "failed",
        }
    }

    /// Whether the source's refs are known and it may be pulled from.
    pub fn is_usable(self) -> bool {
        matches!(self, SourceState::Ready | SourceState::Outdated)
    }
}

impl fmt::Display for SourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A (collection id, ref) pair. Refs of a repository without a collection id have
/// `collection_id: None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CollectionRef {
    pub collection_id: Option<String>,
    #[serde(rename = "ref")]
    pub ref_name: String,
}

impl CollectionRef {
    pub fn new(collection_id: Option<&str>, ref_name: &str) -> Self {
        Self {
            collection_id: collection_id.map(str::to_owned),
            ref_name: ref_name.to_owned(),
        }
    }
}

impl fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.collection_id {
            Some(c) => write!(f, "({c}, {})", self.ref_name),
            None => f.write_str(&self.ref_name),
        }
    }
}

/// One collection-ref a source offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OfferedRef {
    pub collection_id: Option<String>,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: Checksum,
    /// The commit's timestamp (Unix seconds), when the source tells it.
    pub timestamp: Option<u64>,
    /// The commit's `version` metadata, when the source tells it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl OfferedRef {
    pub fn collection_ref(&self) -> CollectionRef {
        CollectionRef {
            collection_id: self.collection_id.clone(),
            ref_name: self.ref_name.clone(),
        }
    }

    pub fn is(&self, cref: &CollectionRef) -> bool {
        self.collection_id == cref.collection_id && self.ref_name == cref.ref_name
    }
}

/// One place that may serve objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Stable id: `usb:<mount path>:<repo path>`, `lan:<instance name>`,
    /// `upstream:<remote>`, `static:<uri>`.
    pub id: String,
    pub kind: SourceKind,
    /// Volume label, peer host name, or URL host.
    pub name: String,
    /// Base URI of the repository (`file:///…/`, `http://…/`).
    pub uri: String,
    /// The collection-refs it offers, sorted.
    pub refs: Vec<OfferedRef>,
    /// When its summary was last modified (Unix seconds), if known.
    pub last_modified: Option<u64>,
    pub state: SourceState,
    /// Why the state is `unreachable`, `not-serving` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The remote this source stands in for (upstream sources only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl Source {
    pub fn new(id: String, kind: SourceKind, name: String, uri: String) -> Self {
        Self {
            id,
            kind,
            name,
            uri,
            refs: Vec::new(),
            last_modified: None,
            state: SourceState::Discovered,
            error: None,
            remote: None,
        }
    }

    /// What this source offers for `target`: the target's ref in its remote's
    /// collection, or, from a source standing in for that remote whose summary has
    /// no collection ids, the ref by name.
    pub fn offer_for(&self, target: &Target) -> Option<&OfferedRef> {
        let collection = target.remote.collection_id.as_deref();
        self.refs.iter().find(|offer| {
            offer.ref_name == target.ref_name
                && (offer.collection_id.as_deref() == collection
                    || (offer.collection_id.is_none()
                        && self.remote.as_deref() == Some(target.remote.name.as_str())))
        })
    }

    /// `file://` sources (drives, sideload repos) come first when pulling.
    pub fn is_local_file(&self) -> bool {
        self.uri.starts_with("file://")
    }
}

/// What changed. With `--watch --json` each is one line:
/// `{"event":"added","source":{…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SourceEvent {
    Added {
        source: Source,
    },
    Changed {
        source: Source,
    },
    /// The source as it was last known.
    Removed {
        source: Source,
    },
}

impl SourceEvent {
    pub fn source(&self) -> &Source {
        match self {
            SourceEvent::Added { source }
            | SourceEvent::Changed { source }
            | SourceEvent::Removed { source } => source,
        }
    }
}

/// Why a repository found on a drive or in the sideload directory was not offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum RejectReason {
    /// It resolves to a different file system than the drive's (a symlink escaping
    /// the drive).
    OtherFileSystem,
    /// It is the local repository itself.
    LocalRepository,
    /// It could not be opened or read as a repository.
    Unreadable(String),
    /// The drive did not answer in time (a read that never returned).
    NotAnswering(String),
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::OtherFileSystem => {
                f.write_str("it is on a different file system from the mount")
            }
            RejectReason::LocalRepository => f.write_str("it is the local repository"),
            RejectReason::Unreadable(e) => write!(f, "it cannot be read: {e}"),
            RejectReason::NotAnswering(e) => write!(f, "it is not answering: {e}"),
        }
    }
}

/// A repository that was looked at and refused, kept so tests and users can ask why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The path as found (before following symlinks).
    pub path: PathBuf,
    /// The mount root or sideload directory it was found under.
    pub origin: PathBuf,
    #[serde(flatten)]
    pub reason: RejectReason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rejected repository “{}” on “{}”: {}",
            self.path.display(),
            self.origin.display(),
            self.reason
        )
    }
}

/// One ref to keep up to date, with the remote that says how to trust it.
#[derive(Clone, Debug)]
pub struct Target {
    pub remote: RemoteConfig,
    pub ref_name: String,
}

impl Target {
    /// The refs the repository tracks (`ferryctl track`), with their remotes.
    pub fn tracked(config: &RepoConfig) -> Result<Vec<Target>, RepoError> {
        config
            .tracked()?
            .into_iter()
            .map(|t| {
                Ok(Target {
                    remote: config.remote(&t.remote)?,
                    ref_name: t.ref_name,
                })
            })
            .collect()
    }
}
