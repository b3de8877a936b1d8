//! Trust (issue #3): GPG and ed25519 commit signatures, summary signatures, key
//! import, ref/collection bindings and downgrades, against the real `gpg`, `ostree`
//! and Python `cryptography`.

#[path = "../common/mod.rs"]
mod common;

mod policy;

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use ferry::repo::Checksum;
use ferry::trust::{
    append_ed25519_signature, import_keys, keyring_path, parse_detached_metadata,
    public_key_from_secret, sign_ed25519, verify_commit, verify_summary, CommitToVerify, Keyring,
    RemoteTrustSettings, SignatureKind, Subject, TrustError, TrustPolicy, VerifiedCommit,
};
use glib::prelude::*;
use glib::{Variant, VariantTy};
use common::gpg::{output, python_keypair, python_sign, python_verifies, run, Gpg, OstreeRepo};

const COLLECTION: &str = "org.example.Os";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Settings of a remote "origin" with the given collection ID.
fn settings(collection_id: Option<&str>) -> RemoteTrustSettings {
    let mut s = RemoteTrustSettings::new("origin");
    s.collection_id = collection_id.map(str::to_owned);
    s
}

/// Settings with no signature checks (the explicit per-remote `--no-verify`).
fn unverified(collection_id: Option<&str>) -> RemoteTrustSettings {
    let mut s = settings(collection_id);
    s.gpg_verify = false;
    s
}

/// Settings requiring ed25519 (and not GPG) with one inline key.
fn ed25519_settings(public_b64: &str) -> RemoteTrustSettings {
    let mut s = settings(Some(COLLECTION));
    s.gpg_verify = false;
    s.sign_verify = true;
    s.verification_ed25519_key = Some(public_b64.to_owned());
    s
}

/// A directory standing for the local Ferry repository, where keyrings live; and an
/// empty system root so no test reads the machine's /etc/ostree.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("repo")).unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        Client { dir }
    }
    fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
    fn policy(&self, s: &RemoteTrustSettings) -> TrustPolicy {
        TrustPolicy::for_remote_with_system_root(&self.repo(), s, &self.root()).unwrap()
    }
    /// Imports `who`'s public key (binary export) for remote "origin".
    fn trust_gpg(&self, gpg: &Gpg, who: &str) -> Vec<String> {
        let file = gpg.export_to(who, false, &self.dir.path().join("key.gpg"));
        import_keys(&self.repo(), "origin", &file).unwrap()
    }
}

fn verify(
    policy: &TrustPolicy,
    server: &OstreeRepo,
    checksum: &Checksum,
    ref_name: &str,
) -> Result<VerifiedCommit, TrustError> {
    let bytes = server.commit_bytes(checksum);
    verify_commit(
        policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: server.commitmeta(checksum),
            ref_name,
            current: None,
        },
    )
}

/// The signatures under `key` in an a{sv}.
fn signatures(meta: &Variant, key: &str) -> Vec<Vec<u8>> {
    let value = meta
        .iter()
        .find(|e| e.child_value(0).str() == Some(key))
        .and_then(|e| e.child_value(1).as_variant())
        .unwrap_or_else(|| panic!("no {key}"));
    value
        .iter()
        .map(|s| s.fixed_array::<u8>().unwrap().to_vec())
        .collect()
}

/// An a{sv} built with glib directly (not with Ferry's helpers).
fn vardict(entries: &[(&str, Variant)]) -> Variant {
    let dict = glib::VariantDict::new(None);
    for (k, v) in entries {
        dict.insert_value(k, v);
    }
    dict.end()
}

fn aay(items: &[Vec<u8>]) -> Variant {
    Variant::array_from_iter_with_type(
        VariantTy::BYTE_STRING,
        items.iter().map(|i| Variant::array_from_fixed_array(i)),
    )
}

/// A server repository with collection ID COLLECTION and a commit on os/stable signed
/// by a fresh GPG key.
struct GpgFixture {
    gpg: Gpg,
    fpr: String,
    server: OstreeRepo,
    commit: Checksum,
}

fn gpg_fixture(uid: &str, algo: &str) -> GpgFixture {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(uid, algo, "sign", "never");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &fpr);
    GpgFixture {
        gpg,
        fpr,
        server,
        commit,
    }
}

// ---------------------------------------------------------------------------------
// GPG

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

