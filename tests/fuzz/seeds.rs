//! Valid inputs to mutate, made once per run: a real archive repository built with
//! the `ostree` tool (commits, trees, file objects, refs, config, a signed summary
//! and signed commits), plus what Ferry's own writers produce.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

use ferry::repo::config::{RemoteConfig, RepoConfig};
use ferry::repo::summary::{Summary, SummaryRef};
use ferry::repo::Checksum;
use ferry::sources::lan::bloom::{Bloom, EOS_UPDATER_BYTES, EOS_UPDATER_K};
use ferry::sources::lan::txt::RepoAdvert;
use glib::prelude::*;

use crate::common::cmd::run;
use crate::common::ed25519::python_keypair;
use crate::common::gpg::Gpg;
use crate::common::repo::OstreeRepo;

pub const COLLECTION: &str = "org.example.Fuzz";
pub const BRANCH: &str = "os/stable";

/// What the seed repository holds, by kind, plus the keys that signed it.
pub struct Seeds {
    /// `.commit`, `.dirtree` and `.dirmeta` objects.
    pub commits: Vec<Vec<u8>>,
    pub dirtrees: Vec<Vec<u8>>,
    pub dirmetas: Vec<Vec<u8>>,
    /// Every metadata object, of all three kinds.
    pub metadata_objects: Vec<Vec<u8>>,
    /// `.filez` objects, each with its checksum.
    pub filez: Vec<(Vec<u8>, Checksum)>,
    /// `.commitmeta` (ostree.gpgsigs and ostree.sign.ed25519).
    pub commitmetas: Vec<Vec<u8>>,
    /// `summary` files.
    pub summaries: Vec<Vec<u8>>,
    /// The summary `summary_sig` signs, and `summary.sig` files over it.
    pub signed_summary: Vec<u8>,
    pub summary_sigs: Vec<Vec<u8>>,
    /// The signed commit and its `.commitmeta`.
    pub signed_commit: Vec<u8>,
    /// `REPO/config` files.
    pub configs: Vec<Vec<u8>>,
    /// Ref files (`refs/heads/…`).
    pub ref_files: Vec<Vec<u8>>,
    /// TXT strings of `_ostree_repo._tcp` adverts (`key=value`).
    pub txt_strings: Vec<Vec<u8>>,
    /// The public GPG key (binary) and ed25519 key that made the signatures.
    pub gpg_public_key: Vec<u8>,
    pub ed25519_public_key: [u8; 32],
}

static SEEDS: OnceLock<Seeds> = OnceLock::new();

/// The seeds, made on first use (each property thread waits for the first).
pub fn seeds() -> &'static Seeds {
    SEEDS.get_or_init(make)
}

