//! Serving a bare repository as if it were archive (issue 13 item 3): `ferryctl
//! serve` answers `.filez` requests of a `bare` or `bare-user` repository with
//! objects made from its `.file` objects as they are sent (chunked), and `config`
//! with `mode=archive-z2`. The real `ostree pull` and Ferry's own engine pull from it.

use std::path::Path;

use super::*;

use super::bare_sticks::awkward_upstream;
use crate::common::repo::assert_same_tree;
use ferry::repo::filez::{open_filez, verify_filez};
use ferry::repo::{Checksum, ObjectName, ObjectType};

/// `ferryctl serve` on loopback for `repo`.
fn serve(repo: &FerryRepo) -> Server {
    let mut cmd = repo.ferryctl();
    cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"]);
    Server::spawn(cmd)
}

/// `ostree checkout` of `commit` from `repo` into `dest`.
fn checkout(repo: &Path, commit: &str, dest: &Path) {
    run(ostree(repo).args(["checkout", commit]).arg(dest));
}

/// A Ferry repository of `mode` holding the awkward upstream commit, served.
fn served_bare(mode: &str, gpg: &Signer, upstream: &Path, commit: &str) -> (FerryRepo, Server) {
    let ferry = FerryRepo::with_mode(&file_uri(upstream), gpg, mode);
    ferry.pull_from(upstream);
    assert_eq!(ferry.origin_ref().as_deref(), Some(commit));
    let config = fs::read_to_string(ferry.path.join("config")).unwrap();
    assert!(config.contains(&format!("mode={mode}\n")), "{config}");
    let server = serve(&ferry);
    (ferry, server)
}

#[test]
fn ostree_pulls_from_a_served_bare_repository() {
    let gpg = Signer::new(SIGNER);
    let (dir, upstream, commit) = awkward_upstream(&gpg);
    let original = dir.path().join("original");
    checkout(&upstream, &commit, &original);
    for mode in ["bare-user", "bare"] {
        let (_ferry, server) = served_bare(mode, &gpg, &upstream, &commit);
        let client = OstreeClient::new(&gpg);
        run(ostree(&client.path)
            .args(["remote", "add"])
            .arg(format!("--gpg-import={}", gpg.public.display()))
            .arg(format!("--collection-id={COLLECTION}"))
            .arg("srv")
            .arg(format!("http://127.0.0.1:{}/0", server.port)));
        run(ostree(&client.path).args(["pull", "srv", REF]));
        assert_eq!(
            run(ostree(&client.path).args(["rev-parse", &format!("srv:{REF}")])).trim(),
            commit,
            "{mode}"
        );
        client.fsck();
        let pulled = client.dir.path().join("checkout");
        checkout(&client.path, &commit, &pulled);
        assert_same_tree(&original, &pulled);
    }
}

#[test]
fn ferry_updates_from_a_served_bare_user_repository() {
    let gpg = Signer::new(SIGNER);
    let (_dir, upstream, commit) = awkward_upstream(&gpg);
    let (_ferry, server) = served_bare("bare-user", &gpg, &upstream, &commit);
    let url = format!("http://127.0.0.1:{}/0", server.port);
    for mode in ["archive", "bare-user"] {
        let client = FerryRepo::with_mode(&url, &gpg, mode);
        let out = run(client.ferryctl().args(["--no-mounts", "--json", "update"]));
        assert!(
            out.lines()
                .any(|l| l.contains("\"ref-updated\"") && l.contains(&commit)),
            "{mode}: {out}"
        );
        assert_eq!(
            client.origin_ref().as_deref(),
            Some(commit.as_str()),
            "{mode}"
        );
        run(client.ferryctl().arg("fsck"));
        run(ostree(&client.path).arg("fsck"));
    }
}

