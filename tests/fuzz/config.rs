//! Configuration key files: a repository's `config` (Ferry's own, and a drive's,
//! whose collection id discovery reads).

use ferry::repo::config::RepoConfig;
use ferry::sources::drive_repo::config_collection_id;
use proptest::prelude::*;

use crate::harness::{check, config, untrusted, HeapBound};
use crate::seeds::seeds;

/// GKeyFile keeps every line with its group and key (a few structs a line, so the
/// per-byte factor covers files of many one-character lines), plus the parsed
/// remotes and tracked refs.
const BOUND: HeapBound = HeapBound::new(64, 64 << 10);

proptest! {
    #![proptest_config(config())]

    #[test]
    fn repo_config(bytes in untrusted(&seeds().configs, 1024)) {
        let len = bytes.len();
        check("RepoConfig::parse", len, BOUND, || {
            if let Ok(config) = RepoConfig::parse("/nonexistent", bytes) {
                let _ = config.mode();
                let _ = config.collection_id();
                let _ = config.remote_names();
                let _ = config.remotes();
                let _ = config.tracked();
            }
        });
    }

    #[test]
    fn drive_config(bytes in untrusted(&seeds().configs, 1024)) {
        let text = String::from_utf8_lossy(&bytes);
        check("config_collection_id", text.len(), BOUND, || {
            config_collection_id(&text).map(drop)
        }).ok();
    }
}
