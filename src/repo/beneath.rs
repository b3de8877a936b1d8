//! Reading a directory tree someone else controls: a repository on a USB drive or
//! behind a sideload link. Whoever wrote the drive chose every file type and every
//! symlink in it, so each file is
//!
//! - opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
//!   relative to the opened repository root (the root itself may be reached through
//!   a symlink; nothing under it may lead out of it, to `/dev/zero`, to
//!   `/proc/self/…` or onto another mount);
//! - first opened `O_PATH` and checked with `fstat` (a regular file, or a directory
//!   where one is expected), then reopened for reading `O_NONBLOCK` and checked to
//!   be the same file: a FIFO, socket or device is never opened for reading;
//! - read with a hard cap.
//!
//! Errors say which file and why; a drive pulled out (`EIO`, `ENODEV`, a root that
//! vanished) is [`BeneathError::Lost`], not a bad file.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a file of a tree someone else controls was not read.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path}: not found")]
    NotFound { path: PathBuf },
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is a {kind}, not a directory")]
    NotDirectory { path: PathBuf, kind: &'static str },
    #[error("{path} leads out of {root} (a symlink to another place or file system)")]
    Escapes { path: PathBuf, root: PathBuf },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: it changed while being opened")]
    Changed { path: PathBuf },
    #[error("{path}: the drive is gone ({source})")]
    Lost {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BeneathError {
    /// Whether the whole tree is gone (the drive was pulled out), not one file.
    pub fn is_lost(&self) -> bool {
        matches!(self, BeneathError::Lost { .. })
    }

    /// Whether the tree is hostile or broken: a FIFO, socket, device or link out of
    /// it where a file should be.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            BeneathError::NotRegular { .. }
                | BeneathError::NotDirectory { .. }
                | BeneathError::Escapes { .. }
        )
    }
}

/// Errors that mean the device under a tree went away mid-read.
pub fn is_lost_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::ENODEV | libc::ENXIO | libc::ESTALE | libc::ENOTCONN)
    )
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFLNK => "symlink",
        _ => "file of unknown type",
    }
}

/// `struct open_how` of `linux/openat2.h` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// A drive's files: beneath its root, no magic links, not onto another mount.
const DRIVE_RESOLVE: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;

