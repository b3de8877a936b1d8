//! The engine rules, one section each, and `--source`.

use super::*;

/// The client mode of the rule tests; `bare_destinations` runs some in bare-user.
const ARCHIVE: &str = "archive";

#[test]
fn rule1_file_static_source_serves_every_object() {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let lan = Server::start(&up.repo, ServeOptions::default());
    let drive = up.snapshot("drive");
    let file_id = format!("static:{}", file_uri(&drive));
    let client = Client::new(&upstream.url(), Trust::None);

    let run = client
        .update(
            &[
                "--static-source",
                &file_uri(&drive),
                "--static-source",
                &lan.url(),
            ],
            &[],
        )
        .ok();
    let plan_sources = run.plan_sources();
    for id in [&file_id, &lan.static_id(), &"upstream:origin".to_owned()] {
        assert!(
            plan_sources.contains(id),
            "{id} not in plan {plan_sources:?}"
        );
    }
    assert_served_only_by(&run, &up, &commit, &file_id, &[&upstream, &lan]);
    assert_installed(&client, &commit);
}

#[test]
fn rule1_sideload_symlink_serves_every_object() {
    rule1_sideload_symlink(ARCHIVE);
}

/// Into a client repository of `mode` (also run by `bare_destinations`).
pub(crate) fn rule1_sideload_symlink(mode: &str) {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    // Drives are used only for remotes that verify commits (tests/trust/policy.rs).
    let signer = Signer::new("rule1@example.org");
    signer.sign(&up.repo, &commit);
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let lan = Server::start(&up.repo, ServeOptions::default());
    let sideload = up.dir.path().join("sideload");
    fs::create_dir(&sideload).unwrap();
    symlink(&up.repo, &sideload.join("stick"));
    let client = Client::with_mode(&upstream.url(), Trust::Gpg(&signer.public), mode);
    let discovery = [
        "--sideload-dir",
        sideload.to_str().unwrap(),
        "--static-source",
        &lan.url(),
    ];

    let sources = client.sources(&discovery);
    let usb: Vec<&Value> = sources.iter().filter(|s| s["kind"] == "usb").collect();
    assert_eq!(usb.len(), 1, "expected one sideloaded source: {sources:?}");
    let usb_id = usb[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(usb[0]["state"], "ready");

    let run = client.update(&discovery, &[]).ok();
    assert!(
        run.plan_sources().contains(&usb_id),
        "{:?}",
        run.plan_sources()
    );
    assert_served_only_by(&run, &up, &commit, &usb_id, &[&upstream, &lan]);
    assert_installed(&client, &commit);
}

// ---------------------------------------------------------------------------
// Rule 2: fresher sources before older ones
// ---------------------------------------------------------------------------

#[test]
fn rule2_fresh_source_serves_and_decides_the_commit() {
    let mut up = Upstream::new(50, 700);
    let old = up.latest().to_owned();
    let stale_repo = up.snapshot("stale");
    let new = up.commit_again(12);
    let fresh = Server::start(&up.repo, ServeOptions::default());
    let stale = Server::start(&stale_repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::None);
    let discovery = [
        "--static-source",
        &stale.url(),
        "--static-source",
        &fresh.url(),
    ];

    // The stale source holds part of what is needed: it could serve, but must not.
    let new_closure = closure(&up.repo, &new);
    let shared: BTreeSet<_> = closure(&stale_repo, &old)
        .intersection(&new_closure)
        .cloned()
        .collect();
    assert!(
        shared.len() > 30,
        "the stale source should hold most objects: {}",
        shared.len()
    );

    let run = client
        .update(
            &discovery,
            &[
                "--source",
                &stale.static_id(),
                "--source",
                &fresh.static_id(),
            ],
        )
        .ok();
    let plan = run.plan();
    assert_eq!(
        plan["commit"],
        new.as_str(),
        "the plan must pick the newest commit"
    );
    assert_eq!(run.plan_sources(), vec![fresh.static_id()]);
    run.assert_fetched_exactly(&new_closure);
    let counts = run.counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        vec![&fresh.static_id()],
        "{counts:?}"
    );
    assert!(
        tree_requests(&stale).is_empty(),
        "stale source asked for {:?}",
        tree_requests(&stale)
    );
    assert_installed(&client, &new);
}

