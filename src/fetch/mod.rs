//! Pulling objects from sources into the local repository.

pub mod engine;
pub mod history;

use std::time::Duration;

/// Metadata objects larger than this are refused: libostree's
/// `OSTREE_MAX_METADATA_SIZE`. Real trees need more than a few MiB (Debian's
/// `/usr/share/man/man1` alone makes a 1.5 MB dirtree); bodies past
/// `transport::SPILL_SIZE` are held on disk, not in memory.
pub(crate) const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;
/// Progress events at most this often (the GUI samples them further).
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Verified objects move into the store this often, so a killed pull resumes.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Worker threads for CPU and disk work (verifying, staging): twice the cores, as
/// workers also wait on the disk.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}
