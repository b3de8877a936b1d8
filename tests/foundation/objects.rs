//! Every object `ostree` writes survives Ferry's parser and serializer unchanged,
//! and objects Ferry writes are valid for `ostree`.

use super::*;

#[test]
fn every_ostree_object_round_trips_through_ferry() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let repo = tmp.path().join("repo");
    make_rich_tree(&tree, 2 * 1024 * 1024);
    // Extended attributes on a file and a directory, a setuid and a sticky mode.
    set_xattr(
        &tree.join("small.txt"),
        "user.ferry.test",
        b"value\0with nul",
    );
    set_xattr(&tree.join("small.txt"), "user.other", b"");
    set_xattr(&tree.join("bin"), "user.dir-attr", b"dir");
    write_file(&tree.join("bin/setuid"), b"suid\n", 0o4755);
    make_dir(&tree.join("sticky"), 0o1777);
    write_file(
        &tree.join("compressible.txt"),
        "line of text\n".repeat(20_000).as_bytes(),
        0o644,
    );
    ostree_init(&repo);
    let gpg = Signer::new(SIGNER);

    ostree_commit(
        &repo,
        REF,
        &tree,
        &[
            "-s",
            "subject ünïcödé",
            "-m",
            "a body\nwith lines",
            "--add-metadata-string=version=1.0",
            "--add-metadata=custom.tuple=(uint32 5, 'text', [byte 1, 2], <int64 -3>)",
            "--add-metadata=custom.dict={'a': <true>, 'b': <@as []>}",
            "--add-detached-metadata-string=detached=yes",
            "--generate-sizes",
        ],
    );
    let second = ostree_commit(
        &repo,
        REF,
        &tree,
        &[
            "--owner-uid=1000",
            "--owner-gid=1001",
            "--bind-ref=os/extra",
            "--timestamp=2022-02-02 02:02:02 +0000",
        ],
    );
    gpg.sign(&repo, &second);
    ostree_commit(
        &repo,
        "os/other",
        &tree,
        &["--no-xattrs", "--canonical-permissions"],
    );
    run_ok(ostree(&repo).args(["summary", "-u"]));

    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut xattr_files = 0;
    let mut xattr_dirs = 0;
    let mut symlinks = 0;
    let mut with_parent = 0;
    for name in objects(&repo) {
        let bytes = read_object(&repo, &name.checksum, name.kind);
        let what = format!("{name}");
        match name.kind {
            ObjectType::Commit => {
                assert_eq!(Checksum::digest(&bytes), name.checksum, "{what}");
                let commit = Commit::parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(commit.to_bytes(), bytes, "{what}");
                with_parent += usize::from(commit.parent.is_some());
            }
            ObjectType::DirTree => {
                assert_eq!(Checksum::digest(&bytes), name.checksum, "{what}");
                let tree = DirTree::parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(tree.to_bytes(), bytes, "{what}");
            }
            ObjectType::DirMeta => {
                assert_eq!(Checksum::digest(&bytes), name.checksum, "{what}");
                let meta = DirMeta::parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(meta.to_bytes(), bytes, "{what}");
                xattr_dirs += usize::from(!meta.xattrs.is_empty());
            }
            ObjectType::CommitMeta => {
                let v = variant_from_bytes("detached metadata", METADATA_TYPE, &bytes)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(v.data(), &bytes[..], "{what}");
            }
            ObjectType::File => {
                let mut copy = Vec::new();
                let (header, n) = verify_filez(&bytes[..], &name.checksum, &mut copy)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(copy, bytes, "{what}");
                assert_eq!(n, bytes.len() as u64, "{what}");
                // The header re-serializes to the same bytes.
                let parsed = read_archive_header(&mut &bytes[..], &name).unwrap();
                assert_eq!(parsed, header);
                let framed = header.archive_header_bytes();
                assert_eq!(&bytes[..framed.len()], &framed[..], "{what}");
                // Re-compressing the content gives the same object checksum.
                let (_, mut content) =
                    ferry::repo::filez::open_filez(io::BufReader::new(&bytes[..]), &name).unwrap();
                let mut plain = Vec::new();
                if header.is_regular() {
                    content.read_to_end(&mut plain).unwrap();
                }
                let mut rewritten = Vec::new();
                let checksum = write_filez(&header, &mut &plain[..], &mut rewritten).unwrap();
                assert_eq!(checksum, name.checksum, "{what}");
                xattr_files += usize::from(!header.xattrs.is_empty());
                symlinks += usize::from(header.is_symlink());
            }
            ObjectType::TombstoneCommit => {}
        }
        *counts.entry(name.kind.extension()).or_default() += 1;
    }
    // Every kind was exercised.
    for kind in ["commit", "dirtree", "dirmeta", "commitmeta", "filez"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in {counts:?}"
        );
    }
    assert!(
        counts["commit"] >= 4 && counts["commitmeta"] >= 2,
        "{counts:?}"
    );
    assert!(with_parent >= 1 && xattr_files >= 1 && xattr_dirs >= 1 && symlinks >= 4);

    // The summary too.
    let summary = fs::read(repo.join("summary")).unwrap();
    assert_eq!(
        Summary::parse(&summary).unwrap().to_bytes().unwrap(),
        summary
    );
}

