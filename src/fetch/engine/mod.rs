//! The multi-source pull engine.
//!
//! Runs on the thread-default GLib main context. For each tracked ref it resolves
//! the newest commit that passes trust across all sources, then fetches the commit's
//! closure from every useful source at once. CPU work (inflate, sha256, parsing)
//! runs on GLib's worker threads; progress goes out as typed events on a channel,
//! at most every `PROGRESS_INTERVAL`.
//!
//! By job: `events` (what the engine reports), `resolve` (which sources a ref may
//! use and which commit it gets), `schedule` (the `Scheduler`: which source serves
//! which object, no I/O), `requests` (the requests in flight), `stage` (the
//! transaction, fetching and verifying one object over HTTP, the walk over stored
//! trees), `drive` (the drive transport: every `file://` source is read by a pool
//! of worker threads, results coming back per object), and here the loop that ties
//! them together (`Engine::transfer`).
//!
//! It is the one pull path: `update` (the app, `ferryctl update`), `ferryctl pull
//! URI` (`update` with one named source) and prepare-usb (`copy_trusted`: a
//! commit the local repository holds, onto a drive).
//!
//! Where DESIGN.md's engine rules live:
//!
//! | rule | where |
//! |---|---|
//! | 1 `file://` first; 2 fresher summaries first; 7 stale sources serve what they hold | `schedule::SourceRank::of` (via `Engine::rank`), `Scheduler::choose_source`; rule 7 also `Outcome::NotFound` moving the object on |
//! | 3 a refusing source is dropped | discovery; `Outcome::Failed { source_gone: true }` in `Scheduler::on_result`; `Engine::fetch_trusted_commit`; a drive that stops answering: `Requests::not_answering` (`drive::DriveRequest::is_hung`) |
//! | 4 no summary: dropped | discovery (`sources::discovery`), `Engine::prepare_sources` |
//! | 5 a 404 moves one object on | `Scheduler::on_result` (`Outcome::NotFound`) → `Scheduler::move_on`; no candidate left: `Scheduler::no_candidate` |
//! | 6 random among equals | `Scheduler::choose_source`, `Scheduler::best_free` (the scheduler's seeded `StdRng`) |
//! | 8 commit verified first | `Engine::resolve`, `Engine::fetch_trusted_commit` |
//! | 9 every object verified; a bad one drops its source | `stage::stage_body` (HTTP), `drive::fetch` (drives); `Scheduler::on_result` (`Outcome::Bad`) |
//! | 10 ref last | `stage::publish` (after `Engine::transfer` stored the closure) |
//! | metadata first | `Scheduler::need` |
//! | slow sources: hedging | `schedule::is_slow`, `Scheduler::hedge`, looked over every `SLOW_SCAN_INTERVAL` |
//! | slow sources: stall penalty | `Scheduler::stalled_sources`, `Scheduler::pass_over_stalled` (`STALL_PENALTY`) |
//! | pace: additive increase / halving | `SourceSchedule::additive_increase`, `SourceSchedule::halve_limit` |
//! | how much a source is asked at once | HTTP: `INITIAL_HTTP_IN_FLIGHT` up to `MAX_HTTP_IN_FLIGHT`; a drive: its workers × `FILE_IN_FLIGHT_PER_WORKER`; `Scheduler::pick` stops looking once the rest must wait |
//! | size bounds | `requests::SizeLimits` (the commit's `ostree.sizes`), `MAX_METADATA_SIZE` |

mod drive;
mod events;
mod requests;
mod resolve;
mod schedule;
mod stage;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gio::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

