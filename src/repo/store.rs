//! The object store of a repository (any mode: see `modes`), and crash-safe
//! transactions into it.
//!
//! Objects are verified before they are staged under `tmp/`, made durable in one
//! batch (`syncfs`), renamed into `objects/`, and the directories synced again. Refs
//! are written after that, so a process killed at any instant leaves a repository
//! `ostree fsck` accepts: at worst some staged work is lost.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::config::{RepoConfig, RepoMode};
use crate::repo::durable::{sync_dir, syncfs};
use crate::repo::error::{RepoError, Result};
use crate::repo::filez::{filez_stream, verify_filez};
use crate::repo::modes::{self, FileObject};
use crate::repo::objects::{Commit, DirMeta, DirTree};
use crate::repo::refs::{self, RefKind};

/// Archive objects are world-readable, so a drive written here works elsewhere.
const OBJECT_MODE: u32 = 0o644;
const WRITEBACK_THRESHOLD: u64 = 1024 * 1024;
const STAGING_PREFIX: &str = "staging-ferry-";

/// An OSTree repository on disk.
#[derive(Clone, Debug)]
pub struct Repo {
    root: PathBuf,
    mode: RepoMode,
}

impl Repo {
    /// Opens an existing repository of any mode Ferry knows (made by Ferry or
    /// `ostree`); the mode comes from its config.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        if !root.join("config").is_file() || !root.join("objects").is_dir() {
            return Err(RepoError::NotARepository(root));
        }
        let mode = RepoConfig::load(&root)?.mode()?;
        Ok(Self { root, mode })
    }

    /// Creates the directory layout `ostree init --mode=archive` creates. The caller
    /// writes the config (see `config`).
    pub fn create_layout(path: impl AsRef<Path>) -> Result<Self> {
        Self::create_layout_for(path, RepoMode::ArchiveZ2)
    }

    /// Creates the directory layout `ostree init` creates (the same in every
    /// mode) for a repository of `mode`; the caller writes the config.
    pub fn create_layout_for(path: impl AsRef<Path>, mode: RepoMode) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        for dir in [
            "objects",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
            "state",
            "tmp/cache",
            "extensions",
        ] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(|e| RepoError::io(&dir, e))?;
        }
        Ok(Self { root, mode })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn mode(&self) -> RepoMode {
        self.mode
    }

    /// Where `name` is stored: `objects/XX/REST.EXT`, file objects as `.filez` or
    /// `.file` by mode. (`ObjectName::relative_path` is the archive name, which
    /// is how objects travel.)
    pub fn object_path(&self, name: &ObjectName) -> PathBuf {
        let hex = name.checksum.to_hex();
        let extension = match name.kind {
            ObjectType::File => self.mode.file_extension(),
            kind => kind.extension(),
        };
        self.root
            .join(format!("objects/{}/{}.{extension}", &hex[..2], &hex[2..]))
    }

    pub fn has_object(&self, name: &ObjectName) -> bool {
        // Not `exists()`: a bare symlink object is stored, whatever it points at.
        fs::symlink_metadata(self.object_path(name)).is_ok()
    }

    /// A stored file object, read in this repository's mode: the header its
    /// checksum covers, and its content.
    pub fn open_file_object(&self, name: &ObjectName) -> Result<FileObject> {
        modes::open_file_object(self.mode, &self.object_path(name), name)
    }

    /// A stored file object as a `.filez` stream (how objects travel), in any
    /// mode: read as it is from an archive repository, made as it is read from a
    /// bare one (content deflated on the fly, never whole in memory).
    pub fn filez_stream(&self, name: &ObjectName) -> Result<Box<dyn Read + Send>> {
        let path = self.object_path(name);
        if self.mode.is_archive() {
            let file = File::open(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RepoError::MissingObject(*name),
                _ => RepoError::io(&path, e),
            })?;
            return Ok(Box::new(file));
        }
        let object = self.open_file_object(name)?;
        Ok(Box::new(filez_stream(&object.header, object.content)))
    }

    /// Checks a stored file object against its name.
    pub fn verify_file_object(&self, name: &ObjectName) -> Result<()> {
        modes::verify_file_object(self.mode, &self.object_path(name), name)
    }

    /// The raw bytes of a stored object (for metadata objects; they are small).
    pub fn read_object_bytes(&self, name: &ObjectName) -> Result<Vec<u8>> {
        let path = self.object_path(name);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RepoError::MissingObject(*name),
            _ => RepoError::io(path, e),
        })
    }

    /// The stored bytes of an object (for a file object: what this mode stores,
    /// a `.filez` only in archive mode; see [`open_file_object`](Self::open_file_object)).
    pub fn open_object(&self, name: &ObjectName) -> Result<File> {
        let path = self.object_path(name);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RepoError::MissingObject(*name),
            _ => RepoError::io(path, e),
        })
    }

    /// The commit installed for `ref_name` of `remote` (`refs/remotes/REMOTE/REF`),
    /// with the commit object, which a ref only ever names once it is stored.
    pub fn installed(&self, remote: &str, ref_name: &str) -> Result<Option<(Checksum, Commit)>> {
        let kind = RefKind::Remote(remote.to_owned());
        match refs::read_ref(&self.root, &kind, ref_name)? {
            Some(checksum) => Ok(Some((checksum, self.load_commit(&checksum)?.0))),
            None => Ok(None),
        }
    }

    pub fn load_commit(&self, checksum: &Checksum) -> Result<(Commit, Vec<u8>)> {
        let bytes = self.read_object_bytes(&ObjectName::new(*checksum, ObjectType::Commit))?;
        Ok((Commit::parse(&bytes)?, bytes))
    }

    pub fn load_dirtree(&self, checksum: &Checksum) -> Result<DirTree> {
        DirTree::parse(&self.read_object_bytes(&ObjectName::new(*checksum, ObjectType::DirTree))?)
    }

    pub fn load_dirmeta(&self, checksum: &Checksum) -> Result<DirMeta> {
        DirMeta::parse(&self.read_object_bytes(&ObjectName::new(*checksum, ObjectType::DirMeta))?)
    }

    /// The detached metadata (signatures) of a commit, if any.
    pub fn load_detached_metadata(&self, commit: &Checksum) -> Result<Option<Vec<u8>>> {
        match self.read_object_bytes(&ObjectName::new(*commit, ObjectType::CommitMeta)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RepoError::MissingObject(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn commit_partial_path(&self, commit: &Checksum) -> PathBuf {
        self.root
            .join("state")
            .join(format!("{commit}.commitpartial"))
    }

    /// Whether a pull of `commit` started and did not finish (libostree's marker).
    pub fn is_commit_partial(&self, commit: &Checksum) -> bool {
        self.commit_partial_path(commit).exists()
    }

    /// Marks `commit` as incomplete before any of its objects is stored, so `ostree
    /// fsck` and a later pull know its closure may have holes.
    pub fn mark_commit_partial(&self, commit: &Checksum) -> Result<()> {
        let state = self.root.join("state");
        fs::create_dir_all(&state).map_err(|e| RepoError::io(&state, e))?;
        let path = self.commit_partial_path(commit);
        let file = File::create(&path).map_err(|e| RepoError::io(&path, e))?;
        file.sync_all().map_err(|e| RepoError::io(&path, e))?;
        sync_dir(&state)
    }

    pub fn clear_commit_partial(&self, commit: &Checksum) -> Result<()> {
        let path = self.commit_partial_path(commit);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.root.join("state")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RepoError::io(path, e)),
        }
    }

    /// Every object in the store, by walking `objects/`.
    pub fn list_objects(&self) -> Result<Vec<ObjectName>> {
        let objects = self.root.join("objects");
        let mut names = Vec::new();
        for dir in fs::read_dir(&objects).map_err(|e| RepoError::io(&objects, e))? {
            let dir = dir.map_err(|e| RepoError::io(&objects, e))?;
            let prefix = dir.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !dir.path().is_dir() {
                continue;
            }
            for file in fs::read_dir(dir.path()).map_err(|e| RepoError::io(dir.path(), e))? {
                let file = file.map_err(|e| RepoError::io(dir.path(), e))?;
                let file_name = file.file_name();
                let file_name = file_name.to_string_lossy();
                // File objects of this mode only (`.filez` or `.file`).
                let rel = match file_name.strip_suffix(self.mode.file_extension()) {
                    Some(stem) if stem.ends_with('.') => {
                        format!("{prefix}/{stem}{}", ObjectType::File.extension())
                    }
                    _ if file_name.ends_with(".filez") => continue,
                    _ => format!("{prefix}/{file_name}"),
                };
                if let Some(name) = ObjectName::from_relative_path(&rel) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Starts a transaction; stale staging directories of dead processes are removed.
    pub fn begin(&self) -> Result<Transaction> {
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| RepoError::io(&tmp, e))?;
        remove_stale_staging(&tmp);
        let name = format!(
            "{STAGING_PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        // Built under a hidden name that no cleanup touches, locked, then renamed: a
        // concurrent transaction's cleanup never sees this directory unlocked.
        let building = tmp.join(format!(".{name}"));
        fs::create_dir(&building).map_err(|e| RepoError::io(&building, e))?;
        let lock_path = building.join(".lock");
        let locked = File::create(&lock_path)
            .map_err(|e| RepoError::io(&lock_path, e))
            .and_then(|lock| {
                // Held for the transaction's life: a staging dir whose lock is free
                // is stale.
                if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                    return Err(RepoError::io(&lock_path, io::Error::last_os_error()));
                }
                Ok(lock)
            });
        let dir = tmp.join(&name);
        let lock = match locked.and_then(|lock| {
            fs::rename(&building, &dir).map_err(|e| RepoError::io(&dir, e))?;
            Ok(lock)
        }) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&building);
                return Err(e);
            }
        };
        Ok(Transaction {
            repo: self.clone(),
            dir,
            _lock: lock,
            staged: Mutex::new(Vec::new()),
            staged_set: Mutex::new(HashSet::new()),
            staging: Mutex::new(HashSet::new()),
            made_dirs: Mutex::new(HashSet::new()),
        })
    }
}

