//! Discovery of USB drives with real loop-mounted ext4 file systems under /media,
//! filled by `ostree create-usb`, seen through `gio::VolumeMonitor` by
//! `ferryctl sources`. Runs as root. Every test removes its mounts, even on failure.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use crate::common::sources::*;
use serde_json::Value;

/// Upstream (real `ostree`) and a client tracking `origin:os/stable`.
struct Setup {
    _dir: tempfile::TempDir,
    upstream: OstreeRepo,
    client: ClientRepo,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = OstreeRepo::create(&dir.path().join("upstream"), COLLECTION, REF);
    let url = format!("file://{}", upstream.path.display());
    let client = ClientRepo::create(&dir.path().join("client"), &url, COLLECTION);
    Setup {
        _dir: dir,
        upstream,
        client,
    }
}

fn usb_prefix(drive: &LoopDrive) -> String {
    format!("usb:{}:", drive.mount_point.display())
}

/// `ferryctl sources --json` (LAN off), parsed; also returns stderr.
fn list_sources(client: &ClientRepo, extra: &[&str]) -> (Vec<Value>, String) {
    let mut cmd = client.ferryctl();
    cmd.args(["sources", "--json", "--no-lan"]).args(extra);
    let (ok, stdout, stderr) = run_status(&mut cmd);
    assert!(ok, "ferryctl sources failed:\n{stdout}\n{stderr}");
    let value: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    (value.as_array().expect("a JSON array").clone(), stderr)
}

#[test]
fn sources_usb_drive_appears_and_disappears_within_a_second() {
    let s = setup();
    let commit = s.upstream.rev_parse(REF);
    let timestamp = s.upstream.commit_timestamp(REF);
    let label = format!("FERRY{}", &random_suffix()[..4]).to_uppercase();
    let drive = LoopDrive::new(&label);
    drive.prepare(|mount| s.upstream.create_usb(mount, REF));

    let mut cmd = s.client.ferryctl();
    cmd.args(["sources", "--watch", "--json", "--no-lan"]);
    let mut watch = JsonLines::spawn(cmd);
    // Discovery is running once the upstream has been listed.
    assert!(
        watch
            .wait_for(Duration::from_secs(10), |v| is_event(
                v,
                "added",
                "upstream:origin"
            ))
            .is_some(),
        "upstream never listed:\n{}",
        watch.transcript()
    );
    watch.drain_for(Duration::from_millis(300));

    // Plug the drive in.
    drive.mount();
    let plugged = Instant::now();
    let prefix = usb_prefix(&drive);
    let added = watch
        .wait_for(Duration::from_secs(5), |v| is_event(v, "added", &prefix))
        .unwrap_or_else(|| panic!("drive never listed:\n{}", watch.transcript()));
    let latency = added.at.saturating_duration_since(plugged);
    eprintln!("added: {latency:?} after plugged");
    assert!(
        latency <= Duration::from_secs(1),
        "drive listed after {latency:?} (more than 1 s)"
    );

    let source = &added.value["source"];
    assert_eq!(source["kind"], "usb");
    assert_eq!(source["name"], label.as_str(), "{source}");
    assert_eq!(source["state"], "ready", "{source}");
    let repo_path = drive.mount_point.join(".ostree/repo");
    assert_eq!(
        source["id"],
        format!(
            "usb:{}:{}",
            drive.mount_point.display(),
            repo_path.display()
        )
    );
    assert_eq!(source["uri"], format!("file://{}", repo_path.display()));
    let r =
        offered(source, COLLECTION, REF).unwrap_or_else(|| panic!("{REF} not offered: {source}"));
    assert_eq!(r["commit"], commit.as_str());
    assert_eq!(r["timestamp"], timestamp);
    assert_eq!(r["version"], "1.0");
    assert!(source["last_modified"].is_u64(), "{source}");

    // Pull it out.
    let unplugged = Instant::now();
    drive.umount();
    let removed = watch
        .wait_for(Duration::from_secs(5), |v| is_event(v, "removed", &prefix))
        .unwrap_or_else(|| panic!("drive never removed:\n{}", watch.transcript()));
    let latency = removed.at.saturating_duration_since(unplugged);
    eprintln!("removed: {latency:?} after unplugged");
    assert!(
        latency <= Duration::from_secs(1),
        "drive removed after {latency:?} (more than 1 s)"
    );
}

