//! The multi-source pull engine.
//!
//! Runs on the thread-default GLib main context. For each tracked ref it resolves
//! the newest commit that passes trust across all sources, then fetches the commit's
//! closure from every useful source at once, following DESIGN.md's engine rules:
//!
//! - (1) `file://` sources come first; (2) sources that have the chosen commit
//!   before stale ones, fresher summaries first;
//! - (3, 4) a source that refuses connections or has no summary was dropped by
//!   discovery, or is dropped here on first contact;
//! - (5) a 404 for one object only moves that object on to the next source;
//! - (6) equal sources share the load in random order;
//! - (7) stale sources serve what they hold;
//! - (8) the commit is verified before anything under it is requested;
//! - (9) every object is verified before it is stored, and a source that sends a
//!   bad one is dropped;
//! - (10) the ref moves only after the whole closure is stored.
//!
//! CPU work (inflate, sha256, parsing) runs on GLib's worker threads; progress goes
//! out as typed events on a channel, at most every `PROGRESS_INTERVAL`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gio::prelude::*;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::fetch::{CHECKPOINT_INTERVAL, MAX_METADATA_SIZE, PROGRESS_INTERVAL};
use crate::repo::beneath::{self, BeneathError, Tree};
use crate::repo::commit::CommitPull;
use crate::repo::config::RemoteConfig;
use crate::repo::objects::{verify_metadata, Commit, DirTree};
use crate::repo::refs::RefKind;
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};
pub use crate::sources::Target;
use crate::sources::{Source, SourceKind};
use crate::transport::{Body, HttpClient, HttpSettings, Transport, TransportError};
use crate::trust::{self, CommitToVerify, TrustPolicy};

/// No file object Ferry accepts is larger (a sanity bound on a lying server).
const MAX_FILE_OBJECT_SIZE: u64 = 16 * 1024 * 1024 * 1024;
const MAX_HTTP_IN_FLIGHT: usize = 32;
const INITIAL_HTTP_IN_FLIGHT: usize = 4;
/// A request running this long at under `HEDGE_RATE` bytes per second is slow:
/// its object is asked of another source too.
const HEDGE_AFTER: Duration = Duration::from_secs(2);
const HEDGE_RATE: u64 = 32 * 1024;
/// Headers and compression framing an object may add beyond its indexed size.
const SIZE_SLACK: u64 = 1024 * 1024;
/// How often the requests in flight are looked over for slow ones.
const SLOW_SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// How long a source whose every request is slow gets no new work.
const STALL_PENALTY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no source offers {ref_name} ({looked_at})")]
    NoSource { ref_name: String, looked_at: String },
    #[error(
        "no source remote {remote} trusts offers {ref_name}: {remote} verifies no commit \
         signatures (gpg-verify=false, sign-verify=false), so only its own URL and sources \
         named with --source or --static-source are used for it; not used: {unused}"
    )]
    OnlyUnverifiedNearby {
        remote: String,
        ref_name: String,
        unused: String,
    },
    #[error("no source offers a trusted commit for {ref_name}: {reasons}")]
    NoTrustedCommit { ref_name: String, reasons: String },
    #[error("no source has object {object} (needed for {ref_name}); tried {tried}")]
    ObjectUnavailable {
        ref_name: String,
        object: String,
        tried: String,
    },
    #[error("every source failed while fetching {ref_name}; last error: {last}")]
    AllSourcesFailed { ref_name: String, last: String },
    #[error("the update was cancelled")]
    Cancelled,
    #[error(transparent)]
    Local(#[from] RepoError),
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
}

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
    commit_bytes: glib::Bytes,
    #[serde(skip)]
    detached: Option<glib::Bytes>,
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

/// Why `source` may not be used for refs of `remote`, if it may not; `named` are
/// the ids of sources the user chose by hand.
pub fn unused_reason(
    remote: &RemoteConfig,
    source: &Source,
    named: &[String],
) -> Option<UnusedReason> {
    if remote.gpg_verify || remote.sign_verify || named.contains(&source.id) {
        return None;
    }
    let trusted = match source.kind {
        // Sources the user typed in.
        SourceKind::Static => true,
        // Only the remote's own URL, not another remote's.
        SourceKind::Internet => source.remote.as_deref() == Some(remote.name.as_str()),
        // Discovered, not named: anyone can plug in a drive or answer on the LAN.
        SourceKind::Usb | SourceKind::Lan => false,
    };
    (!trusted).then_some(UnusedReason::RemoteNotVerified)
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

#[derive(Clone, Debug, Default)]
pub struct EngineSettings {
    pub http: HttpSettings,
    pub object_events: bool,
    /// Worker jobs per `file://` source.
    pub file_in_flight: Option<usize>,
    /// Ids of the sources the user chose by hand (`--source`, a source picked in
    /// the window): like static sources, trusted for remotes that verify no
    /// signatures.
    pub named_sources: Vec<String>,
}

/// A source as the engine sees it during one update.
struct EngineSource {
    source: Source,
    transport: Transport,
    alive: bool,
    in_flight: usize,
    limit: usize,
    successes: u64,
    bytes: u64,
    objects: u64,
    last_error: Option<String>,
    rate: RateMeter,
    /// Stalled: lower-ranked sources take new work until then.
    passed_over_until: Option<Instant>,
    /// Requests this source took over from a slow one.
    hedged: u64,
}

impl EngineSource {
    fn label(&self) -> SourceLabel {
        SourceLabel {
            id: self.source.id.clone(),
            uri: self.source.uri.clone(),
            name: self.source.name.clone(),
        }
    }
}

/// Bytes per second over a sliding window of about a second.
#[derive(Default)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    fn add(&mut self, bytes: u64) {
        let now = Instant::now();
        self.samples.push_back((now, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(2))
        {
            self.samples.pop_front();
        }
    }

    fn rate(&self) -> u64 {
        let Some((first, _)) = self.samples.front() else {
            return 0;
        };
        let span = first.elapsed().as_secs_f64().max(0.5);
        (self.samples.iter().map(|(_, b)| b).sum::<u64>() as f64 / span) as u64
    }
}

