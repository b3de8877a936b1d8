//! A delta part: a compression byte, then `(a(uuu) aa(ayay) ay ay)` (modes,
//! xattrs, the raw data the operations copy from, the operations).

use std::io::Read;

use glib::Variant;

use super::{DeltaError, PartHeader};
use crate::repo::objects::{variant_from_bytes, xattrs_from_variant, Xattrs};
use crate::repo::Checksum;

const PAYLOAD_TYPE: &str = "(a(uuu)aa(ayay)ayay)";

/// A part, decompressed and parsed.
#[derive(Debug)]
pub struct PartPayload {
    /// (uid, gid, mode) of the files made, indexed by the operations.
    pub modes: Vec<(u32, u32, u32)>,
    pub xattrs: Vec<Xattrs>,
    /// The bytes content is copied from.
    pub data: Vec<u8>,
    pub operations: Vec<u8>,
}

impl PartPayload {
    /// Opens part `index` from the bytes of its file. `header.checksum` is checked
    /// unless the part was inline in the superblock (`inline`); the decompressed
    /// size may not exceed what the header says the part makes plus its own
    /// framing, so a small part cannot inflate without bound.
    pub fn open(
        index: usize,
        header: &PartHeader,
        file: &[u8],
        inline: bool,
    ) -> Result<Self, DeltaError> {
        let bad = |reason: String| DeltaError::BadPart { index, reason };
        if !inline {
            let actual = Checksum::digest(file);
            if actual != header.checksum {
                return Err(DeltaError::PartChecksum {
                    index,
                    expected: header.checksum.to_hex(),
                    actual: actual.to_hex(),
                });
            }
        }
        let (&compression, rest) = file
            .split_first()
            .ok_or_else(|| bad("the part is empty".into()))?;
        let payload = match compression {
            0 => rest.to_vec(),
            b'x' => {
                // What the part makes, its modes, xattrs and operations: generous
                // framing room, then refuse.
                let limit = header
                    .uncompressed_size
                    .saturating_mul(2)
                    .saturating_add(16 << 20);
                let mut out = Vec::new();
                xz2::read::XzDecoder::new(rest)
                    .take(limit + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("xz: {e}")))?;
                if out.len() as u64 > limit {
                    return Err(bad(format!("it inflates past {limit} bytes")));
                }
                out
            }
            other => return Err(bad(format!("unknown compression {other:#x}"))),
        };
        let v = variant_from_bytes("delta part", PAYLOAD_TYPE, &payload)
            .map_err(|_| bad("not a part GVariant in normal form".into()))?;
        let modes = v.child_value(0);
        let modes = (0..modes.n_children())
            .map(|i| {
                let m = modes.child_value(i);
                let be = |j| u32::from_be(m.child_value(j).get::<u32>().unwrap_or_default());
                (be(0), be(1), be(2))
            })
            .collect();
        let xattrs: Variant = v.child_value(1);
        let xattrs = (0..xattrs.n_children())
            .map(|i| xattrs_from_variant(&xattrs.child_value(i)))
            .collect();
        Ok(Self {
            modes,
            xattrs,
            data: v.child_value(2).data().to_vec(),
            operations: v.child_value(3).data().to_vec(),
        })
    }
}
