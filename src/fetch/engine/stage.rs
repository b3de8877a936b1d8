//! Getting objects into the store: checkpointing and finishing the `CommitPull` a
//! pull runs in (`checkpoint`, `publish`), fetching one object from an HTTP source
//! and verifying it on the way in (rule 9; drives: `drive`), and the walk over
//! what is stored already.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::events::RefPlan;
use crate::repo::closure::TreeWalker;
use crate::repo::commit::CommitPull;
use crate::repo::objects::{verify_metadata, DirTree};
use crate::repo::refs::RefKind;
use crate::repo::store::Transaction;
use crate::repo::{Checksum, ObjectName, ObjectType, RepoError};
use crate::transport::{Body, Transport, TransportError};

/// What a task fetching one object reports back.
pub(super) enum Fetched {
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

/// Makes what is staged durable and moves it into `objects/` (see
/// `Transaction::checkpoint`), off the main thread; `what` names the step in an
/// error.
pub(super) async fn checkpoint(txn: Arc<Transaction>, what: &'static str) -> Result<(), RepoError> {
    gio::spawn_blocking(move || txn.checkpoint())
        .await
        .unwrap_or_else(|_| Err(RepoError::format(what, "worker panicked")))
}

/// Ends a pull whose closure is stored (rule 10) with `CommitPull::finish`, off
/// the main thread: the commit goes last, then the ref `destination` moves. Returns
/// where the ref was before.
pub(super) async fn publish(
    pull: CommitPull,
    destination: &RefKind,
    ref_name: &str,
    plan: &RefPlan,
) -> Result<Option<Checksum>, RepoError> {
    let kind = destination.clone();
    let ref_name = ref_name.to_owned();
    let commit_bytes = plan.commit_bytes.clone();
    let detached = plan.detached.clone();
    gio::spawn_blocking(move || pull.finish(&commit_bytes, detached.as_deref(), &kind, &ref_name))
        .await
        .unwrap_or_else(|_| Err(RepoError::format("commit", "worker panicked")))
}

/// Of `names` and, beneath every dirtree among them that is stored already, of
/// its children (walked in place), the objects not stored yet, in the order met.
/// `walker` remembers what earlier calls met: each object is looked at once.
pub(super) fn missing_objects(
    txn: &Transaction,
    names: &[ObjectName],
    walker: &mut TreeWalker,
) -> Result<Vec<ObjectName>, RepoError> {
    let mut missing = Vec::new();
    walker.walk_from(
        names,
        &mut |tree| {
            let name = ObjectName::new(*tree, ObjectType::DirTree);
            if !txn.has_object(&name) {
                return Ok(None);
            }
            DirTree::parse(&txn.read_object_bytes(&name)?).map(Some)
        },
        &mut |name| {
            if !txn.has_object(&name) {
                missing.push(name);
            }
            Ok(())
        },
    )?;
    Ok(missing)
}

/// Fetches, verifies and stages one object from an HTTP source (drives have their
/// own transport, `drive`); `limit` bounds its body, `received` counts the bytes
/// as they come.
pub(super) async fn fetch_object(
    transport: &Transport,
    txn: &Arc<Transaction>,
    name: ObjectName,
    limit: u64,
    received: Arc<AtomicU64>,
) -> Fetched {
    let relative = name.relative_path();
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

pub(super) fn classify(result: Result<u64, RepoError>, children: Vec<ObjectName>) -> Fetched {
    match result {
        Ok(bytes) => Fetched::Stored { bytes, children },
        Err(RepoError::AlreadyStaging(_)) => Fetched::Duplicate,
        Err(e) if e.is_local() => Fetched::Local(e),
        Err(e) => Fetched::Bad(e),
    }
}
