//! Repositories of every mode: Ferry pulls `.filez` objects into `bare`,
//! `bare-user` and `bare-user-only` repositories and stores them exactly as
//! `ostree` 2022.7 does (compared object by object with `ostree pull-local` into a
//! repository of the same mode), over HTTP (the engine) and from a path (the
//! copier). `ostree fsck` accepts the result and `ostree checkout` gives back the
//! original tree. What a mode cannot hold is refused, and nothing is written.

use super::*;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::http::{ServeOptions, Server};

const BARE_MODES: [&str; 3] = ["bare", "bare-user", "bare-user-only"];

/// A tree with the awkward cases. With `canonical`, only what bare-user-only can
/// hold (owner root, no xattrs, no bits beyond 0775).
fn awkward_tree(root: &Path, canonical: bool) {
    make_dir(root, 0o755);
    write_file(&root.join("empty"), b"", 0o644);
    write_file(&root.join("tool"), b"#!/bin/sh\necho tool\n", 0o775);
    write_file(&root.join("private"), b"private\n", 0o600);
    write_file(
        &root.join("ünïcödé ファイル.txt"),
        "ünïcödé\n".as_bytes(),
        0o644,
    );
    write_file(&root.join("dir/original"), b"linked twice\n", 0o644);
    fs::hard_link(root.join("dir/original"), root.join("dir/hardlink")).unwrap();
    make_symlink("ünïcödé ファイル.txt", &root.join("link"));
    make_symlink("../does/not/exist", &root.join("dir/dangling"));
    make_symlink("/etc/hostname", &root.join("absolute"));
    // Several read and inflate rounds.
    write_random_file(&root.join("big.bin"), 7, 3 << 20, 0o644);
    if canonical {
        return;
    }
    write_file(&root.join("setuid"), b"setuid\n", 0o4755);
    write_file(&root.join("setgid"), b"setgid\n", 0o2755);
    write_file(&root.join("world-writable"), b"anyone\n", 0o666);
    write_file(&root.join("owned"), b"someone else's\n", 0o640);
    chown(&root.join("owned"), 1000, 1001);
    write_file(&root.join("xattrs"), b"with attributes\n", 0o644);
    set_xattr(&root.join("xattrs"), "user.comment", b"ferry");
    set_xattr(
        &root.join("xattrs"),
        "security.ferry-test",
        b"\x00\x01binary",
    );
    make_symlink("owned", &root.join("owned-link"));
    chown(&root.join("owned-link"), 1000, 1000);
    set_xattr(
        &root.join("owned-link"),
        "security.ferry-test",
        b"on a link",
    );
}

