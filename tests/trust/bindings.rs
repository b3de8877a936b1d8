//! Bindings and downgrades (no signatures: the remote is configured without them).

use super::*;

fn verify_unsigned(
    collection_id: Option<&str>,
    server: &OstreeRepo,
    commit: &Checksum,
    ref_name: &str,
) -> Result<VerifiedCommit, TrustError> {
    let client = Client::new();
    verify(
        &client.policy(&unverified(collection_id)),
        server,
        commit,
        ref_name,
    )
}

#[test]
fn unverified_remote_accepts_unsigned_commits_and_says_so() {
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let verified = verify_unsigned(Some(COLLECTION), &server, &commit, "os/stable").unwrap();
    assert!(verified.unsigned_allowed);
    assert!(verified.gpg_signer.is_none() && verified.ed25519_key.is_none());
    // Bindings are still checked.
    let err = verify_unsigned(Some(COLLECTION), &server, &commit, "os/beta").unwrap_err();
    assert!(
        matches!(err, TrustError::RefBindingMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn commit_bound_to_another_ref_is_refused() {
    let server = OstreeRepo::init(Some(COLLECTION));
    let beta = server.commit("os/beta", &[]);
    let err = verify_unsigned(Some(COLLECTION), &server, &beta, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::RefBindingMismatch { ref_name, bound, .. }
            if ref_name == "os/stable" && bound == &vec!["os/beta".to_owned()]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "commit {}… offered for os/stable is bound to os/beta instead",
            &beta.to_hex()[..12]
        )
    );
    // Also without a collection ID: a present ref binding must hold the ref.
    let err = verify_unsigned(None, &server, &beta, "os/stable").unwrap_err();
    assert!(
        matches!(err, TrustError::RefBindingMismatch { .. }),
        "{err:?}"
    );
    // Bound to both: fine for either.
    let both = server.commit("os/beta", &["--bind-ref=os/stable"]);
    verify_unsigned(Some(COLLECTION), &server, &both, "os/stable").unwrap();
    verify_unsigned(Some(COLLECTION), &server, &both, "os/beta").unwrap();
    // By checksum (no ref): only the collection matters.
    verify_unsigned(Some(COLLECTION), &server, &beta, "").unwrap();
}

#[test]
fn collection_binding_mismatch_is_refused() {
    let server = OstreeRepo::init(Some("org.example.Other"));
    let commit = server.commit("os/stable", &[]);
    let err = verify_unsigned(Some(COLLECTION), &server, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::CollectionBindingMismatch { bound, expected, .. }
            if bound == "org.example.Other" && expected == COLLECTION),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "for os/stable belongs to collection org.example.Other, not to this remote's collection org.example.Os"
        ),
        "{err}"
    );
    verify_unsigned(Some("org.example.Other"), &server, &commit, "os/stable").unwrap();
}

#[test]
fn commit_without_bindings_is_refused_for_a_remote_with_collection_id() {
    let server = OstreeRepo::init(Some(COLLECTION));
    let unbound = server.commit("os/stable", &["--no-bindings"]);
    let err = verify_unsigned(Some(COLLECTION), &server, &unbound, "os/stable").unwrap_err();
    assert!(
        matches!(&err, TrustError::MissingRefBinding { collection_id, .. } if collection_id == COLLECTION),
        "{err:?}"
    );
    assert!(err.to_string().contains("has no ref binding"), "{err}");
    // Without a collection ID on the remote, bindings are optional.
    let verified = verify_unsigned(None, &server, &unbound, "os/stable").unwrap();
    assert_eq!(verified.ref_bindings, None);

    // A ref binding but no collection binding (made in a repo without collection ID).
    let plain = OstreeRepo::init(None);
    let commit = plain.commit("os/stable", &[]);
    let err = verify_unsigned(Some(COLLECTION), &plain, &commit, "os/stable").unwrap_err();
    assert!(
        matches!(err, TrustError::MissingCollectionBinding { .. }),
        "{err:?}"
    );
    verify_unsigned(None, &plain, &commit, "os/stable").unwrap();
}

#[test]
fn older_commit_is_refused_as_a_downgrade() {
    let server = OstreeRepo::init(Some(COLLECTION));
    let old = server.commit("os/stable", &["--timestamp=2024-01-01 00:00:00 +0000"]);
    let new = server.commit("os/stable", &["--timestamp=2024-06-01 00:00:00 +0000"]);
    let (t_old, t_new) = (1704067200u64, 1717200000u64);
    let client = Client::new();
    let policy = client.policy(&unverified(Some(COLLECTION)));
    let check = |policy: &TrustPolicy, commit: &Checksum, current: Option<(Checksum, u64)>| {
        let bytes = server.commit_bytes(commit);
        verify_commit(
            policy,
            &CommitToVerify {
                commit_bytes: &bytes,
                detached_metadata: None,
                ref_name: "os/stable",
                current,
            },
        )
    };

    // The big-endian timestamp is read right.
    assert_eq!(check(&policy, &old, None).unwrap().timestamp, t_old);
    assert_eq!(check(&policy, &new, None).unwrap().timestamp, t_new);

    let err = check(&policy, &old, Some((new, t_new))).unwrap_err();
    assert!(
        matches!(&err, TrustError::Downgrade { checksum, current, timestamp, current_timestamp, .. }
            if *checksum == old && *current == new && *timestamp == t_old && *current_timestamp == t_new),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "commit {}… for os/stable was made on 2024-01-01 00:00:00 UTC which is older than the installed commit {}… from 2024-06-01 00:00:00 UTC",
            &old.to_hex()[..12],
            &new.to_hex()[..12]
        )
    );
    // The same commit again, and a newer one, are fine.
    check(&policy, &new, Some((new, t_new))).unwrap();
    check(&policy, &new, Some((old, t_old))).unwrap();
    // Unless explicitly allowed.
    let mut lenient = policy.clone();
    lenient.allow_downgrade = true;
    check(&lenient, &old, Some((new, t_new))).unwrap();
}

#[test]
fn malformed_commit_and_metadata_are_refused() {
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    let bytes = server.commit_bytes(&commit);
    let client = Client::new();
    let policy = client.policy(&unverified(Some(COLLECTION)));
    let truncated = &bytes[..bytes.len() - 3];
    let err = verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: truncated,
            detached_metadata: None,
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::InvalidCommit { .. }), "{err:?}");

    // Detached metadata of the wrong type, with GPG required.
    let policy = client.policy(&settings(Some(COLLECTION)));
    let err = verify_commit(
        &policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: Some("not a dict".to_variant()),
            ref_name: "os/stable",
            current: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, TrustError::InvalidSignatureData { .. }),
        "{err:?}"
    );
    assert!(parse_detached_metadata(&[1, 2, 3]).is_err());
    assert!(Path::new(&keyring_path(Path::new("/r"), "origin")).ends_with("origin.trustedkeys.gpg"));
}

#[test]
fn policy_follows_the_remote_config() {
    let mut remote = RemoteConfig::new("origin", "file:///srv/repo");
    // libostree's defaults: commits GPG-verified, nothing else.
    assert!(remote.gpg_verify && !remote.sign_verify && !remote.gpg_verify_summary);

    remote.collection_id = Some(COLLECTION.to_owned());
    remote.gpg_verify = false;
    remote.sign_verify = true;
    remote.verification_ed25519_key = Some(python_keypair().1);
    let client = Client::new();
    let policy = client.policy(&remote);
    assert_eq!(policy.ed25519_trusted.len(), 1);
    assert!(!policy.allows_unsigned_commits());
}
