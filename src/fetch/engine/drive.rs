//! The drive transport: how the engine reads a `file://` source (a USB drive, a
//! sideload or local repository, `ferryctl pull PATH`, prepare-usb's copy).
//!
//! Each such source gets a pool of worker threads for the pull, fed from a queue
//! (metadata first). A worker reads an object beneath the repository root
//! (`repo::beneath`: nothing that is not a file, nothing out of the tree),
//! verifies it while staging it, and sends its result back on the engine's
//! results channel, one per object. The root is opened once per worker (and
//! checked to be still there before each object). So an
//! object costs a queue hand-off, not a main-context task, a thread hand-off and a
//! tree open as it did before: this is the worker-thread copier that
//! `ferryctl pull PATH` used to have, as the engine's transport (BENCHMARKS.md).
//!
//! A drive that stops answering: an object whose read makes no progress for
//! `beneath::drive_deadline` fails with `NotAnswering`, and so does every other
//! object still asked of that drive; its workers are abandoned (one stuck in a read
//! stays behind, blocking nothing) and the scheduler drops the source (rule 3).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::requests::RequestResult;
use super::stage::{classify, Fetched};
use crate::repo::beneath::{BeneathError, ErrorKeepingReader, NotAnswering, Tree};
use crate::repo::objects::verify_metadata;
use crate::repo::store::{Repo, Transaction};
use crate::repo::{ObjectName, ObjectType, RepoError};
use crate::transport::TransportError;

/// One object asked of a drive, shared by the engine and the worker that reads it.
#[derive(Debug)]
pub(super) struct DriveRequest {
    epoch: Instant,
    /// Bytes read from the drive so far.
    received: AtomicU64,
    /// Milliseconds after `epoch`, plus one, when a worker began it; 0 while queued.
    started: AtomicU64,
    /// Milliseconds after `epoch`, plus one, of its last progress.
    progressed: AtomicU64,
    /// Its result was sent (by its worker, or as not answering): one result each.
    reported: AtomicBool,
    /// Let go (another copy won): a worker that has not begun it skips it.
    let_go: AtomicBool,
}

impl DriveRequest {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            received: AtomicU64::new(0),
            started: AtomicU64::new(0),
            progressed: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            let_go: AtomicBool::new(false),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    fn since(&self, stamp: u64, now: Instant) -> Option<Duration> {
        (stamp != 0).then(|| {
            let at = self.epoch + Duration::from_millis(stamp - 1);
            now.saturating_duration_since(at)
        })
    }

    fn begin(&self) {
        let now = self.stamp(Instant::now());
        self.progressed.store(now, Ordering::Relaxed);
        self.started.store(now, Ordering::Relaxed);
    }

    fn add_received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
        self.progressed
            .store(self.stamp(Instant::now()), Ordering::Relaxed);
    }

    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// How long a worker has been at it; `None` while it waits in the queue (a
    /// queued object is neither slow nor hung).
    pub(super) fn running(&self, now: Instant) -> Option<Duration> {
        self.since(self.started.load(Ordering::Relaxed), now)
    }

    /// How long since its read last moved; `None` while queued.
    fn quiet_for(&self, now: Instant) -> Option<Duration> {
        self.since(self.progressed.load(Ordering::Relaxed), now)
    }

    /// Whether the drive stopped answering under this request: begun, and no byte
    /// for `deadline`.
    pub(super) fn is_hung(&self, now: Instant, deadline: Duration) -> bool {
        self.quiet_for(now).is_some_and(|quiet| quiet >= deadline)
    }

    /// Takes the right to report this request's result; false if it was taken.
    pub(super) fn claim(&self) -> bool {
        !self.reported.swap(true, Ordering::AcqRel)
    }

    pub(super) fn let_go(&self) {
        self.let_go.store(true, Ordering::Relaxed);
    }
}

struct Job {
    object: ObjectName,
    limit: u64,
    request: Arc<DriveRequest>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// No more work: the pull ended, or the drive stopped answering.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    /// The next job; `None` once the queue is closed.
    fn next(&self) -> Option<Job> {
        let mut queue = self.queue.lock().expect("lock");
        loop {
            if queue.closed {
                return None;
            }
            if let Some(job) = queue.jobs.pop_front() {
                return Some(job);
            }
            queue = self.ready.wait(queue).expect("lock");
        }
    }

    fn close(&self) {
        self.queue.lock().expect("lock").closed = true;
        self.ready.notify_all();
    }
}

