//! `ferryctl sign`: an ed25519 signature made by Ferry's CLI lands in the commit's
//! detached metadata in the documented format, and a remote with `sign-verify`
//! accepts exactly the commits signed by its key.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::cmd;

const FERRYCTL: &str = env!("CARGO_BIN_EXE_ferryctl");

/// `program ARGS…` with LAN discovery off.
fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env("FERRY_LAN_INTERFACES", "none");
    cmd
}

/// Runs `program ARGS…`; its output, whatever the exit status.
fn run(program: &str, args: &[&str]) -> Output {
    cmd::output(&mut command(program, args))
}

/// Runs `program ARGS…`, which must succeed; its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    cmd::run(&mut command(program, args))
}

/// (secret key file contents, public key), both base64, made by Python's
/// `cryptography`, an implementation independent of Ferry's.
fn python_key(seed_byte: u8) -> (String, String) {
    let script = format!(
        "import base64\n\
         from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n\
         from cryptography.hazmat.primitives import serialization as s\n\
         k = Ed25519PrivateKey.from_private_bytes(bytes([{seed_byte}]) * 32)\n\
         pub = k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)\n\
         print(base64.b64encode(bytes([{seed_byte}]) * 32 + pub).decode())\n\
         print(base64.b64encode(pub).decode())\n"
    );
    let out = ok("python3", &["-c", &script]);
    let mut lines = out.lines();
    (
        lines.next().expect("secret").to_owned(),
        lines.next().expect("public").to_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn ferryctl_sign_makes_signatures_that_verify_and_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("file"), "signed content\n").unwrap();
    ok(
        "ostree",
        &[
            &format!("--repo={}", path(&src)),
            "init",
            "--mode=archive",
            "--collection-id=org.example.Os",
        ],
    );
    ok(
        "ostree",
        &[
            &format!("--repo={}", path(&src)),
            "commit",
            "-b",
            "os/stable",
            &format!("--tree=dir={}", path(&tree)),
        ],
    );
    let commit = ok(
        "ostree",
        &[&format!("--repo={}", path(&src)), "rev-parse", "os/stable"],
    )
    .trim()
    .to_owned();

    let (secret, public) = python_key(7);
    let key_file = dir.path().join("secret.key");
    std::fs::write(&key_file, format!("{secret}\n")).unwrap();
    let signed = ok(
        FERRYCTL,
        &[
            "--repo",
            path(&src),
            "sign",
            "os/stable",
            "--ed25519-secret",
            path(&key_file),
        ],
    );
    assert!(signed.contains(&public), "{signed}");

    // ed25519 is deterministic: Python's signature over the raw commit bytes must be
    // the one Ferry stored under `ostree.sign.ed25519`.
    let objects = src.join("objects").join(&commit[..2]);
    let commit_file = objects.join(format!("{}.commit", &commit[2..]));
    let meta_file = objects.join(format!("{}.commitmeta", &commit[2..]));
    let script = format!(
        "import sys\n\
         from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n\
         k = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)\n\
         sig = k.sign(open('{}', 'rb').read())\n\
         meta = open('{}', 'rb').read()\n\
         assert b'ostree.sign.ed25519' in meta, 'key missing'\n\
         assert sig in meta, 'signature differs from the independent one'\n",
        path(&commit_file),
        path(&meta_file)
    );
    ok("python3", &["-c", &script]);

    // A remote that requires this key accepts the commit; one with another key does not.
    for (name, key, should_pass) in [
        ("good", public.clone(), true),
        ("other", python_key(9).1, false),
    ] {
        let client = dir.path().join(name);
        ok(FERRYCTL, &["--repo", path(&client), "init"]);
        ok(
            FERRYCTL,
            &[
                "--repo",
                path(&client),
                "remote",
                "add",
                "origin",
                "http://127.0.0.1:9/",
                "--collection-id",
                "org.example.Os",
                "--sign-verify-key",
                &key,
            ],
        );
        let source = format!("file://{}", path(&src));
        let pulled = run(
            FERRYCTL,
            &["--repo", path(&client), "pull", &source, "os/stable"],
        );
        assert_eq!(
            pulled.status.success(),
            should_pass,
            "{name}: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        let refs = client.join("refs/remotes/origin/os/stable");
        if should_pass {
            ok("ostree", &[&format!("--repo={}", path(&client)), "fsck"]);
            assert_eq!(std::fs::read_to_string(&refs).unwrap().trim(), commit);
        } else {
            let stderr = String::from_utf8_lossy(&pulled.stderr);
            assert!(stderr.contains("os/stable"), "{stderr}");
            assert!(!refs.exists(), "the ref moved to an untrusted commit");
        }
    }
}
