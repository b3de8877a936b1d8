//! Helpers for tests/engine.rs: repositories made by the real `ostree`, HTTP
//! servers that misbehave on demand (`serve.py`), `ferryctl` clients whose JSON
//! events say which source served which object, GPG homes and loop-mounted drives.
//!
//! Everything a test creates is owned by a guard that removes it on drop, also
//! when the test panics: servers and `ferryctl` children are killed, gpg-agents
//! stopped, loop mounts unmounted and their mount points deleted.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry::repo::objects::{Commit, DirTree};
use ferry::repo::{Checksum, ObjectName, ObjectType};
use serde_json::Value;

use super::cmd;
use super::drive;

use cmd::{describe, output, text};
/// Loop-mounted drives.
pub use drive::LoopDrive;

pub const COLLECTION: &str = "org.example.Os";
pub const REF: &str = "os/stable";
/// A timestamp well in the past; later commits add to it, so "newer" never
/// depends on the clock.
pub const T0: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-engine-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Runs a command to completion and panics, with its output, unless it succeeded.
pub use cmd::run_output as run_ok;

/// Its stdout, trimmed; panics unless it succeeded.
pub fn stdout_of(command: &mut Command) -> String {
    cmd::run(command).trim().to_owned()
}

pub fn ostree(repo: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

pub fn copy_dir(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

// ---------------------------------------------------------------------------
// Trees and repositories made by ostree
// ---------------------------------------------------------------------------

/// Deterministic bytes (xorshift): `len` bytes for `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `count` files spread over a few subdirectories of `dir`, each of
/// `size` bytes (half of each file random, so it compresses a little), with
/// content that depends on `seed` and the file's index.
pub fn write_tree(dir: &Path, count: usize, size: usize, seed: u64) {
    for i in 0..count {
        let sub = dir.join(format!("d{}", i % 4));
        fs::create_dir_all(&sub).unwrap();
        let mut content = pseudo_random(seed * 1_000_003 + i as u64, size / 2 + 1);
        content.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size - size / 2));
        fs::write(sub.join(format!("f{i:04}")), content).unwrap();
    }
}

/// Changes `count` files of a tree made by `write_tree` (and adds one), so a
/// second commit shares everything else with the first.
pub fn change_tree(dir: &Path, count: usize, seed: u64) {
    for i in 0..count {
        let path = dir.join(format!("d{}", i % 4)).join(format!("f{i:04}"));
        fs::write(&path, pseudo_random(seed * 7_000_001 + i as u64, 3000)).unwrap();
    }
    fs::write(dir.join(format!("new-{seed}")), pseudo_random(seed, 5000)).unwrap();
}

pub fn ostree_init(repo: &Path) {
    run_ok(
        ostree(repo)
            .arg("init")
            .arg("--mode=archive")
            .arg(format!("--collection-id={COLLECTION}")),
    );
}

/// Commits `tree` to `branch` with the given timestamp; returns the checksum.
pub fn ostree_commit(
    repo: &Path,
    branch: &str,
    tree: &Path,
    subject: &str,
    timestamp: u64,
) -> String {
    stdout_of(
        ostree(repo)
            .arg("commit")
            .arg("-b")
            .arg(branch)
            .arg(format!("--tree=dir={}", tree.display()))
            .arg("-s")
            .arg(subject)
            .arg(format!("--timestamp=@{timestamp}")),
    )
}

/// `ostree commit` of `tree` as `REF` (v1, at `T0`) with an `ostree.sizes` index.
pub fn ostree_commit_with_sizes(repo: &Path, tree: &Path) -> String {
    stdout_of(
        ostree(repo)
            .arg("commit")
            .args(["-b", REF, "-s", "v1", "--generate-sizes"])
            .arg(format!("--timestamp=@{T0}"))
            .arg(format!("--tree=dir={}", tree.display())),
    )
}

pub fn ostree_summary(repo: &Path) {
    run_ok(ostree(repo).arg("summary").arg("-u"));
}

