//! Config, refs and summary formats, checked against the real `ostree` CLI.
//!
//! Everything happens in temporary directories; the only URLs are `file://` paths
//! and unrouted example names that nothing ever fetches.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::repo::config::{RemoteConfig, RepoConfig, RepoMode, TrackedRef};
use ferry::repo::refs::{
    delete_ref, is_valid_collection_id, is_valid_ref_name, is_valid_remote_name, list_refs,
    parse_refspec, read_ref, write_ref, RefKind,
};
use ferry::repo::summary::{Summary, SummaryRef};
use ferry::repo::{Checksum, RepoError};

use crate::common::cmd::run_status;
use crate::common::gpg::Signer;

/// Runs `ostree --repo=REPO ARGS…`, which must succeed; returns stdout.
fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = ostree_status(repo, args);
    match out {
        Ok(stdout) => stdout,
        Err(stderr) => panic!("ostree {args:?} failed: {stderr}"),
    }
}

/// Runs `ostree --repo=REPO ARGS…`; Ok(stdout) or Err(stderr).
fn ostree_status(repo: &Path, args: &[&str]) -> Result<String, String> {
    let (ok, stdout, stderr) = run_status(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args),
    );
    if ok {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

fn ostree_init(repo: &Path, collection_id: Option<&str>) {
    let mut args = vec!["init".to_owned(), "--mode=archive".to_owned()];
    if let Some(id) = collection_id {
        args.push(format!("--collection-id={id}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ostree(repo, &args);
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh pair of directories: one for `ostree`, one for Ferry.
fn two_repos() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("ostree");
    let b = dir.path().join("ferry");
    (dir, a, b)
}

#[test]
fn init_config_matches_ostree() {
    for collection_id in [None, Some("org.example.Os")] {
        let (_dir, by_ostree, by_ferry) = two_repos();
        ostree_init(&by_ostree, collection_id);
        fs::create_dir(&by_ferry).unwrap();
        RepoConfig::new(&by_ferry, collection_id)
            .unwrap()
            .save()
            .unwrap();
        assert_eq!(
            read(&by_ferry.join("config")),
            read(&by_ostree.join("config")),
            "collection id {collection_id:?}"
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&by_ferry)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config"]);

        let loaded = RepoConfig::load(&by_ostree).unwrap();
        assert_eq!(loaded.mode().unwrap(), RepoMode::ArchiveZ2);
        assert_eq!(loaded.collection_id().unwrap().as_deref(), collection_id);
        assert!(loaded.remotes().unwrap().is_empty());
    }
}

#[test]
fn unknown_modes_and_missing_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The one mode `ostree` 2022.7 makes that Ferry does not store objects in.
    let split = dir.path().join("split");
    ostree(&split, &["init", "--mode=bare-split-xattrs"]);
    assert!(matches!(
        RepoConfig::load(&split),
        Err(RepoError::UnsupportedMode(mode)) if mode == "bare-split-xattrs"
    ));
    assert!(matches!(
        RepoConfig::load(dir.path().join("nothing")),
        Err(RepoError::NotARepository(_))
    ));
    // No `mode=` means bare, as for libostree.
    fs::write(dir.path().join("config"), "[core]\nrepo_version=1\n").unwrap();
    assert_eq!(
        RepoConfig::load(dir.path()).unwrap().mode().unwrap(),
        RepoMode::Bare
    );
}

/// `ostree init --mode=M` and `ferryctl init --mode M` write the same config and
/// layout, for every mode `ferryctl init` offers.
#[test]
fn init_modes_match_ostree() {
    for mode in ["archive", "bare", "bare-user", "bare-user-only"] {
        let (_dir, by_ostree, by_ferry) = two_repos();
        ostree(&by_ostree, &["init", &format!("--mode={mode}")]);
        crate::common::cmd::run(crate::common::ferryctl(&by_ferry).args(["init", "--mode", mode]));
        assert_eq!(
            read(&by_ostree.join("config")),
            read(&by_ferry.join("config")),
            "{mode}"
        );
        let layout = |root: &Path| -> Vec<String> {
            let mut dirs: Vec<String> = walk_dirs(root)
                .into_iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect();
            dirs.sort();
            dirs
        };
        assert_eq!(layout(&by_ostree), layout(&by_ferry), "{mode}");
        let opened = ferry::repo::store::Repo::open(&by_ferry).unwrap();
        let expected = RepoMode::parse(if mode == "archive" {
            "archive-z2"
        } else {
            mode
        });
        assert_eq!(opened.mode(), expected.unwrap());
    }
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.push(entry.path());
            out.extend(walk_dirs(&entry.path()));
        }
    }
    out
}

/// The remotes both tools add, as (`ostree remote add` arguments, Ferry's config).
fn remote_cases() -> Vec<(Vec<&'static str>, RemoteConfig)> {
    let mut with_id = RemoteConfig::new("os", "http://example.invalid/repo");
    with_id.collection_id = Some("org.example.Os".into());

    let mut no_gpg = RemoteConfig::new("nogpg", "https://example.invalid/r2");
    no_gpg.collection_id = Some("org.example.Other".into());
    no_gpg.gpg_verify = false;

    let plain = RemoteConfig::new("plain", "file:///srv/ostree/repo");

    let mut signed = RemoteConfig::new("signed", "http://example.invalid/signed");
    signed.collection_id = Some("org.example.Signed".into());
    signed.gpg_verify = false;
    signed.gpg_verify_summary = true;
    signed.sign_verify = true;
    signed.verification_ed25519_key = Some("Mjk2NTQzMjEwOTg3NjU0MzIxMDk4NzY1NDMyMTA5ODc=".into());
    signed.verification_ed25519_file = Some("/etc/ferry/keys/signed.ed25519".into());

    vec![
        (
            vec![
                "os",
                "http://example.invalid/repo",
                "--collection-id=org.example.Os",
            ],
            with_id,
        ),
        (
            vec![
                "--no-gpg-verify",
                "nogpg",
                "https://example.invalid/r2",
                "--collection-id=org.example.Other",
            ],
            no_gpg,
        ),
        (vec!["plain", "file:///srv/ostree/repo"], plain),
        (
            vec![
                "signed",
                "http://example.invalid/signed",
                "--collection-id=org.example.Signed",
                "--no-gpg-verify",
                "--set=gpg-verify-summary=true",
                "--set=sign-verify=true",
                "--set=verification-ed25519-key=Mjk2NTQzMjEwOTg3NjU0MzIxMDk4NzY1NDMyMTA5ODc=",
                "--set=verification-ed25519-file=/etc/ferry/keys/signed.ed25519",
            ],
            signed,
        ),
    ]
}

#[test]
fn remote_add_matches_ostree() {
    for collection_id in [None, Some("org.example.Os")] {
        let (_dir, by_ostree, by_ferry) = two_repos();
        ostree_init(&by_ostree, collection_id);
        ostree_init(&by_ferry, collection_id);
        for (args, remote) in remote_cases() {
            let mut full = vec!["remote", "add"];
            full.extend(args);
            ostree(&by_ostree, &full);

            // Ferry loads what is on disk each time, as separate runs would.
            let mut config = RepoConfig::load(&by_ferry).unwrap();
            config.add_remote(&remote).unwrap();
            config.save().unwrap();
            assert_eq!(
                read(&by_ferry.join("config")),
                read(&by_ostree.join("config")),
                "after adding {}",
                remote.name
            );
        }
        // Mixed: ostree wrote the file, Ferry adds one more; ostree adds the same.
        let mut config = RepoConfig::load(&by_ostree).unwrap();
        let mut extra = RemoteConfig::new("extra", "http://example.invalid/extra");
        extra.collection_id = Some("org.example.Extra".into());
        config.add_remote(&extra).unwrap();
        ostree(
            &by_ferry,
            &[
                "remote",
                "add",
                "extra",
                "http://example.invalid/extra",
                "--collection-id=org.example.Extra",
            ],
        );
        assert_eq!(config.to_data(), read(&by_ferry.join("config")));

        // Duplicates are refused, as `ostree remote add` refuses them.
        assert!(matches!(
            config.add_remote(&RemoteConfig::new("os", "http://example.invalid/again")),
            Err(RepoError::RemoteExists(name)) if name == "os"
        ));
        assert!(ostree_status(
            &by_ostree,
            &["remote", "add", "os", "http://example.invalid/again"]
        )
        .is_err());
    }
}

#[test]
fn ferry_reads_remotes_ostree_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, None);
    let signer = Signer::new("Ferry Test <ferry-test@example.invalid>");
    let key = &signer.public;
    ostree(
        &repo,
        &[
            "remote",
            "add",
            &format!("--gpg-import={}", key.display()),
            "--collection-id=org.example.Os",
            "os",
            "http://example.invalid/repo",
        ],
    );
    for (args, _) in remote_cases().into_iter().skip(1) {
        let mut full = vec!["remote", "add"];
        full.extend(args);
        ostree(&repo, &full);
    }

    let config = RepoConfig::load(&repo).unwrap();
    let os = config.remote("os").unwrap();
    let mut expected = RemoteConfig::new("os", "http://example.invalid/repo");
    expected.collection_id = Some("org.example.Os".into());
    assert_eq!(os, expected);
    let keyring = os.keyring_path(&repo);
    assert_eq!(keyring, repo.join("os.trustedkeys.gpg"));
    assert!(fs::metadata(&keyring).unwrap().len() > 0);

    let mut wanted: Vec<RemoteConfig> = remote_cases().into_iter().map(|(_, r)| r).collect();
    wanted[0] = expected;
    assert_eq!(config.remotes().unwrap(), wanted);
    assert_eq!(config.remote_names(), ["os", "nogpg", "plain", "signed"]);
    assert!(matches!(
        config.remote("missing"),
        Err(RepoError::NoSuchRemote(name)) if name == "missing"
    ));

    // An unparsable boolean is an error, not a silent default.
    ostree(
        &repo,
        &["config", "set", "remote \"plain\".gpg-verify", "maybe"],
    );
    let config = RepoConfig::load(&repo).unwrap();
    assert!(matches!(config.remote("plain"), Err(RepoError::Config(_))));
}