#[test]
fn sources_usb_symlink_escaping_the_drive_is_rejected() {
    let s = setup();
    // A valid repository of the right collection, outside the drive (in /tmp).
    let outside = tempfile::tempdir().expect("tempdir");
    let outside_repo = OstreeRepo::create(&outside.path().join("repo"), COLLECTION, REF);

    let drive = LoopDrive::new("ESCAPE");
    drive.prepare(|mount| {
        s.upstream.create_usb(mount, REF);
        fs::create_dir_all(mount.join(".ostree/repos.d")).unwrap();
        symlink(&outside_repo.path, mount.join(".ostree/repos.d/00-x")).unwrap();
    });
    drive.mount();

    let (sources, stderr) = list_sources(&s.client, &[]);
    let ours: Vec<&Value> = sources
        .iter()
        .filter(|v| {
            v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&usb_prefix(&drive)))
        })
        .collect();
    // The drive's own repository is offered; the escaping link is not.
    assert_eq!(ours.len(), 1, "{sources:#?}");
    assert_eq!(
        ours[0]["uri"],
        format!(
            "file://{}",
            drive.mount_point.join(".ostree/repo").display()
        )
    );
    assert!(
        !sources.iter().any(|v| v["uri"]
            .as_str()
            .is_some_and(|u| u.contains(&outside_repo.path.display().to_string()))),
        "{sources:#?}"
    );
    let link = drive.mount_point.join(".ostree/repos.d/00-x");
    let reason = stderr
        .lines()
        .find(|l| l.contains("rejected repository") && l.contains(&link.display().to_string()))
        .unwrap_or_else(|| panic!("no rejection logged for {}:\n{stderr}", link.display()));
    assert!(
        reason.contains("different file system"),
        "unexpected reason: {reason}"
    );
    drive.umount();
}

#[test]
fn sources_usb_drive_of_another_collection_is_not_offered() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = OstreeRepo::create(&dir.path().join("other"), "org.other.Os", REF);

    let foreign = LoopDrive::new("FOREIGN");
    foreign.prepare(|mount| other.create_usb(mount, REF));
    // A drive with the right collection, mounted at the same time: proves the
    // scan ran and that only the foreign one is left out.
    let ours = LoopDrive::new("OURS");
    ours.prepare(|mount| s.upstream.create_usb(mount, REF));
    foreign.mount();
    ours.mount();

    let (sources, stderr) = list_sources(&s.client, &[]);
    let listed = |drive: &LoopDrive| {
        sources.iter().any(|v| {
            v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&usb_prefix(drive)))
        })
    };
    assert!(
        listed(&ours),
        "control drive not listed:\n{sources:#?}\n{stderr}"
    );
    assert!(!listed(&foreign), "foreign drive offered:\n{sources:#?}");
    assert!(
        !sources
            .iter()
            .any(|v| offered(v, "org.other.Os", REF).is_some()),
        "{sources:#?}"
    );
    foreign.umount();
    ours.umount();
}

#[test]
fn sources_sideload_dir_offers_linked_repos_but_never_the_local_one() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = OstreeRepo::create(&dir.path().join("sideloaded"), COLLECTION, REF);
    let sideload = dir.path().join("sideload-repos");
    fs::create_dir(&sideload).unwrap();
    symlink(&copy.path, sideload.join("stick")).unwrap();
    symlink(&s.client.path, sideload.join("myself")).unwrap();

    let sideload_arg = sideload.display().to_string();
    let (sources, stderr) =
        list_sources(&s.client, &["--no-mounts", "--sideload-dir", &sideload_arg]);
    let usb: Vec<&Value> = sources.iter().filter(|v| v["kind"] == "usb").collect();
    assert_eq!(usb.len(), 1, "{sources:#?}\n{stderr}");
    let canonical = fs::canonicalize(&copy.path).unwrap();
    assert_eq!(usb[0]["uri"], format!("file://{}", canonical.display()));
    assert_eq!(usb[0]["name"], "stick");
    assert!(offered(usb[0], COLLECTION, REF).is_some(), "{:#}", usb[0]);
    let line = stderr
        .lines()
        .find(|l| l.contains("rejected repository") && l.contains("myself"))
        .unwrap_or_else(|| panic!("local repository not rejected:\n{stderr}"));
    assert!(line.contains("local repository"), "{line}");
}

