//! USB drives: `prepare-usb` writes drives libostree reads, and Ferry reads drives
//! `ostree create-usb` wrote.

use super::*;

fn assert_readable_by_everyone(root: &Path) {
    for entry in fs::read_dir(root).unwrap().flatten() {
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() { 0o755 } else { 0o644 };
        assert_eq!(
            mode & wanted,
            wanted,
            "{} has mode {mode:o}",
            entry.path().display()
        );
        if meta.is_dir() {
            assert_readable_by_everyone(&entry.path());
        }
    }
}

fn prepare_usb(repo: &FerryRepo, mount: &Path, extra: &[&str]) -> Vec<Value> {
    let mut cmd = repo.ferryctl();
    cmd.args(["--json", "prepare-usb"]).arg(mount).args(extra);
    // A restrictive umask must not make the drive unreadable elsewhere.
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    json_lines(&run(&mut cmd))
}

fn done(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "done")
        .unwrap_or_else(|| panic!("no done event: {events:?}"))
}

#[test]
fn libostree_reads_ferry_usb_drives() {
    let _drives = collection_drive_lock();
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 500_000);
    let commit = upstream.rev(REF);
    let ferry = FerryRepo::with_upstream(&upstream, &gpg);

    // Default layout: MOUNT/.ostree/repo, every tracked ref.
    let drive = LoopDrive::new("FERRYTEST");
    drive.mount();
    let events = prepare_usb(&ferry, &drive.mount_point, &[]);
    assert!(events.iter().any(|e| e["event"] == "planned"), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "progress"),
        "{events:?}"
    );
    let report = done(&events);
    let dest = drive.mount_point.join(".ostree/repo");
    assert_eq!(report["destination"], dest.display().to_string());
    assert!(report["objects_copied"].as_u64().unwrap() > 20, "{report}");
    let mirror = dest.join("refs/mirrors").join(COLLECTION).join(REF);
    assert_eq!(fs::read_to_string(&mirror).unwrap().trim(), commit);
    let config = fs::read_to_string(dest.join("config")).unwrap();
    assert!(config.contains("mode=archive-z2"), "{config}");
    let summary = run(ostree(&dest).args(["summary", "--view"]));
    assert!(
        summary.contains(&format!("({COLLECTION}, {REF})")),
        "{summary}"
    );
    assert!(summary.contains(&commit), "{summary}");
    assert_readable_by_everyone(&drive.mount_point.join(".ostree"));
    run(ostree(&dest).arg("fsck"));

    // Again: nothing is missing, nothing is copied.
    let again = prepare_usb(&ferry, &drive.mount_point, &[]);
    assert_eq!(done(&again)["objects_copied"], 0, "{again:?}");

    // libostree's mount finder finds the drive and pulls from it.
    let client = OstreeClient::new(&gpg);
    let stdout = client.pull_from_drives();
    assert!(
        stdout.contains(&drive.mount_point.display().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({COLLECTION}, {REF}) = {commit}")),
        "{stdout}"
    );
    assert_eq!(client.collection_ref().as_deref(), Some(commit.as_str()));
    client.fsck();
    drive.umount();

    // --destination-repo: MOUNT/DIR, linked from .ostree/repos.d.
    let drive2 = LoopDrive::new("FERRYTEST");
    drive2.mount();
    let events = prepare_usb(
        &ferry,
        &drive2.mount_point,
        &[
            &format!("origin:{REF}"),
            "--destination-repo",
            "updates/os-repo",
        ],
    );
    let report = done(&events);
    let dest2 = drive2.mount_point.join("updates/os-repo");
    assert_eq!(report["destination"], dest2.display().to_string());
    let link = drive2.mount_point.join(".ostree/repos.d/00-generated");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../../updates/os-repo")
    );
    assert_eq!(report["symlink"], link.display().to_string());
    assert!(!drive2.mount_point.join(".ostree/repo").exists());
    assert_readable_by_everyone(&drive2.mount_point.join("updates"));
    run(ostree(&dest2).arg("fsck"));
    // A second run reuses the link instead of adding another.
    prepare_usb(
        &ferry,
        &drive2.mount_point,
        &[REF, "--destination-repo", "updates/os-repo"],
    );
    let links = fs::read_dir(drive2.mount_point.join(".ostree/repos.d"))
        .unwrap()
        .count();
    assert_eq!(links, 1);

    let client2 = OstreeClient::new(&gpg);
    let stdout = client2.pull_from_drives();
    assert!(
        stdout.contains(&drive2.mount_point.display().to_string()),
        "{stdout}"
    );
    assert_eq!(client2.collection_ref().as_deref(), Some(commit.as_str()));
    client2.fsck();
}

