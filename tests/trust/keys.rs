//! Keys: armored and binary imports, keyrings written by `ostree` and read by it, keyboxes.

use super::*;

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
