//! Fixtures for the engine tests (tests/engine, tests/trust/policy.rs): an
//! upstream made by the real `ostree` and served by `serve.py` (which misbehaves
//! on demand, see `http`), and `ferryctl` clients whose JSON events say which
//! source served which object.
//!
//! Everything a test creates is owned by a guard that removes it on drop, also
//! when the test panics: servers and `ferryctl` children are killed, gpg-agents
//! stopped, loop mounts unmounted and their mount points deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry::repo::{ObjectName, ObjectType};
use serde_json::Value;

use super::cmd::{self, describe, output, text};
use super::json_lines::JsonLines;
use super::repo;

/// Runs a command to completion and panics, with its output, unless it succeeded.
pub use super::cmd::run_output as run_ok;
pub use super::drive::LoopDrive;
pub use super::gpg::{Gpg, Signer};
pub use super::http::{python, refused_port, ServeOptions, Server};
pub use super::repo::{assert_ostree_fsck, ostree_init};
pub use super::{copy_tree, file_uri, ostree, tempdir, wait_until, COLLECTION, REF};

/// A timestamp well in the past; later commits add to it, so "newer" never
/// depends on the clock.
pub const T0: u64 = 1_700_000_000;

/// Its stdout, trimmed; panics unless it succeeded.
pub fn stdout_of(command: &mut Command) -> String {
    cmd::run(command).trim().to_owned()
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

/// Commits `tree` to `branch` with the given subject and timestamp; returns the
/// checksum.
pub fn ostree_commit(
    repo: &Path,
    branch: &str,
    tree: &Path,
    subject: &str,
    timestamp: u64,
) -> String {
    let timestamp = format!("--timestamp=@{timestamp}");
    repo::ostree_commit(repo, branch, tree, &["-s", subject, &timestamp])
}

/// `ostree commit` of `tree` as `REF` (v1, at `T0`) with an `ostree.sizes` index.
pub fn ostree_commit_with_sizes(repo: &Path, tree: &Path) -> String {
    let timestamp = format!("--timestamp=@{T0}");
    repo::ostree_commit(
        repo,
        REF,
        tree,
        &["-s", "v1", "--generate-sizes", &timestamp],
    )
}

pub fn ostree_summary(repo: &Path) {
    run_ok(ostree(repo).arg("summary").arg("-u"));
}

/// `objects/ab/cdef….ext` for an object named `abcdef….ext`.
pub fn object_path(object: &str) -> String {
    format!("objects/{}/{}", &object[..2], &object[2..])
}

/// The root dirtree and dirmeta of a commit, as `hex.ext` names.
pub fn commit_roots(repo: &Path, commit: &str) -> (String, String) {
    let parsed = repo::load_commit(repo, commit);
    (
        ObjectName::new(parsed.root_tree, ObjectType::DirTree).to_string(),
        ObjectName::new(parsed.root_meta, ObjectType::DirMeta).to_string(),
    )
}

/// Every object under a commit (not the commit itself), as `hex.ext` names.
pub fn closure(repo: &Path, commit: &str) -> BTreeSet<String> {
    repo::closure_of(repo, commit)
        .into_iter()
        .filter(|o| o.kind != ObjectType::Commit)
        .map(|o| o.to_string())
        .collect()
}

/// The objects stored in a repository, as `hex.ext` names (file objects as
/// `.filez`, their name on the wire, in every mode).
pub fn stored_objects(repo: &Path) -> BTreeSet<String> {
    if !repo.join("objects").is_dir() {
        return BTreeSet::new();
    }
    repo::object_names(repo)
        .iter()
        .map(|rel| rel.replacen('/', "", 1))
        .collect()
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
        copy_tree(&self.repo, &to);
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
        Self::with_mode(remote_url, trust, "archive")
    }

    /// A client whose repository is of `mode` (`ferryctl init --mode`), so the
    /// rule tests run once more into a bare destination.
    pub fn with_mode(remote_url: &str, trust: Trust<'_>, mode: &str) -> Self {
        let dir = tempdir();
        let repo = dir.path().join("client");
        let client = Client { dir, repo };
        run_ok(client.ferryctl().args(["init", "--mode", mode]));
        let config = fs::read_to_string(client.repo.join("config")).unwrap();
        let written = if mode == "archive" {
            "archive-z2"
        } else {
            mode
        };
        assert!(config.contains(&format!("mode={written}\n")), "{config}");
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

    /// The `XDG_DATA_HOME` its `ferryctl` runs with.
    pub fn data_home(&self) -> PathBuf {
        self.dir.path().join("xdg-data")
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
            // Whatever this machine's own connection is, the engine sees one that
            // is not metered (tests/engine/metered.rs provides its own).
            .env("GIO_USE_NETWORK_MONITOR", "base")
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
        self.update_with_env(&[], discovery, extra)
    }

    /// As [`Self::update`], with `env` set for `ferryctl`.
    pub fn update_with_env(
        &self,
        env: &[(String, String)],
        discovery: &[&str],
        extra: &[&str],
    ) -> UpdateRun {
        let mut cmd = self.update_command(discovery, extra);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
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
        LiveUpdate {
            process: JsonLines::spawn(self.update_command(discovery, extra)),
        }
    }

    /// Starts `ferryctl update` and hands it back stopped (`SIGSTOP`, by the engine
    /// itself: `FERRY_TEST_STOP_AFTER_OBJECTS`) once it has stored `objects`
    /// objects, so the test can change a source at that point; `SIGCONT` resumes it.
    pub fn spawn_update_stopped_after(&self, discovery: &[&str], objects: u32) -> LiveUpdate {
        let mut cmd = self.update_command(discovery, &[]);
        cmd.env("FERRY_TEST_STOP_AFTER_OBJECTS", objects.to_string());
        let live = LiveUpdate {
            process: JsonLines::spawn(cmd),
        };
        live.wait_stopped(Duration::from_secs(60));
        live
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

/// A running `ferryctl update`; killed on drop if still running.
pub struct LiveUpdate {
    process: JsonLines,
}

impl LiveUpdate {
    pub fn pid(&self) -> i32 {
        self.process.pid() as i32
    }

    /// The events read so far.
    pub fn seen(&self) -> Vec<Value> {
        self.process.seen.iter().map(|l| l.value.clone()).collect()
    }

    /// Reads events until a new one satisfies `pred`; panics after `timeout` or at
    /// the end of the output.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl FnMut(&Value) -> bool) -> Value {
        match self.process.wait_for_new(timeout, pred) {
            Some(line) => line.value,
            None => panic!(
                "no matching event from ferryctl update; seen: {:?}",
                self.seen()
                    .iter()
                    .filter(|e| e["event"] != "progress")
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
            ),
        }
    }

    pub fn signal(&self, signal: i32) {
        self.process.signal(signal);
    }

    /// Waits until the process is stopped (state `T` in `/proc/PID/stat`); panics
    /// after `timeout` or when it ended first.
    pub fn wait_stopped(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let stat = format!("/proc/{}/stat", self.pid());
        loop {
            let line = fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            match line
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
            {
                Some('T') => return,
                Some('Z') | None => panic!(
                    "ferryctl update ended before it stopped:\n{}",
                    self.process.stderr()
                ),
                Some(_) if Instant::now() > deadline => {
                    panic!("ferryctl update did not stop within {timeout:?}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits for the process to end and collects the rest of its output.
    pub fn finish(mut self, timeout: Duration) -> UpdateRun {
        let Some(status) = self.process.wait_exit(timeout) else {
            self.process.kill();
            panic!("ferryctl update did not finish in {timeout:?}");
        };
        let stdout: Vec<String> = self.seen().iter().map(Value::to_string).collect();
        UpdateRun::new(
            "ferryctl update (spawned)".into(),
            status.success(),
            stdout.join("\n"),
            self.process.stderr(),
            Duration::ZERO,
        )
    }
}

// ---------------------------------------------------------------------------
// Small things
// ---------------------------------------------------------------------------

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