#[test]
fn ostree_accepts_what_ferry_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, Some("org.example.Os"));
    fs::write(
        repo.join("config"),
        format!(
            "# Written by hand\n{}\n# about the remote\n[remote \"hand\"]\nurl=http://example.invalid/hand\nx-custom=kept\n",
            read(&repo.join("config"))
        ),
    )
    .unwrap();

    let mut config = RepoConfig::load(&repo).unwrap();
    let mut os = RemoteConfig::new("os", "http://example.invalid/repo");
    os.collection_id = Some("org.example.Os".into());
    config.add_remote(&os).unwrap();
    let mut lan = RemoteConfig::new("lan", "http://192.0.2.1:43381/0/");
    lan.gpg_verify = false;
    config.add_remote(&lan).unwrap();
    assert!(config.track("os", "os/stable").unwrap());
    assert!(config.track("lan", "os/beta").unwrap());
    assert!(!config.track("os", "os/stable").unwrap());
    assert!(matches!(
        config.track("nope", "os/stable"),
        Err(RepoError::NoSuchRemote(_))
    ));
    assert!(matches!(
        config.track("os", "os/../x"),
        Err(RepoError::InvalidRefName(_))
    ));
    config.save().unwrap();

    let text = read(&repo.join("config"));
    // Saving again changes nothing.
    RepoConfig::load(&repo).unwrap().save().unwrap();
    assert_eq!(read(&repo.join("config")), text);
    // GKeyFile keeps comments (it puts a blank line between a comment and the
    // group that follows, as ostree's own rewrites do).
    assert!(text.starts_with("# Written by hand\n"), "{text}");
    assert!(text.contains("# about the remote\n"), "{text}");
    assert!(text.find("# about the remote") < text.find("[remote \"hand\"]"));
    assert!(text.contains("x-custom=kept\n"), "{text}");
    assert!(
        text.contains("[ferry]\ntracked-refs=os:os/stable;lan:os/beta;\n"),
        "{text}"
    );

    // ostree reads the config, extra group and all.
    let list = ostree(&repo, &["remote", "list", "-u"]);
    let mut lines: Vec<String> = list
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "hand http://example.invalid/hand",
            "lan http://192.0.2.1:43381/0/",
            "os http://example.invalid/repo"
        ]
    );
    assert_eq!(
        ostree(&repo, &["config", "get", "remote \"os\".collection-id"]).trim(),
        "org.example.Os"
    );
    assert_eq!(
        ostree(&repo, &["config", "get", "remote \"lan\".gpg-verify"]).trim(),
        "false"
    );
    ostree(&repo, &["refs"]);
    ostree(&repo, &["summary", "-u"]);

    let reloaded = RepoConfig::load(&repo).unwrap();
    assert_eq!(
        reloaded.tracked().unwrap(),
        [
            TrackedRef {
                remote: "os".into(),
                ref_name: "os/stable".into()
            },
            TrackedRef {
                remote: "lan".into(),
                ref_name: "os/beta".into()
            }
        ]
    );
    assert_eq!(reloaded.remote("lan").unwrap(), lan);

    // Removing a remote drops its section and its tracked refs; ostree agrees.
    let mut config = reloaded;
    config.remove_remote("lan").unwrap();
    assert!(matches!(
        config.remove_remote("lan"),
        Err(RepoError::NoSuchRemote(_))
    ));
    config.save().unwrap();
    let list = ostree(&repo, &["remote", "list"]);
    let mut names: Vec<&str> = list.lines().collect();
    names.sort();
    assert_eq!(names, ["hand", "os"]);
    assert_eq!(
        RepoConfig::load(&repo).unwrap().tracked().unwrap(),
        [TrackedRef {
            remote: "os".into(),
            ref_name: "os/stable".into()
        }]
    );
}

