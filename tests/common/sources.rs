//! Test environment for tests/sources_*.rs (and tests/gui.rs): real `ostree`
//! repositories, loop-mounted ext4 drives under /media, network namespaces joined by
//! veth pairs with a real avahi-daemon (common/lan.rs) and a Python HTTP server, and
//! `ferryctl sources` processes whose output is read line by line with arrival times.
//!
//! Everything created is removed by a Drop guard, also when a test fails. Every
//! external command must succeed: a test that cannot build its environment fails.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cmd;
use super::drive;
use super::lan;

#[allow(unused_imports)] // Not every test binary uses all of them.
pub use cmd::{kill_group, run, run_status};
#[allow(unused_imports)] // Not every test binary uses all of them.
pub use drive::LoopDrive;
#[allow(unused_imports)] // Not every test binary uses all of them.
pub use lan::{random_suffix, Avahi, Lan, Netns, ADDR_A, ADDR_B};

/// The collection of the upstream repository.
pub const COLLECTION: &str = "org.example.Os";
/// The tracked ref.
pub const REF: &str = "os/stable";

pub fn ferryctl_path() -> &'static str {
    env!("CARGO_BIN_EXE_ferryctl")
}

/// An `ostree` archive repository made by the real tool, with one commit on `REF`.
pub struct OstreeRepo {
    pub path: PathBuf,
    pub collection_id: String,
}

impl OstreeRepo {
    /// `ostree init --mode=archive --collection-id=ID`, a commit of a small tree on
    /// `ref_name` (with a version), then `ostree summary -u`.
    pub fn create(path: &Path, collection_id: &str, ref_name: &str) -> Self {
        run(Command::new("ostree")
            .arg(format!("--repo={}", path.display()))
            .args(["init", "--mode=archive"])
            .arg(format!("--collection-id={collection_id}")));
        let repo = Self {
            path: path.to_owned(),
            collection_id: collection_id.to_owned(),
        };
        repo.commit(ref_name, "1.0");
        repo
    }

    pub fn commit(&self, ref_name: &str, version: &str) -> String {
        self.commit_at(ref_name, version, None)
    }

    /// A commit with the given timestamp (Unix seconds), or now.
    pub fn commit_at(&self, ref_name: &str, version: &str, timestamp: Option<u64>) -> String {
        let tree = tempfile::tempdir().expect("tempdir");
        fs::write(
            tree.path().join("os-release"),
            format!("VERSION={version}\n"),
        )
        .unwrap();
        fs::create_dir(tree.path().join("usr")).unwrap();
        fs::write(tree.path().join("usr/data"), vec![7u8; 4096]).unwrap();
        run(Command::new("ostree")
            .arg(format!("--repo={}", self.path.display()))
            .args(["commit", "-b", ref_name])
            .arg(format!("--tree=dir={}", tree.path().display()))
            .arg(format!("--add-metadata-string=version={version}"))
            .args(["-s", &format!("Version {version}")])
            .args(timestamp.map(|t| format!("--timestamp=@{t}"))));
        self.update_summary();
        self.rev_parse(ref_name)
    }

    pub fn update_summary(&self) {
        run(Command::new("ostree")
            .arg(format!("--repo={}", self.path.display()))
            .args(["summary", "-u"]));
    }

    pub fn rev_parse(&self, ref_name: &str) -> String {
        run(Command::new("ostree")
            .arg(format!("--repo={}", self.path.display()))
            .args(["rev-parse", ref_name]))
        .trim()
        .to_owned()
    }

    /// `ostree.summary.last-modified` as `ostree summary --view` shows it.
    pub fn summary_last_modified(&self) -> u64 {
        let bytes = fs::read(self.path.join("summary")).expect("summary");
        ferry::repo::summary::Summary::parse(&bytes)
            .expect("summary parses")
            .last_modified
            .expect("summary has last-modified")
    }

