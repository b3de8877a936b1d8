//! Hostile and failing drives (issue 11, items 3–5). A repository behind a
//! sideload link (the same code as a USB drive) with a FIFO, a socket, or a symlink
//! to `/dev/zero`, `/proc/self/pagemap` or out of the repository where a file
//! should be; a drive that stops answering; a drive whose reads start failing
//! with `EIO` mid-pull. Each must be refused or dropped with a clear reason naming
//! it, while the other sources carry on and the client stays `ostree fsck` clean.
//!
//! Every `ferryctl` runs bounded in time (a hang fails the test, it does not hang
//! it), with `--no-lan --no-mounts` and `FERRY_LAN_INTERFACES=none`; the HTTP
//! server binds 127.0.0.1 only. Drives and processes are removed on drop.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::engine::*;
use crate::DriveBesideUpstream;
use serde_json::Value;

/// An upstream served over HTTP, a client tracking it, and a copy of the upstream
/// (the "drive") linked from a sideload directory.
/// The commit is signed and the client verifies it: drives are used only for
/// remotes that verify signatures.
struct Fixture {
    up: Upstream,
    _server: Server,
    client: Client,
    sideload: tempfile::TempDir,
    drive: PathBuf,
    _signer: Signer,
}

impl Fixture {
    fn new() -> Self {
        let up = Upstream::new(40, 600);
        let signer = Signer::new("drives@example.org");
        signer.sign(&up.repo, up.latest());
        let server = Server::start(&up.repo, ServeOptions::default());
        let client = Client::new(&server.url(), Trust::Gpg(&signer.public));
        let drive = up.snapshot("stick");
        let sideload = tempdir();
        symlink(&drive, &sideload.path().join("stick"));
        Fixture {
            up,
            _server: server,
            client,
            sideload,
            drive,
            _signer: signer,
        }
    }

    fn discovery(&self) -> Vec<String> {
        vec![
            "--sideload-dir".into(),
            self.sideload.path().display().to_string(),
        ]
    }

    /// The source id discovery gives the drive.
    fn drive_id(&self) -> String {
        format!(
            "usb:{}:{}",
            self.sideload.path().display(),
            fs::canonicalize(&self.drive).unwrap().display()
        )
    }

    fn commit(&self) -> String {
        self.up.latest().to_owned()
    }

    /// `objects/XX/….EXT` of the latest commit on the drive.
    fn commit_object(&self, ext: &str) -> PathBuf {
        self.drive
            .join(object_path(&format!("{}.{ext}", self.commit())))
    }

    /// Some `.filez` of the latest commit on the drive.
    fn some_filez(&self) -> PathBuf {
        let files = files_of(&closure(&self.up.repo, &self.commit()));
        self.drive.join(object_path(&files[files.len() / 2]))
    }

    /// `ferryctl sources --json` with the drive, bounded; the sources and stderr.
    fn sources(&self, env: &[(&str, &str)]) -> (Vec<Value>, String) {
        let mut cmd = self.client.ferryctl();
        cmd.args(self.discovery()).args(["sources", "--json"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (ok, stdout, stderr) = bounded(&mut cmd, Duration::from_secs(40));
        assert!(ok, "ferryctl sources failed:\n{stdout}\n{stderr}");
        match serde_json::from_str(&stdout) {
            Ok(Value::Array(items)) => (items, stderr),
            _ => panic!("ferryctl sources --json printed no array:\n{stdout}\n{stderr}"),
        }
    }

    /// `ferryctl update` with the drive, bounded; must succeed.
    fn update(&self) -> UpdateRun {
        let discovery = self.discovery();
        let discovery: Vec<&str> = discovery.iter().map(String::as_str).collect();
        self.client
            .spawn_update(&discovery, &[])
            .finish(Duration::from_secs(90))
            .ok()
    }
}

/// Runs `cmd` to completion, at most `limit`: a command still running then is
/// killed and the test fails (a hang is the bug these tests are about).
pub(crate) fn bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let out = tempdir();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start ferryctl");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferryctl did not return within {limit:?} (hung):\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        fs::read_to_string(&stdout).unwrap(),
        fs::read_to_string(&stderr).unwrap(),
    )
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let name = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(name.as_ptr(), 0o644) },
        0,
        "mkfifo {path:?}"
    );
}

