//! Repositories made by the real `ostree` tool, objects written with Ferry's
//! library, file trees built and compared.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::repo::filez::{write_filez, FileHeader};
use ferry::repo::objects::{Commit, DirMeta, DirTree};
use ferry::repo::{Checksum, ObjectName, ObjectType};
use glib::Variant;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::cmd;
pub use super::cmd::Run;
pub use super::gpg::{Gpg, Signer};
pub use super::{copy_tree, ferryctl, ferryctl_bare, file_uri, ostree, tempdir, COLLECTION, REF};

/// The user id of the signing keys made here.
pub const SIGNER: &str = "Ferry Test <ferry-test@example.com>";

/// Runs `cmd` to completion (stdin closed) and captures its output.
pub fn run(cmd: &mut Command) -> Run {
    cmd::capture(cmd)
}

/// Runs `cmd` and asserts success.
pub fn run_ok(cmd: &mut Command) -> Run {
    run(cmd).ok()
}

// ---------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------

/// `ostree init --mode=archive --collection-id=org.example.Os` at `path`.
pub fn ostree_init(path: &Path) {
    run_ok(
        ostree(path)
            .args(["init", "--mode=archive"])
            .arg(format!("--collection-id={COLLECTION}")),
    );
}

/// `ostree commit -b BRANCH EXTRA… --tree=dir=TREE`; returns the commit checksum.
/// (A `--tree=ref=` in `extra` comes first, so TREE overlays it.)
pub fn ostree_commit(repo: &Path, branch: &str, tree: &Path, extra: &[&str]) -> String {
    let out = run_ok(
        ostree(repo)
            // The source's durability does not matter to a test.
            .args(["commit", "--fsync=false", "-b", branch])
            .args(extra)
            .arg(format!("--tree=dir={}", tree.display())),
    );
    let checksum = out.stdout.trim().to_owned();
    assert_eq!(checksum.len(), 64, "ostree commit printed {checksum:?}");
    checksum
}

/// `ostree rev-parse REV`, or `None` if it does not resolve.
pub fn rev_parse(repo: &Path, rev: &str) -> Option<String> {
    let out = run(ostree(repo).args(["rev-parse", rev]));
    out.success.then(|| out.stdout.trim().to_owned())
}

/// Asserts `ostree fsck` accepts the repository and reports nothing corrupt or
/// missing.
pub fn assert_ostree_fsck(repo: &Path) {
    let out = run(ostree(repo).arg("fsck"));
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.success && !text.to_lowercase().contains("corrupt") && !text.contains("missing"),
        "ostree fsck of {} failed:\n{text}",
        repo.display(),
    );
}

/// `ferryctl init` + `ferryctl remote add origin http://127.0.0.1:9/
/// --collection-id org.example.Os --no-verify` at `path`.
pub fn ferry_init_unverified(path: &Path) {
    ferry_init_unverified_mode(path, "archive");
}

/// [`ferry_init_unverified`] with `ferryctl init --mode MODE`.
pub fn ferry_init_unverified_mode(path: &Path, mode: &str) {
    run_ok(ferryctl(path).args(["init", "--mode", mode]));
    run_ok(ferryctl(path).args([
        "remote",
        "add",
        "origin",
        "http://127.0.0.1:9/",
        "--collection-id",
        COLLECTION,
        "--no-verify",
    ]));
}

/// `ferryctl --json pull file://SOURCE REF`, asserting success; the JSON report.
pub fn ferry_pull(repo: &Path, source: &Path, ref_name: &str) -> serde_json::Value {
    run_ok(
        ferryctl(repo)
            .args(["--json", "pull"])
            .arg(file_uri(source))
            .arg(ref_name),
    )
    .json()
}

/// `ferryctl pull` that is expected to fail.
pub fn ferry_pull_fails(repo: &Path, source: &Path, ref_name: &str) -> Run {
    run(ferryctl(repo)
        .arg("pull")
        .arg(file_uri(source))
        .arg(ref_name))
    .failed()
}