/// What a served bare repository answers: `config` as archive (with the
/// collection ID), `.filez` objects made chunked that are the archive repository's
/// bytes for bytes once inflated, metadata as stored, never a `.file`.
#[test]
fn served_bare_repository_looks_like_archive() {
    let gpg = Signer::new(SIGNER);
    let (_dir, upstream, commit) = awkward_upstream(&gpg);
    let (ferry, server) = served_bare("bare-user", &gpg, &upstream, &commit);
    run(ostree(&ferry.path).args(["config", "set", "core.collection-id", "org.example.Served"]));
    let addr = localhost(server.port);

    let config = request(addr, "GET", "/0/config", &[]);
    assert_eq!(config.status, 200);
    let config = String::from_utf8(config.body).unwrap();
    assert!(config.contains("mode=archive-z2\n"), "{config}");
    assert!(!config.contains("bare"), "{config}");
    assert!(
        config.contains("collection-id=org.example.Served\n"),
        "{config}"
    );

    // The repository's own signed summary names its real mode: never served.
    run(ostree(&ferry.path)
        .args(["summary", "-u", "--gpg-sign", &gpg.key])
        .arg(format!("--gpg-homedir={}", gpg.home().display())));
    let own = ferry::repo::summary::Summary::parse(&fs::read(ferry.path.join("summary")).unwrap())
        .unwrap();
    assert_eq!(own.mode.as_deref(), Some("bare-user"));
    let summary = request(addr, "GET", "/0/summary", &[]);
    assert_eq!(summary.status, 200);
    let summary = ferry::repo::summary::Summary::parse(&summary.body).unwrap();
    assert_eq!(summary.mode.as_deref(), Some("archive-z2"));
    assert!(
        summary
            .all_refs()
            .any(|(_, r)| r.checksum.to_hex() == commit),
        "{summary:?}"
    );
    assert_eq!(request(addr, "GET", "/0/summary.sig", &[]).status, 404);

    let mut made = 0;
    for (prefix, name) in walk_objects(&ferry.path) {
        let Some(hex) = name.strip_suffix(".file") else {
            // Metadata objects are served as they are stored.
            let response = request(addr, "GET", &format!("/0/objects/{prefix}/{name}"), &[]);
            assert_eq!(response.status, 200, "{name}");
            assert_eq!(
                response.body,
                fs::read(ferry.path.join("objects").join(&prefix).join(&name)).unwrap()
            );
            continue;
        };
        let file = request(addr, "GET", &format!("/0/objects/{prefix}/{name}"), &[]);
        assert_eq!(file.status, 404, "a .file is never served: {name}");
        let filez = request(
            addr,
            "GET",
            &format!("/0/objects/{prefix}/{hex}.filez"),
            &[],
        );
        assert_eq!(filez.status, 200, "{name}");
        assert_eq!(filez.header("Transfer-Encoding"), Some("chunked"), "{name}");
        // The upstream (archive, made by ostree) holds the same object; the made
        // one may differ in deflate bytes only: compare header and content.
        let full = format!("{prefix}{hex}");
        let upstream_filez = fs::read(
            upstream
                .join("objects")
                .join(&prefix)
                .join(format!("{hex}.filez")),
        )
        .unwrap();
        let body = dechunk(&filez.body);
        assert_eq!(
            read_filez(&body, &full),
            read_filez(&upstream_filez, &full),
            "{name}"
        );
        made += 1;
    }
    assert!(made >= 4, "only {made} file objects");
}

/// `(XX, rest)` of every stored object.
fn walk_objects(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in fs::read_dir(repo.join("objects")).unwrap().flatten() {
        let prefix = dir.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(dir.path()).unwrap().flatten() {
            out.push((
                prefix.clone(),
                file.file_name().to_string_lossy().into_owned(),
            ));
        }
    }
    out.sort();
    out
}

