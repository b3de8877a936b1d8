//! Static deltas made by the real `ostree static-delta generate`, applied by
//! `ferryctl apply-delta` (as `ostree static-delta apply-offline`): every kind
//! `ostree` writes gives the same tree, and a corrupt or unusable delta is refused
//! with nothing stored.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::*;

/// An archive upstream with v1 and v2 of a tree made of real files (this
/// machine's shared libraries and documentation) and the awkward cases, where
/// v2 changes as a rebuild does: a library edited in place (bsdiff material),
/// a file rewritten, one added, one removed, one made executable.
struct Versions {
    dir: tempfile::TempDir,
    up: PathBuf,
    v1: String,
    v2: String,
}

fn real_file(pattern_dir: &str, prefix: &str) -> PathBuf {
    fs::read_dir(pattern_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                && !p.is_symlink()
                && p.is_file()
        })
        .max()
        .unwrap_or_else(|| panic!("no {prefix}* in {pattern_dir}"))
}

impl Versions {
    fn new() -> Self {
        let dir = tempdir();
        let up = dir.path().join("up");
        ostree_init(&up);
        let tree = dir.path().join("tree");
        make_rich_tree(&tree, 300_000);
        let lib = real_file("/usr/lib/x86_64-linux-gnu", "libgio-2.0.so");
        fs::copy(&lib, tree.join("libgio.so")).unwrap();
        fs::copy(
            real_file("/usr/lib/x86_64-linux-gnu", "libglib-2.0.so"),
            tree.join("libglib.so"),
        )
        .unwrap();
        copy_tree(
            Path::new("/usr/share/doc/coreutils"),
            &tree.join("doc-coreutils"),
        );
        let v1 = ostree_commit(&up, REF, &tree, &["-s", "v1"]);

        // A rebuild: a few bytes of the library change in place.
        let mut bytes = fs::read(tree.join("libgio.so")).unwrap();
        for at in (4096..bytes.len()).step_by(65_536) {
            bytes[at] = bytes[at].wrapping_add(1);
        }
        fs::write(tree.join("libgio.so"), bytes).unwrap();
        write_file(&tree.join("small.txt"), b"hello again, ferry\n", 0o644);
        write_random_file(&tree.join("added.bin"), 7, 50_000, 0o644);
        fs::remove_file(tree.join("dup-2")).unwrap();
        write_file(&tree.join("bin/secret"), b"secret\n", 0o700);
        let v2 = ostree_commit(&up, REF, &tree, &["-s", "v2"]);
        Self { dir, up, v1, v2 }
    }

    /// `ostree static-delta generate ARGS`, written to a directory of its own
    /// (`--filename=DIR/superblock`, as onto a stick); returns the directory and
    /// ostree's report (which it prints on stderr).
    fn delta(&self, name: &str, args: &[&str]) -> (PathBuf, String) {
        let out = self.dir.path().join(name);
        fs::create_dir(&out).unwrap();
        let run = run_ok(
            ostree(&self.up)
                .args(["static-delta", "generate"])
                .args(args)
                .arg(format!("--filename={}", out.join("superblock").display())),
        );
        (out, run.stderr)
    }

    /// An archive client holding `commits` (pulled by `ostree pull-local`).
    fn client(&self, name: &str, commits: &[&str]) -> PathBuf {
        self.client_in_mode(name, "archive", commits)
    }

    /// A client of repository `mode` holding `commits`.
    fn client_in_mode(&self, name: &str, mode: &str, commits: &[&str]) -> PathBuf {
        let repo = self.dir.path().join(name);
        run_ok(ostree(&repo).arg("init").arg(format!("--mode={mode}")));
        for commit in commits {
            run_ok(
                ostree(&repo)
                    .args(["pull-local", "--untrusted"])
                    .arg(&self.up)
                    .arg(commit),
            );
        }
        repo
    }

    /// Asserts `repo` holds v2 whole: both fscks pass and its checkout equals
    /// the upstream's.
    fn assert_holds_v2(&self, repo: &Path, name: &str) {
        assert_ostree_fsck(repo);
        run_ok(ferryctl(repo).arg("fsck"));
        let expected = self.dir.path().join(format!("{name}-expected"));
        let actual = self.dir.path().join(format!("{name}-actual"));
        ostree_checkout(&self.up, &self.v2, &expected);
        ostree_checkout(repo, &self.v2, &actual);
        assert_same_tree(&expected, &actual);
    }
}

