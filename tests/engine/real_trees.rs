//! Real trees on every transport (issue 11, items 1–2): a tree with a directory
//! of 25,000 entries (a 1.9 MB dirtree, larger than any body Ferry keeps in
//! memory) and this machine's own `/usr/share/man` (Debian's: 21,000 files, a
//! 17,965-entry `man1`, thousands of symlinks), committed by the real `ostree`,
//! then pulled by `ferryctl update` over HTTP, from a loop-mounted drive written
//! by `ostree create-usb`, and from a nearby Ferry (`ferryctl serve`) given as a
//! static source — the code path of every LAN peer. Each result passes
//! `ostree fsck`, and `ostree checkout` of it equals the original tree: names,
//! types, modes, owners, symlink targets and contents.
//!
//! Network safety: every `ferryctl` runs with `FERRY_LAN_INTERFACES=none`,
//! `--no-lan --no-mounts`; every server binds 127.0.0.1 only.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::engine::*;
use crate::common::share::Server as FerryServer;

/// A signed upstream repository holding `tree` as `os/stable`.
struct SignedUpstream {
    dir: tempfile::TempDir,
    repo: PathBuf,
    commit: String,
    key: PathBuf,
    _gpg: Gpg,
}

impl SignedUpstream {
    fn commit(tree: &Path) -> Self {
        let dir = tempdir();
        let repo = dir.path().join("repo");
        ostree_init(&repo);
        let started = Instant::now();
        let commit = ostree_commit_with_sizes(&repo, tree);
        eprintln!(
            "ostree commit of {} took {:?}",
            tree.display(),
            started.elapsed()
        );
        let gpg = Gpg::new();
        let fingerprint = gpg.gen_key("real-trees@example.org", "ed25519", "sign", "never");
        gpg.ostree_sign(&repo, &commit, &fingerprint);
        ostree_summary(&repo);
        let key = dir.path().join("key.gpg");
        gpg.export_to("real-trees@example.org", false, &key);
        Self {
            dir,
            repo,
            commit,
            key,
            _gpg: gpg,
        }
    }

    fn client(&self, url: &str) -> Client {
        Client::new(url, Trust::Gpg(&self.key))
    }

    /// MiB the repository takes, for sizing a drive.
    fn size_mib(&self) -> u64 {
        let out = stdout_of(Command::new("du").arg("-sm").arg(&self.repo));
        out.split_whitespace().next().unwrap().parse().unwrap()
    }
}

/// `ferryctl --repo REPO --json serve --port 0 --address 127.0.0.1`, killed on drop.
struct Peer {
    _server: FerryServer,
    url: String,
}

impl Peer {
    fn serve(client: &Client) -> Self {
        let mut cmd = client.ferryctl();
        cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"]);
        let server = FerryServer::spawn(cmd);
        let url = server.serving["urls"][0].as_str().expect("urls").to_owned();
        Peer {
            _server: server,
            url,
        }
    }
}

/// One line per entry below `root`: path, type, mode, owner, symlink target, size.
fn listing(root: &Path) -> Vec<String> {
    let out = stdout_of(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-printf",
        "%P\\t%y\\t%m\\t%U:%G\\t%l\\t%s\\n",
    ]));
    let mut lines: Vec<String> = out
        .lines()
        .map(|line| {
            // A directory's size is the file system's business, not the tree's.
            let fields: Vec<&str> = line.split('\t').collect();
            if fields[1] == "d" {
                fields[..5].join("\t")
            } else {
                line.to_owned()
            }
        })
        .collect();
    lines.sort();
    lines
}

/// `ostree checkout` of the client's ref equals `tree`, entry for entry and byte
/// for byte.
fn assert_checkout_equals(client: &Client, tree: &Path) {
    let dest = tempdir();
    let out = dest.path().join("co");
    run_ok(
        ostree(&client.repo)
            .arg("checkout")
            .arg(format!("origin:{REF}"))
            .arg(&out),
    );
    let (want, got) = (listing(tree), listing(&out));
    if want != got {
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
        panic!(
            "checkout differs from {}: {} vs {} entries; missing {missing:?}; extra {extra:?}",
            tree.display(),
            want.len(),
            got.len()
        );
    }
    run_ok(
        Command::new("diff")
            .args(["-r", "--no-dereference", "-q"])
            .arg(tree)
            .arg(&out),
    );
}

