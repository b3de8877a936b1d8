//! The Flatpak manifest builds offline: flatpak/cargo-sources.json is what
//! build-aux/flatpak-cargo-sources.py makes from Cargo.lock today (rerun it after
//! changing dependencies), it fetches every package of the lock file with the lock's
//! checksum, and the manifest uses it with the permissions Ferry needs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (name, version) → checksum of every crates.io package in Cargo.lock.
fn locked_packages() -> BTreeMap<(String, String), String> {
    let lock = fs::read_to_string(root().join("Cargo.lock")).expect("read Cargo.lock");
    let mut out = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                line.strip_prefix(&format!("{key} = \""))
                    .and_then(|rest| rest.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            panic!("a Cargo.lock package without a name or version:\n{block}");
        };
        if let Some(source) = field("source") {
            assert!(
                source.starts_with("registry+https://github.com/rust-lang/crates.io-index"),
                "{name} {version} comes from {source}: the Flatpak sources handle crates.io only"
            );
            let checksum = field("checksum").expect("crates.io packages have a checksum");
            out.insert((name, version), checksum);
        }
    }
    out
}

fn committed_sources() -> Value {
    let text = fs::read_to_string(root().join("flatpak/cargo-sources.json"))
        .expect("read flatpak/cargo-sources.json");
    serde_json::from_str(&text).expect("flatpak/cargo-sources.json is JSON")
}

#[test]
fn cargo_sources_are_up_to_date() {
    let out = Command::new("python3")
        .arg(root().join("build-aux/flatpak-cargo-sources.py"))
        .arg(root().join("Cargo.lock"))
        .args(["-o", "-"])
        .output()
        .expect("run build-aux/flatpak-cargo-sources.py (python3 ≥ 3.11)");
    assert!(
        out.status.success(),
        "the generator failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed =
        fs::read_to_string(root().join("flatpak/cargo-sources.json")).expect("committed sources");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "flatpak/cargo-sources.json is stale: run build-aux/flatpak-cargo-sources.py"
    );
}

#[test]
fn cargo_sources_fetch_every_locked_package() {
    let sources = committed_sources();
    let sources = sources.as_array().expect("a list of sources");
    let packages = locked_packages();
    assert!(packages.len() > 100, "{} packages?", packages.len());
    for ((name, version), checksum) in &packages {
        let dest = format!("cargo/vendor/{name}-{version}");
        let archive = sources
            .iter()
            .find(|s| s["type"] == "archive" && s["dest"] == dest.as_str())
            .unwrap_or_else(|| panic!("no archive source for {name} {version}"));
        assert_eq!(
            archive["url"],
            format!("https://static.crates.io/crates/{name}/{name}-{version}.crate")
        );
        assert_eq!(archive["sha256"], checksum.as_str(), "{name} {version}");
        let marker = sources
            .iter()
            .find(|s| s["type"] == "inline" && s["dest"] == dest.as_str())
            .unwrap_or_else(|| panic!("no .cargo-checksum.json for {name} {version}"));
        assert_eq!(marker["dest-filename"], ".cargo-checksum.json");
        let contents: Value =
            serde_json::from_str(marker["contents"].as_str().expect("text")).expect("JSON");
        assert_eq!(contents["package"], checksum.as_str());
    }
    // Nothing else but the cargo config.
    assert_eq!(sources.len(), packages.len() * 2 + 1);
    let config = sources
        .iter()
        .find(|s| s["dest"] == "cargo")
        .expect("the cargo config");
    let text = config["contents"].as_str().unwrap();
    assert!(text.contains("directory = \"cargo/vendor\""), "{text}");
    assert!(
        text.contains("replace-with = \"vendored-sources\""),
        "{text}"
    );
}

#[test]
fn manifest_builds_ferry_offline_with_its_permissions() {
    let text = fs::read_to_string(root().join("flatpak/io.github.ferry_updates.Ferry.json"))
        .expect("read the manifest");
    let manifest: Value = serde_json::from_str(&text).expect("the manifest is JSON");
    assert_eq!(manifest["id"], "io.github.ferry_updates.Ferry");
    assert_eq!(manifest["runtime"], "org.gnome.Platform");
    assert_eq!(manifest["sdk"], "org.gnome.Sdk");
    assert_eq!(manifest["command"], "ferry");
    let version: u32 = manifest["runtime-version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a numbered GNOME runtime");
    assert!(version >= 47, "GNOME {version} is too old");
    assert!(manifest["sdk-extensions"]
        .as_array()
        .unwrap()
        .contains(&"org.freedesktop.Sdk.Extension.rust-stable".into()));
    let finish: Vec<&str> = manifest["finish-args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for arg in [
        "--share=network",
        "--socket=wayland",
        "--socket=fallback-x11",
        "--device=dri",
        "--filesystem=/run/media:ro",
        "--filesystem=/media:ro",
    ] {
        assert!(finish.contains(&arg), "finish-args lack {arg}");
    }
    assert_eq!(
        manifest["build-options"]["env"]["CARGO_NET_OFFLINE"],
        "true"
    );
    let module = manifest["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "ferry")
        .expect("the ferry module");
    assert_eq!(module["buildsystem"], "meson");
    let sources = module["sources"].as_array().unwrap();
    assert!(sources.contains(&"cargo-sources.json".into()));
    // The cargo config lands in CARGO_HOME.
    let cargo_home = manifest["build-options"]["env"]["CARGO_HOME"]
        .as_str()
        .unwrap();
    assert!(cargo_home.ends_with("/cargo"), "{cargo_home}");
}