    /// The commit's timestamp, from `ostree show`'s machine-readable variant.
    pub fn commit_timestamp(&self, ref_name: &str) -> u64 {
        let rev = self.rev_parse(ref_name);
        let hex = rev.as_str();
        let path = self
            .path
            .join("objects")
            .join(&hex[..2])
            .join(format!("{}.commit", &hex[2..]));
        ferry::repo::objects::Commit::parse(&fs::read(path).expect("commit object"))
            .expect("commit parses")
            .timestamp
    }

    /// `ostree create-usb MOUNT COLLECTION REF`.
    pub fn create_usb(&self, mount: &Path, ref_name: &str) {
        run(Command::new("ostree")
            .arg(format!("--repo={}", self.path.display()))
            .arg("create-usb")
            .arg(mount)
            .args([self.collection_id.as_str(), ref_name]));
    }
}

/// The client: a repository made with `ferryctl init`, a remote `origin` for the
/// upstream's collection, and `origin:REF` tracked.
pub struct ClientRepo {
    pub path: PathBuf,
}

impl ClientRepo {
    pub fn create(path: &Path, upstream_url: &str, collection_id: &str) -> Self {
        let repo = path.display().to_string();
        run(Command::new(ferryctl_path()).args(["--repo", &repo, "init"]));
        run(Command::new(ferryctl_path()).args([
            "--repo",
            &repo,
            "remote",
            "add",
            "origin",
            upstream_url,
            "--collection-id",
            collection_id,
        ]));
        run(Command::new(ferryctl_path()).args(["--repo", &repo, "track", "origin", REF]));
        Self {
            path: path.to_owned(),
        }
    }

    /// A `ferryctl` command on this repository with LAN discovery off.
    pub fn ferryctl(&self) -> Command {
        let mut cmd = Command::new(ferryctl_path());
        cmd.env("FERRY_LAN_INTERFACES", "none")
            .arg("--repo")
            .arg(&self.path);
        cmd
    }
}

/// One line of `ferryctl sources --watch --json`, with when it arrived.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub value: Value,
}

/// A running `ferryctl` whose stdout is read line by line (JSON) and stderr kept.
pub struct Watcher {
    child: Child,
    lines: mpsc::Receiver<Line>,
    pub seen: Vec<Line>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watcher {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        // Own process group, so the whole tree can be killed.
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(Line { at, value }).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = keep.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits up to `timeout` for a line matching `pred` (lines already seen count).
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Line> {
        if let Some(line) = self.seen.iter().find(|l| pred(&l.value)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line.value) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads every line that arrives within `duration`.
    pub fn drain_for(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything seen so far, for failure messages.
    pub fn transcript(&self) -> String {
        let mut out: String = self.seen.iter().map(|l| format!("{}\n", l.value)).collect();
        out.push_str("--- stderr ---\n");
        out.push_str(&self.stderr());
        out
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// An event line `{"event": EVENT, "source": {"id": …}}` for a source whose id
/// starts with `prefix`.
pub fn is_event(value: &Value, event: &str, id_prefix: &str) -> bool {
    value["event"] == event
        && value["source"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(id_prefix))
}

/// The offered ref (collection, ref) of a source, if any.
pub fn offered<'a>(source: &'a Value, collection: &str, ref_name: &str) -> Option<&'a Value> {
    source["refs"]
        .as_array()?
        .iter()
        .find(|r| r["collection_id"] == collection && r["ref"] == ref_name)
}

/// `python3 -m http.server` inside a namespace, serving `dir` on `addr:port`.
pub struct HttpServer {
    child: Child,
}

impl HttpServer {
    pub fn start(ns: &Netns, dir: &Path, addr: &str, port: u16) -> Self {
        let mut cmd = ns.command("python3");
        cmd.args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            addr,
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.process_group(0);
        let child = cmd.spawn().expect("python3 -m http.server");
        let server = Self { child };
        // Wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("http://{addr}:{port}/");
        loop {
            let ok = ns
                .command("python3")
                .args([
                    "-c",
                    "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)",
                    &url,
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "HTTP server did not start");
            thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