#[test]
fn rule2_fresher_summary_first_among_stale_sources() {
    let mut up = Upstream::new(40, 700);
    let old_repo = up.snapshot("old");
    // Summaries carry their last-modified time in seconds: make them differ.
    std::thread::sleep(Duration::from_millis(1100));
    up.commit_again(5);
    let mid_repo = up.snapshot("mid");
    let newest = up.commit_again(10);
    let new_closure = closure(&up.repo, &newest);
    // The fresh source lacks files every commit shares; both stale ones have them.
    let shared: BTreeSet<_> = closure(&old_repo, &up.commits[0])
        .intersection(&closure(&mid_repo, &up.commits[1]))
        .filter(|o| new_closure.contains(*o))
        .cloned()
        .collect();
    let holes: Vec<String> = files_of(&shared).into_iter().take(8).collect();
    assert_eq!(holes.len(), 8);
    let fresh = Server::start(
        &up.repo,
        ServeOptions {
            missing: holes.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let old = Server::start(&old_repo, ServeOptions::default());
    let mid = Server::start(&mid_repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::None);

    let sources = client.sources(&["--static-source", &old.url(), "--static-source", &mid.url()]);
    let modified = |id: &str| {
        sources.iter().find(|s| s["id"] == id).unwrap()["last_modified"]
            .as_u64()
            .unwrap()
    };
    assert!(
        modified(&mid.static_id()) > modified(&old.static_id()),
        "{sources:?}"
    );

    let run = client
        .update(
            &[
                "--static-source",
                &old.url(),
                "--static-source",
                &mid.url(),
                "--static-source",
                &fresh.url(),
            ],
            &[
                "--source",
                &old.static_id(),
                "--source",
                &mid.static_id(),
                "--source",
                &fresh.static_id(),
            ],
        )
        .ok();
    assert_eq!(run.plan()["commit"], newest.as_str());
    run.assert_fetched_exactly(&new_closure);
    let served = run.served_by();
    for hole in &holes {
        assert_eq!(
            served[hole],
            mid.static_id(),
            "{hole} should come from the fresher stale source"
        );
    }
    assert!(
        tree_requests(&old).is_empty(),
        "the oldest source was asked for {:?}",
        tree_requests(&old)
    );
    assert_installed(&client, &newest);
}

// ---------------------------------------------------------------------------
// Rule 3: a source that refuses connections is dropped
// ---------------------------------------------------------------------------

#[test]
fn rule3_refusing_sources_are_dropped() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let good = Server::start(&up.repo, ServeOptions::default());
    // Both the configured remote and a static source refuse connections.
    let refused_remote = format!("http://127.0.0.1:{}", refused_port());
    let refused_static = format!("http://127.0.0.1:{}", refused_port());
    let client = Client::new(&refused_remote, Trust::None);
    let discovery = [
        "--static-source",
        &refused_static,
        "--static-source",
        &good.url(),
    ];

    let sources = client.sources(&discovery);
    assert_eq!(source_state(&sources, "upstream:origin"), "unreachable");
    assert_eq!(
        source_state(&sources, &format!("static:{refused_static}")),
        "unreachable"
    );
    assert_eq!(source_state(&sources, &good.static_id()), "ready");

    let run = client.update(&discovery, &[]).ok();
    assert_eq!(run.plan_sources(), vec![good.static_id()]);
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec![&good.static_id()]
    );
    assert_installed(&client, &commit);
}

// ---------------------------------------------------------------------------
// Rule 4: a source without a summary is dropped
// ---------------------------------------------------------------------------

#[test]
fn rule4_source_without_summary_is_dropped() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let good = Server::start(&up.repo, ServeOptions::default());
    // It holds every object, but does not answer as an OSTree repository.
    let no_summary = Server::start(
        &up.repo,
        ServeOptions {
            no_summary: true,
            ..Default::default()
        },
    );
    let client = Client::new(&good.url(), Trust::None);
    let discovery = ["--static-source", &no_summary.url()];

    let sources = client.sources(&discovery);
    assert_eq!(
        source_state(&sources, &no_summary.static_id()),
        "not-serving"
    );
    assert_eq!(source_state(&sources, "upstream:origin"), "ready");

    let run = client.update(&discovery, &[]).ok();
    assert_eq!(run.plan_sources(), vec!["upstream:origin".to_owned()]);
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec!["upstream:origin"]
    );
    assert!(
        no_summary.object_requests().is_empty(),
        "a source without a summary was asked for objects: {:?}",
        no_summary.object_requests()
    );
    assert_installed(&client, &commit);
}

