//! Trust (issue #3): GPG and ed25519 commit signatures, summary signatures, key
//! import, ref/collection bindings and downgrades, against the real `gpg`, `ostree`
//! and Python `cryptography`.

#[path = "../common/mod.rs"]
mod common;

mod bindings;
mod ed25519;
mod gpg;
mod keys;
mod policy;
mod summary;

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::cmd::{output, run};
use common::ed25519::{python_keypair, python_sign, python_verifies};
use common::gpg::Gpg;
use common::repo::OstreeRepo;
use ferry::repo::config::RemoteConfig;
use ferry::repo::Checksum;
use ferry::trust::{
    append_ed25519_signature, import_keys, keyring_path, parse_detached_metadata,
    public_key_from_secret, sign_ed25519, verify_commit, verify_summary, CommitToVerify, Keyring,
    SignatureKind, Subject, TrustError, TrustPolicy, VerifiedCommit,
};
use glib::prelude::*;
use glib::{Variant, VariantTy};

const COLLECTION: &str = "org.example.Os";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Settings of a remote "origin" with the given collection ID.
fn settings(collection_id: Option<&str>) -> RemoteConfig {
    let mut s = RemoteConfig::new("origin", "file:///nowhere");
    s.collection_id = collection_id.map(str::to_owned);
    s
}

/// Settings with no signature checks (the explicit per-remote `--no-verify`).
fn unverified(collection_id: Option<&str>) -> RemoteConfig {
    let mut s = settings(collection_id);
    s.gpg_verify = false;
    s
}

/// Settings requiring ed25519 (and not GPG) with one inline key.
fn ed25519_settings(public_b64: &str) -> RemoteConfig {
    let mut s = settings(Some(COLLECTION));
    s.gpg_verify = false;
    s.sign_verify = true;
    s.verification_ed25519_key = Some(public_b64.to_owned());
    s
}

/// A directory standing for the local Ferry repository, where keyrings live; and an
/// empty system root so no test reads the machine's /etc/ostree.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("repo")).unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        Client { dir }
    }
    fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
    fn policy(&self, s: &RemoteConfig) -> TrustPolicy {
        TrustPolicy::for_remote_with_system_root(&self.repo(), s, &self.root()).unwrap()
    }
    /// Imports `who`'s public key (binary export) for remote "origin".
    fn trust_gpg(&self, gpg: &Gpg, who: &str) -> Vec<String> {
        let file = gpg.export_to(who, false, &self.dir.path().join("key.gpg"));
        import_keys(&self.repo(), "origin", &file).unwrap()
    }
}

fn verify(
    policy: &TrustPolicy,
    server: &OstreeRepo,
    checksum: &Checksum,
    ref_name: &str,
) -> Result<VerifiedCommit, TrustError> {
    let bytes = server.commit_bytes(checksum);
    verify_commit(
        policy,
        &CommitToVerify {
            commit_bytes: &bytes,
            detached_metadata: server.commitmeta(checksum),
            ref_name,
            current: None,
        },
    )
}

/// The signatures under `key` in an a{sv}.
fn signatures(meta: &Variant, key: &str) -> Vec<Vec<u8>> {
    let value = meta
        .iter()
        .find(|e| e.child_value(0).str() == Some(key))
        .and_then(|e| e.child_value(1).as_variant())
        .unwrap_or_else(|| panic!("no {key}"));
    value
        .iter()
        .map(|s| s.fixed_array::<u8>().unwrap().to_vec())
        .collect()
}

/// An a{sv} built with glib directly (not with Ferry's helpers).
fn vardict(entries: &[(&str, Variant)]) -> Variant {
    let dict = glib::VariantDict::new(None);
    for (k, v) in entries {
        dict.insert_value(k, v);
    }
    dict.end()
}

fn aay(items: &[Vec<u8>]) -> Variant {
    Variant::array_from_iter_with_type(
        VariantTy::BYTE_STRING,
        items.iter().map(|i| Variant::array_from_fixed_array(i)),
    )
}

/// A server repository with collection ID COLLECTION and a commit on os/stable signed
/// by a fresh GPG key.
struct GpgFixture {
    gpg: Gpg,
    fpr: String,
    server: OstreeRepo,
    commit: Checksum,
}

fn gpg_fixture(uid: &str, algo: &str) -> GpgFixture {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(uid, algo, "sign", "never");
    let server = OstreeRepo::init(Some(COLLECTION));
    let commit = server.commit("os/stable", &[]);
    server.gpg_sign("os/stable", &gpg, &fpr);
    GpgFixture {
        gpg,
        fpr,
        server,
        commit,
    }
}