/// (name, valid?) for refs. Cross-checked against `ostree refs --create`.
const REF_NAMES: &[(&str, bool)] = &[
    ("stable", true),
    ("os/stable", true),
    ("os/x86_64/stable", true),
    ("a-b_c.d/e", true),
    ("_under", true),
    ("1", true),
    ("v1.0", true),
    ("dots..inside", true),
    ("trailing.", true),
    ("é", true),
    ("ñame/x", true),
    ("٣", true),
    ("", false),
    ("..", false),
    ("os/../etc", false),
    ("../etc", false),
    ("os/..", false),
    (".", false),
    (".hidden", false),
    ("os/.x", false),
    ("-leading", false),
    ("os/-x", false),
    ("os//stable", false),
    ("/os", false),
    ("os/", false),
    ("with space", false),
    ("a@b", false),
    ("a~b", false),
    ("a*", false),
    ("a\\b", false),
    ("a:b", false),
    ("a\nb", false),
    ("trailing-newline\n", false),
    ("nul\0", false),
];

/// (id, valid?) for collection ids. Cross-checked against `ostree init`.
const COLLECTION_IDS: &[(&str, bool)] = &[
    ("org.example.Os", true),
    ("a.b", true),
    ("_a.b", true),
    ("a._b", true),
    ("A.B_c9", true),
    ("org", false),
    ("", false),
    ("a-b.c", false),
    ("a.b-c", false),
    ("1a.b", false),
    ("a.1b", false),
    ("a..b", false),
    (".a.b", false),
    ("a.b.", false),
    ("é.b", false),
    ("a/b.c", false),
];

