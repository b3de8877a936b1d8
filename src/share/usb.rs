//! `prepare-usb`: copying updates onto a drive exactly as `ostree create-usb` lays
//! them out, so libostree's mount finder (and Ferry) find them:
//!
//! - an archive repository at `MOUNT/.ostree/repo`, or at `MOUNT/DIR` with a
//!   relative symlink `MOUNT/.ostree/repos.d/NN-generated` → `../../DIR`;
//! - refs at `refs/mirrors/COLLECTION/REF` (the collection of the ref's remote);
//! - the summary regenerated (unsigned);
//! - objects and directories readable by everyone (0644 / 0755), whatever the
//!   umask, so the drive works on any computer.
//!
//! Before anything is written the drive is checked: it must be writable, and it
//! must have room for the objects it lacks (summed from the local closures) and
//! enough inodes for them. Only missing objects are copied (the local pull skips
//! what the drive has); every copied object is verified on the way, and the copy
//! is durable when this returns (the pull's transaction syncs the drive's file
//! system, refs and summary are fsynced, and the whole drive is synced last).

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use gio::prelude::*;

use crate::fetch::engine::{
    Engine, EngineError, EngineEvent, EngineSettings, OverallProgress, TrustedCopy,
};
use crate::repo::config::RepoConfig;
use crate::repo::durable;
use crate::repo::refs::{self, RefKind};
use crate::repo::store::Repo;
use crate::repo::{summary_gen, Checksum, ObjectName, RepoError};
use crate::sources::{Source, SourceKind, SourceState};

use crate::repo::closure;

/// Where `ostree create-usb` puts the repository by default.
pub const DEFAULT_DESTINATION: &str = ".ostree/repo";
const REPOS_D: &str = ".ostree/repos.d";
/// Room kept free beyond the objects: directories, refs, summary, config.
const OVERHEAD_BYTES: u64 = 1024 * 1024;
/// Inodes needed beyond one per object (directories, refs, summary…).
const OVERHEAD_INODES: u64 = 300;

/// Why a drive cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    #[error("{0} is not a directory (give the drive's mount point)")]
    NotADirectory(PathBuf),
    #[error("the drive at {0} is read-only: nothing was copied")]
    ReadOnly(PathBuf),
    #[error("cannot write to the drive at {path}: {reason}; nothing was copied")]
    NotWritable { path: PathBuf, reason: String },
    #[error(
        "not enough space on the drive at {path}: the update needs {} but only {} is free; nothing was copied",
        glib::format_size(*.needed), glib::format_size(*.available)
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "not enough free inodes on the drive at {path}: {needed} files to write, room for {available}; nothing was copied"
    )]
    NoInodes {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("--destination-repo must be a relative path inside the drive without “..”: {0}")]
    BadDestination(PathBuf),
    #[error("{0} is outside the drive (another file system)")]
    OutsideDrive(PathBuf),
    #[error("{path} on the drive {reason}: Ferry does not write through it; nothing was copied")]
    UnsafeEntry { path: PathBuf, reason: &'static str },
    #[error("the destination {0} is the local repository itself")]
    SameRepository(PathBuf),
    #[error("nothing is tracked yet: name the refs to copy (REMOTE:REF) or track them with “ferryctl track”")]
    NothingTracked,
    #[error("“{0}” is not tracked and no remote has it; name it as REMOTE:REF")]
    UnknownRef(String),
    #[error("“{0}” is ambiguous: several remotes have it; name it as REMOTE:REF")]
    AmbiguousRef(String),
    #[error(
        "remote “{0}” has no collection ID, so computers could not find its refs on a drive (add the remote with --collection-id)"
    )]
    NoCollectionId(String),
    #[error("{remote}:{ref_name} has not been downloaded completely yet (run “ferryctl update”)")]
    NotDownloaded { remote: String, ref_name: String },
    /// A drive's repository must be an archive one (`ostree create-usb` layout).
    #[error("the drive's repository {path} is a {mode} repository, not an archive one: Ferry does not write it")]
    NotArchive { path: PathBuf, mode: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Copy(#[from] EngineError),
    #[error("the copy stopped: {0}")]
    Stopped(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> UsbError + '_ {
    move |source| UsbError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What to copy where.
#[derive(Clone, Debug)]
pub struct UsbOptions {
    /// The local repository.
    pub repo: PathBuf,
    /// The drive's mount point.
    pub mount: PathBuf,
    /// `REMOTE:REF` or a tracked ref's name; empty: every tracked ref.
    pub refs: Vec<String>,
    /// A repository path inside the drive instead of `.ostree/repo`.
    pub destination_repo: Option<PathBuf>,
}

/// One ref to copy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsbRef {
    pub remote: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub collection_id: String,
    pub commit: Checksum,
}

/// What the drive needs, measured before anything is written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UsbPlan {
    pub refs: Vec<UsbRef>,
    /// The repository on the drive.
    pub destination: PathBuf,
    /// Objects the drive lacks, and their size on disk.
    pub objects_missing: u64,
    pub bytes_missing: u64,
    /// The space the copy needs (sizes rounded up to blocks, plus overhead).
    pub bytes_needed: u64,
    pub bytes_available: u64,
}

/// Progress of the copy.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum UsbEvent {
    Planned {
        plan: UsbPlan,
    },
    RefStarted {
        index: usize,
        total: usize,
        target: UsbRef,
    },
    Progress {
        #[serde(rename = "ref")]
        ref_name: String,
        objects_done: u64,
        objects_total: u64,
        bytes_done: u64,
        bytes_total: u64,
    },
    RefCopied {
        target: UsbRef,
        objects_copied: u64,
        bytes_copied: u64,
    },
}

