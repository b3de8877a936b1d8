//! The foundation against the real `ostree` (2022.7): Ferry reads what `ostree`
//! writes and `ostree` reads what Ferry writes, byte for byte; pulls are crash safe;
//! bad input is refused with one clear sentence and leaves the repository as it was;
//! `ferryctl` behaves as documented.

#[path = "../common/mod.rs"]
mod common;

mod formats_config;
mod sign_cli;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ferry::repo::filez::{read_archive_header, verify_filez, write_filez};
use ferry::repo::objects::{
    variant_from_bytes, Commit, DirMeta, DirTree, DirTreeDir, DirTreeFile, METADATA_TYPE,
};
use ferry::repo::summary::Summary;
use ferry::repo::{Checksum, ObjectType};
use glib::prelude::*;
use glib::{Variant, VariantDict, VariantTy};
use rand::Rng;

use common::repo::*;

/// Runs `ostree checkout -U REV DEST` in `repo`.
fn ostree_checkout(repo: &Path, rev: &str, dest: &Path) {
    run_ok(ostree(repo).args(["checkout", "-U", rev]).arg(dest));
}

/// A tree with every kind of entry a commit can hold. `big` is the size of the
/// random file `big.bin`.
fn make_rich_tree(root: &Path, big: usize) {
    make_dir(root, 0o755);
    write_file(&root.join("empty"), b"", 0o644);
    write_file(&root.join("small.txt"), b"hello, ferry\n", 0o644);
    write_random_file(&root.join("big.bin"), 1, big, 0o644);
    write_file(&root.join("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
    write_file(&root.join("bin/secret"), b"secret\n", 0o600);
    write_file(&root.join("group-readable"), b"group\n", 0o640);
    write_file(&root.join("dup-1"), b"same content\n", 0o644);
    write_file(&root.join("dup-2"), b"same content\n", 0o644);
    make_symlink("small.txt", &root.join("link-relative"));
    make_symlink("../small.txt", &root.join("bin/link-up"));
    make_symlink("/etc/hostname", &root.join("link-absolute"));
    make_symlink("does/not/exist", &root.join("link-dangling"));
    make_symlink("bin", &root.join("link-to-dir"));
    write_file(&root.join("a/b/c/d/e/deep.txt"), b"deep\n", 0o644);
    make_dir(&root.join("empty-dir"), 0o755);
    make_dir(&root.join("private-dir"), 0o700);
    write_file(&root.join("private-dir/inside"), b"inside\n", 0o644);
    write_file(
        &root.join("déjà vu/ünïcödé.txt"),
        "ünïcödé\n".as_bytes(),
        0o644,
    );
    write_file(
        &root.join("日本語/ファイル.txt"),
        "ファイル\n".as_bytes(),
        0o644,
    );
    write_file(
        &root.join("emoji 🚀 'quoted' \"name\".txt"),
        b"rocket\n",
        0o644,
    );
    make_symlink("ünïcödé.txt", &root.join("déjà vu/lien"));
    for dir in [
        "bin",
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/d",
        "a/b/c/d/e",
        "déjà vu",
        "日本語",
    ] {
        make_dir(&root.join(dir), 0o755);
    }
}

/// The `objects_fetched` of a `ferryctl --json pull` report.
fn fetched(report: &serde_json::Value) -> u64 {
    report["objects_fetched"]
        .as_u64()
        .unwrap_or_else(|| panic!("no objects_fetched in {report}"))
}

// ---------------------------------------------------------------------------
// 1. Round trip
// ---------------------------------------------------------------------------

#[test]
fn round_trip_ostree_commit_through_ferry_pull_and_checkouts() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    let ferry = tmp.path().join("ferry");
    make_rich_tree(&tree, 50 * 1024 * 1024);
    ostree_init(&src);
    let commit1 = ostree_commit(&src, REF, &tree, &["-s", "first"]);
    let src_objects1 = object_files(&src);

    ferry_init_unverified(&ferry);
    let report = ferry_pull(&ferry, &src, REF);
    assert_eq!(report["commit"], commit1.as_str(), "{report}");
    assert_eq!(report["ref"], REF);
    assert_eq!(report["remote"], "origin");
    assert!(report["previous"].is_null(), "{report}");
    // A fresh repository holds nothing: everything in the source is fetched once.
    assert_eq!(fetched(&report), src_objects1.len() as u64, "{report}");
    let source_bytes: u64 = src_objects1
        .iter()
        .map(|o| fs::metadata(src.join("objects").join(o)).unwrap().len())
        .sum();
    assert_eq!(report["bytes_fetched"], source_bytes, "{report}");
    let first_report = report.clone();
    assert_eq!(object_files(&ferry), src_objects1);

    assert_ostree_fsck(&ferry);
    assert_eq!(
        rev_parse(&ferry, "origin:os/stable").as_deref(),
        Some(commit1.as_str())
    );
    let out = tmp.path().join("ostree-checkout");
    ostree_checkout(&ferry, "origin:os/stable", &out);
    assert_same_tree(&tree, &out);
    let out = tmp.path().join("ferry-checkout");
    run_ok(
        ferryctl(&ferry)
            .args(["checkout", "origin:os/stable"])
            .arg(&out),
    );
    assert_same_tree(&tree, &out);
    // By checksum too.
    let out = tmp.path().join("ferry-checkout-by-checksum");
    run_ok(ferryctl(&ferry).arg("checkout").arg(&commit1).arg(&out));
    assert_same_tree(&tree, &out);
    fs::remove_dir_all(&out).unwrap();

    // Pulling again fetches nothing.
    let again = ferry_pull(&ferry, &src, REF);
    assert_eq!(fetched(&again), 0, "{again}");
    assert_eq!(again["commit"], commit1.as_str());
    assert_eq!(again["previous"], commit1.as_str());

    // A second commit sharing most files (the 50 MB file among them): only the new
    // objects travel.
    let overlay = tmp.path().join("overlay");
    make_dir(&overlay, 0o755);
    write_file(&overlay.join("small.txt"), b"hello again\n", 0o644);
    write_file(&overlay.join("new.txt"), b"new file\n", 0o644);
    write_file(&overlay.join("a/b/c/d/e/deep.txt"), b"deeper\n", 0o644);
    for dir in ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"] {
        make_dir(&overlay.join(dir), 0o755);
    }
    // Later --tree options overlay earlier ones.
    let commit2 = ostree_commit(
        &src,
        REF,
        &overlay,
        &["-s", "second", &format!("--tree=ref={commit1}")],
    );
    let new_objects: BTreeSet<String> = object_files(&src)
        .difference(&src_objects1)
        .cloned()
        .collect();
    let before = object_files(&ferry);
    let report = ferry_pull(&ferry, &src, REF);
    assert_eq!(report["commit"], commit2.as_str(), "{report}");
    assert_eq!(report["previous"], commit1.as_str(), "{report}");
    let ferry_new: BTreeSet<String> = object_files(&ferry).difference(&before).cloned().collect();
    assert_eq!(ferry_new, new_objects);
    assert_eq!(fetched(&report), ferry_new.len() as u64, "{report}");
    let new_files = ferry_new.iter().filter(|o| o.ends_with(".filez")).count();
    assert_eq!(new_files, 3, "only the three changed files: {ferry_new:?}");
    assert_ostree_fsck(&ferry);
    let out = tmp.path().join("checkout-2");
    ostree_checkout(&ferry, "origin:os/stable", &out);
    let expected = tmp.path().join("expected-2");
    ostree_checkout(&src, REF, &expected);
    assert_same_tree(&expected, &out);

    // The `--json` contract: `objects_present` counts objects of the closure that
    // were already stored, so a pull into an empty repository has none, and fetched
    // + present is the size of the closure.
    assert_eq!(
        first_report["objects_present"], 0,
        "nothing was stored before the first pull: {first_report}"
    );
    assert_eq!(closure_of(&src, &commit1).len(), src_objects1.len());
    let closure2 = closure_of(&src, &commit2).len() as u64;
    assert_eq!(
        report["objects_present"].as_u64().unwrap(),
        closure2 - fetched(&report),
        "second pull, closure of {closure2} objects: {report}"
    );
}

