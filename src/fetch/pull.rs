//! A pull of one ref's whole commit closure from one source on disk.
//!
//! The commit is fetched and verified (checksum, then the caller's trust check)
//! before anything under it is requested. Metadata is walked on the calling thread;
//! file objects are verified (inflate + sha256) and staged by worker threads, so all
//! cores work. Verified objects are checkpointed into the store every few seconds,
//! which lets an interrupted pull resume; the ref moves only after the closure is
//! complete and durable.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Mutex;
use std::time::Instant;

use crate::fetch::error::PullError;
use crate::fetch::path_source::PathSource;
use crate::fetch::{CHECKPOINT_INTERVAL, MAX_METADATA_SIZE, PROGRESS_INTERVAL};
use crate::repo::closure::TreeWalker;
use crate::repo::commit::CommitPull;
use crate::repo::objects::{verify_metadata, Commit, DirTree};
use crate::repo::refs::RefKind;
use crate::repo::store::{Repo, Transaction};
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};

/// What the trust check is given: the commit exactly as received.
pub struct CommitToCheck<'a> {
    pub checksum: Checksum,
    pub bytes: &'a [u8],
    pub commit: &'a Commit,
    pub detached_metadata: Option<&'a [u8]>,
    pub ref_name: &'a str,
}

/// Decides whether a commit may be installed; `Err` holds the reason.
pub type CommitCheck<'a> = dyn Fn(&CommitToCheck<'_>) -> Result<(), String> + Sync + 'a;