fn remove_stale_staging(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(building) = name.strip_prefix('.') {
            // A transaction that died while setting up; a live one takes moments.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
            if building.starts_with(STAGING_PREFIX) && old {
                let _ = fs::remove_dir_all(entry.path());
            }
            continue;
        }
        if !name.starts_with(STAGING_PREFIX) {
            continue;
        }
        let Ok(lock) = File::open(entry.path().join(".lock")) else {
            let _ = fs::remove_dir_all(entry.path());
            continue;
        };
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The process umask, read once (from /proc: `umask()` itself would change it).
fn process_umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("Umask:"))?;
                u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
            })
            // Unknown: assume the worst, so the mode is always set explicitly.
            .unwrap_or(0o777)
    })
}

/// Objects are world-readable whatever the umask, so a drive written here works on
/// another machine. Drives without Unix modes (FAT) refuse chmod; everything is
/// readable there anyway.
fn ensure_object_mode(file: &File) -> io::Result<()> {
    if OBJECT_MODE & !process_umask() == OBJECT_MODE {
        return Ok(());
    }
    match file.set_permissions(fs::Permissions::from_mode(OBJECT_MODE)) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => Ok(()),
        other => other,
    }
}

/// Starts writing a large staged file to disk now, so the checkpoint's `syncfs`
/// finds little left to flush.
pub(crate) fn start_writeback(file: &File) {
    if file
        .metadata()
        .is_ok_and(|m| m.len() >= WRITEBACK_THRESHOLD)
    {
        // Only a hint: durability comes from the checkpoint's syncfs.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

/// Writes an object file at `path` with `write` (archive objects, metadata).
fn write_object_file<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(OBJECT_MODE)
        .open(path)
        .map_err(|e| RepoError::io(path, e))?;
    let mut out = BufWriter::with_capacity(128 * 1024, file);
    let value = write(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| RepoError::io(path, e.into_error()))?;
    start_writeback(&file);
    ensure_object_mode(&file).map_err(|e| RepoError::io(path, e))?;
    Ok(value)
}

/// Verified objects staged for the store. Shared by worker threads (`&self` methods).
/// Dropping it without `commit` discards what was staged since the last checkpoint.
pub struct Transaction {
    repo: Repo,
    dir: PathBuf,
    _lock: File,
    /// Staged since the last checkpoint, in staging order.
    staged: Mutex<Vec<ObjectName>>,
    staged_set: Mutex<HashSet<ObjectName>>,
    /// Being written right now: a second copy of one of these is not written.
    staging: Mutex<HashSet<ObjectName>>,
    made_dirs: Mutex<HashSet<String>>,
}

impl Transaction {
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The transaction's own directory under `tmp/` (for downloads in progress).
    pub fn staging_dir(&self) -> &Path {
        &self.dir
    }

    fn staging_path(&self, name: &ObjectName) -> PathBuf {
        self.dir
            .join(format!("{}.{}", name.checksum, name.kind.extension()))
    }

    /// Stored, or staged in this transaction.
    pub fn has_object(&self, name: &ObjectName) -> bool {
        self.staged_set.lock().expect("lock").contains(name) || self.repo.has_object(name)
    }

    /// Reads an object staged here or already stored.
    pub fn read_object_bytes(&self, name: &ObjectName) -> Result<Vec<u8>> {
        if self.staged_set.lock().expect("lock").contains(name) {
            let path = self.staging_path(name);
            if let Ok(bytes) = fs::read(&path) {
                return Ok(bytes);
            }
        }
        self.repo.read_object_bytes(name)
    }

    /// Stages bytes the caller has verified against `name`.
    pub fn stage_bytes(&self, name: &ObjectName, bytes: &[u8]) -> Result<()> {
        self.stage_with(name, |out| {
            out.write_all(bytes)
                .map_err(|e| RepoError::io(&self.dir, e))
        })
    }

    /// Stages an object written by `write`, which must verify it as it writes and
    /// fail if it does not match `name`; a failure leaves nothing staged. While
    /// one copy of an object is being written (or once it is staged), another
    /// gets `AlreadyStaging` and writes nothing: hedged requests may bring two.
    pub fn stage_with<T>(
        &self,
        name: &ObjectName,
        write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
    ) -> Result<T> {
        self.stage_at(name, |path| write_object_file(path, write))
    }

    /// Stages an object that `write` creates at the path it is given (a file or,
    /// for bare symlink objects, a symlink), under the rules of
    /// [`stage_with`](Self::stage_with).
    fn stage_at<T>(&self, name: &ObjectName, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        {
            let staged = self.staged_set.lock().expect("lock");
            if staged.contains(name) || !self.staging.lock().expect("lock").insert(*name) {
                return Err(RepoError::AlreadyStaging(*name));
            }
        }
        // Written under its final staging name: only a success enters `staged`, and a
        // failure removes the file, so nothing reads a half-written object.
        let path = self.staging_path(name);
        let result = write(&path);
        match &result {
            Ok(_) => {
                if self.staged_set.lock().expect("lock").insert(*name) {
                    self.staged.lock().expect("lock").push(*name);
                }
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
            }
        }
        self.staging.lock().expect("lock").remove(name);
        result
    }

    /// Stages a `.filez` read from `source`, verified against `name` as it is
    /// read, in this repository's format: copied as it is into an archive
    /// repository, inflated into a bare one (`modes`). Returns the number of bytes
    /// read from `source`.
    pub fn stage_filez(&self, name: &ObjectName, source: impl Read) -> Result<u64> {
        let mode = self.repo.mode;
        if mode.is_archive() {
            return self.stage_with(name, |out| {
                verify_filez(source, &name.checksum, out).map(|(_, n)| n)
            });
        }
        self.stage_at(name, |path| {
            modes::write_from_filez(mode, source, name, path)
        })
    }

    /// Number of objects staged since the last checkpoint.
    pub fn pending(&self) -> usize {
        self.staged.lock().expect("lock").len()
    }

    /// Makes everything staged so far durable and moves it into `objects/`. Commit
    /// objects go last, so none is visible before the objects it names.
    pub fn checkpoint(&self) -> Result<()> {
        let mut names = std::mem::take(&mut *self.staged.lock().expect("lock"));
        if names.is_empty() {
            return Ok(());
        }
        names.sort_by_key(|n| matches!(n.kind, ObjectType::Commit | ObjectType::CommitMeta));
        syncfs(&self.dir)?;
        let objects = self.repo.root.join("objects");
        let mut made = self.made_dirs.lock().expect("lock");
        for name in &names {
            let hex = name.checksum.to_hex();
            let prefix = &hex[..2];
            if !made.contains(prefix) {
                let dir = objects.join(prefix);
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(RepoError::io(dir, e)),
                }
                made.insert(prefix.to_owned());
            }
            let target = self.repo.object_path(name);
            let staged = self.staging_path(name);
            fs::rename(&staged, &target).map_err(|e| RepoError::io(&target, e))?;
        }
        // One more syncfs makes the renames (and new directories) durable.
        syncfs(&objects)?;
        let mut set = self.staged_set.lock().expect("lock");
        for name in &names {
            set.remove(name);
        }
        Ok(())
    }

    /// Checkpoints and removes the staging directory.
    pub fn commit(self) -> Result<()> {
        self.checkpoint()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_objects_appear_after_checkpoint_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::create_layout(dir.path()).unwrap();
        fs::write(
            dir.path().join("config"),
            "[core]\nrepo_version=1\nmode=archive-z2\n",
        )
        .unwrap();
        let bytes = b"some dirmeta-ish bytes".to_vec();
        let name = ObjectName::new(Checksum::digest(&bytes), ObjectType::DirMeta);
        let txn = repo.begin().unwrap();
        txn.stage_bytes(&name, &bytes).unwrap();
        assert!(txn.has_object(&name));
        assert!(!repo.has_object(&name));
        txn.checkpoint().unwrap();
        assert!(repo.has_object(&name));
        let mode = fs::metadata(repo.object_path(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        txn.commit().unwrap();
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn failed_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::create_layout(dir.path()).unwrap();
        let name = ObjectName::new(Checksum::digest(b"x"), ObjectType::File);
        let txn = repo.begin().unwrap();
        let result: Result<()> = txn.stage_with(&name, |_| Err(RepoError::format("test", "fails")));
        assert!(result.is_err());
        assert!(!txn.has_object(&name));
        txn.checkpoint().unwrap();
        assert!(!repo.has_object(&name));
    }
}