pub struct Engine {
    repo: Repo,
    settings: EngineSettings,
    http: HttpClient,
    events: async_channel::Sender<EngineEvent>,
    cancellable: gio::Cancellable,
    /// The sources of the current run as given, usable or not.
    seen: std::cell::RefCell<Vec<String>>,
}

/// Lower is preferred: not a file source, lacks the commit, internet, staleness.
type SourceRank = (u8, u8, u8, i64);

/// A commit that passed trust: checksum, parsed, raw bytes, detached metadata.
type TrustedCommit = (Checksum, Commit, glib::Bytes, Option<glib::Bytes>);

/// What a task fetching one object reports back.
enum Fetched {
    /// Stored; for metadata, the objects it names.
    Stored {
        bytes: u64,
        children: Vec<ObjectName>,
    },
    NotFound,
    /// Another request brought the same object and is storing it.
    Duplicate,
    Bad(RepoError),
    Failed(TransportError),
    Local(RepoError),
}

impl Engine {
    pub fn new(
        repo: Repo,
        settings: EngineSettings,
        events: async_channel::Sender<EngineEvent>,
    ) -> Self {
        let http = HttpClient::new(&settings.http);
        Self {
            repo,
            settings,
            http,
            events,
            cancellable: gio::Cancellable::new(),
            seen: Default::default(),
        }
    }

    /// Stops a running update; the repository stays consistent.
    pub fn cancel(&self) {
        self.cancellable.cancel();
    }

    pub fn cancellable(&self) -> &gio::Cancellable {
        &self.cancellable
    }

    fn emit(&self, event: EngineEvent) {
        // A consumer that went away must not stop the update.
        let _ = self.events.try_send(event);
    }

    /// What every source discovery offered looked like, for error messages.
    fn describe_sources(&self) -> String {
        let seen = self.seen.borrow();
        if seen.is_empty() {
            return "no sources were found".into();
        }
        seen.join("; ")
    }

