//! Metered connections, decided by the engine (and discovery) itself: with
//! NetworkManager saying the connection is metered, `ferryctl update` takes the
//! update from a drive and a nearby computer and sends nothing at all to the
//! upstream (its server log stays empty); `--allow-metered` uses it.
//!
//! NetworkManager's D-Bus API comes from python3-dbusmock's `networkmanager`
//! template on a private bus that `ferryctl` sees as its system bus
//! (`DBUS_SYSTEM_BUS_ADDRESS`), and GIO is told to use its NetworkManager monitor
//! (`GIO_USE_NETWORK_MONITOR=networkmanager`). That monitor (gnetworkmonitornm.c)
//! reads the manager's `Metered` property: NM_METERED_YES (1) and
//! NM_METERED_GUESS_YES (3) are metered. Should GIO fall back to another monitor,
//! the connection would not look metered and these tests fail.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cmd::{kill_group, run_status};

use super::*;

/// NM_METERED_YES in NetworkManager's NMMetered.
const NM_METERED_YES: u32 = 1;
/// NM_METERED_GUESS_YES.
const NM_METERED_GUESS_YES: u32 = 3;
/// NM_METERED_NO.
const NM_METERED_NO: u32 = 2;

/// A private D-Bus bus with a mock NetworkManager on it reporting `Metered`. The
/// mock and the bus daemon are killed on drop, also when the test fails.
struct FakeNetworkManager {
    // Dropped in this order: the mock, then its bus.
    mock: Child,
    bus: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl FakeNetworkManager {
    fn start(metered: u32) -> Self {
        let dir = tempdir();
        let socket = dir.path().join("system_bus_socket");
        let mut bus = Command::new("dbus-daemon");
        bus.args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut bus = bus.spawn().expect("start dbus-daemon");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .expect("read the bus address");
        let address = address.trim().to_owned();
        if address.is_empty() {
            kill_group(&mut bus);
            panic!("dbus-daemon printed no address");
        }
        let mut mock = Command::new(python());
        mock.args(["-m", "dbusmock", "--template", "networkmanager"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mock = match mock.spawn() {
            Ok(mock) => mock,
            Err(e) => {
                kill_group(&mut bus);
                panic!("start python3 -m dbusmock: {e}");
            }
        };
        let fake = Self {
            mock,
            bus,
            address,
            _dir: dir,
        };
        fake.set_metered(metered);
        fake
    }

    /// Adds NetworkManager's `Metered` property (the template has none), once the
    /// mock is on the bus.
    fn set_metered(&self, metered: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut call = Command::new("gdbus");
            call.args([
                "call",
                "--system",
                "--dest",
                "org.freedesktop.NetworkManager",
                "--object-path",
                "/org/freedesktop/NetworkManager",
                "--method",
                "org.freedesktop.DBus.Mock.AddProperty",
                "org.freedesktop.NetworkManager",
                "Metered",
                &format!("<uint32 {metered}>"),
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address);
            let (ok, _, stderr) = run_status(&mut call);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mock NetworkManager did not come up: {stderr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `ferryctl` needs to see this NetworkManager.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SYSTEM_BUS_ADDRESS".to_owned(), self.address.clone()),
            (
                "GIO_USE_NETWORK_MONITOR".to_owned(),
                "networkmanager".to_owned(),
            ),
        ]
    }
}

impl Drop for FakeNetworkManager {
    fn drop(&mut self) {
        kill_group(&mut self.mock);
        kill_group(&mut self.bus);
    }
}

/// An upstream, a nearby computer (a static source on loopback, a local
/// address) and a "USB stick" (a `file://` source) all holding the same commit.
struct ThreeSources {
    client: Client,
    upstream: Server,
    _peer: Server,
    peer_id: String,
    stick_id: String,
    stick_uri: String,
    peer_url: String,
    up: Upstream,
}

impl ThreeSources {
    fn new() -> Self {
        let up = Upstream::new(60, 3000);
        let peer_repo = up.snapshot("peer");
        let stick = up.snapshot("stick");
        let upstream = Server::start(&up.repo, ServeOptions::default());
        let peer = Server::start(&peer_repo, ServeOptions::default());
        let client = Client::new(&upstream.url(), Trust::None);
        let stick_uri = file_uri(&stick);
        Self {
            client,
            peer_id: peer.static_id(),
            peer_url: peer.url(),
            stick_id: format!("static:{stick_uri}"),
            stick_uri,
            upstream,
            _peer: peer,
            up,
        }
    }

    fn discovery(&self) -> Vec<&str> {
        vec![
            "--static-source",
            &self.peer_url,
            "--static-source",
            &self.stick_uri,
        ]
    }
}

fn unused_reasons(plan: &Value) -> Vec<(String, String)> {
    plan["unused_sources"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|u| {
                    (
                        u["source"].as_str().unwrap_or_default().to_owned(),
                        u["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metered_update_uses_the_stick_and_the_peer_and_sends_nothing_to_the_upstream() {
    let nm = FakeNetworkManager::start(NM_METERED_YES);
    let w = ThreeSources::new();
    let run = w
        .client
        .update_with_env(&nm.env(), &w.discovery(), &[])
        .ok();
    w.client.assert_at(w.up.latest());
    let counts = run.counts();
    assert!(
        counts
            .keys()
            .all(|source| *source == w.stick_id || *source == w.peer_id),
        "served by others than the stick and the peer: {counts:?}"
    );
    assert!(
        run.plan_sources().iter().all(|s| s != "upstream:origin"),
        "{}",
        run.debug()
    );
    assert_eq!(
        unused_reasons(run.plan()),
        vec![(
            "upstream:origin".to_owned(),
            "metered-connection".to_owned()
        )],
        "{}",
        run.debug()
    );
    // Not even its summary.
    assert_eq!(w.upstream.requests(), Vec::<String>::new());
}

#[test]
fn metered_check_says_the_internet_was_skipped_in_text_and_json() {
    // NetworkManager's "guessed" metered counts as metered too.
    let nm = FakeNetworkManager::start(NM_METERED_GUESS_YES);
    let w = ThreeSources::new();
    let mut json = w.client.ferryctl();
    json.envs(nm.env())
        .args(w.discovery())
        .args(["check", "--json"]);
    let plans: Value = serde_json::from_str(&stdout_of(&mut json)).unwrap();
    assert_eq!(
        unused_reasons(&plans[0]),
        vec![(
            "upstream:origin".to_owned(),
            "metered-connection".to_owned()
        )]
    );
    let mut text = w.client.ferryctl();
    text.envs(nm.env()).args(w.discovery()).arg("check");
    let out = stdout_of(&mut text);
    assert!(
        out.contains("not using upstream:origin:")
            && out.contains("the network connection is metered")
            && out.contains("--allow-metered"),
        "{out}"
    );
    assert_eq!(w.upstream.requests(), Vec::<String>::new());
}

#[test]
fn allow_metered_uses_the_upstream() {
    let nm = FakeNetworkManager::start(NM_METERED_YES);
    let up = Upstream::new(40, 2000);
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&upstream.url(), Trust::None);

    // Only the internet has it: the update fails, saying why, and asks nothing.
    let refused = client.update_with_env(&nm.env(), &[], &[]).failed();
    assert!(
        refused.error_message().contains("metered"),
        "{}",
        refused.error_message()
    );
    assert_eq!(upstream.requests(), Vec::<String>::new());

    let run = client
        .update_with_env(&nm.env(), &["--allow-metered"], &[])
        .ok();
    client.assert_at(up.latest());
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec!["upstream:origin"]
    );
    assert!(!tree_requests(&upstream).is_empty());
}

#[test]
fn a_connection_that_is_not_metered_uses_the_upstream() {
    let nm = FakeNetworkManager::start(NM_METERED_NO);
    let up = Upstream::new(40, 2000);
    let upstream = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&upstream.url(), Trust::None);
    client.update_with_env(&nm.env(), &[], &[]).ok();
    client.assert_at(up.latest());
    assert!(!tree_requests(&upstream).is_empty());
}