/// Pulls `up` over HTTP, from a drive and from a peer; checks every result.
fn pull_on_every_transport(up: &SignedUpstream, tree: &Path) {
    // Over HTTP, as from the internet.
    let server = Server::start(&up.repo, ServeOptions::default());
    let over_http = up.client(&server.url());
    let started = Instant::now();
    let run = over_http.update(&[], &[]).ok();
    eprintln!("HTTP pull took {:?}", started.elapsed());
    assert_eq!(run.plan_sources(), vec!["upstream:origin".to_owned()]);
    assert!(run.dropped().is_empty(), "{:?}", run.dropped());
    over_http.assert_at(&up.commit);
    assert_checkout_equals(&over_http, tree);
    drop(server);

    // From a drive that `ostree create-usb` wrote; the upstream is unreachable.
    let unreachable = format!("http://127.0.0.1:{}", refused_port());
    let drive = LoopDrive::builder("REALTREE")
        .size_mib(up.size_mib() * 3 / 2 + 64)
        .build();
    drive.mount();
    run_ok(
        ostree(&up.repo)
            .arg("create-usb")
            .arg(&drive.mount_point)
            .args([COLLECTION, REF]),
    );
    let sideload = up.dir.path().join("sideload");
    fs::create_dir(&sideload).unwrap();
    symlink(&drive.mount_point, sideload.join("stick")).unwrap();
    let from_drive = up.client(&unreachable);
    let started = Instant::now();
    let run = from_drive
        .update(&["--sideload-dir", sideload.to_str().unwrap()], &[])
        .ok();
    eprintln!("drive pull took {:?}", started.elapsed());
    let served_by: Vec<String> = run.counts().into_keys().collect();
    assert!(
        served_by.len() == 1 && served_by[0].starts_with("usb:"),
        "{served_by:?}"
    );
    from_drive.assert_at(&up.commit);
    assert_checkout_equals(&from_drive, tree);

    // From a nearby Ferry serving what it pulled over HTTP.
    let peer = Peer::serve(&over_http);
    let from_peer = up.client(&unreachable);
    let started = Instant::now();
    let run = from_peer.update(&["--static-source", &peer.url], &[]).ok();
    eprintln!("peer pull took {:?}", started.elapsed());
    let served_by: Vec<String> = run.counts().into_keys().collect();
    assert!(
        served_by.len() == 1 && served_by[0].starts_with("static:"),
        "{served_by:?}"
    );
    from_peer.assert_at(&up.commit);
    assert_checkout_equals(&from_peer, tree);
}

/// The size of the largest dirtree object in `repo`.
fn largest_dirtree(repo: &Path) -> u64 {
    let mut largest = 0;
    for prefix in fs::read_dir(repo.join("objects")).unwrap().flatten() {
        for object in fs::read_dir(prefix.path()).unwrap().flatten() {
            if object.path().extension().is_some_and(|e| e == "dirtree") {
                largest = largest.max(object.metadata().unwrap().len());
            }
        }
    }
    largest
}

#[test]
fn directory_of_25000_entries_pulls_from_every_transport() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    let wide = tree.join("usr/share/wide");
    fs::create_dir_all(&wide).unwrap();
    // A few contents shared by hard links: many names, few objects, as in a real
    // `man1` full of aliases.
    let contents: Vec<PathBuf> = (0..8)
        .map(|i| {
            let path = tree.join(format!("content-{i}"));
            fs::write(&path, pseudo_random(i, 3000 + i as usize * 100)).unwrap();
            path
        })
        .collect();
    for i in 0..25_000 {
        let name = format!("a-rather-long-manual-page-name-like-in-man1-{i:05}.1.gz");
        fs::hard_link(&contents[i % contents.len()], wide.join(name)).unwrap();
    }
    let up = SignedUpstream::commit(&tree);
    let dirtree = largest_dirtree(&up.repo);
    assert!(
        dirtree > 1024 * 1024,
        "the test needs a dirtree over 1 MiB, got {dirtree} bytes"
    );
    pull_on_every_transport(&up, &tree);
}

#[test]
fn this_machines_usr_share_man_pulls_from_every_transport() {
    let tree = Path::new("/usr/share/man");
    let files = stdout_of(Command::new("find").arg(tree).args(["-type", "f"]))
        .lines()
        .count();
    let links = stdout_of(Command::new("find").arg(tree).args(["-type", "l"]))
        .lines()
        .count();
    // The shapes this test is for; a machine without manuals cannot run it.
    assert!(
        files > 5_000 && links > 500,
        "{} has {files} files and {links} symlinks: install manual pages (man-db, manpages)",
        tree.display()
    );
    let up = SignedUpstream::commit(tree);
    pull_on_every_transport(&up, tree);
}