/// Objects written only with Ferry's library form a commit `ostree` accepts and
/// checks out. (The malicious trees below are built the same way, so they are
/// refused for what they contain, not for being malformed.)
#[test]
fn objects_written_by_ferry_are_valid_for_ostree() {
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    ostree_init(&repo);
    let small = put_file(&repo, b"hello\n", 0o644);
    let exe = put_file(&repo, b"#!/bin/sh\n", 0o755);
    let big = put_file(&repo, &random_bytes(7, 300_000), 0o600);
    let empty = put_file(&repo, b"", 0o644);
    let link = put_symlink(&repo, "../small");
    let meta = put_dirmeta(&repo, &dir_meta_0755());
    let sub = put_dirtree(
        &repo,
        &DirTree {
            files: vec![
                DirTreeFile {
                    name: "big".into(),
                    checksum: big,
                },
                DirTreeFile {
                    name: "link".into(),
                    checksum: link,
                },
            ],
            dirs: vec![],
        },
    );
    let root = put_dirtree(
        &repo,
        &DirTree {
            files: vec![
                DirTreeFile {
                    name: "empty".into(),
                    checksum: empty,
                },
                DirTreeFile {
                    name: "exe".into(),
                    checksum: exe,
                },
                DirTreeFile {
                    name: "small".into(),
                    checksum: small,
                },
            ],
            dirs: vec![DirTreeDir {
                name: "sub".into(),
                tree: sub,
                meta,
            }],
        },
    );
    let commit = put_commit(
        &repo,
        &Commit {
            metadata: ferry::repo::objects::empty_metadata(),
            parent: None,
            related: vec![],
            subject: "made by ferry".into(),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_tree: root,
            root_meta: meta,
        },
    );
    write_ref_file(&repo, "refs/heads/made", &commit.to_hex());
    assert_ostree_fsck(&repo);
    let out = tmp.path().join("out");
    ostree_checkout(&repo, "made", &out);
    let expected = tmp.path().join("expected");
    make_dir(&expected, 0o755);
    write_file(&expected.join("small"), b"hello\n", 0o644);
    write_file(&expected.join("exe"), b"#!/bin/sh\n", 0o755);
    write_file(&expected.join("empty"), b"", 0o644);
    make_dir(&expected.join("sub"), 0o755);
    write_file(&expected.join("sub/big"), &random_bytes(7, 300_000), 0o600);
    make_symlink("../small", &expected.join("sub/link"));
    assert_same_tree(&expected, &out);
}