pub use self::events::{
    DownloadSize, EngineEvent, OverallProgress, RefOutcome, RefPlan, RefStatus, RejectedCommit,
    SourceBytes, SourceLabel, SourceProgress, TransferState, UnusedReason, UnusedSource,
};
use self::requests::{Requests, SizeLimits};
pub use self::resolve::unused_reason;
use self::schedule::{NoCandidate, Outcome, Scheduler, SourceRank, SourceSchedule};
use self::stage::Fetched;
use crate::fetch::{CHECKPOINT_INTERVAL, PROGRESS_INTERVAL};
use crate::repo::closure::TreeWalker;
use crate::repo::commit::CommitPull;
use crate::repo::objects::Commit;
use crate::repo::refs::RefKind;
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};
pub use crate::sources::Target;
use crate::sources::{Locality, Source, SourceKind};
use crate::transport::{HttpClient, HttpSettings, RateLimiter, Transport};
use crate::trust;

/// Tests only: `FERRY_TEST_STOP_AFTER_OBJECTS=N` stops the whole process
/// (`SIGSTOP`) once a pull has stored N objects, so that a test can change a source
/// (make a drive fail) at a known point of the pull rather than racing the engine
/// from the outside. `SIGCONT` lets it go on.
fn test_hook_stop_after(objects_done: u64) {
    static STOP_AFTER: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let stop_after = STOP_AFTER.get_or_init(|| {
        std::env::var("FERRY_TEST_STOP_AFTER_OBJECTS")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    if *stop_after == Some(objects_done) {
        // SAFETY: raise(3) with a valid signal number.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// At most this many results are booked between two rounds of handing out work.
const RESULTS_PER_ROUND: usize = 256;

/// How often the requests in flight are looked over for slow ones (a scan walks
/// every request in flight, so not on every result).
const SLOW_SCAN_INTERVAL: Duration = Duration::from_millis(250);

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
    #[error(
        "only the internet offers {ref_name}, and the network connection is metered: internet \
         sources are used on metered connections only when allowed; not used: {unused}"
    )]
    MeteredInternetOnly { ref_name: String, unused: String },
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

#[derive(Clone, Debug, Default)]
pub struct EngineSettings {
    pub http: HttpSettings,
    pub object_events: bool,
    /// Worker threads reading each `file://` source (the drive transport; default
    /// two per core).
    pub file_in_flight: Option<usize>,
    /// Ids of the sources the user chose by hand (`--source`, a source picked in
    /// the window): like static sources, trusted for remotes that verify no
    /// signatures.
    pub named_sources: Vec<String>,
    /// Use internet sources on a metered connection (GIO's network monitor says
    /// whether it is); drives and nearby computers are used either way.
    pub allow_metered: bool,
    pub download_limit: DownloadLimit,
}

/// A limit on how fast a pull downloads, shared by all the sources it applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownloadLimit {
    /// Bytes per second; 0: no limit.
    pub bytes_per_second: u64,
    /// Limit only internet sources (nearby computers go at full speed).
    pub internet_only: bool,
}

impl DownloadLimit {
    /// Whether the limit applies to a source of `locality`. Only HTTP is limited:
    /// drives are read at their own speed.
    pub fn applies_to(&self, locality: Locality) -> bool {
        self.bytes_per_second > 0 && (!self.internet_only || locality == Locality::Internet)
    }
}

/// Where a pull's ref goes, and the names its events and errors use.
struct PullInto<'a> {
    remote: &'a str,
    ref_name: &'a str,
    destination: RefKind,
}

impl<'a> PullInto<'a> {
    /// An update of `target`: its remote's ref.
    fn remote(target: &'a Target) -> Self {
        Self {
            remote: &target.remote.name,
            ref_name: &target.ref_name,
            destination: RefKind::Remote(target.remote.name.clone()),
        }
    }
}

/// A commit to copy as it is, trusted already: prepare-usb copies what the local
/// repository verified when it pulled it. Every object is still verified on the
/// way in (rule 9).
#[derive(Clone, Debug)]
pub struct TrustedCopy {
    /// The remote the ref belongs to, for events.
    pub remote: String,
    pub ref_name: String,
    pub commit: Checksum,
    pub commit_bytes: glib::Bytes,
    pub detached: Option<glib::Bytes>,
    /// Where the ref is written once the closure is stored.
    pub destination: RefKind,
}

