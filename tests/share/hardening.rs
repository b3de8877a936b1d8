//! Ferry's own server under hostile or heavy use.

use super::*;

fn local_server(repo: &FerryRepo, extra: &[&str]) -> Server {
    let mut cmd = repo.ferryctl();
    cmd.args(["--json", "serve", "--port", "0", "--address", "127.0.0.1"])
        .args(extra);
    Server::spawn(cmd)
}

#[test]
fn server_refuses_paths_outside_the_repository() {
    let gpg = Signer::new(SIGNER);
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
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let commit = upstream.rev(REF);
    run(ostree(&upstream.path)
        .args(["summary", "-u", "--gpg-sign", &gpg.key])
        .arg(format!("--gpg-homedir={}", gpg.home().display())));
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
        .arg(format!("--gpg-import={}", gpg.public.display()))
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

/// A request with a body (which no GET or HEAD needs, and which Ferry never reads)
/// is answered at once, without waiting for or reading the body: 400 for GET and
/// HEAD, 405 for other methods.
#[test]
fn server_answers_requests_with_a_body_without_reading_it() {
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let server = local_server(&served, &[]);
    let addr = localhost(server.port);
    let cases: [(&str, u16); 4] = [
        // A body announced and never sent: soup would wait for it (30 s).
        ("GET /0/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\npart", 400),
        ("HEAD /0/config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 400),
        ("GET /0/config HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n", 400),
        // soup would read (and keep in memory) the whole body before answering.
        ("POST /0/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc", 405),
    ];
    for (request, status) in cases {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let response = parse_response(&head)
            .unwrap_or_else(|| panic!("no answer to {request:?} within 5 s: {:?}", text(&head)));
        assert_eq!(response.status, status, "{request:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{request:?}");
        if status == 405 {
            assert_eq!(response.header("Allow"), Some("GET, HEAD"));
        }
        // And the connection is closed, without the body having been read.
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)),
            "{request:?}"
        );
    }
    // A body sent in full is not read either: 20 MB pushed at a server that
    // answered at once does not make it grow.
    let rss_before = server.vm_rss_kib();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /0/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n")
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(stream);
    assert!(
        server.vm_rss_kib() < rss_before + 8 * 1024,
        "the server grew from {rss_before} KiB to {} KiB",
        server.vm_rss_kib()
    );
    assert_eq!(request(addr, "GET", "/0/summary", &[]).status, 200);
}