// ---------------------------------------------------------------------------------
// Keys

/// The OpenPGP packet tags in a binary keyring (old and new packet formats).
fn packet_tags(mut bytes: &[u8]) -> Vec<u8> {
    let mut tags = Vec::new();
    while let Some(&first) = bytes.first() {
        assert!(first & 0x80 != 0, "not an OpenPGP packet header");
        let (tag, header, len) = if first & 0x40 == 0 {
            let tag = (first >> 2) & 0x0f;
            match first & 3 {
                0 => (tag, 2, bytes[1] as usize),
                1 => (tag, 3, u16::from_be_bytes([bytes[1], bytes[2]]) as usize),
                2 => (
                    tag,
                    5,
                    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize,
                ),
                _ => panic!("indeterminate length"),
            }
        } else {
            let tag = first & 0x3f;
            match bytes[1] {
                l @ 0..=191 => (tag, 2, l as usize),
                l @ 192..=223 => (tag, 3, ((l as usize - 192) << 8) + bytes[2] as usize + 192),
                255 => (
                    tag,
                    6,
                    u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize,
                ),
                _ => panic!("partial length"),
            }
        };
        tags.push(tag);
        bytes = &bytes[header + len..];
    }
    tags
}

#[test]
fn import_keys_accepts_armored_and_binary_keys() {
    let gpg = Gpg::new();
    let a = gpg.gen_key("armored@example.org", "ed25519", "sign", "never");
    let b = gpg.gen_key("binary@example.org", "rsa2048", "sign", "never");
    let client = Client::new();
    let dir = client.dir.path();
    let armored = gpg.export_to(&a, true, &dir.join("a.asc"));
    let binary = gpg.export_to(&b, false, &dir.join("b.gpg"));
    assert!(fs::read(&armored)
        .unwrap()
        .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));

    assert_eq!(
        import_keys(&client.repo(), "origin", &armored).unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        import_keys(&client.repo(), "origin", &binary).unwrap(),
        vec![b.clone()]
    );
    let ring = keyring_path(&client.repo(), "origin");
    let bytes = fs::read(&ring).unwrap();
    // A binary keyring: starts with a public key packet (old format tag 6 = 0x98/0x99,
    // or new format 0xc6).
    let tags = packet_tags(&bytes);
    assert_eq!(tags[0], 6, "{tags:?}");
    assert_eq!(tags.iter().filter(|t| **t == 6).count(), 2, "{tags:?}");
    // gpg itself reads Ferry's keyring.
    let listing = run(Command::new("gpg")
        .env("GNUPGHOME", gpg.home())
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(&ring));
    assert!(listing.contains(&a) && listing.contains(&b), "{listing}");

    // Importing again changes nothing.
    import_keys(&client.repo(), "origin", &armored).unwrap();
    assert_eq!(fs::read(&ring).unwrap(), bytes);

    let mut fps = Keyring::load(&ring).unwrap().fingerprints();
    fps.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(fps, want);

    // Commits signed by either key verify.
    let server = OstreeRepo::init(Some(COLLECTION));
    let c1 = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &a);
    let c2 = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &b);
    let policy = client.policy(&settings(Some(COLLECTION)));
    assert_eq!(
        verify(&policy, &server, &c1, "os/stable")
            .unwrap()
            .gpg_signer
            .unwrap()
            .fingerprint,
        a
    );
    assert_eq!(
        verify(&policy, &server, &c2, "os/stable")
            .unwrap()
            .gpg_signer
            .unwrap()
            .fingerprint,
        b
    );

    // Not a key: refused, and the keyring is untouched.
    let junk = dir.join("junk.asc");
    fs::write(&junk, "hello\n").unwrap();
    let err = import_keys(&client.repo(), "origin", &junk).unwrap_err();
    assert!(matches!(err, TrustError::Keyring { .. }), "{err:?}");
    assert_eq!(fs::read(&ring).unwrap(), bytes);
}