/// The result of a copy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UsbReport {
    pub destination: PathBuf,
    /// `.ostree/repos.d/NN-generated`, when a custom destination was linked.
    pub symlink: Option<PathBuf>,
    pub refs: Vec<UsbRef>,
    pub objects_copied: u64,
    pub bytes_copied: u64,
}

/// Resolves the refs to copy against the local repository.
pub fn resolve_refs(
    repo: &Repo,
    config: &RepoConfig,
    specs: &[String],
) -> Result<Vec<UsbRef>, UsbError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if specs.is_empty() {
        let tracked = config.tracked()?;
        if tracked.is_empty() {
            return Err(UsbError::NothingTracked);
        }
        pairs.extend(tracked.into_iter().map(|t| (t.remote, t.ref_name)));
    }
    for spec in specs {
        let (remote, ref_name) = refs::parse_refspec(spec)?;
        let remote = match remote {
            Some(remote) => remote,
            None => {
                let tracked: Vec<String> = config
                    .tracked()?
                    .into_iter()
                    .filter(|t| t.ref_name == ref_name)
                    .map(|t| t.remote)
                    .collect();
                let candidates = if tracked.is_empty() {
                    let mut with_ref = Vec::new();
                    for remote in config.remote_names() {
                        if refs::read_ref(repo.root(), &RefKind::Remote(remote.clone()), &ref_name)
                            .ok()
                            .flatten()
                            .is_some()
                        {
                            with_ref.push(remote);
                        }
                    }
                    with_ref
                } else {
                    tracked
                };
                match candidates.len() {
                    0 => return Err(UsbError::UnknownRef(spec.clone())),
                    1 => candidates.into_iter().next().expect("one"),
                    _ => return Err(UsbError::AmbiguousRef(spec.clone())),
                }
            }
        };
        pairs.push((remote, ref_name));
    }
    let mut out: Vec<UsbRef> = Vec::new();
    for (remote_name, ref_name) in pairs {
        let remote = config.remote(&remote_name)?;
        let collection_id = remote
            .collection_id
            .ok_or_else(|| UsbError::NoCollectionId(remote_name.clone()))?;
        let not_downloaded = || UsbError::NotDownloaded {
            remote: remote_name.clone(),
            ref_name: ref_name.clone(),
        };
        let commit = refs::read_ref(
            repo.root(),
            &RefKind::Remote(remote_name.clone()),
            &ref_name,
        )?
        .ok_or_else(not_downloaded)?;
        if !closure::is_complete(repo, &commit) {
            return Err(not_downloaded());
        }
        if !out
            .iter()
            .any(|r| r.collection_id == collection_id && r.ref_name == ref_name)
        {
            out.push(UsbRef {
                remote: remote_name,
                ref_name,
                collection_id,
                commit,
            });
        }
    }
    Ok(out)
}

/// The destination path relative to the drive: `.ostree/repo` or a clean relative
/// path (no `..`, not absolute).
fn destination_relative(destination: Option<&Path>) -> Result<PathBuf, UsbError> {
    let Some(dir) = destination else {
        return Ok(PathBuf::from(DEFAULT_DESTINATION));
    };
    let mut clean = PathBuf::new();
    for component in dir.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return Err(UsbError::BadDestination(dir.to_owned())),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(UsbError::BadDestination(dir.to_owned()));
    }
    Ok(clean)
}

