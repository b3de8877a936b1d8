//! Support for every integration test binary, each helper once. Each suite's
//! `main.rs` includes this tree:
//!
//! ```ignore
//! #[path = "../common/mod.rs"]
//! mod common;
//! ```
//!
//! and its modules `use crate::common::…`. No suite uses all of it.
//!
//! - `cmd`: running commands, asserting success, killing process groups.
//! - `json_lines`: a child printing JSON lines, read as they come.
//! - `repo`: repositories made by the real `ostree`, objects, trees.
//! - `gpg`: throwaway GnuPG homes and signing keys; `ed25519`: Python's signer.
//! - `http`: `serve.py` (a static server that misbehaves on demand), a raw HTTP
//!   client, `python3 -m http.server` in a namespace.
//! - `drive`: loop-mounted USB drives; `lan`: network namespaces and avahi.
//! - Fixtures per kind of test, built on the above: `engine` (an upstream over
//!   HTTP and a `ferryctl update` client), `share` (`ferryctl serve`, signed
//!   upstreams), `sources` (discovery).
//!
//! Every fixture cleans up (processes, mounts, namespaces, gpg-agents) on drop,
//! also when the test fails.

// Each suite uses part of this tree, and the fixture modules re-export what their
// tests use (`pub use`), so unused code and re-exports are expected here.
#![allow(dead_code, unused_imports)]

pub mod cmd;
pub mod drive;
pub mod ed25519;
pub mod engine;
pub mod gpg;
pub mod http;
pub mod json_lines;
pub mod lan;
pub mod repo;
pub mod share;
pub mod sources;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The collection id of the test repositories.
pub const COLLECTION: &str = "org.example.Os";
/// The ref the tests commit to and track.
pub const REF: &str = "os/stable";

/// A temporary directory, removed (with everything in it) when dropped, also when
/// the test panics.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// What `$XDG_DATA_HOME` is for every `ferryctl` run: a path that can never be
/// created (not even by root), so a test that forgets `--repo` fails instead of
/// touching a real repository.
const NO_DATA_HOME: &str = "/dev/null/ferry-test-data-home";

pub fn ferryctl_path() -> &'static str {
    env!("CARGO_BIN_EXE_ferryctl")
}

/// `ferryctl` with no repository chosen (add `--repo` yourself), no default
/// repository, English messages and LAN discovery off.
pub fn ferryctl_bare() -> Command {
    let mut cmd = Command::new(ferryctl_path());
    cmd.env_remove("FERRY_REPO")
        .env("XDG_DATA_HOME", NO_DATA_HOME)
        .env("LC_ALL", "C.UTF-8")
        .env("FERRY_LAN_INTERFACES", "none")
        // Not this machine's own connection, which may be metered: one that is not.
        .env("GIO_USE_NETWORK_MONITOR", "base");
    cmd
}

/// `ferryctl --repo REPO`, as [`ferryctl_bare`].
pub fn ferryctl(repo: &Path) -> Command {
    let mut cmd = ferryctl_bare();
    cmd.arg("--repo").arg(repo);
    cmd
}

/// `ostree --repo=REPO`.
pub fn ostree(repo: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

/// `cp -a FROM TO`: copies a repository with everything in it.
pub fn copy_tree(from: &Path, to: &Path) {
    cmd::run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// `file://` URI of a path (test paths need no escaping).
pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

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