/// A source as the engine sees it during one update.
struct EngineSource {
    source: Source,
    transport: Transport,
    /// How it is scheduled; a pull's `Scheduler` holds the current copy.
    state: SourceSchedule,
    bytes: u64,
    objects: u64,
    last_error: Option<String>,
    rate: RateMeter,
    /// Requests this source took over from a slow one.
    hedged: u64,
}

impl EngineSource {
    fn new(source: Source, transport: Transport, state: SourceSchedule) -> Self {
        Self {
            source,
            transport,
            state,
            bytes: 0,
            objects: 0,
            last_error: None,
            rate: RateMeter::default(),
            hedged: 0,
        }
    }

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
    /// `http` under the download limit, when there is one.
    limited_http: Option<HttpClient>,
    events: async_channel::Sender<EngineEvent>,
    cancellable: gio::Cancellable,
    /// The sources of the current run as given, usable or not.
    seen: std::cell::RefCell<Vec<String>>,
    /// Internet sources of the current run not used: the connection is metered.
    spared: std::cell::RefCell<Vec<Source>>,
    /// What each source of the last update sent.
    received: std::cell::RefCell<Vec<SourceBytes>>,
    /// During `copy_trusted`: the root of the source, this computer's own
    /// repository, read in its mode (bare ones too).
    local_source: std::cell::RefCell<Option<std::path::PathBuf>>,
}

impl Engine {
    pub fn new(
        repo: Repo,
        settings: EngineSettings,
        events: async_channel::Sender<EngineEvent>,
    ) -> Self {
        let http = HttpClient::new(&settings.http);
        let limited_http = (settings.download_limit.bytes_per_second > 0)
            .then(|| http.limited(RateLimiter::new(settings.download_limit.bytes_per_second)));
        Self {
            repo,
            settings,
            http,
            limited_http,
            events,
            cancellable: gio::Cancellable::new(),
            seen: Default::default(),
            spared: Default::default(),
            local_source: Default::default(),
            received: Default::default(),
        }
    }

    /// Stops a running update; the repository stays consistent.
    pub fn cancel(&self) {
        self.cancellable.cancel();
    }

    pub fn cancellable(&self) -> &gio::Cancellable {
        &self.cancellable
    }

    /// What each source sent in the last update (so far, while one runs), the
    /// sources that sent nothing left out.
    pub fn received(&self) -> Vec<SourceBytes> {
        self.received.borrow().clone()
    }

    fn emit(&self, event: EngineEvent) {
        // A consumer that went away must not stop the update.
        let _ = self.events.try_send(event);
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
                Ok(plan) => self
                    .pull(&PullInto::remote(target), &plan, usable)
                    .await
                    .map(|()| plan),
                Err(e) => Err(e),
            };
            self.record_received(&engine_sources);
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