/// statvfs counts are `unsigned long`: 32 bits on some systems.
fn wide<T: Into<u64>>(value: T) -> u64 {
    value.into()
}

fn statvfs(path: &Path) -> Result<libc::statvfs, UsbError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| UsbError::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    // SAFETY: a NUL-terminated path and a zeroed struct for the kernel to fill.
    unsafe {
        let mut buf = std::mem::zeroed::<libc::statvfs>();
        if libc::statvfs(c_path.as_ptr(), &mut buf) != 0 {
            return Err(io_error(path)(io::Error::last_os_error()));
        }
        Ok(buf)
    }
}

/// Refuses a read-only or unwritable drive, without leaving anything behind.
pub fn check_writable(mount: &Path) -> Result<(), UsbError> {
    let info = statvfs(mount)?;
    if info.f_flag & libc::ST_RDONLY != 0 {
        return Err(UsbError::ReadOnly(mount.to_owned()));
    }
    let probe = mount.join(format!(".ferry-write-test-{}", std::process::id()));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
            Err(UsbError::ReadOnly(mount.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(UsbError::NotWritable {
            path: mount.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Measures what copying `targets` onto the drive needs, and checks it fits.
pub fn plan(options: &UsbOptions) -> Result<UsbPlan, UsbError> {
    let repo = Repo::open(&options.repo)?;
    let config = RepoConfig::load(&options.repo)?;
    let targets = resolve_refs(&repo, &config, &options.refs)?;
    plan_for(&repo, options, targets)
}

fn plan_for(repo: &Repo, options: &UsbOptions, targets: Vec<UsbRef>) -> Result<UsbPlan, UsbError> {
    let mount = &options.mount;
    if !fs::metadata(mount).map_err(io_error(mount))?.is_dir() {
        return Err(UsbError::NotADirectory(mount.clone()));
    }
    let relative = destination_relative(options.destination_repo.as_deref())?;
    let destination = mount.join(&relative);
    // Before anything is written (even the probe below): whatever exists of the
    // paths Ferry writes must be the drive's own.
    let mount_dev = fs::metadata(mount).map_err(io_error(mount))?.dev();
    check_path_on_drive(mount, mount_dev, &relative)?;
    if relative != Path::new(DEFAULT_DESTINATION) {
        check_path_on_drive(mount, mount_dev, Path::new(REPOS_D))?;
    }
    check_repository_entries(&destination, mount_dev)?;
    check_writable(mount)?;
    if same_file(&destination, repo.root()) {
        return Err(UsbError::SameRepository(destination));
    }
    // An existing repository on the drive: only what it lacks is copied.
    let existing = if destination.join("config").is_file() {
        RepoConfig::load(&destination)?;
        let existing = Repo::open(&destination)?;
        check_archive(&existing)?;
        Some(existing)
    } else {
        None
    };

    let info = statvfs(mount)?;
    let block = wide(info.f_frsize).max(512);
    let mut seen: HashSet<ObjectName> = HashSet::new();
    let (mut objects, mut bytes, mut needed) = (0u64, 0u64, 0u64);
    for target in &targets {
        for name in closure::closure(repo, &target.commit)? {
            if !seen.insert(name) || existing.as_ref().is_some_and(|dest| dest.has_object(&name)) {
                continue;
            }
            // Stored size: a bare object's (uncompressed) overestimates the drive's.
            let path = repo.object_path(&name);
            let size = fs::symlink_metadata(&path).map_err(io_error(&path))?.len();
            objects += 1;
            bytes += size;
            needed += size.div_ceil(block) * block;
        }
    }
    if existing.is_none() || objects > 0 {
        needed += OVERHEAD_BYTES;
    }
    // Directories for objects/XX (256 at most) take a block each.
    needed += 256 * block;
    let available = wide(info.f_bavail).saturating_mul(wide(info.f_frsize));
    if objects > 0 && needed > available {
        return Err(UsbError::NoSpace {
            path: mount.clone(),
            needed,
            available,
        });
    }
    // File systems without inode limits (FAT) report no inodes at all.
    if info.f_files > 0 && objects > 0 {
        let inodes_needed = objects + OVERHEAD_INODES;
        if inodes_needed > wide(info.f_favail) {
            return Err(UsbError::NoInodes {
                path: mount.clone(),
                needed: inodes_needed,
                available: wide(info.f_favail),
            });
        }
    }
    Ok(UsbPlan {
        refs: targets,
        destination,
        objects_missing: objects,
        bytes_missing: bytes,
        bytes_needed: needed,
        bytes_available: available,
    })
}

/// Checks that whatever exists of `mount/relative` (symlinks followed) stays inside
/// the drive: on its file system and beneath its mount point. Otherwise creating or
/// filling the repository would write elsewhere.
fn check_path_on_drive(mount: &Path, mount_dev: u64, relative: &Path) -> Result<(), UsbError> {
    let mount_real = fs::canonicalize(mount).map_err(io_error(mount))?;
    let mut prefix = mount.to_path_buf();
    for component in relative.components() {
        prefix.push(component);
        match fs::metadata(&prefix) {
            Ok(meta) if meta.dev() != mount_dev => return Err(UsbError::OutsideDrive(prefix)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_error(&prefix)(e)),
        }
        let real = fs::canonicalize(&prefix).map_err(io_error(&prefix))?;
        if !real.starts_with(&mount_real) {
            return Err(UsbError::OutsideDrive(prefix));
        }
    }
    Ok(())
}

/// The directories of a repository Ferry writes into or makes readable.
const REPOSITORY_DIRS: [&str; 5] = ["objects", "tmp", "refs", "state", "extensions"];
/// The files of a repository Ferry reads, rewrites or makes readable.
const REPOSITORY_FILES: [&str; 3] = ["config", "summary", "summary.sig"];

/// An existing repository on a drive someone else prepared is written only if
/// everything Ferry writes to or changes is a plain directory or file of the drive:
/// `objects` and its `XX` directories, `tmp`, `refs`, `state`, `extensions` and
/// everything below the last four, `config`, `summary` and `summary.sig`. A
/// symbolic link or a mount point there would make the copy (or its permission
/// changes) land outside the drive, so the drive is refused before anything is
/// written.
fn check_repository_entries(destination: &Path, drive_dev: u64) -> Result<(), UsbError> {
    let entry = |path: &Path| -> Result<Option<fs::Metadata>, UsbError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(UsbError::UnsafeEntry {
                path: path.to_owned(),
                reason: "is a symbolic link",
            }),
            Ok(meta) if meta.dev() != drive_dev => Err(UsbError::UnsafeEntry {
                path: path.to_owned(),
                reason: "is on another file system",
            }),
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path)(e)),
        }
    };
    let not_a = |path: &Path, reason| UsbError::UnsafeEntry {
        path: path.to_owned(),
        reason,
    };
    match fs::metadata(destination) {
        Ok(meta) if !meta.is_dir() => return Err(not_a(destination, "is not a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(destination)(e)),
    }
    for name in REPOSITORY_FILES {
        let path = destination.join(name);
        if entry(&path)?.is_some_and(|meta| !meta.is_file()) {
            return Err(not_a(&path, "is not a regular file"));
        }
    }
    for name in REPOSITORY_DIRS {
        let top = destination.join(name);
        match entry(&top)? {
            None => continue,
            Some(meta) if !meta.is_dir() => return Err(not_a(&top, "is not a directory")),
            Some(_) => {}
        }
        // Objects: only the XX directories (the objects themselves are never
        // written over, nor their permissions changed). Elsewhere: everything.
        let deep = name != "objects";
        let mut dirs = vec![top];
        while let Some(dir) = dirs.pop() {
            for child in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let child = child.map_err(io_error(&dir))?.path();
                if let Some(meta) = entry(&child)? {
                    if deep && meta.is_dir() {
                        dirs.push(child);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sets the process umask for the copy and restores it when dropped, so every
/// directory and file made on the drive is readable by others.
struct UmaskGuard(libc::mode_t);

impl UmaskGuard {
    fn new() -> Self {
        // SAFETY: umask cannot fail.
        Self(unsafe { libc::umask(0o022) })
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores the previous mask.
        unsafe {
            libc::umask(self.0);
        }
    }
}

/// Makes `path` and every directory below it 0755 and every file 0644 (at least),
/// so another computer's user can read the drive. Best effort: file systems without
/// Unix permissions refuse and do not need it.
fn make_readable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let wanted = if meta.is_dir() { 0o755 } else { 0o644 };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & wanted != wanted {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | wanted));
    }
    if meta.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                make_readable(&entry.path());
            }
        }
    }
}

/// The repository's top-level directories and files (not every object: objects are
/// written 0644 by the store), made readable.
fn make_repo_readable(destination: &Path) {
    for dir in [destination.to_path_buf(), destination.join("objects")] {
        // Never through a symlink (the destination itself was checked to be on the
        // drive; `objects` must be a directory of its own).
        let meta = if dir == destination {
            fs::metadata(&dir)
        } else {
            fs::symlink_metadata(&dir)
        };
        if let Ok(meta) = meta {
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() && mode & 0o755 != 0o755 {
                let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o755));
            }
        }
    }
    let objects = destination.join("objects");
    let objects_is_dir = fs::symlink_metadata(&objects).is_ok_and(|m| m.is_dir());
    if let Ok(entries) = fs::read_dir(&objects).map(|e| e.filter(|_| objects_is_dir)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&path) {
                let mode = meta.permissions().mode() & 0o7777;
                if meta.is_dir() && mode & 0o755 != 0o755 {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o755));
                }
            }
        }
    }
    for name in ["config", "summary", "refs", "state", "extensions", "tmp"] {
        make_readable(&destination.join(name));
    }
}