/// The worker threads reading one `file://` source for one pull.
pub(super) struct DrivePool {
    root: PathBuf,
    shared: Arc<Shared>,
    epoch: Instant,
    /// Set when no worker thread could be started: where to say so.
    no_workers: Option<(async_channel::Sender<RequestResult>, usize)>,
}

/// What a pool's workers need.
pub(super) struct DriveWork {
    pub root: PathBuf,
    pub txn: Arc<Transaction>,
    /// The source's index, for the results.
    pub source: usize,
    pub results: async_channel::Sender<RequestResult>,
    pub workers: usize,
    /// The source is this computer's own repository (prepare-usb): trusted, and
    /// read in its mode, so a bare repository gives `.filez` made as they are read.
    pub local: bool,
}

impl DrivePool {
    pub(super) fn start(work: DriveWork) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        // Only this computer's own repository is read other than as an archive
        // one: a drive's bare repository would be read with no `beneath` checks.
        let local = work
            .local
            .then(|| Repo::open(&work.root).ok())
            .flatten()
            .filter(|repo| !repo.mode().is_archive());
        let mut started = 0;
        for _ in 0..work.workers.max(1) {
            let shared = shared.clone();
            let (root, txn, results) = (work.root.clone(), work.txn.clone(), work.results.clone());
            let local = local.clone();
            let source = work.source;
            // A worker that cannot be made leaves the others to do the work.
            if let Ok(_worker) = std::thread::Builder::new()
                .name("ferry-drive".into())
                .spawn(move || serve(&shared, &root, local.as_ref(), &txn, source, &results))
            {
                started += 1;
            }
        }
        Self {
            root: work.root,
            shared,
            epoch: Instant::now(),
            // With no worker at all, nothing queued would ever be read.
            no_workers: (started == 0).then_some((work.results, work.source)),
        }
    }

    /// Queues `object` (its body may take `limit` bytes); metadata goes first, as
    /// it reveals the rest of the tree.
    pub(super) fn submit(&self, object: ObjectName, limit: u64) -> Arc<DriveRequest> {
        let request = Arc::new(DriveRequest::new(self.epoch));
        if let Some((results, source)) = &self.no_workers {
            // This computer's trouble, not the drive's: the pull stops.
            let error = RepoError::format("drive", "no thread could be started to read it");
            request.claim();
            let _ = results.try_send((object, *source, Fetched::Local(error)));
            return request;
        }
        let job = Job {
            object,
            limit,
            request: request.clone(),
        };
        let mut queue = self.shared.queue.lock().expect("lock");
        if object.kind == ObjectType::File {
            queue.jobs.push_back(job);
        } else {
            queue.jobs.push_front(job);
        }
        drop(queue);
        self.shared.ready.notify_one();
        request
    }

    /// Stops the workers taking more work (one stuck in a read stays there).
    pub(super) fn abandon(&self) {
        self.shared.close();
    }

    /// The result of `object` when the drive stopped answering within `deadline`.
    pub(super) fn not_answering(&self, object: &ObjectName, deadline: Duration) -> Fetched {
        let path = self.root.join(object.relative_path());
        Fetched::Failed(TransportError::NotAnswering(format!(
            "{}: {}",
            path.display(),
            NotAnswering(deadline)
        )))
    }
}

