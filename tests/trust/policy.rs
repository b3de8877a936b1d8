//! Trust policy (issue 11, items 11–13), end to end with `ferryctl`, repositories
//! made and signed by the real `ostree` and `gpg`, HTTP servers on loopback
//! (`tests/common/serve.py`) and loop-mounted drives:
//!
//! - drives and nearby computers are used for a remote only when it verifies
//!   commits; a `--no-verify` remote takes only its own URL and sources named by
//!   hand, and `check` / `update` say why a drive is not used;
//! - `gpg-verify-summary=true` makes the remote's URL count only with a valid
//!   `summary.sig`;
//! - one tracked ref that cannot be updated does not stop the others.
//!
//! Network safety: every `ferryctl` runs with `FERRY_LAN_INTERFACES=none`,
//! `--no-lan --no-mounts`; every server binds 127.0.0.1 only.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::engine::*;
use serde_json::Value;

/// A loop-mounted drive holding a copy of `repo`, reached through a sideload
/// directory (discovered, not named by the user). Returns the drive (unmounted on
/// drop) and the sideload directory's discovery arguments.
fn drive_with(repo: &Path, label: &str, work: &Path) -> (LoopDrive, Vec<String>) {
    let drive = LoopDrive::builder(label).size_mib(32).build();
    drive.mount();
    copy_tree(repo, &drive.mount_point.join("repo"));
    drive.sync();
    let sideload = work.join(format!("sideload-{label}"));
    fs::create_dir(&sideload).unwrap();
    symlink(&drive.mount_point.join("repo"), &sideload.join("stick"));
    let args = vec![
        "--sideload-dir".to_owned(),
        sideload.to_str().unwrap().to_owned(),
    ];
    (drive, args)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The id discovery gives the drive's repository.
fn usb_id(client: &Client, discovery: &[&str]) -> String {
    let sources = client.sources(discovery);
    let usb: Vec<&Value> = sources.iter().filter(|s| s["kind"] == "usb").collect();
    assert_eq!(usb.len(), 1, "expected one drive: {sources:?}");
    assert_eq!(usb[0]["state"], "ready", "{sources:?}");
    usb[0]["id"].as_str().unwrap().to_owned()
}

/// Runs a command that must fail; its stderr.
fn fails(command: &mut Command) -> String {
    let out = command.output().expect("run ferryctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a failure:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stderr
}

// ---------------------------------------------------------------------------
// 11: drives and nearby computers only for remotes that verify commits
// ---------------------------------------------------------------------------

#[test]
fn unverified_remote_does_not_use_a_discovered_drive_and_says_why() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let (_drive, discovery) = drive_with(&up.repo, "FERRYNOVFY", up.dir.path());
    let discovery = strs(&discovery);

    // The remote's URL refuses connections: the drive alone has the update.
    let client = Client::new(&format!("http://127.0.0.1:{}", refused_port()), Trust::None);
    let usb = usb_id(&client, &discovery);

    let stderr = fails(client.ferryctl().args(&discovery).arg("check"));
    for needle in ["verifies no commit signatures", &usb, "--source"] {
        assert!(stderr.contains(needle), "check: no {needle:?} in: {stderr}");
    }
    let run = client.update(&discovery, &[]).failed();
    let message = run.error_message();
    assert!(
        message.contains("verifies no commit signatures") && message.contains(&usb),
        "{message}"
    );
    assert!(run.fetched().is_empty(), "{}", run.debug());
    let results = run.of_kind("ref-result");
    assert_eq!(results.len(), 1, "{}", run.debug());
    assert_eq!(results[0]["status"], "failed");
    assert_eq!(client.ref_commit(), None, "the ref moved");

    // Named by hand, the drive is the user's choice and is used.
    let run = client.update(&discovery, &["--source", &usb]).ok();
    assert_eq!(run.plan_sources(), vec![usb.clone()]);
    assert!(run.plan()["unused_sources"]
        .as_array()
        .is_some_and(Vec::is_empty));
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    client.assert_at(&commit);
}

#[test]
fn unverified_remote_pulls_from_its_url_and_lists_the_drive_as_unused() {
    let mut up = Upstream::new(40, 700);
    up.commit_again(5);
    let commit = up.latest().to_owned();
    let (_drive, discovery) = drive_with(&up.repo, "FERRYUNUSED", up.dir.path());
    let discovery = strs(&discovery);
    let server = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&server.url(), Trust::None);
    let usb = usb_id(&client, &discovery);

    // `check` says, in words and in JSON, why the drive is not used.
    let text = stdout_of(client.ferryctl().args(&discovery).arg("check"));
    assert!(
        text.contains(&format!("not using {usb}"))
            && text.contains("verifies no commit signatures"),
        "{text}"
    );
    let plans = client.check(&discovery);
    let unused = &plans[0]["unused_sources"];
    assert_eq!(unused[0]["source"], usb.as_str(), "{plans}");
    assert_eq!(unused[0]["reason"], "remote-not-verified", "{plans}");

    let run = client.update(&discovery, &[]).ok();
    assert_eq!(run.plan_sources(), vec!["upstream:origin".to_owned()]);
    assert_eq!(run.plan()["unused_sources"][0]["source"], usb.as_str());
    // Not even for objects: every object came from the remote's own URL.
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    let counts = run.counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        vec!["upstream:origin"],
        "{counts:?}"
    );
    client.assert_at(&commit);
}

