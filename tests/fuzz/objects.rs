//! Commit, dirtree and dirmeta objects (`(a{sv}aya(say)sstayay)`, `(a(say)a(sayay))`,
//! `(uuua(ayay))`): fetched from any source before their checksum is known good
//! only by name.

use ferry::repo::objects::{Commit, DirMeta, DirTree};
use proptest::prelude::*;

use crate::harness::{check, config, untrusted, HeapBound};
use crate::seeds::seeds;

/// GLib copies the input once; each child variant GLib hands out costs a small
/// struct, and the parsed names and checksums are smaller than their encoding.
const BOUND: HeapBound = HeapBound::new(8, 64 << 10);

fn parse_commit(bytes: &[u8]) {
    check("commit", bytes.len(), BOUND, || {
        if let Ok(commit) = Commit::parse(bytes) {
            let _ = commit.sizes();
            let _ = commit.version();
            let _ = commit.to_bytes();
        }
    });
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn commit(bytes in untrusted(&seeds().commits, 1024)) {
        parse_commit(&bytes);
    }

    #[test]
    fn dirtree(bytes in untrusted(&seeds().dirtrees, 1024)) {
        check("dirtree", bytes.len(), BOUND, || DirTree::parse(&bytes).map(drop)).ok();
    }

    #[test]
    fn dirmeta(bytes in untrusted(&seeds().dirmetas, 256)) {
        check("dirmeta", bytes.len(), BOUND, || DirMeta::parse(&bytes).map(drop)).ok();
    }

    /// Any metadata object offered as any other kind (a source may lie about types).
    #[test]
    fn metadata_of_the_wrong_kind(bytes in untrusted(&seeds().metadata_objects, 512)) {
        parse_commit(&bytes);
        check("dirtree", bytes.len(), BOUND, || DirTree::parse(&bytes).map(drop)).ok();
        check("dirmeta", bytes.len(), BOUND, || DirMeta::parse(&bytes).map(drop)).ok();
    }
}