#[test]
fn sources_upstream_and_static_sources_report_their_state() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("not-a-repo");
    fs::create_dir(&empty).unwrap();
    let missing = format!("file://{}", empty.display());
    // Nothing listens on port 9 of the loopback: connection refused.
    let refused = "http://127.0.0.1:9/repo";
    let good = format!("file://{}", s.upstream.path.display());
    let (sources, stderr) = list_sources(
        &s.client,
        &[
            "--no-mounts",
            "--static-source",
            &missing,
            "--static-source",
            refused,
            "--static-source",
            &good,
        ],
    );
    let by_id = |id: &str| {
        sources
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed:\n{sources:#?}\n{stderr}"))
    };
    let upstream = by_id("upstream:origin");
    assert_eq!(upstream["kind"], "internet");
    assert_eq!(upstream["state"], "ready");
    assert_eq!(upstream["remote"], "origin");
    assert_eq!(
        offered(upstream, COLLECTION, REF).unwrap()["commit"],
        s.upstream.rev_parse(REF).as_str()
    );
    assert_eq!(
        upstream["last_modified"],
        s.upstream.summary_last_modified()
    );

    assert_eq!(by_id(&format!("static:{missing}"))["state"], "not-serving");
    let refused = by_id(&format!("static:{refused}"));
    assert_eq!(refused["state"], "unreachable", "{refused}");
    assert_eq!(refused["name"], "127.0.0.1");
    let good = by_id(&format!("static:{good}"));
    assert_eq!(good["kind"], "static");
    assert_eq!(good["state"], "ready");
}

#[test]
fn sources_stale_drive_is_outdated_but_still_listed() {
    let s = setup();
    let old_commit = s.upstream.rev_parse(REF);
    let old_time = s.upstream.commit_timestamp(REF);
    let drive = LoopDrive::new("STALE");
    drive.prepare(|mount| s.upstream.create_usb(mount, REF));
    // The upstream moves on after the stick was made.
    let new_commit = s.upstream.commit_at(REF, "2.0", Some(old_time + 100));
    drive.mount();

    let (sources, stderr) = list_sources(&s.client, &[]);
    let usb = sources
        .iter()
        .find(|v| {
            v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&usb_prefix(&drive)))
        })
        .unwrap_or_else(|| panic!("drive not listed:\n{sources:#?}\n{stderr}"));
    assert_eq!(usb["state"], "outdated", "{usb}");
    assert_eq!(
        offered(usb, COLLECTION, REF).unwrap()["commit"],
        old_commit.as_str()
    );
    let upstream = sources
        .iter()
        .find(|v| v["id"] == "upstream:origin")
        .unwrap();
    assert_eq!(upstream["state"], "ready", "{upstream}");
    let r = offered(upstream, COLLECTION, REF).unwrap();
    assert_eq!(r["commit"], new_commit.as_str());
    assert_eq!(r["timestamp"], old_time + 100);
    assert_eq!(r["version"], "2.0");
    drive.umount();
}

#[test]
fn sources_config_static_sources_and_sideload_dirs() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let sideload = dir.path().join("sideload-repos");
    fs::create_dir(&sideload).unwrap();
    // The same commit as the upstream's, so both are up to date.
    symlink(&s.upstream.path, sideload.join("from-config")).unwrap();
    let static_uri = format!("file://{}", s.upstream.path.display());

    // `[ferry] static-sources` and `sideload-dirs`, set as any key file editor would.
    let config = s.client.path.join("config");
    let key_file = glib::KeyFile::new();
    key_file
        .load_from_file(&config, glib::KeyFileFlags::KEEP_COMMENTS)
        .unwrap();
    key_file.set_value("ferry", "static-sources", &format!("{static_uri};"));
    key_file.set_value(
        "ferry",
        "sideload-dirs",
        &format!("{};", sideload.display()),
    );
    key_file.save_to_file(&config).unwrap();

    let (sources, stderr) = list_sources(&s.client, &["--no-mounts"]);
    let static_source = sources
        .iter()
        .find(|v| v["id"] == format!("static:{static_uri}"))
        .unwrap_or_else(|| panic!("configured static source missing:\n{sources:#?}\n{stderr}"));
    assert_eq!(static_source["state"], "ready");
    let usb: Vec<&Value> = sources.iter().filter(|v| v["kind"] == "usb").collect();
    assert_eq!(usb.len(), 1, "{sources:#?}\n{stderr}");
    assert_eq!(usb[0]["name"], "from-config");

    // The same static source given on the command line is listed once.
    let (sources, _) = list_sources(&s.client, &["--no-mounts", "--static-source", &static_uri]);
    assert_eq!(sources.iter().filter(|v| v["kind"] == "static").count(), 1);
}