/// The header and content a `.filez` stands for, after checking it against its
/// name.
fn read_filez(bytes: &[u8], hex: &str) -> (String, Vec<u8>) {
    use std::io::Read;
    let checksum: Checksum = hex.parse().unwrap_or_else(|_| panic!("{hex}"));
    verify_filez(bytes, &checksum, &mut std::io::sink()).unwrap_or_else(|e| panic!("{hex}: {e}"));
    let name = ObjectName::new(checksum, ObjectType::File);
    let (header, mut content) = open_filez(bytes, &name).unwrap();
    let mut out = Vec::new();
    // A symlink's `.filez` ends after its header: no deflate stream to read.
    if header.is_regular() {
        content.read_to_end(&mut out).unwrap();
    }
    (format!("{header:?}"), out)
}

/// The body of a chunked response; panics unless it ends with the last chunk.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("chunk size {size_text:?}"));
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk end");
        data = &data[size + 2..];
    }
}

/// The bandwidth cap holds for `.filez` objects made as they are sent: the 3 MiB
/// random file at 1 MB/s takes about 3 s, and arrives whole.
#[test]
fn served_bare_repository_keeps_the_bandwidth_cap() {
    let gpg = Signer::new(SIGNER);
    let (_dir, upstream, commit) = awkward_upstream(&gpg);
    let ferry = FerryRepo::with_mode(&file_uri(&upstream), &gpg, "bare-user");
    ferry.pull_from(&upstream);
    assert_eq!(ferry.origin_ref().as_deref(), Some(commit.as_str()));
    let mut cmd = ferry.ferryctl();
    cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"])
        .args(["--bandwidth-limit", "1M"]);
    let server = Server::spawn(cmd);
    let (prefix, name) = walk_objects(&ferry.path)
        .into_iter()
        .filter(|(_, name)| name.ends_with(".file"))
        .max_by_key(|(prefix, name)| {
            fs::metadata(ferry.path.join("objects").join(prefix).join(name))
                .unwrap()
                .len()
        })
        .unwrap();
    let hex = name.strip_suffix(".file").unwrap();
    let started = Instant::now();
    let response = request(
        localhost(server.port),
        "GET",
        &format!("/0/objects/{prefix}/{hex}.filez"),
        &[],
    );
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    let body = dechunk(&response.body);
    assert!(body.len() > 3_000_000, "{}", body.len());
    read_filez(&body, &format!("{prefix}{hex}"));
    assert!(took >= Duration::from_millis(2400), "took {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// The hardening of served files holds for made `.filez`: an object directory
/// that is a symlink (out of the repository) is not followed, and a `.file` of a
/// `bare-user` repository replaced by a symlink is not read through it.
#[test]
fn served_bare_repository_follows_no_symlink() {
    let gpg = Signer::new(SIGNER);
    let (dir, upstream, commit) = awkward_upstream(&gpg);
    let (ferry, server) = served_bare("bare-user", &gpg, &upstream, &commit);
    let addr = localhost(server.port);
    let files: Vec<(String, String)> = walk_objects(&ferry.path)
        .into_iter()
        .filter(|(_, name)| name.ends_with(".file"))
        .collect();
    let url = |prefix: &str, name: &str| {
        format!(
            "/0/objects/{prefix}/{}.filez",
            name.strip_suffix(".file").unwrap()
        )
    };

    // Served before, refused once its directory leads out of the repository.
    let (prefix, name) = &files[0];
    assert_eq!(request(addr, "GET", &url(prefix, name), &[]).status, 200);
    let objects = ferry.path.join("objects");
    let outside = dir.path().join("outside");
    fs::rename(objects.join(prefix), &outside).unwrap();
    symlink(&outside, objects.join(prefix)).unwrap();
    assert_eq!(request(addr, "GET", &url(prefix, name), &[]).status, 404);

    // A .file replaced by a symlink to a file elsewhere (bare-user stores none).
    let (prefix, name) = files.iter().find(|(p, _)| p != prefix).unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"secret").unwrap();
    let object = objects.join(prefix).join(name);
    fs::remove_file(&object).unwrap();
    symlink(&secret, &object).unwrap();
    let response = request(addr, "GET", &url(prefix, name), &[]);
    assert_eq!(response.status, 404);
    assert!(!response.body.windows(6).any(|w| w == b"secret"));
}
