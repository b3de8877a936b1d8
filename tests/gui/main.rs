//! The Ferry window, clicked through like a person would, via the accessibility
//! tree: each test starts Xvfb on a free display, a private D-Bus session (which
//! starts the at-spi bus), and `tests/gui/driver.py` (pyatspi), which starts the
//! `ferry` binary, finds widgets by role and name, clicks them and checks what they
//! say. Runs as root (loop mounts under /media); everything started is stopped and
//! everything mounted is unmounted, also when a test fails.
//!
//! The demo and error scenarios also take screenshots, into target/screenshots
//! (see [`screenshots_dir`]); `FERRY_UPDATE_SCREENSHOTS=1` writes them to
//! data/screenshots instead, the ones the README shows.

#![allow(clippy::zombie_processes)] // children are reaped by kill_group

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::http::{ServeOptions, Server};
use common::sources::{kill_group, run, LoopDrive, OstreeRepo};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const FERRYCTL: &str = env!("CARGO_BIN_EXE_ferryctl");
/// pyatspi is a Debian package: the system Python, whatever `python3` is on PATH.
const PYTHON: &str = "/usr/bin/python3";
const REF: &str = "os/stable";
/// The window's default size: screenshots are of the whole (window-sized) screen.
const SCREEN: &str = "640x720x24";