fn apply(repo: &Path, delta: &Path) -> serde_json::Value {
    let run = run_ok(ferryctl(repo).args(["--json", "apply-delta"]).arg(delta));
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn apply_fails(repo: &Path, delta: &Path) -> String {
    let run = run(ferryctl(repo).arg("apply-delta").arg(delta));
    assert!(!run.success, "apply-delta succeeded:\n{}", run.stdout);
    run.stderr
}

#[test]
fn deltas_made_by_ostree_apply_to_the_same_tree() {
    let v = Versions::new();
    let from = format!("--from={}", v.v1);
    let to = format!("--to={}", v.v2);

    // From v1 to v2: xz parts of at most 1 MiB, bsdiff for the library.
    let (delta, made) = v.delta(
        "v1-v2",
        &[&from, &to, "--max-chunk-size=1", "--min-fallback-size=0"],
    );
    assert!(
        made.lines()
            .any(|l| l.starts_with("bsdiff=") && !l.starts_with("bsdiff=0")),
        "ostree made no bsdiff: {made}"
    );
    let client = v.client("client-v1", &[&v.v1]);
    let report = apply(&client, &delta);
    assert_eq!(report["commit"], v.v2.as_str(), "{report}");
    assert!(report["parts-applied"].as_u64().unwrap() >= 1, "{report}");
    v.assert_holds_v2(&client, "v1-v2");
    // No ref moved: applying a delta only stores.
    assert_eq!(rev_parse(&client, REF), None);

    // The same delta into a bare-user repository: objects written in its format,
    // the old files bsdiff reads taken from it.
    let client = v.client_in_mode("client-bare-user", "bare-user", &[&v.v1]);
    let report = apply(&client, &delta);
    assert_eq!(report["commit"], v.v2.as_str(), "{report}");
    v.assert_holds_v2(&client, "bare-user");

    // From scratch, parts inline in the superblock.
    let (delta, _) = v.delta(
        "inline",
        &["--empty", &to, "--inline", "--min-fallback-size=0"],
    );
    assert_eq!(
        fs::read_dir(&delta).unwrap().count(),
        1,
        "inline parts only"
    );
    let client = v.client("client-inline", &[]);
    apply(&client, &delta);
    v.assert_holds_v2(&client, "inline");

    // From scratch, made on a big-endian machine (sizes byte-swapped), no bsdiff,
    // several parts.
    let (delta, _) = v.delta(
        "big-endian",
        &[
            "--empty",
            &to,
            "--set-endianness=B",
            "--disable-bsdiff",
            "--max-chunk-size=1",
            "--min-fallback-size=0",
        ],
    );
    let client = v.client("client-be", &[]);
    // Named by its superblock file this time.
    let report = apply(&client, &delta.join("superblock"));
    assert!(report["parts-applied"].as_u64().unwrap() >= 2, "{report}");
    v.assert_holds_v2(&client, "big-endian");

    // Applying again finds nothing new.
    let report = apply(&client, &delta);
    assert_eq!(report["objects"], 0, "{report}");
    assert_eq!(report["parts-applied"], 0, "{report}");
}

/// Asserts that `apply-delta` fails naming `expected`, and leaves the client's
/// objects as they were and no v2 commit.
fn assert_refused_and_nothing_stored(v: &Versions, client: &Path, delta: &Path, expected: &str) {
    let before = object_files(client);
    let stderr = apply_fails(client, delta);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert_eq!(object_files(client), before, "objects changed");
    let commit = object_path(client, &checksum(&v.v2), ObjectType::Commit);
    assert!(!commit.exists(), "{} was stored", commit.display());
    assert_ostree_fsck(client);
}

#[test]
fn corrupt_or_unusable_deltas_are_refused_and_nothing_is_stored() {
    let v = Versions::new();
    let from = format!("--from={}", v.v1);
    let to = format!("--to={}", v.v2);
    let (delta, _) = v.delta(
        "v1-v2",
        &[&from, &to, "--max-chunk-size=1", "--min-fallback-size=0"],
    );
    let client = v.client("client", &[&v.v1]);

    // A flipped byte in a part: its checksum no longer matches.
    let corrupt = v.dir.path().join("corrupt");
    copy_tree(&delta, &corrupt);
    let part = corrupt.join("0");
    let mut bytes = fs::read(&part).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&part, bytes).unwrap();
    assert_refused_and_nothing_stored(&v, &client, &corrupt, "does not match its checksum");

    // A part whose checksum is right but whose objects are not what it lists: its
    // data changed and the superblock re-made to match (as a lying mirror could).
    let lying = v.dir.path().join("lying");
    copy_tree(&delta, &lying);
    rewrite_part_data(&lying, 0);
    assert_refused_and_nothing_stored(&v, &client, &lying, "but its content hashes to");

    // A delta from a commit the client does not hold.
    let empty = v.client("empty", &[]);
    assert_refused_and_nothing_stored(&v, &empty, &delta, "does not hold in full");

    // A superblock whose commit is not the one it names.
    let wrong = v.dir.path().join("wrong");
    copy_tree(&delta, &wrong);
    let (superblock, _) = superblock_of(&wrong);
    let mut children: Vec<Variant> = superblock.iter().collect();
    children[3] = Variant::array_from_fixed_array(checksum(&v.v1).as_bytes());
    write_superblock(&wrong, &Variant::tuple_from_iter(children));
    assert_refused_and_nothing_stored(&v, &client, &wrong, "its commit hashes to");

    // The untouched delta still applies after all that.
    apply(&client, &delta);
    v.assert_holds_v2(&client, "after-refusals");
}

