//! Round trips: Ferry reads what `ostree` writes (pull, checkout, summary) and
//! `ostree` reads what Ferry wrote.

use super::*;

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
