//! Reading a source's files from a directory: USB drives, sideload and local
//! repositories. Every file is opened beneath the repository root (see
//! [`crate::repo::beneath`]): no FIFO, device, socket or link out of it is read.

use std::path::Path;

use crate::repo::beneath::{BeneathError, Tree};

use super::{read_capped, Body, TransportError};

/// Reads `root/relative`, at most `limit` bytes; a large file is copied into
/// `spill_dir` (never handed out in place: a drive can vanish under a mapping).
pub(super) fn read_file(
    root: &Path,
    relative: &str,
    limit: u64,
    spill_dir: &Path,
) -> Result<Body, TransportError> {
    let tree = Tree::open(root).map_err(TransportError::from)?;
    let file = tree.open_file(relative).map_err(TransportError::from)?;
    let len = file
        .metadata()
        .map_err(|e| TransportError::from(tree.read_error(relative, e)))?
        .len();
    if len > limit {
        return Err(TransportError::TooLarge(limit));
    }
    read_capped(file, limit, spill_dir, |e| {
        TransportError::from(tree.read_error(relative, e))
    })
}

impl From<BeneathError> for TransportError {
    fn from(e: BeneathError) -> Self {
        match e {
            BeneathError::NotFound { .. } => TransportError::NotFound,
            BeneathError::TooLarge { limit, .. } => TransportError::TooLarge(limit),
            // A drive pulled out mid-read shows as I/O errors or a vanished mount.
            BeneathError::Lost { .. } => TransportError::Lost(e.to_string()),
            BeneathError::NotRegular { .. }
            | BeneathError::NotDirectory { .. }
            | BeneathError::Escapes { .. } => TransportError::Refused(e.to_string()),
            BeneathError::Io { .. } | BeneathError::Changed { .. } => {
                TransportError::Io(e.to_string())
            }
        }
    }
}
