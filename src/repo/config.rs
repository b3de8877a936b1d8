//! The repository configuration: `REPO/config`, a GLib key file shared with `ostree`.
//!
//! Ferry reads and writes it with `glib::KeyFile`, as libostree does, so that either
//! tool can configure the repository: a new config is byte for byte what
//! `ostree init --mode=archive` writes, and a remote Ferry adds is byte for byte what
//! `ostree remote add` writes. Comments, unknown groups and unknown keys survive a
//! save. Saving is atomic (temporary file in the repository, fsync, rename, fsync).
//!
//! Ferry's own settings live in a `[ferry]` group, which `ostree` ignores:
//! `tracked-refs=REMOTE:REF;REMOTE:REF;` lists the refs Ferry keeps up to date.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use glib::{KeyFile, KeyFileFlags};

use crate::repo::durable;
use crate::repo::error::{RepoError, Result};
use crate::repo::refs::{self, parse_refspec, validate_collection_id, validate_ref_name};

/// The config file's name in the repository root.
pub const CONFIG_FILE: &str = "config";

const CORE: &str = "core";
const FERRY: &str = "ferry";
const TRACKED_REFS: &str = "tracked-refs";

/// The repository modes Ferry reads and writes (`[core] mode=`). They differ only
/// in how file objects are stored (see `repo::modes`); metadata objects, refs and
/// the layout are the same in all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RepoMode {
    /// `mode=archive-z2`: file objects as `.filez` (what `ostree init --mode=archive`
    /// writes).
    ArchiveZ2,
    /// `mode=archive`: the same format under its newer name.
    Archive,
    /// `mode=bare`: file objects as the files themselves (`.file`), with their
    /// owner, mode and extended attributes; needs root to write.
    Bare,
    /// `mode=bare-user`: regular files (symlinks too) whose owner, mode and
    /// extended attributes live in the `user.ostreemeta` extended attribute.
    BareUser,
    /// `mode=bare-user-only`: plain files and symlinks with canonical permissions,
    /// no owner and no extended attributes (Flatpak's system repository).
    BareUserOnly,
}

impl RepoMode {
    /// Every mode, in the order `ferryctl init --mode` lists them.
    pub const ALL: [RepoMode; 5] = [
        RepoMode::ArchiveZ2,
        RepoMode::Archive,
        RepoMode::Bare,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RepoMode::ArchiveZ2 => "archive-z2",
            RepoMode::Archive => "archive",
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::BareUserOnly => "bare-user-only",
        }
    }

    /// Parses a `[core] mode=` value; any other mode (`bare-split-xattrs`, a typo)
    /// is [`RepoError::UnsupportedMode`].
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| RepoError::UnsupportedMode(s.to_owned()))
    }

    /// Whether file objects are stored as `.filez` (compressed, with their header).
    pub fn is_archive(self) -> bool {
        matches!(self, RepoMode::ArchiveZ2 | RepoMode::Archive)
    }

    /// The file name extension of stored file objects: `filez` or `file`.
    pub fn file_extension(self) -> &'static str {
        if self.is_archive() {
            "filez"
        } else {
            "file"
        }
    }
}

