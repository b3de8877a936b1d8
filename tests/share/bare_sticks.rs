//! Drives written from a bare repository: `prepare-usb` makes `.filez` objects from
//! the `.file` objects of a `bare` or `bare-user` repository as it reads them, and
//! libostree's mount finder pulls from the drive.

use super::*;

use crate::common::repo::{make_dir, make_symlink, ostree_commit, set_xattr, write_file};

/// A signed upstream commit of a tree with a symlink, a setuid file, xattrs, an
/// empty file and a file larger than one read.
pub(super) fn awkward_upstream(gpg: &Signer) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    make_dir(&tree, 0o755);
    write_file(&tree.join("empty"), b"", 0o644);
    write_file(&tree.join("setuid"), b"setuid\n", 0o4755);
    write_file(&tree.join("xattrs"), b"xattrs\n", 0o644);
    set_xattr(&tree.join("xattrs"), "user.comment", b"ferry");
    make_symlink("xattrs", &tree.join("link"));
    random_file(&tree.join("big"), 3 << 20);
    let upstream = dir.path().join("upstream");
    crate::common::repo::ostree_init(&upstream);
    ostree_commit(&upstream, REF, &tree, &[]);
    gpg.sign(&upstream, REF);
    run(ostree(&upstream).args(["summary", "-u"]));
    let commit = run(ostree(&upstream).args(["rev-parse", REF]))
        .trim()
        .to_owned();
    (dir, upstream, commit)
}

#[test]
fn libostree_pulls_from_a_drive_written_from_a_bare_repository() {
    let _drives = collection_drive_lock();
    let gpg = Signer::new(SIGNER);
    let (_dir, upstream, commit) = awkward_upstream(&gpg);
    for mode in ["bare", "bare-user"] {
        let ferry = FerryRepo::with_mode(&file_uri(&upstream), &gpg, mode);
        ferry.pull_from(&upstream);
        assert_eq!(ferry.origin_ref().as_deref(), Some(commit.as_str()));

        let drive = LoopDrive::new("FERRYBARE");
        drive.mount();
        let out = output(
            ferry
                .ferryctl()
                .args(["--json", "prepare-usb"])
                .arg(&drive.mount_point),
        );
        assert!(
            out.status.success(),
            "{mode}: prepare-usb failed: {}",
            text(&out.stderr)
        );
        let dest = drive.mount_point.join(".ostree/repo");
        let config = fs::read_to_string(dest.join("config")).unwrap();
        assert!(config.contains("mode=archive-z2"), "{config}");
        run(ostree(&dest).arg("fsck"));
        let mirror = dest.join("refs/mirrors").join(COLLECTION).join(REF);
        assert_eq!(fs::read_to_string(&mirror).unwrap().trim(), commit);

        let client = OstreeClient::new(&gpg);
        client.pull_from_drives();
        assert_eq!(client.collection_ref().as_deref(), Some(commit.as_str()));
        client.fsck();
        drive.umount();
    }
}