/// The contents of a ref file (`refs/…` relative path), trimmed; `None` if absent.
pub fn read_ref_file(repo: &Path, relative: &str) -> Option<String> {
    match fs::read_to_string(repo.join(relative)) {
        Ok(s) => Some(s.trim_end().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {relative}: {e}"),
    }
}

/// `refs/remotes/origin/os/stable` of a Ferry repository.
pub fn origin_ref(repo: &Path) -> Option<String> {
    read_ref_file(repo, &format!("refs/remotes/origin/{REF}"))
}

/// Writes a ref file (`refs/heads/…` etc.) as ostree does: 64 hex and a newline.
pub fn write_ref_file(repo: &Path, relative: &str, checksum: &str) {
    let path = repo.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, format!("{checksum}\n")).unwrap();
}

/// Every object file below `objects/`, as `xx/yyyy….ext` relative paths.
pub fn object_files(repo: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let objects = repo.join("objects");
    for dir in fs::read_dir(&objects).unwrap() {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        let prefix = dir.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            out.insert(format!("{prefix}/{}", file.file_name().to_string_lossy()));
        }
    }
    out
}

/// [`object_files`] with file objects named `.filez` whatever the repository's
/// mode (bare ones store `.file`), so repositories of different modes compare.
pub fn object_names(repo: &Path) -> BTreeSet<String> {
    object_files(repo)
        .into_iter()
        .map(|rel| match rel.strip_suffix(".file") {
            Some(stem) => format!("{stem}.filez"),
            None => rel,
        })
        .collect()
}

/// Every object in a repository, with its name.
pub fn objects(repo: &Path) -> Vec<ObjectName> {
    object_files(repo)
        .iter()
        .map(|rel| {
            ObjectName::from_relative_path(rel)
                .unwrap_or_else(|| panic!("unexpected file objects/{rel}"))
        })
        .collect()
}

/// Path of an object in a repository.
pub fn object_path(repo: &Path, checksum: &Checksum, kind: ObjectType) -> PathBuf {
    repo.join(ObjectName::new(*checksum, kind).relative_path())
}

