//! Errors of a pull.

use crate::repo::{Checksum, RepoError};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{source_name} is not an OSTree repository that can be read")]
    NotServing { source_name: String },
    #[error("{source_name} does not have {ref_name}")]
    RefNotFound {
        source_name: String,
        ref_name: String,
    },
    #[error("{source_name} does not have object {object}")]
    ObjectNotFound { source_name: String, object: String },
    #[error("{source_name} sent a bad object: {error}")]
    BadObject {
        source_name: String,
        #[source]
        error: RepoError,
    },
    #[error("commit {commit} for {ref_name} from {source_name} is not trusted: {reason}")]
    Untrusted {
        source_name: String,
        ref_name: String,
        commit: Checksum,
        reason: String,
    },
    #[error("reading {source_name}: {error}")]
    Source {
        source_name: String,
        #[source]
        error: RepoError,
    },
    #[error(transparent)]
    Local(#[from] RepoError),
    #[error("the pull was cancelled")]
    Cancelled,
}