#[test]
fn ref_name_validation_matches_ostree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, None);
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("file"), "x").unwrap();
    let commit = ostree(
        &repo,
        &[
            "commit",
            "-b",
            "base",
            &format!("--tree=dir={}", tree.display()),
        ],
    );
    let commit = commit.trim();

    for &(name, valid) in REF_NAMES {
        assert_eq!(is_valid_ref_name(name), valid, "ref {name:?}");
        if !name.contains(':') {
            assert_eq!(parse_refspec(name).is_ok(), valid, "refspec {name:?}");
        }
        // ostree parses `a:b` as a refspec and takes names ending in a newline
        // (its regex's `$`); NUL cannot go on a command line. Compare the rest.
        if name.contains(':') || name.contains('\n') || name.contains('\0') || name.is_empty() {
            continue;
        }
        // ostree resolves an all-hex name as a partial checksum first, so `--create`
        // of e.g. "1" fails when the base commit's checksum happens to start with it.
        if name.bytes().all(|b| b.is_ascii_hexdigit()) && commit.starts_with(name) {
            continue;
        }
        let by_ostree = ostree_status(&repo, &["refs", &format!("--create={name}"), commit]);
        assert_eq!(
            by_ostree.is_ok(),
            valid,
            "ostree on ref {name:?}: {by_ostree:?}"
        );
    }
    assert_eq!(
        parse_refspec("origin:os/stable").unwrap(),
        (Some("origin".into()), "os/stable".into())
    );
    assert!(parse_refspec("bad remote:os/stable").is_err());
    assert!(parse_refspec("origin:").is_err());

    for &(name, valid) in REF_NAMES {
        let single = !name.contains('/');
        assert_eq!(
            is_valid_remote_name(name),
            valid && single,
            "remote {name:?}"
        );
    }
    for name in ["origin", "a.b", "é", "a b", "a/b", "a:b"] {
        if !is_valid_remote_name(name) {
            let by_ostree =
                ostree_status(&repo, &["remote", "add", name, "http://example.invalid"]);
            assert!(by_ostree.is_err(), "ostree accepted remote {name:?}");
        } else {
            ostree(&repo, &["remote", "add", name, "http://example.invalid"]);
        }
    }

    for &(id, valid) in COLLECTION_IDS {
        assert_eq!(is_valid_collection_id(id), valid, "collection id {id:?}");
        if id.is_empty() {
            continue;
        }
        let target = dir
            .path()
            .join(format!("c{}", id.len()) + &id.replace('/', "_"));
        let by_ostree = ostree_status(
            &target,
            &["init", "--mode=archive", &format!("--collection-id={id}")],
        );
        assert_eq!(by_ostree.is_ok(), valid, "ostree on collection id {id:?}");
    }
    let long = format!("a.{}", "b".repeat(253));
    assert!(is_valid_collection_id(&long));
    assert!(!is_valid_collection_id(&format!("{long}b")));
}