    fn prepare_sources(&self, sources: &[Source]) -> Vec<EngineSource> {
        *self.seen.borrow_mut() = sources
            .iter()
            .map(|s| match &s.error {
                Some(error) => format!("{} is {}: {error}", s.name, s.state),
                None => format!("{} is {}", s.name, s.state),
            })
            .collect();
        let file_limit = self
            .settings
            .file_in_flight
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 2);
        sources
            .iter()
            .filter(|s| s.state.is_usable())
            .filter_map(|s| {
                let transport = Transport::for_uri(&s.uri, &self.http).ok()?;
                let limit = if transport.is_file() {
                    file_limit
                } else {
                    INITIAL_HTTP_IN_FLIGHT
                };
                Some(EngineSource {
                    source: s.clone(),
                    transport,
                    alive: true,
                    in_flight: 0,
                    limit,
                    successes: 0,
                    bytes: 0,
                    objects: 0,
                    last_error: None,
                    rate: RateMeter::default(),
                    passed_over_until: None,
                    hedged: 0,
                })
            })
            .collect()
    }

    /// Finds the newest trusted commit of each target across `sources`.
    pub async fn check(
        &self,
        targets: &[Target],
        sources: &[Source],
    ) -> Result<Vec<RefPlan>, EngineError> {
        let mut engine_sources = self.prepare_sources(sources);
        let mut plans = Vec::new();
        for target in targets {
            let (usable, unused) = self.sources_for(target, &mut engine_sources);
            plans.push(
                self.resolve(target, &mut engine_sources[..usable], unused)
                    .await?,
            );
        }
        Ok(plans)
    }

    /// Resolves and pulls every target, moving each ref once its closure is stored.
    /// A ref that fails does not stop the others: each one's outcome is returned
    /// (and sent as a `RefResult` event). Only cancelling ends the whole update.
    pub async fn update(
        &self,
        targets: &[Target],
        sources: &[Source],
    ) -> Result<Vec<RefOutcome>, EngineError> {
        let mut engine_sources = self.prepare_sources(sources);
        let mut outcomes = Vec::new();
        for target in targets {
            let (usable, unused) = self.sources_for(target, &mut engine_sources);
            let usable = &mut engine_sources[..usable];
            let result = match self.resolve(target, usable, unused).await {
                Ok(plan) if plan.up_to_date => Ok(plan),
                Ok(plan) => self.pull(target, &plan, usable).await.map(|()| plan),
                Err(e) => Err(e),
            };
            if matches!(result, Err(EngineError::Cancelled)) || self.cancellable.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let (status, commit, error) = match &result {
                Ok(plan) if plan.up_to_date => (RefStatus::UpToDate, Some(plan.commit), None),
                Ok(plan) => (RefStatus::Updated, Some(plan.commit), None),
                Err(e) => (RefStatus::Failed, None, Some(e.to_string())),
            };
            self.emit(EngineEvent::RefResult {
                remote: target.remote.name.clone(),
                ref_name: target.ref_name.clone(),
                status,
                commit,
                error,
            });
            outcomes.push(RefOutcome {
                remote: target.remote.name.clone(),
                ref_name: target.ref_name.clone(),
                result,
            });
        }
        Ok(outcomes)
    }

    /// Puts the sources `target` may use first and returns how many there are, and
    /// the sources offering its ref that it may not use, with why.
    fn sources_for(
        &self,
        target: &Target,
        sources: &mut [EngineSource],
    ) -> (usize, Vec<UnusedSource>) {
        let named = &self.settings.named_sources;
        // Stable: the order among the usable ones stays as it was.
        sources.sort_by_key(|s| unused_reason(&target.remote, &s.source, named).is_some());
        let usable = sources
            .iter()
            .take_while(|s| unused_reason(&target.remote, &s.source, named).is_none())
            .count();
        let unused = sources[usable..]
            .iter()
            .filter(|s| s.source.offer_for(target).is_some())
            .filter_map(|s| {
                let reason = unused_reason(&target.remote, &s.source, named)?;
                let message = match reason {
                    UnusedReason::RemoteNotVerified => format!(
                        "{} is not used for {}: remote {} verifies no commit signatures, so \
                         only its own URL and sources named by hand are trusted",
                        s.source.name, target.ref_name, target.remote.name
                    ),
                };
                Some(UnusedSource {
                    source: s.source.id.clone(),
                    name: s.source.name.clone(),
                    reason,
                    message,
                })
            })
            .collect();
        (usable, unused)
    }

    fn drop_source(&self, source: &mut EngineSource, reason: String) {
        if source.alive {
            source.alive = false;
            source.last_error = Some(reason.clone());
            self.emit(EngineEvent::SourceDropped {
                source: source.label(),
                reason,
            });
        }
    }

    async fn resolve(
        &self,
        target: &Target,
        sources: &mut [EngineSource],
        unused_sources: Vec<UnusedSource>,
    ) -> Result<RefPlan, EngineError> {
        let remote = &target.remote;
        let current = self
            .repo
            .installed(&remote.name, &target.ref_name)?
            .map(|(checksum, commit)| (checksum, commit.timestamp));
        let policy = TrustPolicy::for_remote(self.repo.root(), &remote.into())?;

        // Offers, newest claimed first; a source's claim is only a hint.
        let mut offers: Vec<(Checksum, Option<u64>, usize)> = Vec::new();
        for (i, s) in sources.iter().enumerate().filter(|(_, s)| s.alive) {
            if let Some(offer) = s.source.offer_for(target) {
                offers.push((offer.commit, offer.timestamp, i));
            }
        }
        if offers.is_empty() && !unused_sources.is_empty() {
            let unused = unused_sources
                .iter()
                .map(|u| format!("{} ({})", u.name, u.source))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(EngineError::OnlyUnverifiedNearby {
                remote: remote.name.clone(),
                ref_name: target.ref_name.clone(),
                unused,
            });
        }
        if offers.is_empty() {
            return Err(EngineError::NoSource {
                ref_name: target.ref_name.clone(),
                looked_at: self.describe_sources(),
            });
        }
        offers.sort_by_key(|o| std::cmp::Reverse(o.1));

        let mut verified: Vec<TrustedCommit> = Vec::new();
        let mut rejected = Vec::new();
        let mut tried: HashSet<Checksum> = HashSet::new();
        for (commit_checksum, _, _) in offers.clone() {
            if !tried.insert(commit_checksum) {
                continue;
            }
            let holders: Vec<usize> = offers
                .iter()
                .filter(|(c, _, _)| *c == commit_checksum)
                .map(|(_, _, i)| *i)
                .collect();
            match self
                .fetch_trusted_commit(&policy, target, commit_checksum, current, &holders, sources)
                .await
            {
                Ok(found) => verified.push(found),
                Err(mut reasons) => rejected.append(&mut reasons),
            }
        }
        let mut best = verified.into_iter().max_by_key(|(_, c, _, _)| c.timestamp);
        // Only stale sources around (every offer older than what is installed, so
        // refused as a downgrade): the installed commit stays, and that is no error.
        if let (None, Some((installed, installed_at))) = (&best, current) {
            if offers
                .iter()
                .all(|(_, claimed, _)| claimed.is_some_and(|t| t <= installed_at))
            {
                let (commit, bytes) = self.repo.load_commit(&installed)?;
                let detached = self.repo.load_detached_metadata(&installed)?;
                best = Some((
                    installed,
                    commit,
                    glib::Bytes::from_owned(bytes),
                    detached.map(glib::Bytes::from_owned),
                ));
            }
        }
        let Some((commit_checksum, commit, commit_bytes, detached)) = best else {
            let reasons = rejected
                .iter()
                .map(|r: &RejectedCommit| {
                    format!("{} from {}: {}", short(&r.commit), r.source, r.reason)
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(EngineError::NoTrustedCommit {
                ref_name: target.ref_name.clone(),
                reasons,
            });
        };
        let up_to_date = current.is_some_and(|(c, _)| c == commit_checksum)
            && !self.repo.is_commit_partial(&commit_checksum);
        let holders = offers
            .iter()
            .filter(|(c, _, _)| *c == commit_checksum)
            .map(|(_, _, i)| sources[*i].source.id.clone())
            .collect();
        // One stat per object of the commit: off the main thread.
        let download = if up_to_date {
            Some(DownloadSize::default())
        } else {
            let repo = self.repo.clone();
            let commit = commit.clone();
            gio::spawn_blocking(move || DownloadSize::missing_from(&repo, &commit))
                .await
                .unwrap_or(None)
        };
        let plan = RefPlan {
            remote: remote.name.clone(),
            ref_name: target.ref_name.clone(),
            commit: commit_checksum,
            timestamp: commit.timestamp,
            version: commit.version(),
            subject: commit.subject.clone(),
            current: current.map(|(c, _)| c),
            up_to_date,
            sources: holders,
            rejected,
            download,
            unused_sources,
            commit_bytes,
            detached,
        };
        self.emit(EngineEvent::Resolved { plan: plan.clone() });
        Ok(plan)
    }

    /// Fetches a commit from one of `holders` and checks it; on failure, why each
    /// holder's copy was refused.
    async fn fetch_trusted_commit(
        &self,
        policy: &TrustPolicy,
        target: &Target,
        checksum: Checksum,
        current: Option<(Checksum, u64)>,
        holders: &[usize],
        sources: &mut [EngineSource],
    ) -> Result<TrustedCommit, Vec<RejectedCommit>> {
        let mut reasons = Vec::new();
        let commit_path = ObjectName::new(checksum, ObjectType::Commit).relative_path();
        let meta_path = ObjectName::new(checksum, ObjectType::CommitMeta).relative_path();
        let spill_dir = self.repo.root().join("tmp");
        for &i in holders {
            if !sources[i].alive {
                continue;
            }
            let source_id = sources[i].source.id.clone();
            let reject = |reason: String| RejectedCommit {
                commit: checksum,
                source: source_id.clone(),
                reason,
            };
            let bytes = match sources[i]
                .transport
                .get_bytes(&commit_path, MAX_METADATA_SIZE, &spill_dir)
                .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    if e.source_is_gone() {
                        self.drop_source(&mut sources[i], e.to_string());
                    }
                    reasons.push(reject(format!("cannot fetch the commit: {e}")));
                    continue;
                }
            };
            if Checksum::digest(&bytes) != checksum {
                let reason = format!("served commit {} with the wrong content", short(&checksum));
                self.drop_source(&mut sources[i], reason.clone());
                reasons.push(reject(reason));
                continue;
            }
            let commit = match Commit::parse(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    reasons.push(reject(e.to_string()));
                    continue;
                }
            };
            // Detached metadata is not content-addressed: each holder's copy is judged.
            let detached = match sources[i]
                .transport
                .get_bytes(&meta_path, MAX_METADATA_SIZE, &spill_dir)
                .await
            {
                Ok(bytes) => Some(bytes),
                Err(TransportError::NotFound) => None,
                Err(e) => {
                    if e.source_is_gone() {
                        self.drop_source(&mut sources[i], e.to_string());
                    }
                    reasons.push(reject(format!("cannot fetch the signatures: {e}")));
                    continue;
                }
            };
            let detached_variant = match detached
                .as_deref()
                .map(trust::parse_detached_metadata)
                .transpose()
            {
                Ok(v) => v,
                Err(e) => {
                    reasons.push(reject(e.to_string()));
                    continue;
                }
            };
            match policy.verify_commit(&CommitToVerify {
                commit_bytes: &bytes,
                detached_metadata: detached_variant,
                ref_name: &target.ref_name,
                current,
            }) {
                Ok(_) => return Ok((checksum, commit, bytes, detached)),
                Err(e) => reasons.push(reject(e.to_string())),
            }
        }
        Err(reasons)
    }

    /// Rank of a source for this ref: lower is preferred (rules 1, 2, 7).
    fn rank(source: &EngineSource, plan: &RefPlan) -> SourceRank {
        let is_file = source.transport.is_file();
        let has_commit = plan.sources.contains(&source.source.id);
        let internet = source.source.kind == SourceKind::Internet;
        let freshness = if has_commit {
            0
        } else {
            -(source.source.last_modified.unwrap_or(0) as i64)
        };
        (
            u8::from(!is_file),
            u8::from(!has_commit),
            u8::from(internet),
            freshness,
        )
    }

    async fn pull(
        &self,
        target: &Target,
        plan: &RefPlan,
        sources: &mut [EngineSource],
    ) -> Result<(), EngineError> {
        let repo = &self.repo;
        let pull = CommitPull::begin(repo, plan.commit)?;
        let txn = pull.transaction().clone();
        let ranks: Vec<_> = sources.iter().map(|s| Self::rank(s, plan)).collect();
        let commit = Commit::parse(&plan.commit_bytes)?;

        let mut queue: VecDeque<ObjectName> = VecDeque::new();
        let mut seen: HashSet<ObjectName> = HashSet::new();
        let mut failed_on: HashMap<ObjectName, Vec<usize>> = HashMap::new();
        let mut overall = OverallProgress {
            forecast_bytes: plan.download.map(|d| d.bytes),
            ..OverallProgress::default()
        };
        let mut stored_metadata = 0u64;
        let roots = [
            ObjectName::new(commit.root_meta, ObjectType::DirMeta),
            ObjectName::new(commit.root_tree, ObjectType::DirTree),
        ];
        self.enqueue(
            &txn,
            &roots,
            &mut queue,
            &mut seen,
            &mut overall,
            &mut stored_metadata,
        )?;

        let size_limits = SizeLimits::of(&commit);
        let (results_tx, results_rx) = async_channel::unbounded::<(ObjectName, usize, Fetched)>();
        let mut requests = Requests::new(txn.clone(), results_tx);
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_error = String::from("none");

        let mut last_slow_scan = Instant::now();

        loop {
            let now = Instant::now();
            // Slow requests are looked for a few times a second, not on every
            // result: a scan walks every request in flight.
            let scan_slow = now.duration_since(last_slow_scan) >= SLOW_SCAN_INTERVAL;
            if scan_slow {
                last_slow_scan = now;
                // A source whose every request crawls is passed over for a while,
                // so lower-ranked sources take the work.
                for (i, stalled) in requests
                    .stalled_sources(sources.len(), now)
                    .into_iter()
                    .enumerate()
                {
                    if stalled {
                        sources[i].passed_over_until = Some(now + STALL_PENALTY);
                    }
                }
            }
            let passed_over: Vec<bool> = sources
                .iter()
                .map(|s| s.passed_over_until.is_some_and(|t| t > now))
                .collect();

            // Hand out work: each object goes to the best-ranked live source that has
            // not failed it; among equals, at random; a busy best source keeps it.
            let mut scanned = 0;
            let mut index = 0;
            while index < queue.len() && scanned < 512 {
                scanned += 1;
                let name = queue[index];
                let failed = failed_on.get(&name);
                let candidates: Vec<usize> = (0..sources.len())
                    .filter(|&i| sources[i].alive && !failed.is_some_and(|f| f.contains(&i)))
                    .collect();
                if candidates.is_empty() {
                    let tried = failed
                        .map(|f| {
                            f.iter()
                                .map(|&i| sources[i].source.id.clone())
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    requests.abort_all();
                    return Err(if sources.iter().any(|s| s.alive) {
                        EngineError::ObjectUnavailable {
                            ref_name: target.ref_name.clone(),
                            object: name.to_string(),
                            tried,
                        }
                    } else {
                        EngineError::AllSourcesFailed {
                            ref_name: target.ref_name.clone(),
                            last: last_error,
                        }
                    });
                }
                let Some(chosen) = pick_source(&candidates, &ranks, sources, &passed_over) else {
                    index += 1;
                    continue;
                };
                queue.remove(index);
                let limit = size_limits.of_object(&name);
                requests.dispatch(name, chosen, limit, sources);
            }

            // Hedging: a request that crawls is asked of another source too; the
            // first verified copy wins and the other request is let go.
            let slow = if scan_slow {
                requests.slow_unhedged(now)
            } else {
                Vec::new()
            };
            for name in slow {
                let holder = requests.sources_of(&name);
                let failed = failed_on.get(&name);
                let candidates: Vec<usize> = (0..sources.len())
                    .filter(|&i| {
                        sources[i].alive
                            && !holder.contains(&i)
                            && !passed_over[i]
                            && !failed.is_some_and(|f| f.contains(&i))
                    })
                    .collect();
                if let Some(chosen) = pick_best_free(&candidates, &ranks, sources) {
                    sources[chosen].hedged += 1;
                    let limit = size_limits.of_object(&name);
                    requests.dispatch(name, chosen, limit, sources);
                }
            }

            if queue.is_empty() && requests.is_empty() {
                break;
            }
            if self.cancellable.is_cancelled() {
                requests.abort_all();
                return Err(EngineError::Cancelled);
            }
            let received = glib::future_with_timeout(PROGRESS_INTERVAL, results_rx.recv()).await;
            if let Ok(Ok((name, i, outcome))) = received {
                // A request let go after its object arrived from elsewhere.
                let Some(others_in_flight) = requests.finish(&name, i, sources) else {
                    continue;
                };
                let source = &mut sources[i];
                match outcome {
                    Fetched::Stored { bytes, children } => {
                        requests.cancel(&name, sources);
                        let source = &mut sources[i];
                        source.bytes += bytes;
                        source.objects += 1;
                        source.successes += 1;
                        source.rate.add(bytes);
                        overall.bytes_done += bytes;
                        overall.objects_done += 1;
                        // Additive increase while the source keeps up.
                        if !source.transport.is_file()
                            && source.successes.is_multiple_of(source.limit as u64)
                            && source.limit < MAX_HTTP_IN_FLIGHT
                        {
                            source.limit += 1;
                        }
                        if self.settings.object_events {
                            self.emit(EngineEvent::ObjectFetched {
                                source: source.source.id.clone(),
                                object: name.to_string(),
                                bytes,
                            });
                        }
                        self.enqueue(
                            &txn,
                            &children,
                            &mut queue,
                            &mut seen,
                            &mut overall,
                            &mut stored_metadata,
                        )?;
                    }
                    // The other copy is being stored; its result decides.
                    Fetched::Duplicate => {}
                    Fetched::NotFound => {
                        failed_on.entry(name).or_default().push(i);
                        if !others_in_flight {
                            queue.push_front(name);
                        }
                    }
                    Fetched::Bad(error) => {
                        let reason = format!("sent a bad object: {error}");
                        last_error = reason.clone();
                        self.drop_source(source, reason);
                        failed_on.entry(name).or_default().push(i);
                        if !others_in_flight {
                            queue.push_front(name);
                        }
                    }
                    Fetched::Failed(error) => {
                        last_error = format!("{}: {error}", source.source.id);
                        if error.source_is_gone() {
                            self.drop_source(source, error.to_string());
                        } else {
                            // Server trouble: back off and let another source try.
                            source.limit = (source.limit / 2).max(1);
                            source.last_error = Some(error.to_string());
                            failed_on.entry(name).or_default().push(i);
                        }
                        if !others_in_flight {
                            queue.push_front(name);
                        }
                    }
                    Fetched::Local(error) => {
                        requests.abort_all();
                        return Err(error.into());
                    }
                }
            }
            if last_progress.elapsed() >= PROGRESS_INTERVAL {
                self.emit_progress(target, &mut overall, sources, started);
                last_progress = Instant::now();
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                let txn = txn.clone();
                gio::spawn_blocking(move || txn.checkpoint())
                    .await
                    .unwrap_or_else(|_| Err(RepoError::format("checkpoint", "worker panicked")))?;
                last_checkpoint = Instant::now();
            }
        }
        self.emit_progress(target, &mut overall, sources, started);

        drop(requests);
        let (kind, ref_name) = (
            RefKind::Remote(target.remote.name.clone()),
            target.ref_name.clone(),
        );
        let (commit_bytes, detached) = (plan.commit_bytes.clone(), plan.detached.clone());
        let previous = gio::spawn_blocking(move || {
            pull.finish(&commit_bytes, detached.as_deref(), &kind, &ref_name)
        })
        .await
        .unwrap_or_else(|_| Err(RepoError::format("commit", "worker panicked")))?;
        self.emit(EngineEvent::RefUpdated {
            remote: target.remote.name.clone(),
            ref_name: target.ref_name.clone(),
            commit: plan.commit,
            previous,
        });
        Ok(())
    }

    /// Queues what is missing; what is stored already is walked in place.
    fn enqueue(
        &self,
        txn: &Transaction,
        names: &[ObjectName],
        queue: &mut VecDeque<ObjectName>,
        seen: &mut HashSet<ObjectName>,
        overall: &mut OverallProgress,
        stored_metadata: &mut u64,
    ) -> Result<(), EngineError> {
        let mut pending: Vec<ObjectName> = names.to_vec();
        while let Some(name) = pending.pop() {
            if !seen.insert(name) {
                continue;
            }
            if !txn.has_object(&name) {
                overall.objects_total += 1;
                // Metadata first: it reveals the rest of the tree sooner.
                if name.kind == ObjectType::File {
                    queue.push_back(name);
                } else {
                    queue.push_front(name);
                }
                continue;
            }
            if name.kind == ObjectType::DirTree {
                *stored_metadata += 1;
                let tree = DirTree::parse(&txn.read_object_bytes(&name)?)?;
                pending.extend(tree.children());
            }
        }
        overall.bytes_total = match overall.forecast_bytes {
            // The commit's own size index beats any estimate.
            Some(forecast) => forecast.max(overall.bytes_done),
            // Else estimate from the average object so far.
            None => {
                let average = overall
                    .bytes_done
                    .checked_div(overall.objects_done)
                    .unwrap_or(0);
                overall.bytes_done + (overall.objects_total - overall.objects_done) * average
            }
        };
        Ok(())
    }

    fn emit_progress(
        &self,
        target: &Target,
        overall: &mut OverallProgress,
        sources: &[EngineSource],
        started: Instant,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        let remaining = overall.bytes_total.saturating_sub(overall.bytes_done);
        overall.eta_seconds = (overall.bytes_done > 0 && elapsed > 1.0)
            .then(|| (remaining as f64 / (overall.bytes_done as f64 / elapsed)) as u64);
        let progress = sources
            .iter()
            .map(|s| SourceProgress {
                source: s.label(),
                state: if !s.alive {
                    TransferState::Dropped
                } else if s.in_flight > 0 {
                    TransferState::Downloading
                } else {
                    TransferState::Idle
                },
                bytes: s.bytes,
                objects: s.objects,
                rate: s.rate.rate(),
                in_flight: s.in_flight,
                hedged: s.hedged,
                last_error: s.last_error.clone(),
            })
            .collect();
        self.emit(EngineEvent::Progress {
            ref_name: target.ref_name.clone(),
            overall: overall.clone(),
            sources: progress,
        });
    }
}

/// How large each object may be. The commit's size index (signed with it) names
/// each object's size: a body well past that is cut off and its source dropped
/// before it fills the disk. A different compression may change the archived
/// size a little, never beyond the slack allowed here.
struct SizeLimits {
    index: HashMap<ObjectName, u64>,
}

impl SizeLimits {
    fn of(commit: &Commit) -> Self {
        let index = commit
            .sizes()
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                let size = entry.archived.max(entry.unpacked);
                (entry.name, size + size / 8 + SIZE_SLACK)
            })
            .collect();
        Self { index }
    }

    fn of_object(&self, name: &ObjectName) -> u64 {
        let bound = match name.kind {
            ObjectType::File => MAX_FILE_OBJECT_SIZE,
            _ => MAX_METADATA_SIZE,
        };
        self.index
            .get(name)
            .map_or(bound, |&limit| limit.min(bound))
    }
}