impl Drop for DrivePool {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A worker: takes jobs until the queue closes.
fn serve(
    shared: &Shared,
    root: &Path,
    local: Option<&Repo>,
    txn: &Transaction,
    source: usize,
    results: &async_channel::Sender<RequestResult>,
) {
    let mut tree = None;
    while let Some(job) = shared.next() {
        if job.request.let_go.load(Ordering::Relaxed) {
            continue;
        }
        job.request.begin();
        let fetched = match local {
            Some(repo) if job.object.kind == ObjectType::File => stage_local_file(repo, txn, &job),
            _ => fetch(&mut tree, root, txn, &job),
        };
        if job.request.claim() {
            // Unbounded: never blocks. The engine gone, nobody needs it.
            let _ = results.send_blocking((job.object, source, fetched));
        }
    }
}

/// Reads, verifies and stages one object (rule 9). A read that fails because the
/// drive went away (`EIO`, `ENODEV`, a vanished mount) makes the source lost,
/// never "sent a bad object".
fn fetch(tree: &mut Option<Tree>, root: &Path, txn: &Transaction, job: &Job) -> Fetched {
    // A drive pulled out lazily stays readable through the open root: it is
    // gone once its path no longer leads to it (a stat, not a reopen, per object).
    if tree.as_ref().is_some_and(Tree::is_gone) {
        *tree = None;
    }
    let tree = match tree {
        Some(tree) => tree,
        None => match Tree::open(root) {
            Ok(opened) => tree.insert(opened),
            Err(e) => return Fetched::Failed(e.into()),
        },
    };
    let relative = job.object.relative_path();
    if job.object.kind == ObjectType::File {
        return stage_file(txn, tree, &relative, job);
    }
    let bytes = match tree.read(&relative, job.limit) {
        Ok(bytes) => bytes,
        Err(BeneathError::NotFound { .. }) => return Fetched::NotFound,
        Err(BeneathError::TooLarge { limit, .. }) => {
            return Fetched::Bad(RepoError::CorruptObject {
                name: job.object,
                reason: format!("larger than the {limit} bytes it may take"),
            })
        }
        Err(e) => return Fetched::Failed(e.into()),
    };
    job.request.add_received(bytes.len() as u64);
    match verify_metadata(&job.object, &bytes) {
        Ok(children) => classify(
            txn.stage_bytes(&job.object, &bytes)
                .map(|()| bytes.len() as u64),
            children,
        ),
        Err(e) => Fetched::Bad(e),
    }
}

/// Stages the `.filez` at `relative` verified against its name, counting bytes as
/// they are read.
fn stage_file(txn: &Transaction, tree: &Tree, relative: &str, job: &Job) -> Fetched {
    let file = match tree.open_file(relative) {
        Ok(file) => file,
        Err(BeneathError::NotFound { .. }) => return Fetched::NotFound,
        Err(e) => return Fetched::Failed(e.into()),
    };
    let mut reader = ErrorKeepingReader::new(Counting {
        inner: file,
        request: &job.request,
    });
    let result = txn.stage_filez(&job.object, &mut reader);
    match (result, reader.into_error()) {
        // The drive failed under the read: its error, not the object's.
        (Err(_), Some(e)) => Fetched::Failed(tree.read_error(relative, e).into()),
        (result, _) => classify(result, Vec::new()),
    }
}

/// Stages a file object of this computer's own bare repository, as the `.filez`
/// it stands for (made as it is read, verified as any other).
fn stage_local_file(repo: &Repo, txn: &Transaction, job: &Job) -> Fetched {
    let stream = match repo.filez_stream(&job.object) {
        Ok(stream) => stream,
        Err(RepoError::MissingObject(_)) => return Fetched::NotFound,
        Err(e) => return Fetched::Local(e),
    };
    let mut reader = Counting {
        inner: stream,
        request: &job.request,
    };
    classify(txn.stage_filez(&job.object, &mut reader), Vec::new())
}

/// Counts what passes through, for the engine's view of a request's pace.
struct Counting<'a, R> {
    inner: R,
    request: &'a DriveRequest,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.request.add_received(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_object_is_neither_running_nor_hung() {
        let epoch = Instant::now() - Duration::from_secs(60);
        let request = DriveRequest::new(epoch);
        let now = Instant::now();
        assert_eq!(request.running(now), None);
        assert!(!request.is_hung(now, Duration::from_secs(1)));
    }

    #[test]
    fn a_read_is_hung_only_after_the_deadline_without_progress() {
        let epoch = Instant::now() - Duration::from_secs(60);
        let request = DriveRequest::new(epoch);
        let deadline = Duration::from_secs(20);
        // Begun 30 s ago, last byte 10 s ago: slow, not hung.
        let begun = epoch + Duration::from_secs(30);
        request
            .started
            .store(request.stamp(begun), Ordering::Relaxed);
        request.progressed.store(
            request.stamp(epoch + Duration::from_secs(50)),
            Ordering::Relaxed,
        );
        let now = epoch + Duration::from_secs(60);
        assert!(request.running(now).unwrap() >= Duration::from_secs(29));
        assert!(!request.is_hung(now, deadline));
        // Nothing for 20 s more: hung, however long the object is.
        assert!(request.is_hung(now + deadline, deadline));
        // A byte comes in: the clock starts again.
        request.add_received(1);
        assert!(!request.is_hung(Instant::now(), deadline));
    }

    #[test]
    fn one_result_per_request() {
        let request = DriveRequest::new(Instant::now());
        assert!(request.claim());
        assert!(!request.claim());
    }
}