fn check_archive(repo: &Repo) -> Result<(), UsbError> {
    if repo.mode().is_archive() {
        return Ok(());
    }
    Err(UsbError::NotArchive {
        path: repo.root().to_path_buf(),
        mode: repo.mode().as_str(),
    })
}

/// Creates the destination repository when the drive has none.
fn ensure_repository(destination: &Path) -> Result<Repo, UsbError> {
    if destination.join("config").is_file() {
        return Ok(Repo::open(destination)?);
    }
    fs::create_dir_all(destination).map_err(io_error(destination))?;
    let config = RepoConfig::new(destination, None)?;
    let repo = Repo::create_layout(destination)?;
    config.save()?;
    Ok(repo)
}

/// `.ostree/repos.d/NN-generated` → `../../DIR`, unless an entry there already
/// leads to the repository (as `ostree create-usb` does).
fn link_repository(
    mount: &Path,
    relative: &Path,
    destination: &Path,
) -> Result<Option<PathBuf>, UsbError> {
    let repos_d = mount.join(REPOS_D);
    fs::create_dir_all(&repos_d).map_err(io_error(&repos_d))?;
    if let Ok(entries) = fs::read_dir(&repos_d) {
        for entry in entries.flatten() {
            if same_file(&entry.path(), destination) {
                return Ok(None);
            }
        }
    }
    let target = Path::new("../..").join(relative);
    for i in 0..100 {
        let link = repos_d.join(format!("{i:02}-generated"));
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {
                durable::sync_dir(&repos_d)?;
                return Ok(Some(link));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&link)(e)),
        }
    }
    Err(UsbError::Io {
        path: repos_d,
        source: io::Error::other("no free NN-generated name (00 to 99 are taken)"),
    })
}