pub fn assert_ostree_fsck(repo: &Path) {
    let out = run_ok(ostree(repo).arg("fsck"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.to_lowercase().contains("corrupt") && !text.contains("missing"),
        "ostree fsck of {} reported problems:\n{text}",
        repo.display()
    );
}

/// `objects/ab/cdef….ext` for an object named `abcdef….ext`.
pub fn object_path(object: &str) -> String {
    format!("objects/{}/{}", &object[..2], &object[2..])
}

fn name(checksum: &Checksum, kind: ObjectType) -> String {
    ObjectName::new(*checksum, kind).to_string()
}

fn read_object(repo: &Path, object: &str) -> Vec<u8> {
    let path = repo.join(object_path(object));
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The root dirtree and dirmeta of a commit, as `hex.ext` names.
pub fn commit_roots(repo: &Path, commit: &str) -> (String, String) {
    let parsed =
        Commit::parse(&read_object(repo, &format!("{commit}.commit"))).expect("parse commit");
    (
        name(&parsed.root_tree, ObjectType::DirTree),
        name(&parsed.root_meta, ObjectType::DirMeta),
    )
}

/// Every object under a commit (not the commit itself), as `hex.ext` names.
pub fn closure(repo: &Path, commit: &str) -> BTreeSet<String> {
    let parsed =
        Commit::parse(&read_object(repo, &format!("{commit}.commit"))).expect("parse commit");
    let mut out = BTreeSet::new();
    out.insert(name(&parsed.root_meta, ObjectType::DirMeta));
    let mut pending = vec![parsed.root_tree];
    while let Some(tree) = pending.pop() {
        if !out.insert(name(&tree, ObjectType::DirTree)) {
            continue;
        }
        let parsed = DirTree::parse(&read_object(repo, &name(&tree, ObjectType::DirTree)))
            .expect("parse dirtree");
        for f in &parsed.files {
            out.insert(name(&f.checksum, ObjectType::File));
        }
        for d in &parsed.dirs {
            out.insert(name(&d.meta, ObjectType::DirMeta));
            pending.push(d.tree);
        }
    }
    out
}

/// The objects stored in a repository, as `hex.ext` names.
pub fn stored_objects(repo: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dirs) = fs::read_dir(repo.join("objects")) else {
        return out;
    };
    for dir in dirs.flatten() {
        let prefix = dir.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            out.insert(format!("{prefix}{}", file.file_name().to_string_lossy()));
        }
    }
    out
}

/// Only the file objects of a set.
pub fn files_of(objects: &BTreeSet<String>) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o.ends_with(".filez"))
        .cloned()
        .collect()
}

/// An ostree repo with `os/stable` committed from a tree of `count` files.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub tree: PathBuf,
    pub commits: Vec<String>,
}

impl Upstream {
    pub fn new(count: usize, size: usize) -> Self {
        let dir = tempdir();
        let repo = dir.path().join("repo");
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        write_tree(&tree, count, size, 1);
        ostree_init(&repo);
        let commit = ostree_commit(&repo, REF, &tree, "v1", T0);
        ostree_summary(&repo);
        Upstream {
            dir,
            repo,
            tree,
            commits: vec![commit],
        }
    }

    /// A copy of the repository as it is now, under this upstream's temp dir.
    pub fn snapshot(&self, label: &str) -> PathBuf {
        let to = self.dir.path().join(label);
        copy_dir(&self.repo, &to);
        to
    }

    /// Changes `changed` files and commits again (one timestamp step newer).
    pub fn commit_again(&mut self, changed: usize) -> String {
        let n = self.commits.len() as u64 + 1;
        change_tree(&self.tree, changed, n);
        let commit = ostree_commit(
            &self.repo,
            REF,
            &self.tree,
            &format!("v{n}"),
            T0 + 1000 * (n - 1),
        );
        ostree_summary(&self.repo);
        self.commits.push(commit.clone());
        commit
    }

    pub fn latest(&self) -> &str {
        self.commits.last().unwrap()
    }
}

// ---------------------------------------------------------------------------
// HTTP servers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub port: u16,
    pub no_summary: bool,
    /// Paths (relative to the repository) answered with 404.
    pub missing: Vec<String>,
    /// Paths served with one byte flipped.
    pub corrupt: Vec<String>,
    pub rate: Option<u64>,
    pub die_after: Option<u64>,
    /// Path prefixes sent one byte a second.
    pub trickle: Vec<String>,
    /// Paths sent, then followed by zeros without end.
    pub endless: Vec<String>,
}

/// `serve.py` on 127.0.0.1, killed on drop. Every request is logged.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    _files: tempfile::TempDir,
}

pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl Server {
    pub fn start(root: &Path, options: ServeOptions) -> Self {
        let files = tempdir();
        let log = files.path().join("requests.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/serve.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg(root)
            .arg("--port")
            .arg(options.port.to_string())
            .arg("--log")
            .arg(&log);
        if options.no_summary {
            cmd.arg("--no-summary");
        }
        if !options.missing.is_empty() {
            let list = files.path().join("missing.txt");
            fs::write(&list, options.missing.join("\n") + "\n").unwrap();
            cmd.arg("--missing").arg(&list);
        }
        for path in &options.corrupt {
            cmd.arg("--corrupt").arg(path);
        }
        if let Some(rate) = options.rate {
            cmd.arg("--rate").arg(rate.to_string());
        }
        if let Some(n) = options.die_after {
            cmd.arg("--die-after").arg(n.to_string());
        }
        for prefix in &options.trickle {
            cmd.arg("--trickle").arg(prefix);
        }
        for path in &options.endless {
            cmd.arg("--endless").arg(path);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start serve.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the port");
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve.py did not print a port: {line:?}");
            }
        };
        Server {
            child: Some(child),
            port,
            log,
            _files: files,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The id discovery gives this server as a `--static-source`.
    pub fn static_id(&self) -> String {
        format!("static:{}", self.url())
    }

    /// Every path requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.starts_with("sent "))
            .map(str::to_owned)
            .collect()
    }

    /// Bytes sent per finished response, in order: (path, bytes).
    pub fn sent(&self) -> Vec<(String, u64)> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.strip_prefix("sent ")?.rsplitn(2, ' ');
                let bytes = fields.next()?.parse().ok()?;
                Some((fields.next()?.to_owned(), bytes))
            })
            .collect()
    }

    /// The objects requested so far, as `hex.ext` names.
    pub fn object_requests(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|p| p.strip_prefix("objects/"))
            .map(|p| p.replace('/', ""))
            .collect()
    }

    /// Whether the process has exited (e.g. after `--die-after`).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on: bound, then closed.
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// ferryctl clients
// ---------------------------------------------------------------------------

pub enum Trust<'a> {
    None,
    Gpg(&'a Path),
}