    /// Pulls `copy`'s commit from `source` alone, with no trust check (see
    /// [`TrustedCopy`]), through the same transaction, transports and checks as
    /// `update`. A commit stored complete already only gets its ref written.
    pub async fn copy_trusted(
        &self,
        copy: &TrustedCopy,
        source: &Source,
    ) -> Result<(), EngineError> {
        if Checksum::digest(&copy.commit_bytes) != copy.commit {
            return Err(RepoError::CorruptObject {
                name: ObjectName::new(copy.commit, ObjectType::Commit),
                reason: "its content does not match its name".into(),
            }
            .into());
        }
        let commit = Commit::parse(&copy.commit_bytes)?;
        let into = PullInto {
            remote: &copy.remote,
            ref_name: &copy.ref_name,
            destination: copy.destination.clone(),
        };
        let plan = RefPlan {
            remote: copy.remote.clone(),
            ref_name: copy.ref_name.clone(),
            commit: copy.commit,
            timestamp: commit.timestamp,
            version: commit.version(),
            subject: commit.subject.clone(),
            current: None,
            up_to_date: false,
            sources: vec![source.id.clone()],
            rejected: Vec::new(),
            download: None,
            unused_sources: Vec::new(),
            commit_bytes: copy.commit_bytes.clone(),
            detached: copy.detached.clone(),
        };
        let complete = self
            .repo
            .has_object(&ObjectName::new(copy.commit, ObjectType::Commit))
            && !self.repo.is_commit_partial(&copy.commit);
        if complete {
            let pull = CommitPull::begin(&self.repo, copy.commit)?;
            stage::publish(pull, &into.destination, into.ref_name, &plan).await?;
            return Ok(());
        }
        let mut sources = self.prepare_sources(std::slice::from_ref(source));
        if sources.is_empty() {
            return Err(EngineError::NoSource {
                ref_name: copy.ref_name.clone(),
                looked_at: self.describe_sources(),
            });
        }
        *self.local_source.borrow_mut() = sources[0].transport.path().map(Into::into);
        let result = self.pull(&into, &plan, &mut sources).await;
        self.local_source.borrow_mut().take();
        result
    }

    /// Drops a source for the rest of the update (while resolving; during a pull
    /// the scheduler decides).
    fn drop_source(&self, source: &mut EngineSource, reason: String) {
        if source.state.drop_out() {
            self.report_dropped(source, reason);
        }
    }

    fn report_dropped(&self, source: &mut EngineSource, reason: String) {
        source.last_error = Some(reason.clone());
        self.emit(EngineEvent::SourceDropped {
            source: source.label(),
            reason,
        });
    }

    /// Worker threads per `file://` source.
    fn drive_workers(&self) -> usize {
        self.settings
            .file_in_flight
            .unwrap_or_else(crate::fetch::default_workers)
    }

    /// Rank of a source for this ref (rules 1, 2, 7).
    fn rank(source: &EngineSource, plan: &RefPlan) -> SourceRank {
        SourceRank::of(
            source.transport.is_file(),
            plan.sources.contains(&source.source.id),
            source.source.kind == SourceKind::Internet,
            source.source.last_modified,
        )
    }

    /// Fetches `plan`'s closure into one transaction, then moves the ref.
    async fn pull(
        &self,
        into: &PullInto<'_>,
        plan: &RefPlan,
        sources: &mut [EngineSource],
    ) -> Result<(), EngineError> {
        let pull = CommitPull::begin(&self.repo, plan.commit)?;
        let txn = pull.transaction().clone();
        let mut scheduler = Scheduler::new(
            sources.iter().map(|s| s.state.clone()).collect(),
            sources.iter().map(|s| Self::rank(s, plan)).collect(),
            StdRng::from_rng(&mut rand::rng()),
        );
        let result = self
            .transfer(into.ref_name, plan, &txn, &mut scheduler, sources)
            .await;
        // What this pull learnt of each source (dropped, its pace) holds for the
        // next ref too.
        for (source, state) in sources.iter_mut().zip(scheduler.into_sources()) {
            source.state = state;
        }
        result?;
        // Requests let go after their object came from elsewhere may still hold
        // the transaction on a worker thread: what they stage late goes with the
        // staging directory when the last holder lets go.
        drop(txn);
        let previous = stage::publish(pull, &into.destination, into.ref_name, plan).await?;
        self.emit(EngineEvent::RefUpdated {
            remote: into.remote.to_owned(),
            ref_name: into.ref_name.to_owned(),
            commit: plan.commit,
            previous,
        });
        Ok(())
    }

