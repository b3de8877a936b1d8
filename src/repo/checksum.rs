//! Object names: a SHA-256 checksum plus an object type, and where they live on disk.

use std::fmt;
use std::str::FromStr;

use crate::repo::error::RepoError;

/// A SHA-256 checksum naming an OSTree object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RepoError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RepoError::InvalidChecksum(hex::encode(bytes)))?;
        Ok(Self(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// sha256 of `data`.
    pub fn digest(data: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(data).into())
    }
}

impl FromStr for Checksum {
    type Err = RepoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_end_matches('\n');
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(RepoError::InvalidChecksum(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| RepoError::InvalidChecksum(s.into()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// The kinds of object an archive repository stores, with their file extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// File content; stored compressed as `.filez` in archive mode.
    File,
    DirTree,
    DirMeta,
    Commit,
    TombstoneCommit,
    /// Detached commit metadata (signatures); named by the commit's checksum.
    CommitMeta,
}

impl ObjectType {
    pub fn extension(self) -> &'static str {
        match self {
            ObjectType::File => "filez",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::TombstoneCommit => "tombstone-commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext {
            "filez" => ObjectType::File,
            "dirtree" => ObjectType::DirTree,
            "dirmeta" => ObjectType::DirMeta,
            "commit" => ObjectType::Commit,
            "tombstone-commit" => ObjectType::TombstoneCommit,
            "commitmeta" => ObjectType::CommitMeta,
            _ => return None,
        })
    }

    /// Metadata objects are GVariants whose checksum is the sha256 of their bytes.
    pub fn is_meta(self) -> bool {
        !matches!(self, ObjectType::File)
    }
}

/// A checksum together with the type of object it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub checksum: Checksum,
    pub kind: ObjectType,
}

impl ObjectName {
    pub fn new(checksum: Checksum, kind: ObjectType) -> Self {
        Self { checksum, kind }
    }

    /// Path relative to the repository root: `objects/ab/cdef….ext`.
    pub fn relative_path(&self) -> String {
        let hex = self.checksum.to_hex();
        format!(
            "objects/{}/{}.{}",
            &hex[..2],
            &hex[2..],
            self.kind.extension()
        )
    }

    /// Parses `ab/cdef….ext` (the part below `objects/`).
    pub fn from_relative_path(path: &str) -> Option<Self> {
        let path = path.strip_prefix("objects/").unwrap_or(path);
        let (dir, file) = path.split_once('/')?;
        let (rest, ext) = file.split_once('.')?;
        if dir.len() != 2 {
            return None;
        }
        let checksum = format!("{dir}{rest}").parse().ok()?;
        Some(Self::new(checksum, ObjectType::from_extension(ext)?))
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.checksum, self.kind.extension())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_round_trip() {
        let c = Checksum::digest(b"hello");
        let name = ObjectName::new(c, ObjectType::DirTree);
        let path = name.relative_path();
        assert!(path.starts_with("objects/2c/"));
        assert!(path.ends_with(".dirtree"));
        assert_eq!(ObjectName::from_relative_path(&path), Some(name));
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("ABCD".parse::<Checksum>().is_err());
        assert!("g".repeat(64).parse::<Checksum>().is_err());
        assert!("A".repeat(64).parse::<Checksum>().is_err());
        assert!("a".repeat(64).parse::<Checksum>().is_ok());
    }
}
