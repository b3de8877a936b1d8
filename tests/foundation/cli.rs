//! Command line details of `ferryctl`.

use super::*;

#[test]
fn cli_repo_option_before_and_after_the_subcommand() {
    let tmp = tempdir();
    let before = tmp.path().join("before");
    let after = tmp.path().join("after");
    run_ok(ferryctl_bare().arg("--repo").arg(&before).arg("init"));
    run_ok(ferryctl_bare().arg("init").arg("--repo").arg(&after));
    assert_eq!(
        fs::read_to_string(before.join("config")).unwrap(),
        fs::read_to_string(after.join("config")).unwrap()
    );
    let add = [
        "remote",
        "add",
        "origin",
        "http://127.0.0.1:9/",
        "--collection-id",
        COLLECTION,
        "--no-verify",
    ];
    run_ok(ferryctl_bare().arg("--repo").arg(&before).args(add));
    run_ok(ferryctl_bare().args(add).arg("--repo").arg(&after));
    let list = |args: &[&str], repo_first: bool, repo: &Path| {
        let mut cmd = ferryctl_bare();
        if repo_first {
            cmd.arg("--repo").arg(repo).args(args);
        } else {
            cmd.args(args).arg("--repo").arg(repo);
        }
        run_ok(&mut cmd).stdout
    };
    for args in [
        &["remote", "list"][..],
        &["--json", "remote", "list"],
        &["refs"],
        &["--json", "refs"],
    ] {
        let a = list(args, true, &before);
        assert_eq!(a, list(args, false, &before), "{args:?}");
        assert_eq!(a, list(args, false, &after), "{args:?}");
    }
    assert!(list(&["remote", "list"], false, &after).contains("origin"));
    let json: serde_json::Value =
        serde_json::from_str(&list(&["remote", "list", "--json"], false, &after)).unwrap();
    assert_eq!(json[0]["name"], "origin", "{json}");
    assert_eq!(json[0]["collection_id"], COLLECTION, "{json}");
    // Without --repo (and with nowhere to put the default one) nothing is created.
    let out = run(ferryctl_bare().arg("refs")).failed();
    out.error_sentence();
}

#[test]
fn cli_init_and_remote_add_write_what_ostree_writes() {
    let tmp = tempdir();
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &[
                "origin",
                "http://127.0.0.1:9/",
                "--collection-id",
                COLLECTION,
                "--no-verify",
            ],
            &[
                "origin",
                "http://127.0.0.1:9/",
                "--collection-id=org.example.Os",
                "--no-gpg-verify",
            ],
        ),
        (
            &[
                "signed",
                "https://example.com/repo/",
                "--collection-id",
                "com.example.Other",
            ],
            &[
                "signed",
                "https://example.com/repo/",
                "--collection-id=com.example.Other",
            ],
        ),
        (
            &[
                "usb_1",
                "file:///run/media/stick/.ostree/repo",
                "--collection-id",
                COLLECTION,
            ],
            &[
                "usb_1",
                "file:///run/media/stick/.ostree/repo",
                "--collection-id=org.example.Os",
            ],
        ),
    ];
    for collection in [None, Some(COLLECTION)] {
        let tag = collection.unwrap_or("none");
        let by_ostree = tmp.path().join(format!("ostree-{tag}"));
        let by_ferry = tmp.path().join(format!("ferry-{tag}"));
        let ostree_made_ferry_edited = tmp.path().join(format!("mixed-{tag}"));
        let mut init = ostree(&by_ostree);
        init.args(["init", "--mode=archive"]);
        let mut finit = ferryctl(&by_ferry);
        finit.arg("init");
        if let Some(id) = collection {
            init.arg(format!("--collection-id={id}"));
            finit.args(["--collection-id", id]);
        }
        run_ok(&mut init);
        run_ok(&mut finit);
        copy_tree(&by_ostree, &ostree_made_ferry_edited);
        let config = |r: &Path| fs::read_to_string(r.join("config")).unwrap();
        assert_eq!(
            config(&by_ferry),
            config(&by_ostree),
            "init --collection-id {tag}"
        );
        for (ferry_args, ostree_args) in cases {
            run_ok(ostree(&by_ostree).args(["remote", "add"]).args(ostree_args));
            run_ok(ferryctl(&by_ferry).args(["remote", "add"]).args(ferry_args));
            run_ok(
                ferryctl(&ostree_made_ferry_edited)
                    .args(["remote", "add"])
                    .args(ferry_args),
            );
            assert_eq!(config(&by_ferry), config(&by_ostree), "{ferry_args:?}");
            assert_eq!(
                config(&ostree_made_ferry_edited),
                config(&by_ostree),
                "{ferry_args:?}"
            );
        }
        // ostree lists the remotes Ferry added.
        let listed = run_ok(ostree(&by_ferry).args(["remote", "list", "-u"])).stdout;
        assert!(
            listed.contains("origin") && listed.contains("usb_1"),
            "{listed}"
        );
        // Adding a remote twice is an error, and changes nothing.
        let before = config(&by_ferry);
        let out = run(ferryctl(&by_ferry).args(["remote", "add"]).args(cases[0].0)).failed();
        assert!(out.error_sentence().contains("origin"), "{}", out.stderr);
        assert_eq!(config(&by_ferry), before);
    }
}

