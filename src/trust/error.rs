//! Errors of the trust layer. Each message is one plain sentence that names what was
//! being verified ("commit 1a2b3c4d5e6f… for os/stable", "the summary") and what was
//! wrong with it; callers prefix the name of the source it came from.

use std::fmt;
use std::path::PathBuf;

use crate::repo::Checksum;

/// What a signature or binding check was about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A commit object, and the ref it was offered for (if any).
    Commit {
        checksum: Checksum,
        ref_name: Option<String>,
    },
    /// A repository summary file.
    Summary,
}

impl Subject {
    pub(crate) fn commit(checksum: Checksum, ref_name: &str) -> Self {
        Subject::Commit {
            checksum,
            ref_name: (!ref_name.is_empty()).then(|| ref_name.to_owned()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Commit { checksum, ref_name } => {
                write!(f, "commit {}", short(checksum))?;
                if let Some(ref_name) = ref_name {
                    write!(f, " for {ref_name}")?;
                }
                Ok(())
            }
            Subject::Summary => f.write_str("the summary"),
        }
    }
}

/// The two signature systems OSTree uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureKind {
    /// OpenPGP signatures in `ostree.gpgsigs`.
    Gpg,
    /// ed25519 signatures in `ostree.sign.ed25519`.
    Ed25519,
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureKind::Gpg => "GPG",
            SignatureKind::Ed25519 => "ed25519",
        })
    }
}

/// How a key is named in messages: an OpenPGP fingerprint (or key ID when the
/// signature carries no fingerprint) or a base64 ed25519 public key, plus the key's
/// user ID when Ferry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName {
    pub id: String,
    pub user_id: Option<String>,
}

