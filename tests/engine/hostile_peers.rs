//! Peers and HTTP sources that misbehave (issue 11, items 6–9): summaries and
//! objects sent a byte a second, bodies that never end, a disk that fills up.
//! Each case: the update completes from the honest source (or fails naming this
//! computer's disk), the misbehaving source is named, nothing half-written is
//! stored, and `ostree fsck` stays clean.
//!
//! Network safety: every `ferryctl` runs with `FERRY_LAN_INTERFACES=none`,
//! `--no-lan --no-mounts`; every server binds 127.0.0.1 only.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::engine::*;
use serde_json::Value;

/// Runs `cmd`, killing it (and failing) if it is not done in `bound`: the cases
/// here used to hang for ever.
fn output_within(mut cmd: Command, bound: Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: killing our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("still running after {bound:?}: a slow source stalled it");
        }
    }
}

/// An upstream and a copy of it served by a second server (a "peer").
fn upstream_and_peer(options: ServeOptions) -> (Upstream, Server, Server) {
    let up = Upstream::new(40, 3000);
    let peer_repo = up.snapshot("peer");
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let peer = Server::start(&peer_repo, options);
    (up, upstream, peer)
}

#[test]
fn trickling_summary_stalls_neither_sources_nor_check() {
    let (_up, upstream, peer) = upstream_and_peer(ServeOptions {
        trickle: vec!["summary".into()],
        ..Default::default()
    });
    let client = Client::new(&upstream.url(), Trust::None);
    let discovery = ["--static-source", &peer.url()];

    let mut cmd = client.ferryctl();
    cmd.args(discovery).args(["sources", "--json"]);
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sources: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let slow = sources
        .iter()
        .find(|s| s["id"] == peer.static_id().as_str())
        .unwrap_or_else(|| panic!("the peer is not listed: {sources:?}"));
    assert_eq!(slow["state"], "failed", "{slow}");
    assert!(
        slow["error"].as_str().unwrap_or("").contains("too slow"),
        "the reason must say the source was too slow: {slow}"
    );
    let honest = sources
        .iter()
        .find(|s| s["id"] == "upstream:origin")
        .expect("the upstream is listed");
    assert_eq!(honest["state"], "ready", "{honest}");

    let mut cmd = client.ferryctl();
    cmd.args(discovery).args(["check", "--json"]);
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn peer_sending_a_byte_a_second_does_not_hold_the_update_hostage() {
    let (up, upstream, peer) = upstream_and_peer(ServeOptions {
        trickle: vec!["objects/".into()],
        ..Default::default()
    });
    let commit = up.latest().to_owned();
    let client = Client::new(&upstream.url(), Trust::None);
    let discovery = ["--static-source", &peer.url()];

    let started = Instant::now();
    let mut cmd = client.ferryctl();
    cmd.args(discovery)
        .arg("update")
        .args(["--json", "--object-events"]);
    let out = output_within(cmd, Duration::from_secs(120));
    eprintln!("update took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every object came from somewhere, each is named with its source.
    let fetched: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "object-fetched")
        .map(|v| {
            (
                v["object"].as_str().unwrap().to_owned(),
                v["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let closure = closure(&up.repo, &commit);
    let names: std::collections::BTreeSet<String> =
        fetched.iter().map(|(o, _)| o.clone()).collect();
    assert_eq!(names, closure, "every object of the commit, once");
    // The peer ranks above the internet, so it was asked first; the internet
    // finished what it could not.
    assert!(
        !peer.object_requests().is_empty(),
        "the slow peer was never asked: the test proves nothing"
    );
    let from_upstream = fetched
        .iter()
        .filter(|(_, s)| s == "upstream:origin")
        .count();
    assert!(
        from_upstream * 10 >= fetched.len() * 9,
        "{from_upstream} of {} objects from the upstream",
        fetched.len()
    );
    // Some of those were taken over from the peer mid-request, and said so.
    let last_progress = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["event"] == "progress")
        .expect("progress events");
    let upstream_row = last_progress["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "upstream:origin")
        .expect("the upstream's progress");
    assert!(
        upstream_row["hedged"].as_u64().unwrap() > 0,
        "no request was hedged: {last_progress}"
    );
    client.assert_at(&commit);
}

/// A commit with `ostree.sizes`, served by an honest upstream and by a peer
/// that sends one file object followed by zeros without end.
#[test]
fn endless_object_is_cut_off_and_its_source_dropped() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    write_tree(&tree, 10, 50_000, 7);
    let repo = dir.path().join("repo");
    ostree_init(&repo);
    let commit = ostree_commit_with_sizes(&repo, &tree);
    ostree_summary(&repo);
    let peer_repo = dir.path().join("peer");
    copy_tree(&repo, &peer_repo);
    let victim = files_of(&closure(&repo, &commit))[0].clone();
    let victim_path = object_path(&victim);
    let upstream = Server::start(&repo, ServeOptions::default());
    let peer = Server::start(
        &peer_repo,
        ServeOptions {
            endless: vec![victim_path.clone()],
            ..Default::default()
        },
    );
    let client = Client::new(&upstream.url(), Trust::None);

    let run = client.update(&["--static-source", &peer.url()], &[]).ok();
    let dropped = run.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}\n{}", run.debug());
    assert_eq!(dropped[0].0, peer.static_id());
    assert!(
        dropped[0].1.contains("larger than"),
        "the reason must say the object was too large: {dropped:?}"
    );
    assert_eq!(run.served_by()[&victim], "upstream:origin");
    client.assert_at(&commit);
    // Cut off near its indexed size (50 kB + slack), not after gigabytes.
    std::thread::sleep(Duration::from_millis(500));
    let sent: u64 = peer
        .sent()
        .iter()
        .filter(|(p, _)| *p == victim_path)
        .map(|(_, n)| n)
        .sum();
    assert!(
        sent > 0,
        "the peer never finished sending: {:?}",
        peer.sent()
    );
    assert!(
        sent < 64 << 20,
        "{sent} bytes were read of an endless object"
    );
}

#[test]
fn full_disk_is_reported_as_this_computers_problem() {
    let up = Upstream::new(30, 1_000_000);
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let mut client = Client::new(&upstream.url(), Trust::None);
    let drive = LoopDrive::builder("SMALLDISK").size_mib(16).build();
    drive.mount();
    let on_drive = drive.mount_point.join("repo");
    copy_tree(&client.repo, &on_drive);
    client.repo = on_drive;

    let run = client.update(&[], &[]).failed();
    let message = run.error_message();
    assert!(
        message.contains("not enough space on"),
        "the error must name this computer's disk: {message}"
    );
    assert!(
        run.dropped().is_empty(),
        "no source is to blame for a full disk: {:?}",
        run.dropped()
    );
    assert_eq!(client.ref_commit(), None, "the ref moved");
    assert_ostree_fsck(&client.repo);
}
