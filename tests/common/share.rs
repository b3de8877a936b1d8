//! Fixtures for tests/share: an upstream repository signed by the real `ostree`,
//! Ferry repositories, an `ostree` client, and `ferryctl serve` processes; with
//! `drive`, `lan` (namespaces, avahi-daemons and a private D-Bus system bus where
//! libostree needs one) and `http` (a raw client).
//!
//! Everything is removed by Drop guards, also when a test fails: processes are
//! killed by process group, drives unmounted, namespaces deleted, the GPG agent
//! stopped. mDNS only ever runs inside namespaces made here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

pub use super::cmd::{describe, kill_group, output, run, text};
pub use super::drive::LoopDrive;
pub use super::gpg::Signer;
pub use super::http::{closed_within, connect_from, parse_response, raw_http, request, Response};
pub use super::json_lines::JsonLines;
pub use super::lan::{random_suffix, Avahi, AvahiOptions, Lan, Netns, ADDR_A, ADDR_B};
use super::repo;
pub use super::{ferryctl, ferryctl_path, file_uri, ostree, tempdir, COLLECTION, REF};

/// The user id of the signing keys made here.
pub const SIGNER: &str = "ferry-test@example.org";

pub fn random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    rand::Rng::fill(&mut rand::rng(), &mut data[..]);
    fs::write(path, data).expect("write random file");
}

/// `ostree find-remotes --finders=mount` reads every mounted drive, so tests whose
/// drives hold the test collection hold this from mount to unmount: a test never
/// pulls from another's drive.
pub fn collection_drive_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The upstream: `ostree init --mode=archive --collection-id`, signed commits on REF.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Upstream {
    /// One signed commit (version 1.0) holding `big` random bytes and small files.
    pub fn new(gpg: &Signer, big: usize) -> Self {
        let dir = tempdir();
        let path = dir.path().join("upstream");
        repo::ostree_init(&path);
        let upstream = Self { dir, path };
        upstream.commit(gpg, "1.0", big);
        upstream
    }

    /// A new signed commit on REF; its checksum.
    pub fn commit(&self, gpg: &Signer, version: &str, big: usize) -> String {
        let tree = tempdir();
        fs::create_dir_all(tree.path().join("usr/share")).unwrap();
        fs::write(
            tree.path().join("os-release"),
            format!("VERSION={version}\n"),
        )
        .unwrap();
        random_file(&tree.path().join("usr/share/big"), big);
        for i in 0..20 {
            fs::write(
                tree.path().join(format!("usr/share/small-{i}")),
                format!("{version} {i}\n"),
            )
            .unwrap();
        }
        let metadata = format!("--add-metadata-string=version={version}");
        let subject = format!("Version {version}");
        repo::ostree_commit(&self.path, REF, tree.path(), &[&metadata, "-s", &subject]);
        gpg.sign(&self.path, REF);
        run(ostree(&self.path).args(["summary", "-u"]));
        self.rev(REF)
    }

    pub fn rev(&self, rev: &str) -> String {
        run(ostree(&self.path).args(["rev-parse", rev]))
            .trim()
            .to_owned()
    }

    pub fn uri(&self) -> String {
        file_uri(&self.path)
    }
}

/// A Ferry repository: `ferryctl init`, remote `origin` (the collection, the key),
/// `origin:REF` tracked.
pub struct FerryRepo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl FerryRepo {
    pub fn new(origin_url: &str, gpg: &Signer) -> Self {
        Self::with_mode(origin_url, gpg, "archive")
    }

    /// [`new`](Self::new) with `ferryctl init --mode MODE`.
    pub fn with_mode(origin_url: &str, gpg: &Signer, mode: &str) -> Self {
        let dir = tempdir();
        let path = dir.path().join("ferry");
        run(ferryctl(&path).args(["init", "--mode", mode]));
        run(ferryctl(&path)
            .args([
                "remote",
                "add",
                "origin",
                origin_url,
                "--collection-id",
                COLLECTION,
            ])
            .arg("--gpg-import")
            .arg(&gpg.public));
        run(ferryctl(&path).args(["track", "origin", REF]));
        Self { dir, path }
    }

    /// A Ferry repository holding the upstream's REF (pulled with `ferryctl pull`).
    pub fn with_upstream(upstream: &Upstream, gpg: &Signer) -> Self {
        let repo = Self::new(&upstream.uri(), gpg);
        repo.pull_from(&upstream.path);
        repo
    }

    pub fn pull_from(&self, source: &Path) {
        run(ferryctl(&self.path).args(["pull", &file_uri(source), REF]));
    }