#[test]
fn keyring_written_by_ostree_remote_add_gpg_import_verifies() {
    let f = gpg_fixture("remote-add@example.org", "ed25519");
    let client = OstreeRepo::init(None);
    let keyfile = f
        .gpg
        .export_to(&f.fpr, true, &client.path().join("../key.asc"));
    run(client
        .ostree()
        .args(["remote", "add", "--collection-id", COLLECTION])
        .arg(format!("--gpg-import={}", keyfile.display()))
        .arg("origin")
        .arg(format!("file://{}", f.server.path().display())));
    let ring = keyring_path(&client.path(), "origin");
    let bytes = fs::read(&ring).unwrap();
    // What ostree writes is a legacy binary GnuPG keyring, with ring-trust packets
    // (tag 12, old format 0xb0) after the key packets, not a keybox.
    assert!(!bytes.windows(4).any(|w| w == b"KBXf"));
    let tags = packet_tags(&bytes);
    assert_eq!(tags[0], 6, "{tags:?}");
    assert!(tags.contains(&12), "no ring-trust packet: {tags:?}");

    let keyring = Keyring::load(&ring).unwrap();
    assert_eq!(keyring.fingerprints(), vec![f.fpr.clone()]);
    let policy = TrustPolicy::for_remote_with_system_root(
        &client.path(),
        &settings(Some(COLLECTION)),
        &client.path().join("no-such-root"),
    )
    .unwrap();
    let signer = verify(&policy, &f.server, &f.commit, "os/stable")
        .unwrap()
        .gpg_signer
        .unwrap();
    assert_eq!(signer.fingerprint, f.fpr);
}

#[test]
fn ostree_pull_accepts_a_keyring_imported_by_ferry() {
    let f = gpg_fixture("pull@example.org", "ed25519");
    let client = OstreeRepo::init(None);
    run(client
        .ostree()
        .args(["remote", "add", "--collection-id", COLLECTION])
        .arg("origin")
        .arg(format!("file://{}", f.server.path().display())));
    let keyfile = f
        .gpg
        .export_to(&f.fpr, false, &client.path().join("../key.gpg"));
    import_keys(&client.path(), "origin", &keyfile).unwrap();
    // ostree (gpg-verify=true by default) verifies with Ferry's keyring.
    run(client.ostree().args(["pull", "origin", "os/stable"]));
    let pulled = run(client.ostree().args(["rev-parse", "origin:os/stable"]));
    assert_eq!(pulled.trim(), f.commit.to_hex());

    // And refuses a commit by a key that is not in it.
    let other = Gpg::new();
    let other_fpr = other.gen_key("other@example.org", "ed25519", "sign", "never");
    f.server.commit("os/stable", &[]);
    f.server.gpg_sign("os/stable", &other, &other_fpr);
    let out = output(client.ostree().args(["pull", "origin", "os/stable"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GPG") || stderr.contains("signature"),
        "{stderr}"
    );
}

#[test]
fn gnupg_keybox_is_read() {
    let f = gpg_fixture("keybox@example.org", "ed25519");
    let kbx = f.gpg.home().join("pubring.kbx");
    let keyring = Keyring::load(&kbx).unwrap();
    assert_eq!(keyring.fingerprints(), vec![f.fpr.clone()]);
    let bytes = f.server.commit_bytes(&f.commit);
    let meta = f.server.commitmeta(&f.commit).unwrap();
    let subject = Subject::Summary;
    keyring
        .verify(&subject, &bytes, &signatures(&meta, "ostree.gpgsigs"))
        .unwrap();
}

// ---------------------------------------------------------------------------------
// Summary signatures

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

// ---------------------------------------------------------------------------------
// ed25519

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

// ---------------------------------------------------------------------------------
// Bindings and downgrades (no signatures: the remote is configured without them)

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
fn settings_come_from_the_remote_config() {
    let mut remote = ferry::repo::config::RemoteConfig::new("origin", "file:///srv/repo");
    let s = RemoteTrustSettings::from(&remote);
    assert_eq!(s, RemoteTrustSettings::new("origin"));
    assert!(s.gpg_verify && !s.sign_verify && !s.gpg_verify_summary);

    remote.collection_id = Some(COLLECTION.to_owned());
    remote.gpg_verify = false;
    remote.sign_verify = true;
    remote.verification_ed25519_key = Some(python_keypair().1);
    let s = RemoteTrustSettings::from(&remote);
    assert_eq!(s.collection_id.as_deref(), Some(COLLECTION));
    assert!(!s.gpg_verify && s.sign_verify);
    let client = Client::new();
    let policy = client.policy(&s);
    assert_eq!(policy.ed25519_trusted.len(), 1);
    assert!(!policy.allows_unsigned_commits());
}