/// A Ferry repository with remote `origin` (collection `COLLECTION`) tracking `REF`.
pub struct Client {
    dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Client {
    pub fn new(remote_url: &str, trust: Trust<'_>) -> Self {
        let dir = tempdir();
        let repo = dir.path().join("client");
        let client = Client { dir, repo };
        run_ok(client.ferryctl().arg("init"));
        let mut add = client.ferryctl();
        add.args([
            "remote",
            "add",
            "origin",
            remote_url,
            "--collection-id",
            COLLECTION,
        ]);
        match trust {
            Trust::None => add.arg("--no-verify"),
            Trust::Gpg(key) => add.arg("--gpg-import").arg(key),
        };
        run_ok(&mut add);
        run_ok(client.ferryctl().args(["track", "origin", REF]));
        client
    }

    /// `ferryctl --repo R --no-lan --no-mounts` in a clean environment.
    pub fn ferryctl(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferryctl"));
        cmd.env_remove("FERRY_REPO")
            .env("FERRY_LAN_INTERFACES", "none")
            .env("FERRY_HTTP_TIMEOUT", "10")
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg-cache"))
            .env("GIO_USE_VFS", "local")
            .env("GSETTINGS_BACKEND", "memory")
            .arg("--repo")
            .arg(&self.repo)
            .arg("--no-lan")
            .arg("--no-mounts");
        cmd
    }

    fn update_command(&self, discovery: &[&str], extra: &[&str]) -> Command {
        let mut cmd = self.ferryctl();
        cmd.args(discovery)
            .arg("update")
            .args(extra)
            .args(["--json", "--object-events"]);
        cmd
    }

    /// `ferryctl [DISCOVERY] update [EXTRA] --json --object-events`.
    pub fn update(&self, discovery: &[&str], extra: &[&str]) -> UpdateRun {
        let mut cmd = self.update_command(discovery, extra);
        let command = describe(&cmd);
        let started = Instant::now();
        let out = output(&mut cmd);
        UpdateRun::new(
            command,
            out.status.success(),
            text(&out.stdout),
            text(&out.stderr),
            started.elapsed(),
        )
    }

    /// Starts `ferryctl update` and hands back its events as they come.
    pub fn spawn_update(&self, discovery: &[&str], extra: &[&str]) -> LiveUpdate {
        let mut cmd = self.update_command(discovery, extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferryctl update");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LiveUpdate {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// `ferryctl sources --json`.
    pub fn sources(&self, discovery: &[&str]) -> Vec<Value> {
        let out = stdout_of(self.ferryctl().args(discovery).args(["sources", "--json"]));
        match serde_json::from_str(&out) {
            Ok(Value::Array(items)) => items,
            _ => panic!("ferryctl sources --json printed no array:\n{out}"),
        }
    }

    /// `ferryctl check --json`: the plans.
    pub fn check(&self, discovery: &[&str]) -> Value {
        let out = stdout_of(self.ferryctl().args(discovery).args(["check", "--json"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("check --json: {e}:\n{out}"))
    }

    /// The commit `origin:os/stable` points at, if any.
    pub fn ref_commit(&self) -> Option<String> {
        fs::read_to_string(self.repo.join("refs/remotes/origin").join(REF))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    pub fn fsck(&self) {
        assert_ostree_fsck(&self.repo);
        run_ok(self.ferryctl().arg("fsck"));
    }

    /// Checks that the ref is at `commit`, and that both fscks are clean.
    pub fn assert_at(&self, commit: &str) {
        assert_eq!(
            self.ref_commit().as_deref(),
            Some(commit),
            "origin:{REF} is not at {commit}"
        );
        self.fsck();
    }
}

/// The outcome of one `ferryctl update --json --object-events`.
pub struct UpdateRun {
    pub command: String,
    pub success: bool,
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl UpdateRun {
    fn new(
        command: String,
        success: bool,
        stdout: String,
        stderr: String,
        elapsed: Duration,
    ) -> Self {
        let events = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        UpdateRun {
            command,
            success,
            events,
            stdout,
            stderr,
            elapsed,
        }
    }

    fn summary(&self) -> String {
        let interesting: Vec<String> = self
            .events
            .iter()
            .filter(|e| !matches!(e["event"].as_str(), Some("object-fetched" | "progress")))
            .map(Value::to_string)
            .collect();
        format!(
            "{} (success: {}, {:.1} s)\nevents (without progress/object-fetched):\n{}\nstderr:\n{}",
            self.command,
            self.success,
            self.elapsed.as_secs_f64(),
            interesting.join("\n"),
            self.stderr
        )
    }

    /// Panics unless the update succeeded and ended with `done`.
    pub fn ok(self) -> Self {
        let done = self.events.last().is_some_and(|e| e["event"] == "done");
        assert!(self.success && done, "update failed: {}", self.summary());
        self
    }

    /// Panics unless the update failed and ended with `error`.
    pub fn failed(self) -> Self {
        let error = self.events.last().is_some_and(|e| e["event"] == "error");
        assert!(
            !self.success && error,
            "update did not fail: {}",
            self.summary()
        );
        self
    }

    pub fn error_message(&self) -> String {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "error")
            .and_then(|e| e["message"].as_str())
            .unwrap_or_else(|| panic!("no error event: {}", self.summary()))
            .to_owned()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// The plan of the (only) tracked ref.
    pub fn plan(&self) -> &Value {
        let resolved = self.of_kind("resolved");
        assert_eq!(
            resolved.len(),
            1,
            "expected one resolved event: {}",
            self.summary()
        );
        &resolved[0]["plan"]
    }

    pub fn plan_sources(&self) -> Vec<String> {
        strings(&self.plan()["sources"])
    }

    /// (source, object) for every object fetched.
    pub fn fetched(&self) -> Vec<(String, String)> {
        self.of_kind("object-fetched")
            .iter()
            .map(|e| {
                (
                    e["source"].as_str().unwrap().to_owned(),
                    e["object"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Object → the source that served it. Panics if one was fetched twice.
    pub fn served_by(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (source, object) in self.fetched() {
            if let Some(previous) = out.insert(object.clone(), source.clone()) {
                panic!(
                    "{object} fetched twice (from {previous} and {source}): {}",
                    self.summary()
                );
            }
        }
        out
    }

    /// Source → how many objects it served.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (source, _) in self.fetched() {
            *out.entry(source).or_default() += 1;
        }
        out
    }

    /// (source id, reason) of every `source-dropped` event.
    pub fn dropped(&self) -> Vec<(String, String)> {
        self.of_kind("source-dropped")
            .iter()
            .map(|e| {
                (
                    e["source"]["id"].as_str().unwrap().to_owned(),
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Asserts that exactly `objects` were fetched (each once), whoever served them.
    pub fn assert_fetched_exactly(&self, objects: &BTreeSet<String>) {
        let fetched: BTreeSet<String> = self.served_by().into_keys().collect();
        let missing: Vec<_> = objects.difference(&fetched).collect();
        let extra: Vec<_> = fetched.difference(objects).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "fetched set differs: {} not fetched ({:?}…), {} unexpected ({:?}…)",
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(3).collect::<Vec<_>>()
        );
    }

    pub fn debug(&self) -> String {
        self.summary()
    }
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A running `ferryctl update`; killed (SIGKILL) on drop if still running.
pub struct LiveUpdate {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<Value>,
}

impl LiveUpdate {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Reads events until one satisfies `pred`; panics after `timeout` or at EOF.
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Err(e) => panic!(
                    "no matching event from ferryctl update ({e:?}); seen: {:?}",
                    self.seen
                        .iter()
                        .filter(|e| e["event"] != "progress")
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to end and collects the rest of its output.
    pub fn finish(mut self, timeout: Duration) -> UpdateRun {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferryctl update did not finish in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let mut stdout: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push(line);
        }
        UpdateRun::new(
            "ferryctl update (spawned)".into(),
            status.success(),
            stdout.join("\n"),
            stderr,
            Duration::ZERO,
        )
    }
}

impl Drop for LiveUpdate {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// GPG
// ---------------------------------------------------------------------------

/// A throwaway GNUPGHOME; its gpg-agent is stopped on drop.
pub struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    pub fn new() -> Self {
        // Short path: gpg-agent's socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("fgpg")
            .tempdir_in("/tmp")
            .unwrap();
        let mut perms = fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        fs::set_permissions(dir.path(), perms).unwrap();
        GpgHome { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.home()).arg("--batch");
        cmd
    }

    /// Makes a signing key for `email`; returns its fingerprint.
    pub fn generate(&self, email: &str) -> String {
        run_ok(self.gpg().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            email,
            "ed25519",
            "sign",
            "never",
        ]));
        let listing = stdout_of(self.gpg().args(["--with-colons", "--list-keys", email]));
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|rest| rest.trim_matches(':').to_owned())
            .expect("fingerprint")
    }

    /// Exports the public key of `email` to `path`.
    pub fn export(&self, email: &str, path: &Path) {
        let out = run_ok(self.gpg().args(["--export", email]));
        assert!(!out.stdout.is_empty(), "gpg exported nothing for {email}");
        fs::write(path, out.stdout).unwrap();
    }

    /// `ostree gpg-sign` of `commit` with `key`.
    pub fn sign(&self, repo: &Path, commit: &str, key: &str) {
        run_ok(
            ostree(repo)
                .arg("gpg-sign")
                .arg(format!("--gpg-homedir={}", self.home().display()))
                .arg(commit)
                .arg(key),
        );
    }
}

/// A GPG key that signs an upstream's commits (and summaries), with the public key
/// exported for `Trust::Gpg`.
pub struct Signer {
    pub gpg: GpgHome,
    /// The key's fingerprint.
    pub key: String,
    /// The exported public key.
    pub public: PathBuf,
    _dir: tempfile::TempDir,
}

impl Signer {
    pub fn new(email: &str) -> Self {
        let gpg = GpgHome::new();
        let key = gpg.generate(email);
        let dir = tempdir();
        let public = dir.path().join("key.gpg");
        gpg.export(email, &public);
        Signer {
            gpg,
            key,
            public,
            _dir: dir,
        }
    }

    /// `ostree gpg-sign` of `commit` in `repo`.
    pub fn sign(&self, repo: &Path, commit: &str) {
        self.gpg.sign(repo, commit, &self.key);
    }

    /// `ostree summary -u --gpg-sign=KEY`: a new summary and its `summary.sig`.
    pub fn sign_summary(&self, repo: &Path) {
        run_ok(
            ostree(repo)
                .args(["summary", "-u"])
                .arg(format!("--gpg-sign={}", self.key))
                .arg(format!("--gpg-homedir={}", self.gpg.home().display())),
        );
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------
// Small things
// ---------------------------------------------------------------------------

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Appends a line to a file (creating it).
pub fn append_line(path: &Path, line: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}