    pub fn ferryctl(&self) -> Command {
        ferryctl(&self.path)
    }

    pub fn origin_ref(&self) -> Option<String> {
        fs::read_to_string(self.path.join("refs/remotes/origin").join(REF))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The largest `.filez` object (the big random file).
    pub fn largest_object(&self) -> (String, u64) {
        let mut best = (String::new(), 0);
        for dir in fs::read_dir(self.path.join("objects")).unwrap().flatten() {
            for file in fs::read_dir(dir.path()).unwrap().flatten() {
                let len = file.metadata().unwrap().len();
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".filez") && len > best.1 {
                    best = (
                        format!("objects/{}/{name}", dir.file_name().to_string_lossy()),
                        len,
                    );
                }
            }
        }
        best
    }
}

/// A client made by the real tool: `ostree init --mode=archive`, remote `origin`
/// (collection ID, GPG keyring, an unusable URL).
pub struct OstreeClient {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl OstreeClient {
    pub fn new(gpg: &Signer) -> Self {
        let dir = tempdir();
        let path = dir.path().join("client");
        run(ostree(&path).args(["init", "--mode=archive"]));
        run(ostree(&path)
            .args(["remote", "add"])
            .arg(format!("--collection-id={COLLECTION}"))
            .arg(format!("--gpg-import={}", gpg.public.display()))
            .args(["origin", "http://invalid.invalid/"]));
        Self { dir, path }
    }

    /// The commit `(COLLECTION, REF)` points at after a P2P pull: libostree writes
    /// it for the remote whose keyring verified it (`refs/remotes/origin/`), or as
    /// a mirror of the collection (`refs/mirrors/`).
    pub fn collection_ref(&self) -> Option<String> {
        [
            self.path.join("refs/remotes/origin").join(REF),
            self.path.join("refs/mirrors").join(COLLECTION).join(REF),
        ]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
    }

    pub fn fsck(&self) {
        run(ostree(&self.path).arg("fsck"));
    }

    /// `ostree find-remotes --finders=mount --pull COLLECTION REF`, which must
    /// succeed; its stdout.
    pub fn pull_from_drives(&self) -> String {
        let out = output(ostree(&self.path).args([
            "find-remotes",
            "--finders=mount",
            "--pull",
            COLLECTION,
            REF,
        ]));
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "find-remotes failed:\n{stdout}\n{}",
            text(&out.stderr)
        );
        stdout
    }
}

// ---------------------------------------------------------------------------
// ferryctl serve
// ---------------------------------------------------------------------------

/// A running `ferryctl --json serve`, its JSON lines read as they come.
pub struct Server {
    process: JsonLines,
    /// The `serving` event.
    pub serving: Value,
    pub port: u16,
}

impl Server {
    /// Spawns `cmd` (which must end in `--json serve …`) and waits for "serving".
    pub fn spawn(cmd: Command) -> Self {
        let mut process = JsonLines::spawn(cmd);
        let Some(serving) = process.wait_for(Duration::from_secs(30), |v| v["event"] == "serving")
        else {
            panic!(
                "ferryctl serve did not say it was serving:\n{}",
                process.transcript()
            );
        };
        let port = serving.value["port"].as_u64().expect("port") as u16;
        Self {
            process,
            serving: serving.value,
            port,
        }
    }

    /// The lines printed so far.
    pub fn seen(&self) -> impl Iterator<Item = &Value> {
        self.process.seen.iter().map(|l| &l.value)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn transcript(&self) -> String {
        self.process.transcript()
    }

    /// Waits for a JSON line matching `pred` (lines already seen count).
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        match self.process.wait_for(timeout, pred) {
            Some(line) => line.value,
            None => panic!(
                "ferryctl serve did not print what was expected:\n{}",
                self.transcript()
            ),
        }
    }

    /// SIGTERM (or SIGINT), then waits for a clean exit.
    pub fn terminate(&mut self, signal: libc::c_int) {
        self.process.signal(signal);
        let status = self.process.wait_exit(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "ferryctl serve did not stop cleanly ({status:?}):\n{}",
            self.transcript()
        );
    }

    /// What each open descriptor is (for failure messages).
    pub fn describe_fds(&self) -> String {
        let dir = format!("/proc/{}/fd", self.process.pid());
        let mut out = String::new();
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let target = fs::read_link(entry.path()).unwrap_or_default();
            out.push_str(&format!(
                "{} -> {}\n",
                entry.file_name().to_string_lossy(),
                target.display()
            ));
        }
        out
    }

    /// The server process's resident memory (VmRSS), in KiB.
    pub fn vm_rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.process.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Descriptors the server process has open now.
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.process.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}
