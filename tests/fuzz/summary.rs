//! Summaries (`(a(s(taya{sv}))a{sv})`), from any HTTP source, peer or drive.

use ferry::repo::summary::Summary;
use ferry::sources::summary::SummaryInfo;
use proptest::prelude::*;

use crate::harness::{check, config, untrusted, HeapBound};
use crate::seeds::{seeds, COLLECTION};

/// GLib's copy of the input, the parsed refs (each smaller than its encoding, but
/// kept twice: as summary refs and as offered refs) and per-variant structs.
const BOUND: HeapBound = HeapBound::new(16, 64 << 10);

proptest! {
    #![proptest_config(config())]

    #[test]
    fn summary(bytes in untrusted(&seeds().summaries, 2048)) {
        check("Summary::parse", bytes.len(), BOUND, || {
            if let Ok(summary) = Summary::parse(&bytes) {
                let _ = summary.all_refs().count();
                let _ = summary.to_bytes();
            }
        });
        check("SummaryInfo::parse", bytes.len(), BOUND, || {
            SummaryInfo::parse(&bytes, Some(COLLECTION)).map(drop)
        }).ok();
        check("SummaryInfo::parse_for_remote", bytes.len(), BOUND, || {
            SummaryInfo::parse_for_remote(&bytes, None).map(drop)
        }).ok();
    }
}