/// Reads an object's bytes.
pub fn read_object(repo: &Path, checksum: &Checksum, kind: ObjectType) -> Vec<u8> {
    let path = object_path(repo, checksum, kind);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Writes `bytes` at `objects/xx/….ext` for `checksum` (for corrupt objects too).
pub fn put_object(repo: &Path, checksum: &Checksum, kind: ObjectType, bytes: &[u8]) {
    let path = object_path(repo, checksum, kind);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
}

/// Stores a metadata object under the sha256 of its bytes; returns the checksum.
pub fn put_metadata(repo: &Path, kind: ObjectType, bytes: &[u8]) -> Checksum {
    let checksum = Checksum::digest(bytes);
    put_object(repo, &checksum, kind, bytes);
    checksum
}

pub fn put_dirtree(repo: &Path, tree: &DirTree) -> Checksum {
    put_metadata(repo, ObjectType::DirTree, &tree.to_bytes())
}

pub fn put_dirmeta(repo: &Path, meta: &DirMeta) -> Checksum {
    put_metadata(repo, ObjectType::DirMeta, &meta.to_bytes())
}

pub fn put_commit(repo: &Path, commit: &Commit) -> Checksum {
    put_metadata(repo, ObjectType::Commit, &commit.to_bytes())
}

/// Stores a regular file (`mode` without the type bits) as a `.filez`.
pub fn put_file(repo: &Path, content: &[u8], mode: u32) -> Checksum {
    let header = FileHeader {
        size: content.len() as u64,
        uid: 0,
        gid: 0,
        mode: libc::S_IFREG | mode,
        rdev: 0,
        symlink_target: String::new(),
        xattrs: vec![],
    };
    let mut bytes = Vec::new();
    let checksum = write_filez(&header, &mut &content[..], &mut bytes).unwrap();
    put_object(repo, &checksum, ObjectType::File, &bytes);
    checksum
}

/// Stores a symlink as a `.filez`.
pub fn put_symlink(repo: &Path, target: &str) -> Checksum {
    let header = FileHeader {
        size: 0,
        uid: 0,
        gid: 0,
        mode: libc::S_IFLNK | 0o777,
        rdev: 0,
        symlink_target: target.to_owned(),
        xattrs: vec![],
    };
    let mut bytes = Vec::new();
    let checksum = write_filez(&header, &mut io::empty(), &mut bytes).unwrap();
    put_object(repo, &checksum, ObjectType::File, &bytes);
    checksum
}

/// A directory's metadata as `ostree commit` records a 0755 root-owned directory.
pub fn dir_meta_0755() -> DirMeta {
    DirMeta {
        uid: 0,
        gid: 0,
        mode: libc::S_IFDIR | 0o755,
        xattrs: vec![],
    }
}

/// Loads a commit object with Ferry's parser.
pub fn load_commit(repo: &Path, checksum: &str) -> Commit {
    let checksum: Checksum = checksum.parse().unwrap();
    Commit::parse(&read_object(repo, &checksum, ObjectType::Commit)).unwrap()
}

/// Loads a dirtree object with Ferry's parser.
pub fn load_dirtree(repo: &Path, checksum: &Checksum) -> DirTree {
    DirTree::parse(&read_object(repo, checksum, ObjectType::DirTree)).unwrap()
}

// ---------------------------------------------------------------------------
// Building trees
// ---------------------------------------------------------------------------

/// Writes a file with exact permissions (`mode`, umask ignored); parents created.
pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates a directory (and parents) and sets its permissions exactly.
pub fn make_dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates a symlink (parents created).
pub fn make_symlink(target: &str, path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    symlink(target, path).unwrap();
}

/// `len` pseudo-random bytes from `seed` (incompressible).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// Writes `len` pseudo-random bytes from `seed` to `path`, in chunks.
pub fn write_random_file(path: &Path, seed: u64, len: usize, mode: u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut file = File::create(path).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        rng.fill_bytes(&mut chunk[..n]);
        file.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    drop(file);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets an extended attribute (`user.*` works without privileges on most
/// filesystems). Does not follow symlinks.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = CString::new(name).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------

/// Permission bits (including setuid, setgid and sticky), shown in octal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0o{:04o}", self.0)
    }
}

/// One entry of a directory tree as a checkout must reproduce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mode: Mode,
    },
    /// Size and sha256 of the content.
    File {
        mode: Mode,
        size: u64,
        sha256: String,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every entry below `root` (the root itself is `""`), by relative path. Does not
/// follow symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    snapshot_into(root, Path::new(""), &mut out);
    out
}

fn snapshot_into(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).unwrap();
    let mode = Mode(meta.permissions().mode() & 0o7777);
    let ty = meta.file_type();
    if ty.is_symlink() {
        out.insert(
            rel.to_owned(),
            Entry::Symlink {
                target: fs::read_link(&path).unwrap(),
            },
        );
    } else if ty.is_dir() {
        out.insert(rel.to_owned(), Entry::Dir { mode });
        for child in fs::read_dir(&path).unwrap() {
            let child = child.unwrap();
            snapshot_into(root, &rel.join(child.file_name()), out);
        }
    } else if ty.is_file() {
        out.insert(
            rel.to_owned(),
            Entry::File {
                mode,
                size: meta.len(),
                sha256: sha256_file(&path),
            },
        );
    } else {
        panic!("unexpected file type at {}", path.display());
    }
}