fn commit_tree(repo: &Path, tree: &Path, branch: &str, timestamp: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "commit".to_owned(),
        "-b".to_owned(),
        branch.to_owned(),
        format!("--tree=dir={}", tree.display()),
        format!("--timestamp={timestamp}"),
        format!("--subject={branch}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ostree(repo, &args).trim().to_owned()
}

#[test]
fn refs_round_trip_with_ostree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, Some("org.example.Os"));
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("file"), "x").unwrap();
    let c1: Checksum = commit_tree(&repo, &tree, "os/stable", "2021-01-01T00:00:00Z", &[])
        .parse()
        .unwrap();
    fs::write(tree.join("file"), "y").unwrap();
    let c2: Checksum = commit_tree(&repo, &tree, "os/beta", "2021-01-02T00:00:00Z", &[])
        .parse()
        .unwrap();

    // Ferry reads what ostree wrote.
    assert_eq!(
        read_ref(&repo, &RefKind::Head, "os/stable").unwrap(),
        Some(c1)
    );
    assert_eq!(
        read_ref(&repo, &RefKind::Head, "os/beta").unwrap(),
        Some(c2)
    );
    assert_eq!(read_ref(&repo, &RefKind::Head, "os/none").unwrap(), None);
    assert_eq!(read_ref(&repo, &RefKind::Head, "os").unwrap(), None);
    assert_eq!(
        read_ref(&repo, &RefKind::Head, "os/stable/deeper").unwrap(),
        None
    );
    assert!(matches!(
        read_ref(&repo, &RefKind::Head, "../config"),
        Err(RepoError::InvalidRefName(_))
    ));
    assert!(matches!(
        read_ref(&repo, &RefKind::Remote("../..".into()), "config"),
        Err(RepoError::InvalidRemoteName(_))
    ));
    assert!(matches!(
        read_ref(&repo, &RefKind::Mirror("nodots".into()), "x"),
        Err(RepoError::InvalidCollectionId(_))
    ));

    // ostree reads what Ferry wrote, in all three namespaces.
    write_ref(&repo, &RefKind::Head, "os/stable", &c2).unwrap();
    write_ref(&repo, &RefKind::Head, "fresh/deep/ref", &c1).unwrap();
    write_ref(&repo, &RefKind::Remote("origin".into()), "os/stable", &c1).unwrap();
    write_ref(
        &repo,
        &RefKind::Mirror("org.other.Apps".into()),
        "app/stable",
        &c2,
    )
    .unwrap();
    assert_eq!(read(&repo.join("refs/heads/os/stable")), format!("{c2}\n"));
    assert_eq!(
        ostree(&repo, &["rev-parse", "os/stable"]).trim(),
        c2.to_string()
    );
    assert_eq!(
        ostree(&repo, &["rev-parse", "fresh/deep/ref"]).trim(),
        c1.to_string()
    );
    assert_eq!(
        ostree(&repo, &["rev-parse", "origin:os/stable"]).trim(),
        c1.to_string()
    );
    let collections = ostree(&repo, &["refs", "--collections"]);
    let mut lines: Vec<&str> = collections.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "(org.example.Os, fresh/deep/ref)",
            "(org.example.Os, os/beta)",
            "(org.example.Os, os/stable)",
            "(org.other.Apps, app/stable)",
        ]
    );
    // No temporary files left next to the refs.
    for d in [
        "refs/heads/os",
        "refs/remotes/origin/os",
        "refs/mirrors/org.other.Apps/app",
    ] {
        for entry in fs::read_dir(repo.join(d)).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with('.'), "{d}/{name:?}");
        }
    }

    // Refs ostree creates in the other namespaces, and a listing of everything.
    ostree(&repo, &["refs", "--create=peer:os/beta", &c2.to_string()]);
    ostree(
        &repo,
        &[
            "refs",
            "--collections",
            "--create=org.third.Coll:x",
            &c1.to_string(),
        ],
    );
    let listed = list_refs(&repo).unwrap();
    let expected = vec![
        (RefKind::Head, "fresh/deep/ref".to_owned(), c1),
        (RefKind::Head, "os/beta".to_owned(), c2),
        (RefKind::Head, "os/stable".to_owned(), c2),
        (RefKind::Remote("origin".into()), "os/stable".to_owned(), c1),
        (RefKind::Remote("peer".into()), "os/beta".to_owned(), c2),
        (
            RefKind::Mirror("org.other.Apps".into()),
            "app/stable".to_owned(),
            c2,
        ),
        (RefKind::Mirror("org.third.Coll".into()), "x".to_owned(), c1),
    ];
    assert_eq!(listed, expected);

    // Delete: the ref goes, empty directories below refs/heads go, ostree agrees.
    assert!(delete_ref(&repo, &RefKind::Head, "fresh/deep/ref").unwrap());
    assert!(!delete_ref(&repo, &RefKind::Head, "fresh/deep/ref").unwrap());
    assert!(!repo.join("refs/heads/fresh").exists());
    assert!(repo.join("refs/heads").is_dir());
    assert!(ostree_status(&repo, &["rev-parse", "fresh/deep/ref"]).is_err());
    write_ref(&repo, &RefKind::Head, "fresh", &c1).unwrap();
    assert_eq!(
        ostree(&repo, &["rev-parse", "fresh"]).trim(),
        c1.to_string()
    );

    // Junk in a ref file is CorruptRef naming the file, for read and list alike.
    let stable = repo.join("refs/heads/os/stable");
    for junk in [
        "not a checksum\n".to_owned(),
        c1.to_string().to_uppercase(),
        format!("{c1}\n\n"),
        format!("{c1}x"),
        c1.to_string()[..63].to_owned(),
        String::new(),
        "ab".repeat(4096),
    ] {
        fs::write(&stable, &junk).unwrap();
        match read_ref(&repo, &RefKind::Head, "os/stable") {
            Err(RepoError::CorruptRef { path }) => assert_eq!(path, stable),
            other => panic!("{junk:?}: {other:?}"),
        }
        assert!(matches!(
            list_refs(&repo),
            Err(RepoError::CorruptRef { .. })
        ));
    }
    // Without the trailing newline it is fine.
    fs::write(&stable, c1.to_string()).unwrap();
    assert_eq!(
        read_ref(&repo, &RefKind::Head, "os/stable").unwrap(),
        Some(c1)
    );
}