// ---------------------------------------------------------------------------
// Rule 5: a 404 for one object only moves that object on
// ---------------------------------------------------------------------------

/// A non-root dirtree and some files of a commit.
fn pick_holes(repo: &Path, commit: &str, files: std::ops::Range<usize>) -> Vec<String> {
    let all = closure(repo, commit);
    let (root_tree, _) = commit_roots(repo, commit);
    let mut holes: Vec<String> = files_of(&all)[files].to_vec();
    holes.push(
        all.iter()
            .find(|o| o.ends_with(".dirtree") && **o != root_tree)
            .unwrap()
            .clone(),
    );
    holes
}

#[test]
fn rule5_object_missing_on_one_source_comes_from_another() {
    rule5_object_missing_on_one_source(ARCHIVE);
}

/// Into a client repository of `mode` (also run by `bare_destinations`).
pub(crate) fn rule5_object_missing_on_one_source(mode: &str) {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let holes = pick_holes(&up.repo, &commit, 0..10);
    let patchy = Server::start(
        &up.repo,
        ServeOptions {
            missing: holes.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let full = Server::start(&up.repo, ServeOptions::default());
    let client = Client::with_mode(&full.url(), Trust::None, mode);

    let run = client.update(&["--static-source", &patchy.url()], &[]).ok();
    assert!(
        run.dropped().is_empty(),
        "a 404 must not drop a source: {:?}",
        run.dropped()
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    let served = run.served_by();
    for (object, source) in &served {
        let expected = if holes.contains(object) {
            "upstream:origin".to_owned()
        } else {
            patchy.static_id()
        };
        assert_eq!(source, &expected, "{object}");
    }
    // The preferred source was asked first for every object, holes included.
    let asked: BTreeSet<String> = patchy.object_requests().into_iter().collect();
    for hole in &holes {
        assert!(
            asked.contains(hole),
            "{hole} was never tried on the preferred source"
        );
    }
    assert_installed(&client, &commit);
}

#[test]
fn rule5_file_source_missing_objects_is_not_dropped() {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let copy = up.snapshot("partial");
    let holes = pick_holes(&copy, &commit, 20..30);
    for hole in &holes {
        fs::remove_file(copy.join(object_path(hole))).unwrap();
    }
    let full = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&full.url(), Trust::None);
    let copy_id = format!("static:{}", file_uri(&copy));

    let run = client
        .update(&["--static-source", &file_uri(&copy)], &[])
        .ok();
    assert!(
        run.dropped().is_empty(),
        "missing objects must not drop a drive: {:?}",
        run.dropped()
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    for (object, source) in run.served_by() {
        let expected = if holes.contains(&object) {
            "upstream:origin".to_owned()
        } else {
            copy_id.clone()
        };
        assert_eq!(source, expected, "{object}");
    }
    let asked: BTreeSet<String> = full.object_requests().into_iter().collect();
    let expected: BTreeSet<String> = holes.iter().cloned().collect();
    assert_eq!(
        tree_requests(&full).into_iter().collect::<BTreeSet<_>>(),
        expected,
        "the HTTP source should be asked for the holes only (asked {asked:?})"
    );
    assert_installed(&client, &commit);
}

#[test]
fn rule5_sources_with_disjoint_holes_complete_together() {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let all = closure(&up.repo, &commit);
    let files = files_of(&all);
    let dirtrees: Vec<&String> = all.iter().filter(|o| o.ends_with(".dirtree")).collect();
    let (root_tree, _) = commit_roots(&up.repo, &commit);
    let subtrees: Vec<&String> = dirtrees.into_iter().filter(|o| **o != root_tree).collect();
    let mut x: Vec<String> = files[0..12].to_vec();
    x.push(subtrees[0].clone());
    let mut y: Vec<String> = files[12..24].to_vec();
    y.push(subtrees[1].clone());
    let a = Server::start(
        &up.repo,
        ServeOptions {
            missing: x.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let b = Server::start(
        &up.repo,
        ServeOptions {
            missing: y.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let client = Client::new(&a.url(), Trust::None);

    let run = client
        .update(
            &["--static-source", &a.url(), "--static-source", &b.url()],
            &["--source", &a.static_id(), "--source", &b.static_id()],
        )
        .ok();
    assert!(run.dropped().is_empty(), "{:?}", run.dropped());
    run.assert_fetched_exactly(&all);
    let served = run.served_by();
    for object in &x {
        assert_eq!(served[object], b.static_id(), "{object} is missing on A");
    }
    for object in &y {
        assert_eq!(served[object], a.static_id(), "{object} is missing on B");
    }
    assert_installed(&client, &commit);
}

// ---------------------------------------------------------------------------
// Rule 6: equal sources share the load, in random order
// ---------------------------------------------------------------------------

#[test]
fn rule6_equal_sources_share_the_load_at_random() {
    let up = Upstream::new(320, 300);
    let commit = up.latest().to_owned();
    let all = closure(&up.repo, &commit);
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&up.repo, ServeOptions::default()))
        .collect();
    let mut discovery: Vec<String> = Vec::new();
    let mut only: Vec<String> = Vec::new();
    for s in &servers {
        discovery.extend(["--static-source".to_owned(), s.url()]);
        only.extend(["--source".to_owned(), s.static_id()]);
    }
    let discovery: Vec<&str> = discovery.iter().map(String::as_str).collect();
    let only: Vec<&str> = only.iter().map(String::as_str).collect();

    let (root_tree, root_meta) = commit_roots(&up.repo, &commit);
    let mut splits: Vec<BTreeMap<String, String>> = Vec::new();
    // The first two objects handed out (the root dirmeta and dirtree) go to three
    // idle, equal sources: with a random tie-break each is a fair draw. Eight
    // draws all landing on one source would happen by chance 3 times in 6561.
    let mut first_draws = Vec::new();
    for round in 0..4 {
        let client = Client::new(&servers[0].url(), Trust::None);
        let run = client.update(&discovery, &only).ok();
        run.assert_fetched_exactly(&all);
        let counts = run.counts();
        for s in &servers {
            let n = counts.get(&s.static_id()).copied().unwrap_or(0);
            assert!(
                n >= 10,
                "round {round}: {} served only {n} of {} objects: {counts:?}",
                s.url(),
                all.len()
            );
        }
        eprintln!("round {round}: split {counts:?}");
        let served = run.served_by();
        first_draws.push(served[&root_meta].clone());
        first_draws.push(served[&root_tree].clone());
        splits.push(served);
        if round == 0 {
            assert_installed(&client, &commit);
        } else {
            assert_eq!(client.ref_commit().as_deref(), Some(commit.as_str()));
        }
    }
    assert!(
        splits.iter().any(|s| *s != splits[0]),
        "every pull from three equal sources split the objects identically"
    );
    assert!(
        first_draws.iter().any(|d| *d != first_draws[0]),
        "the first objects always went to the same source: {first_draws:?}"
    );
}

// ---------------------------------------------------------------------------
// Rule 7: stale sources still serve the objects they have
// ---------------------------------------------------------------------------

#[test]
fn rule7_stale_source_serves_what_the_fresh_one_lacks() {
    let mut up = Upstream::new(50, 700);
    let old = up.latest().to_owned();
    let stale_repo = up.snapshot("stale");
    let new = up.commit_again(12);
    let new_closure = closure(&up.repo, &new);
    let shared: BTreeSet<String> = closure(&stale_repo, &old)
        .intersection(&new_closure)
        .cloned()
        .collect();
    let mut holes: Vec<String> = files_of(&shared).into_iter().take(10).collect();
    holes.push(
        shared
            .iter()
            .find(|o| o.ends_with(".dirmeta"))
            .unwrap()
            .clone(),
    );
    let fresh = Server::start(
        &up.repo,
        ServeOptions {
            missing: holes.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let stale = Server::start(&stale_repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::None);

    let run = client
        .update(
            &[
                "--static-source",
                &stale.url(),
                "--static-source",
                &fresh.url(),
            ],
            &[
                "--source",
                &stale.static_id(),
                "--source",
                &fresh.static_id(),
            ],
        )
        .ok();
    assert_eq!(
        run.plan()["commit"],
        new.as_str(),
        "a stale source must not decide the commit"
    );
    assert_eq!(run.plan_sources(), vec![fresh.static_id()]);
    run.assert_fetched_exactly(&new_closure);
    for (object, source) in run.served_by() {
        let expected = if holes.contains(&object) {
            stale.static_id()
        } else {
            fresh.static_id()
        };
        assert_eq!(source, expected, "{object}");
    }
    assert_installed(&client, &new);
}

#[test]
fn rule7_stale_usb_stick_serves_what_it_has_and_http_the_rest() {
    // libostree ignores such a stick entirely; Ferry takes what it holds first.
    let mut up = Upstream::new(60, 700);
    let old = up.latest().to_owned();
    // Drives are used only for remotes that verify commits (tests/trust/policy.rs).
    let signer = Signer::new("rule7@example.org");
    signer.sign(&up.repo, &old);
    let stick = up.snapshot("stick");
    let new = up.commit_again(12);
    signer.sign(&up.repo, &new);
    let fresh = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::Gpg(&signer.public));
    let sideload = up.dir.path().join("sideload");
    fs::create_dir(&sideload).unwrap();
    symlink(&stick, &sideload.join("stick"));
    let discovery = ["--sideload-dir", sideload.to_str().unwrap()];

    let run = client.update(&discovery, &[]).ok();
    assert_eq!(run.plan()["commit"], new.as_str());
    assert_eq!(run.plan_sources(), vec!["upstream:origin".to_owned()]);
    assert!(
        run.dropped().is_empty(),
        "a stale stick must not be dropped: {:?}",
        run.dropped()
    );
    let new_closure = closure(&up.repo, &new);
    let on_stick = closure(&stick, &old);
    run.assert_fetched_exactly(&new_closure);
    let served = run.served_by();
    let usb_id = served
        .values()
        .find(|s| s.starts_with("usb:"))
        .expect("the stick served nothing")
        .clone();
    for (object, source) in &served {
        let expected = if on_stick.contains(object) {
            &usb_id
        } else {
            "upstream:origin"
        };
        assert_eq!(source, expected, "{object}");
    }
    assert!(served.values().filter(|s| **s == usb_id).count() > 40);
    assert_installed(&client, &new);
}

#[test]
fn rule7_only_stale_sources_around_means_up_to_date() {
    let mut up = Upstream::new(30, 700);
    let stale_repo = up.snapshot("stale");
    let new = up.commit_again(5);
    let mut fresh = Server::start(&up.repo, ServeOptions::default());
    let stale = Server::start(&stale_repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::None);
    client.update(&[], &[]).ok();
    assert_installed(&client, &new);

    // The upstream goes away; a stale peer (an old USB stick, a neighbour who has
    // not updated) is all there is. Its older commit is no update, and no error.
    fresh.kill();
    let discovery = ["--static-source", &stale.url()];
    let plans = client.check(&discovery);
    assert_eq!(plans[0]["commit"], new.as_str(), "{plans}");
    assert_eq!(plans[0]["up_to_date"], true, "{plans}");
    let run = client.update(&discovery, &[]).ok();
    assert_eq!(run.plan()["up_to_date"], true, "{}", run.plan());
    assert_eq!(run.plan()["commit"], new.as_str());
    assert!(
        run.fetched().is_empty(),
        "objects fetched for an up-to-date ref: {:?}",
        run.fetched()
    );
    assert!(
        tree_requests(&stale).is_empty(),
        "{:?}",
        tree_requests(&stale)
    );
    assert_installed(&client, &new);
}

// ---------------------------------------------------------------------------
// Rule 8: the commit is verified before anything under it is requested
// ---------------------------------------------------------------------------

enum BadCommit {
    Unsigned,
    OtherKey,
    BoundToOtherRef,
}

fn rule8(bad: BadCommit) {
    let gpg = Gpg::new();
    let honest_key = gpg.gen_key("test@example.org", "ed25519", "sign", "never");
    let evil_key = gpg.gen_key("evil@example.org", "ed25519", "sign", "never");
    let up = Upstream::new(40, 700);
    let honest = up.latest().to_owned();
    gpg.ostree_sign(&up.repo, &honest, &honest_key);
    ostree_summary(&up.repo);
    let key_file = up.dir.path().join("trusted.gpg");
    gpg.export_to("test@example.org", false, &key_file);

    // The malicious peer: the honest history plus a newer commit of its own.
    let peer_repo = up.snapshot("peer");
    let peer_tree = up.dir.path().join("peer-tree");
    copy_tree(&up.tree, &peer_tree);
    change_tree(&peer_tree, 10, 66);
    let branch = match bad {
        BadCommit::BoundToOtherRef => "os/beta",
        _ => REF,
    };
    let evil = ostree_commit(&peer_repo, branch, &peer_tree, "totally legit", T0 + 5000);
    match bad {
        BadCommit::Unsigned => {}
        BadCommit::OtherKey => gpg.ostree_sign(&peer_repo, &evil, &evil_key),
        BadCommit::BoundToOtherRef => {
            gpg.ostree_sign(&peer_repo, &evil, &honest_key);
            fs::write(peer_repo.join("refs/heads").join(REF), format!("{evil}\n")).unwrap();
        }
    }
    ostree_summary(&peer_repo);
    let (evil_root, _) = commit_roots(&peer_repo, &evil);
    let honest_closure = closure(&up.repo, &honest);
    let evil_only: BTreeSet<String> = closure(&peer_repo, &evil)
        .difference(&honest_closure)
        .cloned()
        .collect();
    assert!(evil_only.contains(&evil_root) && evil_only.len() > 10);

    let upstream = Server::start(&up.repo, ServeOptions::default());
    let peer = Server::start(&peer_repo, ServeOptions::default());
    let client = Client::new(&upstream.url(), Trust::Gpg(&key_file));
    let discovery = ["--static-source", &peer.url()];

    let plans = client.check(&discovery);
    assert_eq!(
        plans[0]["commit"],
        honest.as_str(),
        "check chose the bad commit: {plans}"
    );

    let run = client.update(&discovery, &[]).ok();
    let plan = run.plan();
    assert_eq!(
        plan["commit"],
        honest.as_str(),
        "the bad commit was chosen: {plan}"
    );
    let rejected = plan["rejected"].as_array().unwrap();
    assert!(
        rejected
            .iter()
            .any(|r| r["commit"] == evil.as_str() && r["source"] == peer.static_id()),
        "the bad commit is not reported as refused: {plan}"
    );
    // It was looked at (so the test means something), but nothing under it was asked for.
    assert!(
        peer.object_requests().contains(&format!("{evil}.commit")),
        "{:?}",
        peer.object_requests()
    );
    assert_not_requested(&[&upstream, &peer], &evil_only, "the refused commit's tree");
    run.assert_fetched_exactly(&honest_closure);
    assert_installed(&client, &honest);
}

#[test]
fn rule8_newer_unsigned_commit_is_never_pulled() {
    rule8(BadCommit::Unsigned);
}

#[test]
fn rule8_newer_commit_signed_by_another_key_is_never_pulled() {
    rule8(BadCommit::OtherKey);
}

#[test]
fn rule8_newer_commit_bound_to_another_ref_is_never_pulled() {
    rule8(BadCommit::BoundToOtherRef);
}

// ---------------------------------------------------------------------------
// Rule 9: every object is verified; a source that sends a bad one is dropped
// ---------------------------------------------------------------------------

/// A liar corrupts one object; the client's repository is of `mode`.
pub(crate) fn rule9_http(mode: &str, pick: impl Fn(&Upstream, &str) -> String) {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let bad_object = pick(&up, &commit);
    let liar = Server::start(
        &up.repo,
        ServeOptions {
            corrupt: vec![object_path(&bad_object)],
            ..Default::default()
        },
    );
    let honest = Server::start(&up.repo, ServeOptions::default());
    let client = Client::with_mode(&honest.url(), Trust::None, mode);

    let run = client.update(&["--static-source", &liar.url()], &[]).ok();
    let dropped = run.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, liar.static_id());
    assert!(!dropped[0].1.is_empty(), "a drop needs a reason");
    assert!(
        liar.object_requests().contains(&bad_object),
        "the corrupt object was never asked of the liar"
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(run.served_by()[&bad_object], "upstream:origin");
    assert_installed(&client, &commit);
}

#[test]
fn rule9_corrupt_file_object_drops_the_source() {
    rule9_http(ARCHIVE, |up, commit| {
        files_of(&closure(&up.repo, commit))[3].clone()
    });
}

#[test]
fn rule9_corrupt_dirtree_drops_the_source() {
    rule9_http(ARCHIVE, |up, commit| commit_roots(&up.repo, commit).0);
}

#[test]
fn rule9_corrupt_commit_drops_the_source_before_anything_else() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let liar = Server::start(
        &up.repo,
        ServeOptions {
            corrupt: vec![object_path(&format!("{commit}.commit"))],
            ..Default::default()
        },
    );
    let honest = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&honest.url(), Trust::None);

    let run = client.update(&["--static-source", &liar.url()], &[]).ok();
    assert!(
        liar.object_requests().contains(&format!("{commit}.commit")),
        "{:?}",
        liar.object_requests()
    );
    let dropped = run.dropped();
    assert_eq!(
        dropped.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        vec![liar.static_id()],
        "{dropped:?}"
    );
    assert!(
        tree_requests(&liar).is_empty(),
        "a dropped source was asked for {:?}",
        tree_requests(&liar)
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec!["upstream:origin"]
    );
    assert_installed(&client, &commit);
}

#[test]
fn rule9_large_objects_spilled_to_disk_are_verified_too() {
    rule9_large_objects_spilled(ARCHIVE);
}

/// Into a client repository of `mode` (also run by `bare_destinations`).
pub(crate) fn rule9_large_objects_spilled(mode: &str) {
    let mut up = Upstream::new(10, 700);
    // Over the transport's in-memory limit (4 MiB), random so deflate cannot shrink it.
    fs::write(up.tree.join("big.img"), pseudo_random(4242, 6 << 20)).unwrap();
    let commit = up.commit_again(0);
    let big = files_of(&closure(&up.repo, &commit))
        .into_iter()
        .find(|o| fs::metadata(up.repo.join(object_path(o))).unwrap().len() > 5 << 20)
        .expect("the big object");
    let liar = Server::start(
        &up.repo,
        ServeOptions {
            corrupt: vec![object_path(&big)],
            ..Default::default()
        },
    );
    let honest = Server::start(&up.repo, ServeOptions::default());
    let client = Client::with_mode(&honest.url(), Trust::None, mode);

    let run = client.update(&["--static-source", &liar.url()], &[]).ok();
    assert!(liar.object_requests().contains(&big));
    let dropped = run.dropped();
    assert_eq!(
        dropped.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        vec![liar.static_id()],
        "{dropped:?}"
    );
    assert_eq!(run.served_by()[&big], "upstream:origin");
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_installed(&client, &commit);
    assert_checkout_matches(&client, &up.tree);
    // Spilled bodies do not stay behind in the repository.
    let leftovers: Vec<_> = walk(&client.repo.join("tmp"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("download-"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn rule9_corrupt_object_on_a_file_source_is_not_stored() {
    let up = Upstream::new(60, 700);
    let commit = up.latest().to_owned();
    let drive = up.snapshot("drive");
    let bad_object = files_of(&closure(&up.repo, &commit))[5].clone();
    let path = drive.join(object_path(&bad_object));
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    fs::write(&path, bytes).unwrap();
    let honest = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&honest.url(), Trust::None);
    let drive_id = format!("static:{}", file_uri(&drive));

    let run = client
        .update(&["--static-source", &file_uri(&drive)], &[])
        .ok();
    let dropped = run.dropped();
    assert_eq!(
        dropped.iter().map(|d| &d.0).collect::<Vec<_>>(),
        vec![&drive_id],
        "{dropped:?}"
    );
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(run.served_by()[&bad_object], "upstream:origin");
    assert_installed(&client, &commit);
}

// ---------------------------------------------------------------------------
// Rule 10: the ref moves only after the whole closure is stored; resume
// ---------------------------------------------------------------------------

#[test]
fn rule10_pull_killed_with_its_only_source_resumes_from_checkpoint() {
    rule10_resume_from_checkpoint(ARCHIVE);
}

/// Into a client repository of `mode` (also run by `bare_destinations`).
pub(crate) fn rule10_resume_from_checkpoint(mode: &str) {
    let mut up = Upstream::new(20, 500);
    let first = up.latest().to_owned();
    let mut server = Server::start(&up.repo, ServeOptions::default());
    let port = server.port;
    let client = Client::with_mode(&server.url(), Trust::None, mode);
    client.update(&[], &[]).ok();
    assert_installed(&client, &first);
    let before = stored_objects(&client.repo);

    // 300 changed files of 3000 random bytes at 150 kB/s: about 6 s in all.
    fs::create_dir_all(up.tree.join("more")).unwrap();
    for i in 0..280 {
        fs::write(
            up.tree.join("more").join(format!("m{i:03}")),
            pseudo_random(90_000 + i, 3000),
        )
        .unwrap();
    }
    let second = up.commit_again(20);
    server.kill();
    let dying = Server::start(
        &up.repo,
        ServeOptions {
            port,
            rate: Some(150_000),
            die_after: Some(230),
            ..Default::default()
        },
    );

    let run = client.update(&[], &[]).failed();
    let message = run.error_message();
    assert!(
        message.contains(REF) && message.contains("upstream:origin"),
        "the error should say what failed and where: {message}"
    );
    assert!(
        run.elapsed > Duration::from_secs(3),
        "the first run was too quick for a checkpoint: {:?}",
        run.elapsed
    );
    drop(dying);
    assert_eq!(
        client.ref_commit().as_deref(),
        Some(first.as_str()),
        "the ref moved after a failed pull"
    );
    assert_ostree_fsck(&client.repo);
    let checkpointed: BTreeSet<String> = stored_objects(&client.repo)
        .difference(&before)
        .cloned()
        .collect();
    assert!(
        checkpointed.len() > 20,
        "nothing was checkpointed before the source died ({} objects)",
        checkpointed.len()
    );

    let revived = Server::start(
        &up.repo,
        ServeOptions {
            port,
            ..Default::default()
        },
    );
    let rerun = client.update(&[], &[]).ok();
    assert_eq!(rerun.plan()["commit"], second.as_str());
    let refetched: Vec<String> = revived
        .object_requests()
        .into_iter()
        .filter(|o| checkpointed.contains(o))
        .collect();
    assert!(
        refetched.is_empty(),
        "{} checkpointed objects fetched again: {:?}",
        refetched.len(),
        &refetched[..refetched.len().min(5)]
    );
    let expected: BTreeSet<String> = closure(&up.repo, &second)
        .difference(&before)
        .cloned()
        .collect();
    let fetched_now: BTreeSet<String> = rerun.served_by().into_keys().collect();
    let both: BTreeSet<String> = fetched_now.union(&checkpointed).cloned().collect();
    assert!(
        expected.is_subset(&both),
        "the closure is not covered by the two runs"
    );
    assert_installed(&client, &second);
}

// ---------------------------------------------------------------------------
// --source
// ---------------------------------------------------------------------------

#[test]
fn source_option_restricts_the_pull_to_that_source() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let chosen = Server::start(&up.repo, ServeOptions::default());
    let drive = up.snapshot("drive");
    let client = Client::new(&upstream.url(), Trust::None);

    let run = client
        .update(
            &[
                "--static-source",
                &file_uri(&drive),
                "--static-source",
                &chosen.url(),
            ],
            &["--source", &chosen.static_id()],
        )
        .ok();
    assert_eq!(run.plan_sources(), vec![chosen.static_id()]);
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec![&chosen.static_id()]
    );
    // Discovery reads every summary; the pull asks nothing of excluded sources.
    assert!(
        upstream.object_requests().is_empty(),
        "an excluded source was asked for objects: {:?}",
        upstream.object_requests()
    );
    assert_installed(&client, &commit);
}

#[test]
fn source_option_fails_naming_the_object_it_lacks() {
    let up = Upstream::new(40, 700);
    let commit = up.latest().to_owned();
    let hole = files_of(&closure(&up.repo, &commit))[7].clone();
    let patchy = Server::start(
        &up.repo,
        ServeOptions {
            missing: vec![object_path(&hole)],
            ..Default::default()
        },
    );
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&upstream.url(), Trust::None);

    let run = client
        .update(
            &["--static-source", &patchy.url()],
            &["--source", &patchy.static_id()],
        )
        .failed();
    let message = run.error_message();
    let hex = hole.split('.').next().unwrap();
    assert!(
        message.contains(hex),
        "the error does not name the missing object {hole}: {message}"
    );
    assert!(
        upstream.object_requests().is_empty(),
        "{:?}",
        upstream.object_requests()
    );
    assert_eq!(client.ref_commit(), None);
    assert_ostree_fsck(&client.repo);

    // Without the restriction the same update completes.
    let run = client.update(&["--static-source", &patchy.url()], &[]).ok();
    assert_eq!(run.served_by()[&hole], "upstream:origin");
    assert_installed(&client, &commit);
}
