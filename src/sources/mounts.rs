//! Repositories on drives and in the sideload directory.
//!
//! For each mount root, candidates are looked for exactly like libostree's mount
//! finder: every entry of `.ostree/repos.d/` in lexical order, then `.ostree/repo`,
//! `ostree/repo` and `var/lib/flatpak/repo`. Symlinks are followed, but a repository
//! on a different device than the mount root (a link escaping the drive) is
//! rejected, and so is the local repository. Repositories are deduplicated by
//! canonical path, and a collection-ref is offered only by the first repository on
//! the drive that has it.
//!
//! A sideload directory (like flatpak's `sideload-repos`) holds symlinks either to
//! repositories or to the roots of drives; it is scanned the same way, without the
//! device rule.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::drive_repo::{self, DriveRepo, DriveRepoError, FileId};
use super::model::{CollectionRef, RejectReason, Rejection};

/// Where repositories live on a drive after `.ostree/repos.d/*`, in order.
pub const WELL_KNOWN_REPOS: [&str; 3] = [".ostree/repo", "ostree/repo", "var/lib/flatpak/repo"];

/// A repository found on a drive or in the sideload directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundRepo {
    /// The path it was found at (before following symlinks).
    pub found_at: PathBuf,
    /// The repository, its refs reduced to those no earlier repository offers.
    pub repo: DriveRepo,
}

/// The outcome of scanning one mount root or sideload directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    pub repos: Vec<FoundRepo>,
    pub rejections: Vec<Rejection>,
}

/// A candidate path, and whether its absence or unreadability is worth reporting
/// (entries of `repos.d` and of the sideload directory are; well-known paths that
/// simply do not exist are not).
struct Candidate {
    path: PathBuf,
    explicit: bool,
}

fn sorted_dir_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    // libostree sorts with strcmp(): byte order.
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    names.into_iter().map(|n| dir.join(n)).collect()
}

fn mount_candidates(root: &Path) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = sorted_dir_entries(&root.join(".ostree/repos.d"))
        .into_iter()
        .map(|path| Candidate {
            path,
            explicit: true,
        })
        .collect();
    out.extend(WELL_KNOWN_REPOS.iter().map(|p| Candidate {
        path: root.join(p),
        explicit: false,
    }));
    out
}

/// Scans the drive mounted at `root`. `local` is the local repository's identity.
pub fn scan_mount_root(root: &Path, local: Option<FileId>) -> ScanResult {
    let root_dev = match FileId::of(root) {
        Ok(id) => id.dev,
        Err(e) => {
            glib::g_debug!("ferry", "ignoring mount {}: {e}", root.display());
            return ScanResult::default();
        }
    };
    scan_candidates(root, mount_candidates(root), Some(root_dev), local)
}

/// Scans a sideload directory: each entry is a repository, or the root of a drive
/// holding repositories in the usual places.
pub fn scan_sideload_dir(dir: &Path, local: Option<FileId>) -> ScanResult {
    let mut candidates = Vec::new();
    for entry in sorted_dir_entries(dir) {
        if drive_repo::resolve_repo(&entry).is_ok() {
            candidates.push(Candidate {
                path: entry,
                explicit: true,
            });
        } else if entry.is_dir() {
            candidates.extend(mount_candidates(&entry));
        } else {
            candidates.push(Candidate {
                path: entry,
                explicit: true,
            });
        }
    }
    scan_candidates(dir, candidates, None, local)
}

fn scan_candidates(
    origin: &Path,
    candidates: Vec<Candidate>,
    root_dev: Option<u64>,
    local: Option<FileId>,
) -> ScanResult {
    let mut result = ScanResult::default();
    let mut seen_repos = HashSet::new();
    let mut offered: HashSet<CollectionRef> = HashSet::new();
    let mut reject = |path: &Path, reason: RejectReason| {
        result.rejections.push(Rejection {
            path: path.to_owned(),
            origin: origin.to_owned(),
            reason,
        });
    };
    let mut found = Vec::new();

    for Candidate { path, explicit } in candidates {
        // Check the identity before reading anything from it.
        let id = match drive_repo::resolve_repo(&path) {
            Ok((_, id)) => id,
            Err(DriveRepoError::Io { source, .. })
                if !explicit && source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue
            }
            Err(e) => {
                if explicit || path.exists() {
                    reject(&path, RejectReason::Unreadable(e.to_string()));
                }
                continue;
            }
        };
        if root_dev.is_some_and(|dev| dev != id.dev) {
            reject(&path, RejectReason::OtherFileSystem);
            continue;
        }
        if local == Some(id) {
            reject(&path, RejectReason::LocalRepository);
            continue;
        }
        if !seen_repos.insert(id) {
            continue;
        }
        match drive_repo::read_repo(&path) {
            // Re-check: the path could have been swapped between the two looks.
            Ok(repo) if repo.id != id => reject(
                &path,
                RejectReason::Unreadable("it changed while being read".into()),
            ),
            Ok(mut repo) => {
                repo.refs.retain(|r| offered.insert(r.collection_ref()));
                found.push(FoundRepo {
                    found_at: path,
                    repo,
                });
            }
            Err(e) => reject(&path, RejectReason::Unreadable(e.to_string())),
        }
    }
    result.repos = found;
    result
}

