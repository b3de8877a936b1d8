//! What a nearby computer advertises: DNS-SD TXT strings (`v`, `rb`, `st`, `ri`),
//! and the refs bloom filter inside `rb`.

use ferry::sources::lan::bloom::Bloom;
use ferry::sources::lan::txt::{RepoAdvert, TxtAttributes, MAX_TXT_STRING_LEN};
use proptest::prelude::*;

use crate::harness::{check, config, edit, untrusted, Edit, HeapBound};
use crate::seeds::{seeds, BRANCH, COLLECTION};

/// The attribute map holds each string once, plus GLib's copy of one value at a
/// time and the filter; the hash table's buckets are the fixed part.
const TXT_BOUND: HeapBound = HeapBound::new(4, 64 << 10);
/// The filter is the input; checking a ref needs k bit indices (k ≤ 255).
const BLOOM_BOUND: HeapBound = HeapBound::new(2, 16 << 10);

/// The four strings of a seed advert with some of them edited, some extra strings
/// (duplicates, junk) and the order shuffled.
fn advert_strings() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let strings = &seeds().txt_strings;
    let adverts = strings.len() / 4;
    (
        0..adverts,
        proptest::collection::vec((0usize..4, proptest::collection::vec(edit(), 1..4)), 0..4),
        proptest::collection::vec(untrusted(strings, 64), 0..4),
        any::<proptest::sample::Index>(),
    )
        .prop_map(move |(advert, edits, extra, rotate)| {
            let mut out: Vec<Vec<u8>> = strings[advert * 4..advert * 4 + 4].to_vec();
            for (which, edits) in edits {
                for e in &edits {
                    Edit::apply(e, &mut out[which]);
                }
            }
            out.extend(extra);
            let n = out.len();
            out.rotate_left(rotate.index(n));
            out
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn txt_records(strings in advert_strings()) {
        let total: usize = strings.iter().map(Vec::len).sum();
        check("TXT records", total, TXT_BOUND, || {
            let attrs = TxtAttributes::parse(&strings);
            if let Ok(advert) = RepoAdvert::decode(&attrs) {
                let _ = advert.bloom.may_contain(COLLECTION, BRANCH);
                let _ = advert.repo_path();
            }
        });
    }

    #[test]
    fn bloom_filter(
        bytes in proptest::collection::vec(any::<u8>(), 0..MAX_TXT_STRING_LEN),
        k in any::<u8>(),
        ref_name in "[a-z/]{0,20}",
    ) {
        let len = bytes.len();
        check("bloom filter", len, BLOOM_BOUND, || {
            if let Ok(mut bloom) = Bloom::from_bytes(bytes, k) {
                let _ = bloom.may_contain(COLLECTION, &ref_name);
                bloom.add(COLLECTION, &ref_name);
                assert!(bloom.may_contain(COLLECTION, &ref_name), "added, then absent");
            }
        });
    }
}
