//! Bad input is refused with one clear sentence and leaves the repository as it was.

use super::*;

/// A source with a good first commit that Ferry already pulled.
struct BadInput {
    tmp: tempfile::TempDir,
    tree: PathBuf,
    src: PathBuf,
    ferry: PathBuf,
    commit1: String,
}

impl BadInput {
    fn new() -> Self {
        let tmp = tempdir();
        let tree = tmp.path().join("tree");
        let src = tmp.path().join("src");
        let ferry = tmp.path().join("ferry");
        make_dir(&tree, 0o755);
        write_file(&tree.join("big.txt"), &text(1, 256 * 1024), 0o644);
        write_file(&tree.join("a/x.txt"), &text(2, 10_000), 0o644);
        write_file(&tree.join("b/c/y.txt"), &text(3, 10_000), 0o644);
        make_symlink("big.txt", &tree.join("link"));
        ostree_init(&src);
        let commit1 = ostree_commit(&src, REF, &tree, &["-s", "good"]);
        ferry_init_unverified(&ferry);
        ferry_pull(&ferry, &src, REF);
        BadInput {
            tmp,
            tree,
            src,
            ferry,
            commit1,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A second, good commit that changes every file; returns it.
    fn second_commit(&self) -> String {
        write_file(&self.tree.join("big.txt"), &text(11, 256 * 1024), 0o644);
        write_file(&self.tree.join("a/x.txt"), &text(12, 10_000), 0o644);
        write_file(&self.tree.join("b/c/y.txt"), &text(13, 10_000), 0o644);
        ostree_commit(&self.src, REF, &self.tree, &["-s", "second"])
    }

    /// A commit on top of the first one with `root` as its tree, made with Ferry's
    /// library and with the first commit's metadata (so its bindings are right);
    /// `refs/heads/os/stable` of `repo` is moved to it.
    fn crafted_commit(&self, repo: &Path, root: Checksum) -> Checksum {
        let first = load_commit(&self.src, &self.commit1);
        let commit = put_commit(
            repo,
            &Commit {
                parent: Some(self.commit1.parse().unwrap()),
                subject: "crafted".into(),
                timestamp: first.timestamp + 60,
                root_tree: root,
                ..first.clone()
            },
        );
        write_ref_file(repo, &format!("refs/heads/{REF}"), &commit.to_hex());
        commit
    }

    /// The first commit's root dirmeta.
    fn root_meta(&self) -> Checksum {
        load_commit(&self.src, &self.commit1).root_meta
    }

    /// A file object of the first commit.
    fn some_file(&self) -> Checksum {
        let root = load_commit(&self.src, &self.commit1).root_tree;
        load_dirtree(&self.src, &root).files[0].checksum
    }

    /// Pulls and asserts the pull failed with one sentence naming one of `needles`,
    /// the ref did not move and the repository is still valid.
    fn assert_pull_refused(&self, needles: &[String]) -> String {
        let out = ferry_pull_fails(&self.ferry, &self.src, REF);
        let sentence = out.error_sentence();
        eprintln!("refused: {sentence}");
        assert!(
            needles.iter().any(|n| sentence.contains(n.as_str())),
            "the error does not say what was wrong (expected one of {needles:?}): {sentence}"
        );
        assert_eq!(
            origin_ref(&self.ferry).as_deref(),
            Some(self.commit1.as_str())
        );
        assert_ostree_fsck(&self.ferry);
        sentence
    }
}

/// `len` bytes of compressible text, different for each seed.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i} of file {seed}: {}\n", i * seed % 9973).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// The file object named `name` in the root tree of `commit` in `repo`.
fn file_in_root(repo: &Path, commit: &str, name: &str) -> Checksum {
    let root = load_commit(repo, commit).root_tree;
    load_dirtree(repo, &root)
        .files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {commit}"))
        .checksum
}

/// The ways a name can be quoted in an error.
fn quoted(name: &str) -> Vec<String> {
    vec![
        format!("“{name}”"),
        format!("\"{name}\""),
        format!("'{name}'"),
        format!("‘{name}’"),
        format!("`{name}`"),
    ]
}

#[test]
fn bad_input_truncated_filez_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    let path = object_path(&f.src, &big, ObjectType::File);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // Truncated to within its header.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(6)
        .unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
}

#[test]
fn bad_input_bit_flipped_filez_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    let path = object_path(&f.src, &big, ObjectType::File);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // A flipped bit in the header (the mode) changes the checksum as well.
    bytes[middle] ^= 0x10;
    let header_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[8 + header_len / 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
}

#[test]
fn bad_input_metadata_not_matching_its_name_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let root = load_commit(&f.src, &commit2).root_tree;
    let a = load_dirtree(&f.src, &root)
        .dirs
        .iter()
        .find(|d| d.name == "a")
        .unwrap()
        .tree;
    let root_path = object_path(&f.src, &root, ObjectType::DirTree);
    let a_path = object_path(&f.src, &a, ObjectType::DirTree);
    let (root_bytes, a_bytes) = (fs::read(&root_path).unwrap(), fs::read(&a_path).unwrap());
    fs::write(&root_path, &a_bytes).unwrap();
    fs::write(&a_path, &root_bytes).unwrap();
    f.assert_pull_refused(&[root.to_hex(), a.to_hex()]);
}