// ---------------------------------------------------------------------------
// 2. Reverse: ostree reads what Ferry wrote
// ---------------------------------------------------------------------------

#[test]
fn ostree_pulls_from_a_ferry_repository() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    let ferry = tmp.path().join("ferry");
    make_rich_tree(&tree, 300 * 1024);
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &["-s", "for ostree"]);
    ferry_init_unverified(&ferry);
    ferry_pull(&ferry, &src, REF);
    let pulled = rev_parse(&ferry, "origin:os/stable").expect("ferry wrote the remote ref");
    assert_eq!(pulled, commit);

    // ostree 2022.7's pull-local takes branch names or checksums, not REMOTE:REF.
    let other = tmp.path().join("other");
    run_ok(ostree(&other).args(["init", "--mode=archive"]));
    run_ok(
        ostree(&other)
            .args(["pull-local", "--untrusted"])
            .arg(&ferry)
            .arg(&pulled),
    );
    assert_ostree_fsck(&other);
    let show = run_ok(ostree(&other).args(["show", &pulled]));
    assert!(
        show.stdout.contains(&format!("commit {pulled}")),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("for ostree"), "{}", show.stdout);
    assert_eq!(object_files(&other), object_files(&src));
    let out = tmp.path().join("out");
    ostree_checkout(&other, &pulled, &out);
    assert_same_tree(&tree, &out);
}