/// A repository built by `ostree`, with a collection id, two refs of its own, a
/// mirrored ref of another collection and a remote ref with a collection id.
fn ostree_repo_with_summary(dir: &Path) -> (PathBuf, Checksum, Checksum) {
    let repo = dir.join("repo");
    ostree_init(&repo, Some("org.example.Os"));
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/tool"), "one").unwrap();
    let stable = commit_tree(
        &repo,
        &tree,
        "os/stable",
        "2021-01-01T00:00:00Z",
        &["--add-metadata-string=version=1.0"],
    );
    fs::write(tree.join("usr/bin/tool"), "two").unwrap();
    let beta = commit_tree(&repo, &tree, "os/beta", "2021-02-01T00:00:00Z", &[]);
    ostree(
        &repo,
        &[
            "refs",
            "--collections",
            "--create=org.other.Apps:app/stable",
            &stable,
        ],
    );
    ostree(
        &repo,
        &[
            "remote",
            "add",
            "--no-gpg-verify",
            "upstream",
            "file:///nonexistent",
            "--collection-id=org.upstream.Os",
        ],
    );
    ostree(&repo, &["refs", "--create=upstream:os/next", &beta]);
    ostree(&repo, &["summary", "-u"]);
    (repo, stable.parse().unwrap(), beta.parse().unwrap())
}

fn commit_object_size(repo: &Path, checksum: &Checksum) -> u64 {
    let hex = checksum.to_hex();
    fs::metadata(repo.join(format!("objects/{}/{}.commit", &hex[..2], &hex[2..])))
        .unwrap()
        .len()
}

#[test]
fn summary_round_trip_with_ostree() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, stable, beta) = ostree_repo_with_summary(dir.path());
    let bytes = fs::read(repo.join("summary")).unwrap();
    let summary = Summary::parse(&bytes).unwrap();

    // What ostree wrote, as Ferry reads it.
    let names: Vec<&str> = summary.refs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["os/beta", "os/stable", "ostree-metadata"]);
    assert_eq!(summary.collection_id.as_deref(), Some("org.example.Os"));
    assert_eq!(summary.mode.as_deref(), Some("archive-z2"));
    assert_eq!(summary.tombstone_commits, Some(false));
    assert_eq!(summary.indexed_deltas, Some(true));
    assert_eq!(summary.expires, None);
    assert!(
        summary.other_metadata.is_empty(),
        "{:?}",
        summary.other_metadata
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last_modified = summary.last_modified.unwrap();
    assert!(
        now.abs_diff(last_modified) < 600,
        "{last_modified} vs {now}"
    );

    let s = summary.find_ref(None, "os/stable").unwrap();
    assert_eq!(s.checksum, stable);
    assert_eq!(s.timestamp, Some(1_609_459_200));
    assert_eq!(s.version.as_deref(), Some("1.0"));
    // The commit size is native-endian: it must equal the object's size on disk.
    assert_eq!(s.commit_size, commit_object_size(&repo, &stable));
    let b = summary.find_ref(Some("org.example.Os"), "os/beta").unwrap();
    assert_eq!(b.checksum, beta);
    assert_eq!(b.timestamp, Some(1_612_137_600));
    assert_eq!(b.version, None);
    assert_eq!(b.commit_size, commit_object_size(&repo, &beta));

    // refs/mirrors and collection-bound remote refs land in the collection map.
    let map: BTreeMap<&str, Vec<(&str, Checksum)>> = summary
        .collection_map
        .iter()
        .map(|(id, refs)| {
            (
                id.as_str(),
                refs.iter().map(|r| (r.name.as_str(), r.checksum)).collect(),
            )
        })
        .collect();
    assert_eq!(
        map,
        BTreeMap::from([
            ("org.other.Apps", vec![("app/stable", stable)]),
            ("org.upstream.Os", vec![("os/next", beta)]),
        ])
    );
    let app = summary
        .find_ref(Some("org.other.Apps"), "app/stable")
        .unwrap();
    assert_eq!(app.timestamp, Some(1_609_459_200));
    assert_eq!(app.version.as_deref(), Some("1.0"));
    assert_eq!(summary.all_refs().count(), 5);

    // Ferry writes the very same bytes back.
    assert_eq!(summary.to_bytes().unwrap(), bytes);

    // And builds them from scratch, from plain values.
    let entry = |r: &SummaryRef| {
        let mut e = SummaryRef::new(r.name.clone(), r.checksum, r.commit_size);
        e.timestamp = r.timestamp;
        e.version = r.version.clone();
        e
    };
    let mut built = Summary::for_archive_repo(Some("org.example.Os"), last_modified);
    built.refs = summary.refs.iter().rev().map(entry).collect();
    for (id, refs) in &summary.collection_map {
        built
            .collection_map
            .insert(id.clone(), refs.iter().map(entry).collect());
    }
    assert_eq!(built.to_bytes().unwrap(), bytes);

    // Without a collection id (and so no collection map entries of its own), too.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = plain_dir.path().join("repo");
    ostree_init(&plain, None);
    let tree = plain_dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), "f").unwrap();
    commit_tree(
        &plain,
        &tree,
        "main",
        "2020-05-05T05:05:05Z",
        &["--add-metadata-string=version=7"],
    );
    ostree(&plain, &["summary", "-u"]);
    let plain_bytes = fs::read(plain.join("summary")).unwrap();
    let parsed = Summary::parse(&plain_bytes).unwrap();
    assert_eq!(parsed.collection_id, None);
    assert!(parsed.collection_map.is_empty());
    assert_eq!(parsed.refs.len(), 1);
    assert_eq!(parsed.refs[0].version.as_deref(), Some("7"));
    assert_eq!(parsed.to_bytes().unwrap(), plain_bytes);

    // Extra metadata (`ostree summary -m`), kept as it is and written back the same.
    ostree(
        &plain,
        &[
            "summary",
            "-u",
            "-m",
            "xa.title='Example'",
            "-m",
            "org.example.num=uint64 5",
            "-m",
            "ostree.summary.expires=uint64 1234",
        ],
    );
    let extra_bytes = fs::read(plain.join("summary")).unwrap();
    let extra = Summary::parse(&extra_bytes).unwrap();
    assert_eq!(extra.expires, Some(u64::from_be(1234)));
    let mut keys: Vec<&str> = extra
        .other_metadata
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["org.example.num", "xa.title"]);
    assert_eq!(extra.to_bytes().unwrap(), extra_bytes);
}