#[test]
fn verified_remote_uses_the_discovered_drive() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let signer = Signer::new("policy@example.org");
    signer.sign(&up.repo, &commit);
    let (_drive, discovery) = drive_with(&up.repo, "FERRYVFY", up.dir.path());
    let discovery = strs(&discovery);
    let server = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&server.url(), Trust::Gpg(&signer.public));
    let usb = usb_id(&client, &discovery);

    let run = client.update(&discovery, &[]).ok();
    assert!(run.plan_sources().contains(&usb), "{}", run.debug());
    assert!(run.plan()["unused_sources"]
        .as_array()
        .is_some_and(Vec::is_empty));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec![&usb],
        "the drive comes first"
    );
    client.assert_at(&commit);
}

// ---------------------------------------------------------------------------
// 12: gpg-verify-summary on the remote's URL
// ---------------------------------------------------------------------------

/// A GPG-signed upstream served over HTTP and a client whose remote has
/// `gpg-verify-summary=true`.
struct SignedSummaryWorld {
    up: Upstream,
    signer: Signer,
    server: Server,
    client: Client,
}

impl SignedSummaryWorld {
    fn new() -> Self {
        let up = Upstream::new(20, 600);
        let signer = Signer::new("summary@example.org");
        signer.sign(&up.repo, up.latest());
        signer.sign_summary(&up.repo);
        let server = Server::start(&up.repo, ServeOptions::default());
        let client = Client::new(&server.url(), Trust::Gpg(&signer.public));
        run_ok(ostree(&client.repo).args([
            "config",
            "set",
            "remote \"origin\".gpg-verify-summary",
            "true",
        ]));
        SignedSummaryWorld {
            up,
            signer,
            server,
            client,
        }
    }

    fn upstream_source(&self) -> Value {
        self.client
            .sources(&[])
            .into_iter()
            .find(|s| s["id"] == "upstream:origin")
            .expect("the upstream source")
    }
}

#[test]
fn gpg_verify_summary_accepts_a_summary_signed_by_the_remote_key() {
    let world = SignedSummaryWorld::new();
    assert_eq!(world.upstream_source()["state"], "ready");
    let run = world.client.update(&[], &[]).ok();
    assert!(
        world.server.requests().iter().any(|r| r == "summary.sig"),
        "summary.sig was not fetched: {:?}",
        world.server.requests()
    );
    assert_eq!(run.plan()["commit"], world.up.latest());
    world.client.assert_at(world.up.latest());
}

