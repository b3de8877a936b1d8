//! A source on disk: a repository on a USB drive, in a sideload directory, or any
//! path or `file://` URI.

use std::path::{Path, PathBuf};

use crate::fetch::error::PullError;
use crate::repo::beneath::{BeneathError, ErrorKeepingReader, Tree};
use crate::repo::refs::{self, RefKind};
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, RepoError};

/// A repository read straight from the filesystem.
#[derive(Clone, Debug)]
pub struct PathSource {
    root: PathBuf,
    name: String,
    /// This computer's own repository (prepare-usb's source), read in its mode:
    /// a bare one has no `.filez` to copy, they are made as they are read.
    local: Option<Repo>,
}

impl PathSource {
    /// `uri` is a `file://` URI or a plain path.
    pub fn new(uri: &str) -> Result<Self, PullError> {
        let path = match uri.strip_prefix("file://") {
            Some(rest) => PathBuf::from(percent_decode(rest)),
            None => PathBuf::from(uri),
        };
        let name = path.display().to_string();
        if !path.join("objects").is_dir() {
            return Err(PullError::NotServing { source_name: name });
        }
        Ok(Self {
            root: path,
            name,
            local: None,
        })
    }

    /// The local repository `repo` as a source, in any mode.
    pub fn local(repo: &Repo) -> Self {
        Self {
            root: repo.root().to_path_buf(),
            name: repo.root().display().to_string(),
            local: Some(repo.clone()),
        }
    }

    /// The stored size of a file object (0 if unknown): for progress only.
    pub fn file_size(&self, name: &ObjectName) -> u64 {
        let path = match &self.local {
            Some(repo) => repo.object_path(name),
            None => self.root.join(name.relative_path()),
        };
        std::fs::symlink_metadata(path).map_or(0, |m| m.len())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The commit a ref points at: `refs/mirrors/COLLECTION/REF` (what `ostree
    /// create-usb` writes), then `refs/heads/REF` when the source's own collection
    /// matches or is unknown.
    pub fn resolve_ref(
        &self,
        collection_id: Option<&str>,
        ref_name: &str,
    ) -> Result<Checksum, PullError> {
        let source_err = |error| PullError::Source {
            source_name: self.name.clone(),
            error,
        };
        if let Some(collection) = collection_id {
            let kind = RefKind::Mirror(collection.to_owned());
            if let Some(c) = refs::read_ref(&self.root, &kind, ref_name).map_err(source_err)? {
                return Ok(c);
            }
        }
        if let Some(c) = refs::read_ref(&self.root, &RefKind::Head, ref_name).map_err(source_err)? {
            return Ok(c);
        }
        Err(PullError::RefNotFound {
            source_name: self.name.clone(),
            ref_name: ref_name.to_owned(),
        })
    }

    /// The repository root, opened for reading beneath it only (no FIFO, device,
    /// socket or link out of it is ever read).
    fn tree(&self) -> Result<Tree, PullError> {
        Tree::open(&self.root).map_err(|e| self.error(e))
    }

    fn error(&self, e: BeneathError) -> PullError {
        PullError::Source {
            source_name: self.name.clone(),
            error: e.into(),
        }
    }

    /// Reads a metadata object, at most `limit` bytes; `Ok(None)` when the source
    /// does not have it.
    pub fn read(&self, name: &ObjectName, limit: u64) -> Result<Option<Vec<u8>>, PullError> {
        match self.tree()?.read(name.relative_path(), limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(BeneathError::NotFound { .. }) => Ok(None),
            Err(BeneathError::TooLarge { .. }) => Err(PullError::BadObject {
                source_name: self.name.clone(),
                error: RepoError::CorruptObject {
                    name: *name,
                    reason: "larger than any metadata object may be".into(),
                },
            }),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Stages the file object `name` into `txn`, verified as it is copied;
    /// `Ok(None)` when the source does not have it. A read error of the source (a
    /// drive pulled out) is reported as such, not as a bad object.
    pub fn stage_file(
        &self,
        txn: &Transaction,
        name: &ObjectName,
    ) -> Result<Option<u64>, PullError> {
        if let Some(repo) = self.local.as_ref().filter(|r| !r.mode().is_archive()) {
            let stream = match repo.filez_stream(name) {
                Ok(stream) => stream,
                Err(RepoError::MissingObject(_)) => return Ok(None),
                Err(error) => return Err(self.bad_or_local(error)),
            };
            return match txn.stage_filez(name, stream) {
                Ok(n) => Ok(Some(n)),
                Err(error) => Err(self.bad_or_local(error)),
            };
        }
        let tree = self.tree()?;
        let relative = name.relative_path();
        let file = match tree.open_file(&relative) {
            Ok(file) => file,
            Err(BeneathError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let mut reader = ErrorKeepingReader::new(file);
        let result = txn.stage_filez(name, &mut reader);
        match (result, reader.into_error()) {
            (Ok(n), _) => Ok(Some(n)),
            (Err(_), Some(e)) => Err(self.error(tree.read_error(&relative, e))),
            (Err(error), None) => Err(self.bad_or_local(error)),
        }
    }

    fn bad_or_local(&self, error: RepoError) -> PullError {
        if error.is_local() {
            PullError::Local(error)
        } else {
            PullError::BadObject {
                source_name: self.name.clone(),
                error,
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_file_uris() {
        assert_eq!(super::percent_decode("/a%20b/c"), "/a b/c");
        assert_eq!(super::percent_decode("/100%"), "/100%");
    }
}
