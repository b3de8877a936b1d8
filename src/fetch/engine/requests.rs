//! The requests in flight as I/O: for an HTTP source one spawned task per
//! (object, source), for a `file://` source a job of its drive's worker pool
//! (`drive`); how many bytes each has received, and how large its body may be.
//! Which source is asked for what is the scheduler's business; this only runs and
//! lets go of requests.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::drive::{DrivePool, DriveRequest, DriveWork};
use super::schedule::{is_slow, Assignment};
use super::stage::{fetch_object, Fetched};
use crate::fetch::MAX_METADATA_SIZE;
use crate::repo::beneath;
use crate::repo::objects::Commit;
use crate::repo::store::Transaction;
use crate::repo::{ObjectName, ObjectType};
use crate::transport::Transport;

/// No file object Ferry accepts is larger (a sanity bound on a lying server).
const MAX_FILE_OBJECT_SIZE: u64 = 16 * 1024 * 1024 * 1024;
/// Headers and compression framing an object may add beyond its indexed size.
const SIZE_SLACK: u64 = 1024 * 1024;

/// What a request reports back: the object, the source's index, the result.
pub(super) type RequestResult = (ObjectName, usize, Fetched);

/// How large each object may be. The commit's size index (signed with it) names
/// each object's size: a body well past that is cut off and its source dropped
/// before it fills the disk. A different compression may change the archived
/// size a little, never beyond the slack allowed here.
pub(super) struct SizeLimits {
    index: HashMap<ObjectName, u64>,
}

impl SizeLimits {
    pub(super) fn of(commit: &Commit) -> Self {
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

    pub(super) fn of_object(&self, name: &ObjectName) -> u64 {
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
enum Request {
    /// Over HTTP: a task on the main context.
    Task {
        started: Instant,
        received: Arc<AtomicU64>,
        task: glib::JoinHandle<()>,
    },
    /// From a drive: a job of its worker pool.
    Drive(Arc<DriveRequest>),
}

impl Request {
    fn is_slow(&self, now: Instant) -> bool {
        match self {
            Request::Task {
                started, received, ..
            } => is_slow(
                now.duration_since(*started),
                received.load(Ordering::Relaxed),
            ),
            // Waiting in the pool's queue is not slowness; only the read is timed.
            Request::Drive(request) => request
                .running(now)
                .is_some_and(|running| is_slow(running, request.received())),
        }
    }

    fn abort(self) {
        match self {
            Request::Task { task, .. } => task.abort(),
            Request::Drive(request) => request.let_go(),
        }
    }
}

/// The requests in flight, by object and source.
pub(super) struct Requests {
    running: HashMap<(ObjectName, usize), Request>,
    /// The worker pool of each `file://` source asked for anything, by index.
    drives: HashMap<usize, DrivePool>,
    drive_workers: usize,
    drive_deadline: Duration,
    txn: Arc<Transaction>,
    results: async_channel::Sender<RequestResult>,
    local_source: Option<std::path::PathBuf>,
}

impl Requests {
    /// `drive_workers`: worker threads per `file://` source; `local_source`: the
    /// root of a source that is this computer's own repository (prepare-usb).
    pub(super) fn new(
        txn: Arc<Transaction>,
        results: async_channel::Sender<RequestResult>,
        drive_workers: usize,
        local_source: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            local_source,
            running: HashMap::new(),
            drives: HashMap::new(),
            drive_workers,
            drive_deadline: beneath::drive_deadline(),
            txn,
            results,
        }
    }

    /// Asks `transport` (source `assignment.source`) for the object, whose body may
    /// take `limit` bytes; the result comes back on the results channel.
    pub(super) fn dispatch(&mut self, assignment: Assignment, transport: &Transport, limit: u64) {
        let Assignment { object, source } = assignment;
        if let Transport::File(root) = transport {
            let pool = self.drives.entry(source).or_insert_with(|| {
                DrivePool::start(DriveWork {
                    root: root.clone(),
                    txn: self.txn.clone(),
                    source,
                    results: self.results.clone(),
                    workers: self.drive_workers,
                    local: self.local_source.as_ref() == Some(root),
                })
            });
            let request = pool.submit(object, limit);
            self.running
                .insert((object, source), Request::Drive(request));
            return;
        }
        let transport = transport.clone();
        let txn = self.txn.clone();
        let results = self.results.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = glib::MainContext::ref_thread_default().spawn_local(async move {
            let outcome = fetch_object(&transport, &txn, object, limit, counter).await;
            let _ = results.send((object, source, outcome)).await;
        });
        self.running.insert(
            (object, source),
            Request::Task {
                started: Instant::now(),
                received,
                task,
            },
        );
    }

    /// Forgets the request whose result came in.
    pub(super) fn finish(&mut self, object: &ObjectName, source: usize) {
        self.running.remove(&(*object, source));
    }

    /// Lets go of the requests of `sources` for `object`: another copy won.
    pub(super) fn let_go(&mut self, object: &ObjectName, sources: &[usize]) {
        for &source in sources {
            if let Some(request) = self.running.remove(&(*object, source)) {
                request.abort();
            }
        }
    }

    /// The requests that are slow at `now` (see `schedule::is_slow`).
    pub(super) fn slow(&self, now: Instant) -> HashSet<(ObjectName, usize)> {
        self.running
            .iter()
            .filter(|(_, r)| r.is_slow(now))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Drives that stopped answering at `now` (a read with no progress for the
    /// drive deadline): their pools are abandoned, and every object still asked of
    /// them gets its result here, failed as not answering.
    pub(super) fn not_answering(&mut self, now: Instant) -> Vec<RequestResult> {
        let deadline = self.drive_deadline;
        let hung: HashSet<usize> = self
            .running
            .iter()
            .filter_map(|((_, source), request)| match request {
                Request::Drive(r) if r.is_hung(now, deadline) => Some(*source),
                _ => None,
            })
            .collect();
        let mut results = Vec::new();
        for source in hung {
            let Some(pool) = self.drives.get(&source) else {
                continue;
            };
            pool.abandon();
            for ((object, _), request) in self.running.iter().filter(|(k, _)| k.1 == source) {
                if let Request::Drive(request) = request {
                    if request.claim() {
                        results.push((*object, source, pool.not_answering(object, deadline)));
                    }
                }
            }
        }
        results
    }

    pub(super) fn abort_all(&mut self) {
        for (_, request) in self.running.drain() {
            request.abort();
        }
        for (_, pool) in self.drives.drain() {
            pool.abandon();
        }
    }
}
