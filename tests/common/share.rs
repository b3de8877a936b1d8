//! Environment for tests/share.rs: a GPG key, an upstream repository signed by the
//! real `ostree`, Ferry repositories, loop-mounted ext4 drives under /media, network
//! namespaces joined by veth pairs with real avahi-daemons (and a private D-Bus
//! system bus where libostree needs one), and `ferryctl serve` processes.
//!
//! Everything is removed by Drop guards, also when a test fails: processes are
//! killed by process group, drives unmounted, namespaces deleted, the GPG agent
//! stopped. mDNS only ever runs inside namespaces made here.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cmd;
use super::drive;
use super::lan;

#[allow(unused_imports)] // Not every test binary uses all of them.
pub use cmd::{describe, kill_group, output, run, text};
#[allow(unused_imports)] // Not every test binary uses all of them.
pub use drive::LoopDrive;
#[allow(unused_imports)] // Not every test binary uses all of them.
pub use lan::{random_suffix, Avahi, AvahiOptions, Lan, Netns, ADDR_A, ADDR_B};

pub const COLLECTION: &str = "org.example.Os";
pub const REF: &str = "os/stable";

/// A path no test should ever write to (keeps ferryctl off a real repository).
const NO_DATA_HOME: &str = "/dev/null/ferry-share-test";

pub fn ferryctl_path() -> &'static str {
    env!("CARGO_BIN_EXE_ferryctl")
}

/// `ferryctl --repo REPO` with LAN discovery off and no default repository.
pub fn ferryctl(repo: &Path) -> Command {
    let mut cmd = Command::new(ferryctl_path());
    cmd.env_remove("FERRY_REPO")
        .env("XDG_DATA_HOME", NO_DATA_HOME)
        .env("FERRY_LAN_INTERFACES", "none")
        .arg("--repo")
        .arg(repo);
    cmd
}

pub fn ostree(repo: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-share-")
        .tempdir()
        .expect("tempdir")
}

pub fn random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    rand::Rng::fill(&mut rand::rng(), &mut data[..]);
    fs::write(path, data).expect("write random file");
}

// ---------------------------------------------------------------------------
// GPG and repositories
// ---------------------------------------------------------------------------

/// A throwaway signing key in its own GNUPGHOME.
pub struct Gpg {
    pub home: tempfile::TempDir,
    pub key_id: String,
    /// The public key, binary, for `--gpg-import`.
    pub public_key: PathBuf,
}