/// Copies the refs onto the drive. Checks (writable, space) come first: when they
/// fail nothing has been written.
pub fn prepare_usb(
    options: &UsbOptions,
    on_event: &(dyn Fn(&UsbEvent) + Sync),
) -> Result<UsbReport, UsbError> {
    let repo = Repo::open(&options.repo)?;
    let config = RepoConfig::load(&options.repo)?;
    let targets = resolve_refs(&repo, &config, &options.refs)?;
    let plan = plan_for(&repo, options, targets)?;
    on_event(&UsbEvent::Planned { plan: plan.clone() });

    let _umask = UmaskGuard::new();
    let relative = destination_relative(options.destination_repo.as_deref())?;
    let destination = plan.destination.clone();
    let dest_repo = ensure_repository(&destination)?;
    let mount_dev = fs::metadata(&options.mount)
        .map_err(io_error(&options.mount))?
        .dev();
    if fs::metadata(&destination)
        .map_err(io_error(&destination))?
        .dev()
        != mount_dev
    {
        return Err(UsbError::OutsideDrive(destination));
    }

    // The local repository is the one source; the engine's drive transport reads
    // it (worker threads verify every object on its way onto the drive).
    let source = local_source(&options.repo);
    let (mut objects_copied, mut bytes_copied) = (0u64, 0u64);
    let total = plan.refs.len();
    for (index, target) in plan.refs.iter().enumerate() {
        on_event(&UsbEvent::RefStarted {
            index,
            total,
            target: target.clone(),
        });
        // The commit was verified when it was pulled into the local repository.
        let (_, commit_bytes) = repo.load_commit(&target.commit)?;
        let detached = repo.load_detached_metadata(&target.commit)?;
        let copy = TrustedCopy {
            remote: target.remote.clone(),
            ref_name: target.ref_name.clone(),
            commit: target.commit,
            commit_bytes: glib::Bytes::from_owned(commit_bytes),
            detached: detached.map(glib::Bytes::from_owned),
            destination: RefKind::Mirror(target.collection_id.clone()),
        };
        let copied = copy_commit(&dest_repo, copy, source.clone(), &|progress| {
            on_event(&UsbEvent::Progress {
                ref_name: target.ref_name.clone(),
                objects_done: progress.objects_done,
                objects_total: progress.objects_total,
                bytes_done: progress.bytes_done,
                bytes_total: progress.bytes_total,
            });
        })?;
        objects_copied += copied.objects;
        bytes_copied += copied.bytes;
        on_event(&UsbEvent::RefCopied {
            target: target.clone(),
            objects_copied: copied.objects,
            bytes_copied: copied.bytes,
        });
    }

    summary_gen::update_summary(&dest_repo)?;
    let symlink =
        if relative == Path::new(DEFAULT_DESTINATION) || relative == Path::new("ostree/repo") {
            None
        } else {
            link_repository(&options.mount, &relative, &destination)?
        };
    make_repo_readable(&destination);
    if let Some(parent) = destination.parent() {
        // The directories leading to the repository (.ostree, or DIR's parents).
        let mut dir = parent.to_path_buf();
        while dir.starts_with(&options.mount) && dir != options.mount {
            make_readable_dir(&dir);
            dir = match dir.parent() {
                Some(parent) => parent.to_path_buf(),
                None => break,
            };
        }
    }
    make_readable_dir(&options.mount.join(REPOS_D));
    durable::syncfs(&destination)?;
    Ok(UsbReport {
        destination,
        symlink,
        refs: plan.refs,
        objects_copied,
        bytes_copied,
    })
}