/// One GUI at a time: they share two cores, and the USB test mounts a drive that
/// every running Ferry sees.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where screenshots go: `target/screenshots` (under `CARGO_TARGET_DIR` when it is
/// set), so that a test run leaves the committed ones in data/screenshots, and so
/// the git tree, untouched; data/screenshots itself only with
/// `FERRY_UPDATE_SCREENSHOTS=1`, to refresh what the README shows.
fn screenshots_dir() -> PathBuf {
    if std::env::var_os("FERRY_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        return root().join("data/screenshots");
    }
    // A relative CARGO_TARGET_DIR is relative to where cargo ran: the package root
    // (the tests' working directory) here.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root().join("target"), |dir| root().join(dir));
    target.join("screenshots")
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// An Xvfb server on a display it picks itself (`-displayfd`).
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        let mut cmd = Command::new("Xvfb");
        cmd.args(["-displayfd", "1", "-screen", "0", SCREEN])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().expect("Xvfb (install xvfb)");
        let mut stdout = child.stdout.take().unwrap();
        let mut number = String::new();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        assert!(!number.is_empty(), "Xvfb did not say its display");
        Self {
            child,
            display: format!(":{}", number.trim()),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Runs the driver on `config` in a private D-Bus session on a new display;
/// panics with its transcript unless the scenario passes.
fn drive(config: Value, work: &Path) -> String {
    let xvfb = Xvfb::start();
    let config_path = work.join("driver.json");
    fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let log_path = work.join("driver.log");
    let log = fs::File::create(&log_path).unwrap();
    let home = work.join("home");
    for dir in ["data", "config", "cache", "runtime"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    fs::set_permissions(
        home.join("runtime"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut cmd = Command::new("dbus-run-session");
    cmd.args(["--", PYTHON])
        .arg(root().join("tests/gui/driver.py"))
        .arg(&config_path)
        .env("DISPLAY", &xvfb.display)
        .env("GDK_BACKEND", "x11")
        .env("FERRY_LAN_INTERFACES", "none")
        .env("GSETTINGS_BACKEND", "memory")
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_RUNTIME_DIR", home.join("runtime"))
        .env_remove("FERRY_REPO")
        .env_remove("NO_AT_BRIDGE")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().expect("dbus-run-session (install dbus)");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    // The session's D-Bus daemons and the at-spi bus are in the same group.
    kill_group(&mut child);
    let transcript = fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            // Shown with --nocapture.
            println!("{transcript}");
            transcript
        }
        Some(s) => panic!("the GUI scenario failed ({s}):\n{transcript}"),
        None => panic!("the GUI scenario timed out:\n{transcript}"),
    }
}

fn rev_parse(repo: &Path, rev: &str) -> String {
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["rev-parse", rev]))
    .trim()
    .to_owned()
}

/// A test world: an upstream with two commits served over loopback by a plain
/// HTTP server, and a client tracking the ref at the first commit (or with nothing
/// installed), whose remote verifies signatures or not.
struct World {
    _dir: tempfile::TempDir,
    upstream: OstreeRepo,
    client: PathBuf,
    sideload: PathBuf,
    commits: Vec<String>,
    server: Server,
}

impl World {
    fn new(collection: &str, verify: bool, install_first: bool) -> Self {
        let dir = tempdir("ferry-gui-world-");
        let upstream = OstreeRepo::create(&dir.path().join("upstream"), collection, REF);
        let mut commits = vec![upstream.rev_parse(REF)];
        let client = dir.path().join("client");
        let sideload = dir.path().join("sideload");
        fs::create_dir(&sideload).unwrap();

        let server = Server::start(&upstream.path, ServeOptions::default());
        let url = server.url();

        let repo = client.display().to_string();
        run(Command::new(FERRYCTL).args(["--repo", &repo, "init"]));
        let mut add = Command::new(FERRYCTL);
        add.args(["--repo", &repo, "remote", "add", "origin", &url])
            .args(["--collection-id", collection]);
        if !verify {
            add.arg("--no-verify");
        }
        run(&mut add);
        run(Command::new(FERRYCTL).args(["--repo", &repo, "track", "origin", REF]));
        if install_first {
            run(Command::new(FERRYCTL)
                .env("FERRY_LAN_INTERFACES", "none")
                .args(["--repo", &repo, "pull", "--remote", "origin"])
                .arg(&upstream.path)
                .arg(REF));
        }
        // A second version, newer by a day.
        let later = upstream.commit_timestamp(REF) + 24 * 3600;
        commits.push(upstream.commit_at(REF, "2.0", Some(later)));
        Self {
            _dir: dir,
            upstream,
            client,
            sideload,
            commits,
            server,
        }
    }

    fn ferry(&self, extra: &[&str]) -> Vec<String> {
        let mut command = vec![
            FERRY.to_owned(),
            "--repo".to_owned(),
            self.client.display().to_string(),
            "--no-lan".to_owned(),
            "--sideload-dir".to_owned(),
            self.sideload.display().to_string(),
        ];
        command.extend(extra.iter().map(|s| s.to_string()));
        command
    }

    /// Every path the HTTP server was asked for, in order.
    fn requests_log(&self) -> PathBuf {
        self.server.log.clone()
    }

    fn installed(&self) -> String {
        rev_parse(&self.client, &format!("origin:{REF}"))
    }
}

fn english() -> Value {
    json!({
        "available": "Update Available",
        "ready": "Update Ready",
        "error": "Updates Could Not Be Checked",
        "sources": "Sources",
        "choice": "Source choice",
        "automatic": "Automatic",
        "update": "Update",
        "copy_title": "Copy Update to USB Stick",
        "drives": "USB sticks",
        "copy": "Copy",
        "copied": "Update Copied",
        "close": "Close",
    })
}

#[test]
fn gui_demo_downloads_from_several_sources_and_moves_the_ref() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempdir("ferry-gui-demo-");
    let demo = work.path().join("demo");
    let shots = screenshots_dir();
    fs::create_dir_all(&shots).unwrap();
    let config = json!({
        "scenario": "demo",
        "command": [FERRY, "--demo"],
        // Slower than the demo by default, so that progress is seen at leisure.
        "env": {"FERRY_DEMO_DIR": demo, "FERRY_DEMO_RATE": "400k"},
        "screenshots": shots,
        "strings": english(),
        "download_line": " to download",
        "rows": {
            "Demo USB stick": "Has version 41 — newer than yours, not the newest",
            "Computer at 127.0.0.2": "Has version 42 — newer than yours",
            "localhost": "Has version 42 — newer than yours",
        },
        // The engine prefers the drive and the nearby computer; the internet
        // server is there for what they lack.
        "active_rows": ["Demo USB stick", "Computer at 127.0.0.2"],
        "rows_after": {
            "Demo USB stick": "Has an older version",
            "Computer at 127.0.0.2": "Has your version",
            "localhost": "Has your version",
        },
    });
    let transcript = drive(config, work.path());
    let newest = rev_parse(&demo.join("upstream"), ferry::demo::REF);
    let installed = rev_parse(
        &demo.join("local"),
        &format!("{}:{}", ferry::demo::REMOTE, ferry::demo::REF),
    );
    assert_eq!(
        installed, newest,
        "the demo's ref did not move:\n{transcript}"
    );
    run(Command::new("ostree")
        .arg(format!("--repo={}", demo.join("local").display()))
        .arg("fsck"));
    for shot in ["update-available", "downloading", "ready"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "no {shot}.png");
    }
}