    /// The loop of a pull: asks the scheduler for assignments, dispatches them,
    /// feeds results back, reports progress and checkpoints, until every object
    /// of the closure is stored.
    async fn transfer(
        &self,
        ref_name: &str,
        plan: &RefPlan,
        txn: &Arc<Transaction>,
        scheduler: &mut Scheduler,
        sources: &mut [EngineSource],
    ) -> Result<(), EngineError> {
        let commit = Commit::parse(&plan.commit_bytes)?;
        let mut walker = TreeWalker::new();
        let mut overall = OverallProgress {
            forecast_bytes: plan.download.map(|d| d.bytes),
            ..OverallProgress::default()
        };
        Self::need(
            txn,
            &commit.children(),
            &mut walker,
            scheduler,
            &mut overall,
        )?;

        let size_limits = SizeLimits::of(&commit);
        let (results_tx, results_rx) = async_channel::unbounded();
        let mut requests = Requests::new(
            txn.clone(),
            results_tx,
            self.drive_workers(),
            self.local_source.borrow().clone(),
        );
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_slow_scan = Instant::now();
        let mut last_error = String::from("none");

        loop {
            let now = Instant::now();
            let mut arrived = Vec::new();
            let slow = (now.duration_since(last_slow_scan) >= SLOW_SCAN_INTERVAL).then(|| {
                last_slow_scan = now;
                // Drives that stopped answering fail what they were asked for.
                arrived = requests.not_answering(now);
                let mut slow = requests.slow(now);
                // Held back by the download limit, not slow.
                slow.retain(|(_, i)| !sources[*i].transport.is_throttled());
                scheduler.pass_over_stalled(&slow, now);
                slow
            });
            if arrived.is_empty() {
                let assignments = match scheduler.pick(now) {
                    Ok(assignments) => assignments,
                    Err(no_candidate) => {
                        requests.abort_all();
                        return Err(no_candidate_error(
                            no_candidate,
                            ref_name,
                            sources,
                            last_error,
                        ));
                    }
                };
                for assignment in assignments {
                    let limit = size_limits.of_object(&assignment.object);
                    requests.dispatch(assignment, &sources[assignment.source].transport, limit);
                }
                for assignment in slow.map_or_else(Vec::new, |slow| scheduler.hedge(&slow, now)) {
                    sources[assignment.source].hedged += 1;
                    let limit = size_limits.of_object(&assignment.object);
                    requests.dispatch(assignment, &sources[assignment.source].transport, limit);
                }

                if scheduler.is_done() {
                    break;
                }
                if self.cancellable.is_cancelled() {
                    requests.abort_all();
                    return Err(EngineError::Cancelled);
                }
                let received =
                    glib::future_with_timeout(PROGRESS_INTERVAL, results_rx.recv()).await;
                if let Ok(Ok(result)) = received {
                    arrived.push(result);
                    // Results that came meanwhile (a drive's workers send many
                    // quickly) are booked before the next round of picking.
                    while arrived.len() < RESULTS_PER_ROUND {
                        let Ok(result) = results_rx.try_recv() else {
                            break;
                        };
                        arrived.push(result);
                    }
                }
            }
            for (name, i, fetched) in arrived {
                // A request let go after its object arrived from elsewhere.
                if !scheduler.is_asked(&name, i) {
                    continue;
                }
                requests.finish(&name, i);
                if let Fetched::Local(error) = fetched {
                    requests.abort_all();
                    return Err(error.into());
                }
                let outcome = match &fetched {
                    Fetched::Stored { .. } => Outcome::Stored,
                    Fetched::Duplicate => Outcome::Duplicate,
                    Fetched::NotFound => Outcome::NotFound,
                    Fetched::Bad(_) => Outcome::Bad,
                    Fetched::Failed(error) => Outcome::Failed {
                        source_gone: error.source_is_gone(),
                    },
                    Fetched::Local(_) => unreachable!("returned above"),
                };
                let settled = scheduler
                    .on_result(name, i, outcome)
                    .expect("the request was asked");
                let source = &mut sources[i];
                match fetched {
                    Fetched::Stored { bytes, children } => {
                        requests.let_go(&name, &settled.let_go);
                        source.bytes += bytes;
                        source.objects += 1;
                        source.rate.add(bytes);
                        overall.bytes_done += bytes;
                        overall.objects_done += 1;
                        if self.settings.object_events {
                            self.emit(EngineEvent::ObjectFetched {
                                source: source.source.id.clone(),
                                object: name.to_string(),
                                bytes,
                            });
                        }
                        Self::need(txn, &children, &mut walker, scheduler, &mut overall)?;
                        test_hook_stop_after(overall.objects_done);
                    }
                    Fetched::Bad(error) => {
                        let reason = format!("sent a bad object: {error}");
                        last_error = format!("{} {reason}", source.source.id);
                        if settled.dropped {
                            self.report_dropped(source, reason);
                        }
                    }
                    Fetched::Failed(error) => {
                        last_error = format!("{}: {error}", source.source.id);
                        if settled.dropped {
                            self.report_dropped(source, error.to_string());
                        } else if !error.source_is_gone() {
                            source.last_error = Some(error.to_string());
                        }
                    }
                    Fetched::Duplicate | Fetched::NotFound | Fetched::Local(_) => {}
                }
            }
            if last_progress.elapsed() >= PROGRESS_INTERVAL {
                self.emit_progress(
                    ref_name,
                    &mut overall,
                    sources,
                    scheduler.sources(),
                    started,
                );
                last_progress = Instant::now();
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                stage::checkpoint(txn.clone(), "checkpoint").await?;
                last_checkpoint = Instant::now();
            }
        }
        self.emit_progress(
            ref_name,
            &mut overall,
            sources,
            scheduler.sources(),
            started,
        );
        Ok(())
    }

