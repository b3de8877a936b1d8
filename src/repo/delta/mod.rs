//! Static deltas as libostree 2022.7 writes them (`ostree static-delta generate`):
//! a superblock naming the new commit and its parts, parts that rebuild objects
//! with a small set of operations, and fallback objects fetched one by one.
//!
//! Layout (`deltas/` under the repository, names in modified base64, see
//! [`DeltaName`]): `deltas/XX/REST[-TO]/superblock` and the parts `…/0`, `…/1`, …;
//! a part may instead be inline in the superblock's metadata, keyed by its path.
//!
//! Nothing a delta says is trusted: the superblock's commit must hash to the
//! delta's target, a part must match the checksum its superblock gives (unless
//! inline, where the superblock's own check covers it), and every object a part
//! makes is checked against its name before it is handed on ([`execute_part`]).
//! Operations are bounds-checked; a `bspatch` that would write past its target or
//! read past its patch is refused rather than trusted (libostree asserts).
//!
//! What libostree does and Ferry follows: the sizes in the superblock are in the
//! byte order of the machine that made the delta (`ostree.endianness`, `l` or `B`;
//! little-endian when absent, the only order deltas are made in today), modes in
//! parts are big-endian as everywhere in OSTree. Signed superblocks
//! (`--sign-type`) are not read.

mod apply;
mod bspatch;
mod import;
mod part;
mod superblock;

pub use apply::{execute_part, DeltaObject};
pub use bspatch::bspatch;
pub use import::{apply_offline, apply_part, has_all_objects, DeltaStats};
pub use part::PartPayload;
pub use superblock::{Fallback, PartHeader, Superblock};

use base64::Engine as _;

use crate::repo::{Checksum, ObjectName, RepoError};

/// Why a static delta was not used.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta superblock is not valid: {0}")]
    BadSuperblock(String),
    #[error("delta part {index} is not valid: {reason}")]
    BadPart { index: usize, reason: String },
    #[error("delta part {index} does not match its checksum (expected {expected}, got {actual})")]
    PartChecksum {
        index: usize,
        expected: String,
        actual: String,
    },
    #[error("delta part {index}, operation {op}: {reason}")]
    BadOperation {
        index: usize,
        op: usize,
        reason: String,
    },
    #[error("delta part {index} made {object}, but its content hashes to {actual}")]
    ObjectMismatch {
        index: usize,
        object: ObjectName,
        actual: String,
    },
    #[error("delta part {index} reads {object}, which this repository cannot give: {source}")]
    MissingSource {
        index: usize,
        object: String,
        #[source]
        source: RepoError,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A delta's name: to a commit from nothing (`TO`), or from one commit to another
/// (`FROM-TO`), as the summary's `ostree.static-deltas` keys write it in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeltaName {
    pub from: Option<Checksum>,
    pub to: Checksum,
}

impl DeltaName {
    /// Parses a summary key: `TO` or `FROM-TO`, lowercase hex checksums.
    pub fn parse(key: &str) -> Option<Self> {
        let hex = |s: &str| {
            (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| hex::decode(s).ok())
                .flatten()
                .and_then(|bytes| Checksum::from_bytes(&bytes).ok())
        };
        match key.split_once('-') {
            Some((from, to)) => Some(Self {
                from: Some(hex(from)?),
                to: hex(to)?,
            }),
            None => Some(Self {
                from: None,
                to: hex(key)?,
            }),
        }
    }

    /// The summary key: `TO` or `FROM-TO` in hex.
    pub fn summary_key(&self) -> String {
        match &self.from {
            Some(from) => format!("{}-{}", from.to_hex(), self.to.to_hex()),
            None => self.to.to_hex(),
        }
    }

    /// `deltas/XX/REST[-TO]`, relative to the repository (libostree's
    /// `static_delta_path_base`): the first two characters of the first checksum's
    /// modified base64, then the rest.
    pub fn dir(&self) -> String {
        let to = modified_base64(&self.to);
        match &self.from {
            Some(from) => {
                let from = modified_base64(from);
                format!("deltas/{}/{}-{}", &from[..2], &from[2..], to)
            }
            None => format!("deltas/{}/{}", &to[..2], &to[2..]),
        }
    }

    pub fn superblock_path(&self) -> String {
        format!("{}/superblock", self.dir())
    }

    /// The path of part `index`; also the superblock metadata key of an inline part.
    pub fn part_path(&self, index: usize) -> String {
        format!("{}/{index}", self.dir())
    }
}

impl std::fmt::Display for DeltaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary_key())
    }
}

/// Base64 without padding, `/` written as `_` (ostree's "modified base64").
fn modified_base64(checksum: &Checksum) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(checksum.as_bytes())
        .replace('/', "_")
}

/// Reads a protobuf-style varint (7 bits a byte, low first) from the front of
/// `data`, advancing it; `None` at the end of the data or past 64 bits.
fn read_varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *data = &data[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_follow_libostree() {
        let to = Checksum([0xff; 32]);
        let from = Checksum([0x00; 32]);
        let scratch = DeltaName { from: None, to };
        // 32 bytes of 0xff: "/////…8" in base64, with `/` as `_`.
        assert_eq!(
            scratch.superblock_path(),
            format!("deltas/__/{}8/superblock", "_".repeat(40))
        );
        let delta = DeltaName {
            from: Some(from),
            to,
        };
        assert_eq!(
            delta.part_path(3),
            format!("deltas/AA/{}-{}8/3", "A".repeat(41), "_".repeat(42))
        );
        assert_eq!(DeltaName::parse(&delta.summary_key()), Some(delta));
        assert_eq!(DeltaName::parse(&scratch.summary_key()), Some(scratch));
        assert_eq!(DeltaName::parse("00-11"), None);
        assert_eq!(DeltaName::parse(&"A".repeat(64)), None);
    }

    #[test]
    fn varints() {
        let mut data: &[u8] = &[0x05, 0xac, 0x02, 0xff];
        assert_eq!(read_varint(&mut data), Some(5));
        assert_eq!(read_varint(&mut data), Some(300));
        assert_eq!(read_varint(&mut data), None, "a varint cut short");
        let mut too_long: &[u8] = &[0xff; 11];
        assert_eq!(read_varint(&mut too_long), None);
        let mut max: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&mut max), Some(u64::MAX));
    }
}
