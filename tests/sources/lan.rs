//! Discovery of nearby computers over a real LAN made of two network namespaces
//! joined by a veth pair: a real avahi-daemon advertises `_ostree_repo._tcp` with
//! binary TXT records built like eos-updater's (k = 1, 250-byte bloom filter, `st`,
//! `ri`), `python3 -m http.server` serves an `ostree`-made repository at `/RI/`, and
//! `ferryctl sources` runs in the other namespace with `FERRY_LAN_INTERFACES` set
//! to its end of the veth. Nothing touches the host's interfaces. Runs as root.

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::sources::*;
use ferry::sources::lan::bloom::{Bloom, EOS_UPDATER_BYTES, EOS_UPDATER_K};
use ferry::sources::lan::txt::RepoAdvert;
use serde_json::Value;

const PORT: u16 = 43381;

/// TXT records for a peer whose bloom filter holds `refs`.
fn advert(
    refs: &[(&str, &str)],
    summary_timestamp: u64,
    repo_index: u16,
) -> Vec<(String, Vec<u8>)> {
    let mut bloom = Bloom::new(EOS_UPDATER_BYTES, EOS_UPDATER_K).unwrap();
    for (collection, ref_name) in refs {
        bloom.add(collection, ref_name);
    }
    RepoAdvert {
        bloom,
        summary_timestamp,
        repo_index,
    }
    .encode()
}

/// Fields drop in order: the processes, then the namespaces, then the files.
struct Peer {
    avahi: Option<Avahi>,
    _http: HttpServer,
    client: ClientRepo,
    repo: OstreeRepo,
    lan: Lan,
    _dir: tempfile::TempDir,
}

fn peer() -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let repo = OstreeRepo::create(&dir.path().join("served"), COLLECTION, REF);
    // The repository is served at /0/ and at /1/.
    symlink(&repo.path, www.join("0")).unwrap();
    symlink(&repo.path, www.join("1")).unwrap();
    let lan = Lan::new();
    let http = HttpServer::start(&lan.a, &www, ADDR_A, PORT);
    let avahi = Avahi::start(&lan.a, &lan.veth_a);
    let url = format!("file://{}", repo.path.display());
    let client = ClientRepo::create(&dir.path().join("client"), &url, COLLECTION);
    Peer {
        avahi: Some(avahi),
        _http: http,
        client,
        repo,
        lan,
        _dir: dir,
    }
}

impl Peer {
    fn avahi(&self) -> &Avahi {
        self.avahi.as_ref().expect("avahi running")
    }

    /// `ferryctl --repo CLIENT ARGS…` inside namespace b, LAN on its veth only.
    fn ferryctl_in_b(&self, args: &[&str]) -> Command {
        let mut cmd = self.lan.b.command(ferryctl_path());
        cmd.env("FERRY_LAN_INTERFACES", &self.lan.veth_b)
            .arg("--repo")
            .arg(&self.client.path)
            .args(args);
        cmd
    }
}

fn lan_source<'a>(sources: &'a [Value], instance: &str) -> Option<&'a Value> {
    sources
        .iter()
        .find(|v| v["id"] == format!("lan:{instance}"))
}

