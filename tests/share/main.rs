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

#[path = "../common/mod.rs"]
mod common;

mod bare_serving;
mod bare_sticks;
mod hardening;
mod lan;
mod systemd;
mod usb;
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

use common::share::*;

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

/// A two-hex-digit object directory the repository does not have.
fn unused_prefix(repo: &Path) -> String {
    (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|p| !repo.join("objects").join(p).exists())
        .expect("a free prefix")
}
