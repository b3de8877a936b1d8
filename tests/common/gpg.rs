//! GnuPG for the tests: one throwaway home ([`Gpg`]) and one ready signing key
//! ([`Signer`]). The gpg-agent a home starts is stopped on drop, also when a test
//! fails.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cmd::{run, run_output};
use super::ostree;

/// A throwaway GNUPGHOME (mode 0700). Its gpg-agent is stopped on drop.
pub struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Self {
        // Short path in /tmp: gpg-agent's socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("fgpg")
            .tempdir_in("/tmp")
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
        self.quick_gen_key(&[], uid, algo, usage, expire)
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
        let faked = format!("{time}!");
        self.quick_gen_key(&["--faked-system-time", &faked], uid, algo, usage, expire)
    }

    fn quick_gen_key(
        &self,
        options: &[&str],
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
    ) -> String {
        run(self.cmd().args(options).args([
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
        let out = run_output(cmd.arg(who));
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
        run_output(
            self.cmd()
                .args(["--local-user", who, "--detach-sign", "--output", "-"])
                .arg(&input),
        )
        .stdout
    }

    /// `ostree gpg-sign REV KEY` in `repo`, with this home.
    pub fn ostree_sign(&self, repo: &Path, rev: &str, key: &str) {
        run(ostree(repo)
            .arg("gpg-sign")
            .arg(format!("--gpg-homedir={}", self.home().display()))
            .args([rev, key]));
    }

    /// `ostree summary -u --gpg-sign=KEY`: a new summary and its `summary.sig`.
    pub fn sign_summary(&self, repo: &Path, key: &str) {
        run(ostree(repo)
            .args(["summary", "-u"])
            .arg(format!("--gpg-sign={key}"))
            .arg(format!("--gpg-homedir={}", self.home().display())));
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One ed25519 signing key without a passphrase in its own [`Gpg`] home, with
/// its public key exported (binary) for `--gpg-import` and `Trust::Gpg`.
pub struct Signer {
    pub gpg: Gpg,
    pub uid: String,
    /// The key's fingerprint.
    pub key: String,
    /// The exported public key.
    pub public: PathBuf,
}

impl Signer {
    pub fn new(uid: &str) -> Self {
        let gpg = Gpg::new();
        let key = gpg.gen_key(uid, "ed25519", "sign", "never");
        let public = gpg.export_to(&key, false, &gpg.home().join("public.gpg"));
        Signer {
            gpg,
            uid: uid.to_owned(),
            key,
            public,
        }
    }

    pub fn home(&self) -> &Path {
        self.gpg.home()
    }

    /// `gpg` in this key's home.
    pub fn cmd(&self) -> Command {
        self.gpg.cmd()
    }

    /// `ostree gpg-sign` of `rev` in `repo` with this key.
    pub fn sign(&self, repo: &Path, rev: &str) {
        self.gpg.ostree_sign(repo, rev, &self.key);
    }

    /// `ostree summary -u` signed with this key.
    pub fn sign_summary(&self, repo: &Path) {
        self.gpg.sign_summary(repo, &self.key);
    }

    /// Writes the armored public key to `path`.
    pub fn export_armored(&self, path: &Path) {
        self.gpg.export_to(&self.key, true, path);
    }

    /// Fingerprints in a keyring file, read by gpg itself.
    pub fn keyring_fingerprints(&self, keyring: &Path) -> Vec<String> {
        let out = run(self
            .cmd()
            .args(["--no-default-keyring", "--keyring"])
            .arg(keyring)
            .args(["--with-colons", "--list-keys"]));
        out.lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9).map(str::to_owned))
            .collect()
    }
}