impl Gpg {
    pub fn new() -> Self {
        let home = tempdir();
        fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let gpg = |args: &[&str]| {
            run(Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--no-tty", "--passphrase", ""])
                .args(args))
        };
        gpg(&[
            "--quick-gen-key",
            "ferry-test@example.org",
            "ed25519",
            "sign",
            "never",
        ]);
        let listing = gpg(&["--list-keys", "--with-colons"]);
        let key_id = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|rest| rest.trim_matches(':').to_owned())
            })
            .expect("a fingerprint");
        let public_key = home.path().join("public.gpg");
        let exported = output(
            Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--export", &key_id]),
        );
        fs::write(&public_key, exported.stdout).unwrap();
        Self {
            home,
            key_id,
            public_key,
        }
    }

    pub fn sign(&self, repo: &Path, rev: &str) {
        run(ostree(repo)
            .args(["gpg-sign", rev, &self.key_id])
            .arg(format!("--gpg-homedir={}", self.home.path().display())));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The upstream: `ostree init --mode=archive --collection-id`, signed commits on REF.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Upstream {
    /// One signed commit (version 1.0) holding `big` random bytes and small files.
    pub fn new(gpg: &Gpg, big: usize) -> Self {
        let dir = tempdir();
        let path = dir.path().join("upstream");
        run(ostree(&path)
            .args(["init", "--mode=archive"])
            .arg(format!("--collection-id={COLLECTION}")));
        let upstream = Self { dir, path };
        upstream.commit(gpg, "1.0", big);
        upstream
    }

    /// A new signed commit on REF; its checksum.
    pub fn commit(&self, gpg: &Gpg, version: &str, big: usize) -> String {
        let tree = tempdir();
        fs::create_dir_all(tree.path().join("usr/share")).unwrap();
        fs::write(
            tree.path().join("os-release"),
            format!("VERSION={version}\n"),
        )
        .unwrap();
        random_file(&tree.path().join("usr/share/big"), big);
        for i in 0..20 {
            fs::write(
                tree.path().join(format!("usr/share/small-{i}")),
                format!("{version} {i}\n"),
            )
            .unwrap();
        }
        run(ostree(&self.path)
            .args(["commit", "--fsync=false", "-b", REF])
            .arg(format!("--add-metadata-string=version={version}"))
            .arg(format!("--tree=dir={}", tree.path().display()))
            .args(["-s", &format!("Version {version}")]));
        gpg.sign(&self.path, REF);
        run(ostree(&self.path).args(["summary", "-u"]));
        self.rev(REF)
    }

    pub fn rev(&self, rev: &str) -> String {
        run(ostree(&self.path).args(["rev-parse", rev]))
            .trim()
            .to_owned()
    }

    pub fn uri(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

/// A Ferry repository: `ferryctl init`, remote `origin` (the collection, the key),
/// `origin:REF` tracked.
pub struct FerryRepo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl FerryRepo {
    pub fn new(origin_url: &str, gpg: &Gpg) -> Self {
        let dir = tempdir();
        let path = dir.path().join("ferry");
        run(ferryctl(&path).arg("init"));
        run(ferryctl(&path)
            .args([
                "remote",
                "add",
                "origin",
                origin_url,
                "--collection-id",
                COLLECTION,
            ])
            .arg("--gpg-import")
            .arg(&gpg.public_key));
        run(ferryctl(&path).args(["track", "origin", REF]));
        Self { dir, path }
    }

    /// A Ferry repository holding the upstream's REF (pulled with `ferryctl pull`).
    pub fn with_upstream(upstream: &Upstream, gpg: &Gpg) -> Self {
        let repo = Self::new(&upstream.uri(), gpg);
        repo.pull_from(&upstream.path);
        repo
    }

    pub fn pull_from(&self, source: &Path) {
        run(ferryctl(&self.path).args(["pull", &format!("file://{}", source.display()), REF]));
    }

    pub fn ferryctl(&self) -> Command {
        ferryctl(&self.path)
    }

    pub fn origin_ref(&self) -> Option<String> {
        fs::read_to_string(self.path.join("refs/remotes/origin").join(REF))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The largest `.filez` object (the big random file).
    pub fn largest_object(&self) -> (String, u64) {
        let mut best = (String::new(), 0);
        for dir in fs::read_dir(self.path.join("objects")).unwrap().flatten() {
            for file in fs::read_dir(dir.path()).unwrap().flatten() {
                let len = file.metadata().unwrap().len();
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".filez") && len > best.1 {
                    best = (
                        format!("objects/{}/{name}", dir.file_name().to_string_lossy()),
                        len,
                    );
                }
            }
        }
        best
    }
}

/// A client made by the real tool: `ostree init --mode=archive`, remote `origin`
/// (collection ID, GPG keyring, an unusable URL).
pub struct OstreeClient {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl OstreeClient {
    pub fn new(gpg: &Gpg) -> Self {
        let dir = tempdir();
        let path = dir.path().join("client");
        run(ostree(&path).args(["init", "--mode=archive"]));
        run(ostree(&path)
            .args(["remote", "add"])
            .arg(format!("--collection-id={COLLECTION}"))
            .arg(format!("--gpg-import={}", gpg.public_key.display()))
            .args(["origin", "http://invalid.invalid/"]));
        Self { dir, path }
    }

    /// The commit `(COLLECTION, REF)` points at after a P2P pull: libostree writes
    /// it for the remote whose keyring verified it (`refs/remotes/origin/`), or as
    /// a mirror of the collection (`refs/mirrors/`).
    pub fn collection_ref(&self) -> Option<String> {
        [
            self.path.join("refs/remotes/origin").join(REF),
            self.path.join("refs/mirrors").join(COLLECTION).join(REF),
        ]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
    }

    pub fn fsck(&self) {
        run(ostree(&self.path).arg("fsck"));
    }
}

// ---------------------------------------------------------------------------
// ferryctl serve
// ---------------------------------------------------------------------------

/// A running `ferryctl --json serve`, its JSON lines read as they come.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    pub port: u16,
}

impl Server {
    /// Spawns `cmd` (which must end in `--json serve …`) and waits for "serving".
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(&cmd)));
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = match serde_json::from_str(&line) {
                    Ok(value) => value,
                    Err(_) => Value::String(line),
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut server = Self {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
            port: 0,
        };
        let serving = server.wait_for(Duration::from_secs(30), |v| v["event"] == "serving");
        server.port = serving["port"].as_u64().expect("port") as u16;
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn transcript(&self) -> String {
        let mut out: String = self.seen.iter().map(|v| format!("{v}\n")).collect();
        out.push_str("--- stderr ---\n");
        out.push_str(&self.stderr());
        out
    }

    /// Waits for a JSON line matching `pred` (lines already seen count).
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "ferryctl serve did not print what was expected:\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// SIGTERM (or SIGINT), then waits for a clean exit.
    pub fn terminate(&mut self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "ferryctl serve exited with {status}:\n{}",
                    self.transcript()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ferryctl serve did not stop:\n{}",
                self.transcript()
            );
            thread::sleep(Duration::from_millis(50));
        }
        while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(v);
        }
    }

    /// What each open descriptor is (for failure messages).
    pub fn describe_fds(&self) -> String {
        let dir = format!("/proc/{}/fd", self.child.id());
        let mut out = String::new();
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let target = fs::read_link(entry.path()).unwrap_or_default();
            out.push_str(&format!(
                "{} -> {}\n",
                entry.file_name().to_string_lossy(),
                target.display()
            ));
        }
        out
    }

    /// The server process's resident memory (VmRSS), in KiB.
    pub fn vm_rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Descriptors the server process has open now.
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A TCP connection to `addr` from the loopback address `source` (all of
/// 127.0.0.0/8 is this computer), so that one test can be several clients.
pub fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(target) = addr else {
        panic!("IPv4 only: {addr}")
    };
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with correctly sized addresses,
    // then owned by the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(source, 0);
        let bound = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(
            bound,
            0,
            "bind {source:?}: {}",
            std::io::Error::last_os_error()
        );
        let remote = sockaddr(target.ip().octets(), target.port());
        let connected = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(
            connected,
            0,
            "connect {source:?} -> {addr}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// Whether the server closed `stream` (EOF or an error) within `wait`; reads and
/// discards whatever it sent.
pub fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream
        .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Sends `request` bytes exactly as given (no normalisation) and reads the response
/// until the server closes the connection.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    parse_response(&data)
        .unwrap_or_else(|| panic!("no HTTP response to {:?}: {:?}", text(request), text(&data)))
}

pub fn parse_response(data: &[u8]) -> Option<Response> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = text(&data[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Response {
        status,
        headers,
        body: data[end + 4..].to_vec(),
    })
}

/// `METHOD PATH` with `Connection: close` and extra header lines.
pub fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_http(addr, req.as_bytes())
}
