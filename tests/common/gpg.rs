//! Test environment for tests/trust.rs: throwaway GnuPG homes, real `ostree`
//! repositories, and a Python ed25519 helper. Every external command must succeed.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::repo::Checksum;
use glib::Variant;

use super::cmd;

pub use cmd::{output, run, run_with_input};

/// A throwaway GNUPGHOME. Its gpg-agent is stopped on drop.
pub struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-gpg")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home())
            .args(["--batch", "--no-tty", "--quiet"]);
        c
    }

    /// Generates a key with no passphrase; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        run(self.cmd().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            usage,
            expire,
        ]));
        self.fingerprint(uid)
    }

    /// As `gen_key`, at a faked system time (e.g. "20200101T000000").
    pub fn gen_key_at(
        &self,
        time: &str,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
    ) -> String {
        run(self.cmd().args([
            "--faked-system-time",
            &format!("{time}!"),
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            usage,
            expire,
        ]));
        self.fingerprint(uid)
    }

    /// Adds a subkey; returns the subkey's fingerprint.
    pub fn add_subkey(&self, primary: &str, algo: &str, usage: &str) -> String {
        run(self.cmd().args([
            "--passphrase",
            "",
            "--quick-add-key",
            primary,
            algo,
            usage,
            "never",
        ]));
        self.fingerprints(primary).last().unwrap().clone()
    }

    /// Primary and subkey fingerprints of the key matching `who`.
    pub fn fingerprints(&self, who: &str) -> Vec<String> {
        let out = run(self.cmd().args(["--with-colons", "--list-keys", who]));
        out.lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_owned())
            .collect()
    }

    pub fn fingerprint(&self, who: &str) -> String {
        self.fingerprints(who)
            .into_iter()
            .next()
            .expect("key exists")
    }

    pub fn export(&self, who: &str, armor: bool) -> Vec<u8> {
        let mut cmd = self.cmd();
        cmd.arg("--export");
        if armor {
            cmd.arg("--armor");
        }
        let out = cmd::run_output(cmd.arg(who));
        assert!(!out.stdout.is_empty(), "gpg --export {who}");
        out.stdout
    }

    /// Writes the exported key to a file and returns its path.
    pub fn export_to(&self, who: &str, armor: bool, path: &Path) -> PathBuf {
        fs::write(path, self.export(who, armor)).unwrap();
        path.to_owned()
    }

    /// Revokes a key by importing the revocation certificate gpg stored for it.
    pub fn revoke(&self, fpr: &str) {
        let cert = self.home().join(format!("openpgp-revocs.d/{fpr}.rev"));
        let text = fs::read_to_string(&cert).unwrap();
        // gpg prefixes the armor line with ':' so the file is not imported by accident.
        let text = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let path = self.home().join("revocation.asc");
        fs::write(&path, text).unwrap();
        run(self.cmd().arg("--import").arg(&path));
        let listing = run(self.cmd().args(["--with-colons", "--list-keys", fpr]));
        assert!(
            listing.lines().any(|l| l.starts_with("pub:r:")),
            "{listing}"
        );
    }

    /// Makes every later gpg run in this home (including ostree's, through gpgme)
    /// believe it is `time` (e.g. "20200101T120000").
    pub fn fake_time(&self, time: &str) {
        fs::write(
            self.home().join("gpg.conf"),
            format!("faked-system-time {time}!\n"),
        )
        .unwrap();
    }

    /// Detached binary signature of `data`.
    pub fn detach_sign(&self, who: &str, data: &[u8]) -> Vec<u8> {
        let input = self.home().join("to-sign");
        fs::write(&input, data).unwrap();
        cmd::run_output(
            self.cmd()
                .args(["--local-user", who, "--detach-sign", "--output", "-"])
                .arg(&input),
        )
        .stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "all"])
            .status();
    }
}

/// A real OSTree archive repository made with the `ostree` tool.
pub struct OstreeRepo {
    dir: tempfile::TempDir,
    trees: std::cell::Cell<u32>,
}

