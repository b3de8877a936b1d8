//! Pulling objects from sources into the local repository.

pub mod engine;
pub mod error;
pub mod local;
pub mod pull;
pub mod transport;

pub use error::FetchError;
pub use local::LocalSource;

use crate::repo::config::RemoteConfig;
use crate::trust::RemoteTrustSettings;

/// What the trust layer needs to know of a configured remote.
pub fn trust_settings(remote: &RemoteConfig) -> RemoteTrustSettings {
    RemoteTrustSettings {
        name: remote.name.clone(),
        collection_id: remote.collection_id.clone(),
        gpg_verify: remote.gpg_verify,
        gpg_verify_summary: remote.gpg_verify_summary,
        sign_verify: remote.sign_verify,
        sign_verify_summary: false,
        verification_ed25519_key: remote.verification_ed25519_key.clone(),
        verification_ed25519_file: remote.verification_ed25519_file.clone(),
    }
}
