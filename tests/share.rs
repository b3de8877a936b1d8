//! Sharing updates (issue #6): `ferryctl serve` found on a LAN by libostree and by
//! Ferry, drives written by `ferryctl prepare-usb` read by libostree (and drives
//! written by `ostree create-usb` read by Ferry), refusals before anything is
//! copied, and a server that withstands hostile clients.
//!
//! Real components only: the real `ostree` (2022.7), real avahi-daemons with their
//! own D-Bus system bus in network namespaces joined by veth pairs, loop-mounted
//! ext4 drives under /media. Runs as root. Every namespace, mount and process is
//! removed by Drop guards, also when a test fails. mDNS only ever runs inside the
//! namespaces a test makes (FERRY_LAN_INTERFACES names their veth).

#[path = "share_support/mod.rs"]
mod share_support;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use share_support::*;

/// `ferryctl --repo REPO` run inside a namespace, advertising/browsing on `iface`.
fn ferryctl_in(ns: &Netns, repo: &Path, iface: &str) -> Command {
    let mut cmd = ns.command(ferryctl_path());
    cmd.env_remove("FERRY_REPO")
        .env("XDG_DATA_HOME", "/dev/null/ferry-share-test")
        .env("FERRY_LAN_INTERFACES", iface)
        .arg("--repo")
        .arg(repo);
    cmd
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The LAN source serving `uri` in `ferryctl sources --json`, once it offers `commit`.
fn lan_source_with(client: &FerryRepo, lan: &Lan, uri: &str, commit: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = output(ferryctl_in(&lan.b, &client.path, &lan.veth_b).args([
            "--no-mounts",
            "--json",
            "sources",
        ]));
        let last = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
        if out.status.success() {
            let sources: Value = serde_json::from_slice(&out.stdout).expect("sources JSON");
            let found = sources.as_array().into_iter().flatten().find(|s| {
                s["kind"] == "lan"
                    && s["uri"] == uri
                    && s["refs"].as_array().into_iter().flatten().any(|r| {
                        r["collection_id"] == COLLECTION && r["ref"] == REF && r["commit"] == commit
                    })
            });
            if let Some(source) = found {
                return source.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no LAN source {uri} offering {commit}:\n{last}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------
// LAN
// ---------------------------------------------------------------------------

#[test]
fn libostree_finds_ferry_on_the_lan() {
    let gpg = Gpg::new();
    let upstream = Upstream::new(&gpg, 300_000);
    let commit = upstream.rev(REF);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    assert_eq!(served.origin_ref().as_deref(), Some(commit.as_str()));
    let client = OstreeClient::new(&gpg);

    let lan = Lan::named("ferry-share", "fs");
    let _server_avahi = Avahi::start_with(
        &lan.a,
        &lan.veth_a,
        AvahiOptions {
            host_name: Some(format!("server-{}", lan.suffix)),
            system_bus: false,
        },
    );
    let client_avahi = Avahi::start_with(
        &lan.b,
        &lan.veth_b,
        AvahiOptions {
            host_name: Some(format!("client-{}", lan.suffix)),
            system_bus: true,
        },
    );

    let mut cmd = ferryctl_in(&lan.a, &served.path, &lan.veth_a);
    cmd.args(["--json", "serve", "--port", "0", "--advertise"]);
    let mut server = Server::spawn(cmd);
    server.wait_for(Duration::from_secs(10), |v| v["event"] == "advertised");
    let port = server.port;

    // The client computer's avahi resolves the service, with the TXT record.
    let endpoint = format!(";{ADDR_A};{port};");
    let lines = client_avahi.wait_browse(Duration::from_secs(30), |lines| {
        lines.iter().any(|l| l.contains(&endpoint))
    });
    let line = lines.iter().find(|l| l.contains(&endpoint)).unwrap();
    for txt in ["\"v=\\001\"", "\"ri=\\000\\000\"", "\"rb=\\001\\001"] {
        assert!(line.contains(txt), "{txt} missing from {line}");
    }

    // libostree's LAN finder finds Ferry and pulls from it.
    let out = output(
        client_avahi
            .command("ostree")
            .arg(format!("--repo={}", client.path.display()))
            .args(["find-remotes", "--finders=lan", "--pull", COLLECTION, REF]),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "find-remotes failed:\n{stdout}\n{}\nserver:\n{}",
        text(&out.stderr),
        server.transcript()
    );
    assert!(
        stdout.contains(&format!("http://{ADDR_A}:{port}/0")),
        "{stdout}"
    );
    assert!(stdout.contains("OstreeRepoFinderAvahi"), "{stdout}");
    assert!(
        stdout.contains(&format!("({COLLECTION}, {REF}) = {commit}")),
        "{stdout}"
    );
    assert!(stdout.contains("Pulled 1/1 refs successfully"), "{stdout}");
    assert_eq!(client.collection_ref().as_deref(), Some(commit.as_str()));
    client.fsck();

    // SIGTERM withdraws the advertisement: the client's avahi forgets it at once
    // (without a goodbye it would keep it for the records' TTL).
    server.terminate(libc::SIGTERM);
    assert!(
        server.seen.iter().any(|v| v["event"] == "withdrawn"),
        "{}",
        server.transcript()
    );
    client_avahi.wait_browse(Duration::from_secs(10), |lines| {
        !lines.iter().any(|l| l.contains(&endpoint))
    });
}

#[test]
fn ferry_finds_ferry_on_the_lan() {
    let gpg = Gpg::new();
    let upstream = Upstream::new(&gpg, 300_000);
    let commit = upstream.rev(REF);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let client = FerryRepo::new("http://invalid.invalid/", &gpg);

    let lan = Lan::named("ferry-share", "fs");
    let _server_avahi = Avahi::start_with(
        &lan.a,
        &lan.veth_a,
        AvahiOptions {
            host_name: Some(format!("server-{}", lan.suffix)),
            system_bus: false,
        },
    );
    let _client_avahi = Avahi::start_with(
        &lan.b,
        &lan.veth_b,
        AvahiOptions {
            host_name: Some(format!("client-{}", lan.suffix)),
            system_bus: false,
        },
    );

    let mut cmd = ferryctl_in(&lan.a, &served.path, &lan.veth_a);
    cmd.args(["--json", "serve", "--port", "0", "--advertise"]);
    let mut server = Server::spawn(cmd);
    server.wait_for(Duration::from_secs(10), |v| v["event"] == "advertised");
    let uri = format!("http://{ADDR_A}:{}/0", server.port);

    let source = lan_source_with(&client, &lan, &uri, &commit);
    assert_eq!(source["state"], "ready", "{source}");
    let served_modified = server.seen[0]["summary_last_modified"].clone();
    assert_eq!(source["last_modified"], served_modified, "{source}");

    let out = run(ferryctl_in(&lan.b, &client.path, &lan.veth_b).args([
        "--no-mounts",
        "--json",
        "update",
    ]));
    let events = json_lines(&out);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "ref-updated" && e["commit"] == commit.as_str()),
        "{out}"
    );
    assert_eq!(client.origin_ref().as_deref(), Some(commit.as_str()));
    run(client.ferryctl().arg("fsck"));
    run(ostree(&client.path).arg("fsck"));

    // A new commit reaches the server: its summary and advertisement follow, and
    // the client sees and fetches it.
    let commit2 = upstream.commit(&gpg, "2.0", 100_000);
    served.pull_from(&upstream.path);
    let changed = server.wait_for(Duration::from_secs(30), |v| {
        v["event"] == "summary-changed"
            && v["refs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["commit"] == commit2.as_str())
    });
    let source = lan_source_with(&client, &lan, &uri, &commit2);
    assert_eq!(
        source["last_modified"], changed["summary_last_modified"],
        "{source}"
    );
    assert!(
        source["last_modified"].as_u64() > served_modified.as_u64(),
        "{source} vs {served_modified}"
    );
    let out = run(ferryctl_in(&lan.b, &client.path, &lan.veth_b).args([
        "--no-mounts",
        "--json",
        "update",
    ]));
    assert!(
        json_lines(&out)
            .iter()
            .any(|e| e["event"] == "ref-updated" && e["commit"] == commit2.as_str()),
        "{out}"
    );
    run(client.ferryctl().arg("fsck"));

    server.terminate(libc::SIGINT);
    assert!(
        server.seen.iter().any(|v| v["event"] == "withdrawn"),
        "{}",
        server.transcript()
    );
}

// ---------------------------------------------------------------------------
// USB drives
// ---------------------------------------------------------------------------

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
    let gpg = Gpg::new();
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
    let out = output(ostree(&client.path).args([
        "find-remotes",
        "--finders=mount",
        "--pull",
        COLLECTION,
        REF,
    ]));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "find-remotes failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
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
    let out = output(ostree(&client2.path).args([
        "find-remotes",
        "--finders=mount",
        "--pull",
        COLLECTION,
        REF,
    ]));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "find-remotes failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&drive2.mount_point.display().to_string()),
        "{stdout}"
    );
    assert_eq!(client2.collection_ref().as_deref(), Some(commit.as_str()));
    client2.fsck();
}

#[test]
fn ferry_reads_drives_written_by_ostree() {
    let gpg = Gpg::new();
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
    let gpg = Gpg::new();
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
    let gpg = Gpg::new();
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

// ---------------------------------------------------------------------------
// Server hardening
// ---------------------------------------------------------------------------

fn local_server(repo: &FerryRepo, extra: &[&str]) -> Server {
    let mut cmd = repo.ferryctl();
    cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"])
        .args(extra);
    Server::spawn(cmd)
}

/// A two-hex-digit object directory the repository does not have.
fn unused_prefix(repo: &Path) -> String {
    (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|p| !repo.join("objects").join(p).exists())
        .expect("a free prefix")
}

#[test]
fn server_refuses_paths_outside_the_repository() {
    let gpg = Gpg::new();
    let upstream = Upstream::new(&gpg, 200_000);
    let commit = upstream.rev(REF);
    let served = FerryRepo::with_upstream(&upstream, &gpg);

    // Traps: symlinks out of the repository, and a file under tmp/.
    let hex62 = "ab".repeat(31);
    let outside = tempdir();
    fs::write(
        outside.path().join(format!("{hex62}.filez")),
        "OUTSIDE-SECRET",
    )
    .unwrap();
    fs::write(outside.path().join("ref"), format!("{}\n", "cd".repeat(32))).unwrap();
    let objects = served.path.join("objects");
    fs::create_dir_all(objects.join("ab")).unwrap();
    symlink(
        "/etc/passwd",
        objects.join("ab").join(format!("{hex62}.filez")),
    )
    .unwrap();
    let prefix = unused_prefix(&served.path);
    symlink(outside.path(), objects.join(&prefix)).unwrap();
    fs::create_dir_all(served.path.join("refs/heads")).unwrap();
    symlink(
        outside.path().join("ref"),
        served.path.join("refs/heads/evil"),
    )
    .unwrap();
    fs::create_dir_all(served.path.join("tmp")).unwrap();
    fs::write(served.path.join("tmp/secret"), "TMP-SECRET").unwrap();

    let server = local_server(&served, &[]);
    let addr = localhost(server.port);
    // (`/0/%2e%2e/0/config` is `/0/config` once normalised, as RFC 3986 says: not
    // an escape, so not in this list.)
    let secrets = [
        "root:",
        "OUTSIDE-SECRET",
        "TMP-SECRET",
        "[core]",
        "trustedkeys",
    ];
    let refused = [
        "/0/../config".to_owned(),
        "/0/%2e%2e/config".to_owned(),
        "/0/%2E%2E/%2E%2E/%2E%2E/etc/passwd".to_owned(),
        "/0/objects/%2e%2e/%2e%2e/config".to_owned(),
        "//etc/passwd".to_owned(),
        "/../../../../etc/passwd".to_owned(),
        "/etc/passwd".to_owned(),
        "/0/tmp/secret".to_owned(),
        "/0/tmp/".to_owned(),
        "/0/".to_owned(),
        "/".to_owned(),
        "/0/objects/".to_owned(),
        "/0/objects/ab/".to_owned(),
        "/0/refs/heads/".to_owned(),
        "/0/state/".to_owned(),
        "/0/origin.trustedkeys.gpg".to_owned(),
        format!("/0/objects/ab/{hex62}.filez"),
        format!("/0/objects/{prefix}/{hex62}.filez"),
        "/0/refs/heads/evil".to_owned(),
        "/1/config".to_owned(),
    ];
    for path in &refused {
        let response = request(addr, "GET", path, &[]);
        assert!(
            (400..500).contains(&response.status),
            "{path}: status {} {:?}",
            response.status,
            text(&response.body)
        );
        let body = text(&response.body);
        for secret in secrets {
            assert!(!body.contains(secret), "{path} leaked {secret}: {body}");
        }
    }

    // What the repository does serve.
    let config = request(addr, "GET", "/0/config", &[]);
    assert_eq!(config.status, 200);
    let config_text = text(&config.body);
    assert!(config_text.contains("mode=archive-z2"), "{config_text}");
    assert!(
        !config_text.contains("url="),
        "remote URLs are not shared: {config_text}"
    );
    let remote_ref = request(addr, "GET", &format!("/0/refs/remotes/origin/{REF}"), &[]);
    assert_eq!(remote_ref.status, 200);
    assert_eq!(text(&remote_ref.body).trim(), commit);
    let summary = request(addr, "GET", "/0/summary", &[]);
    assert_eq!(summary.status, 200);
    let parsed = ferry::repo::summary::Summary::parse(&summary.body).expect("summary parses");
    assert_eq!(
        parsed
            .find_ref(Some(COLLECTION), REF)
            .map(|r| r.checksum.to_hex()),
        Some(commit.clone())
    );
    assert!(parsed.last_modified.is_some());
    assert_eq!(request(addr, "GET", "/0/summary.sig", &[]).status, 404);

    let (object, size) = served.largest_object();
    let path = format!("/0/{object}");
    let full = request(addr, "GET", &path, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(
        full.header("Content-Length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(full.body, fs::read(served.path.join(&object)).unwrap());
    let head = request(addr, "HEAD", &path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(size.to_string().as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(request(addr, "POST", &path, &[]).status, 405);

    // Conditional requests.
    let etag = full.header("ETag").expect("ETag").to_owned();
    let modified = full
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_owned();
    let cached = request(addr, "GET", &path, &[("If-None-Match", &etag)]);
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(
        request(addr, "GET", &path, &[("If-Modified-Since", &modified)]).status,
        304
    );
    assert_eq!(
        request(
            addr,
            "GET",
            &path,
            &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")]
        )
        .status,
        200
    );
    assert_eq!(
        request(addr, "GET", &path, &[("If-None-Match", "\"other\"")]).status,
        200
    );
    let summary_etag = summary.header("ETag").expect("summary ETag").to_owned();
    assert_eq!(
        request(
            addr,
            "GET",
            "/0/summary",
            &[("If-None-Match", &summary_etag)]
        )
        .status,
        304
    );
}

/// A repository with its own signed summary (made by `ostree summary -u
/// --gpg-sign`) is served with that summary and its signature, so clients that
/// verify summaries can pull from Ferry.
#[test]
fn server_serves_the_repositorys_own_signed_summary() {
    let gpg = Gpg::new();
    let upstream = Upstream::new(&gpg, 100_000);
    let commit = upstream.rev(REF);
    run(ostree(&upstream.path)
        .args(["summary", "-u", "--gpg-sign", &gpg.key_id])
        .arg(format!("--gpg-homedir={}", gpg.home.path().display())));
    let on_disk = fs::read(upstream.path.join("summary")).unwrap();
    let signature = fs::read(upstream.path.join("summary.sig")).unwrap();

    let mut cmd = ferryctl(&upstream.path);
    cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"]);
    let server = Server::spawn(cmd);
    let addr = localhost(server.port);
    assert_eq!(request(addr, "GET", "/0/summary", &[]).body, on_disk);
    assert_eq!(request(addr, "GET", "/0/summary.sig", &[]).body, signature);

    let client = tempdir();
    let client = client.path().join("client");
    run(ostree(&client).args(["init", "--mode=archive"]));
    run(ostree(&client)
        .args(["remote", "add", "--set=gpg-verify-summary=true"])
        .arg(format!("--gpg-import={}", gpg.public_key.display()))
        .arg(format!("--collection-id={COLLECTION}"))
        .arg("srv")
        .arg(format!("http://127.0.0.1:{}/0", server.port)));
    run(ostree(&client).args(["pull", "srv", REF]));
    assert_eq!(
        run(ostree(&client).args(["rev-parse", &format!("srv:{REF}")])).trim(),
        commit
    );
    run(ostree(&client).arg("fsck"));
}

/// Honest clients are served while 500 connections dribble their headers byte by
/// byte: those are closed (the oldest at once beyond the limit, the rest when their
/// time is up) and the server's descriptors stay bounded. A client that stops
/// reading its response is dropped once the connection has been idle too long.
#[test]
fn server_bounds_slow_connections_while_serving_honest_clients() {
    let gpg = Gpg::new();
    // Larger than the socket buffers, so the reader below really stalls the server.
    let upstream = Upstream::new(&gpg, 12_000_000);
    let commit = upstream.rev(REF);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let server = local_server(&served, &[]);
    let addr = localhost(server.port);
    let baseline_fds = server.open_fds();

    // A client that asks for the largest object and never reads it.
    let (object, _) = served.largest_object();
    let mut reader = TcpStream::connect(addr).unwrap();
    set_receive_buffer(&reader, 4096);
    reader
        .write_all(format!("GET /0/{object} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    let reader_started = Instant::now();

    let started = Instant::now();
    let mut slow: Vec<Option<TcpStream>> = Vec::new();
    for _ in 0..500 {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        stream.set_nonblocking(true).unwrap();
        slow.push(Some(stream));
    }
    let preamble = b"GET /0/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

    // An honest `ostree pull` at the same time.
    let honest_dir = tempdir();
    let honest = honest_dir.path().join("client");
    let honest_path = honest.clone();
    let port = server.port;
    let pull = thread::spawn(move || {
        run(ostree(&honest_path).args(["init", "--mode=archive"]));
        run(ostree(&honest_path)
            .args(["remote", "add", "--no-gpg-verify", "srv"])
            .arg(format!("http://127.0.0.1:{port}/0")));
        output(ostree(&honest_path).args(["pull", "srv", REF]))
    });

    let mut max_fds = 0;
    let mut sent = 0usize;
    let mut pull_result = None;
    let mut pull = Some(pull);
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        // One more byte on every connection still open.
        let byte = if sent < preamble.len() {
            preamble[sent]
        } else {
            b'a'
        };
        sent += 1;
        for slot in slow.iter_mut() {
            let Some(stream) = slot else { continue };
            let mut buf = [0u8; 64];
            let closed = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            } || matches!(stream.write(&[byte]), Err(e) if e.kind() != ErrorKind::WouldBlock);
            if closed {
                *slot = None;
            }
        }
        max_fds = max_fds.max(server.open_fds());
        if pull.as_ref().is_some_and(|p| p.is_finished()) {
            pull_result = Some(pull.take().unwrap().join().unwrap());
        }
        let open = slow.iter().filter(|s| s.is_some()).count();
        if open == 0 && pull_result.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} slow connections still open after {:?}; pull done: {}\n{}",
            started.elapsed(),
            pull_result.is_some(),
            server.transcript()
        );
        thread::sleep(Duration::from_millis(250));
    }
    let closed_after = started.elapsed();

    let pulled = pull_result.unwrap();
    assert!(
        pulled.status.success(),
        "the honest pull failed:\n{}\n{}",
        text(&pulled.stdout),
        text(&pulled.stderr)
    );
    let pulled_commit = run(ostree(&honest).args(["rev-parse", &format!("srv:{REF}")]));
    assert_eq!(pulled_commit.trim(), commit);
    run(ostree(&honest).arg("fsck"));

    // Bounded: at most 256 connections wait for headers, and none for long.
    assert!(
        max_fds <= baseline_fds + 256 + 80,
        "the server held {max_fds} descriptors (baseline {baseline_fds})"
    );
    assert!(
        closed_after < Duration::from_secs(40),
        "slow connections lived {closed_after:?}"
    );
    // And it still answers.
    assert_eq!(request(addr, "GET", "/0/summary", &[]).status, 200);

    // The reader that stopped reading is dropped once idle for 30 s: everything
    // the attack opened is closed again.
    let idle_limit = Duration::from_secs(30 + 5);
    thread::sleep(idle_limit.saturating_sub(reader_started.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_fds() > baseline_fds {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} descriptors (baseline {baseline_fds}):\n{}",
            server.open_fds(),
            server.describe_fds()
        );
        thread::sleep(Duration::from_millis(200));
    }
    drop(reader);
}

fn set_receive_buffer(stream: &TcpStream, size: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a valid socket with a correctly sized int.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// One bandwidth cap for all responses, and responses in progress bounded (503).
#[test]
fn server_shares_one_bandwidth_cap_and_sheds_load() {
    let gpg = Gpg::new();
    let upstream = Upstream::new(&gpg, 1_000_000);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let (object, size) = served.largest_object();
    assert!(size > 900_000, "{size}");
    let path = format!("/0/{object}");

    {
        let server = local_server(&served, &["--bandwidth-limit", "500k"]);
        let addr = localhost(server.port);
        let started = Instant::now();
        let one = request(addr, "GET", &path, &[]);
        let single = started.elapsed();
        assert_eq!(one.status, 200);
        assert_eq!(one.body.len() as u64, size);
        // 1 MB at 500 kB/s: about 2 s (a small burst is allowed).
        assert!(
            single >= Duration::from_millis(1600),
            "one download took {single:?}"
        );
        assert!(
            single < Duration::from_secs(10),
            "one download took {single:?}"
        );

        let started = Instant::now();
        let downloads: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                thread::spawn(move || request(addr, "GET", &path, &[]))
            })
            .collect();
        for download in downloads {
            let response = download.join().unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body.len() as u64, size);
        }
        let both = started.elapsed();
        // Shared, not per connection: 2 MB at 500 kB/s is about 4 s.
        assert!(
            both >= Duration::from_millis(3400),
            "two downloads took {both:?}"
        );
    }

    // A crawl of 1 kB/s keeps responses in progress: beyond 64, requests get 503.
    let server = local_server(&served, &["--bandwidth-limit", "1k"]);
    let addr = localhost(server.port);
    let mut streams = Vec::new();
    for _ in 0..80 {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        streams.push(stream);
        // In order, so that the first 64 are the ones served.
        thread::sleep(Duration::from_millis(5));
    }
    let mut statuses = Vec::new();
    for stream in &mut streams {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        statuses.push(parse_response(&head).map_or(0, |r| r.status));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok, 64, "{statuses:?}");
    assert_eq!(busy, 16, "{statuses:?}");
}

// ---------------------------------------------------------------------------
// The systemd user unit
// ---------------------------------------------------------------------------

#[test]
fn serve_unit_is_valid() {
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ferry-serve.service"))
            .expect("data/ferry-serve.service");
    assert!(
        unit.contains("\nExecStart=ferryctl serve --advertise\n"),
        "{unit}"
    );
    assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
    // systemd-analyze checks it, with the binary this build made.
    let dir = tempdir();
    let runtime = dir.path().join("runtime");
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.path().join("ferry-serve.service");
    fs::write(
        &path,
        unit.replace(
            "ExecStart=ferryctl ",
            &format!("ExecStart={} ", ferryctl_path()),
        ),
    )
    .unwrap();
    let out = output(
        Command::new("systemd-analyze")
            .env("XDG_RUNTIME_DIR", &runtime)
            .args(["verify", "--user"])
            .arg(&path),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