impl OstreeRepo {
    pub fn init(collection_id: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-ostree")
            .tempdir()
            .unwrap();
        let repo = OstreeRepo {
            dir,
            trees: std::cell::Cell::new(0),
        };
        let mut cmd = repo.ostree();
        cmd.args(["init", "--mode=archive"]);
        if let Some(id) = collection_id {
            cmd.arg(format!("--collection-id={id}"));
        }
        run(&mut cmd);
        repo
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn ostree(&self) -> Command {
        let mut c = Command::new("ostree");
        c.arg(format!("--repo={}", self.path().display()));
        c
    }

    /// Commits a small fresh tree to `branch`; `extra` are more `ostree commit` args.
    pub fn commit(&self, branch: &str, extra: &[&str]) -> Checksum {
        let n = self.trees.get() + 1;
        self.trees.set(n);
        let tree = self.dir.path().join(format!("tree{n}"));
        fs::create_dir_all(tree.join("usr/share")).unwrap();
        fs::write(
            tree.join("usr/share/hello"),
            format!("tree {n} of {branch}\n"),
        )
        .unwrap();
        let out = run(self
            .ostree()
            .args(["commit", "-b", branch, "-s", &format!("commit {n}")])
            .arg(format!("--tree=dir={}", tree.display()))
            .args(extra));
        out.trim()
            .parse()
            .expect("ostree commit prints the checksum")
    }

    pub fn gpg_sign(&self, rev: &str, gpg: &Gpg, key: &str) {
        run(self
            .ostree()
            .arg("gpg-sign")
            .arg(format!("--gpg-homedir={}", gpg.home().display()))
            .args([rev, key]));
    }

    pub fn object_path(&self, checksum: &Checksum, ext: &str) -> PathBuf {
        let hex = checksum.to_hex();
        self.path()
            .join(format!("objects/{}/{}.{ext}", &hex[..2], &hex[2..]))
    }

    pub fn commit_bytes(&self, checksum: &Checksum) -> Vec<u8> {
        fs::read(self.object_path(checksum, "commit")).unwrap()
    }

    pub fn commitmeta_bytes(&self, checksum: &Checksum) -> Option<Vec<u8>> {
        fs::read(self.object_path(checksum, "commitmeta")).ok()
    }

    pub fn commitmeta(&self, checksum: &Checksum) -> Option<Variant> {
        self.commitmeta_bytes(checksum)
            .map(|b| ferry::trust::parse_detached_metadata(&b).expect("valid .commitmeta"))
    }

    pub fn write_commitmeta(&self, checksum: &Checksum, meta: &Variant) {
        fs::write(self.object_path(checksum, "commitmeta"), meta.data()).unwrap();
    }
}

/// An ed25519 key pair made by Python's `cryptography`: (secret base64 of seed ||
/// public, public base64).
pub fn python_keypair() -> (String, String) {
    let out = run(Command::new("python3").args([
        "-c",
        r#"
import base64
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
k = Ed25519PrivateKey.generate()
seed = k.private_bytes_raw()
pub = k.public_key().public_bytes_raw()
print(base64.b64encode(seed + pub).decode())
print(base64.b64encode(pub).decode())
"#,
    ]));
    let mut lines = out.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

/// Signs `data` with Python's `cryptography`, using the seed of `secret_b64`.
pub fn python_sign(secret_b64: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let out = run_with_input(
        Command::new("python3").args([
            "-c",
            r#"
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
seed = base64.b64decode(sys.argv[1])[:32]
data = sys.stdin.buffer.read()
print(base64.b64encode(Ed25519PrivateKey.from_private_bytes(seed).sign(data)).decode())
"#,
            secret_b64,
        ]),
        data,
    );
    base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .unwrap()
}

/// Whether Python's `cryptography` accepts `sig` over `data` by `public_b64`.
pub fn python_verifies(public_b64: &str, sig: &[u8], data: &[u8]) -> bool {
    use base64::Engine as _;
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    let out = run_with_input(
        Command::new("python3").args([
            "-c",
            r#"
import base64, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(sys.argv[1]))
try:
    key.verify(base64.b64decode(sys.argv[2]), sys.stdin.buffer.read())
    print("good")
except InvalidSignature:
    print("bad")
"#,
            public_b64,
            &sig_b64,
        ]),
        data,
    );
    match out.trim() {
        "good" => true,
        "bad" => false,
        other => panic!("unexpected python output {other}"),
    }
}