#[test]
fn cli_gpg_import_and_signed_pulls() {
    let tmp = tempdir();
    let gpg = Signer::new(SIGNER);
    let key = tmp.path().join("key.asc");
    gpg.export_armored(&key);
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    let ferry = tmp.path().join("ferry");
    make_rich_tree(&tree, 100_000);
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &["-s", "unsigned"]);

    run_ok(ferryctl(&ferry).arg("init"));
    run_ok(
        ferryctl(&ferry)
            .args(["remote", "add", "origin"])
            .arg(file_uri(&src))
            .args(["--collection-id", COLLECTION, "--gpg-import"])
            .arg(&key),
    );
    let keyring = ferry.join("origin.trustedkeys.gpg");
    assert!(keyring.is_file(), "no {}", keyring.display());
    assert_eq!(gpg.keyring_fingerprints(&keyring), vec![gpg.key.clone()]);
    let remote = run_ok(ferryctl(&ferry).args(["--json", "remote", "list"])).json();
    assert_eq!(remote[0]["gpg_verify"], true, "{remote}");

    // Unsigned: refused, naming the ref; nothing moves.
    let out = ferry_pull_fails(&ferry, &src, REF);
    let sentence = out.error_sentence();
    assert!(
        sentence.contains(REF),
        "the error does not name the ref: {sentence}"
    );
    assert_eq!(origin_ref(&ferry), None);
    assert_ostree_fsck(&ferry);

    // Signed by a key that is not trusted: refused too.
    let stranger = Signer::new(SIGNER);
    stranger.sign(&src, &commit);
    let out = ferry_pull_fails(&ferry, &src, REF);
    assert!(out.error_sentence().contains(REF), "{}", out.stderr);
    assert_eq!(origin_ref(&ferry), None);

    // Signed by the imported key: accepted, signature stored with the commit.
    gpg.sign(&src, &commit);
    let report = ferry_pull(&ferry, &src, REF);
    assert_eq!(report["commit"], commit.as_str());
    assert_eq!(origin_ref(&ferry).as_deref(), Some(commit.as_str()));
    let checksum: Checksum = commit.parse().unwrap();
    assert!(object_path(&ferry, &checksum, ObjectType::CommitMeta).is_file());
    assert_ostree_fsck(&ferry);

    // ostree itself verifies with the keyring Ferry wrote.
    let other = tmp.path().join("other");
    run_ok(ostree(&other).args(["init", "--mode=archive"]));
    run_ok(
        ostree(&other)
            .args(["remote", "add", "origin"])
            .arg(file_uri(&src))
            .arg(format!("--collection-id={COLLECTION}")),
    );
    fs::copy(&keyring, other.join("origin.trustedkeys.gpg")).unwrap();
    run_ok(ostree(&other).args(["summary", "-u"]));
    run_ok(ostree(&src).args(["summary", "-u"]));
    let scratch_gpg = Gpg::new();
    run_ok(
        ostree(&other)
            .env("GNUPGHOME", scratch_gpg.home())
            .args(["pull", "origin", REF]),
    );
    assert_eq!(
        rev_parse(&other, &format!("origin:{REF}")).as_deref(),
        Some(commit.as_str())
    );
}
