//! The drive transport (`fetch::engine::drive`): every `file://` source, named with
//! `ferryctl pull PATH` too, is read by the engine with its deadlines. Repositories
//! are made by the real `ostree`; every `ferryctl` runs bounded in time with
//! `FERRY_LAN_INTERFACES=none`; directories are removed by their guards.

use super::hostile_drives::bounded;
use super::*;

/// A client whose remote `origin` points nowhere: whatever it gets comes from the
/// path given to `pull`.
fn client() -> Client {
    Client::new(&format!("http://127.0.0.1:{}", refused_port()), Trust::None)
}

/// `ferryctl pull PATH` used to read the repository with no deadline: a drive
/// that stopped answering hung it for good. Now it fails once the drive deadline
/// has passed, naming the drive, and nothing moves.
#[test]
fn pull_from_a_drive_that_stops_answering_fails_naming_it() {
    let up = Upstream::new(10, 400);
    let drive = up.snapshot("stick");
    let client = client();
    let hang = fs::canonicalize(&drive).unwrap().display().to_string();
    let mut pull = client.ferryctl();
    pull.args(["pull", &hang, REF]).envs([
        ("FERRY_TEST_HANG_DRIVE", hang.as_str()),
        ("FERRY_DRIVE_TIMEOUT", "2"),
    ]);
    let started = Instant::now();
    let (ok, _, stderr) = bounded(&mut pull, Duration::from_secs(30));
    assert!(!ok, "the pull of a hanging drive succeeded:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("not answering") && stderr.contains(&hang),
        "the error does not say the drive stopped answering: {stderr}"
    );
    assert_eq!(client.ref_commit(), None);
    assert_ostree_fsck(&client.repo);

    // The same drive answering: the pull completes through the drive transport.
    let report = {
        let out = client
            .ferryctl()
            .args(["--json", "pull", &hang, REF])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let commit = up.latest();
    assert_eq!(report["commit"], commit, "{report}");
    assert_eq!(
        report["objects_fetched"],
        closure(&up.repo, commit).len() as u64 + 1,
        "{report}"
    );
    client.assert_at(commit);
}
