//! ed25519 signatures (`sign-verify`).

use super::*;

#[test]
fn ed25519_ferry_signer_and_verifier_agree() {
    let (secret, public) = python_keypair();
    assert_eq!(public_key_from_secret(&secret).unwrap(), public);
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let bytes = server.commit_bytes(&commit);

    let sig = sign_ed25519(&secret, &bytes).unwrap();
    let meta = append_ed25519_signature(None, &sig).unwrap();
    server.write_commitmeta(&commit, &meta);

    let client = Client::new();
    let policy = client.policy(&ed25519_settings(&public));
    let verified = verify(&policy, &server, &commit, "os/stable").unwrap();
    assert_eq!(verified.ed25519_key.as_deref(), Some(public.as_str()));
    assert!(verified.gpg_signer.is_none());
    assert!(!verified.unsigned_allowed);

    // Python's cryptography accepts Ferry's signature, and rejects it over other data.
    assert!(python_verifies(&public, &sig, &bytes));
    assert!(!python_verifies(&public, &sig, b"other data"));

    // A flipped byte in the commit or in the signature fails.
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    let err = verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: &bad,
            detached_metadata: Some(meta.clone()),
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::NoValidSignature {
                kind: SignatureKind::Ed25519,
                tried: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let mut bad_sig = sig;
    bad_sig[5] ^= 1;
    let err = verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: Some(append_ed25519_signature(None, &bad_sig).unwrap()),
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, TrustError::NoValidSignature { .. }),
        "{err:?}"
    );
}

#[test]
fn ed25519_detached_metadata_has_the_documented_format() {
    let (secret, public) = python_keypair();
    let sig = sign_ed25519(&secret, b"commit bytes").unwrap();
    let meta = append_ed25519_signature(None, &sig).unwrap();
    assert_eq!(meta.type_().as_str(), "a{sv}");

    // GVariant serialisation of {'ostree.sign.ed25519': <[sig]>}, by hand:
    // key "ostree.sign.ed25519\0" (20 bytes), padding to 24, the variant (aay: the 64
    // signature bytes + framing offset 64; then NUL and the type "aay"), the entry's
    // framing offset (20), and the array's framing offset (entry size 94).
    let mut want = Vec::new();
    want.extend_from_slice(b"ostree.sign.ed25519\0");
    want.extend_from_slice(&[0; 4]);
    want.extend_from_slice(&sig);
    want.push(64);
    want.push(0);
    want.extend_from_slice(b"aay");
    want.push(20);
    assert_eq!(want.len(), 94);
    want.push(94);
    assert_eq!(meta.data(), &want[..]);

    // Appending keeps other keys and earlier signatures.
    let gpg_sigs = aay(&[vec![1, 2, 3]]);
    let existing = vardict(&[
        ("ostree.gpgsigs", gpg_sigs.clone()),
        ("ostree.sign.ed25519", aay(&[vec![7; 64]])),
    ]);
    let sig2 = sign_ed25519(&secret, b"more").unwrap();
    let appended = append_ed25519_signature(Some(&existing), &sig2).unwrap();
    assert!(appended.is_normal_form());
    assert_eq!(signatures(&appended, "ostree.gpgsigs"), vec![vec![1, 2, 3]]);
    assert_eq!(
        signatures(&appended, "ostree.sign.ed25519"),
        vec![vec![7; 64], sig2.to_vec()]
    );
    assert_eq!(appended.n_children(), 2);

    // The real ostree reads Ferry's .commitmeta, next to a GPG signature.
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("both@example.org", "ed25519", "sign", "never");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &fpr);
    let bytes = server.commit_bytes(&commit);
    let sig = sign_ed25519(&secret, &bytes).unwrap();
    let meta = append_ed25519_signature(server.commitmeta(&commit).as_ref(), &sig).unwrap();
    server.write_commitmeta(&commit, &meta);
    let printed = run(server.ostree().args([
        "show",
        "--print-detached-metadata-key=ostree.sign.ed25519",
        "os/stable",
    ]));
    let parsed = Variant::parse(Some(VariantTy::BYTE_STRING_ARRAY), printed.trim()).unwrap();
    assert_eq!(parsed, aay(&[sig.to_vec()]));
    let shown = run(server.ostree().args(["show", "os/stable"]));
    assert!(shown.contains("Found 1 signature"), "{shown}");

    // Ferry requires and finds both.
    let client = Client::new();
    client.trust_gpg(&gpg, &fpr);
    let mut s = ed25519_settings(&public);
    s.gpg_verify = true;
    let verified = verify(&client.policy(&s), &server, &commit, "os/stable").unwrap();
    assert_eq!(verified.gpg_signer.unwrap().fingerprint, fpr);
    assert_eq!(verified.ed25519_key.as_deref(), Some(public.as_str()));
}