pub struct PullRequest<'a> {
    pub source: &'a PathSource,
    /// The collection the ref belongs to, when the remote has one.
    pub collection_id: Option<&'a str>,
    pub ref_name: &'a str,
    /// The commit to pull; `None` resolves `ref_name` on the source.
    pub commit: Option<Checksum>,
    /// Where the ref is written once the closure is stored.
    pub destination: RefKind,
    pub check: &'a CommitCheck<'a>,
    pub cancel: &'a AtomicBool,
    /// Worker threads for file objects (inflate + sha256 + write).
    pub workers: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullProgress {
    pub objects_done: u64,
    pub objects_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub enum PullEvent {
    /// The commit is verified and its tree walked: totals are known.
    Planned {
        commit: Checksum,
        progress: PullProgress,
    },
    Progress(PullProgress),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PullOutcome {
    pub commit: Checksum,
    pub previous: Option<Checksum>,
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
    /// Objects of the closure that were already stored.
    pub objects_present: u64,
}

pub fn default_workers() -> usize {
    // Twice the cores: workers also wait on the disk.
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Pulls `request.ref_name` from `request.source` into `repo`.
pub fn pull(
    repo: &Repo,
    request: &PullRequest<'_>,
    on_event: &(dyn Fn(&PullEvent) + Sync),
) -> Result<PullOutcome, PullError> {
    let source = request.source;
    let commit_checksum = match request.commit {
        Some(commit) => commit,
        None => source.resolve_ref(request.collection_id, request.ref_name)?,
    };

    let commit_name = ObjectName::new(commit_checksum, ObjectType::Commit);
    let commit_bytes = fetch_metadata(source, &commit_name)?;
    let commit = Commit::parse(&commit_bytes).map_err(|error| bad(source, error))?;
    let meta_name = ObjectName::new(commit_checksum, ObjectType::CommitMeta);
    let detached = match source.read(&meta_name, MAX_METADATA_SIZE)? {
        Some(bytes) => {
            verify_metadata(&meta_name, &bytes).map_err(|error| bad(source, error))?;
            Some(bytes)
        }
        None => None,
    };
    (request.check)(&CommitToCheck {
        checksum: commit_checksum,
        bytes: &commit_bytes,
        commit: &commit,
        detached_metadata: detached.as_deref(),
        ref_name: request.ref_name,
    })
    .map_err(|reason| PullError::Untrusted {
        source_name: source.name().to_owned(),
        ref_name: request.ref_name.to_owned(),
        commit: commit_checksum,
        reason,
    })?;

    // A complete commit only needs its ref written.
    let complete = repo.has_object(&commit_name) && !repo.is_commit_partial(&commit_checksum);
    let pull = CommitPull::begin(repo, commit_checksum)?;
    let mut outcome = PullOutcome {
        commit: commit_checksum,
        previous: None,
        objects_fetched: 0,
        bytes_fetched: 0,
        objects_present: 0,
    };
    if !complete {
        fetch_closure(pull.transaction(), request, &commit, &mut outcome, on_event)?;
        outcome.objects_fetched += 1;
        outcome.bytes_fetched += commit_bytes.len() as u64;
    }
    outcome.previous = pull.finish(
        &commit_bytes,
        detached.as_deref(),
        &request.destination,
        request.ref_name,
    )?;
    Ok(outcome)
}

fn bad(source: &PathSource, error: RepoError) -> PullError {
    PullError::BadObject {
        source_name: source.name().to_owned(),
        error,
    }
}

fn not_found(source: &PathSource, name: &ObjectName) -> PullError {
    PullError::ObjectNotFound {
        source_name: source.name().to_owned(),
        object: name.to_string(),
    }
}

fn read_limited(source: &PathSource, name: &ObjectName) -> Result<Vec<u8>, PullError> {
    source
        .read(name, MAX_METADATA_SIZE)?
        .ok_or_else(|| not_found(source, name))
}

/// Reads a metadata object from the source and verifies it (checksum, format).
fn fetch_metadata(source: &PathSource, name: &ObjectName) -> Result<Vec<u8>, PullError> {
    let bytes = read_limited(source, name)?;
    verify_metadata(name, &bytes).map_err(|error| bad(source, error))?;
    Ok(bytes)
}

/// A metadata object from the store or staging, else fetched, verified and staged.
fn metadata_object(
    txn: &Transaction,
    source: &PathSource,
    name: &ObjectName,
    outcome: &mut PullOutcome,
) -> Result<Vec<u8>, PullError> {
    if txn.has_object(name) {
        outcome.objects_present += 1;
        return Ok(txn.read_object_bytes(name)?);
    }
    let bytes = fetch_metadata(source, name)?;
    txn.stage_bytes(name, &bytes)?;
    outcome.objects_fetched += 1;
    outcome.bytes_fetched += bytes.len() as u64;
    Ok(bytes)
}

/// What the walk found missing.
#[derive(Default)]
struct FilePlan {
    files: u64,
    bytes_total: u64,
}

impl FilePlan {
    fn progress(&self, objects_done: u64, bytes_done: u64) -> PullProgress {
        PullProgress {
            objects_done,
            objects_total: self.files,
            bytes_done,
            bytes_total: self.bytes_total,
        }
    }
}

/// Walks the tree depth first, fetching metadata, and hands each missing file to
/// `missing` as soon as it is found. Stops early when `stop` is set.
fn walk_tree(
    txn: &Transaction,
    source: &PathSource,
    commit: &Commit,
    outcome: &mut PullOutcome,
    stop: &AtomicBool,
    missing: &mut dyn FnMut(Checksum),
) -> Result<FilePlan, PullError> {
    let mut plan = FilePlan::default();
    // The walk only names objects; dirtrees are parsed here, once each.
    let trees = RefCell::new(HashMap::<Checksum, Vec<u8>>::new());
    TreeWalker::new().walk(
        commit,
        &mut |checksum| {
            // Each dirtree is visited (fetched or read) just before it is loaded.
            let bytes = trees
                .borrow_mut()
                .remove(checksum)
                .expect("a dirtree is visited before it is loaded");
            DirTree::parse(&bytes).map_err(|e| bad(source, e))
        },
        &mut |name| {
            if stop.load(Ordering::Relaxed) {
                // The error that stopped the walk is already recorded.
                return Err(PullError::Cancelled);
            }
            match name.kind {
                ObjectType::File => {
                    if txn.has_object(&name) {
                        outcome.objects_present += 1;
                        return Ok(());
                    }
                    plan.bytes_total += source.file_size(&name);
                    plan.files += 1;
                    missing(name.checksum);
                }
                ObjectType::DirTree => {
                    let bytes = metadata_object(txn, source, &name, &mut *outcome)?;
                    trees.borrow_mut().insert(name.checksum, bytes);
                }
                _ => {
                    metadata_object(txn, source, &name, &mut *outcome)?;
                }
            }
            Ok(())
        },
    )?;
    Ok(plan)
}

/// Walks the commit's tree on this thread while worker threads verify and stage
/// the missing file objects it finds, so copying starts with the first one.
fn fetch_closure(
    txn: &Transaction,
    request: &PullRequest<'_>,
    commit: &Commit,
    outcome: &mut PullOutcome,
    on_event: &(dyn Fn(&PullEvent) + Sync),
) -> Result<(), PullError> {
    let source = request.source;
    let done = AtomicU64::new(0);
    let bytes_done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    let fail = |error: PullError| {
        first_error.lock().expect("lock").get_or_insert(error);
        stop.store(true, Ordering::Relaxed);
    };

    let fetch_one = |checksum: &Checksum| -> Result<u64, PullError> {
        let name = ObjectName::new(*checksum, ObjectType::File);
        source
            .stage_file(txn, &name)?
            .ok_or_else(|| not_found(source, &name))
    };

    let (queue_tx, queue_rx) = std::sync::mpsc::channel::<Checksum>();
    let queue_rx = Mutex::new(queue_rx);
    // Workers drop their sender when they finish, which wakes this thread at once.
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    let mut plan = FilePlan::default();
    std::thread::scope(|scope| {
        for _ in 0..request.workers.max(1) {
            let finished_tx = finished_tx.clone();
            let (queue_rx, fetch_one, fail) = (&queue_rx, &fetch_one, &fail);
            let (stop, done, bytes_done) = (&stop, &done, &bytes_done);
            scope.spawn(move || {
                let _finished_tx = finished_tx;
                while !stop.load(Ordering::Relaxed) {
                    // The queue closes when the walk is over.
                    let Ok(checksum) = queue_rx.lock().expect("lock").recv() else {
                        break;
                    };
                    match fetch_one(&checksum) {
                        Ok(n) => {
                            bytes_done.fetch_add(n, Ordering::Relaxed);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => fail(e),
                    }
                }
            });
        }
        drop(finished_tx);
        let walked = walk_tree(txn, source, commit, outcome, &stop, &mut |checksum| {
            if request.cancel.load(Ordering::Relaxed) {
                fail(PullError::Cancelled);
            }
            // A send fails only when every worker has stopped on an error.
            let _ = queue_tx.send(checksum);
        });
        drop(queue_tx);
        match walked {
            Ok(walked) => plan = walked,
            Err(e) => fail(e),
        }
        on_event(&PullEvent::Planned {
            commit: outcome.commit,
            progress: plan.progress(
                done.load(Ordering::Relaxed),
                bytes_done.load(Ordering::Relaxed),
            ),
        });
        // This thread reports progress and checkpoints while the workers run.
        let mut last_checkpoint = Instant::now();
        while let Err(RecvTimeoutError::Timeout) = finished_rx.recv_timeout(PROGRESS_INTERVAL) {
            if request.cancel.load(Ordering::Relaxed) {
                fail(PullError::Cancelled);
            }
            on_event(&PullEvent::Progress(plan.progress(
                done.load(Ordering::Relaxed),
                bytes_done.load(Ordering::Relaxed),
            )));
            if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                if let Err(e) = txn.checkpoint() {
                    fail(e.into());
                }
                last_checkpoint = Instant::now();
            }
        }
    });
    if let Some(error) = first_error.into_inner().expect("lock") {
        return Err(error);
    }
    let bytes = bytes_done.load(Ordering::Relaxed);
    on_event(&PullEvent::Progress(
        plan.progress(done.load(Ordering::Relaxed), bytes),
    ));
    outcome.objects_fetched += plan.files;
    outcome.bytes_fetched += bytes;
    Ok(())
}