#[test]
fn ferry_reads_drives_written_by_ostree() {
    let _drives = collection_drive_lock();
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 500_000);
    let commit = upstream.rev(REF);
    let drive = LoopDrive::new("FERRYTEST");
    drive.mount();
    run(ostree(&upstream.path)
        .arg("create-usb")
        .arg(&drive.mount_point)
        .args([COLLECTION, REF]));

    // By path…
    let client = FerryRepo::new("http://invalid.invalid/", &gpg);
    let uri = format!(
        "file://{}",
        drive.mount_point.join(".ostree/repo").display()
    );
    run(client.ferryctl().args(["pull", &uri, REF]));
    assert_eq!(client.origin_ref().as_deref(), Some(commit.as_str()));
    run(client.ferryctl().arg("fsck"));
    run(ostree(&client.path).arg("fsck"));

    // …and as a sideloaded drive found by `ferryctl update`.
    let client2 = FerryRepo::new("http://invalid.invalid/", &gpg);
    let sideload = tempdir();
    symlink(&drive.mount_point, sideload.path().join("stick")).unwrap();
    let out = run(client2
        .ferryctl()
        .args(["--no-lan", "--no-mounts", "--sideload-dir"])
        .arg(sideload.path())
        .args(["--json", "update"]));
    assert!(
        json_lines(&out)
            .iter()
            .any(|e| e["event"] == "ref-updated" && e["commit"] == commit.as_str()),
        "{out}"
    );
    run(client2.ferryctl().arg("fsck"));
}

/// The single `ferryctl: …` error line of a failed run.
fn error_line(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("WARNING:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
        .strip_prefix("ferryctl: ")
        .expect("ferryctl: prefix")
        .to_owned()
}

#[test]
fn prepare_usb_refuses_a_read_only_drive() {
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let ferry = FerryRepo::with_upstream(&upstream, &gpg);
    let drive = LoopDrive::builder("FERRYTEST")
        .size_mib(16)
        .read_only(true)
        .build();
    drive.mount();
    let out = output(ferry.ferryctl().arg("prepare-usb").arg(&drive.mount_point));
    let message = error_line(&out);
    assert!(message.contains("read-only"), "{message}");
    assert!(
        message.contains(&drive.mount_point.display().to_string()),
        "{message}"
    );
    assert!(message.contains("nothing was copied"), "{message}");
    assert!(drive.contents().is_empty(), "{:?}", drive.contents());
}

#[test]
fn prepare_usb_refuses_a_too_small_drive() {
    let gpg = Signer::new(SIGNER);
    // 3 MB of incompressible data does not fit a 2 MiB drive (~800 kB free).
    let upstream = Upstream::new(&gpg, 3_000_000);
    let ferry = FerryRepo::with_upstream(&upstream, &gpg);
    let drive = LoopDrive::builder("FERRYTEST").size_mib(2).build();
    drive.mount();
    let out = output(ferry.ferryctl().arg("prepare-usb").arg(&drive.mount_point));
    let message = error_line(&out);
    assert!(message.contains("not enough space"), "{message}");
    assert!(message.contains("MB"), "{message}");
    assert!(message.contains("nothing was copied"), "{message}");
    assert!(drive.contents().is_empty(), "{:?}", drive.contents());
}

/// Every path below `root` (symlinks not followed) with its mode and size.
fn tree_state(root: &Path) -> Vec<(String, u32, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, u64)>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, meta.permissions().mode(), meta.len()));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A bind mount, unmounted on drop.
struct BindMount(std::path::PathBuf);