/// The local repository as the engine's one source.
fn local_source(repo: &Path) -> Source {
    let uri = gio::File::for_path(repo).uri().to_string();
    let mut source = Source::new(
        format!("static:{uri}"),
        SourceKind::Static,
        repo.display().to_string(),
        uri,
    );
    source.state = SourceState::Ready;
    source
}

/// What one ref's copy wrote.
struct Copied {
    objects: u64,
    bytes: u64,
}

/// Copies one commit onto the drive with the engine, on a main context of this
/// thread's own (prepare-usb runs on a worker thread in the app, on the main
/// thread in `ferryctl`); `on_progress` gets the engine's progress.
fn copy_commit(
    dest: &Repo,
    copy: TrustedCopy,
    source: Source,
    on_progress: &dyn Fn(&OverallProgress),
) -> Result<Copied, UsbError> {
    let commit_len = copy.commit_bytes.len() as u64;
    let context = glib::MainContext::new();
    let copied = context
        .with_thread_default(|| {
            context.block_on(async {
                let (sender, events) = async_channel::unbounded();
                let engine = Engine::new(dest.clone(), EngineSettings::default(), sender);
                // The engine's events end when it is dropped, with the copy.
                let work = glib::MainContext::ref_thread_default()
                    .spawn_local(async move { engine.copy_trusted(&copy, &source).await });
                let mut last = None;
                while let Ok(event) = events.recv().await {
                    if let EngineEvent::Progress { overall, .. } = event {
                        on_progress(&overall);
                        last = Some(overall);
                    }
                }
                match work.await {
                    Ok(result) => result.map(|()| last).map_err(UsbError::from),
                    Err(_) => Err(UsbError::Stopped("the copy was interrupted".into())),
                }
            })
        })
        .map_err(|e| UsbError::Stopped(e.to_string()))??;
    // Nothing to transfer (the drive had it all): no progress, nothing copied.
    Ok(copied.map_or(
        Copied {
            objects: 0,
            bytes: 0,
        },
        |done| Copied {
            // The commit itself travels with the copy, not as a fetched object.
            objects: done.objects_done + 1,
            bytes: done.bytes_done + commit_len,
        },
    ))
}

fn make_readable_dir(dir: &Path) {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() && mode & 0o755 != 0o755 {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o755));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            destination_relative(None).unwrap(),
            PathBuf::from(".ostree/repo")
        );
        assert_eq!(
            destination_relative(Some(Path::new("./updates/repo"))).unwrap(),
            PathBuf::from("updates/repo")
        );
        for bad in ["/abs", "../up", "a/../../b", "", "."] {
            assert!(destination_relative(Some(Path::new(bad))).is_err(), "{bad}");
        }
    }
}