#[test]
fn ferry_summary_is_accepted_by_ostree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, None);
    fs::write(repo.join("summary.sig"), "stale").unwrap();

    let c = |b: u8| Checksum([b; 32]);
    let mut summary = Summary::for_archive_repo(None, 1_700_000_000);
    summary.refs = vec![
        SummaryRef::new("os/stable", c(0x11), 812)
            .with_timestamp(1_483_228_800)
            .with_version("2.0"),
        SummaryRef::new("os/beta", c(0x22), 999).with_timestamp(1_500_000_000),
    ];
    summary.write_to_repo(&repo).unwrap();
    assert!(!repo.join("summary.sig").exists());
    assert_eq!(Summary::load(&repo).unwrap().unwrap().refs.len(), 2);

    let view = ostree(&repo, &["summary", "--view"]);
    let expected = [
        "* os/beta\n",
        "Latest Commit (999 bytes):\n",
        &format!("{}\n", c(0x22)),
        "Timestamp (ostree.commit.timestamp): 2017-07-14T02:40:00+00\n",
        "* os/stable\n",
        "Latest Commit (812 bytes):\n",
        &format!("{}\n", c(0x11)),
        "Version (ostree.commit.version): 2.0\n",
        "Timestamp (ostree.commit.timestamp): 2017-01-01T00:00:00+00\n",
        "Repository Mode (ostree.summary.mode): archive-z2\n",
        "Last-Modified (ostree.summary.last-modified): 2023-11-14T22:13:20+00\n",
    ];
    let mut rest = view.as_str();
    for line in expected {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing (in order) from:\n{view}"));
        rest = &rest[at + line.len()..];
    }

    // A client reading it over file:// lists the same refs.
    let client = dir.path().join("client");
    ostree_init(&client, None);
    ostree(
        &client,
        &[
            "remote",
            "add",
            "--no-gpg-verify",
            "near",
            &format!("file://{}", repo.display()),
        ],
    );
    let refs = ostree(&client, &["remote", "refs", "near"]);
    let mut lines: Vec<&str> = refs.lines().collect();
    lines.sort();
    assert_eq!(lines, ["near:os/beta", "near:os/stable"]);

    // With a collection id and a collection map.
    let mut summary = Summary::for_archive_repo(Some("org.example.Os"), 1_700_000_000);
    summary.refs = vec![SummaryRef::new("os/stable", c(0x33), 99).with_timestamp(1_483_228_800)];
    summary.collection_map.insert(
        "org.other.Apps".into(),
        vec![SummaryRef::new("app/x", c(0x44), 77).with_timestamp(1_500_000_000)],
    );
    summary.write_to_repo(&repo).unwrap();
    let view = ostree(&repo, &["summary", "--view"]);
    for line in [
        "* (org.example.Os, os/stable)\n",
        "* (org.other.Apps, app/x)\n",
        "Latest Commit (77 bytes):\n",
        "Collection ID (ostree.summary.collection-id): org.example.Os\n",
    ] {
        assert!(view.contains(line), "{line:?} missing from:\n{view}");
    }
}

/// xorshift64*: deterministic garbage.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn assert_summary_error(bytes: &[u8], what: &str) {
    match Summary::parse(bytes) {
        Err(RepoError::InvalidFormat {
            what: "summary",
            reason,
        }) => {
            assert!(!reason.is_empty(), "{what}")
        }
        Err(other) => panic!("{what}: unexpected error {other:?}"),
        Ok(s) => panic!("{what}: parsed as {s:?}"),
    }
}