/// `ostree summary -u` on `repo` (which may add an `ostree-metadata` ref), then
/// `ferryctl summary -u` on a copy: the two summaries list the same refs, commits,
/// sizes, versions and timestamps, and are the same bytes except for the
/// last-modified time.
fn assert_summary_matches_ostree(tmp: &Path, repo: &Path) {
    run_ok(ostree(repo).args(["summary", "-u"]));
    let copy = tmp.join(format!(
        "{}-ferry",
        repo.file_name().unwrap().to_string_lossy()
    ));
    copy_tree(repo, &copy);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    run_ok(ferryctl(&copy).args(["summary", "-u"]));

    let view = |r: &Path| -> String {
        run_ok(ostree(r).args(["summary", "--view"]))
            .stdout
            .lines()
            .filter(|l| !l.starts_with("Last-Modified"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let theirs = view(repo);
    assert!(
        theirs.contains("os/stable") && theirs.contains("Timestamp"),
        "{theirs}"
    );
    assert_eq!(view(&copy), theirs);

    let ostree_bytes = fs::read(repo.join("summary")).unwrap();
    let ferry_bytes = fs::read(copy.join("summary")).unwrap();
    let ostree_summary = Summary::parse(&ostree_bytes).unwrap();
    let mut ferry_summary = Summary::parse(&ferry_bytes).unwrap();
    let stamped = ferry_summary.last_modified.expect("last-modified");
    assert!(
        stamped >= before.saturating_sub(1) && stamped <= before + 60,
        "last-modified {stamped}, now {before}"
    );
    ferry_summary.last_modified = ostree_summary.last_modified;
    assert_eq!(ferry_summary, ostree_summary);
    assert_eq!(ferry_summary.to_bytes().unwrap(), ostree_bytes);
    assert_eq!(
        Summary::parse(&ostree_bytes).unwrap().to_bytes().unwrap(),
        ostree_bytes
    );
}

#[test]
fn ferry_summary_matches_ostree_summary() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    make_rich_tree(&tree, 1000);

    // A repository made by ostree: several refs, versions, distinct timestamps, and a
    // mirrored ref of another collection (as `ostree create-usb` leaves them).
    let src = tmp.path().join("ostree-made");
    ostree_init(&src);
    let stable = ostree_commit(
        &src,
        REF,
        &tree,
        &[
            "--add-metadata-string=version=1.0",
            "--timestamp=2021-03-04 05:06:07 +0000",
        ],
    );
    ostree_commit(
        &src,
        "os/testing",
        &tree,
        &["--add-metadata-string=version=2.0beta"],
    );
    ostree_commit(
        &src,
        "os/no-version",
        &tree,
        &["--timestamp=2020-01-01 00:00:00 +0000"],
    );
    write_ref_file(&src, "refs/mirrors/org.other.Apps/app/stable", &stable);
    assert_summary_matches_ostree(tmp.path(), &src);
    let summary = Summary::load(&src).unwrap().unwrap();
    let stable_ref = summary.find_ref(Some(COLLECTION), REF).unwrap();
    assert_eq!(stable_ref.timestamp, Some(1_614_834_367));
    assert_eq!(stable_ref.version.as_deref(), Some("1.0"));
    assert!(summary
        .find_ref(Some("org.other.Apps"), "app/stable")
        .is_some());

    // A repository made by Ferry, its refs/heads written by ostree.
    let made = tmp.path().join("ferry-made");
    run_ok(ferryctl(&made).args(["init", "--collection-id", COLLECTION]));
    run_ok(
        ostree(&made)
            .arg("pull-local")
            .arg(&src)
            .args([REF, "os/testing"]),
    );
    assert_summary_matches_ostree(tmp.path(), &made);
}

// ---------------------------------------------------------------------------
// 3. Every object ostree writes survives Ferry's parser and serializer unchanged
// ---------------------------------------------------------------------------

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
    let gpg = Gpg::new();

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
    gpg.ostree_sign(&repo, &second);
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

// ---------------------------------------------------------------------------
// 4. Crash safety
// ---------------------------------------------------------------------------

/// What the threads of a process are doing (state and kernel wait channel).
fn process_state(pid: u32) -> String {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            out.push(format!(
                "{} {} {wchan}",
                task.file_name().to_string_lossy(),
                state.unwrap_or("?")
            ));
        }
    }
    out.join(", ")
}