/// One object asked of one source.
struct Request {
    source: usize,
    started: Instant,
    received: Arc<AtomicU64>,
    task: glib::JoinHandle<()>,
}

impl Request {
    /// Running `HEDGE_AFTER` or longer at under `HEDGE_RATE` on average.
    fn is_slow(&self, now: Instant) -> bool {
        let running = now.duration_since(self.started);
        running >= HEDGE_AFTER
            && (self.received.load(Ordering::Relaxed) as f64 / running.as_secs_f64())
                < HEDGE_RATE as f64
    }
}

/// The requests in flight, by object: one, or two once the first was slow.
struct Requests {
    by_object: HashMap<ObjectName, Vec<Request>>,
    txn: Arc<Transaction>,
    results: async_channel::Sender<(ObjectName, usize, Fetched)>,
}

impl Requests {
    fn new(
        txn: Arc<Transaction>,
        results: async_channel::Sender<(ObjectName, usize, Fetched)>,
    ) -> Self {
        Self {
            by_object: HashMap::new(),
            txn,
            results,
        }
    }

    /// Asks source `chosen` for `name`, whose body may take `limit` bytes; the
    /// result comes back on the results channel.
    fn dispatch(
        &mut self,
        name: ObjectName,
        chosen: usize,
        limit: u64,
        sources: &mut [EngineSource],
    ) {
        sources[chosen].in_flight += 1;
        let transport = sources[chosen].transport.clone();
        let txn = self.txn.clone();
        let results = self.results.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = glib::MainContext::default().spawn_local(async move {
            let outcome = fetch_object(&transport, &txn, name, limit, counter).await;
            let _ = results.send((name, chosen, outcome)).await;
        });
        self.by_object.entry(name).or_default().push(Request {
            source: chosen,
            started: Instant::now(),
            received,
            task,
        });
    }

    fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }

    fn sources_of(&self, name: &ObjectName) -> Vec<usize> {
        self.by_object
            .get(name)
            .map(|list| list.iter().map(|r| r.source).collect())
            .unwrap_or_default()
    }

    /// Objects whose only request is slow.
    fn slow_unhedged(&self, now: Instant) -> Vec<ObjectName> {
        self.by_object
            .iter()
            .filter(|(_, list)| list.len() == 1 && list[0].is_slow(now))
            .map(|(name, _)| *name)
            .collect()
    }

    /// Per source: whether it has requests in flight and every one is slow.
    fn stalled_sources(&self, count: usize, now: Instant) -> Vec<bool> {
        let mut busy = vec![false; count];
        let mut fast = vec![false; count];
        for request in self.by_object.values().flatten() {
            busy[request.source] = true;
            if !request.is_slow(now) {
                fast[request.source] = true;
            }
        }
        busy.iter().zip(&fast).map(|(b, f)| *b && !f).collect()
    }

    /// Removes the request of `source` for `name`, whose result came in. `None`
    /// when there is no such request (it was let go after another copy won);
    /// else whether another request for the object is still in flight.
    fn finish(
        &mut self,
        name: &ObjectName,
        source: usize,
        sources: &mut [EngineSource],
    ) -> Option<bool> {
        let list = self.by_object.get_mut(name)?;
        let at = list.iter().position(|r| r.source == source)?;
        list.remove(at);
        sources[source].in_flight -= 1;
        let others = !list.is_empty();
        if !others {
            self.by_object.remove(name);
        }
        Some(others)
    }

    /// Lets go of every request still in flight for `name`.
    fn cancel(&mut self, name: &ObjectName, sources: &mut [EngineSource]) {
        for request in self.by_object.remove(name).into_iter().flatten() {
            request.task.abort();
            sources[request.source].in_flight -= 1;
        }
    }

    fn abort_all(&mut self) {
        for request in self.by_object.drain().flat_map(|(_, list)| list) {
            request.task.abort();
        }
    }
}

