//! Signature data: detached metadata (`.commitmeta`, an `a{sv}` with
//! `ostree.gpgsigs` and `ostree.sign.ed25519`), `summary.sig` (the same over the
//! summary), the OpenPGP and ed25519 signatures inside them, and the commit fields
//! trust reads (timestamp, bindings).

use std::path::PathBuf;

use ferry::repo::Checksum;
use ferry::trust::{self, CommitToVerify, Keyring, TrustPolicy};
use proptest::prelude::*;

use crate::harness::{check, config, untrusted, HeapBound};
use crate::seeds::{seeds, BRANCH, COLLECTION};

/// GLib's copy of the input, the signature blobs copied out and the OpenPGP
/// parser's packets (each no larger than its encoding); checking one good OpenPGP
/// signature costs about 700 KiB whatever its size (the pgp crate's hashing and
/// key material), hence the fixed part.
const BOUND: HeapBound = HeapBound::new(16, 1 << 20);

/// Requires GPG and ed25519 signatures by the seed keys on commits and summaries.
fn signing_policy() -> TrustPolicy {
    let mut keyring = Keyring::new();
    keyring
        .add_bytes(&seeds().gpg_public_key)
        .expect("seed key");
    TrustPolicy {
        remote_name: "fuzz".into(),
        gpg_verify: true,
        gpg_verify_summary: true,
        gpg_keyring_paths: Vec::new(),
        gpg_keyring: keyring,
        sign_verify: true,
        sign_verify_summary: true,
        ed25519_trusted: vec![seeds().ed25519_public_key],
        ed25519_revoked: Vec::new(),
        collection_id: Some(COLLECTION.into()),
        allow_downgrade: false,
        system_root: PathBuf::from("/nonexistent"),
    }
}

/// Checks no signature: only the commit's own fields and bindings.
fn unsigned_policy() -> TrustPolicy {
    TrustPolicy {
        gpg_verify: false,
        sign_verify: false,
        ..signing_policy()
    }
}

#[test]
fn seeds_verify() {
    let s = seeds();
    let policy = signing_policy();
    for sig in &s.summary_sigs[1..2] {
        policy
            .verify_summary(&s.signed_summary, Some(sig))
            .expect("GPG and ed25519 summary.sig");
    }
    let meta = s.commitmetas.iter().find_map(|m| {
        let meta = trust::parse_detached_metadata(m).ok()?;
        policy
            .verify_commit(&CommitToVerify {
                commit_bytes: &s.signed_commit,
                detached_metadata: Some(meta),
                ref_name: BRANCH,
                current: None,
            })
            .ok()
    });
    assert!(
        meta.is_some(),
        "the signed commit verifies with its .commitmeta"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn detached_metadata(bytes in untrusted(&seeds().commitmetas, 1024)) {
        let policy = signing_policy();
        check("detached metadata", bytes.len(), BOUND, || {
            let meta = trust::parse_detached_metadata(&bytes).ok();
            policy.verify_commit(&CommitToVerify {
                commit_bytes: &seeds().signed_commit,
                detached_metadata: meta,
                ref_name: BRANCH,
                current: None,
            }).map(drop)
        }).ok();
    }

    #[test]
    fn summary_sig(bytes in untrusted(&seeds().summary_sigs, 1024)) {
        let policy = signing_policy();
        check("summary.sig", bytes.len(), BOUND, || {
            policy.verify_summary(&seeds().signed_summary, Some(&bytes)).map(drop)
        }).ok();
    }

    /// The commit as trust reads it (timestamp, ref and collection bindings),
    /// with signatures off so every mutation reaches the parser.
    #[test]
    fn commit_fields(bytes in untrusted(&seeds().commits, 1024), installed in any::<u64>()) {
        let policy = unsigned_policy();
        check("commit fields", bytes.len(), BOUND, || {
            policy.verify_commit(&CommitToVerify {
                commit_bytes: &bytes,
                detached_metadata: None,
                ref_name: BRANCH,
                current: Some((Checksum::digest(b"installed"), installed)),
            }).map(drop)
        }).ok();
    }
}

/// A `.commitmeta` the fuzzer made from the seed: a GPG signature packet whose
/// hashed-subpacket length was changed from 0x001d to 0x201d.
const BAD_SUBPACKETS: &str = "6f73747265652e677067736967730000887504001608201d1621041dda4e46a8b73462b450a6d84bfd2a9334b0cc7905026b0b6d48000a09104bfd2a9334b0cc794c7e0100b0494932deb595cfff176a6e41e6b085be6a01fd224dcc2b85f6faddfa05d4530100f44ac829470d0037daee9c88009312eb483354bbd0f1cbd1fcd4eaf9a85d790c77006161790f8d";

/// Regression: with `RUST_BACKTRACE` set, the pgp crate's message for a malformed
/// packet held a resolved backtrace (a second and 200 MB per signature, pages of
/// text). Run in a child process so the variable is set before the first capture.
#[test]
fn malformed_signature_message_is_short_with_backtraces_on() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "trust::malformed_signature_child",
            "--ignored",
            "--nocapture",
        ])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env("PROPTEST_CASES", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
#[ignore = "run by malformed_signature_message_is_short_with_backtraces_on"]
fn malformed_signature_child() {
    let bytes = hex::decode(BAD_SUBPACKETS).unwrap();
    let meta = trust::parse_detached_metadata(&bytes).expect("a valid a{sv}");
    let policy = signing_policy();
    let err = check("detached metadata", bytes.len(), BOUND, || {
        policy.verify_commit(&CommitToVerify {
            commit_bytes: &seeds().signed_commit,
            detached_metadata: Some(meta),
            ref_name: BRANCH,
            current: None,
        })
    })
    .expect_err("malformed signature");
    let text = err.to_string();
    assert!(text.len() < 400 && !text.contains("acktrace"), "{text}");
}
