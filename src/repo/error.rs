//! Errors of the repository layer.

use std::path::PathBuf;

use crate::repo::checksum::ObjectName;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("invalid checksum “{0}”")]
    InvalidChecksum(String),
    #[error("invalid ref name “{0}”")]
    InvalidRefName(String),
    #[error("invalid remote name “{0}”")]
    InvalidRemoteName(String),
    #[error("invalid collection ID “{0}”")]
    InvalidCollectionId(String),
    #[error("ref “{0}” not found")]
    RefNotFound(String),
    #[error("ref file “{path}” does not hold a checksum")]
    CorruptRef { path: PathBuf },
    #[error("object {0} is missing")]
    MissingObject(ObjectName),
    #[error("object {name} is corrupt: {reason}")]
    CorruptObject { name: ObjectName, reason: String },
    #[error("object {expected} has the content of {actual}")]
    ChecksumMismatch {
        expected: ObjectName,
        actual: String,
    },
    #[error("invalid {what}: {reason}")]
    InvalidFormat { what: &'static str, reason: String },
    #[error("unsafe name “{0}” in a directory tree")]
    UnsafeName(String),
    #[error("“{0}” is not an OSTree repository")]
    NotARepository(PathBuf),
    #[error(
        "repository mode “{0}” is not supported (Ferry reads and writes archive, bare, \
         bare-user and bare-user-only repositories)"
    )]
    UnsupportedMode(String),
    /// A verified file object the repository's mode cannot store faithfully (a
    /// setuid file for `bare-user-only`): the same from every source.
    #[error("object {name} cannot be stored in a {mode} repository: {reason}")]
    CannotHold {
        name: ObjectName,
        mode: &'static str,
        reason: String,
    },
    #[error("repository configuration: {0}")]
    Config(String),
    #[error("no remote named “{0}”")]
    NoSuchRemote(String),
    #[error("a remote named “{0}” already exists")]
    RemoteExists(String),
    /// The disk of this computer is full: never the fault of a source.
    #[error("not enough space on the disk holding {path}")]
    NoSpace { path: PathBuf },
    /// Another copy of this object (a hedged request) is being staged right now.
    #[error("object {0} is being stored already")]
    AlreadyStaging(ObjectName),
    /// A file of a tree someone else controls (a drive) refused or unreadable.
    #[error(transparent)]
    Beneath(#[from] crate::repo::beneath::BeneathError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RepoError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => RepoError::NoSpace { path: path.into() },
            _ => RepoError::Io {
                path: path.into(),
                source,
            },
        }
    }

    /// Whether this is trouble of this computer (its disk, its files, what its
    /// repository can hold), as opposed to bad input from a source.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            RepoError::Io { .. } | RepoError::NoSpace { .. } | RepoError::CannotHold { .. }
        )
    }

    pub fn format(what: &'static str, reason: impl Into<String>) -> Self {
        RepoError::InvalidFormat {
            what,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