fn replace_with_symlink(path: &Path, target: &str) {
    fs::remove_file(path).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// The drive is not offered, the reason (naming it and containing each of
/// `expected`) is printed, the upstream is still offered, and an update completes
/// from the upstream with the client `ostree fsck` clean.
fn assert_drive_refused(f: &Fixture, expected: &[&str]) {
    let (sources, stderr) = f.sources(&[]);
    assert!(
        !sources.iter().any(|s| s["kind"] == "usb"),
        "the hostile drive was offered: {sources:#?}"
    );
    let upstream = sources
        .iter()
        .find(|s| s["id"] == "upstream:origin")
        .unwrap_or_else(|| panic!("the upstream is missing: {sources:#?}"));
    assert_eq!(upstream["state"], "ready", "{upstream:#}");
    let line = stderr
        .lines()
        .find(|l| l.contains("rejected repository") && l.contains("stick"))
        .unwrap_or_else(|| panic!("no rejection of the drive:\n{stderr}"));
    for word in expected {
        assert!(line.contains(word), "“{word}” not in: {line}");
    }

    let run = f.update();
    let counts = run.counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["upstream:origin"],
        "{counts:?}"
    );
    f.client.assert_at(&f.commit());
}

/// The update completes from the upstream after the drive was dropped with a
/// reason containing each of `expected`.
fn assert_drive_dropped(f: &Fixture, run: &UpdateRun, expected: &[&str]) {
    let dropped = run.dropped();
    let (_, reason) = dropped
        .iter()
        .find(|(id, _)| *id == f.drive_id())
        .unwrap_or_else(|| panic!("the drive was not dropped: {dropped:?}\n{}", run.debug()));
    for word in expected {
        assert!(reason.contains(word), "“{word}” not in: {reason}");
    }
    assert!(!reason.contains("bad object"), "{reason}");
    run.assert_fetched_exactly(&closure(&f.up.repo, &f.commit()));
    f.client.assert_at(&f.commit());
}

// ---------------------------------------------------------------------------
// Item 3: files that are not files, refused at discovery
// ---------------------------------------------------------------------------

#[test]
fn fifo_at_a_ref_is_refused() {
    let f = Fixture::new();
    mkfifo(&f.drive.join("refs/heads").join(REF));
    assert_drive_refused(&f, &["FIFO", "refs/heads/os/stable"]);
}

#[test]
fn fifo_at_the_summary_is_refused() {
    let f = Fixture::new();
    mkfifo(&f.drive.join("summary"));
    assert_drive_refused(&f, &["FIFO", "summary"]);
}

#[test]
fn fifo_at_the_commit_is_refused() {
    let f = Fixture::new();
    mkfifo(&f.commit_object("commit"));
    assert_drive_refused(&f, &["FIFO", ".commit"]);
}

#[test]
fn socket_at_a_ref_is_refused() {
    let f = Fixture::new();
    let path = f.drive.join("refs/heads").join(REF);
    fs::remove_file(&path).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    assert_drive_refused(&f, &["socket", "refs/heads/os/stable"]);
}

#[test]
fn summary_linked_to_dev_zero_is_refused() {
    let f = Fixture::new();
    replace_with_symlink(&f.drive.join("summary"), "/dev/zero");
    assert_drive_refused(&f, &["summary", "leads out of"]);
}

#[test]
fn commit_linked_to_proc_pagemap_is_refused() {
    let f = Fixture::new();
    replace_with_symlink(&f.commit_object("commit"), "/proc/self/pagemap");
    assert_drive_refused(&f, &[".commit", "leads out of"]);
}

#[test]
fn summary_linked_out_of_the_repository_is_refused() {
    let f = Fixture::new();
    // A real summary, but the upstream's, next to the drive: outside it.
    replace_with_symlink(&f.drive.join("summary"), "../repo/summary");
    assert!(f.drive.join("summary").is_file());
    assert_drive_refused(&f, &["summary", "leads out of"]);
}

