//! `.filez` objects: the framed header GVariant (`(tuuuusa(ayay))` behind a u32
//! length) and the deflated content, verified as they stream in.

use std::io::Read;

use ferry::repo::filez::{open_filez, read_archive_header, verify_filez, FilezCheck};
use ferry::repo::{Checksum, ObjectName, ObjectType};
use proptest::prelude::*;

use crate::harness::{check, config, edit, Edit, HeapBound};
use crate::seeds::seeds;

/// The streaming check keeps a 256 KiB buffer pair per thread and zlib's window;
/// the header (at most what arrived) is kept until complete.
const STREAM_BOUND: HeapBound = HeapBound::new(4, 1 << 20);
/// Reading a header: what arrived (read in growing steps), and the parsed fields.
const HEADER_BOUND: HeapBound = HeapBound::new(8, 64 << 10);
/// The same, and zlib's state while the content is inflated (into a fixed buffer).
const CONTENT_BOUND: HeapBound = HeapBound::new(8, 256 << 10);
/// How much inflated content the header reading property reads at most.
const CONTENT_LIMIT: u64 = 1 << 20;

/// A seed `.filez` with edits, and the checksum of the unedited object.
fn mutated_filez() -> impl Strategy<Value = (Vec<u8>, Checksum)> {
    let filez = &seeds().filez;
    prop_oneof![
        4 => (0..filez.len(), proptest::collection::vec(edit(), 1..7)).prop_map(|(i, edits)| {
            let (bytes, checksum) = &filez[i];
            let mut bytes = bytes.clone();
            for e in &edits {
                Edit::apply(e, &mut bytes);
            }
            (bytes, *checksum)
        }),
        1 => (0..filez.len()).prop_map(|i| filez[i].clone()),
        1 => (proptest::collection::vec(any::<u8>(), 0..2048), 0..filez.len())
            .prop_map(|(bytes, i)| (bytes, filez[i].1)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// As a pull verifies a download: the whole object through `verify_filez`, and
    /// again in pieces of random sizes through `FilezCheck`. Both must agree.
    #[test]
    fn verify((bytes, checksum) in mutated_filez(), pieces in proptest::collection::vec(1usize..4096, 1..8), scratch in 1usize..70_000) {
        let whole = check("verify_filez", bytes.len(), STREAM_BOUND, || {
            verify_filez(&bytes[..], &checksum, &mut std::io::sink()).map(|(h, _)| h)
        });
        let pieced = check("FilezCheck", bytes.len(), STREAM_BOUND, || {
            let mut check = FilezCheck::new(&checksum);
            let mut scratch = vec![0u8; scratch];
            let mut rest = &bytes[..];
            for n in pieces.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*n).min(rest.len()));
                rest = tail;
                check.update(piece, &mut scratch)?;
            }
            check.finish()
        });
        prop_assert_eq!(whole.is_ok(), pieced.is_ok(), "{:?} / {:?}", whole, pieced);
    }

    /// As a checkout reads a stored object: the header, then the content.
    #[test]
    fn header_and_content((bytes, checksum) in mutated_filez()) {
        let name = ObjectName::new(checksum, ObjectType::File);
        check("read_archive_header", bytes.len(), HEADER_BOUND, || {
            read_archive_header(&mut &bytes[..], &name).map(drop)
        }).ok();
        check("open_filez", bytes.len(), CONTENT_BOUND, || {
            let (header, content) = open_filez(&bytes[..], &name)?;
            std::io::copy(&mut content.take(header.size.min(CONTENT_LIMIT) + 1), &mut std::io::sink())
                .map_err(|e| ferry::repo::RepoError::io("content", e))?;
            Ok::<_, ferry::repo::RepoError>(())
        }).ok();
    }
}