#[test]
fn garbage_summaries_are_errors() {
    let mut good = Summary::for_archive_repo(Some("org.example.Os"), 1_700_000_000);
    good.refs = vec![
        SummaryRef::new("os/stable", Checksum([7; 32]), 300)
            .with_timestamp(1_600_000_000)
            .with_version("1"),
        SummaryRef::new("os/beta", Checksum([8; 32]), 301),
    ];
    good.collection_map.insert(
        "org.other.Apps".into(),
        vec![SummaryRef::new("app", Checksum([9; 32]), 5)],
    );
    let bytes = good.to_bytes().unwrap();
    // Parsing sorts the refs by name, as they are stored.
    good.refs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(Summary::parse(&bytes).unwrap(), good);

    assert_summary_error(b"", "empty");
    for seed in 1..200u64 {
        let len = 8 + (seed as usize * 37) % 2000;
        assert_summary_error(&garbage(seed, len), &format!("random seed {seed}"));
    }
    for len in 1..bytes.len() {
        assert_summary_error(&bytes[..len], &format!("truncated to {len}"));
    }
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert_summary_error(&flipped, "framing offset flipped");

    // Other GVariants: wrong type for a summary.
    use glib::prelude::*;
    let dict = glib::VariantDict::new(None);
    dict.insert("ostree.summary.mode", "archive-z2");
    assert_summary_error(dict.end().data(), "an a{sv}");
    assert_summary_error(("a", 1u64, "b").to_variant().data(), "a (sts)");
    assert!(matches!(
        Summary::from_variant(&dict.end()),
        Err(RepoError::InvalidFormat { .. })
    ));

    // Well-formed GVariants that are not acceptable summaries.
    let entry = |name: &str, csum: &[u8], meta: glib::Variant| {
        glib::Variant::tuple_from_iter([
            name.to_variant(),
            glib::Variant::tuple_from_iter([
                1u64.to_variant(),
                glib::Variant::array_from_fixed_array(csum),
                meta,
            ]),
        ])
    };
    let empty_meta = || glib::VariantDict::new(None).end();
    let summary_of = |refs: Vec<glib::Variant>, meta: glib::Variant| {
        glib::Variant::tuple_from_iter([
            glib::Variant::array_from_iter_with_type(
                glib::VariantTy::new("(s(taya{sv}))").unwrap(),
                refs,
            ),
            meta,
        ])
        .data()
        .to_vec()
    };
    assert_eq!(
        Summary::parse(&summary_of(vec![], empty_meta())).unwrap(),
        Summary::default()
    );
    assert_summary_error(
        &summary_of(vec![entry("os", &[1; 31], empty_meta())], empty_meta()),
        "31-byte checksum",
    );
    assert_summary_error(
        &summary_of(vec![entry("../../x", &[1; 32], empty_meta())], empty_meta()),
        "ref name escaping refs/",
    );
    assert_summary_error(
        &summary_of(
            vec![
                entry("os", &[1; 32], empty_meta()),
                entry("os", &[2; 32], empty_meta()),
            ],
            empty_meta(),
        ),
        "ref listed twice",
    );
    let bad_ts = glib::VariantDict::new(None);
    bad_ts.insert("ostree.commit.timestamp", "yesterday");
    assert_summary_error(
        &summary_of(vec![entry("os", &[1; 32], bad_ts.end())], empty_meta()),
        "string timestamp",
    );
    for (key, value) in [
        ("ostree.summary.last-modified", "now".to_variant()),
        ("ostree.summary.expires", 5u32.to_variant()),
        ("ostree.summary.collection-id", "nodots".to_variant()),
        ("ostree.summary.collection-id", 1u64.to_variant()),
        ("ostree.summary.tombstone-commits", "no".to_variant()),
        ("ostree.summary.collection-map", "x".to_variant()),
    ] {
        let meta = glib::VariantDict::new(None);
        meta.insert_value(key, &value);
        assert_summary_error(&summary_of(vec![], meta.end()), &format!("{key} = {value}"));
    }
}

#[test]
fn ferry_config_survives_ostree_rewrites() {
    // ostree rewrites the whole file when it changes a remote; Ferry's group must
    // survive that (libostree keeps unknown groups).
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ostree_init(&repo, None);
    let mut config = RepoConfig::load(&repo).unwrap();
    config
        .add_remote(&RemoteConfig::new("os", "http://example.invalid/repo"))
        .unwrap();
    config.track("os", "os/stable").unwrap();
    config.save().unwrap();
    ostree(
        &repo,
        &["remote", "add", "other", "http://example.invalid/other"],
    );
    ostree(&repo, &["remote", "delete", "other"]);
    let config = RepoConfig::load(&repo).unwrap();
    assert_eq!(config.tracked().unwrap().len(), 1);
    assert_eq!(config.remote_names(), ["os"]);
}