/// `lchown`.
fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Every xattr of `path` itself (not followed), sorted.
fn xattrs(path: &Path) -> Xattrs {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut list = vec![0u8; 64 * 1024];
    let n = unsafe { libc::llistxattr(c_path.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    let mut out = Vec::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let c_name = CString::new(name).unwrap();
        let mut value = vec![0u8; 64 * 1024];
        let len = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(len >= 0, "lgetxattr {}", path.display());
        value.truncate(len as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out.sort();
    out
}

type Xattrs = Vec<(String, Vec<u8>)>;

/// What a checkout must reproduce of each entry: the common snapshot (content,
/// permission bits, symlink targets), plus owner and xattrs.
fn full_snapshot(root: &Path) -> BTreeMap<PathBuf, (Entry, u32, u32, Xattrs)> {
    snapshot(root)
        .into_iter()
        .map(|(rel, entry)| {
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            (rel, (entry, meta.uid(), meta.gid(), xattrs(&path)))
        })
        .collect()
}

/// Everything on disk about each file object of a repository: type and mode,
/// owner, size, content or target, xattrs, and the modification time of regular
/// files (a symlink's is when it was made).
fn file_object_facts(repo: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rel in object_files(repo) {
        if !rel.ends_with(".file") && !rel.ends_with(".filez") {
            continue;
        }
        let path = repo.join("objects").join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let (body, mtime) = if meta.file_type().is_symlink() {
            (
                format!("-> {}", fs::read_link(&path).unwrap().display()),
                None,
            )
        } else {
            (sha256_file(&path), Some(meta.mtime()))
        };
        out.insert(
            rel,
            format!(
                "mode {:o} owner {}:{} size {} {body} mtime {mtime:?} xattrs {:?}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.len(),
                xattrs(&path)
            ),
        );
    }
    out
}

/// An upstream archive repository (made by `ostree`) holding `tree` at `REF`.
struct Upstream {
    dir: tempfile::TempDir,
    repo: PathBuf,
    tree: PathBuf,
    commit: String,
}

impl Upstream {
    fn new(canonical: bool) -> Self {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        let repo = dir.path().join("upstream");
        awkward_tree(&tree, canonical);
        ostree_init(&repo);
        let commit = ostree_commit(&repo, REF, &tree, &[]);
        run_ok(ostree(&repo).args(["summary", "-u"]));
        Self {
            dir,
            repo,
            tree,
            commit,
        }
    }

    /// What `ostree pull-local` stores in a repository of `mode`: the reference.
    fn ostree_copy(&self, mode: &str) -> PathBuf {
        let copy = self.dir.path().join(format!("ostree-{mode}"));
        run_ok(ostree(&copy).args(["init", &format!("--mode={mode}")]));
        run_ok(ostree(&copy).arg("pull-local").arg(&self.repo).arg(REF));
        copy
    }

    /// A Ferry repository of `mode` with remote `origin` (nowhere: the source is
    /// named to `pull`).
    fn ferry_repo(&self, label: &str, mode: &str) -> PathBuf {
        let repo = self.dir.path().join(label);
        ferry_init_unverified_mode(&repo, mode);
        repo
    }
}

/// Checks a Ferry repository of `mode` after a pull of `up`: stored as `ostree`
/// stores it, both fscks clean, and `ostree checkout` (as root, so owners, modes
/// and xattrs are applied) gives back the original tree.
fn assert_like_ostree(up: &Upstream, ferry: &Path, reference: &Path, mode: &str) {
    assert_eq!(
        origin_ref(ferry).as_deref(),
        Some(up.commit.as_str()),
        "{mode}"
    );
    let ours = file_object_facts(ferry);
    assert!(!ours.is_empty());
    assert!(
        ours.keys().all(|k| k.ends_with(".file")),
        "{mode}: {ours:?}"
    );
    let theirs = file_object_facts(reference);
    for (name, facts) in &theirs {
        assert_eq!(ours.get(name), Some(facts), "{mode}: object {name}");
    }
    assert_eq!(ours.len(), theirs.len(), "{mode}");
    assert_ostree_fsck(ferry);
    run_ok(ferryctl(ferry).arg("fsck"));
    let out = tempdir();
    let checkout = out.path().join("co");
    run_ok(
        ostree(ferry)
            .arg("checkout")
            .arg(format!("origin:{REF}"))
            .arg(&checkout),
    );
    assert_eq!(full_snapshot(&checkout), full_snapshot(&up.tree), "{mode}");
}

#[test]
fn pulls_into_bare_modes_store_objects_as_ostree_does() {
    let awkward = Upstream::new(false);
    let canonical = Upstream::new(true);
    let server_awkward = Server::start(&awkward.repo, ServeOptions::default());
    let server_canonical = Server::start(&canonical.repo, ServeOptions::default());
    for mode in BARE_MODES {
        let (up, server) = match mode {
            "bare-user-only" => (&canonical, &server_canonical),
            _ => (&awkward, &server_awkward),
        };
        let reference = up.ostree_copy(mode);

        // Over HTTP: the engine.
        let http = up.ferry_repo(&format!("http-{mode}"), mode);
        run_ok(ferryctl(&http).args(["pull", &server.url(), REF]));
        assert_like_ostree(up, &http, &reference, mode);

        // From a path: the copier, reading as from a drive.
        let path = up.ferry_repo(&format!("path-{mode}"), mode);
        run_ok(ferryctl(&path).arg("pull").arg(&up.repo).arg(REF));
        assert_like_ostree(up, &path, &reference, mode);

        // Ferry's checkout (as `ostree checkout --user-mode`) reads every mode.
        let out = tempdir();
        let checkout = out.path().join("co");
        run_ok(
            ferryctl(&path)
                .args(["checkout", &format!("origin:{REF}")])
                .arg(&checkout),
        );
        let user_mode = |root: &Path| -> BTreeMap<PathBuf, Entry> {
            snapshot(root)
                .into_iter()
                .map(|(rel, entry)| match entry {
                    Entry::File { mode, size, sha256 } => {
                        let mode = Mode(mode.0 & !0o6000);
                        (rel, Entry::File { mode, size, sha256 })
                    }
                    other => (rel, other),
                })
                .collect()
        };
        assert_eq!(user_mode(&checkout), user_mode(&up.tree), "{mode}");
    }
}

/// Ferry reads repositories `ostree` wrote in every mode: `ferryctl fsck` accepts
/// them, and finds a changed byte, a changed mode and a lost `user.ostreemeta`.
#[test]
fn fsck_reads_every_mode_and_finds_damage() {
    let up = Upstream::new(false);
    for mode in ["bare", "bare-user"] {
        let repo = up.ostree_copy(mode);
        run_ok(ferryctl(&repo).arg("fsck"));
        let objects = object_files(&repo);
        let file_of = |wanted: &str| {
            let tree = load_commit(&repo, &up.commit).root_tree;
            let files = load_dirtree(&repo, &tree).files;
            let file = files.iter().find(|f| f.name == wanted).unwrap();
            let hex = file.checksum.to_hex();
            let rel = format!("{}/{}.file", &hex[..2], &hex[2..]);
            assert!(objects.contains(&rel));
            repo.join("objects").join(rel)
        };
        let damaged = |what: &str| {
            let out = run(ferryctl(&repo).arg("fsck"));
            assert!(!out.success, "{mode}: fsck missed {what}");
            assert!(
                out.stdout.contains("content of") || out.stderr.contains("content of"),
                "{mode}: {what}: {}{}",
                out.stdout,
                out.stderr
            );
        };
        // A bare repository's objects may be hardlinked into checkouts: change
        // copies, never the shared inode.
        let tool = file_of("tool");
        let bytes = fs::read(&tool).unwrap();
        let meta = fs::metadata(&tool).unwrap();
        let keep = xattrs(&tool);
        fs::remove_file(&tool).unwrap();
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        fs::write(&tool, &flipped).unwrap();
        fs::set_permissions(&tool, meta.permissions()).unwrap();
        for (name, value) in &keep {
            set_xattr(&tool, name, value);
        }
        damaged("a flipped byte");
        fs::write(&tool, &bytes).unwrap();
        run_ok(ferryctl(&repo).arg("fsck"));
        if mode == "bare" {
            fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
            damaged("a changed mode");
        } else {
            set_xattr(
                &tool,
                "user.ostreemeta",
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xed],
            );
            damaged("a changed user.ostreemeta");
        }
    }
}

/// Every path below `dir` whose name contains `part`.
fn paths_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(part) {
            out.push(path.clone());
        }
        if entry.file_type().unwrap().is_dir() {
            out.extend(paths_named(&path, part));
        }
    }
    out
}

