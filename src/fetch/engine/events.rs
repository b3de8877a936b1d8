//! What the engine reports: events, per-source and overall progress, the plan
//! chosen for each ref, and how each ref ended.

use std::collections::HashSet;

use serde::Serialize;

use super::EngineError;
use crate::repo::objects::Commit;
use crate::repo::store::Repo;
use crate::repo::Checksum;
use crate::sources::Locality;

#[derive(Clone, Debug, Serialize)]
pub struct SourceLabel {
    pub id: String,
    pub uri: String,
    pub name: String,
}

/// What a source is doing in an update, as progress reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferState {
    /// Usable, nothing asked of it right now.
    Idle,
    /// Requests in flight.
    Downloading,
    /// Not used for the rest of this update (`last_error` says why).
    Dropped,
}

impl TransferState {
    /// The word progress JSON uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Downloading => "downloading",
            Self::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for TransferState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that column widths in the terminal output apply.
        f.pad(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceProgress {
    #[serde(flatten)]
    pub source: SourceLabel,
    pub state: TransferState,
    pub bytes: u64,
    pub objects: u64,
    /// Bytes per second over the last second or so.
    pub rate: u64,
    pub in_flight: usize,
    /// Objects asked of this source because another source was too slow with them.
    pub hedged: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OverallProgress {
    pub bytes_done: u64,
    /// An estimate that firms up as directory trees arrive.
    pub bytes_total: u64,
    pub objects_done: u64,
    pub objects_total: u64,
    pub eta_seconds: Option<u64>,
    /// What the commit's size index says the pull downloads, if it has one.
    #[serde(skip)]
    pub forecast_bytes: Option<u64>,
}

impl OverallProgress {
    /// Firms up `bytes_total` after objects were queued or stored.
    pub(super) fn estimate_total(&mut self) {
        self.bytes_total = match self.forecast_bytes {
            // The commit's own size index beats any estimate.
            Some(forecast) => forecast.max(self.bytes_done),
            // Else estimate from the average object so far.
            None => {
                let average = self.bytes_done.checked_div(self.objects_done).unwrap_or(0);
                self.bytes_done + (self.objects_total - self.objects_done) * average
            }
        };
    }
}

/// The commit chosen for one ref.
#[derive(Clone, Debug, Serialize)]
pub struct RefPlan {
    pub remote: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: Checksum,
    pub timestamp: u64,
    pub version: Option<String>,
    pub subject: String,
    pub current: Option<Checksum>,
    pub up_to_date: bool,
    /// Sources offering exactly this commit.
    pub sources: Vec<String>,
    /// Commits offered by some source that failed trust, with why.
    pub rejected: Vec<RejectedCommit>,
    /// What the update will download, when the commit carries `ostree.sizes`.
    pub download: Option<DownloadSize>,
    /// Sources that offer this ref but are not used for it, with why.
    pub unused_sources: Vec<UnusedSource>,
    #[serde(skip)]
    pub(super) commit_bytes: glib::Bytes,
    #[serde(skip)]
    pub(super) detached: Option<glib::Bytes>,
}

/// The objects of a commit that are not stored yet, from its `ostree.sizes` index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DownloadSize {
    pub objects: u64,
    /// Bytes to download (archived size).
    pub bytes: u64,
    /// Bytes those objects take once checked out.
    pub unpacked: u64,
}

impl DownloadSize {
    /// Sums the entries of `commit`'s size index that `repo` lacks; `None` when the
    /// commit has no index.
    pub fn missing_from(repo: &Repo, commit: &Commit) -> Option<Self> {
        let mut seen = HashSet::new();
        let mut size = Self::default();
        for entry in commit.sizes()? {
            if seen.insert(entry.name) && !repo.has_object(&entry.name) {
                size.objects += 1;
                size.bytes += entry.archived;
                size.unpacked += entry.unpacked;
            }
        }
        Some(size)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectedCommit {
    pub commit: Checksum,
    pub source: String,
    pub reason: String,
}

/// Why a source that offers a ref is not used for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnusedReason {
    /// The ref's remote verifies no commit signatures (`gpg-verify=false`,
    /// `sign-verify=false`): as libostree's finders require, drives and nearby
    /// computers are then not trusted for it, only its own URL and sources the user
    /// named (`--static-source`, `--source`, a source chosen in the window).
    RemoteNotVerified,
    /// An internet source on a metered network connection (GIO's network monitor
    /// says so), and using the internet on metered connections is not allowed.
    MeteredConnection,
}

/// A source that offers a ref but is not used for it, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnusedSource {
    /// The source's id.
    pub source: String,
    /// Its display name.
    pub name: String,
    pub reason: UnusedReason,
    /// The reason as a sentence.
    pub message: String,
}

/// What one source sent during an update.
#[derive(Clone, Debug, Serialize)]
pub struct SourceBytes {
    #[serde(flatten)]
    pub source: SourceLabel,
    pub locality: Locality,
    pub bytes: u64,
}

/// How updating one ref ended.
#[derive(Debug)]
pub struct RefOutcome {
    pub remote: String,
    pub ref_name: String,
    pub result: Result<RefPlan, EngineError>,
}

/// `status` of a `ref-result` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefStatus {
    Updated,
    UpToDate,
    Failed,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EngineEvent {
    /// A source will not be used for the rest of this update.
    SourceDropped {
        source: SourceLabel,
        reason: String,
    },
    Resolved {
        plan: RefPlan,
    },
    Progress {
        #[serde(rename = "ref")]
        ref_name: String,
        overall: OverallProgress,
        sources: Vec<SourceProgress>,
    },
    /// Only with `EngineSettings::object_events`: which source served what.
    ObjectFetched {
        source: String,
        object: String,
        bytes: u64,
    },
    RefUpdated {
        remote: String,
        #[serde(rename = "ref")]
        ref_name: String,
        commit: Checksum,
        previous: Option<Checksum>,
    },
    /// How one ref of an update ended; every ref gets one, failed or not.
    RefResult {
        remote: String,
        #[serde(rename = "ref")]
        ref_name: String,
        status: RefStatus,
        /// The commit the ref is at now (updated, up to date); `None` when failed.
        commit: Option<Checksum>,
        error: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::TransferState;

    /// Progress JSON and the window read these words; they must not change.
    #[test]
    fn transfer_state_serialises_to_the_words_progress_uses() {
        for (state, word) in [
            (TransferState::Idle, "idle"),
            (TransferState::Downloading, "downloading"),
            (TransferState::Dropped, "dropped"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
            assert_eq!(state.as_str(), word);
            assert_eq!(state.to_string(), word);
        }
    }

    #[test]
    fn transfer_state_display_pads_to_the_column_width() {
        assert_eq!(format!("{:<12}|", TransferState::Idle), "idle        |");
        assert_eq!(format!("{:>8}", TransferState::Dropped), " dropped");
    }
}
