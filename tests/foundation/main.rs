//! The foundation against the real `ostree` (2022.7): Ferry reads what `ostree`
//! writes and `ostree` reads what Ferry writes, byte for byte; pulls are crash safe;
//! bad input is refused with one clear sentence and leaves the repository as it was;
//! `ferryctl` behaves as documented.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli;
mod crash_safety;
mod formats_config;
mod objects;
mod repo_modes;
mod round_trips;
mod sign_cli;
mod signals;
mod static_deltas;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ferry::repo::filez::{read_archive_header, verify_filez, write_filez};
use ferry::repo::objects::{
    variant_from_bytes, Commit, DirMeta, DirTree, DirTreeDir, DirTreeFile, METADATA_TYPE,
};
use ferry::repo::summary::Summary;
use ferry::repo::{Checksum, ObjectType};
use glib::prelude::*;
use glib::{Variant, VariantDict, VariantTy};
use rand::Rng;

use common::repo::*;

/// Runs `ostree checkout -U REV DEST` in `repo`.
fn ostree_checkout(repo: &Path, rev: &str, dest: &Path) {
    run_ok(ostree(repo).args(["checkout", "-U", rev]).arg(dest));
}

/// A tree with every kind of entry a commit can hold. `big` is the size of the
/// random file `big.bin`.
fn make_rich_tree(root: &Path, big: usize) {
    make_dir(root, 0o755);
    write_file(&root.join("empty"), b"", 0o644);
    write_file(&root.join("small.txt"), b"hello, ferry\n", 0o644);
    write_random_file(&root.join("big.bin"), 1, big, 0o644);
    write_file(&root.join("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
    write_file(&root.join("bin/secret"), b"secret\n", 0o600);
    write_file(&root.join("group-readable"), b"group\n", 0o640);
    write_file(&root.join("dup-1"), b"same content\n", 0o644);
    write_file(&root.join("dup-2"), b"same content\n", 0o644);
    make_symlink("small.txt", &root.join("link-relative"));
    make_symlink("../small.txt", &root.join("bin/link-up"));
    make_symlink("/etc/hostname", &root.join("link-absolute"));
    make_symlink("does/not/exist", &root.join("link-dangling"));
    make_symlink("bin", &root.join("link-to-dir"));
    write_file(&root.join("a/b/c/d/e/deep.txt"), b"deep\n", 0o644);
    make_dir(&root.join("empty-dir"), 0o755);
    make_dir(&root.join("private-dir"), 0o700);
    write_file(&root.join("private-dir/inside"), b"inside\n", 0o644);
    write_file(
        &root.join("déjà vu/ünïcödé.txt"),
        "ünïcödé\n".as_bytes(),
        0o644,
    );
    write_file(
        &root.join("日本語/ファイル.txt"),
        "ファイル\n".as_bytes(),
        0o644,
    );
    write_file(
        &root.join("emoji 🚀 'quoted' \"name\".txt"),
        b"rocket\n",
        0o644,
    );
    make_symlink("ünïcödé.txt", &root.join("déjà vu/lien"));
    for dir in [
        "bin",
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/d",
        "a/b/c/d/e",
        "déjà vu",
        "日本語",
    ] {
        make_dir(&root.join(dir), 0o755);
    }
}

/// The `objects_fetched` of a `ferryctl --json pull` report.
fn fetched(report: &serde_json::Value) -> u64 {
    report["objects_fetched"]
        .as_u64()
        .unwrap_or_else(|| panic!("no objects_fetched in {report}"))
}
