//! The superblock: what a delta makes and from which parts.

use glib::{Variant, VariantDict};

use super::{DeltaError, DeltaName};
use crate::repo::objects::variant_from_bytes;
use crate::repo::{Checksum, ObjectName, ObjectType};

/// `(a{sv} t ay ay COMMIT ay a(u ay t t ay) a(y ay t t))`: metadata, timestamp,
/// from, to, the new commit, deltas to apply first (unused by libostree), part
/// headers, fallback objects.
const SUPERBLOCK_TYPE: &str = "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))";

/// The newest part format libostree writes and reads.
const PART_VERSION: u32 = 0;

/// One part as the superblock describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartHeader {
    /// sha256 of the part file.
    pub checksum: Checksum,
    /// Bytes of the part as stored (compressed).
    pub size: u64,
    /// Bytes of the objects it makes.
    pub uncompressed_size: u64,
    /// The objects it makes, in the order its operations make them.
    pub objects: Vec<ObjectName>,
}

/// An object the delta does not carry: fetched on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub object: ObjectName,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
}

/// A parsed, checked superblock.
#[derive(Debug)]
pub struct Superblock {
    pub name: DeltaName,
    pub timestamp: u64,
    /// The new commit's bytes (they hash to `name.to`).
    pub commit: Vec<u8>,
    pub parts: Vec<PartHeader>,
    pub fallbacks: Vec<Fallback>,
    metadata: Variant,
}

impl Superblock {
    /// Parses a superblock file and checks that it is the delta `expected` names
    /// (when given: its from and to) and that its commit hashes to its target.
    pub fn parse(bytes: &[u8], expected: Option<&DeltaName>) -> Result<Self, DeltaError> {
        let bad = |reason: &str| DeltaError::BadSuperblock(reason.to_owned());
        let v = variant_from_bytes("delta superblock", SUPERBLOCK_TYPE, bytes)
            .map_err(|_| bad("not a superblock GVariant in normal form"))?;
        let metadata = v.child_value(0);
        let swap = needs_byteswap(&metadata)?;
        let u64_native = |x: u64| if swap { x.swap_bytes() } else { x };

        let from = v.child_value(2).data().to_vec();
        let to = v.child_value(3).data().to_vec();
        let from = match from.len() {
            0 => None,
            _ => Some(Checksum::from_bytes(&from).map_err(|_| bad("bad from checksum"))?),
        };
        let to = Checksum::from_bytes(&to).map_err(|_| bad("bad to checksum"))?;
        let name = DeltaName { from, to };
        if let Some(expected) = expected.filter(|&e| *e != name) {
            return Err(DeltaError::BadSuperblock(format!(
                "it is the delta {name}, not {expected}"
            )));
        }
        let commit = v.child_value(4).data().to_vec();
        let actual = Checksum::digest(&commit);
        if actual != to {
            return Err(DeltaError::BadSuperblock(format!(
                "its commit hashes to {}, not {}",
                actual.to_hex(),
                to.to_hex()
            )));
        }
        if v.child_value(5).n_children() != 0 {
            return Err(bad(
                "it depends on other deltas, which libostree never writes",
            ));
        }

        let headers = v.child_value(6);
        let mut parts = Vec::with_capacity(headers.n_children());
        for i in 0..headers.n_children() {
            let h = headers.child_value(i);
            let version = h.child_value(0).get::<u32>().unwrap_or_default();
            let version = if swap { version.swap_bytes() } else { version };
            if version > PART_VERSION {
                return Err(DeltaError::BadSuperblock(format!(
                    "part {i} has format version {version}, newer than this Ferry reads"
                )));
            }
            let checksum = Checksum::from_bytes(h.child_value(1).data())
                .map_err(|_| bad("a part checksum is not 32 bytes"))?;
            parts.push(PartHeader {
                checksum,
                size: u64_native(h.child_value(2).get::<u64>().unwrap_or_default()),
                uncompressed_size: u64_native(h.child_value(3).get::<u64>().unwrap_or_default()),
                objects: object_list(h.child_value(4).data())
                    .ok_or_else(|| bad("a part's object list is malformed"))?,
            });
        }

        let fallback_list = v.child_value(7);
        let mut fallbacks = Vec::with_capacity(fallback_list.n_children());
        for i in 0..fallback_list.n_children() {
            let f = fallback_list.child_value(i);
            let kind = object_type(f.child_value(0).get::<u8>().unwrap_or_default())
                .ok_or_else(|| bad("a fallback has an unknown object type"))?;
            let checksum = Checksum::from_bytes(f.child_value(1).data())
                .map_err(|_| bad("a fallback checksum is not 32 bytes"))?;
            fallbacks.push(Fallback {
                object: ObjectName::new(checksum, kind),
                compressed_size: u64_native(f.child_value(2).get::<u64>().unwrap_or_default()),
                uncompressed_size: u64_native(f.child_value(3).get::<u64>().unwrap_or_default()),
            });
        }

        Ok(Self {
            name,
            timestamp: u64::from_be(v.child_value(1).get::<u64>().unwrap_or_default()),
            commit,
            parts,
            fallbacks,
            metadata,
        })
    }

    /// Part `index` when it is carried inside the superblock: the bytes of a part
    /// file (compression byte, payload).
    pub fn inline_part(&self, index: usize) -> Option<Vec<u8>> {
        let dict = VariantDict::new(Some(&self.metadata));
        let key = self.name.part_path(index);
        let ty = glib::VariantTy::new("(yay)").expect("static type");
        dict.lookup_value(&key, Some(ty)).map(|v| v.data().to_vec())
    }

    /// Bytes to download: the parts not inline, and the fallbacks.
    pub fn download_size(&self) -> u64 {
        let parts: u64 = (0..self.parts.len())
            .filter(|&i| self.inline_part(i).is_none())
            .map(|i| self.parts[i].size)
            .sum();
        parts
            + self
                .fallbacks
                .iter()
                .map(|f| f.compressed_size)
                .sum::<u64>()
    }
}

/// Whether the superblock's sizes are in the other byte order than this machine's.
fn needs_byteswap(metadata: &Variant) -> Result<bool, DeltaError> {
    let dict = VariantDict::new(Some(metadata));
    let little = match dict.lookup::<u8>("ostree.endianness") {
        Ok(Some(b'l')) | Ok(None) | Err(_) => true,
        Ok(Some(b'B')) => false,
        Ok(Some(other)) => {
            return Err(DeltaError::BadSuperblock(format!(
                "unknown byte order {other:#x}"
            )))
        }
    };
    Ok(little != cfg!(target_endian = "little"))
}

/// The object type byte of delta object lists (libostree's `OstreeObjectType`).
pub(super) fn object_type(byte: u8) -> Option<ObjectType> {
    Some(match byte {
        1 => ObjectType::File,
        2 => ObjectType::DirTree,
        3 => ObjectType::DirMeta,
        4 => ObjectType::Commit,
        _ => return None,
    })
}

/// A part's object list: 33-byte entries, type byte then checksum.
fn object_list(data: &[u8]) -> Option<Vec<ObjectName>> {
    if !data.len().is_multiple_of(33) {
        return None;
    }
    data.chunks_exact(33)
        .map(|entry| {
            let kind = object_type(entry[0])?;
            let checksum = Checksum::from_bytes(&entry[1..]).ok()?;
            Some(ObjectName::new(checksum, kind))
        })
        .collect()
}
