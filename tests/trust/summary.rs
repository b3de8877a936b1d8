//! Summary signatures.

use super::*;

#[test]
fn summary_gpg_signature_verifies() {
    let f = gpg_fixture("summary@example.org", "ed25519");
    run(f
        .server
        .ostree()
        .args(["summary", "-u"])
        .arg(format!("--gpg-sign={}", f.fpr))
        .arg(format!("--gpg-homedir={}", f.gpg.home().display())));
    let summary = fs::read(f.server.path().join("summary")).unwrap();
    let sig = fs::read(f.server.path().join("summary.sig")).unwrap();

    let client = Client::new();
    client.trust_gpg(&f.gpg, &f.fpr);
    let mut s = settings(Some(COLLECTION));
    s.gpg_verify_summary = true;
    let policy = client.policy(&s);

    let ok = verify_summary(&policy, &summary, Some(&sig)).unwrap();
    assert_eq!(ok.gpg_signer.unwrap().fingerprint, f.fpr);
    assert!(!ok.unsigned_allowed);

    let mut bad = summary.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = verify_summary(&policy, &bad, Some(&sig)).unwrap_err();
    assert!(
        matches!(
            &err,
            TrustError::BadSignature {
                subject: Subject::Summary,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the summary has a GPG signature by key"),
        "{err}"
    );

    let err = verify_summary(&policy, &summary, None).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::NotSigned {
                subject: Subject::Summary,
                ..
            }
        ),
        "{err:?}"
    );

    let err = verify_summary(&policy, &summary, Some(b"garbage")).unwrap_err();
    assert!(
        matches!(err, TrustError::InvalidSignatureData { .. }),
        "{err:?}"
    );

    // gpg-verify-summary off: the summary is not judged.
    let policy = client.policy(&settings(Some(COLLECTION)));
    assert!(
        verify_summary(&policy, &bad, None)
            .unwrap()
            .unsigned_allowed
    );
}

#[test]
fn summary_ed25519_signature_verifies() {
    let server = OstreeRepo::init(Some(COLLECTION));
    server.commit("os/stable", &[]);
    run(server.ostree().args(["summary", "-u"]));
    let summary = fs::read(server.path().join("summary")).unwrap();
    let (secret, public) = python_keypair();
    let sig = sign_ed25519(&secret, &summary).unwrap();
    let sig_file = append_ed25519_signature(None, &sig).unwrap();

    let client = Client::new();
    let mut s = ed25519_settings(&public);
    s.sign_verify_summary = true;
    let policy = client.policy(&s);
    let ok = verify_summary(&policy, &summary, Some(sig_file.data())).unwrap();
    assert_eq!(ok.ed25519_key.as_deref(), Some(public.as_str()));

    let mut bad = summary.clone();
    bad[0] ^= 1;
    let err = verify_summary(&policy, &bad, Some(sig_file.data())).unwrap_err();
    assert!(
        matches!(err, TrustError::NoValidSignature { .. }),
        "{err:?}"
    );
}
