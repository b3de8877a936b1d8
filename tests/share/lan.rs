//! Sharing on the LAN: libostree and Ferry find Ferry's server through avahi.

use super::*;

#[test]
fn libostree_finds_ferry_on_the_lan() {
    let gpg = Signer::new(SIGNER);
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
        server.seen().any(|v| v["event"] == "withdrawn"),
        "{}",
        server.transcript()
    );
    client_avahi.wait_browse(Duration::from_secs(10), |lines| {
        !lines.iter().any(|l| l.contains(&endpoint))
    });
}

#[test]
fn ferry_finds_ferry_on_the_lan() {
    let gpg = Signer::new(SIGNER);
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
    let served_modified = server.serving["summary_last_modified"].clone();
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
        server.seen().any(|v| v["event"] == "withdrawn"),
        "{}",
        server.transcript()
    );
}
