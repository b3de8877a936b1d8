//! A "USB drive" for the integration tests: an ext4 image in a temporary directory,
//! loop-mounted (`mount -o loop`) at `/media/ferry-test-<random>`. A support module
//! includes this file next to `cmd.rs`, which it uses as `super::cmd`:
//!
//! ```ignore
//! #[path = "../common/cmd.rs"]
//! mod cmd;
//! #[path = "../common/drive.rs"]
//! mod drive;
//! ```
//!
//! Dropping a drive, also when a test panics, unmounts it if it is still mounted
//! (whoever mounted it; lazily if it is busy), detaches its loop device, removes
//! the image and the mount point it made.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cmd::{run, text};

/// How a [`LoopDrive`] is made: `LoopDrive::builder(label)…build()`.
#[derive(Clone, Debug)]
pub struct LoopDriveBuilder {
    label: String,
    size_mib: u64,
    read_only: bool,
    mount_point: Option<PathBuf>,
    unmount_on_drop: bool,
}

impl LoopDriveBuilder {
    /// Size of the image (default 64 MiB).
    pub fn size_mib(mut self, size_mib: u64) -> Self {
        self.size_mib = size_mib;
        self
    }

    /// Mount with `-o loop,ro` instead of `-o loop` (default false).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Mount here instead of `/media/ferry-test-<random>` (created if missing).
    pub fn mount_point(mut self, path: impl Into<PathBuf>) -> Self {
        self.mount_point = Some(path.into());
        self
    }

    /// Whether dropping the drive unmounts it if it is still mounted (default true).
    pub fn unmount_on_drop(mut self, unmount: bool) -> Self {
        self.unmount_on_drop = unmount;
        self
    }

    /// Makes the ext4 image (`mkfs.ext4 -q -F -L LABEL`) and the mount point; does
    /// not mount.
    pub fn build(self) -> LoopDrive {
        let dir = tempfile::Builder::new()
            .prefix("ferry-drive-")
            .tempdir()
            .expect("tempdir for a drive image");
        let image = dir.path().join("drive.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(self.size_mib << 20))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", image.display()));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", &self.label])
            .arg(&image));
        let mount_point = self.mount_point.unwrap_or_else(|| {
            let suffix = format!("{:08x}", rand::random::<u32>());
            PathBuf::from(format!("/media/ferry-test-{suffix}"))
        });
        let made_mount_point = !mount_point.exists();
        fs::create_dir_all(&mount_point)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", mount_point.display()));
        LoopDrive {
            image,
            mount_point,
            label: self.label,
            read_only: self.read_only,
            unmount_on_drop: self.unmount_on_drop,
            made_mount_point,
            _dir: dir,
        }
    }
}

/// A loop-mounted ext4 file system; see the module documentation.
pub struct LoopDrive {
    pub image: PathBuf,
    pub mount_point: PathBuf,
    pub label: String,
    read_only: bool,
    unmount_on_drop: bool,
    made_mount_point: bool,
    _dir: tempfile::TempDir,
}

impl LoopDrive {
    /// Options start at: 64 MiB, read-write, `/media/ferry-test-<random>`,
    /// unmounted on drop.
    pub fn builder(label: &str) -> LoopDriveBuilder {
        LoopDriveBuilder {
            label: label.to_owned(),
            size_mib: 64,
            read_only: false,
            mount_point: None,
            unmount_on_drop: true,
        }
    }

    /// A 64 MiB drive labelled `label`, not mounted yet.
    pub fn new(label: &str) -> Self {
        Self::builder(label).build()
    }

    /// Plugs the drive in: `mount -o loop[,ro] IMAGE MOUNT_POINT`.
    pub fn mount(&self) {
        let options = if self.read_only { "loop,ro" } else { "loop" };
        run(Command::new("mount")
            .args(["-o", options])
            .arg(&self.image)
            .arg(&self.mount_point));
    }

    /// `umount MOUNT_POINT`; fails the test if that fails.
    pub fn umount(&self) {
        run(Command::new("umount").arg(&self.mount_point));
    }

    /// "Pulls the stick out" under whoever is using it: `umount -l`.
    pub fn unmount_lazy(&self) {
        run(Command::new("umount").arg("-l").arg(&self.mount_point));
    }

    /// "The stick fails" under whoever is reading it: the image is cut to 1 MiB and
    /// the loop device told (`losetup -c`), and clean cached pages are dropped, so
    /// from now on reads of file data beyond the first MiB fail with `EIO` while
    /// files stay openable (their inodes are still cached).
    pub fn fail_reads(&self) {
        let devices = self.loop_devices();
        assert!(
            !devices.is_empty(),
            "{} is not attached",
            self.image.display()
        );
        fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .and_then(|f| f.set_len(1 << 20))
            .unwrap_or_else(|e| panic!("cannot cut {}: {e}", self.image.display()));
        for dev in devices {
            run(Command::new("losetup").arg("-c").arg(&dev));
        }
        fs::write("/proc/sys/vm/drop_caches", "1").expect("drop the page cache");
    }

    /// `sync -f MOUNT_POINT`.
    pub fn sync(&self) {
        run(Command::new("sync").arg("-f").arg(&self.mount_point));
    }

    /// Mounts, lets `fill` write to the drive, unmounts: a stick prepared elsewhere.
    pub fn prepare(&self, fill: impl FnOnce(&Path)) {
        self.mount();
        fill(&self.mount_point);
        run(&mut Command::new("sync"));
        self.umount();
    }

    /// Whether something is mounted at the mount point (per /proc/self/mounts).
    pub fn is_mounted(&self) -> bool {
        let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
            return false;
        };
        let wanted = self.mount_point.to_string_lossy().into_owned();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(wanted.as_str()))
    }

    /// Every path on the drive (relative), except ext4's lost+found.
    pub fn contents(&self) -> Vec<PathBuf> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().to_owned();
                if rel == Path::new("lost+found") {
                    continue;
                }
                out.push(rel);
                if entry.file_type().unwrap().is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.mount_point, &self.mount_point, &mut out);
        out
    }

    /// The loop devices backed by the image (`losetup -j IMAGE`).
    fn loop_devices(&self) -> Vec<String> {
        // Not `cmd::output`: this runs in Drop, where a panic would abort.
        let Ok(out) = Command::new("losetup")
            .arg("-j")
            .arg(&self.image)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            return Vec::new();
        };
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(':').map(|(dev, _)| dev.trim().to_owned()))
            .filter(|dev| !dev.is_empty())
            .collect()
    }
}

impl Drop for LoopDrive {
    fn drop(&mut self) {
        if self.unmount_on_drop {
            // A few rounds, in case something was mounted over it.
            for _ in 0..3 {
                if !self.is_mounted() {
                    break;
                }
                let unmounted = Command::new("umount")
                    .arg(&self.mount_point)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !unmounted {
                    // Lazily, if something still holds it.
                    let _ = Command::new("umount")
                        .arg("-l")
                        .arg(&self.mount_point)
                        .status();
                }
            }
            // `mount -o loop` sets autoclear, so this is usually gone already; a
            // device still held by a lazy unmount is freed once released.
            for dev in self.loop_devices() {
                let _ = Command::new("losetup")
                    .arg("-d")
                    .arg(&dev)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = fs::remove_file(&self.image);
        if self.made_mount_point {
            let _ = fs::remove_dir(&self.mount_point);
        }
    }
}