fn checksum(hex: &str) -> Checksum {
    hex.parse().unwrap()
}

const SUPERBLOCK_TYPE: &str = "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))";
const PART_TYPE: &str = "(a(uuu)aa(ayay)ayay)";

fn superblock_of(delta: &Path) -> (Variant, PathBuf) {
    let path = delta.join("superblock");
    let bytes = fs::read(&path).unwrap();
    let v = Variant::from_bytes_with_type(
        &glib::Bytes::from_owned(bytes),
        VariantTy::new(SUPERBLOCK_TYPE).unwrap(),
    );
    (v.normal_form(), path)
}

fn write_superblock(delta: &Path, superblock: &Variant) {
    fs::write(delta.join("superblock"), superblock.data()).unwrap();
}

/// Changes one byte of part `index`'s raw data, stores the part uncompressed and
/// gives the superblock the part's new checksum and size.
fn rewrite_part_data(delta: &Path, index: usize) {
    let file = fs::read(delta.join(index.to_string())).unwrap();
    assert_eq!(file[0], b'x', "ostree compresses parts with xz");
    let mut payload = Vec::new();
    xz2::read::XzDecoder::new(&file[1..])
        .read_to_end(&mut payload)
        .unwrap();
    let part = Variant::from_bytes_with_type(
        &glib::Bytes::from_owned(payload),
        VariantTy::new(PART_TYPE).unwrap(),
    )
    .normal_form();
    let mut children: Vec<Variant> = part.iter().collect();
    let mut data = children[2].data().to_vec();
    let middle = data.len() / 2;
    data[middle] ^= 0x40;
    children[2] = Variant::array_from_fixed_array(&data);
    let mut new_file = vec![0u8];
    new_file.extend_from_slice(Variant::tuple_from_iter(children).data());
    fs::write(delta.join(index.to_string()), &new_file).unwrap();

    let (superblock, _) = superblock_of(delta);
    let mut fields: Vec<Variant> = superblock.iter().collect();
    let headers: Vec<Variant> = fields[6]
        .iter()
        .enumerate()
        .map(|(i, header)| {
            if i != index {
                return header;
            }
            let mut h: Vec<Variant> = header.iter().collect();
            let checksum: [u8; 32] = sha2::Sha256::digest(&new_file).into();
            h[1] = Variant::array_from_fixed_array(&checksum);
            h[2] = (new_file.len() as u64).to_variant();
            Variant::tuple_from_iter(h)
        })
        .collect();
    fields[6] = Variant::array_from_iter_with_type(VariantTy::new("(uayttay)").unwrap(), headers);
    write_superblock(delta, &Variant::tuple_from_iter(fields));
}