impl BindMount {
    fn new(from: &Path, onto: &Path) -> Self {
        run(Command::new("mount").arg("--bind").arg(from).arg(onto));
        Self(onto.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A drive whose repository someone else prepared with symlinks (or a mount) in
/// it: `prepare-usb` refuses before writing anything, names the entry, and never
/// writes to or changes the permissions of anything outside the drive.
#[test]
fn prepare_usb_refuses_repositories_that_lead_off_the_drive() {
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let ferry = FerryRepo::with_upstream(&upstream, &gpg);
    let drive = LoopDrive::new("FERRYTEST");
    drive.mount();
    prepare_usb(&ferry, &drive.mount_point, &[]);
    let repo = drive.mount_point.join(".ostree/repo");
    // A newer commit, so that a copy would have objects to write.
    upstream.commit(&gpg, "2.0", 100_000);
    ferry.pull_from(&upstream.path);

    // Outside the drive: private directories a chmod would open up.
    let outside = tempdir();
    fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let private = outside.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("secret"), "x").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(
        outside.path().join("config"),
        "[core]\nrepo_version=1\nmode=archive-z2\n",
    )
    .unwrap();
    fs::create_dir_all(drive.mount_point.join("elsewhere")).unwrap();

    let refuse = |case: &str, culprit: &Path, reason: &str| {
        let outside_before = tree_state(outside.path());
        let drive_before = tree_state(&drive.mount_point);
        let out = output(ferry.ferryctl().arg("prepare-usb").arg(&drive.mount_point));
        let message = error_line(&out);
        assert!(
            message.contains(&culprit.display().to_string()) && message.contains(reason),
            "{case}: {message}"
        );
        assert!(message.contains("nothing was copied"), "{case}: {message}");
        assert_eq!(
            tree_state(outside.path()),
            outside_before,
            "{case}: outside changed"
        );
        assert_eq!(
            tree_state(&drive.mount_point),
            drive_before,
            "{case}: drive changed"
        );
    };
    let swap = |name: &str, target: &Path| -> std::path::PathBuf {
        let entry = repo.join(name);
        let kept = repo.join(format!("{name}.kept"));
        fs::rename(&entry, &kept).unwrap();
        symlink(target, &entry).unwrap();
        entry
    };
    let restore = |name: &str| {
        let entry = repo.join(name);
        fs::remove_file(&entry).unwrap();
        fs::rename(repo.join(format!("{name}.kept")), &entry).unwrap();
    };

    for name in ["objects", "tmp", "refs", "state"] {
        let entry = swap(name, outside.path());
        refuse(name, &entry, "is a symbolic link");
        restore(name);
    }
    let entry = swap("config", &outside.path().join("config"));
    refuse("config", &entry, "is a symbolic link");
    restore("config");
    // Even a link that stays on the drive: Ferry does not write through links.
    let entry = swap("objects", Path::new("../../elsewhere"));
    refuse("objects on the drive", &entry, "is a symbolic link");
    restore("objects");
    // One object directory leading off the drive.
    let prefix = unused_prefix(&repo);
    let entry = repo.join("objects").join(&prefix);
    symlink(&private, &entry).unwrap();
    refuse("objects/XX", &entry, "is a symbolic link");
    fs::remove_file(&entry).unwrap();
    // A symlink deep in refs.
    let entry = repo.join("refs/mirrors").join(COLLECTION).join("os/evil");
    symlink(private.join("secret"), &entry).unwrap();
    refuse("a ref", &entry, "is a symbolic link");
    fs::remove_file(&entry).unwrap();
    // Another file system mounted inside the repository.
    let refs = repo.join("refs");
    {
        let _mounted = BindMount::new(outside.path(), &refs);
        refuse("a mount point", &refs, "is on another file system");
    }
    // A repository directory that is a symlink off the drive.
    let off_drive = tempdir();
    let link = drive.mount_point.join("linked");
    symlink(off_drive.path(), &link).unwrap();
    let out = output(
        ferry
            .ferryctl()
            .arg("prepare-usb")
            .arg(&drive.mount_point)
            .args(["--destination-repo", "linked/repo"]),
    );
    let message = error_line(&out);
    assert!(message.contains("outside the drive"), "{message}");
    assert!(fs::read_dir(off_drive.path()).unwrap().next().is_none());
    fs::remove_file(&link).unwrap();

    // Untouched, the drive still takes the update and stays consistent.
    let events = prepare_usb(&ferry, &drive.mount_point, &[]);
    assert!(
        done(&events)["objects_copied"].as_u64().unwrap() > 0,
        "{events:?}"
    );
    run(ostree(&repo).arg("fsck"));
}