/// `openat2(2)` of `relative` under `dir` with the `resolve` rules (`RESOLVE_*`),
/// close-on-exec, retried when interrupted. The one place Ferry calls it: drives
/// here, the repository the server shares in `share::server`.
pub(crate) fn openat2(
    dir: &impl AsRawFd,
    relative: &Path,
    flags: i32,
    resolve: u64,
) -> io::Result<File> {
    let name = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // openat2 refuses flags O_PATH ignores (EINVAL): O_NOCTTY only when reading.
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NOCTTY
    };
    let how = OpenHow {
        flags: (flags | extra) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: `name` is NUL-terminated, `how` is a valid open_how of the size
        // passed, and `dir` is an open descriptor for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor this call owns.
            return Ok(unsafe { File::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// An opened directory tree whose files are read without following anything out
/// of it.
#[derive(Debug)]
pub struct Tree {
    dir: File,
    path: PathBuf,
}

impl Tree {
    /// Opens the root at `path`; symlinks to it are followed (sideload links point
    /// at repositories), nothing under it may lead out of it.
    pub fn open(path: &Path) -> Result<Self, BeneathError> {
        test_hook_hang(path);
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_dir()
            .open(path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::NotFound || is_lost_errno(&source) {
                    BeneathError::Lost {
                        path: path.to_owned(),
                        source,
                    }
                } else if source.raw_os_error() == Some(libc::ENOTDIR) {
                    BeneathError::NotDirectory {
                        path: path.to_owned(),
                        kind: "file",
                    }
                } else {
                    BeneathError::Io {
                        path: path.to_owned(),
                        source,
                    }
                }
            })?;
        Ok(Self {
            dir,
            path: path.to_owned(),
        })
    }

    /// The root as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `dev` and `ino` of the root.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        let meta = self.dir.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }

    /// Whether the root went away: its device errors, or its path no longer leads
    /// to it (a lazily unmounted drive leaves the empty mount point behind).
    pub fn is_gone(&self) -> bool {
        let Ok(ours) = self.id() else { return true };
        match std::fs::metadata(&self.path) {
            Ok(now) => (now.dev(), now.ino()) != ours,
            Err(_) => true,
        }
    }

    fn error(&self, relative: &Path, source: io::Error) -> BeneathError {
        let path = self.path.join(relative);
        match source.raw_os_error() {
            // RESOLVE_BENEATH and RESOLVE_NO_XDEV refuse with EXDEV, magic links
            // (`/proc/self/…`) with ELOOP.
            Some(libc::EXDEV | libc::ELOOP) => BeneathError::Escapes {
                path,
                root: self.path.clone(),
            },
            _ if is_lost_errno(&source) || self.is_gone() => BeneathError::Lost { path, source },
            Some(libc::ENOENT) => BeneathError::NotFound { path },
            // A file where a directory is on the way (`refs/heads/os` a file): no
            // such thing beneath it.
            Some(libc::ENOTDIR) => BeneathError::NotFound { path },
            _ => BeneathError::Io { path, source },
        }
    }

    /// The type of `relative` (not followed out of the tree), as `st_mode`.
    fn mode_of(
        &self,
        relative: &Path,
        flags: i32,
    ) -> Result<(File, std::fs::Metadata), BeneathError> {
        let handle = openat2(&self.dir, relative, libc::O_PATH | flags, DRIVE_RESOLVE)
            .map_err(|e| self.error(relative, e))?;
        let meta = handle.metadata().map_err(|e| self.error(relative, e))?;
        Ok((handle, meta))
    }

    /// Whether `relative` is a regular file beneath the root (false if missing or
    /// anything else).
    pub fn is_file(&self, relative: impl AsRef<Path>) -> bool {
        self.mode_of(relative.as_ref(), 0)
            .is_ok_and(|(_, meta)| meta.file_type().is_file())
    }

    /// Whether `relative` is a directory beneath the root.
    pub fn is_dir(&self, relative: impl AsRef<Path>) -> bool {
        self.mode_of(relative.as_ref(), 0)
            .is_ok_and(|(_, meta)| meta.file_type().is_dir())
    }

    /// Opens the regular file `relative` for reading; anything else is refused
    /// before it is opened for reading.
    pub fn open_file(&self, relative: impl AsRef<Path>) -> Result<File, BeneathError> {
        let relative = relative.as_ref();
        // A file replaced by a rename between the two opens (a ref another pull
        // moves, in this computer's own repository) is opened again; a tree that
        // keeps swapping its files is refused.
        let mut attempts = 0;
        loop {
            match self.open_file_once(relative) {
                Err(BeneathError::Changed { .. }) if attempts < 3 => attempts += 1,
                result => return result,
            }
        }
    }

    fn open_file_once(&self, relative: &Path) -> Result<File, BeneathError> {
        let (_, meta) = self.mode_of(relative, 0)?;
        self.check_regular(relative, &meta)?;
        let file = openat2(
            &self.dir,
            relative,
            libc::O_RDONLY | libc::O_NONBLOCK,
            DRIVE_RESOLVE,
        )
        .map_err(|e| self.error(relative, e))?;
        // Swapped between the two opens: check what was opened.
        let opened = file.metadata().map_err(|e| self.error(relative, e))?;
        self.check_regular(relative, &opened)?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(BeneathError::Changed {
                path: self.path.join(relative),
            });
        }
        Ok(file)
    }

    fn check_regular(&self, relative: &Path, meta: &std::fs::Metadata) -> Result<(), BeneathError> {
        use std::os::unix::fs::PermissionsExt;
        if meta.file_type().is_file() {
            return Ok(());
        }
        Err(BeneathError::NotRegular {
            path: self.path.join(relative),
            kind: kind_name(meta.permissions().mode()),
        })
    }

    /// Opens the directory `relative` as a tree of its own (still beneath this one:
    /// it is reached without leaving this root).
    pub fn open_dir(&self, relative: impl AsRef<Path>) -> Result<Tree, BeneathError> {
        let relative = relative.as_ref();
        let dir = openat2(
            &self.dir,
            relative,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK,
            DRIVE_RESOLVE,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => match self.mode_of(relative, 0) {
                Ok((_, meta)) => {
                    use std::os::unix::fs::PermissionsExt;
                    BeneathError::NotDirectory {
                        path: self.path.join(relative),
                        kind: kind_name(meta.permissions().mode()),
                    }
                }
                Err(e) => e,
            },
            _ => self.error(relative, e),
        })?;
        Ok(Tree {
            dir,
            path: self.path.join(relative),
        })
    }

    /// Reads the regular file `relative`, at most `limit` bytes.
    pub fn read(&self, relative: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, BeneathError> {
        let relative = relative.as_ref();
        let file = self.open_file(relative)?;
        let len = file.metadata().map_err(|e| self.error(relative, e))?.len();
        if len > limit {
            return Err(self.too_large(relative, limit));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(relative, e))?;
        if bytes.len() as u64 > limit {
            return Err(self.too_large(relative, limit));
        }
        Ok(bytes)
    }

    fn too_large(&self, relative: &Path, limit: u64) -> BeneathError {
        BeneathError::TooLarge {
            path: self.path.join(relative),
            limit,
        }
    }

    /// Classifies a read error on a file opened from this tree.
    pub fn read_error(&self, relative: impl AsRef<Path>, e: io::Error) -> BeneathError {
        self.error(relative.as_ref(), e)
    }
}

/// A reader that keeps its last error, so a failed verification can tell a read
/// error of the source (a drive pulled out) from bad content.
pub struct ErrorKeepingReader<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R> ErrorKeepingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, error: None }
    }

    /// The last read error, if any.
    pub fn into_error(self) -> Option<io::Error> {
        self.error
    }
}