/// GLib's `g_unix_is_system_fs_type` list.
const SYSTEM_FS_TYPES: &[&str] = &[
    "adfs",
    "afs",
    "auto",
    "autofs",
    "autofs4",
    "cgroup",
    "cgroup2",
    "configfs",
    "cxfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "ecryptfs",
    "fdescfs",
    "fusectl",
    "gfs",
    "gfs2",
    "gpfs",
    "hugetlbfs",
    "kernfs",
    "linprocfs",
    "linsysfs",
    "lustre",
    "lustre_lite",
    "mfs",
    "mqueue",
    "ncpfs",
    "nfsd",
    "nullfs",
    "ocfs2",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ptyfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "usbfs",
];

/// GLib's `g_unix_is_system_device_path` list.
const SYSTEM_DEVICES: &[&str] = &["none", "sunrpc", "devpts", "nfsd", "/dev/loop", "/dev/vn"];

/// Decodes the `\040`-style escapes of `/proc/self/mountinfo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(v) = u8::try_from(value) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// File system type and source of the mount at `root`, from `/proc/self/mountinfo`
/// (the last matching line: the mount on top).
pub fn mount_info(root: &Path) -> Option<(String, String)> {
    use std::os::unix::ffi::OsStrExt;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = root.as_os_str().as_bytes();
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        if unescape_mountinfo(mount_point) != root {
            return None;
        }
        let mut right = right.split(' ');
        let fs_type = right.next()?.to_owned();
        let source = right
            .next()
            .map(|s| String::from_utf8_lossy(&unescape_mountinfo(s)).into_owned());
        Some((fs_type, source.unwrap_or_default()))
    })
}

/// Whether the mount at `root` is a system mount libostree's mount finder skips.
pub fn is_system_mount(root: &Path) -> bool {
    match mount_info(root) {
        Some((fs_type, source)) => {
            SYSTEM_FS_TYPES.contains(&fs_type.as_str()) || SYSTEM_DEVICES.contains(&source.as_str())
        }
        None => false,
    }
}

/// The file system label of the mount at `root` (`FS_IOC_GETFSLABEL`: ext4, btrfs,
/// xfs, f2fs…), if it has one.
pub fn fs_label(root: &Path) -> Option<String> {
    use std::os::fd::AsRawFd;
    const FSLABEL_MAX: usize = 256;
    // _IOR(0x94, 49, char[FSLABEL_MAX])
    const FS_IOC_GETFSLABEL: libc::c_ulong =
        (2 << 30) | ((FSLABEL_MAX as libc::c_ulong) << 16) | (0x94 << 8) | 49;
    let dir = fs::File::open(root).ok()?;
    let mut buf = [0u8; FSLABEL_MAX];
    // SAFETY: the ioctl writes at most FSLABEL_MAX bytes into `buf`, which is that
    // large, and `dir` is an open descriptor for the duration of the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_GETFSLABEL as _, buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(FSLABEL_MAX);
    let label = String::from_utf8_lossy(&buf[..len]).trim().to_owned();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/media/a\040b"), b"/media/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), b"/plain");
        assert_eq!(unescape_mountinfo(r"/x\"), b"/x\\");
        assert_eq!(unescape_mountinfo(r"/x\9"), b"/x\\9");
    }

    #[test]
    fn proc_is_a_system_mount() {
        assert!(is_system_mount(Path::new("/proc")));
        assert!(!is_system_mount(Path::new("/nonexistent-mount-point")));
    }
}