/// The source for an object among `candidates` (rule 1, 2, 6, 7): the best rank,
/// passing over stalled sources while others remain; random among equals. `None`
/// when every best source is busy: the object waits for one.
fn pick_source(
    candidates: &[usize],
    ranks: &[SourceRank],
    sources: &[EngineSource],
    passed_over: &[bool],
) -> Option<usize> {
    let lively: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !passed_over[i])
        .collect();
    let pool = if lively.is_empty() {
        candidates
    } else {
        &lively
    };
    let best = pool.iter().map(|&i| ranks[i]).min()?;
    let mut free: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|&i| ranks[i] == best && sources[i].in_flight < sources[i].limit)
        .collect();
    free.shuffle(&mut rand::rng());
    free.first().copied()
}

/// The best-ranked of `candidates` with a free slot, random among equals.
fn pick_best_free(
    candidates: &[usize],
    ranks: &[SourceRank],
    sources: &[EngineSource],
) -> Option<usize> {
    let free: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| sources[i].in_flight < sources[i].limit)
        .collect();
    let best = free.iter().map(|&i| ranks[i]).min()?;
    let mut equal: Vec<usize> = free.into_iter().filter(|&i| ranks[i] == best).collect();
    equal.shuffle(&mut rand::rng());
    equal.first().copied()
}