#[test]
fn bad_input_unsafe_names_are_refused_by_pull() {
    let f = BadInput::new();
    let file = f.some_file();
    let meta = f.root_meta();
    let empty_tree = put_dirtree(&f.src, &DirTree::default());
    for bad in [".", "..", "a/b", "../escape", "/abs"] {
        // As a file name …
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![DirTreeFile {
                    name: bad.into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        );
        f.crafted_commit(&f.src, root);
        f.assert_pull_refused(&quoted(bad));
        // … and as a directory name.
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![],
                dirs: vec![DirTreeDir {
                    name: bad.into(),
                    tree: empty_tree,
                    meta,
                }],
            },
        );
        f.crafted_commit(&f.src, root);
        f.assert_pull_refused(&quoted(bad));
    }
}

/// A root tree holding a symlink `x` to `outside` and a directory `x` with a file
/// `pwned`: checked out naively, `x/pwned` lands in `outside`.
fn put_symlink_dir_clash(repo: &Path, outside: &Path, meta: Checksum) -> Checksum {
    let link = put_symlink(repo, &outside.display().to_string());
    let pwned = put_file(repo, b"pwned\n", 0o644);
    let sub = put_dirtree(
        repo,
        &DirTree {
            files: vec![DirTreeFile {
                name: "pwned".into(),
                checksum: pwned,
            }],
            dirs: vec![],
        },
    );
    put_dirtree(
        repo,
        &DirTree {
            files: vec![DirTreeFile {
                name: "x".into(),
                checksum: link,
            }],
            dirs: vec![DirTreeDir {
                name: "x".into(),
                tree: sub,
                meta,
            }],
        },
    )
}

#[test]
fn bad_input_file_and_directory_of_the_same_name_is_refused_by_pull() {
    let f = BadInput::new();
    let outside = f.path("outside");
    make_dir(&outside, 0o755);
    let root = put_symlink_dir_clash(&f.src, &outside, f.root_meta());
    f.crafted_commit(&f.src, root);
    f.assert_pull_refused(&quoted("x"));
    assert_eq!(list_all(&outside), Vec::<PathBuf>::new());
}