impl<R: Read> Read for ErrorKeepingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.error = Some(match e.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(e.kind(), e.to_string()),
                });
            }
        })
    }
}

trait DirFlags {
    fn custom_flags_dir(&mut self) -> &mut Self;
}

impl DirFlags for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a FIFO named like a repository must not hang the open.
        self.custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_NOCTTY)
    }
}

/// How long a read from a drive may take before the drive is reported as not
/// answering (`FERRY_DRIVE_TIMEOUT`, seconds; default 20).
pub fn drive_deadline() -> Duration {
    Duration::from_secs(
        std::env::var("FERRY_DRIVE_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&s: &u64| s > 0)
            .unwrap_or(20),
    )
}

/// Why [`off_thread`] gave up.
#[derive(Debug, thiserror::Error)]
#[error("the drive did not answer within {} s", .0.as_secs())]
pub struct NotAnswering(pub Duration);

/// Runs `work` (reads from a drive) on a thread of its own and waits at most
/// `deadline` for it on the calling main context. A read that never returns
/// (a drive that hangs) leaves its thread behind, but blocks nothing else.
///
/// Threads that finished their work wait a while for more ([`DriveThreads`]):
/// a pull from a drive runs one of these per file object, and a new thread each
/// time cost as much as the copy of a small file.
pub async fn off_thread<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NotAnswering> {
    let (sender, receiver) = async_channel::bounded(1);
    let job: DriveJob = Box::new(move || {
        let _ = sender.send_blocking(work());
    });
    if DriveThreads::run(job).is_err() {
        return Err(NotAnswering(Duration::ZERO));
    }
    match glib::future_with_timeout(deadline, receiver.recv()).await {
        Ok(Ok(value)) => Ok(value),
        _ => Err(NotAnswering(deadline)),
    }
}

type DriveJob = Box<dyn FnOnce() + Send>;

/// The idle threads [`off_thread`] hands work to. A thread is idle only between
/// jobs, so one stuck on a hung drive is never given another: a new thread is
/// made whenever none is idle.
struct DriveThreads;

/// How long an idle drive thread waits for work before it ends.
const DRIVE_THREAD_IDLE: Duration = Duration::from_secs(5);

/// Idle threads, by id, with the channel that hands one its next job.
static IDLE_DRIVE_THREADS: std::sync::Mutex<Vec<(u64, std::sync::mpsc::Sender<DriveJob>)>> =
    std::sync::Mutex::new(Vec::new());
static NEXT_DRIVE_THREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl DriveThreads {
    fn run(mut job: DriveJob) -> io::Result<()> {
        loop {
            let idle = IDLE_DRIVE_THREADS.lock().expect("lock").pop();
            let Some((_, thread)) = idle else { break };
            // A thread that timed out and ended hands the job back.
            match thread.send(job) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::SendError(back)) => job = back,
            }
        }
        std::thread::Builder::new()
            .name("ferry-drive".into())
            .spawn(move || Self::serve(job))
            .map(drop)
    }

    fn serve(first: DriveJob) {
        let id = NEXT_DRIVE_THREAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = std::sync::mpsc::channel::<DriveJob>();
        let mut job = first;
        loop {
            job();
            IDLE_DRIVE_THREADS
                .lock()
                .expect("lock")
                .push((id, sender.clone()));
            match receiver.recv_timeout(DRIVE_THREAD_IDLE) {
                Ok(next) => job = next,
                Err(_) => break,
            }
        }
        // Leave the idle list, then finish whatever a caller that took this
        // thread just before sends: `recv` ends once no sender is left.
        IDLE_DRIVE_THREADS
            .lock()
            .expect("lock")
            .retain(|(other, _)| *other != id);
        drop(sender);
        while let Ok(job) = receiver.recv() {
            job();
        }
    }
}