/// sha256 of a file's content, hex.
pub fn sha256_file(path: &Path) -> String {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).unwrap());
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Asserts two trees are equal, listing every difference.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
    let mut problems = Vec::new();
    for (path, entry) in &a {
        match b.get(path) {
            None => problems.push(format!("missing {}: {entry:?}", path.display())),
            Some(other) if other != entry => problems.push(format!(
                "{}: expected {entry:?}, got {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        problems.push(format!("unexpected {}", path.display()));
    }
    assert!(
        problems.is_empty(),
        "{} differs from {}:\n{}",
        actual.display(),
        expected.display(),
        problems.join("\n")
    );
}

/// Every path below `dir` (recursively, not following symlinks).
pub fn list_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            out.push(entry.path());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(list_all(&entry.path()));
            }
        }
    }
    out
}

/// The objects a commit needs (itself, its dirtrees, dirmetas and files; not its
/// detached metadata), read with Ferry's parsers.
pub fn closure_of(repo: &Path, commit: &str) -> BTreeSet<ObjectName> {
    let checksum: Checksum = commit.parse().unwrap();
    let commit = load_commit(repo, commit);
    let mut out = BTreeSet::from([
        ObjectName::new(checksum, ObjectType::Commit),
        ObjectName::new(commit.root_meta, ObjectType::DirMeta),
    ]);
    let mut pending = vec![commit.root_tree];
    while let Some(tree) = pending.pop() {
        if !out.insert(ObjectName::new(tree, ObjectType::DirTree)) {
            continue;
        }
        let tree = load_dirtree(repo, &tree);
        for file in tree.files {
            out.insert(ObjectName::new(file.checksum, ObjectType::File));
        }
        for dir in tree.dirs {
            out.insert(ObjectName::new(dir.meta, ObjectType::DirMeta));
            pending.push(dir.tree);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// An ostree-made repository as a value
// ---------------------------------------------------------------------------

/// An `ostree` archive repository made by the real tool: either in a temporary
/// directory of its own ([`OstreeRepo::init`]) or at a given path with one commit
/// and a summary ([`OstreeRepo::create`]).
pub struct OstreeRepo {
    pub path: PathBuf,
    pub collection_id: Option<String>,
    /// How many trees [`OstreeRepo::commit`] has made (each commit gets a new one).
    trees: std::cell::Cell<u32>,
    _dir: Option<tempfile::TempDir>,
}

impl OstreeRepo {
    /// `ostree init --mode=archive [--collection-id=ID]` in a temporary directory
    /// of its own (at `DIR/repo`), removed on drop.
    pub fn init(collection_id: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-ostree")
            .tempdir()
            .unwrap();
        let mut repo = Self::init_at(&dir.path().join("repo"), collection_id);
        repo._dir = Some(dir);
        repo
    }

    fn init_at(path: &Path, collection_id: Option<&str>) -> Self {
        let mut cmd = ostree(path);
        cmd.args(["init", "--mode=archive"]);
        if let Some(id) = collection_id {
            cmd.arg(format!("--collection-id={id}"));
        }
        cmd::run(&mut cmd);
        OstreeRepo {
            path: path.to_owned(),
            collection_id: collection_id.map(str::to_owned),
            trees: std::cell::Cell::new(0),
            _dir: None,
        }
    }

    /// `ostree init --mode=archive --collection-id=ID` at `path`, a commit of a
    /// small tree on `ref_name` (version 1.0), then `ostree summary -u`.
    pub fn create(path: &Path, collection_id: &str, ref_name: &str) -> Self {
        let repo = Self::init_at(path, Some(collection_id));
        repo.commit_version(ref_name, "1.0");
        repo
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `ostree --repo=THIS`.
    pub fn ostree(&self) -> Command {
        ostree(&self.path)
    }

    /// Commits a small fresh tree to `branch`; `extra` are more `ostree commit` args.
    pub fn commit(&self, branch: &str, extra: &[&str]) -> Checksum {
        let n = self.trees.get() + 1;
        self.trees.set(n);
        let tree = tempdir();
        fs::create_dir_all(tree.path().join("usr/share")).unwrap();
        fs::write(
            tree.path().join("usr/share/hello"),
            format!("tree {n} of {branch}\n"),
        )
        .unwrap();
        let out = cmd::run(
            self.ostree()
                .args(["commit", "-b", branch, "-s", &format!("commit {n}")])
                .arg(format!("--tree=dir={}", tree.path().display()))
                .args(extra),
        );
        out.trim()
            .parse()
            .expect("ostree commit prints the checksum")
    }

    /// A commit of a small tree with `version` on `ref_name`, then a new summary.
    pub fn commit_version(&self, ref_name: &str, version: &str) -> String {
        self.commit_at(ref_name, version, None)
    }

    /// As [`OstreeRepo::commit_version`], with the given timestamp (Unix seconds),
    /// or now.
    pub fn commit_at(&self, ref_name: &str, version: &str, timestamp: Option<u64>) -> String {
        let tree = tempdir();
        fs::write(
            tree.path().join("os-release"),
            format!("VERSION={version}\n"),
        )
        .unwrap();
        fs::create_dir(tree.path().join("usr")).unwrap();
        fs::write(tree.path().join("usr/data"), vec![7u8; 4096]).unwrap();
        cmd::run(
            self.ostree()
                .args(["commit", "-b", ref_name])
                .arg(format!("--tree=dir={}", tree.path().display()))
                .arg(format!("--add-metadata-string=version={version}"))
                .args(["-s", &format!("Version {version}")])
                .args(timestamp.map(|t| format!("--timestamp=@{t}"))),
        );
        self.update_summary();
        self.rev_parse(ref_name)
    }

    pub fn update_summary(&self) {
        cmd::run(self.ostree().args(["summary", "-u"]));
    }

    pub fn rev_parse(&self, ref_name: &str) -> String {
        cmd::run(self.ostree().args(["rev-parse", ref_name]))
            .trim()
            .to_owned()
    }

    /// `ostree.summary.last-modified` as `ostree summary --view` shows it.
    pub fn summary_last_modified(&self) -> u64 {
        let bytes = fs::read(self.path.join("summary")).expect("summary");
        ferry::repo::summary::Summary::parse(&bytes)
            .expect("summary parses")
            .last_modified
            .expect("summary has last-modified")
    }

    /// The timestamp of the commit `ref_name` points at, as Ferry parses it.
    pub fn commit_timestamp(&self, ref_name: &str) -> u64 {
        let checksum: Checksum = self.rev_parse(ref_name).parse().unwrap();
        Commit::parse(&self.commit_bytes(&checksum))
            .expect("commit parses")
            .timestamp
    }

    /// `ostree create-usb MOUNT COLLECTION REF`.
    pub fn create_usb(&self, mount: &Path, ref_name: &str) {
        let collection = self.collection_id.as_deref().expect("a collection id");
        cmd::run(
            self.ostree()
                .arg("create-usb")
                .arg(mount)
                .args([collection, ref_name]),
        );
    }

    /// `ostree gpg-sign REV KEY` with the key in `gpg`.
    pub fn gpg_sign(&self, rev: &str, gpg: &Gpg, key: &str) {
        gpg.ostree_sign(&self.path, rev, key);
    }

    pub fn object_path(&self, checksum: &Checksum, ext: &str) -> PathBuf {
        let hex = checksum.to_hex();
        self.path
            .join(format!("objects/{}/{}.{ext}", &hex[..2], &hex[2..]))
    }

    pub fn commit_bytes(&self, checksum: &Checksum) -> Vec<u8> {
        fs::read(self.object_path(checksum, "commit")).unwrap()
    }

    pub fn commitmeta_bytes(&self, checksum: &Checksum) -> Option<Vec<u8>> {
        fs::read(self.object_path(checksum, "commitmeta")).ok()
    }

    pub fn commitmeta(&self, checksum: &Checksum) -> Option<Variant> {
        self.commitmeta_bytes(checksum)
            .map(|b| ferry::trust::parse_detached_metadata(&b).expect("valid .commitmeta"))
    }

    pub fn write_commitmeta(&self, checksum: &Checksum, meta: &Variant) {
        fs::write(self.object_path(checksum, "commitmeta"), meta.data()).unwrap();
    }
}
