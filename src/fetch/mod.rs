//! Pulling objects from sources into the local repository.

pub mod engine;
pub mod error;
pub mod local;
pub mod pull;
pub mod transport;

pub use error::FetchError;

use std::time::Duration;

/// Metadata objects larger than this are refused (ostree's limit is 10 MiB).
pub(crate) const MAX_METADATA_SIZE: u64 = 10 * 1024 * 1024;
/// Progress events at most this often (the GUI samples them further).
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Verified objects move into the store this often, so a killed pull resumes.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
pub use local::LocalSource;