impl fmt::Display for RepoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `[remote "NAME"]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteConfig {
    pub name: String,
    /// `url=`; a remote configured with `metalink=` reads as `metalink=URL`, the form
    /// `ostree remote add` accepts.
    pub url: String,
    /// `collection-id=`
    pub collection_id: Option<String>,
    /// `gpg-verify=` (libostree's default: true)
    pub gpg_verify: bool,
    /// `gpg-verify-summary=` (default false)
    pub gpg_verify_summary: bool,
    /// `sign-verify=` (default false)
    pub sign_verify: bool,
    /// `sign-verify-summary=` (default false)
    pub sign_verify_summary: bool,
    /// `verification-ed25519-key=`: base64 public key(s).
    pub verification_ed25519_key: Option<String>,
    /// `verification-ed25519-file=`: a file of base64 public keys, one a line.
    pub verification_ed25519_file: Option<PathBuf>,
}

impl RemoteConfig {
    /// A remote with libostree's defaults (GPG verification on, nothing else).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            collection_id: None,
            gpg_verify: true,
            gpg_verify_summary: false,
            sign_verify: false,
            sign_verify_summary: false,
            verification_ed25519_key: None,
            verification_ed25519_file: None,
        }
    }

    /// The key file group: `remote "NAME"`.
    pub fn group_name(name: &str) -> String {
        format!("remote \"{name}\"")
    }

    /// The remote's GPG keyring, as `ostree remote add --gpg-import` writes it:
    /// `REPO/NAME.trustedkeys.gpg`.
    pub fn keyring_path(&self, repo_root: &Path) -> PathBuf {
        repo_root.join(format!("{}.trustedkeys.gpg", self.name))
    }
}

/// A (remote, ref) pair Ferry keeps up to date.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TrackedRef {
    pub remote: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
}

impl fmt::Display for TrackedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.remote, self.ref_name)
    }
}

/// `REPO/config`, loaded; changes are kept in memory until [`RepoConfig::save`].
///
/// Wraps a `glib::KeyFile`, so it is not `Send`: keep it on one thread.
#[derive(Debug)]
pub struct RepoConfig {
    root: PathBuf,
    keyfile: KeyFile,
}

fn key_error(what: impl fmt::Display, err: glib::Error) -> RepoError {
    RepoError::Config(format!("{what}: {}", err.message()))
}

fn is_missing(err: &glib::Error) -> bool {
    err.matches(glib::KeyFileError::KeyNotFound) || err.matches(glib::KeyFileError::GroupNotFound)
}

impl RepoConfig {
    /// A new archive-mode config for the repository at `root`, as
    /// `ostree init --mode=archive [--collection-id=ID]` writes it. Nothing is
    /// written until [`save`](Self::save).
    pub fn new(root: impl Into<PathBuf>, collection_id: Option<&str>) -> Result<Self> {
        Self::with_mode(root, RepoMode::ArchiveZ2, collection_id)
    }

    /// A new config of the given mode, as `ostree init --mode=MODE
    /// [--collection-id=ID]` writes it.
    pub fn with_mode(
        root: impl Into<PathBuf>,
        mode: RepoMode,
        collection_id: Option<&str>,
    ) -> Result<Self> {
        if let Some(id) = collection_id {
            validate_collection_id(id)?;
        }
        let keyfile = KeyFile::new();
        keyfile.set_string(CORE, "repo_version", "1");
        keyfile.set_string(CORE, "mode", mode.as_str());
        if let Some(id) = collection_id {
            keyfile.set_string(CORE, "collection-id", id);
        }
        Ok(Self {
            root: root.into(),
            keyfile,
        })
    }

    /// Loads `root/config`. [`RepoError::NotARepository`] if there is none;
    /// [`RepoError::UnsupportedMode`] for a mode Ferry does not know.
    pub fn load(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let path = root.join(CONFIG_FILE);
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(RepoError::NotARepository(root))
            }
            Err(err) => return Err(RepoError::io(&path, err)),
        };
        Self::parse(root, data)
    }

    /// Reads the bytes of `root/config` (as [`load`](Self::load) does after reading
    /// the file), with the same checks.
    pub fn parse(root: impl Into<PathBuf>, data: Vec<u8>) -> Result<Self> {
        let root = root.into();
        // GKeyFile checks neither group names nor raw values for UTF-8, and glib's
        // Rust strings must be UTF-8: refuse such a file whole.
        if let Err(err) = std::str::from_utf8(&data) {
            return Err(RepoError::Config(format!(
                "{}: not UTF-8 text ({err})",
                root.join(CONFIG_FILE).display()
            )));
        }
        let keyfile = KeyFile::new();
        keyfile
            .load_from_bytes(
                &glib::Bytes::from_owned(data),
                KeyFileFlags::KEEP_COMMENTS | KeyFileFlags::KEEP_TRANSLATIONS,
            )
            .map_err(|err| key_error(root.join(CONFIG_FILE).display(), err))?;
        let config = Self { root, keyfile };
        config.check_core()?;
        Ok(config)
    }

    fn check_core(&self) -> Result<()> {
        let version = self
            .keyfile
            .value(CORE, "repo_version")
            .map_err(|err| key_error("[core] repo_version", err))?;
        if version.trim() != "1" {
            return Err(RepoError::Config(format!(
                "unsupported repo_version “{version}”"
            )));
        }
        self.mode()?;
        if let Some(id) = self.collection_id()? {
            validate_collection_id(&id)?;
        }
        Ok(())
    }

    /// The repository root this config belongs to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The underlying key file (for settings this type does not model).
    pub fn keyfile(&self) -> &KeyFile {
        &self.keyfile
    }

    /// The config as it would be saved.
    pub fn to_data(&self) -> String {
        self.keyfile.to_data().into()
    }

    /// Writes the config atomically to `root/config`.
    pub fn save(&self) -> Result<()> {
        durable::write_atomic(&self.root, CONFIG_FILE, self.to_data().as_bytes())
    }

    fn optional_string(&self, group: &str, key: &str) -> Result<Option<String>> {
        match self.keyfile.string(group, key) {
            Ok(value) => Ok(Some(value.into())),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(key_error(format_args!("[{group}] {key}"), err)),
        }
    }

    fn boolean_or(&self, group: &str, key: &str, default: bool) -> Result<bool> {
        match self.keyfile.boolean(group, key) {
            Ok(value) => Ok(value),
            Err(err) if is_missing(&err) => Ok(default),
            Err(err) => Err(key_error(format_args!("[{group}] {key}"), err)),
        }
    }

    /// `[core] mode`; absent means `bare`, as for libostree.
    pub fn mode(&self) -> Result<RepoMode> {
        let mode = self
            .optional_string(CORE, "mode")?
            .unwrap_or_else(|| "bare".to_owned());
        RepoMode::parse(mode.trim())
    }

    /// `[core] collection-id`, if set.
    pub fn collection_id(&self) -> Result<Option<String>> {
        Ok(self
            .optional_string(CORE, "collection-id")?
            .filter(|id| !id.is_empty()))
    }

    /// Sets or removes `[core] collection-id`.
    pub fn set_collection_id(&mut self, collection_id: Option<&str>) -> Result<()> {
        match collection_id {
            Some(id) => {
                validate_collection_id(id)?;
                self.keyfile.set_string(CORE, "collection-id", id);
            }
            None => {
                let _ = self.keyfile.remove_key(CORE, "collection-id");
            }
        }
        Ok(())
    }

    fn read_remote(&self, name: &str, group: &str) -> Result<RemoteConfig> {
        let url = match self.optional_string(group, "url")? {
            Some(url) => url,
            None => match self.optional_string(group, "metalink")? {
                Some(metalink) => format!("metalink={metalink}"),
                None => return Err(RepoError::Config(format!("remote “{name}” has no url"))),
            },
        };
        let collection_id = self
            .optional_string(group, "collection-id")?
            .filter(|id| !id.is_empty());
        if let Some(id) = &collection_id {
            validate_collection_id(id)?;
        }
        Ok(RemoteConfig {
            name: name.to_owned(),
            url,
            collection_id,
            gpg_verify: self.boolean_or(group, "gpg-verify", true)?,
            gpg_verify_summary: self.boolean_or(group, "gpg-verify-summary", false)?,
            sign_verify: self.boolean_or(group, "sign-verify", false)?,
            sign_verify_summary: self.boolean_or(group, "sign-verify-summary", false)?,
            verification_ed25519_key: self
                .optional_string(group, "verification-ed25519-key")?
                .filter(|k| !k.is_empty()),
            verification_ed25519_file: self
                .optional_string(group, "verification-ed25519-file")?
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
        })
    }

    /// Names of the configured remotes, in file order (groups `[remote "NAME"]`).
    pub fn remote_names(&self) -> Vec<String> {
        self.keyfile
            .groups()
            .iter()
            .filter_map(|group| {
                let group = group.to_gstr().as_str();
                group
                    .strip_prefix("remote \"")
                    .and_then(|rest| rest.strip_suffix('"'))
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
            })
            .collect()
    }

    /// All configured remotes, in file order.
    pub fn remotes(&self) -> Result<Vec<RemoteConfig>> {
        self.remote_names()
            .iter()
            .map(|name| self.read_remote(name, &RemoteConfig::group_name(name)))
            .collect()
    }

    /// One remote; [`RepoError::NoSuchRemote`] if it is not configured.
    pub fn remote(&self, name: &str) -> Result<RemoteConfig> {
        let group = RemoteConfig::group_name(name);
        if !self.keyfile.has_group(&group) {
            return Err(RepoError::NoSuchRemote(name.to_owned()));
        }
        self.read_remote(name, &group)
    }

    /// Adds a remote exactly as
    /// `ostree remote add NAME URL [--set=gpg-verify-summary=true] [--set=sign-verify=true]
    /// [--set=sign-verify-summary=true]
    /// [--set=verification-ed25519-key=K] [--set=verification-ed25519-file=F]
    /// [--no-gpg-verify] [--collection-id=ID]` writes it: `url` first, then the
    /// `--set` keys, then `gpg-verify=false`, then `collection-id`. Options at their
    /// defaults are not written. [`RepoError::RemoteExists`] if the name is taken.
    pub fn add_remote(&mut self, remote: &RemoteConfig) -> Result<()> {
        refs::validate_remote_name(&remote.name)?;
        if remote.url.is_empty() {
            return Err(RepoError::Config(format!(
                "remote “{}” needs a URL",
                remote.name
            )));
        }
        if let Some(id) = &remote.collection_id {
            validate_collection_id(id)?;
        }
        let group = RemoteConfig::group_name(&remote.name);
        if self.keyfile.has_group(&group) {
            return Err(RepoError::RemoteExists(remote.name.clone()));
        }
        let kf = &self.keyfile;
        match remote.url.strip_prefix("metalink=") {
            Some(metalink) => kf.set_string(&group, "metalink", metalink),
            None => kf.set_string(&group, "url", &remote.url),
        }
        if remote.gpg_verify_summary {
            kf.set_string(&group, "gpg-verify-summary", "true");
        }
        if remote.sign_verify {
            kf.set_string(&group, "sign-verify", "true");
        }
        if remote.sign_verify_summary {
            kf.set_string(&group, "sign-verify-summary", "true");
        }
        if let Some(key) = &remote.verification_ed25519_key {
            kf.set_string(&group, "verification-ed25519-key", key);
        }
        if let Some(file) = &remote.verification_ed25519_file {
            kf.set_string(&group, "verification-ed25519-file", &file.to_string_lossy());
        }
        if !remote.gpg_verify {
            kf.set_boolean(&group, "gpg-verify", false);
        }
        if let Some(id) = &remote.collection_id {
            kf.set_string(&group, "collection-id", id);
        }
        Ok(())
    }

    /// Removes a remote's section, and Ferry's tracking of its refs.
    /// [`RepoError::NoSuchRemote`] if it is not configured. (Like the config part of
    /// `ostree remote delete`; the keyring and `refs/remotes/NAME` are left alone.)
    pub fn remove_remote(&mut self, name: &str) -> Result<()> {
        let group = RemoteConfig::group_name(name);
        if !self.keyfile.has_group(&group) {
            return Err(RepoError::NoSuchRemote(name.to_owned()));
        }
        self.keyfile
            .remove_group(&group)
            .map_err(|err| key_error(&group, err))?;
        let tracked = self.tracked()?;
        if tracked.iter().any(|t| t.remote == name) {
            let kept: Vec<_> = tracked.into_iter().filter(|t| t.remote != name).collect();
            self.set_tracked(&kept);
        }
        Ok(())
    }

    /// The refs Ferry keeps up to date (`[ferry] tracked-refs`), in the order added.
    pub fn tracked(&self) -> Result<Vec<TrackedRef>> {
        let list = match self.keyfile.string_list(FERRY, TRACKED_REFS) {
            Ok(list) => list,
            Err(err) if is_missing(&err) => return Ok(Vec::new()),
            Err(err) => return Err(key_error(format_args!("[{FERRY}] {TRACKED_REFS}"), err)),
        };
        list.iter()
            .map(|entry| {
                let entry = entry.to_gstr().as_str().trim();
                match parse_refspec(entry) {
                    Ok((Some(remote), ref_name)) => Ok(TrackedRef { remote, ref_name }),
                    _ => Err(RepoError::Config(format!(
                        "[{FERRY}] {TRACKED_REFS}: “{entry}” is not REMOTE:REF"
                    ))),
                }
            })
            .collect()
    }

    fn set_tracked(&self, tracked: &[TrackedRef]) {
        if tracked.is_empty() {
            let _ = self.keyfile.remove_key(FERRY, TRACKED_REFS);
            if self
                .keyfile
                .keys(FERRY)
                .map(|keys| keys.is_empty())
                .unwrap_or(false)
            {
                let _ = self.keyfile.remove_group(FERRY);
            }
            return;
        }
        // GKeyFile list syntax; names never contain `;`, `\` or whitespace.
        let value: String = tracked.iter().map(|t| format!("{t};")).collect();
        self.keyfile.set_value(FERRY, TRACKED_REFS, &value);
    }

    /// Starts keeping `remote:ref_name` up to date; returns false if it already was.
    /// The remote must be configured.
    pub fn track(&mut self, remote: &str, ref_name: &str) -> Result<bool> {
        validate_ref_name(ref_name)?;
        if !self.keyfile.has_group(&RemoteConfig::group_name(remote)) {
            return Err(RepoError::NoSuchRemote(remote.to_owned()));
        }
        let mut tracked = self.tracked()?;
        let entry = TrackedRef {
            remote: remote.to_owned(),
            ref_name: ref_name.to_owned(),
        };
        if tracked.contains(&entry) {
            return Ok(false);
        }
        tracked.push(entry);
        self.set_tracked(&tracked);
        Ok(true)
    }

    /// Stops keeping `remote:ref_name` up to date; returns whether it was tracked.
    pub fn untrack(&mut self, remote: &str, ref_name: &str) -> Result<bool> {
        let mut tracked = self.tracked()?;
        let before = tracked.len();
        tracked.retain(|t| !(t.remote == remote && t.ref_name == ref_name));
        if tracked.len() == before {
            return Ok(false);
        }
        self.set_tracked(&tracked);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_config_text() {
        let c = RepoConfig::new("/nonexistent", Some("org.example.Os")).unwrap();
        assert_eq!(
            c.to_data(),
            "[core]\nrepo_version=1\nmode=archive-z2\ncollection-id=org.example.Os\n"
        );
        assert!(RepoConfig::new("/x", Some("nodots")).is_err());
    }

    /// Found by tests/fuzz: GKeyFile took a group name (or a raw value) that is not
    /// UTF-8, and reading it as a Rust string tripped glib's debug assertion (and
    /// would be undefined behaviour in a release build).
    #[test]
    fn non_utf8_config_is_an_error() {
        let config = b"[core]\nrepo_version=1\nmode=archive-z2\n[remote \"o\xff\"]\nurl=x\n";
        assert!(matches!(
            RepoConfig::parse("/x", config.to_vec()),
            Err(RepoError::Config(m)) if m.contains("not UTF-8")
        ));
        let value = b"[core]\nrepo_version=1\xfe\nmode=archive-z2\n";
        assert!(RepoConfig::parse("/x", value.to_vec()).is_err());
        let good = b"[core]\nrepo_version=1\nmode=archive-z2\n[remote \"\xc3\xa9\"]\nurl=x\n";
        let c = RepoConfig::parse("/x", good.to_vec()).unwrap();
        assert_eq!(c.remote_names(), vec!["\u{e9}".to_owned()]);
    }

    #[test]
    fn modes() {
        assert_eq!(RepoMode::parse("archive").unwrap(), RepoMode::Archive);
        for mode in RepoMode::ALL {
            assert_eq!(RepoMode::parse(mode.as_str()).unwrap(), mode);
        }
        assert_eq!(
            RepoMode::parse("bare-user").unwrap().file_extension(),
            "file"
        );
        assert!(matches!(
            RepoMode::parse("bare-split-xattrs"),
            Err(RepoError::UnsupportedMode(m)) if m == "bare-split-xattrs"
        ));
    }

    #[test]
    fn tracking() {
        let mut c = RepoConfig::new("/x", None).unwrap();
        assert!(matches!(
            c.track("origin", "os/stable"),
            Err(RepoError::NoSuchRemote(_))
        ));
        c.add_remote(&RemoteConfig::new("origin", "http://example.com/repo"))
            .unwrap();
        assert!(c.track("origin", "os/stable").unwrap());
        assert!(!c.track("origin", "os/stable").unwrap());
        assert!(c.track("origin", "os/beta").unwrap());
        assert!(c
            .to_data()
            .contains("tracked-refs=origin:os/stable;origin:os/beta;\n"));
        assert!(c.untrack("origin", "os/beta").unwrap());
        c.remove_remote("origin").unwrap();
        assert!(c.tracked().unwrap().is_empty());
        assert!(!c.to_data().contains("[ferry]"));
    }
}
