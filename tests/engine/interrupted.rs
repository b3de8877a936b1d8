//! Failures in the middle of a pull: a source dies, `ferryctl` is killed or
//! interrupted, a drive is pulled out.

use super::*;

#[test]
fn peer_killed_mid_pull_another_source_completes() {
    let up = Upstream::new(200, 700);
    let commit = up.latest().to_owned();
    let mut peer = Server::start(
        &up.repo,
        ServeOptions {
            die_after: Some(25),
            ..Default::default()
        },
    );
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&upstream.url(), Trust::None);

    let run = client.update(&["--static-source", &peer.url()], &[]).ok();
    assert!(peer.exited(), "the peer should have died");
    let dropped = run.dropped();
    assert!(
        dropped.iter().any(|(id, _)| *id == peer.static_id()),
        "no source-dropped event names the lost peer: {dropped:?}"
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    let counts = run.counts();
    assert!(
        counts
            .get(&peer.static_id())
            .is_some_and(|n| *n > 0 && *n <= 25),
        "{counts:?}"
    );
    assert!(
        counts.get("upstream:origin").is_some_and(|n| *n > 100),
        "{counts:?}"
    );
    assert_installed(&client, &commit);
}

#[test]
fn sigkill_of_ferryctl_mid_pull_then_rerun_completes() {
    let mut up = Upstream::new(20, 500);
    let first = up.latest().to_owned();
    let fast = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&fast.url(), Trust::None);
    client.update(&[], &[]).ok();
    fs::create_dir_all(up.tree.join("more")).unwrap();
    for i in 0..250 {
        fs::write(
            up.tree.join("more").join(format!("m{i:03}")),
            pseudo_random(70_000 + i, 2000),
        )
        .unwrap();
    }
    let second = up.commit_again(20);
    let slow = Server::start(
        &up.repo,
        ServeOptions {
            rate: Some(100_000),
            ..Default::default()
        },
    );
    let discovery = ["--static-source", &slow.url()];

    let mut live = client.spawn_update(&discovery, &["--source", &slow.static_id()]);
    let mut fetched = 0;
    live.wait_for(Duration::from_secs(30), |e| {
        if e["event"] == "object-fetched" {
            fetched += 1;
        }
        fetched >= 40
    });
    live.kill();
    assert_eq!(
        client.ref_commit().as_deref(),
        Some(first.as_str()),
        "the ref moved mid-pull"
    );
    assert_ostree_fsck(&client.repo);

    // The rerun goes to the (fast) upstream.
    let run = client.update(&[], &[]).ok();
    assert_eq!(run.plan()["commit"], second.as_str());
    assert_installed(&client, &second);
}

#[test]
fn sigint_cancels_mid_pull_cleanly_then_rerun_completes() {
    let up = Upstream::new(200, 2000);
    let commit = up.latest().to_owned();
    let slow = Server::start(
        &up.repo,
        ServeOptions {
            rate: Some(150_000),
            ..Default::default()
        },
    );
    let client = Client::new(&slow.url(), Trust::None);

    let mut live = client.spawn_update(&[], &[]);
    let mut fetched = 0;
    live.wait_for(Duration::from_secs(30), |e| {
        fetched += u32::from(e["event"] == "object-fetched");
        fetched >= 20
    });
    let interrupted = Instant::now();
    live.signal(libc::SIGINT);
    let run = live.finish(Duration::from_secs(10)).failed();
    assert!(
        interrupted.elapsed() < Duration::from_secs(3),
        "Ctrl-C took {:?}",
        interrupted.elapsed()
    );
    assert!(
        run.error_message().contains("cancel"),
        "{}",
        run.error_message()
    );
    assert_eq!(
        client.ref_commit(),
        None,
        "the ref moved after a cancelled pull"
    );
    assert_ostree_fsck(&client.repo);
    drop(slow);

    let fast = Server::start(&up.repo, ServeOptions::default());
    let run = client
        .update(
            &["--static-source", &fast.url()],
            &["--source", &fast.static_id()],
        )
        .ok();
    assert_eq!(run.plan()["commit"], commit.as_str());
    assert_installed(&client, &commit);
}

#[test]
fn usb_drive_pulled_out_mid_pull_http_completes() {
    let f = DriveBesideUpstream::new("FERRYTEST");
    let (commit, usb_id, client) = (&f.commit, &f.usb_id, &f.client);
    let live = f.update_stopped_after(150);
    // The pull is frozen: pull the stick out, let it go on.
    f.drive.unmount_lazy();
    live.signal(libc::SIGCONT);
    let run = live.finish(Duration::from_secs(60)).ok();

    run.assert_fetched_exactly(&closure(&f.up.repo, commit));
    let counts = run.counts();
    eprintln!("served: {counts:?}");
    assert!(counts.get(usb_id).is_some_and(|n| *n > 0), "{counts:?}");
    assert!(
        counts.get("upstream:origin").is_some_and(|n| *n > 0),
        "the drive served everything: {counts:?}"
    );
    let dropped = run.dropped();
    assert!(
        dropped.iter().any(|(id, _)| id == usb_id),
        "the drive was not dropped: {dropped:?}"
    );
    assert_installed(client, commit);
}