/// Tests only: `FERRY_TEST_HANG_DRIVE=PATH` makes every open of a tree at or under
/// PATH hang forever, like a read from a drive that stopped answering. No real
/// way to make a read hang is available where the tests run (no device mapper, no
/// FUSE library); everything else about the drive is real.
fn test_hook_hang(path: &Path) {
    if let Some(hang) = std::env::var_os("FERRY_TEST_HANG_DRIVE") {
        if !hang.is_empty() && path.starts_with(Path::new(&hang)) {
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn refuses_what_is_not_a_file_beneath() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("plain"), b"hello").unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        symlink("plain", root.join("alias")).unwrap();
        symlink("../outside", root.join("escape")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        symlink("/proc/self/pagemap", root.join("pagemap")).unwrap();
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();

        let tree = Tree::open(&root).unwrap();
        assert_eq!(tree.read("plain", 100).unwrap(), b"hello");
        assert_eq!(tree.read("alias", 100).unwrap(), b"hello");
        assert!(matches!(
            tree.read("plain", 2),
            Err(BeneathError::TooLarge { .. })
        ));
        for (name, kind) in [("fifo", "FIFO"), ("socket", "socket")] {
            match tree.read(name, 100) {
                Err(BeneathError::NotRegular { kind: k, path }) => {
                    assert_eq!(k, kind);
                    assert_eq!(path, root.join(name));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        for name in ["escape", "zero", "pagemap"] {
            assert!(
                matches!(tree.read(name, 100), Err(BeneathError::Escapes { .. })),
                "{name}: {:?}",
                tree.read(name, 100)
            );
        }
        assert!(matches!(
            tree.read("missing", 100),
            Err(BeneathError::NotFound { .. })
        ));
        assert!(matches!(
            tree.open_dir("plain"),
            Err(BeneathError::NotDirectory { .. })
        ));
    }
}