/// A tree with what file objects can be: empty, small, compressible, random,
/// executable, symlinks, nested directories.
fn write_tree(root: &Path, n: u32) {
    fs::create_dir_all(root.join("usr/share/doc")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("usr/share/empty"), b"").unwrap();
    fs::write(root.join("usr/share/one"), [n as u8]).unwrap();
    fs::write(
        root.join("usr/share/doc/text"),
        format!("tree {n}\n").repeat(9000),
    )
    .unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n) >> 13) as u8)
        .collect();
    fs::write(root.join("usr/share/noise"), noise).unwrap();
    fs::write(root.join("usr/share/run"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        root.join("usr/share/run"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("../usr/share/doc/text", root.join("etc/link")).unwrap();
    symlink("x".repeat(200 + n as usize), root.join("etc/long-link")).unwrap();
    fs::create_dir_all(root.join("var/empty-dir")).unwrap();
    fs::set_permissions(
        root.join("var/empty-dir"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

fn objects_by_extension(repo: &Path) -> BTreeMap<String, Vec<(Vec<u8>, Checksum)>> {
    let mut out: BTreeMap<String, Vec<(Vec<u8>, Checksum)>> = BTreeMap::new();
    for prefix in fs::read_dir(repo.join("objects")).unwrap() {
        let prefix = prefix.unwrap().path();
        for object in fs::read_dir(&prefix).unwrap() {
            let path = object.unwrap().path();
            let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
                continue;
            };
            let hex = format!(
                "{}{}",
                prefix.file_name().unwrap().to_string_lossy(),
                stem.to_string_lossy()
            );
            let checksum: Checksum = hex.parse().expect("object name is a checksum");
            out.entry(ext.to_string_lossy().into_owned())
                .or_default()
                .push((fs::read(&path).unwrap(), checksum));
        }
    }
    out
}

fn make() -> Seeds {
    let gpg = Gpg::new();
    let fingerprint = gpg.gen_key("Fuzz <fuzz@example.com>", "ed25519", "sign", "never");
    let (ed_secret, ed_public) = python_keypair();
    let ed25519_public_key = ferry::trust::ed25519::parse_public_key(&ed_public, "seed").unwrap();

    let repo = OstreeRepo::init(Some(COLLECTION));
    let work = tempfile::tempdir().unwrap();
    let mut commits = Vec::new();
    for n in 0..2 {
        let tree = work.path().join(format!("tree{n}"));
        write_tree(&tree, n);
        let out = run(repo
            .ostree()
            .args(["commit", "-b", BRANCH, "-s", &format!("commit {n}")])
            .args(["--body", "a body\nof two lines"])
            .arg(format!("--tree=dir={}", tree.display()))
            .args([
                &format!("--add-metadata-string=version=1.{n}"),
                "--generate-sizes",
                "--owner-uid=0",
                "--owner-gid=0",
            ]));
        commits.push(out.trim().parse::<Checksum>().unwrap());
    }
    repo.commit("os/other", &["--add-metadata-string=version=2.0"]);
    let signed = *commits.last().unwrap();
    repo.gpg_sign(&signed.to_hex(), &gpg, &fingerprint);
    // This ostree is built without ed25519: Ferry adds that signature, as
    // `ferryctl sign` does.
    let signature = ferry::trust::sign_ed25519(&ed_secret, &repo.commit_bytes(&signed)).unwrap();
    let gpg_only = repo
        .commitmeta(&signed)
        .expect("gpg-sign wrote .commitmeta");
    repo.write_commitmeta(
        &signed,
        &ferry::trust::append_ed25519_signature(Some(&gpg_only), &signature).unwrap(),
    );
    run(repo.ostree().args([
        "summary",
        "-u",
        "-m",
        "org.example.note='fuzz'",
        &format!("--gpg-sign={fingerprint}"),
        &format!("--gpg-homedir={}", gpg.home().display()),
    ]));
    let gpg_summary_sig = fs::read(repo.path().join("summary.sig")).unwrap();
    let signed_summary = fs::read(repo.path().join("summary")).unwrap();
    // ostree signs a summary with one system per run: the ed25519 signature over
    // the same bytes is added to a copy of the GPG one.
    let gpg_dict = ferry::trust::parse_detached_metadata(&gpg_summary_sig).unwrap();
    let signature = ferry::trust::sign_ed25519(&ed_secret, &signed_summary).unwrap();
    let both = ferry::trust::append_ed25519_signature(Some(&gpg_dict), &signature).unwrap();
    let summary_sigs = vec![gpg_summary_sig, both.data().to_vec()];
    let ed_only = ferry::trust::append_ed25519_signature(None, &signature)
        .unwrap()
        .data()
        .to_vec();

    let objects = objects_by_extension(&repo.path());
    let take =
        |ext: &str| -> Vec<(Vec<u8>, Checksum)> { objects.get(ext).cloned().unwrap_or_default() };
    let bytes_of = |v: &[(Vec<u8>, Checksum)]| v.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>();
    let commit_objects = take("commit");
    let signed_commit = commit_objects
        .iter()
        .find(|(_, c)| *c == signed)
        .unwrap()
        .0
        .clone();
    let commits = bytes_of(&commit_objects);
    let dirtrees = bytes_of(&take("dirtree"));
    let dirmetas = bytes_of(&take("dirmeta"));
    let commitmetas = bytes_of(&take("commitmeta"));
    let filez = take("filez");
    assert!(commits.len() >= 3 && dirtrees.len() >= 4 && !dirmetas.is_empty());
    assert!(filez.len() >= 8 && !commitmetas.is_empty());
    let metadata_objects = [commits.clone(), dirtrees.clone(), dirmetas.clone()].concat();

    // Summaries: ostree's, and Ferry's with a collection map and an expiry.
    let mut ferry_summary = Summary::for_archive_repo(Some(COLLECTION), 1_700_000_000);
    ferry_summary.expires = Some(1_800_000_000);
    ferry_summary.refs.push(
        SummaryRef::new(BRANCH, Checksum::digest(b"a"), 400)
            .with_timestamp(1_600_000_000)
            .with_version("1.0"),
    );
    ferry_summary.collection_map.insert(
        "org.example.Other".into(),
        vec![
            SummaryRef::new("app/x", Checksum::digest(b"b"), 200),
            SummaryRef::new("app/y", Checksum::digest(b"c"), 201).with_timestamp(1),
        ],
    );
    ferry_summary
        .other_metadata
        .push(("org.example.n".into(), 7u32.to_variant()));
    let summaries = vec![signed_summary.clone(), ferry_summary.to_bytes().unwrap()];

    // Configs: ostree's after `remote add`, and Ferry's with tracked refs.
    run(repo.ostree().args([
        "remote",
        "add",
        "--set=gpg-verify-summary=true",
        "--set=sign-verify=true",
        &format!("--set=verification-ed25519-key={ed_public}"),
        &format!("--collection-id={COLLECTION}"),
        "origin",
        "http://127.0.0.1:1/repo",
    ]));
    let ostree_config = fs::read(repo.path().join("config")).unwrap();
    let mut config = RepoConfig::new(work.path(), Some(COLLECTION)).unwrap();
    let mut remote = RemoteConfig::new("lan", "http://10.0.0.1:8000/0");
    remote.collection_id = Some(COLLECTION.into());
    config.add_remote(&remote).unwrap();
    config.track("lan", BRANCH).unwrap();
    config.track("lan", "os/other").unwrap();
    let configs = vec![ostree_config, config.to_data().into_bytes()];

    let mut ref_files = Vec::new();
    for entry in fs::read_dir(repo.path().join("refs/heads/os")).unwrap() {
        ref_files.push(fs::read(entry.unwrap().path()).unwrap());
    }

    let mut bloom = Bloom::new(EOS_UPDATER_BYTES, EOS_UPDATER_K).unwrap();
    bloom.add(COLLECTION, BRANCH);
    let mut small = Bloom::new(12, 3).unwrap();
    small.add(COLLECTION, "os/other");
    let mut txt_strings = Vec::new();
    for (bloom, st, ri) in [(bloom, 1_483_228_800u64, 0u16), (small, 1, 513)] {
        for (key, value) in (RepoAdvert {
            bloom,
            summary_timestamp: st,
            repo_index: ri,
        })
        .encode()
        {
            txt_strings.push([key.as_bytes(), b"=", &value].concat());
        }
    }

    Seeds {
        commits,
        dirtrees,
        dirmetas,
        metadata_objects,
        filez,
        commitmetas: [commitmetas, vec![ed_only.clone()]].concat(),
        summaries,
        signed_summary,
        summary_sigs: [summary_sigs, vec![ed_only]].concat(),
        signed_commit,
        configs,
        ref_files,
        txt_strings,
        gpg_public_key: gpg.export(&fingerprint, false),
        ed25519_public_key,
    }
}