#[test]
fn gpg_verify_summary_refuses_a_missing_summary_sig() {
    let world = SignedSummaryWorld::new();
    fs::remove_file(world.up.repo.join("summary.sig")).unwrap();
    let source = world.upstream_source();
    assert_eq!(source["state"], "failed", "{source}");
    let error = source["error"].as_str().unwrap_or_default();
    for needle in [
        "summary not trusted",
        "no GPG signature",
        "gpg-verify-summary",
    ] {
        assert!(error.contains(needle), "no {needle:?} in {error:?}");
    }
    let run = world.client.update(&[], &[]).failed();
    assert!(
        run.error_message().contains("summary not trusted"),
        "{}",
        run.error_message()
    );
    assert!(run.fetched().is_empty(), "{}", run.debug());
    assert_eq!(world.client.ref_commit(), None);
}

#[test]
fn gpg_verify_summary_refuses_a_summary_signed_by_another_key() {
    let world = SignedSummaryWorld::new();
    let stranger = Signer::new("stranger@example.org");
    stranger.sign_summary(&world.up.repo);
    let source = world.upstream_source();
    assert_eq!(source["state"], "failed", "{source}");
    let error = source["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("summary not trusted") && error.contains("not trusted"),
        "{error}"
    );
    let run = world.client.update(&[], &[]).failed();
    assert!(run.error_message().contains("summary not trusted"));
    assert_eq!(world.client.ref_commit(), None);
    // A summary changed after signing does not match its signature either.
    world.signer.sign_summary(&world.up.repo);
    let signature = fs::read(world.up.repo.join("summary.sig")).unwrap();
    let mut up = world.up;
    up.commit_again(2);
    fs::write(up.repo.join("summary.sig"), signature).unwrap();
    let source = world
        .client
        .sources(&[])
        .into_iter()
        .find(|s| s["id"] == "upstream:origin")
        .unwrap();
    assert_eq!(source["state"], "failed", "{source}");
    assert!(
        source["error"]
            .as_str()
            .is_some_and(|e| e.contains("summary not trusted")),
        "{source}"
    );
}

// ---------------------------------------------------------------------------
// 13: one failed ref does not stop the others
// ---------------------------------------------------------------------------

#[test]
fn a_failing_ref_does_not_stop_the_next_one() {
    let up = Upstream::new(20, 600);
    let good = up.latest().to_owned();
    // A second ref with one file of its own, which the server will not serve.
    let other_tree = up.dir.path().join("other-tree");
    fs::create_dir(&other_tree).unwrap();
    fs::write(other_tree.join("only-here"), pseudo_random(99, 4000)).unwrap();
    let broken = ostree_commit(&up.repo, "os/broken", &other_tree, "broken", T0 + 50);
    ostree_summary(&up.repo);
    let unique: Vec<String> = files_of(&closure(&up.repo, &broken))
        .into_iter()
        .filter(|f| !closure(&up.repo, &good).contains(f))
        .collect();
    assert_eq!(unique.len(), 1, "{unique:?}");
    let server = Server::start(
        &up.repo,
        ServeOptions {
            missing: vec![object_path(&unique[0])],
            ..Default::default()
        },
    );
    let client = Client::new(&server.url(), Trust::None);
    // The broken ref first, so that stopping at it would leave os/stable behind.
    run_ok(ostree(&client.repo).args([
        "config",
        "set",
        "ferry.tracked-refs",
        &format!("origin:os/broken;origin:{REF};"),
    ]));

    let run = client.update(&[], &[]).failed();
    let results = run.of_kind("ref-result");
    let statuses: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            (
                r["ref"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("os/broken".to_owned(), "failed".to_owned()),
            (REF.to_owned(), "updated".to_owned()),
        ],
        "{}",
        run.debug()
    );
    assert!(results[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains(&unique[0][..12])));
    assert_eq!(results[1]["commit"], good.as_str());
    let message = run.error_message();
    assert!(
        message.contains("1 of 2 refs") && message.contains("origin:os/broken"),
        "{message}"
    );
    // The last line still carries the plan of the ref that succeeded.
    let last = run.events.last().unwrap();
    assert_eq!(last["plans"][0]["ref"], REF, "{last}");
    client.assert_at(&good);
    assert!(!client.repo.join("refs/remotes/origin/os/broken").exists());

    // Without --json: each ref's outcome, and a failing exit status.
    let out = client.ferryctl().arg("update").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Could not update origin:os/broken")
            && stdout.contains(&format!("origin:{REF} is up to date")),
        "{stdout}\n{stderr}"
    );
}
