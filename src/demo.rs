//! A self-contained world to try Ferry in (`ferry --demo`): an upstream repository
//! with three signed commits served over loopback HTTP, a "USB stick" in a sideload
//! directory holding the middle commit, a "nearby computer" serving the newest one,
//! and a local repository that tracks the upstream ref at the oldest commit.
//!
//! The repositories are made by the real `ostree` tool, the commits signed with a
//! throwaway GPG key (unsigned, with verification off, when `gpg` is missing).
//! Both servers are Ferry's own ([`crate::share::server`]), rate limited so that a
//! download takes a few seconds. Nothing leaves loopback: discovery of nearby
//! computers is off, the servers listen on 127.0.0.1 only.
//!
//! Nothing here imports GTK.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{RngCore, SeedableRng};

use crate::repo::config::RepoConfig;
use crate::share::server::{Listen, RepoServer, ServerConfig};
use crate::sources::{DiscoveryOptions, LanInterfaces};

/// The demo's collection id.
pub const COLLECTION_ID: &str = "io.github.ferry_updates.Demo";
/// The ref the demo's local repository tracks.
pub const REF: &str = "demo/os/stable";
/// The remote the local repository has for the upstream.
pub const REMOTE: &str = "demo";
/// The versions committed upstream: installed, on the USB stick, newest.
pub const VERSIONS: [u32; 3] = [40, 41, 42];
/// The sideload entry that stands for a USB stick (its name is what Ferry shows).
pub const USB_NAME: &str = "Demo USB stick";
/// Where the demo is built, instead of a new temporary directory.
pub const DIR_ENV: &str = "FERRY_DEMO_DIR";
/// Bytes per second each demo server sends (e.g. `500k`, `2M`).
pub const RATE_ENV: &str = "FERRY_DEMO_RATE";
const DEFAULT_RATE: u64 = 1_000_000;
/// File objects in the demo tree, and their sizes.
const BLOBS: u64 = 48;
const BLOB_BASE: u64 = 96 * 1024;
const BLOB_STEP: u64 = 24 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} failed: {1}")]
    Command(String, String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error(transparent)]
    Share(#[from] crate::share::ShareError),
    #[error("{0}")]
    Other(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs a command; its stdout when it succeeds.
fn run(cmd: &mut Command) -> Result<String, DemoError> {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| DemoError::Command(what.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(DemoError::Command(
            what,
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ostree(repo: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

/// A GnuPG home with one signing key, made for the demo.
struct Signer {
    home: PathBuf,
    key_id: String,
}

impl Signer {
    fn create(home: &Path) -> Result<Self, DemoError> {
        fs::create_dir_all(home).map_err(io_error(home))?;
        fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io_error(home))?;
        let gpg = |args: &[&str]| {
            run(Command::new("gpg")
                .env("GNUPGHOME", home)
                .args(["--batch", "--no-tty", "--quiet"])
                .args(args))
        };
        let uid = "Ferry demo <demo@ferry-updates.invalid>";
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ])?;
        let colons = gpg(&["--with-colons", "--list-keys", uid])?;
        let key_id = colons
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .ok_or_else(|| DemoError::Other("gpg made no key".into()))?
            .to_owned();
        let armored = gpg(&["--armor", "--export", uid])?;
        let key_file = home.join("demo.asc");
        fs::write(&key_file, armored).map_err(io_error(&key_file))?;
        Ok(Self {
            home: home.to_owned(),
            key_id,
        })
    }

    fn args(&self) -> [String; 2] {
        [
            format!("--gpg-sign={}", self.key_id),
            format!("--gpg-homedir={}", self.home.display()),
        ]
    }

    fn public_key(&self) -> PathBuf {
        self.home.join("demo.asc")
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        // gpg leaves an agent behind for the home directory.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "all"])
            .output();
    }
}

/// Writes the demo tree of `version`: a third of the files change in every
/// version, a third changed in the middle version only, a third never change. So
/// the USB stick (middle version) holds part of the newest version.
fn write_tree(root: &Path, version: u32) -> Result<(), DemoError> {
    let [oldest, middle, _] = VERSIONS;
    let blobs = root.join("usr/lib/ferry-demo");
    fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
    for i in 0..BLOBS {
        let changed_in = match i % 3 {
            0 => version,
            1 => version.min(middle),
            _ => oldest,
        };
        let len = BLOB_BASE + (i * 7 % 9) * BLOB_STEP;
        let mut data = vec![0u8; len as usize];
        rand::rngs::StdRng::seed_from_u64(i * 1000 + u64::from(changed_in)).fill_bytes(&mut data);
        let path = blobs.join(format!("part-{i:02}.bin"));
        fs::write(&path, data).map_err(io_error(&path))?;
    }
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(io_error(&etc))?;
    let os_release = etc.join("os-release");
    fs::write(
        &os_release,
        format!("NAME=\"Ferry Demo OS\"\nID=ferry-demo\nVERSION_ID={version}\n"),
    )
    .map_err(io_error(&os_release))?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The on-disk part of the world, made without a main loop.
struct Layout {
    dir: PathBuf,
    upstream: PathBuf,
    nearby: PathBuf,
    local: PathBuf,
    sideload: PathBuf,
    commits: Vec<String>,
}

impl Layout {
    fn build(dir: &Path) -> Result<Self, DemoError> {
        let upstream = dir.join("upstream");
        let nearby = dir.join("nearby-computer");
        let local = dir.join("local");
        let usb = dir.join("usb-stick");
        let sideload = dir.join("sideload");
        for path in [&usb, &sideload] {
            fs::create_dir_all(path).map_err(io_error(path))?;
        }
        let signer = match Signer::create(&dir.join("gnupg")) {
            Ok(signer) => Some(signer),
            Err(e) => {
                glib::g_warning!(
                    crate::sources::LOG_DOMAIN,
                    "demo: cannot make a signing key, commits stay unsigned: {e}"
                );
                None
            }
        };
        let sign_args: Vec<String> = signer.iter().flat_map(Signer::args).collect();

        run(ostree(&upstream)
            .args(["init", "--mode=archive"])
            .arg(format!("--collection-id={COLLECTION_ID}")))?;
        run(ostree(&local).args(["init", "--mode=archive"]))?;
        let mut remote_add = ostree(&local);
        remote_add
            .args(["remote", "add"])
            .arg(format!("--collection-id={COLLECTION_ID}"));
        match &signer {
            Some(s) => remote_add.arg(format!("--gpg-import={}", s.public_key().display())),
            None => remote_add.arg("--no-gpg-verify"),
        };
        // The URL is set once the server has a port.
        run(remote_add.args([REMOTE, "http://127.0.0.1:9/0"]))?;

        let days_ago = |days: u64| now().saturating_sub(days * 24 * 3600);
        let ages = [40, 12, 2];
        let tree = dir.join("tree");
        let mut commits = Vec::new();
        for (version, age) in VERSIONS.into_iter().zip(ages) {
            write_tree(&tree, version)?;
            run(ostree(&upstream)
                .args(["commit", "-b", REF])
                .arg(format!("--tree=dir={}", tree.display()))
                .arg(format!("--add-metadata-string=version={version}"))
                .arg(format!("--subject=Ferry Demo OS {version}"))
                .arg(format!("--timestamp=@{}", days_ago(age)))
                // The size index lets the window say how much there is to download.
                .arg("--generate-sizes")
                .args(&sign_args))?;
            commits.push(
                run(ostree(&upstream).args(["rev-parse", REF]))?
                    .trim()
                    .to_owned(),
            );
            if version == VERSIONS[0] {
                // What this computer has installed.
                run(ostree(&local)
                    .args(["pull-local", &format!("--remote={REMOTE}")])
                    .arg(&upstream)
                    .arg(REF))?;
            }
        }
        fs::remove_dir_all(&tree).map_err(io_error(&tree))?;
        let mut summary = ostree(&upstream);
        summary.args(["summary", "-u"]);
        if let Some(s) = &signer {
            summary.args(s.args());
        }
        run(&mut summary)?;

        // The USB stick holds the middle version, as `ostree create-usb` writes it.
        run(ostree(&upstream)
            .arg("create-usb")
            .arg(format!("--commit={}", commits[1]))
            .arg(&usb)
            .args([COLLECTION_ID, REF]))?;
        let link = sideload.join(USB_NAME);
        std::os::unix::fs::symlink(&usb, &link).map_err(io_error(&link))?;

        // The nearby computer updated from the upstream already and shares what it has.
        run(ostree(&nearby).args(["init", "--mode=archive"]))?;
        run(ostree(&nearby)
            .args(["remote", "add", "--no-gpg-verify"])
            .arg(format!("--collection-id={COLLECTION_ID}"))
            .args([REMOTE, "http://127.0.0.1:9/0"]))?;
        run(ostree(&nearby)
            .args(["pull-local", &format!("--remote={REMOTE}")])
            .arg(&upstream)
            .arg(REF))?;

        let mut config = RepoConfig::load(&local)?;
        config.track(REMOTE, REF)?;
        config.save()?;

        // Dropping the signer stops its gpg-agent: nothing is signed any more.
        drop(signer);
        Ok(Self {
            dir: dir.to_owned(),
            upstream,
            nearby,
            local,
            sideload,
            commits,
        })
    }
}

/// Sets the URL of the local repository's demo remote.
fn set_remote_url(repo: &Path, url: &str) -> Result<(), DemoError> {
    let config = RepoConfig::load(repo)?;
    config.keyfile().set_string(
        &crate::repo::config::RemoteConfig::group_name(REMOTE),
        "url",
        url,
    );
    config.save()?;
    Ok(())
}

/// A running demo world. Dropping it stops the servers and, when it made the
/// directory itself, removes it.
pub struct DemoWorld {
    dir: PathBuf,
    owns_dir: bool,
    local: PathBuf,
    sideload: PathBuf,
    commits: Vec<String>,
    upstream_url: String,
    nearby_url: String,
    servers: Vec<RepoServer>,
}

impl DemoWorld {
    /// Builds the world in `$FERRY_DEMO_DIR` (which must be empty or missing) or in
    /// a new temporary directory, and starts its servers on the thread-default main
    /// context. The slow part runs on a worker thread.
    pub async fn create() -> Result<Self, DemoError> {
        let (dir, owns_dir) = match std::env::var_os(DIR_ENV) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                fs::create_dir_all(&dir).map_err(io_error(&dir))?;
                let empty = fs::read_dir(&dir).map_err(io_error(&dir))?.next().is_none();
                if !empty {
                    return Err(DemoError::Other(format!(
                        "{DIR_ENV}={} is not empty",
                        dir.display()
                    )));
                }
                (dir, false)
            }
            None => {
                let template = glib::tmp_dir().join("ferry-demo-XXXXXX");
                let dir = glib::mkdtemp(&template).ok_or_else(|| DemoError::Io {
                    path: template,
                    source: std::io::Error::last_os_error(),
                })?;
                (dir, true)
            }
        };
        let build_dir = dir.clone();
        let built = gio::spawn_blocking(move || Layout::build(&build_dir))
            .await
            .unwrap_or_else(|_| Err(DemoError::Other("the demo builder panicked".into())));
        let layout = match built {
            Ok(layout) => layout,
            Err(e) => {
                if owns_dir {
                    let _ = fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let rate = std::env::var(RATE_ENV)
            .ok()
            .and_then(|r| crate::share::parse_rate(&r).ok())
            .unwrap_or(DEFAULT_RATE);
        let mut world = Self {
            dir: layout.dir.clone(),
            owns_dir,
            local: layout.local.clone(),
            sideload: layout.sideload.clone(),
            commits: layout.commits.clone(),
            upstream_url: String::new(),
            nearby_url: String::new(),
            servers: Vec::new(),
        };
        // The upstream answers as "localhost", the nearby computer on another
        // loopback address: two names in the list.
        let serve = |repo: &Path, ip: Ipv4Addr| -> Result<RepoServer, DemoError> {
            let mut config = ServerConfig::new(repo);
            config.listen = Listen::Addresses(vec![IpAddr::V4(ip)]);
            config.port = 0;
            config.bandwidth_limit = Some(rate);
            Ok(RepoServer::start(config)?)
        };
        let upstream = serve(&layout.upstream, Ipv4Addr::LOCALHOST)?;
        world.upstream_url = format!("http://localhost:{}/0", upstream.port());
        world.servers.push(upstream);
        let nearby = serve(&layout.nearby, Ipv4Addr::new(127, 0, 0, 2))
            .or_else(|_| serve(&layout.nearby, Ipv4Addr::LOCALHOST))?;
        let nearby_ip = nearby
            .listen_addresses()
            .first()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        world.nearby_url = format!("http://{nearby_ip}:{}/0", nearby.port());
        world.servers.push(nearby);
        set_remote_url(&world.local, &world.upstream_url)?;
        Ok(world)
    }

    /// The directory the world lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local repository Ferry updates.
    pub fn repo(&self) -> &Path {
        &self.local
    }

    /// The commits of the three versions, oldest first.
    pub fn commits(&self) -> &[String] {
        &self.commits
    }

    pub fn upstream_url(&self) -> &str {
        &self.upstream_url
    }

    pub fn nearby_url(&self) -> &str {
        &self.nearby_url
    }

    /// Discovery for the demo: the sideload "USB stick", the nearby computer as a
    /// static source, the upstream, drives; never the LAN.
    pub fn discovery_options(&self) -> DiscoveryOptions {
        DiscoveryOptions {
            lan: LanInterfaces::Off,
            static_sources: vec![self.nearby_url.clone()],
            sideload_dirs: vec![self.sideload.clone()],
            http_timeout: Duration::from_secs(5),
            ..DiscoveryOptions::default()
        }
    }

    /// Stops the servers.
    pub fn stop(&mut self) {
        for server in self.servers.drain(..) {
            server.stop();
        }
    }

    /// A note for the terminal: where the world is.
    pub fn describe(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Ferry demo in {}: repository {}, upstream {}, nearby computer {}",
            self.dir.display(),
            self.local.display(),
            self.upstream_url,
            self.nearby_url
        )
    }
}

impl Drop for DemoWorld {
    fn drop(&mut self) {
        self.stop();
        if self.owns_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
