//! Reading a source's files from a directory: USB drives, sideload and local
//! repositories.

use std::path::Path;

use super::{read_capped, Body, TransportError};

/// Reads `root/relative`, at most `limit` bytes; a large file is copied into
/// `spill_dir` (never handed out in place: a drive can vanish under a mapping).
pub(super) fn read_file(
    root: &Path,
    relative: &str,
    limit: u64,
    spill_dir: &Path,
) -> Result<Body, TransportError> {
    let path = root.join(relative);
    let meta = std::fs::metadata(&path).map_err(|e| file_error(&path, e))?;
    if !meta.is_file() {
        return Err(TransportError::NotFound);
    }
    if meta.len() > limit {
        return Err(TransportError::TooLarge(limit));
    }
    let file = std::fs::File::open(&path).map_err(|e| file_error(&path, e))?;
    read_capped(file, limit, spill_dir, |e| file_error(&path, e))
}

fn file_error(path: &Path, e: std::io::Error) -> TransportError {
    match e.kind() {
        std::io::ErrorKind::NotFound => TransportError::NotFound,
        // A drive pulled out mid-read shows as I/O errors or a vanished mount.
        _ if !path.exists() => TransportError::Lost(e.to_string()),
        _ => TransportError::Io(format!("{}: {e}", path.display())),
    }
}