    /// Queues for the scheduler what of `names` (and beneath the trees stored
    /// already) is missing, and counts it into the progress totals.
    fn need(
        txn: &Transaction,
        names: &[ObjectName],
        walker: &mut TreeWalker,
        scheduler: &mut Scheduler,
        overall: &mut OverallProgress,
    ) -> Result<(), EngineError> {
        let missing = stage::missing_objects(txn, names, walker)?;
        overall.objects_total += missing.len() as u64;
        scheduler.need(missing);
        overall.estimate_total();
        Ok(())
    }

    fn emit_progress(
        &self,
        ref_name: &str,
        overall: &mut OverallProgress,
        sources: &[EngineSource],
        states: &[SourceSchedule],
        started: Instant,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        let remaining = overall.bytes_total.saturating_sub(overall.bytes_done);
        overall.eta_seconds = (overall.bytes_done > 0 && elapsed > 1.0)
            .then(|| (remaining as f64 / (overall.bytes_done as f64 / elapsed)) as u64);
        let progress = sources
            .iter()
            .zip(states)
            .map(|(s, state)| SourceProgress {
                source: s.label(),
                state: if !state.alive {
                    TransferState::Dropped
                } else if state.in_flight > 0 {
                    TransferState::Downloading
                } else {
                    TransferState::Idle
                },
                bytes: s.bytes,
                objects: s.objects,
                rate: s.rate.rate(),
                in_flight: state.in_flight,
                hedged: s.hedged,
                last_error: s.last_error.clone(),
            })
            .collect();
        self.emit(EngineEvent::Progress {
            ref_name: ref_name.to_owned(),
            overall: overall.clone(),
            sources: progress,
        });
    }
}

/// The error a pull ends with when an object has no source left.
fn no_candidate_error(
    no_candidate: NoCandidate,
    ref_name: &str,
    sources: &[EngineSource],
    last_error: String,
) -> EngineError {
    match no_candidate {
        NoCandidate::ObjectUnavailable { object, tried } => EngineError::ObjectUnavailable {
            ref_name: ref_name.to_owned(),
            object: object.to_string(),
            tried: tried
                .iter()
                .map(|&i| sources[i].source.id.clone())
                .collect::<Vec<_>>()
                .join(", "),
        },
        NoCandidate::AllSourcesDropped => EngineError::AllSourcesFailed {
            ref_name: ref_name.to_owned(),
            last: last_error,
        },
    }
}