// ---------------------------------------------------------------------------
// Item 3: files that are not files, met by the engine
// ---------------------------------------------------------------------------

#[test]
fn fifo_at_a_filez_drops_the_drive_and_the_update_completes() {
    let f = Fixture::new();
    mkfifo(&f.some_filez());
    let run = f.update();
    assert_drive_dropped(&f, &run, &["FIFO", ".filez"]);
    assert!(run.counts().get("upstream:origin").is_some_and(|n| *n > 0));
}

#[test]
fn fifo_at_the_commitmeta_drops_the_drive_and_the_update_completes() {
    let f = Fixture::new();
    mkfifo(&f.commit_object("commitmeta"));
    let run = f.update();
    assert_drive_dropped(&f, &run, &["FIFO", ".commitmeta"]);
}

// ---------------------------------------------------------------------------
// Item 4: a drive that stops answering
// ---------------------------------------------------------------------------

/// `FERRY_TEST_HANG_DRIVE` makes every read of the drive hang for good (there is
/// no device mapper or FUSE library here to make a real one hang).
#[test]
fn hanging_drive_blocks_neither_sources_nor_check_nor_update() {
    let f = Fixture::new();
    let hang = fs::canonicalize(&f.drive).unwrap().display().to_string();
    let env = [
        ("FERRY_TEST_HANG_DRIVE", hang.as_str()),
        ("FERRY_DRIVE_TIMEOUT", "2"),
    ];

    let started = Instant::now();
    let (sources, stderr) = f.sources(&env);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!sources.iter().any(|s| s["kind"] == "usb"), "{sources:#?}");
    assert!(
        sources
            .iter()
            .any(|s| s["id"] == "upstream:origin" && s["state"] == "ready"),
        "{sources:#?}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("not answering")
                && l.contains(&f.sideload.path().display().to_string())),
        "the drive was not reported as not answering:\n{stderr}"
    );

    // The same drive as a static source: its summary read hangs.
    let drive_uri = file_uri(&f.drive);
    let mut check = f.client.ferryctl();
    check
        .args(["--static-source", &drive_uri, "check", "--json"])
        .envs(env);
    let (ok, stdout, stderr) = bounded(&mut check, Duration::from_secs(40));
    assert!(ok, "check failed:\n{stdout}\n{stderr}");

    let mut update = f.client.ferryctl();
    update
        .args(["--static-source", &drive_uri, "update", "--json"])
        .envs(env);
    let (ok, stdout, stderr) = bounded(&mut update, Duration::from_secs(60));
    assert!(ok, "update failed:\n{stdout}\n{stderr}");
    f.client.assert_at(&f.commit());
}

// ---------------------------------------------------------------------------
// Item 5: a drive failing mid-pull is lost, not a sender of bad objects
// ---------------------------------------------------------------------------

#[test]
fn drive_failing_with_eio_mid_pull_is_lost_and_http_completes() {
    let f = DriveBesideUpstream::new("FERRYEIO");
    let (commit, usb_id, client) = (&f.commit, &f.usb_id, &f.client);
    let live = f.update_stopped_after(150);
    // The pull is frozen: make the stick fail (reads now end in EIO), let it go on.
    f.drive.fail_reads();
    live.signal(libc::SIGCONT);
    let run = live.finish(Duration::from_secs(90)).ok();

    run.assert_fetched_exactly(&closure(&f.up.repo, commit));
    let counts = run.counts();
    assert!(
        counts.get("upstream:origin").is_some_and(|n| *n > 0),
        "the drive served everything: {counts:?}"
    );
    let dropped = run.dropped();
    let (_, reason) = dropped
        .iter()
        .find(|(id, _)| id == usb_id)
        .unwrap_or_else(|| panic!("the drive was not dropped: {dropped:?}"));
    assert!(!reason.contains("bad object"), "{reason}");
    assert!(reason.contains("the drive is gone"), "{reason}");
    client.assert_at(commit);
}