impl KeyName {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            user_id: None,
        }
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)?;
        if let Some(user_id) = &self.user_id {
            write!(f, " ({user_id})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{subject} has no {kind} signature")]
    NotSigned {
        subject: Subject,
        kind: SignatureKind,
    },
    #[error("{subject} cannot be verified because no {kind} keys are trusted for this remote")]
    NoTrustedKeys {
        subject: Subject,
        kind: SignatureKind,
    },
    #[error("{subject} is signed by key {key} which is not trusted")]
    UntrustedKey {
        subject: Subject,
        kind: SignatureKind,
        key: KeyName,
    },
    #[error("{subject} has a {kind} signature by key {key} that does not match its content")]
    BadSignature {
        subject: Subject,
        kind: SignatureKind,
        key: KeyName,
    },
    #[error("{subject} has no {kind} signature that matches its content and {}", trusted_keys(*.tried))]
    NoValidSignature {
        subject: Subject,
        kind: SignatureKind,
        tried: usize,
    },
    #[error("{subject} is signed by key {key} which expired on {}", format_time(*.expired_at))]
    ExpiredKey {
        subject: Subject,
        key: KeyName,
        expired_at: i64,
    },
    #[error("{subject} is signed by key {key} which has been revoked")]
    RevokedKey {
        subject: Subject,
        kind: SignatureKind,
        key: KeyName,
    },
    #[error("{subject} has a signature by key {key} that expired on {}", format_time(*.expired_at))]
    ExpiredSignature {
        subject: Subject,
        key: KeyName,
        expired_at: i64,
    },
    #[error("{subject} is signed by key {key} which cannot be used because {reason}")]
    UnusableKey {
        subject: Subject,
        key: KeyName,
        reason: &'static str,
    },
    #[error("{subject} has a malformed {kind} signature ({reason})")]
    MalformedSignature {
        subject: Subject,
        kind: SignatureKind,
        reason: String,
    },
    #[error("the signatures of {subject} are not a valid a{{sv}} dictionary ({reason})")]
    InvalidSignatureData { subject: Subject, reason: String },
    #[error("the detached metadata is not a valid a{{sv}} dictionary ({reason})")]
    InvalidMetadata { reason: String },
    #[error("commit {} is not a valid commit object ({reason})", short(.checksum))]
    InvalidCommit { checksum: Checksum, reason: String },
    #[error(
        "commit {} offered for {ref_name} is bound to {} instead",
        short(.checksum),
        list(.bound)
    )]
    RefBindingMismatch {
        checksum: Checksum,
        ref_name: String,
        bound: Vec<String>,
    },
    #[error(
        "commit {} for {ref_name} has no ref binding, which remotes with collection ID {collection_id} require",
        short(.checksum)
    )]
    MissingRefBinding {
        checksum: Checksum,
        ref_name: String,
        collection_id: String,
    },
    #[error(
        "commit {} for {ref_name} has no collection binding, which remotes with collection ID {collection_id} require",
        short(.checksum)
    )]
    MissingCollectionBinding {
        checksum: Checksum,
        ref_name: String,
        collection_id: String,
    },
    #[error(
        "commit {} for {ref_name} belongs to collection {bound}, not to this remote's collection {expected}",
        short(.checksum)
    )]
    CollectionBindingMismatch {
        checksum: Checksum,
        ref_name: String,
        bound: String,
        expected: String,
    },
    #[error(
        "commit {} for {ref_name} was made on {} which is older than the installed commit {} from {}",
        short(.checksum),
        format_time(*.timestamp as i64),
        short(.current),
        format_time(*.current_timestamp as i64)
    )]
    Downgrade {
        checksum: Checksum,
        ref_name: String,
        timestamp: u64,
        current: Checksum,
        current_timestamp: u64,
    },
    #[error("the {kind} key {place} is invalid ({reason})")]
    InvalidKey {
        kind: SignatureKind,
        /// Where the key came from, e.g. "on line 3 of /etc/ostree/trusted.ed25519".
        place: String,
        reason: String,
    },
    /// A keyring or key file holds nothing usable.
    #[error("the OpenPGP key file {path} cannot be used ({reason})")]
    Keyring { path: PathBuf, reason: String },
    #[error("the remote name “{0}” cannot name a keyring file")]
    InvalidRemoteName(String),
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TrustError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrustError::Io {
            path: path.into(),
            source,
        }
    }

    /// The kind of signature this error is about, if it is about a signature.
    pub fn signature_kind(&self) -> Option<SignatureKind> {
        match self {
            TrustError::NotSigned { kind, .. }
            | TrustError::NoTrustedKeys { kind, .. }
            | TrustError::UntrustedKey { kind, .. }
            | TrustError::BadSignature { kind, .. }
            | TrustError::NoValidSignature { kind, .. }
            | TrustError::RevokedKey { kind, .. }
            | TrustError::MalformedSignature { kind, .. }
            | TrustError::InvalidKey { kind, .. } => Some(*kind),
            TrustError::ExpiredKey { .. }
            | TrustError::ExpiredSignature { .. }
            | TrustError::UnusableKey { .. } => Some(SignatureKind::Gpg),
            _ => None,
        }
    }
}

/// The first 12 hex digits of a checksum and an ellipsis: enough to find it again.
pub(crate) fn short(checksum: &Checksum) -> String {
    let hex = checksum.to_hex();
    format!("{}…", &hex[..12])
}

fn trusted_keys(n: usize) -> String {
    match n {
        1 => "the trusted key".to_owned(),
        n => format!("one of the {n} trusted keys"),
    }
}

fn list(items: &[String]) -> String {
    match items {
        [] => "no ref".to_owned(),
        [one] => one.clone(),
        many => many.join(", "),
    }
}

/// Unix seconds as "2024-05-01 12:00:00 UTC".
pub(crate) fn format_time(unix: i64) -> String {
    glib::DateTime::from_unix_utc(unix)
        .ok()
        .and_then(|t| t.format("%Y-%m-%d %H:%M:%S UTC").ok())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("@{unix}"))
}
