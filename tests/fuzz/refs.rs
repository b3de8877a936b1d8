//! Ref files (`refs/heads/…`, `refs/mirrors/…` on a drive: a checksum and a
//! newline) and the names in them and in refspecs.

use std::path::Path;

use ferry::repo::refs::{
    is_valid_collection_id, is_valid_ref_name, is_valid_remote_name, parse_ref_contents,
    parse_refspec,
};
use proptest::prelude::*;
use std::sync::OnceLock;

use crate::harness::{check, config, untrusted, HeapBound};
use crate::seeds::seeds;

/// A checksum or an error quoting the contents; name checks compile a GRegex
/// (about 20 KiB whatever the name).
const BOUND: HeapBound = HeapBound::new(4, 64 << 10);

fn names() -> &'static [Vec<u8>] {
    static NAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        [
            "os/stable",
            "org.example.Fuzz",
            "origin:os/stable",
            "app/org.example.App/x86_64/stable",
            "a-b_c.d",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ref_file(bytes in untrusted(&seeds().ref_files, 200)) {
        check("ref file", bytes.len(), BOUND, || {
            parse_ref_contents(Path::new("refs/heads/os/stable"), &bytes).map(drop)
        }).ok();
    }

    #[test]
    fn names_and_refspecs(bytes in untrusted(names(), 80)) {
        let text = String::from_utf8_lossy(&bytes);
        check("names", text.len(), BOUND, || {
            let _ = is_valid_ref_name(&text);
            let _ = is_valid_collection_id(&text);
            let _ = is_valid_remote_name(&text);
            let _ = parse_refspec(&text);
        });
    }
}