/// Staging directories Ferry left under `tmp/`.
fn staging_dirs(repo: &Path) -> Vec<PathBuf> {
    fs::read_dir(repo.join("tmp"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("staging-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pull_killed_at_random_moments_leaves_a_valid_repository() {
    const ITERATIONS: usize = 25;
    let setup = Instant::now();
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    make_dir(&tree, 0o755);
    for d in 0..40 {
        let dir = tree.join(format!("dir-{d:02}"));
        make_dir(&dir, 0o755);
        for f in 0..50 {
            let content = format!("file {d} {f}\n{}", "x".repeat(f * 37 + d));
            write_file(&dir.join(format!("f{f:02}")), content.as_bytes(), 0o644);
        }
    }
    for (i, size) in [3_000_000, 2_000_000, 1_000_000].into_iter().enumerate() {
        write_random_file(&tree.join(format!("blob-{i}")), 100 + i as u64, size, 0o644);
    }
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &[]);
    let src_objects = object_files(&src);
    assert!(src_objects.len() > 2000);
    eprintln!("crash test: source made in {:?}", setup.elapsed());

    let pristine = tmp.path().join("pristine");
    ferry_init_unverified(&pristine);

    // How long an uninterrupted pull takes here, so the kills cover all of it.
    let timed = tmp.path().join("timed");
    copy_tree(&pristine, &timed);
    let started = Instant::now();
    ferry_pull(&timed, &src, REF);
    let full = started.elapsed();
    fs::remove_dir_all(&timed).unwrap();
    let max_delay = (full.as_millis() as u64 * 6 / 5).max(300);

    let ferry = tmp.path().join("ferry");
    copy_tree(&pristine, &ferry);
    let mut rng = rand::rng();
    let mut interrupted = 0;
    let mut completed = 0;
    let loop_started = Instant::now();
    for iteration in 0..ITERATIONS {
        // Every third kill aims at the end of the pull, where the store is updated
        // and the ref written: a few milliseconds after the first object appears in
        // `objects/` of a repository that had none. The others come at random.
        let aimed = iteration % 3 == 2;
        if aimed && !object_files(&ferry).is_empty() {
            fs::remove_dir_all(&ferry).unwrap();
            copy_tree(&pristine, &ferry);
        }
        let mut child = ferryctl(&ferry)
            .arg("pull")
            .arg(file_uri(&src))
            .arg(REF)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = if aimed {
            let waiting = Instant::now();
            while object_files(&ferry).is_empty() && child.try_wait().unwrap().is_none() {
                if waiting.elapsed() > Duration::from_secs(120) {
                    let state = process_state(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("iteration {iteration}: the pull hangs; its threads: {state}");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let extra = Duration::from_millis(rng.random_range(0..=15));
            std::thread::sleep(extra);
            waiting.elapsed()
        } else {
            let delay = Duration::from_millis(rng.random_range(0..=max_delay));
            std::thread::sleep(delay);
            delay
        };
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(
                    status.success(),
                    "iteration {iteration}: pull failed: {status}"
                )
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }
        }
        assert_ostree_fsck(&ferry);
        match origin_ref(&ferry) {
            None => interrupted += 1,
            Some(found) => {
                assert_eq!(found, commit, "iteration {iteration}: ref points elsewhere");
                let have = object_files(&ferry);
                let missing: Vec<_> = src_objects.difference(&have).collect();
                assert!(
                    missing.is_empty(),
                    "iteration {iteration} ({delay:?}): the ref moved before the closure was \
                     stored; {} objects missing, e.g. {:?}",
                    missing.len(),
                    missing.first()
                );
                completed += 1;
                // Start over, to keep interrupting pulls.
                fs::remove_dir_all(&ferry).unwrap();
                copy_tree(&pristine, &ferry);
            }
        }
    }
    eprintln!(
        "crash test: full pull {full:?}; {ITERATIONS} kills in {:?}: {interrupted} \
         interrupted, {completed} completed",
        loop_started.elapsed()
    );
    assert!(
        interrupted >= 5,
        "only {interrupted} pulls were interrupted"
    );

    // A rerun completes, reusing what survived, and cleans up after the dead ones.
    let t = Instant::now();
    let report = ferry_pull(&ferry, &src, REF);
    eprintln!("final pull {:?}", t.elapsed());
    assert_eq!(report["commit"], commit.as_str());
    assert_eq!(origin_ref(&ferry).as_deref(), Some(commit.as_str()));
    assert_ostree_fsck(&ferry);
    eprintln!("final ostree fsck {:?}", t.elapsed());
    run_ok(ferryctl(&ferry).arg("fsck"));
    eprintln!("final ferry fsck {:?}", t.elapsed());
    assert!(src_objects.is_subset(&object_files(&ferry)));
    assert_eq!(
        staging_dirs(&ferry),
        Vec::<PathBuf>::new(),
        "staging left behind"
    );
    let partial: Vec<_> = fs::read_dir(ferry.join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(partial.is_empty(), "state/ still has {partial:?}");
}

// ---------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------

/// A source with a good first commit that Ferry already pulled.
struct BadInput {
    tmp: tempfile::TempDir,
    tree: PathBuf,
    src: PathBuf,
    ferry: PathBuf,
    commit1: String,
}

impl BadInput {
    fn new() -> Self {
        let tmp = tempdir();
        let tree = tmp.path().join("tree");
        let src = tmp.path().join("src");
        let ferry = tmp.path().join("ferry");
        make_dir(&tree, 0o755);
        write_file(&tree.join("big.txt"), &text(1, 256 * 1024), 0o644);
        write_file(&tree.join("a/x.txt"), &text(2, 10_000), 0o644);
        write_file(&tree.join("b/c/y.txt"), &text(3, 10_000), 0o644);
        make_symlink("big.txt", &tree.join("link"));
        ostree_init(&src);
        let commit1 = ostree_commit(&src, REF, &tree, &["-s", "good"]);
        ferry_init_unverified(&ferry);
        ferry_pull(&ferry, &src, REF);
        BadInput {
            tmp,
            tree,
            src,
            ferry,
            commit1,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A second, good commit that changes every file; returns it.
    fn second_commit(&self) -> String {
        write_file(&self.tree.join("big.txt"), &text(11, 256 * 1024), 0o644);
        write_file(&self.tree.join("a/x.txt"), &text(12, 10_000), 0o644);
        write_file(&self.tree.join("b/c/y.txt"), &text(13, 10_000), 0o644);
        ostree_commit(&self.src, REF, &self.tree, &["-s", "second"])
    }

    /// A commit on top of the first one with `root` as its tree, made with Ferry's
    /// library and with the first commit's metadata (so its bindings are right);
    /// `refs/heads/os/stable` of `repo` is moved to it.
    fn crafted_commit(&self, repo: &Path, root: Checksum) -> Checksum {
        let first = load_commit(&self.src, &self.commit1);
        let commit = put_commit(
            repo,
            &Commit {
                parent: Some(self.commit1.parse().unwrap()),
                subject: "crafted".into(),
                timestamp: first.timestamp + 60,
                root_tree: root,
                ..first.clone()
            },
        );
        write_ref_file(repo, &format!("refs/heads/{REF}"), &commit.to_hex());
        commit
    }

    /// The first commit's root dirmeta.
    fn root_meta(&self) -> Checksum {
        load_commit(&self.src, &self.commit1).root_meta
    }

    /// A file object of the first commit.
    fn some_file(&self) -> Checksum {
        let root = load_commit(&self.src, &self.commit1).root_tree;
        load_dirtree(&self.src, &root).files[0].checksum
    }

    /// Pulls and asserts the pull failed with one sentence naming one of `needles`,
    /// the ref did not move and the repository is still valid.
    fn assert_pull_refused(&self, needles: &[String]) -> String {
        let out = ferry_pull_fails(&self.ferry, &self.src, REF);
        let sentence = out.error_sentence();
        eprintln!("refused: {sentence}");
        assert!(
            needles.iter().any(|n| sentence.contains(n.as_str())),
            "the error does not say what was wrong (expected one of {needles:?}): {sentence}"
        );
        assert_eq!(
            origin_ref(&self.ferry).as_deref(),
            Some(self.commit1.as_str())
        );
        assert_ostree_fsck(&self.ferry);
        sentence
    }
}

/// `len` bytes of compressible text, different for each seed.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i} of file {seed}: {}\n", i * seed % 9973).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// The file object named `name` in the root tree of `commit` in `repo`.
fn file_in_root(repo: &Path, commit: &str, name: &str) -> Checksum {
    let root = load_commit(repo, commit).root_tree;
    load_dirtree(repo, &root)
        .files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {commit}"))
        .checksum
}

/// The ways a name can be quoted in an error.
fn quoted(name: &str) -> Vec<String> {
    vec![
        format!("“{name}”"),
        format!("\"{name}\""),
        format!("'{name}'"),
        format!("‘{name}’"),
        format!("`{name}`"),
    ]
}

#[test]
fn bad_input_truncated_filez_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    let path = object_path(&f.src, &big, ObjectType::File);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // Truncated to within its header.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(6)
        .unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
}

#[test]
fn bad_input_bit_flipped_filez_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    let path = object_path(&f.src, &big, ObjectType::File);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // A flipped bit in the header (the mode) changes the checksum as well.
    bytes[middle] ^= 0x10;
    let header_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[8 + header_len / 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
}

#[test]
fn bad_input_metadata_not_matching_its_name_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let root = load_commit(&f.src, &commit2).root_tree;
    let a = load_dirtree(&f.src, &root)
        .dirs
        .iter()
        .find(|d| d.name == "a")
        .unwrap()
        .tree;
    let root_path = object_path(&f.src, &root, ObjectType::DirTree);
    let a_path = object_path(&f.src, &a, ObjectType::DirTree);
    let (root_bytes, a_bytes) = (fs::read(&root_path).unwrap(), fs::read(&a_path).unwrap());
    fs::write(&root_path, &a_bytes).unwrap();
    fs::write(&a_path, &root_bytes).unwrap();
    f.assert_pull_refused(&[root.to_hex(), a.to_hex()]);
}

#[test]
fn bad_input_unsafe_names_are_refused_by_pull() {
    let f = BadInput::new();
    let file = f.some_file();
    let meta = f.root_meta();
    let empty_tree = put_dirtree(&f.src, &DirTree::default());
    for bad in [".", "..", "a/b", "../escape", "/abs"] {
        // As a file name …
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![DirTreeFile {
                    name: bad.into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        );
        f.crafted_commit(&f.src, root);
        f.assert_pull_refused(&quoted(bad));
        // … and as a directory name.
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![],
                dirs: vec![DirTreeDir {
                    name: bad.into(),
                    tree: empty_tree,
                    meta,
                }],
            },
        );
        f.crafted_commit(&f.src, root);
        f.assert_pull_refused(&quoted(bad));
    }
}

/// A root tree holding a symlink `x` to `outside` and a directory `x` with a file
/// `pwned`: checked out naively, `x/pwned` lands in `outside`.
fn put_symlink_dir_clash(repo: &Path, outside: &Path, meta: Checksum) -> Checksum {
    let link = put_symlink(repo, &outside.display().to_string());
    let pwned = put_file(repo, b"pwned\n", 0o644);
    let sub = put_dirtree(
        repo,
        &DirTree {
            files: vec![DirTreeFile {
                name: "pwned".into(),
                checksum: pwned,
            }],
            dirs: vec![],
        },
    );
    put_dirtree(
        repo,
        &DirTree {
            files: vec![DirTreeFile {
                name: "x".into(),
                checksum: link,
            }],
            dirs: vec![DirTreeDir {
                name: "x".into(),
                tree: sub,
                meta,
            }],
        },
    )
}

#[test]
fn bad_input_file_and_directory_of_the_same_name_is_refused_by_pull() {
    let f = BadInput::new();
    let outside = f.path("outside");
    make_dir(&outside, 0o755);
    let root = put_symlink_dir_clash(&f.src, &outside, f.root_meta());
    f.crafted_commit(&f.src, root);
    f.assert_pull_refused(&quoted("x"));
    assert_eq!(list_all(&outside), Vec::<PathBuf>::new());
}

#[test]
fn checkout_refuses_trees_that_escape_the_target() {
    let f = BadInput::new();
    let outside = f.path("outside");
    make_dir(&outside, 0o755);
    let meta = f.root_meta();
    let file = f.some_file();
    let mut cases = vec![("clash", put_symlink_dir_clash(&f.ferry, &outside, meta))];
    // A directory named `..` holding `pwned`.
    let pwned = put_file(&f.ferry, b"pwned\n", 0o644);
    let sub = put_dirtree(
        &f.ferry,
        &DirTree {
            files: vec![DirTreeFile {
                name: "pwned".into(),
                checksum: pwned,
            }],
            dirs: vec![],
        },
    );
    // `..`, a relative escape, and an absolute name pointing into `outside` (never
    // anywhere real, in case a checkout does follow it).
    let absolute = outside.join("absolute").display().to_string();
    for bad in ["..", "../outside", &absolute] {
        cases.push((
            if bad == absolute { "absolute" } else { bad },
            put_dirtree(
                &f.ferry,
                &DirTree {
                    files: vec![],
                    dirs: vec![DirTreeDir {
                        name: bad.into(),
                        tree: sub,
                        meta,
                    }],
                },
            ),
        ));
    }
    cases.push((
        "file ..",
        put_dirtree(
            &f.ferry,
            &DirTree {
                files: vec![DirTreeFile {
                    name: "../pwned".into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        ),
    ));
    for (i, (what, root)) in cases.into_iter().enumerate() {
        let first = load_commit(&f.ferry, &f.commit1);
        let commit = put_commit(
            &f.ferry,
            &Commit {
                root_tree: root,
                subject: format!("evil {what}"),
                ..first
            },
        );
        write_ref_file(&f.ferry, "refs/remotes/origin/evil", &commit.to_hex());
        let parent = f.path(&format!("checkouts-{i}"));
        make_dir(&parent, 0o755);
        let dest = parent.join("dest");
        for rev in ["origin:evil".to_owned(), commit.to_hex()] {
            let out = run(ferryctl(&f.ferry).arg("checkout").arg(&rev).arg(&dest));
            assert_eq!(
                list_all(&outside),
                Vec::<PathBuf>::new(),
                "{what}: wrote outside"
            );
            let escaped: Vec<_> = list_all(&parent)
                .into_iter()
                .filter(|p| !p.starts_with(&dest))
                .collect();
            assert_eq!(
                escaped,
                Vec::<PathBuf>::new(),
                "{what}: wrote next to the target"
            );
            assert!(
                !list_all(&dest).iter().any(|p| p.ends_with("pwned")),
                "{what}: checked out"
            );
            let sentence = out.failed().error_sentence();
            eprintln!("checkout {what}: {sentence}");
            let _ = fs::remove_dir_all(&dest);
        }
    }
    // The good commit still checks out.
    let good = f.path("good");
    run_ok(
        ferryctl(&f.ferry)
            .args(["checkout", "origin:os/stable"])
            .arg(&good),
    );
    assert_same_tree(&f.tree, &good);
}

#[test]
fn bad_input_garbage_summary_is_an_error() {
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    let tree = tmp.path().join("tree");
    make_rich_tree(&tree, 10);
    ostree_init(&repo);
    let commit = ostree_commit(&repo, REF, &tree, &[]);
    run_ok(ostree(&repo).args(["summary", "-u"]));
    let good = fs::read(repo.join("summary")).unwrap();
    assert!(Summary::load(&repo).unwrap().is_some());

    let commit_bytes = read_object(&repo, &commit.parse().unwrap(), ObjectType::Commit);
    let mut flipped = good.clone();
    // The framing offsets live at the end: break one.
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"this is not a summary\n".to_vec()),
        ("random", random_bytes(3, 4096)),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("a commit", commit_bytes),
        ("bad offsets", flipped),
    ];
    for (what, bytes) in garbage {
        assert!(
            Summary::parse(&bytes).is_err(),
            "{what} parsed as a summary"
        );
        fs::write(repo.join("summary"), &bytes).unwrap();
        assert!(Summary::load(&repo).is_err(), "{what} loaded as a summary");
    }
    // Well-formed GVariant, but a 31-byte checksum.
    let entry = Variant::tuple_from_iter([
        "os/short".to_variant(),
        Variant::tuple_from_iter([
            182u64.to_variant(),
            Variant::array_from_fixed_array(&[7u8; 31]),
            VariantDict::new(None).end(),
        ]),
    ]);
    let refs =
        Variant::array_from_iter_with_type(VariantTy::new("(s(taya{sv}))").unwrap(), [entry]);
    let bad = Variant::tuple_from_iter([refs, VariantDict::new(None).end()]);
    assert!(Summary::parse(bad.data()).is_err());
}

#[test]
fn bad_input_junk_ref_is_reported_with_its_file() {
    let f = BadInput::new();
    let ref_file = f.ferry.join(format!("refs/remotes/origin/{REF}"));
    for junk in [
        "not a checksum\n",
        "",
        &"A".repeat(64),
        &format!("{}\n\n", f.commit1),
    ] {
        fs::write(&ref_file, junk).unwrap();
        for json in [false, true] {
            let mut cmd = ferryctl(&f.ferry);
            if json {
                cmd.arg("--json");
            }
            let out = run(cmd.arg("refs")).failed();
            let sentence = out.error_sentence();
            assert!(
                sentence.contains(&ref_file.display().to_string())
                    || sentence.contains(&format!("refs/remotes/origin/{REF}")),
                "{junk:?}: the error does not name the ref file: {sentence}"
            );
        }
    }
    fs::write(&ref_file, format!("{}\n", f.commit1)).unwrap();
    run_ok(ferryctl(&f.ferry).arg("refs"));
}

// ---------------------------------------------------------------------------
// 6. Command line details
// ---------------------------------------------------------------------------

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
    let gpg = Gpg::new();
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
    assert_eq!(gpg.keyring_fingerprints(&keyring), vec![gpg.fingerprint()]);
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
    let stranger = Gpg::new();
    stranger.ostree_sign(&src, &commit);
    let out = ferry_pull_fails(&ferry, &src, REF);
    assert!(out.error_sentence().contains(REF), "{}", out.stderr);
    assert_eq!(origin_ref(&ferry), None);

    // Signed by the imported key: accepted, signature stored with the commit.
    gpg.ostree_sign(&src, &commit);
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
    let scratch_gpg = GnupgHome::new();
    run_ok(
        ostree(&other)
            .env("GNUPGHOME", scratch_gpg.path())
            .args(["pull", "origin", REF]),
    );
    assert_eq!(
        rev_parse(&other, &format!("origin:{REF}")).as_deref(),
        Some(commit.as_str())
    );
}

// ---------------------------------------------------------------------------
// More checks on checkout and on bad objects
// ---------------------------------------------------------------------------

/// `ferryctl checkout` checks out as the invoking user, like `ostree checkout -U`:
/// for files that means no setuid or setgid bit (a root-run checkout must not create
/// setuid-root programs); directories keep theirs.
#[test]
fn ferry_checkout_matches_ostree_user_mode_checkout() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    let ferry = tmp.path().join("ferry");
    make_rich_tree(&tree, 1000);
    write_file(&tree.join("bin/setuid"), b"#!/bin/sh\n", 0o4755);
    write_file(&tree.join("bin/setgid"), b"#!/bin/sh\n", 0o2755);
    write_file(&tree.join("sticky-file"), b"sticky\n", 0o1644);
    make_dir(&tree.join("setgid-dir"), 0o2775);
    make_dir(&tree.join("sticky-dir"), 0o1777);
    make_dir(&tree.join("odd-dir"), 0o750);
    ostree_init(&src);
    ostree_commit(&src, REF, &tree, &[]);
    ferry_init_unverified(&ferry);
    ferry_pull(&ferry, &src, REF);
    let by_ostree = tmp.path().join("by-ostree");
    let by_ferry = tmp.path().join("by-ferry");
    ostree_checkout(&ferry, "origin:os/stable", &by_ostree);
    run_ok(
        ferryctl(&ferry)
            .args(["checkout", "origin:os/stable"])
            .arg(&by_ferry),
    );
    assert_same_tree(&by_ostree, &by_ferry);
}

/// Objects that are well named but describe something a checkout must never
/// create, or that are not what their type says.
#[test]
fn bad_input_special_files_and_bad_dirmeta_are_refused() {
    let f = BadInput::new();
    let header = |mode: u32, rdev: u32, target: &str, size: u64| ferry::repo::filez::FileHeader {
        size,
        uid: 0,
        gid: 0,
        mode,
        rdev,
        symlink_target: target.into(),
        xattrs: vec![],
    };
    let put_raw = |h: ferry::repo::filez::FileHeader, content: &[u8]| {
        let mut bytes = Vec::new();
        let checksum = write_filez(&h, &mut &content[..], &mut bytes).unwrap();
        put_object(&f.src, &checksum, ObjectType::File, &bytes);
        checksum
    };
    let cases = [
        (
            "character device",
            put_raw(header(libc::S_IFCHR | 0o666, 0x0103, "", 0), b""),
        ),
        (
            "fifo",
            put_raw(header(libc::S_IFIFO | 0o644, 0, "", 0), b""),
        ),
        (
            "setuid device",
            put_raw(header(libc::S_IFBLK | 0o4666, 0x0801, "", 0), b""),
        ),
        (
            "symlink without target",
            put_raw(header(libc::S_IFLNK | 0o777, 0, "", 0), b""),
        ),
        (
            "regular file with a target",
            put_raw(header(libc::S_IFREG | 0o644, 0, "/etc/passwd", 3), b"abc"),
        ),
    ];
    for (what, file) in cases {
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![DirTreeFile {
                    name: "special".into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        );
        f.crafted_commit(&f.src, root);
        eprintln!("{what}:");
        f.assert_pull_refused(&[file.to_hex()]);
    }
    // A directory whose dirmeta says it is a regular file.
    let not_a_dir = put_dirmeta(
        &f.src,
        &DirMeta {
            mode: libc::S_IFREG | 0o755,
            ..dir_meta_0755()
        },
    );
    let empty = put_dirtree(&f.src, &DirTree::default());
    let root = put_dirtree(
        &f.src,
        &DirTree {
            files: vec![],
            dirs: vec![DirTreeDir {
                name: "d".into(),
                tree: empty,
                meta: not_a_dir,
            }],
        },
    );
    f.crafted_commit(&f.src, root);
    f.assert_pull_refused(&[not_a_dir.to_hex(), "dirmeta".into()]);
    // The root dirmeta itself.
    let first = load_commit(&f.src, &f.commit1);
    let commit = put_commit(
        &f.src,
        &Commit {
            root_meta: not_a_dir,
            timestamp: first.timestamp + 60,
            parent: Some(f.commit1.parse().unwrap()),
            ..first.clone()
        },
    );
    write_ref_file(&f.src, &format!("refs/heads/{REF}"), &commit.to_hex());
    f.assert_pull_refused(&[not_a_dir.to_hex(), "dirmeta".into()]);
}

#[test]
fn bad_input_missing_object_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    fs::remove_file(object_path(&f.src, &big, ObjectType::File)).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // A missing dirtree.
    let root = load_commit(&f.src, &commit2).root_tree;
    fs::remove_file(object_path(&f.src, &root, ObjectType::DirTree)).unwrap();
    f.assert_pull_refused(&[root.to_hex()]);
}

/// Pulls running at the same time into one repository (the GUI and `ferryctl`, say)
/// each complete: starting a transaction clears away only the staging of dead
/// processes, never that of a live one.
#[test]
fn concurrent_pulls_into_one_repository_all_succeed() {
    const ROUNDS: usize = 10;
    const PULLS: usize = 6;
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    make_dir(&tree, 0o755);
    for i in 0..200 {
        write_file(
            &tree.join(format!("f{i:03}")),
            format!("file {i}\n").as_bytes(),
            0o644,
        );
    }
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &[]);
    let pristine = tmp.path().join("pristine");
    ferry_init_unverified(&pristine);
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let ferry = tmp.path().join(format!("ferry-{round}"));
        copy_tree(&pristine, &ferry);
        let children: Vec<_> = (0..PULLS)
            .map(|_| {
                ferryctl(&ferry)
                    .arg("pull")
                    .arg(file_uri(&src))
                    .arg(REF)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "round {round}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        assert_ostree_fsck(&ferry);
        assert_eq!(origin_ref(&ferry).as_deref(), Some(commit.as_str()));
        fs::remove_dir_all(&ferry).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} concurrent pulls failed:\n{}",
        failures.len(),
        ROUNDS * PULLS,
        failures.join("\n")
    );
}
