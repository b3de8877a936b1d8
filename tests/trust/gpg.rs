//! GPG signatures on commits: good, tampered, untrusted, missing, expired, revoked.

use super::*;

#[test]
fn gpg_ed25519_signed_commit_verifies() {
    let f = gpg_fixture("test@example.org", "ed25519");
    let client = Client::new();
    assert_eq!(client.trust_gpg(&f.gpg, &f.fpr), vec![f.fpr.clone()]);
    let policy = client.policy(&settings(Some(COLLECTION)));
    assert_eq!(
        policy.gpg_keyring_paths,
        vec![keyring_path(&client.repo(), "origin")]
    );

    let verified = verify(&policy, &f.server, &f.commit, "os/stable").unwrap();
    assert_eq!(verified.checksum, f.commit);
    let signer = verified.gpg_signer.expect("GPG signer");
    assert_eq!(signer.fingerprint, f.fpr);
    assert_eq!(signer.signing_key, f.fpr);
    assert_eq!(signer.user_id.as_deref(), Some("test@example.org"));
    assert!(!verified.unsigned_allowed);
    assert_eq!(verified.ref_bindings, Some(vec!["os/stable".to_owned()]));
    assert_eq!(verified.collection_binding.as_deref(), Some(COLLECTION));
}

#[test]
fn gpg_rsa_signing_subkey_verifies() {
    let gpg = Gpg::new();
    let primary = gpg.gen_key("rsa@example.org", "rsa2048", "cert", "never");
    let subkey = gpg.add_subkey(&primary, "rsa2048", "sign");
    assert_ne!(primary, subkey);
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &primary);

    let client = Client::new();
    client.trust_gpg(&gpg, &primary);
    let policy = client.policy(&settings(Some(COLLECTION)));
    let signer = verify(&policy, &server, &commit, "os/stable")
        .unwrap()
        .gpg_signer
        .unwrap();
    assert_eq!(signer.fingerprint, primary);
    assert_eq!(signer.signing_key, subkey);
}

#[test]
fn gpg_flipped_commit_byte_fails() {
    let f = gpg_fixture("flip@example.org", "ed25519");
    let client = Client::new();
    client.trust_gpg(&f.gpg, &f.fpr);
    let policy = client.policy(&settings(Some(COLLECTION)));

    let bytes = f.server.commit_bytes(&f.commit);
    for at in [0, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let err = verify_commit(
            &policy,
            &CommitToVerify {
                commit_bytes: &bad,
                detached_metadata: f.server.commitmeta(&f.commit),
                ref_name: "os/stable",
                current: None,
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, TrustError::BadSignature { kind: SignatureKind::Gpg, key, .. } if key.id == f.fpr),
            "byte {at}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&f.fpr) && msg.contains("for os/stable"),
            "{msg}"
        );
    }
}

#[test]
fn gpg_flipped_signature_byte_fails() {
    let f = gpg_fixture("sigflip@example.org", "ed25519");
    let client = Client::new();
    client.trust_gpg(&f.gpg, &f.fpr);
    let policy = client.policy(&settings(Some(COLLECTION)));
    let bytes = f.server.commit_bytes(&f.commit);
    let meta = f.server.commitmeta(&f.commit).unwrap();
    let sig = signatures(&meta, "ostree.gpgsigs").remove(0);

    // The last bytes are the signature value itself; the middle is the hashed area.
    for at in [sig.len() - 1, sig.len() - 20, sig.len() / 2] {
        let mut bad = sig.clone();
        bad[at] ^= 0x40;
        let meta = vardict(&[("ostree.gpgsigs", aay(&[bad]))]);
        let err = verify_commit(
            &policy,
            &CommitToVerify {
                commit_bytes: &bytes,
                detached_metadata: Some(meta),
                ref_name: "os/stable",
                current: None,
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TrustError::BadSignature { .. }
                    | TrustError::MalformedSignature { .. }
                    | TrustError::UntrustedKey { .. }
            ),
            "byte {at}: {err:?}"
        );
    }
    // The unmodified signature, rebuilt the same way, still verifies.
    let meta = vardict(&[("ostree.gpgsigs", aay(&[sig]))]);
    verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: Some(meta),
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap();
}