/// A setuid file cannot go into a bare-user-only repository (libostree: "invalid
/// mode"), nor can an owner or xattrs (libostree stores them, then its fsck calls
/// the object corrupt): the pull fails saying so, no file object is written, the
/// ref does not move and `ostree fsck` is clean.
#[test]
fn what_bare_user_only_cannot_hold_is_refused_and_nothing_written() {
    let dir = tempdir();
    type MakeOdd<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, MakeOdd, &str); 3] = [
        (
            "setuid",
            &|p| write_file(p, b"setuid\n", 0o4755),
            "invalid mode 0104755 with bits 04000",
        ),
        (
            "owner",
            &|p| {
                write_file(p, b"owned\n", 0o644);
                chown(p, 1000, 0);
            },
            "owner 1000:0",
        ),
        (
            "xattr",
            &|p| {
                write_file(p, b"xattr\n", 0o644);
                set_xattr(p, "user.comment", b"x");
            },
            "extended attributes",
        ),
    ];
    for (label, make, expected) in cases {
        let tree = dir.path().join(format!("tree-{label}"));
        make_dir(&tree, 0o755);
        write_file(&tree.join("plain"), b"plain\n", 0o644);
        make(&tree.join("odd"));
        let upstream = dir.path().join(format!("up-{label}"));
        ostree_init(&upstream);
        let commit = ostree_commit(&upstream, REF, &tree, &[]);
        run_ok(ostree(&upstream).args(["summary", "-u"]));
        let root = load_dirtree(&upstream, &load_commit(&upstream, &commit).root_tree);
        let odd = root.files.iter().find(|f| f.name == "odd").unwrap();
        let odd_hex = odd.checksum.to_hex();
        let server = Server::start(&upstream, ServeOptions::default());
        for (how, source) in [
            ("http", server.url()),
            ("path", upstream.display().to_string()),
        ] {
            let repo = dir.path().join(format!("ferry-{label}-{how}"));
            ferry_init_unverified_mode(&repo, "bare-user-only");
            let out = run(ferryctl(&repo).args(["pull", &source, REF])).failed();
            let said = out.error_sentence();
            assert!(
                said.contains("cannot be stored in a bare-user-only repository")
                    && said.contains(expected),
                "{label} over {how}: {said}"
            );
            // Neither stored nor staged (a staging directory may outlive the
            // failed process; the next transaction removes it).
            let written = paths_named(&repo, &odd_hex[2..]);
            assert!(written.is_empty(), "{label} over {how}: wrote {written:?}");
            assert_eq!(origin_ref(&repo), None);
            assert_ostree_fsck(&repo);
        }
    }
}