/// One client address gets a handful of connections at once (8), a few more wait
/// their turn (16), and any beyond are closed at once: a client opening hundreds
/// of connections cannot push anyone else's out, and the server's descriptors stay
/// bounded. Loopback addresses 127.0.0.2… stand for other computers.
#[test]
fn server_gives_each_client_a_handful_of_connections() {
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let server = local_server(&served, &[]);
    let addr = localhost(server.port);
    let baseline_fds = server.open_fds();

    // 40 silent connections from one client: 24 are kept, 16 closed at once.
    let mut crowd: Vec<TcpStream> = (0..40)
        .map(|_| connect_from([127, 0, 0, 2], addr))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let closed: Vec<usize> = (0..crowd.len())
        .filter(|&i| closed_within(&mut crowd[i], Duration::from_millis(20)))
        .collect();
    assert_eq!(closed, (24..40).collect::<Vec<_>>(), "closed at once");

    // The 9th waits for a place: its request is answered once one of the first
    // eight ends.
    crowd[8]
        .write_all(b"GET /0/config HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    crowd[8]
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        crowd[8].read(&mut buf).is_err(),
        "a queued connection was served before its turn"
    );
    crowd[0].shutdown(std::net::Shutdown::Both).unwrap();
    crowd[8]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = crowd[8]
        .read(&mut buf)
        .expect("the queued request is answered");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        text(&buf[..n])
    );

    // An honest client, slow to send its request, is not pushed out by two others
    // opening 300 connections more (beyond the 256 still sending requests that
    // the server keeps, it closes the oldest).
    let mut honest = connect_from([127, 0, 0, 3], addr);
    honest.write_all(b"GET /0/config HTTP/1.1\r\n").unwrap();
    for i in 0..300 {
        let source = if i % 2 == 0 {
            [127, 0, 0, 4]
        } else {
            [127, 0, 0, 5]
        };
        crowd.push(connect_from(source, addr));
    }
    thread::sleep(Duration::from_millis(500));
    let max_fds = server.open_fds();
    honest.write_all(b"Host: x\r\n\r\n").unwrap();
    honest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = honest.read_to_end(&mut answer);
    let answer = parse_response(&answer).expect("the honest client is answered");
    assert_eq!(answer.status, 200);
    assert!(text(&answer.body).contains("[core]"));
    // Three crowding clients, 24 connections each at most, and the honest one.
    assert!(
        max_fds <= baseline_fds + 3 * 24 + 4,
        "{max_fds} descriptors (baseline {baseline_fds}):\n{}",
        server.describe_fds()
    );
    drop(crowd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_fds() > baseline_fds {
        assert!(
            Instant::now() < deadline,
            "descriptors left open:\n{}",
            server.describe_fds()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something at `addr` accepts TCP connections.
fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// `curl` run in `ns`: whether `url` answered 200.
fn served_in(ns: &Netns, url: &str) -> bool {
    let out = output(ns.command("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "3",
        url,
    ]));
    text(&out.stdout) == "200"
}

fn wait_until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The server listens only where the user shares: on the addresses given with
/// `--address` (repeatable), or on those of the interfaces FERRY_LAN_INTERFACES
/// names, following them as they change, or on loopback alone when it is `none`;
/// never on every address of the computer.
#[test]
fn server_listens_only_where_it_shares() {
    let gpg = Signer::new(SIGNER);
    let upstream = Upstream::new(&gpg, 100_000);
    let served = FerryRepo::with_upstream(&upstream, &gpg);

    // Explicit addresses.
    let server = local_server(&served, &["--address", "127.0.0.3"]);
    let port = server.port;
    let urls: Vec<String> = server.serving["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        urls,
        [
            format!("http://127.0.0.1:{port}/0/"),
            format!("http://127.0.0.3:{port}/0/")
        ]
    );
    assert_eq!(
        request(
            SocketAddr::from(([127, 0, 0, 3], port)),
            "GET",
            "/0/config",
            &[]
        )
        .status,
        200
    );
    assert_eq!(
        request(localhost(port), "GET", "/0/config", &[]).status,
        200
    );
    assert!(!accepts(SocketAddr::from(([127, 0, 0, 2], port))));
    drop(server);

    // The interfaces FERRY_LAN_INTERFACES names, in a LAN of two namespaces.
    let lan = Lan::named("ferry-listen", "fl");
    let mut cmd = ferryctl_in(&lan.a, &served.path, &lan.veth_a);
    cmd.args(["--json", "serve", "--port", "0"]);
    let server = Server::spawn(cmd);
    let port = server.port;
    assert_eq!(
        server.serving["urls"],
        serde_json::json!([format!("http://{ADDR_A}:{port}/0/")]),
        "{}",
        server.transcript()
    );
    let url = |ip: &str| format!("http://{ip}:{port}/0/config");
    assert!(served_in(&lan.b, &url(ADDR_A)));
    // Not on loopback, which was not named.
    assert!(!served_in(&lan.a, &url("127.0.0.1")));
    let listening = lan.a.exec_ok(&["ss", "-Hltn"]);
    let ours: Vec<&str> = listening
        .lines()
        .filter(|l| l.contains(&format!(":{port} ")))
        .collect();
    assert_eq!(ours.len(), 1, "{listening}");
    assert!(ours[0].contains(&format!("{ADDR_A}:{port}")), "{listening}");
    // An address the interface gains is served, one it loses is not.
    let extra = "10.77.0.11";
    lan.a.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{extra}/24"),
        "dev",
        &lan.veth_a,
    ]);
    wait_until("the new address served", Duration::from_secs(10), || {
        served_in(&lan.b, &url(extra))
    });
    lan.a.exec_ok(&[
        "ip",
        "addr",
        "del",
        &format!("{extra}/24"),
        "dev",
        &lan.veth_a,
    ]);
    wait_until("the old address left", Duration::from_secs(10), || {
        let ss = lan.a.exec_ok(&["ss", "-Hltn"]);
        !ss.contains(&format!("{extra}:{port}"))
    });
    drop(server);

    // FERRY_LAN_INTERFACES=none: this computer only.
    let mut cmd = ferryctl_in(&lan.a, &served.path, "none");
    cmd.args(["--json", "serve", "--port", "0"]);
    let server = Server::spawn(cmd);
    let port = server.port;
    let url = |ip: &str| format!("http://{ip}:{port}/0/config");
    assert!(served_in(&lan.a, &url("127.0.0.1")));
    assert!(!served_in(&lan.b, &url(ADDR_A)));
    assert!(
        server.stderr().contains("this computer only"),
        "{}",
        server.transcript()
    );
}

