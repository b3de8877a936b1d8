//! The desktop file, metainfo, GSettings schema and translations are valid, and every
//! Rust file with translatable strings is listed for translators. The validators come
//! from build-aux/setup-deps.sh (desktop-file-utils, appstream, libglib2.0-bin, gettext).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BASE_ID: &str = "io.github.ferry_updates.Ferry";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a validator and fails the test with its output unless it succeeds.
fn assert_success(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start (run build-aux/setup-deps.sh): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Fills in `@APP_ID@` as meson does, under the installed name (the validators check
/// file names as well as contents).
fn configure(template: &str, installed_name: &str, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(root().join("data").join(template)).expect("read template");
    let path = dir.join(installed_name);
    fs::write(&path, text.replace("@APP_ID@", BASE_ID)).expect("write configured file");
    path
}

#[test]
fn desktop_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let desktop = configure(
        &format!("{BASE_ID}.desktop.in"),
        &format!("{BASE_ID}.desktop"),
        dir.path(),
    );
    assert_success(Command::new("desktop-file-validate").arg(&desktop));
}

#[test]
fn metainfo_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let metainfo = configure(
        &format!("{BASE_ID}.metainfo.xml.in"),
        &format!("{BASE_ID}.metainfo.xml"),
        dir.path(),
    );
    assert_success(
        Command::new("appstreamcli")
            .args(["validate", "--no-net"])
            .arg(&metainfo),
    );
}

#[test]
fn gsettings_schema_is_valid() {
    assert_success(
        Command::new("glib-compile-schemas")
            .args(["--strict", "--dry-run"])
            .arg(root().join("data")),
    );
}

#[test]
fn translations_compile() {
    let linguas = fs::read_to_string(root().join("po/LINGUAS")).expect("read po/LINGUAS");
    let dir = tempfile::tempdir().unwrap();
    let langs = linguas
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace);
    for lang in langs {
        let po = root().join("po").join(format!("{lang}.po"));
        let mo = dir.path().join(format!("{lang}.mo"));
        assert_success(
            Command::new("msgfmt")
                .arg("--check")
                .arg("-o")
                .arg(&mo)
                .arg(&po),
        );
    }
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source directory") {
        let path = entry.expect("read directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn potfiles_lists_every_translatable_file() {
    let potfiles = fs::read_to_string(root().join("po/POTFILES.in")).expect("read POTFILES.in");
    let listed: Vec<&str> = potfiles
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();

    for file in &listed {
        assert!(
            root().join(file).is_file(),
            "po/POTFILES.in lists {file}, which does not exist"
        );
    }

    let mut sources = Vec::new();
    rust_files(&root().join("src"), &mut sources);
    for path in sources {
        let text = fs::read_to_string(&path).expect("read Rust source");
        if text.contains("gettext(") || text.contains("i18n(") {
            let relative = path.strip_prefix(root()).unwrap().to_str().unwrap();
            assert!(
                listed.contains(&relative),
                "{relative} has translatable strings but is missing from po/POTFILES.in"
            );
        }
    }
}

/// `meson install` puts `ferry-serve.service` in the systemd user unit directory
/// under the prefix (systemd's `systemduserunitdir` with our prefix, or
/// PREFIX/lib/systemd/user without systemd's pkg-config file: the same place).
/// Only the unit is installed (`--tags systemd`, `--no-rebuild`), so nothing is
/// compiled.
#[test]
fn meson_installs_the_serve_unit() {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    let destdir = dir.path().join("dest");
    assert_success(
        Command::new("meson")
            .arg("setup")
            .arg(&build)
            .arg(root())
            .arg("--prefix=/opt/ferry"),
    );
    assert_success(
        Command::new("meson")
            .args(["install", "--no-rebuild", "--tags", "systemd", "-C"])
            .arg(&build)
            .arg("--destdir")
            .arg(&destdir),
    );
    let installed = destdir.join("opt/ferry/lib/systemd/user/ferry-serve.service");
    let unit = fs::read_to_string(&installed)
        .unwrap_or_else(|e| panic!("{} was not installed: {e}", installed.display()));
    let source = fs::read_to_string(root().join("data/ferry-serve.service")).unwrap();
    assert_eq!(unit, source);
}
