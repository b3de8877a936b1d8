//! The requests in flight as I/O: one spawned task per (object, source), how many
//! bytes it has received, and how large its body may be. Which source is asked
//! for what is the scheduler's business; this only runs and lets go of requests.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::schedule::{is_slow, Assignment};
use super::stage::{fetch_object, Fetched};
use crate::fetch::MAX_METADATA_SIZE;
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
struct Request {
    started: Instant,
    received: Arc<AtomicU64>,
    task: glib::JoinHandle<()>,
}

/// The requests in flight, by object and source.
pub(super) struct Requests {
    running: HashMap<(ObjectName, usize), Request>,
    txn: Arc<Transaction>,
    results: async_channel::Sender<RequestResult>,
}

impl Requests {
    pub(super) fn new(
        txn: Arc<Transaction>,
        results: async_channel::Sender<RequestResult>,
    ) -> Self {
        Self {
            running: HashMap::new(),
            txn,
            results,
        }
    }

    /// Asks `transport` (source `assignment.source`) for the object, whose body may
    /// take `limit` bytes; the result comes back on the results channel.
    pub(super) fn dispatch(&mut self, assignment: Assignment, transport: &Transport, limit: u64) {
        let Assignment { object, source } = assignment;
        let transport = transport.clone();
        let txn = self.txn.clone();
        let results = self.results.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = glib::MainContext::default().spawn_local(async move {
            let outcome = fetch_object(&transport, &txn, object, limit, counter).await;
            let _ = results.send((object, source, outcome)).await;
        });
        self.running.insert(
            (object, source),
            Request {
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
                request.task.abort();
            }
        }
    }

    /// The requests that are slow at `now` (see `schedule::is_slow`).
    pub(super) fn slow(&self, now: Instant) -> HashSet<(ObjectName, usize)> {
        self.running
            .iter()
            .filter(|(_, r)| {
                is_slow(
                    now.duration_since(r.started),
                    r.received.load(Ordering::Relaxed),
                )
            })
            .map(|(key, _)| *key)
            .collect()
    }

    pub(super) fn abort_all(&mut self) {
        for (_, request) in self.running.drain() {
            request.task.abort();
        }
    }
}