#[test]
fn gui_usb_stick_comes_and_goes_and_one_chosen_source_is_the_only_one_used() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new("org.example.GuiUsb", false, true);
    assert_eq!(world.installed(), world.commits[0]);
    let drive_image = LoopDrive::new("FERRYGUI");
    drive_image.prepare(|mount| world.upstream.create_usb(mount, REF));
    let mount_point = drive_image.mount_point.clone();
    let blank = LoopDrive::new("FERRYCOPY");
    // The driver mounts and unmounts; dropping the drives unmounts whatever is left.
    let work = tempdir("ferry-gui-usb-");
    let config = json!({
        "scenario": "usb",
        "command": world.ferry(&[]),
        "strings": english(),
        "rows": {"127.0.0.1": "Has version 2.0 — newer than yours"},
        "server_row": "127.0.0.1",
        "requests_log": world.requests_log(),
        "usb": {
            "image": drive_image.image,
            "mount_point": mount_point,
            "names": ["FERRYGUI", mount_point.file_name().unwrap().to_str().unwrap()],
        },
        // "Copy Update to USB Stick…" onto a blank drive afterwards.
        "copy": {
            "image": blank.image,
            "mount_point": blank.mount_point,
            "name": "FERRYCOPY",
            "ref_file": format!(".ostree/repo/refs/mirrors/org.example.GuiUsb/{REF}"),
            "commit": world.commits[1],
        },
    });
    let transcript = drive(config, work.path());
    assert_eq!(
        world.installed(),
        world.commits[1],
        "the ref did not move:\n{transcript}"
    );
}

#[test]
fn gui_speaks_german() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new("org.example.GuiDe", false, true);
    let work = tempdir("ferry-gui-de-");
    let locale = work.path().join("locale/de/LC_MESSAGES");
    fs::create_dir_all(&locale).unwrap();
    run(Command::new("msgfmt")
        .arg("-o")
        .arg(locale.join("ferry.mo"))
        .arg(root().join("po/de.po")));
    let config = json!({
        "scenario": "german",
        "command": world.ferry(&[]),
        "env": {
            "LANGUAGE": "de",
            "LANG": "C.UTF-8",
            "LC_ALL": "",
            "FERRY_LOCALEDIR": work.path().join("locale"),
        },
        "strings": {
            "available": "Aktualisierung verfügbar",
            "sources": "Quellen",
            "update": "Aktualisieren",
        },
        "rows": {"127.0.0.1": "Hat Version 2.0 – neuer als Ihre"},
        "labels": ["Herunterladen von", "Automatisch"],
    });
    drive(config, work.path());
}

#[test]
fn gui_shows_why_an_update_cannot_be_trusted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The remote verifies signatures, but nothing is signed.
    let world = World::new("org.example.GuiError", true, false);
    let work = tempdir("ferry-gui-error-");
    let shots = screenshots_dir();
    fs::create_dir_all(&shots).unwrap();
    let config = json!({
        "scenario": "error",
        "command": world.ferry(&[]),
        "screenshots": shots,
        "strings": english(),
        "labels": [
            "The update could not be verified: no source has a copy signed by a trusted key."
        ],
    });
    drive(config, work.path());
    assert!(shots.join("error.png").is_file());
}

#[test]
fn gui_privacy_switch_drives_then_where_the_update_came_from_and_its_history() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new("org.example.GuiPrivacy", false, true);
    // A "USB stick" in the sideload directory, holding version 2.0.
    let stick = world.sideload.parent().unwrap().join("stick");
    fs::create_dir(&stick).unwrap();
    world.upstream.create_usb(&stick, REF);
    std::os::unix::fs::symlink(&stick, world.sideload.join("STICK")).unwrap();
    let work = tempdir("ferry-gui-privacy-");
    let mut strings = english();
    strings["preferences"] = "Preferences".into();
    strings["preferences_title"] = "Preferences".into();
    strings["drives_switch"] = "Look for updates on drives".into();
    strings["saved"] = "of internet saved".into();
    strings["from_stick"] = "from the USB stick".into();
    strings["history"] = "Update History".into();
    strings["history_list"] = "Past updates".into();
    let config = json!({
        "scenario": "privacy",
        "command": world.ferry(&[]),
        "strings": strings,
        "rows": {"127.0.0.1": null, "STICK": null},
        "stick_row": "STICK",
        "history_rows": {"Version 2.0": "nothing from the internet"},
    });
    let transcript = drive(config, work.path());
    assert_eq!(
        world.installed(),
        world.commits[1],
        "the ref did not move:\n{transcript}"
    );
    // The window wrote the history ferryctl also writes and reads.
    let history =
        fs::read_to_string(work.path().join("home/data/ferry/history.jsonl")).unwrap_or_default();
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains(&world.commits[1]), "{history}");
}

#[test]
fn gui_preferences_share_updates_with_nearby_computers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new("org.example.GuiShare", false, true);
    let work = tempdir("ferry-gui-share-");
    let mut strings = english();
    strings["preferences"] = "Preferences".into();
    strings["preferences_title"] = "Preferences".into();
    strings["share"] = "Share updates with nearby computers".into();
    let config = json!({
        "scenario": "share",
        "command": world.ferry(&[]),
        "strings": strings,
        // Ferry serves on its own port; nothing is advertised (LAN interfaces off).
        "summary_url": format!("http://127.0.0.1:{}/0/summary", ferry::share::DEFAULT_PORT),
    });
    drive(config, work.path());
}
