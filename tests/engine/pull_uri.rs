//! `ferryctl pull URI REF`: any URI (a path, `file://`, `http://`) from that one
//! source, no discovery. Repositories are made by the real `ostree` and served by
//! `tests/common/serve.py` on 127.0.0.1; every server, child and directory is
//! removed by its guard, also when a test fails.

use super::*;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `ferryctl --json pull ARGS…` of `client`: (success, stdout JSON or Null, stderr).
fn pull(client: &Client, args: &[&str]) -> (bool, Value, String) {
    let out = client
        .ferryctl()
        .args(["--json", "pull"])
        .args(args)
        .output()
        .expect("run ferryctl pull");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

fn pull_ok(client: &Client, args: &[&str]) -> Value {
    let (ok, json, stderr) = pull(client, args);
    assert!(ok, "ferryctl pull {args:?} failed:\n{stderr}");
    json
}

/// A client whose remote `origin` points nowhere: whatever it gets comes from the
/// URI given to `pull`.
fn client(trust: Trust<'_>) -> Client {
    Client::new(&format!("http://127.0.0.1:{}", refused_port()), trust)
}

#[test]
fn pull_over_http_from_an_ostree_repository() {
    let up = Upstream::new(30, 700);
    let commit = up.latest().to_owned();
    let server = Server::start(&up.repo, ServeOptions::default());
    let client = client(Trust::None);

    let report = pull_ok(&client, &[&server.url(), REF]);
    assert_eq!(report["commit"], commit.as_str(), "{report}");
    assert_eq!(report["remote"], "origin", "{report}");
    assert_eq!(report["ref"], REF, "{report}");
    assert!(report["previous"].is_null(), "{report}");
    // Everything under the commit, and the commit, came over HTTP.
    let closure = closure(&up.repo, &commit);
    assert_eq!(
        report["objects_fetched"],
        closure.len() as u64 + 1,
        "{report}"
    );
    assert_eq!(report["objects_present"], 0, "{report}");
    let requested: std::collections::BTreeSet<String> =
        server.object_requests().into_iter().collect();
    assert!(
        closure.is_subset(&requested),
        "objects not fetched from the server"
    );
    assert!(server.requests().iter().any(|p| p == "summary"));
    client.assert_at(&commit);

    // Again: up to date, nothing fetched, the ref was already there.
    let again = pull_ok(&client, &[&server.url(), REF]);
    assert_eq!(again["objects_fetched"], 0, "{again}");
    assert_eq!(again["previous"], commit.as_str(), "{again}");
    assert_eq!(again["objects_present"], closure.len() as u64, "{again}");
}

#[test]
fn pull_from_a_relative_path_and_a_file_uri() {
    let mut up = Upstream::new(10, 400);
    let first = up.latest().to_owned();
    let client = client(Trust::None);
    // A path relative to the working directory, as `ostree pull-local` takes.
    let (ok, report, stderr) = {
        let out = client
            .ferryctl()
            .current_dir(up.dir.path())
            .args(["--json", "pull", "repo", REF])
            .output()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(ok, "{stderr}");
    assert_eq!(report["commit"], first.as_str(), "{report}");
    client.assert_at(&first);

    // A newer commit by file:// URI: only what changed travels.
    let second = up.commit_again(3);
    let report = pull_ok(&client, &[&file_uri(&up.repo), REF]);
    assert_eq!(report["commit"], second.as_str(), "{report}");
    assert_eq!(report["previous"], first.as_str(), "{report}");
    let new = closure(&up.repo, &second)
        .difference(&closure(&up.repo, &first))
        .count() as u64;
    assert_eq!(report["objects_fetched"], new + 1, "{report}");
    client.assert_at(&second);
}

#[test]
fn unsigned_commit_over_http_refused_for_a_verifying_remote() {
    let up = Upstream::new(5, 300);
    let commit = up.latest().to_owned();
    let server = Server::start(&up.repo, ServeOptions::default());
    let signer = Signer::new("pull-uri@example.org");
    let client = client(Trust::Gpg(&signer.public));

    let (ok, _, stderr) = pull(&client, &[&server.url(), REF]);
    assert!(!ok, "an unsigned commit was accepted");
    let lower = stderr.to_lowercase();
    assert!(
        stderr.contains(REF) && lower.contains("sign"),
        "the error does not say the commit of {REF} is not signed: {stderr}"
    );
    // Nothing under the commit was asked for, and nothing moved.
    assert!(
        server
            .object_requests()
            .iter()
            .all(|o| o.ends_with(".commit") || o.ends_with(".commitmeta")),
        "objects were fetched before the commit was trusted: {:?}",
        server.object_requests()
    );
    assert_eq!(client.ref_commit(), None);
    assert_ostree_fsck(&client.repo);

    // Signed by the trusted key: accepted.
    signer.sign(&up.repo, &commit);
    let report = pull_ok(&client, &[&server.url(), REF]);
    assert_eq!(report["commit"], commit.as_str(), "{report}");
    client.assert_at(&commit);
}

#[test]
fn killed_pull_resumes_and_ostree_fsck_is_clean() {
    let up = Upstream::new(300, 2000);
    let commit = up.latest().to_owned();
    let all = closure(&up.repo, &commit);
    let slow = Server::start(
        &up.repo,
        ServeOptions {
            rate: Some(100_000),
            ..Default::default()
        },
    );
    let client = client(Trust::None);
    /// Kills and reaps the child on drop, also when the test fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(
        client
            .ferryctl()
            .args(["pull", &slow.url(), REF])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferryctl pull"),
    );
    // Past a checkpoint (every 2 s), well before the end (600 KB at 100 KB/s).
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || {
            started.elapsed() > Duration::from_secs(3) && slow.object_requests().len() >= 60
        }),
        "the pull did not get going"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the pull ended before it could be killed"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    assert_eq!(client.ref_commit(), None, "the ref moved mid-pull");
    assert_ostree_fsck(&client.repo);
    let kept = stored_objects(&client.repo);
    let kept_of_closure = all.intersection(&kept).count();
    assert!(
        kept_of_closure > 0,
        "nothing was checkpointed before the kill"
    );

    // The rerun asks only for what is missing.
    let fast = Server::start(&up.repo, ServeOptions::default());
    let report = pull_ok(&client, &[&fast.url(), REF]);
    assert_eq!(report["commit"], commit.as_str(), "{report}");
    let asked: Vec<String> = fast
        .object_requests()
        .into_iter()
        .filter(|o| all.contains(o))
        .collect();
    assert_eq!(
        asked.len(),
        all.len() - kept_of_closure,
        "the rerun fetched objects that had survived the kill"
    );
    client.assert_at(&commit);
    assert!(fs::read_dir(client.repo.join("state"))
        .map(|d| d
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".commitpartial")))
        .unwrap_or(true));
}
