//! Fixtures for the discovery tests (tests/sources, tests/gui): the client
//! repository and `ferryctl sources` output, on top of `repo::OstreeRepo`,
//! `json_lines`, `drive`, `lan` and `http::HttpServer`.
//!
//! Everything created is removed by a Drop guard, also when a test fails. Every
//! external command must succeed: a test that cannot build its environment fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub use super::cmd::{kill_group, run, run_status};
pub use super::drive::LoopDrive;
pub use super::http::HttpServer;
pub use super::json_lines::{JsonLines, Line};
pub use super::lan::{random_suffix, Avahi, Lan, Netns, ADDR_A, ADDR_B};
pub use super::repo::OstreeRepo;
pub use super::{ferryctl_path, COLLECTION, REF};

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