fn short(c: &Checksum) -> String {
    c.to_hex()[..12].to_owned()
}

/// Fetches, verifies and stages one object from one source.
/// Fetches, verifies and stages one object from one source; `limit` bounds its
/// body, `received` counts the bytes as they come.
async fn fetch_object(
    transport: &Transport,
    txn: &Arc<Transaction>,
    name: ObjectName,
    limit: u64,
    received: Arc<AtomicU64>,
) -> Fetched {
    let relative = name.relative_path();
    if name.kind == ObjectType::File {
        if let Transport::File(root) = transport {
            // Straight from the drive into staging, verified on the way; off the
            // main context with a deadline, so a drive that hangs blocks nothing.
            let (root, txn) = (root.clone(), txn.clone());
            let shown = root.join(&relative);
            return beneath::off_thread(beneath::drive_deadline(), move || {
                stage_file_object(&txn, &name, &root, &relative, &received)
            })
            .await
            .unwrap_or_else(|e| {
                Fetched::Failed(TransportError::NotAnswering(format!(
                    "{}: {e}",
                    shown.display()
                )))
            });
        }
    }
    let spill_dir = txn.staging_dir().to_path_buf();
    let body = match transport
        .get_counted(&relative, limit, &spill_dir, &received)
        .await
    {
        Ok(body) => body,
        Err(TransportError::NotFound) => return Fetched::NotFound,
        Err(TransportError::TooLarge(limit)) => {
            return Fetched::Bad(RepoError::CorruptObject {
                name,
                reason: format!("larger than the {limit} bytes it may take"),
            })
        }
        Err(e) => return Fetched::Failed(e),
    };
    let txn = txn.clone();
    gio::spawn_blocking(move || stage_body(&txn, &name, body))
        .await
        .unwrap_or_else(|_| Fetched::Local(RepoError::format("worker", "panicked")))
}