#[test]
fn gpg_untrusted_key_fails_naming_the_key() {
    let f = gpg_fixture("signer@example.org", "ed25519");
    let other = Gpg::new();
    let trusted = other.gen_key("trusted@example.org", "ed25519", "sign", "never");
    let client = Client::new();
    client.trust_gpg(&other, &trusted);
    let policy = client.policy(&settings(Some(COLLECTION)));

    let err = verify(&policy, &f.server, &f.commit, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::UntrustedKey { key, .. } if key.id == f.fpr),
        "{err:?}"
    );
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "commit {}… for os/stable is signed by key {} which is not trusted",
            &f.commit.to_hex()[..12],
            f.fpr
        )
    );

    // With no keyring at all, the key is just as untrusted.
    let empty = Client::new();
    let err = verify(
        &empty.policy(&settings(Some(COLLECTION))),
        &f.server,
        &f.commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::UntrustedKey { .. }), "{err:?}");
}

#[test]
fn gpg_unsigned_commit_fails_when_gpg_verify_is_on() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("unsigned@example.org", "ed25519", "sign", "never");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    assert!(server.commitmeta(&commit).is_none());
    let client = Client::new();
    client.trust_gpg(&gpg, &fpr);
    let policy = client.policy(&settings(Some(COLLECTION)));

    let err = verify(&policy, &server, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::NotSigned {
                kind: SignatureKind::Gpg,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("for os/stable has no GPG signature"),
        "{err}"
    );

    // Detached metadata without ostree.gpgsigs is no better.
    let bytes = server.commit_bytes(&commit);
    let err = verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: Some(vardict(&[("other", 1u32.to_variant())])),
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::NotSigned { .. }), "{err:?}");
}

#[test]
fn gpg_expired_key_fails() {
    let gpg = Gpg::new();
    // Made on 2020-01-01, valid for one day; the commit is signed at noon that day.
    let fpr = gpg.gen_key_at(
        "20200101T000000",
        "expired@example.org",
        "ed25519",
        "sign",
        "1d",
    );
    gpg.fake_time("20200101T120000");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &fpr);

    let client = Client::new();
    client.trust_gpg(&gpg, &fpr);
    let policy = client.policy(&settings(Some(COLLECTION)));
    let err = verify(&policy, &server, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::ExpiredKey { key, expired_at, .. }
            if key.id == fpr && *expired_at == 1577836800 + 86400),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&fpr) && msg.contains("expired on 2020-01-02"),
        "{msg}"
    );
}

#[test]
fn gpg_revoked_key_fails() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("revoked@example.org", "ed25519", "sign", "never");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &fpr);

    // Trusted before the revocation: verifies.
    let client = Client::new();
    client.trust_gpg(&gpg, &fpr);
    verify(
        &client.policy(&settings(Some(COLLECTION))),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap();

    // The revocation certificate imported into gpg, then the key re-imported into
    // the keyring (appended: the keyring then holds the key twice).
    gpg.revoke(&fpr);
    assert_eq!(client.trust_gpg(&gpg, &fpr), vec![fpr.clone()]);
    let policy = client.policy(&settings(Some(COLLECTION)));
    assert_eq!(policy.gpg_keyring.len(), 1);
    let err = verify(&policy, &server, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::RevokedKey { key, kind: SignatureKind::Gpg, .. } if key.id == fpr),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!(
            "{fpr} (revoked@example.org) which has been revoked"
        )),
        "{err}"
    );

    // A keyring holding only the revoked export fails the same way.
    let fresh = Client::new();
    fresh.trust_gpg(&gpg, &fpr);
    let err = verify(
        &fresh.policy(&settings(Some(COLLECTION))),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::RevokedKey { .. }), "{err:?}");
}

#[test]
fn gpg_one_valid_signature_among_several_is_enough() {
    let f = gpg_fixture("first@example.org", "ed25519");
    let second = f
        .gpg
        .gen_key("second@example.org", "ed25519", "sign", "never");
    f.server.gpg_sign("os/stable", &f.gpg, &second);
    let meta = f.server.commitmeta(&f.commit).unwrap();
    assert_eq!(signatures(&meta, "ostree.gpgsigs").len(), 2);

    // Only the second key is trusted.
    let client = Client::new();
    client.trust_gpg(&f.gpg, &second);
    let signer = verify(
        &client.policy(&settings(Some(COLLECTION))),
        &f.server,
        &f.commit,
        "os/stable",
    )
    .unwrap()
    .gpg_signer
    .unwrap();
    assert_eq!(signer.fingerprint, second);
}