/// A load test: 500 connections from five other clients (127.0.0.2–6) dribble
/// their headers, stall silently, announce a body they never send, or ask for the
/// largest object and never read it, while an honest `ostree pull` (from
/// 127.0.0.1) completes. The server's descriptors and memory stay bounded, every
/// connection of the attack is closed again (the stalled readers once idle for
/// 30 s), and the test ends by itself within its time bound.
#[test]
fn server_bounds_slow_connections_while_serving_honest_clients() {
    let gpg = Signer::new(SIGNER);
    // Larger than the socket buffers, so the stalled readers really stall it.
    let upstream = Upstream::new(&gpg, 12_000_000);
    let commit = upstream.rev(REF);
    let served = FerryRepo::with_upstream(&upstream, &gpg);
    let server = local_server(&served, &[]);
    let addr = localhost(server.port);
    assert_eq!(request(addr, "GET", "/0/summary", &[]).status, 200);
    let baseline_fds = server.open_fds();
    let baseline_rss = server.vm_rss_kib();
    let (object, _) = served.largest_object();

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Silent,
        Dribble,
        BodyNeverSent,
        StalledReader,
        DribbleThenStall,
    }
    let kinds = [
        Kind::Silent,
        Kind::Dribble,
        Kind::BodyNeverSent,
        Kind::StalledReader,
        Kind::DribbleThenStall,
    ];
    let started = Instant::now();
    let mut attack: Vec<(Kind, Option<TcpStream>)> = Vec::new();
    for i in 0..500usize {
        let source = [127, 0, 0, 2 + (i / 100) as u8];
        let kind = kinds[i % kinds.len()];
        let mut stream = connect_from(source, addr);
        match kind {
            Kind::BodyNeverSent => {
                let _ = stream.write_all(
                    b"GET /0/summary HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
                );
            }
            Kind::StalledReader => {
                set_receive_buffer(&stream, 4096);
                let _ = stream
                    .write_all(format!("GET /0/{object} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            }
            _ => {}
        }
        stream.set_nonblocking(true).unwrap();
        attack.push((kind, Some(stream)));
    }
    let preamble = b"GET /0/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

    // The honest `ostree pull` at the same time.
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

    let (mut max_fds, mut max_rss) = (0, 0);
    let mut sent = 0usize;
    let mut pull_result = None;
    let mut pull = Some(pull);
    let deadline = started + Duration::from_secs(45);
    loop {
        // One more byte on every dribbling connection still open; stalled readers
        // are left alone (reading would unstall them).
        let byte = preamble.get(sent).copied().unwrap_or(b'a');
        sent += 1;
        for (kind, slot) in attack.iter_mut() {
            if *kind == Kind::StalledReader {
                continue;
            }
            let Some(stream) = slot else { continue };
            let mut buf = [0u8; 512];
            let mut closed = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            let dribbling = *kind == Kind::Dribble
                || (*kind == Kind::DribbleThenStall && sent < preamble.len());
            if dribbling && !closed {
                closed =
                    matches!(stream.write(&[byte]), Err(e) if e.kind() != ErrorKind::WouldBlock);
            }
            if closed {
                *slot = None;
            }
        }
        max_fds = max_fds.max(server.open_fds());
        max_rss = max_rss.max(server.vm_rss_kib());
        if pull.as_ref().is_some_and(|p| p.is_finished()) {
            pull_result = Some(pull.take().unwrap().join().unwrap());
        }
        let open = attack
            .iter()
            .filter(|(kind, s)| *kind != Kind::StalledReader && s.is_some())
            .count();
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

    // Bounded: five clients with 8 connections served and 16 waiting each, the
    // honest pull's, and a few transient ones.
    assert!(
        max_fds <= baseline_fds + 5 * 24 + 40,
        "the server held {max_fds} descriptors (baseline {baseline_fds})"
    );
    assert!(
        max_rss <= baseline_rss + 64 * 1024,
        "the server grew from {baseline_rss} KiB to {max_rss} KiB"
    );
    assert!(
        closed_after < Duration::from_secs(40),
        "slow connections lived {closed_after:?}"
    );
    // And it still answers.
    assert_eq!(request(addr, "GET", "/0/summary", &[]).status, 200);

    // The stalled readers are dropped once idle for 30 s: everything the attack
    // opened is closed again.
    // The last stalled reader can be served as late as 15 s in, then idles 30 s.
    let deadline = started + Duration::from_secs(15 + 30 + 15);
    while server.open_fds() > baseline_fds {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} descriptors (baseline {baseline_fds}) after {:?}:\n{}",
            server.open_fds(),
            started.elapsed(),
            server.describe_fds()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "load test: at most {max_fds} descriptors (baseline {baseline_fds}), {max_rss} KiB \
         resident (baseline {baseline_rss} KiB); attack closed after {closed_after:?}, all \
         descriptors back after {:?}",
        started.elapsed()
    );
    drop(attack);
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
    let gpg = Signer::new(SIGNER);
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
    for i in 0..80 {
        // Ten clients, eight connections each (as many as one client is served).
        let mut stream = connect_from([127, 0, 0, 10 + i / 8], addr);
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