#[test]
fn ed25519_signature_made_by_python_verifies() {
    let (secret, public) = python_keypair();
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let bytes = server.commit_bytes(&commit);
    let sig = python_sign(&secret, &bytes);
    assert_eq!(sig.len(), 64);
    // Detached metadata built with glib, not with Ferry's helper.
    server.write_commitmeta(
        &commit,
        &vardict(&[("ostree.sign.ed25519", aay(std::slice::from_ref(&sig)))]),
    );

    let client = Client::new();
    let verified = verify(
        &client.policy(&ed25519_settings(&public)),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap();
    assert_eq!(verified.ed25519_key.as_deref(), Some(public.as_str()));
    // Ed25519 is deterministic: Ferry makes the same signature.
    assert_eq!(sign_ed25519(&secret, &bytes).unwrap().to_vec(), sig);

    // From a verification-ed25519-file with several keys, too.
    let (_, other) = python_keypair();
    let file = client.dir.path().join("keys.ed25519");
    fs::write(&file, format!("{other}\n\n{public}\n")).unwrap();
    let mut s = ed25519_settings(&public);
    s.verification_ed25519_key = None;
    s.verification_ed25519_file = Some(file);
    let policy = client.policy(&s);
    assert_eq!(policy.ed25519_trusted.len(), 2);
    verify(&policy, &server, &commit, "os/stable").unwrap();

    // And from an inline list of keys.
    let s = ed25519_settings(&format!("{other};{public}"));
    let policy = client.policy(&s);
    assert_eq!(policy.ed25519_trusted.len(), 2);
    verify(&policy, &server, &commit, "os/stable").unwrap();
}

#[test]
fn ed25519_revoked_key_fails() {
    let (secret, public) = python_keypair();
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let bytes = server.commit_bytes(&commit);
    let sig = sign_ed25519(&secret, &bytes).unwrap();
    server.write_commitmeta(&commit, &append_ed25519_signature(None, &sig).unwrap());

    // Trusted through the system directory, revoked through the system directory.
    let client = Client::new();
    let etc = client.root().join("etc/ostree");
    fs::create_dir_all(etc.join("trusted.ed25519.d")).unwrap();
    fs::write(etc.join("trusted.ed25519.d/vendor"), format!("{public}\n")).unwrap();
    let mut s = ed25519_settings(&public);
    s.verification_ed25519_key = None;
    verify(&client.policy(&s), &server, &commit, "os/stable").unwrap();

    fs::create_dir_all(etc.join("revoked.ed25519.d")).unwrap();
    fs::write(etc.join("revoked.ed25519.d/leaked"), format!("{public}\n")).unwrap();
    let err = verify(&client.policy(&s), &server, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::RevokedKey { kind: SignatureKind::Ed25519, key, .. } if key.id == public),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("key {public} which has been revoked")),
        "{err}"
    );

    // The revocation also holds against a key configured on the remote.
    fs::remove_file(etc.join("revoked.ed25519.d/leaked")).unwrap();
    fs::write(etc.join("revoked.ed25519"), format!("{public}\n")).unwrap();
    let err = verify(
        &client.policy(&ed25519_settings(&public)),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::RevokedKey { .. }), "{err:?}");
}

#[test]
fn ed25519_untrusted_unsigned_and_misconfigured() {
    let (secret, _) = python_keypair();
    let (_, trusted) = python_keypair();
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let client = Client::new();

    // Unsigned.
    let err = verify(
        &client.policy(&ed25519_settings(&trusted)),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::NotSigned {
                kind: SignatureKind::Ed25519,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with("has no ed25519 signature"),
        "{err}"
    );

    // Signed by a key that is not trusted.
    let bytes = server.commit_bytes(&commit);
    let sig = sign_ed25519(&secret, &bytes).unwrap();
    server.write_commitmeta(&commit, &append_ed25519_signature(None, &sig).unwrap());
    let err = verify(
        &client.policy(&ed25519_settings(&trusted)),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(
        matches!(err, TrustError::NoValidSignature { tried: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "for os/stable has no ed25519 signature that matches its content and the trusted key"
        ),
        "{err}"
    );

    // No keys anywhere.
    let mut s = ed25519_settings(&trusted);
    s.verification_ed25519_key = None;
    let err = verify(&client.policy(&s), &server, &commit, "os/stable").unwrap_err();
    assert!(matches!(err, TrustError::NoTrustedKeys { .. }), "{err:?}");

    // System keys are not used when the remote names its own.
    let share = client.root().join("usr/share/ostree");
    fs::create_dir_all(&share).unwrap();
    fs::write(
        share.join("trusted.ed25519"),
        format!("{}\n", public_key_from_secret(&secret).unwrap()),
    )
    .unwrap();
    verify(&client.policy(&s), &server, &commit, "os/stable").unwrap();
    let err = verify(
        &client.policy(&ed25519_settings(&trusted)),
        &server,
        &commit,
        "os/stable",
    )
    .unwrap_err();
    assert!(
        matches!(err, TrustError::NoValidSignature { .. }),
        "{err:?}"
    );

    // A bad key in the configuration is reported with where it is.
    let bad = client.dir.path().join("bad.ed25519");
    fs::write(&bad, format!("{trusted}\nnot-a-key\n")).unwrap();
    s.verification_ed25519_file = Some(bad.clone());
    let err =
        TrustPolicy::for_remote_with_system_root(&client.repo(), &s, &client.root()).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::InvalidKey {
                kind: SignatureKind::Ed25519,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("on line 2 of {}", bad.display())),
        "{err}"
    );
    let mut s = ed25519_settings(&b64(&[1; 31]));
    let err =
        TrustPolicy::for_remote_with_system_root(&client.repo(), &s, &client.root()).unwrap_err();
    assert!(err.to_string().contains("31 bytes instead of 32"), "{err}");
    s.verification_ed25519_key = None;
    assert!(
        sign_ed25519(&b64(&[0; 64]), b"x").is_err(),
        "public half must match the seed"
    );
}
