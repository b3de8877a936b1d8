//! The engine rules of DESIGN.md, each tested end to end: repositories made by the
//! real `ostree`, served by `tests/common/serve.py` (which can refuse,
//! 404, corrupt, throttle and die on demand) or read from disk, pulled with
//! `ferryctl update --json --object-events`, whose events say which source served
//! which object. Server logs say what was asked of whom.
//!
//! Network safety: every `ferryctl` runs with `FERRY_LAN_INTERFACES=none`,
//! `--no-lan --no-mounts`; every server binds 127.0.0.1 only.

#[path = "../common/mod.rs"]
mod common;

mod bare_destinations;
mod drive_transport;
mod hostile_drives;
mod hostile_peers;
mod interop;
mod interrupted;
mod metered;
mod provenance;
mod pull_uri;
mod rate_limit;
mod real_trees;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engine::*;
use serde_json::Value;

/// Both the ostree and the Ferry view of a finished pull.
fn assert_installed(client: &Client, commit: &str) {
    client.assert_at(commit);
}

/// Asserts that no server was asked for any object of `forbidden`.
fn assert_not_requested(servers: &[&Server], forbidden: &BTreeSet<String>, what: &str) {
    for server in servers {
        let asked: Vec<String> = server
            .object_requests()
            .into_iter()
            .filter(|o| forbidden.contains(o))
            .collect();
        assert!(
            asked.is_empty(),
            "{} was asked for {} of {what}: {:?}",
            server.url(),
            asked.len(),
            &asked[..asked.len().min(5)]
        );
    }
}

/// Objects a server was asked for, other than commits and their signatures.
fn tree_requests(server: &Server) -> Vec<String> {
    server
        .object_requests()
        .into_iter()
        .filter(|o| !o.ends_with(".commit") && !o.ends_with(".commitmeta"))
        .collect()
}

/// The update fetched `commit`'s whole closure from `source` alone, and none of
/// `servers` was asked for an object of its tree.
fn assert_served_only_by(
    run: &UpdateRun,
    up: &Upstream,
    commit: &str,
    source: &str,
    servers: &[&Server],
) {
    run.assert_fetched_exactly(&closure(&up.repo, commit));
    let counts = run.counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        vec![source],
        "not all from {source}: {counts:?}"
    );
    for server in servers {
        assert!(
            tree_requests(server).is_empty(),
            "{} was asked for {:?}",
            server.url(),
            tree_requests(server)
        );
    }
}

fn source_state<'a>(sources: &'a [Value], id: &str) -> &'a str {
    sources
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["state"].as_str())
        .unwrap_or_else(|| panic!("no source {id} in {sources:?}"))
}

/// Checks out `origin:os/stable` with ostree and compares it with `tree`.
fn assert_checkout_matches(client: &Client, tree: &Path) {
    let dest = tempdir();
    let out = dest.path().join("co");
    run_ok(
        ostree(&client.repo)
            .args(["checkout", "--user-mode"])
            .arg(format!("origin:{REF}"))
            .arg(&out),
    );
    let mut count = 0;
    for entry in walk(tree) {
        let rel = entry.strip_prefix(tree).unwrap();
        let theirs = out.join(rel);
        if entry.is_file() {
            count += 1;
            assert_eq!(
                fs::read(&entry).unwrap(),
                fs::read(&theirs).unwrap(),
                "{} differs",
                rel.display()
            );
        } else {
            assert!(theirs.is_dir(), "{} missing", rel.display());
        }
    }
    assert_eq!(count, walk(&out).iter().filter(|p| p.is_file()).count());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// A commit of 800 files both on a loop-mounted drive (named as a static source)
/// and on an upstream limited to 2 MB/s, and a client whose update is stopped once
/// the drive has served some objects, so the drive can be made to fail mid-pull.
// Fields drop in this order: the client and server before the drive is
// unmounted, the upstream's repository last.
struct DriveBesideUpstream {
    client: Client,
    _upstream: Server,
    /// The drive's source id in events.
    usb_id: String,
    on_drive: std::path::PathBuf,
    drive: LoopDrive,
    commit: String,
    up: Upstream,
}

impl DriveBesideUpstream {
    fn new(label: &str) -> Self {
        let up = Upstream::new(800, 400);
        let commit = up.latest().to_owned();
        let drive = LoopDrive::new(label);
        drive.mount();
        let on_drive = drive.mount_point.join("repo");
        copy_tree(&up.repo, &on_drive);
        drive.sync();
        let usb_id = format!("static:{}", file_uri(&on_drive));
        let upstream = Server::start(
            &up.repo,
            ServeOptions {
                rate: Some(2_000_000),
                ..Default::default()
            },
        );
        let client = Client::new(&upstream.url(), Trust::None);
        Self {
            up,
            commit,
            drive,
            on_drive,
            usb_id,
            _upstream: upstream,
            client,
        }
    }

    /// Starts the update and returns it stopped (SIGSTOP) once `objects` objects
    /// are stored, nearly all from the drive (it ranks first).
    fn update_stopped_after(&self, objects: u32) -> LiveUpdate {
        let static_source = file_uri(&self.on_drive);
        self.client
            .spawn_update_stopped_after(&["--static-source", &static_source], objects)
    }
}