/// Counts what passes through, for the scheduler's view of a request's pace.
struct Counting<'a, R> {
    inner: R,
    count: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Stages the `.filez` at `root/relative` (a drive) verified against `name`. The
/// file is opened beneath the repository root (no FIFO, device or link out of it);
/// a read that fails because the drive went away (`EIO`, `ENODEV`, a vanished
/// mount) makes the source lost, never "sent a bad object".
fn stage_file_object(
    txn: &Transaction,
    name: &ObjectName,
    root: &Path,
    relative: &str,
    received: &AtomicU64,
) -> Fetched {
    let tree = match Tree::open(root) {
        Ok(tree) => tree,
        Err(e) => return Fetched::Failed(e.into()),
    };
    let file = match tree.open_file(relative) {
        Ok(file) => file,
        Err(BeneathError::NotFound { .. }) => return Fetched::NotFound,
        Err(e) => return Fetched::Failed(e.into()),
    };
    let mut reader = beneath::ErrorKeepingReader::new(Counting {
        inner: file,
        count: received,
    });
    let result = txn.stage_filez(name, &mut reader);
    match (result, reader.into_error()) {
        // The drive failed under the read: its error, not the object's.
        (Err(_), Some(e)) => Fetched::Failed(tree.read_error(relative, e).into()),
        (result, _) => classify(result, Vec::new()),
    }
}

fn stage_body(txn: &Transaction, name: &ObjectName, body: Body) -> Fetched {
    match name.kind {
        ObjectType::File => {
            let result = match &body {
                Body::Memory(bytes) => txn.stage_filez(name, &bytes[..]),
                Body::File { path, .. } => std::fs::File::open(path)
                    .map_err(|e| RepoError::io(path, e))
                    .and_then(|file| txn.stage_filez(name, file)),
            };
            if let Body::File { path, .. } = &body {
                if path.starts_with(txn.staging_dir()) {
                    let _ = std::fs::remove_file(path);
                }
            }
            classify(result, Vec::new())
        }
        _ => {
            // Large metadata (a directory of 20,000 entries) was spilled: mapped.
            let bytes = match body.into_bytes() {
                Ok(bytes) => bytes,
                Err(e) => return Fetched::Local(RepoError::format("download", e.to_string())),
            };
            let children = match verify_metadata(name, &bytes) {
                Ok(children) => children,
                Err(e) => return Fetched::Bad(e),
            };
            classify(
                txn.stage_bytes(name, &bytes).map(|_| bytes.len() as u64),
                children,
            )
        }
    }
}

fn classify(result: Result<u64, RepoError>, children: Vec<ObjectName>) -> Fetched {
    match result {
        Ok(bytes) => Fetched::Stored { bytes, children },
        Err(RepoError::AlreadyStaging(_)) => Fetched::Duplicate,
        Err(e) if e.is_local() => Fetched::Local(e),
        Err(e) => Fetched::Bad(e),
    }
}