#[test]
fn sources_lan_peer_is_listed_confirmed_and_dropped_when_withdrawn() {
    let p = peer();
    let st = p.repo.summary_last_modified();
    let commit = p.repo.rev_parse(REF);
    let good = format!("ferry-good-{}", random_suffix());
    p.avahi().publish(
        "good.service",
        &good,
        PORT,
        &advert(&[(COLLECTION, REF)], st, 0),
    );
    p.avahi().wait_established(&good);

    // One-shot listing.
    let (ok, stdout, stderr) =
        run_status(&mut p.ferryctl_in_b(&["sources", "--json", "--no-mounts"]));
    assert!(ok, "{stdout}\n{stderr}");
    let sources: Vec<Value> = serde_json::from_str::<Value>(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
        .as_array()
        .expect("array")
        .clone();
    let peer = lan_source(&sources, &good)
        .unwrap_or_else(|| panic!("peer not listed:\n{stdout}\n{stderr}\n{}", p.avahi().log()));
    assert_eq!(peer["kind"], "lan");
    assert_eq!(peer["state"], "ready", "{peer}");
    assert_eq!(peer["uri"], format!("http://{ADDR_A}:{PORT}/0"));
    assert_eq!(peer["last_modified"], st, "{peer}");
    let r = offered(peer, COLLECTION, REF).unwrap_or_else(|| panic!("{peer}"));
    assert_eq!(r["commit"], commit.as_str());
    assert_eq!(r["timestamp"], p.repo.commit_timestamp(REF));

    // Watching: listed within 2 s of starting.
    let started = Instant::now();
    let mut cmd = p.ferryctl_in_b(&["sources", "--watch", "--json", "--no-mounts"]);
    cmd.env("G_MESSAGES_DEBUG", "ferry");
    let mut watch = JsonLines::spawn(cmd);
    let id = format!("lan:{good}");
    let added = watch
        .wait_for(Duration::from_secs(5), |v| is_event(v, "added", &id))
        .unwrap_or_else(|| panic!("peer not listed:\n{}", watch.transcript()));
    let latency = added.at.saturating_duration_since(started);
    eprintln!("added: {latency:?} after started");
    assert!(
        latency <= Duration::from_secs(2),
        "peer listed after {latency:?}"
    );
    assert_eq!(added.value["source"]["state"], "ready", "{}", added.value);

    // A peer whose bloom filter excludes the tracked ref is ignored, even though
    // its server would answer.
    let bad = format!("ferry-bad-{}", random_suffix());
    let excluding = advert(&[(COLLECTION, "os/other")], st, 1);
    let mut check = Bloom::new(EOS_UPDATER_BYTES, EOS_UPDATER_K).unwrap();
    check.add(COLLECTION, "os/other");
    assert!(
        !check.may_contain(COLLECTION, REF),
        "test filter must exclude {REF}"
    );
    p.avahi().publish("bad.service", &bad, PORT, &excluding);
    p.avahi().wait_established(&bad);
    watch.drain_for(Duration::from_secs(3));
    assert!(
        !watch
            .seen
            .iter()
            .any(|l| l.value["source"]["id"] == format!("lan:{bad}")),
        "excluded peer listed:\n{}",
        watch.transcript()
    );

    // Withdrawing the service (mDNS goodbye) removes the peer.
    p.avahi().withdraw("good.service");
    let withdrawn = Instant::now();
    let removed = watch
        .wait_for(Duration::from_secs(10), |v| is_event(v, "removed", &id))
        .unwrap_or_else(|| panic!("peer not removed:\n{}", watch.transcript()));
    let latency = removed.at.saturating_duration_since(withdrawn);
    eprintln!("removed: {latency:?} after withdrawn");
    assert!(
        latency <= Duration::from_secs(3),
        "peer removed after {latency:?}"
    );
}

#[test]
fn sources_lan_peer_disappears_when_avahi_stops() {
    let mut p = peer();
    let st = p.repo.summary_last_modified();
    let name = format!("ferry-stop-{}", random_suffix());
    p.avahi().publish(
        "peer.service",
        &name,
        PORT,
        &advert(&[(COLLECTION, REF)], st, 1),
    );
    p.avahi().wait_established(&name);

    let mut watch =
        JsonLines::spawn(p.ferryctl_in_b(&["sources", "--watch", "--json", "--no-mounts"]));
    let id = format!("lan:{name}");
    let added = watch
        .wait_for(Duration::from_secs(5), |v| is_event(v, "added", &id))
        .unwrap_or_else(|| panic!("peer not listed:\n{}", watch.transcript()));
    assert_eq!(
        added.value["source"]["uri"],
        format!("http://{ADDR_A}:{PORT}/1")
    );

    // avahi-daemon sends goodbyes for its services when it exits.
    drop(p.avahi.take());
    let stopped = Instant::now();
    let removed = watch
        .wait_for(Duration::from_secs(10), |v| is_event(v, "removed", &id))
        .unwrap_or_else(|| panic!("peer not removed:\n{}", watch.transcript()));
    let latency = removed.at.saturating_duration_since(stopped);
    eprintln!("removed: {latency:?} after stopped");
    assert!(
        latency <= Duration::from_secs(3),
        "peer removed after {latency:?}"
    );
}

#[test]
fn sources_lan_malformed_adverts_are_ignored() {
    let p = peer();
    let st = p.repo.summary_last_modified();
    let suffix = random_suffix();
    let good_txt = advert(&[(COLLECTION, REF)], st, 0);
    let with = |key: &str, value: &[u8]| -> Vec<(String, Vec<u8>)> {
        good_txt
            .iter()
            .map(|(k, v)| {
                if k == key {
                    (k.clone(), value.to_vec())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    };
    let cases = [
        ("v2", with("v", &[2])),
        ("truncated-rb", with("rb", &[1])),
        ("st-short", with("st", &[0, 0, 0])),
        ("ri-long", with("ri", &[0, 0, 0])),
        (
            "no-rb",
            good_txt
                .iter()
                .filter(|(k, _)| k != "rb")
                .cloned()
                .collect(),
        ),
    ];
    for (i, (what, txt)) in cases.iter().enumerate() {
        let name = format!("ferry-{what}-{suffix}");
        p.avahi()
            .publish(&format!("m{i}.service"), &name, PORT, txt);
        p.avahi().wait_established(&name);
    }
    // A well-formed control peer proves the browser saw the others.
    let control = format!("ferry-control-{suffix}");
    p.avahi()
        .publish("control.service", &control, PORT, &good_txt);
    p.avahi().wait_established(&control);

    // An HTTP server without a repository there: 404 for the summary.
    let missing = format!("http://{ADDR_A}:{PORT}/missing");
    let (ok, stdout, stderr) = run_status(&mut p.ferryctl_in_b(&[
        "sources",
        "--json",
        "--no-mounts",
        "--static-source",
        &missing,
    ]));
    assert!(ok, "{stdout}\n{stderr}");
    let sources: Vec<Value> = serde_json::from_str::<Value>(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
        .as_array()
        .expect("array")
        .clone();
    let not_serving = sources
        .iter()
        .find(|v| v["id"] == format!("static:{missing}"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(not_serving["state"], "not-serving", "{not_serving}");
    assert!(
        lan_source(&sources, &control).is_some(),
        "control missing:\n{stdout}\n{stderr}"
    );
    let lan: Vec<&Value> = sources.iter().filter(|v| v["kind"] == "lan").collect();
    assert_eq!(lan.len(), 1, "malformed adverts listed:\n{stdout}");
}

/// Issue 11, item 10: a peer whose advertised address is loopback points at the
/// browsing computer itself, not at the peer. Here the advertised host resolves to
/// 127.0.0.1, and namespace b, where Ferry runs, has a real repository served on its
/// own 127.0.0.1 at the advertised port: used, it would be listed "ready". It must
/// be ignored, while a normal peer on the same avahi is listed and the same loopback
/// URL given by hand (`--static-source`) still works.
#[test]
fn sources_lan_peer_advertising_loopback_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let repo = OstreeRepo::create(&dir.path().join("served"), COLLECTION, REF);
    symlink(&repo.path, www.join("0")).unwrap();
    let url = format!("file://{}", repo.path.display());
    let client = ClientRepo::create(&dir.path().join("client"), &url, COLLECTION);
    let lan = Lan::new();
    let _peer_http = HttpServer::start(&lan.a, &www, ADDR_A, PORT);
    let _own_loopback_http = HttpServer::start(&lan.b, &www, "127.0.0.1", PORT);
    let suffix = random_suffix();
    let loop_host = format!("ferry-loop-{suffix}.local");
    let avahi = Avahi::start_with_static_hosts(&lan.a, &lan.veth_a, &[("127.0.0.1", &loop_host)]);

    let st = repo.summary_last_modified();
    let txt = advert(&[(COLLECTION, REF)], st, 0);
    let looped = format!("ferry-loop-{suffix}");
    avahi.publish_on("loop.service", &looped, Some(&loop_host), PORT, &txt);
    avahi.wait_established(&looped);
    let control = format!("ferry-control-{suffix}");
    avahi.publish("control.service", &control, PORT, &txt);
    avahi.wait_established(&control);

    let by_hand = format!("http://127.0.0.1:{PORT}/0");
    let mut cmd = lan.b.command(ferryctl_path());
    cmd.env("FERRY_LAN_INTERFACES", &lan.veth_b)
        .env("G_MESSAGES_DEBUG", "ferry")
        .arg("--repo")
        .arg(&client.path)
        .args([
            "sources",
            "--json",
            "--no-mounts",
            "--static-source",
            &by_hand,
        ]);
    let (ok, stdout, stderr) = run_status(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    let sources: Vec<Value> = serde_json::from_str::<Value>(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
        .as_array()
        .expect("array")
        .clone();
    let peer = lan_source(&sources, &control)
        .unwrap_or_else(|| panic!("control peer not listed:\n{stdout}\n{stderr}"));
    assert_eq!(peer["uri"], format!("http://{ADDR_A}:{PORT}/0"), "{peer}");
    assert!(
        lan_source(&sources, &looped).is_none(),
        "peer advertising 127.0.0.1 listed:\n{stdout}"
    );
    // Seen and refused for its address (not merely missed).
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("ignoring LAN peer {looped}"))
                && l.contains("no usable address")),
        "no word of refusing {looped}:\n{stderr}"
    );
    assert!(
        !sources
            .iter()
            .any(|v| v["kind"] == "lan" && v["uri"].as_str().unwrap_or("").contains("127.0.0.1")),
        "a LAN source points at loopback:\n{stdout}"
    );
    let static_source = sources
        .iter()
        .find(|v| v["id"] == format!("static:{by_hand}"))
        .unwrap_or_else(|| panic!("static source missing:\n{stdout}"));
    assert_eq!(static_source["state"], "ready", "{static_source}");
}
