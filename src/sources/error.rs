//! Errors of discovery.

use std::path::PathBuf;

use crate::repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("local repository: {0}")]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{uri} is not an OSTree repository that can be read: {reason}")]
    Unreadable { uri: String, reason: String },
    #[error("invalid source URI “{uri}”: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("FERRY_LAN_INTERFACES: invalid interface name “{0}”")]
    InvalidInterface(String),
    #[error("cannot start DNS-SD browsing: {0}")]
    Mdns(String),
    #[error("discovery must run on the thread that owns the GLib main context")]
    WrongContext,
}

/// Why a source's summary could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// Connection refused, no route, name resolution failed, timeout.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The server answered 404/410, or the file does not exist.
    #[error("no summary (not serving an OSTree repository)")]
    NotFound,
    #[error("HTTP {status} {reason}")]
    Http { status: u32, reason: String },
    #[error("summary larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Io(String),
    #[error("invalid summary: {0}")]
    Invalid(String),
    #[error("invalid URI: {0}")]
    InvalidUri(String),
    /// The remote verifies its summary (`gpg-verify-summary`, `sign-verify-summary`)
    /// and `summary.sig` is missing or does not verify.
    #[error("summary not trusted: {reason} (remote “{remote}” has {setting})")]
    Untrusted {
        remote: String,
        setting: String,
        reason: String,
    },
}