#[test]
fn checkout_refuses_trees_that_escape_the_target() {
    let f = BadInput::new();
    let outside = f.path("outside");
    make_dir(&outside, 0o755);
    let meta = f.root_meta();
    let file = f.some_file();
    let mut cases = vec![("clash", put_symlink_dir_clash(&f.ferry, &outside, meta))];
    // A directory named `..` holding `pwned`.
    let pwned = put_file(&f.ferry, b"pwned\n", 0o644);
    let sub = put_dirtree(
        &f.ferry,
        &DirTree {
            files: vec![DirTreeFile {
                name: "pwned".into(),
                checksum: pwned,
            }],
            dirs: vec![],
        },
    );
    // `..`, a relative escape, and an absolute name pointing into `outside` (never
    // anywhere real, in case a checkout does follow it).
    let absolute = outside.join("absolute").display().to_string();
    for bad in ["..", "../outside", &absolute] {
        cases.push((
            if bad == absolute { "absolute" } else { bad },
            put_dirtree(
                &f.ferry,
                &DirTree {
                    files: vec![],
                    dirs: vec![DirTreeDir {
                        name: bad.into(),
                        tree: sub,
                        meta,
                    }],
                },
            ),
        ));
    }
    cases.push((
        "file ..",
        put_dirtree(
            &f.ferry,
            &DirTree {
                files: vec![DirTreeFile {
                    name: "../pwned".into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        ),
    ));
    for (i, (what, root)) in cases.into_iter().enumerate() {
        let first = load_commit(&f.ferry, &f.commit1);
        let commit = put_commit(
            &f.ferry,
            &Commit {
                root_tree: root,
                subject: format!("evil {what}"),
                ..first
            },
        );
        write_ref_file(&f.ferry, "refs/remotes/origin/evil", &commit.to_hex());
        let parent = f.path(&format!("checkouts-{i}"));
        make_dir(&parent, 0o755);
        let dest = parent.join("dest");
        for rev in ["origin:evil".to_owned(), commit.to_hex()] {
            let out = run(ferryctl(&f.ferry).arg("checkout").arg(&rev).arg(&dest));
            assert_eq!(
                list_all(&outside),
                Vec::<PathBuf>::new(),
                "{what}: wrote outside"
            );
            let escaped: Vec<_> = list_all(&parent)
                .into_iter()
                .filter(|p| !p.starts_with(&dest))
                .collect();
            assert_eq!(
                escaped,
                Vec::<PathBuf>::new(),
                "{what}: wrote next to the target"
            );
            assert!(
                !list_all(&dest).iter().any(|p| p.ends_with("pwned")),
                "{what}: checked out"
            );
            let sentence = out.failed().error_sentence();
            eprintln!("checkout {what}: {sentence}");
            let _ = fs::remove_dir_all(&dest);
        }
    }
    // The good commit still checks out.
    let good = f.path("good");
    run_ok(
        ferryctl(&f.ferry)
            .args(["checkout", "origin:os/stable"])
            .arg(&good),
    );
    assert_same_tree(&f.tree, &good);
}

#[test]
fn bad_input_garbage_summary_is_an_error() {
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    let tree = tmp.path().join("tree");
    make_rich_tree(&tree, 10);
    ostree_init(&repo);
    let commit = ostree_commit(&repo, REF, &tree, &[]);
    run_ok(ostree(&repo).args(["summary", "-u"]));
    let good = fs::read(repo.join("summary")).unwrap();
    assert!(Summary::load(&repo).unwrap().is_some());

    let commit_bytes = read_object(&repo, &commit.parse().unwrap(), ObjectType::Commit);
    let mut flipped = good.clone();
    // The framing offsets live at the end: break one.
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"this is not a summary\n".to_vec()),
        ("random", random_bytes(3, 4096)),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("a commit", commit_bytes),
        ("bad offsets", flipped),
    ];
    for (what, bytes) in garbage {
        assert!(
            Summary::parse(&bytes).is_err(),
            "{what} parsed as a summary"
        );
        fs::write(repo.join("summary"), &bytes).unwrap();
        assert!(Summary::load(&repo).is_err(), "{what} loaded as a summary");
    }
    // Well-formed GVariant, but a 31-byte checksum.
    let entry = Variant::tuple_from_iter([
        "os/short".to_variant(),
        Variant::tuple_from_iter([
            182u64.to_variant(),
            Variant::array_from_fixed_array(&[7u8; 31]),
            VariantDict::new(None).end(),
        ]),
    ]);
    let refs =
        Variant::array_from_iter_with_type(VariantTy::new("(s(taya{sv}))").unwrap(), [entry]);
    let bad = Variant::tuple_from_iter([refs, VariantDict::new(None).end()]);
    assert!(Summary::parse(bad.data()).is_err());
}

#[test]
fn bad_input_junk_ref_is_reported_with_its_file() {
    let f = BadInput::new();
    let ref_file = f.ferry.join(format!("refs/remotes/origin/{REF}"));
    for junk in [
        "not a checksum\n",
        "",
        &"A".repeat(64),
        &format!("{}\n\n", f.commit1),
    ] {
        fs::write(&ref_file, junk).unwrap();
        for json in [false, true] {
            let mut cmd = ferryctl(&f.ferry);
            if json {
                cmd.arg("--json");
            }
            let out = run(cmd.arg("refs")).failed();
            let sentence = out.error_sentence();
            assert!(
                sentence.contains(&ref_file.display().to_string())
                    || sentence.contains(&format!("refs/remotes/origin/{REF}")),
                "{junk:?}: the error does not name the ref file: {sentence}"
            );
        }
    }
    fs::write(&ref_file, format!("{}\n", f.commit1)).unwrap();
    run_ok(ferryctl(&f.ferry).arg("refs"));
}

/// Objects that are well named but describe something a checkout must never
/// create, or that are not what their type says.
#[test]
fn bad_input_special_files_and_bad_dirmeta_are_refused() {
    let f = BadInput::new();
    let header = |mode: u32, rdev: u32, target: &str, size: u64| ferry::repo::filez::FileHeader {
        size,
        uid: 0,
        gid: 0,
        mode,
        rdev,
        symlink_target: target.into(),
        xattrs: vec![],
    };
    let put_raw = |h: ferry::repo::filez::FileHeader, content: &[u8]| {
        let mut bytes = Vec::new();
        let checksum = write_filez(&h, &mut &content[..], &mut bytes).unwrap();
        put_object(&f.src, &checksum, ObjectType::File, &bytes);
        checksum
    };
    let cases = [
        (
            "character device",
            put_raw(header(libc::S_IFCHR | 0o666, 0x0103, "", 0), b""),
        ),
        (
            "fifo",
            put_raw(header(libc::S_IFIFO | 0o644, 0, "", 0), b""),
        ),
        (
            "setuid device",
            put_raw(header(libc::S_IFBLK | 0o4666, 0x0801, "", 0), b""),
        ),
        (
            "symlink without target",
            put_raw(header(libc::S_IFLNK | 0o777, 0, "", 0), b""),
        ),
        (
            "regular file with a target",
            put_raw(header(libc::S_IFREG | 0o644, 0, "/etc/passwd", 3), b"abc"),
        ),
    ];
    for (what, file) in cases {
        let root = put_dirtree(
            &f.src,
            &DirTree {
                files: vec![DirTreeFile {
                    name: "special".into(),
                    checksum: file,
                }],
                dirs: vec![],
            },
        );
        f.crafted_commit(&f.src, root);
        eprintln!("{what}:");
        f.assert_pull_refused(&[file.to_hex()]);
    }
    // A directory whose dirmeta says it is a regular file.
    let not_a_dir = put_dirmeta(
        &f.src,
        &DirMeta {
            mode: libc::S_IFREG | 0o755,
            ..dir_meta_0755()
        },
    );
    let empty = put_dirtree(&f.src, &DirTree::default());
    let root = put_dirtree(
        &f.src,
        &DirTree {
            files: vec![],
            dirs: vec![DirTreeDir {
                name: "d".into(),
                tree: empty,
                meta: not_a_dir,
            }],
        },
    );
    f.crafted_commit(&f.src, root);
    f.assert_pull_refused(&[not_a_dir.to_hex(), "dirmeta".into()]);
    // The root dirmeta itself.
    let first = load_commit(&f.src, &f.commit1);
    let commit = put_commit(
        &f.src,
        &Commit {
            root_meta: not_a_dir,
            timestamp: first.timestamp + 60,
            parent: Some(f.commit1.parse().unwrap()),
            ..first.clone()
        },
    );
    write_ref_file(&f.src, &format!("refs/heads/{REF}"), &commit.to_hex());
    f.assert_pull_refused(&[not_a_dir.to_hex(), "dirmeta".into()]);
}

#[test]
fn bad_input_missing_object_is_refused() {
    let f = BadInput::new();
    let commit2 = f.second_commit();
    let big = file_in_root(&f.src, &commit2, "big.txt");
    fs::remove_file(object_path(&f.src, &big, ObjectType::File)).unwrap();
    f.assert_pull_refused(&[big.to_hex()]);
    // A missing dirtree.
    let root = load_commit(&f.src, &commit2).root_tree;
    fs::remove_file(object_path(&f.src, &root, ObjectType::DirTree)).unwrap();
    f.assert_pull_refused(&[root.to_hex()]);
}
