//! A read-only HTTP server for the local repository (soup3, on the GLib main
//! context), laid out as libostree's LAN finder and `ostree pull` expect it:
//! `http://HOST:PORT/RI/` where RI is the repository index.
//!
//! - Only whitelisted paths are answered ([`super::paths`]). `config` is served as
//!   its `[core]` group only (no remote URLs or keys). Files are opened
//!   beneath the repository with `openat2(RESOLVE_BENEATH)`: objects, config and
//!   deltas never through a symlink (`O_NOFOLLOW`, `RESOLVE_NO_SYMLINKS`), refs
//!   (which may be aliases) only through symlinks that stay in the repository.
//!   Anything but a regular file is refused.
//! - A `bare`, `bare-user` or `bare-user-only` repository is served as if it were
//!   an archive one: `config` says `mode=archive-z2`, and `.filez` objects are made
//!   from the stored `.file` as they are sent, chunked ([`made_filez`]).
//! - Bodies are mapped files handed to soup as `glib::Bytes`: nothing is copied
//!   onto the heap. `Content-Length`, `Last-Modified` and `ETag` are set, and
//!   `If-None-Match` / `If-Modified-Since` are answered with 304.
//! - The summary is generated in memory ([`super::served`]) and regenerated when
//!   the refs change (checked every few seconds and on every summary request).
//! - Each connection carries one request (`Connection: close`): libsoup 3.2 leaks
//!   idle keep-alive connections that clients close.
//! - It listens only where the user shares ([`Listen`]): on given addresses, or on
//!   the addresses of the interfaces `FERRY_LAN_INTERFACES` names (loopback when
//!   it turns the LAN off), following address changes.
//! - Connections are accepted here, not by soup, and handed to soup one by one
//!   (`soup_server_accept_iostream`): libsoup 3.2 has no hook to refuse or hold a
//!   connection before it allocates one. Each client address (an IPv6 /64) gets a
//!   handful of connections at once; more wait their turn in a short queue,
//!   beyond it they are closed at once, so one client cannot take every slot.
//! - Abuse is bounded: the request phase (from accept to the end of the headers,
//!   64 KiB at most in libsoup) is limited in time, and connections in it are
//!   limited in number (the oldest is closed first). A request with a body is
//!   answered (400 for GET/HEAD, 405 otherwise) without reading it. Sockets time
//!   out when idle, responses in progress are limited (beyond: 503), and an
//!   optional bandwidth cap is shared by all responses ([`super::upload_cap`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gio::prelude::*;
use soup::prelude::*;

use crate::repo::beneath;
use crate::repo::config::RepoConfig;
use crate::repo::store::Repo;
use crate::repo::summary::Summary;
use crate::sources::LanInterfaces;
use crate::transport::map_file;

use super::paths::{parse_request_path, FileKind, RepoPath};
use super::served::{servable_refs, CompletenessCache, OfferedKey, RepoFingerprint, ServableRefs};
use super::upload_cap::{send_body, UploadCap};
use super::ShareError;

mod addresses;
mod connections;
mod made_filez;
mod responses;

pub use addresses::{interface_addresses, local_addresses};
use connections::*;
use responses::*;
pub use responses::{not_modified, open_beneath};

/// Limits that keep misbehaving clients from exhausting the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Responses in progress at once; more requests get 503.
    pub max_active_requests: usize,
    /// Connections still sending their request (all clients); beyond this the
    /// oldest is closed.
    pub max_pending_connections: usize,
    /// Connections one client address (an IPv6 /64) has served at once.
    pub max_connections_per_client: usize,
    /// Further connections of one client waiting for one of those to end; beyond
    /// this they are closed at once.
    pub max_queued_per_client: usize,
    /// Connections waiting in queues, all clients together.
    pub max_queued_connections: usize,
    /// Time a connection has, from being accepted (waiting in the queue
    /// included), to send its complete request.
    pub header_timeout: Duration,
    /// A socket with no progress for this long, reading or writing, is closed.
    pub idle_timeout: Duration,
    /// How often the refs are checked for changes (for the summary and advert).
    pub refresh_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_active_requests: 64,
            max_pending_connections: 256,
            // libostree fetches 8 objects at once, Ferry 16 (queued beyond 8).
            max_connections_per_client: 8,
            max_queued_per_client: 16,
            max_queued_connections: 256,
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(2),
        }
    }
}

/// What to serve and how.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The repository (any mode: a `bare*` one is served as if it were archive).
    pub repo: PathBuf,
    /// Served at `/RI/`.
    pub repo_index: u16,
    /// Where to listen.
    pub listen: Listen,
    /// 0 picks a free port.
    pub port: u16,
    /// Bytes per second across all responses.
    pub bandwidth_limit: Option<u64>,
    pub limits: Limits,
}

impl ServerConfig {
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        Self {
            repo: repo.into(),
            repo_index: 0,
            listen: Listen::Interfaces(LanInterfaces::AllNonLoopback),
            port: super::DEFAULT_PORT,
            bandwidth_limit: None,
            limits: Limits::default(),
        }
    }
}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// On these addresses only (loopback included; an unspecified address is every
    /// address of its family).
    Addresses(Vec<IpAddr>),
    /// On the addresses of these interfaces (the ones Ferry advertises on),
    /// following address changes; [`LanInterfaces::Off`]: loopback only, this
    /// computer and nobody else.
    Interfaces(LanInterfaces),
}

impl Listen {
    /// The addresses to listen on now.
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Self::Addresses(addresses) => {
                let mut out = addresses.clone();
                out.dedup();
                out
            }
            Self::Interfaces(interfaces) => {
                let out = interface_addresses(interfaces);
                if out.is_empty() && interfaces.is_off() {
                    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
                } else {
                    out
                }
            }
        }
    }

    /// The one address given, if exactly one (what an advertisement names).
    pub fn single_address(&self) -> Option<IpAddr> {
        match self {
            Self::Addresses(addresses) if addresses.len() == 1 => Some(addresses[0]),
            _ => None,
        }
    }
}

/// The summary being served.
#[derive(Debug)]
pub struct ServedSummary {
    pub summary: Summary,
    pub bytes: glib::Bytes,
    /// `summary.sig`, only when the repository's own signed summary is served.
    pub signature: Option<glib::Bytes>,
    pub etag: String,
    /// `ostree.summary.last-modified` (0 when the summary has none).
    pub last_modified: u64,
    keys: Vec<OfferedKey>,
}

impl ServedSummary {
    fn new(refs: ServableRefs, last_modified: u64) -> Result<Self, ShareError> {
        let keys = refs.keys();
        let (summary, bytes, signature) = refs.into_summary(last_modified)?;
        let etag = format!(
            "\"s-{}\"",
            &crate::repo::Checksum::digest(&bytes).to_hex()[..24]
        );
        Ok(Self {
            last_modified: summary.last_modified.unwrap_or(0),
            summary,
            bytes: glib::Bytes::from_owned(bytes),
            signature: signature.map(glib::Bytes::from_owned),
            etag,
            keys,
        })
    }

    /// Whether serving `refs` would serve the same thing as this.
    fn same_as(&self, refs: &ServableRefs) -> bool {
        match refs {
            ServableRefs::Generated { .. } => self.signature.is_none() && self.keys == refs.keys(),
            ServableRefs::OnDisk {
                bytes, signature, ..
            } => {
                self.bytes.as_ref() == bytes.as_slice()
                    && self.signature.as_ref().map(|s| s.as_ref()) == Some(signature.as_slice())
            }
        }
    }

    /// Every collection-ref offered (for the advertisement's bloom filter).
    pub fn collection_refs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .filter_map(|(c, r, _)| c.as_deref().map(|c| (c, r.as_str())))
    }
}

/// Counters, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub requests: u64,
    pub not_found: u64,
    pub busy: u64,
    pub not_modified: u64,
    pub evicted_connections: u64,
    pub timed_out_connections: u64,
    /// Connections closed at once: their client had too many.
    pub refused_connections: u64,
    /// Connections that waited for one of their client's others to end.
    pub queued_connections: u64,
    /// Requests with a body, answered without reading it.
    pub refused_bodies: u64,
}

/// One request being answered.
struct RequestState {
    done: Cell<bool>,
}

struct Waiting {
    msg: soup::ServerMessage,
    request: Rc<RequestState>,
    signature: bool,
    head: bool,
}

struct SummaryState {
    current: Rc<ServedSummary>,
    fingerprint: RepoFingerprint,
    regenerating: bool,
    waiting: Vec<Waiting>,
}

type SummaryListener = Box<dyn Fn(&ServedSummary)>;

struct Inner {
    server: soup::Server,
    root: PathBuf,
    root_fd: OwnedFd,
    repo: Repo,
    repo_index: u16,
    limits: Limits,
    cache: Arc<CompletenessCache>,
    summary: RefCell<SummaryState>,
    connections: RefCell<Connections>,
    listen: Listen,
    port: Cell<u16>,
    listeners: RefCell<Vec<Listener>>,
    /// Addresses that could not be listened on (warned about once).
    unlistenable: RefCell<HashSet<IpAddr>>,
    last_listen_check: Cell<Instant>,
    upload_cap: Option<Rc<UploadCap>>,
    summary_listeners: RefCell<Vec<SummaryListener>>,
    timer: RefCell<Option<glib::SourceId>>,
    last_refresh: Cell<Instant>,
    stats: Cell<ServerStats>,
    stopped: Cell<bool>,
}

/// A running server. Lives on the thread-default main context; stops when dropped.
pub struct RepoServer {
    inner: Rc<Inner>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RepoServer {
    /// Opens the repository, computes the summary and starts listening. Requests
    /// are answered while the thread-default main context runs.
    pub fn start(config: ServerConfig) -> Result<Self, ShareError> {
        let root = config.repo.clone();
        let repo = Repo::open(&root)?;
        RepoConfig::load(&root)?;
        let root_fd = open_directory(&root).map_err(|source| ShareError::Io {
            path: root.clone(),
            source,
        })?;
        raise_fd_limit();

        let cache = Arc::new(CompletenessCache::default());
        let fingerprint = RepoFingerprint::of(&root);
        let current = ServedSummary::new(servable_refs(&repo, &cache)?, now_secs())?;

        // No listener of soup's own: connections come from `accept_ready`.
        let server = soup::Server::builder()
            .raw_paths(true)
            .server_header("Ferry")
            .build();

        let inner = Rc::new(Inner {
            server,
            root,
            root_fd,
            repo,
            repo_index: config.repo_index,
            limits: config.limits.clone(),
            cache,
            summary: RefCell::new(SummaryState {
                current: Rc::new(current),
                fingerprint,
                regenerating: false,
                waiting: Vec::new(),
            }),
            connections: RefCell::new(Connections::default()),
            listen: config.listen.clone(),
            port: Cell::new(config.port),
            listeners: RefCell::new(Vec::new()),
            unlistenable: RefCell::new(HashSet::new()),
            last_listen_check: Cell::new(Instant::now()),
            upload_cap: config.bandwidth_limit.map(UploadCap::new),
            summary_listeners: RefCell::new(Vec::new()),
            timer: RefCell::new(None),
            last_refresh: Cell::new(Instant::now()),
            stats: Cell::new(ServerStats::default()),
            stopped: Cell::new(false),
        });

        let weak = Rc::downgrade(&inner);
        inner.server.connect_request_started(move |_, msg| {
            if let Some(inner) = weak.upgrade() {
                inner.request_started(msg);
            }
        });
        let weak = Rc::downgrade(&inner);
        inner.server.add_handler(None, move |_, msg, path, _| {
            if let Some(inner) = weak.upgrade() {
                inner.handle(msg, path);
            }
        });
        let weak = Rc::downgrade(&inner);
        let timer =
            glib::timeout_add_local(Duration::from_millis(500), move || match weak.upgrade() {
                Some(inner) => {
                    inner.tick();
                    glib::ControlFlow::Continue
                }
                None => glib::ControlFlow::Break,
            });
        inner.timer.replace(Some(timer));
        let addresses = inner.listen.addresses();
        if addresses.is_empty() && config.port == 0 {
            inner.stop();
            return Err(ShareError::Listen {
                address: describe_listen(&inner.listen),
                message: "it has no address (yet)".into(),
            });
        }
        // Given addresses must all work. Of an interface's addresses (some may not
        // be usable yet, e.g. IPv6 still checking for duplicates) one is enough;
        // the others are tried again as the addresses are checked.
        let errors = inner.sync_listeners(&addresses);
        let listening = !inner.listeners.borrow().is_empty();
        let explicit = matches!(inner.listen, Listen::Addresses(_));
        if let Some(error) = errors.into_iter().next() {
            if explicit || !listening {
                inner.stop();
                return Err(error);
            }
            eprintln!("ferry: {error}");
        }
        Ok(Self { inner })
    }

    /// The addresses the server listens on (with the port chosen).
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        let port = self.inner.port.get();
        self.inner
            .listeners
            .borrow()
            .iter()
            .map(|listener| SocketAddr::new(listener.ip, port))
            .collect()
    }

    /// The TCP port served.
    pub fn port(&self) -> u16 {
        self.inner.port.get()
    }

    pub fn repo_index(&self) -> u16 {
        self.inner.repo_index
    }

    /// URLs of the repository (`http://ADDRESS:PORT/RI/`): the address listened on,
    /// or every address of this computer when listening on all of them.
    pub fn urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for address in self.listen_addresses() {
            let ips = if address.ip().is_unspecified() {
                local_addresses(address.is_ipv4())
            } else {
                vec![address.ip()]
            };
            for ip in ips {
                let url = format!(
                    "http://{}/{}/",
                    SocketAddr::new(ip, address.port()),
                    self.inner.repo_index
                );
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        urls
    }

    /// The summary served now.
    pub fn summary(&self) -> Rc<ServedSummary> {
        self.inner.summary.borrow().current.clone()
    }

    /// Calls `f` (on the main context) whenever the served summary changes.
    pub fn connect_summary_changed(&self, f: impl Fn(&ServedSummary) + 'static) {
        self.inner.summary_listeners.borrow_mut().push(Box::new(f));
    }

    pub fn stats(&self) -> ServerStats {
        self.inner.stats.get()
    }

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

fn set_status(msg: &soup::ServerMessage, status: u32) {
    msg.set_status(status, None);
}
impl Inner {
    fn bump(&self, f: impl FnOnce(&mut ServerStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        if let Some(timer) = self.timer.take() {
            timer.remove();
        }
        if let Some(upload_cap) = &self.upload_cap {
            upload_cap.stop();
        }
        for listener in self.listeners.take() {
            listener.watch.destroy();
            let _ = listener.socket.close();
        }
        let (open, clients) = {
            let mut conns = self.connections.borrow_mut();
            conns.queued = 0;
            (
                std::mem::take(&mut conns.open),
                std::mem::take(&mut conns.clients),
            )
        };
        for client in clients.into_values() {
            for queued in client.queue {
                let _ = queued.socket.close();
            }
        }
        soup::prelude::ServerExt::disconnect(&self.server);
        for conn in open.into_values() {
            let _ = conn.socket.close();
        }
    }
}

/// What a [`Listen`] names, for messages.
fn describe_listen(listen: &Listen) -> String {
    match listen {
        Listen::Addresses(addresses) => addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        Listen::Interfaces(LanInterfaces::Off) => "loopback".into(),
        Listen::Interfaces(LanInterfaces::AllNonLoopback) => "every network interface".into(),
        Listen::Interfaces(LanInterfaces::Only(names)) => names.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(ClientKey::of(v4), ClientKey::of(mapped));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
    }

    #[test]
    fn listens_on_loopback_when_the_lan_is_off() {
        let addresses = Listen::Interfaces(LanInterfaces::Off).addresses();
        assert!(
            addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addresses:?}"
        );
        assert!(addresses.iter().all(IpAddr::is_loopback), "{addresses:?}");
        let lan = Listen::Interfaces(LanInterfaces::AllNonLoopback).addresses();
        assert!(!lan.iter().any(IpAddr::is_loopback), "{lan:?}");
        let explicit = Listen::Addresses(vec!["127.0.0.2".parse().unwrap()]);
        assert_eq!(
            explicit.single_address(),
            Some("127.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn conditional_requests() {
        let etag = "\"1-2-3.4\"";
        assert!(not_modified(Some(etag), None, etag, 100));
        assert!(not_modified(Some("\"x\", W/\"1-2-3.4\""), None, etag, 100));
        assert!(not_modified(Some("*"), None, etag, 100));
        assert!(!not_modified(Some("\"x\""), Some(200), etag, 100));
        assert!(not_modified(None, Some(100), etag, 100));
        assert!(not_modified(None, Some(101), etag, 100));
        assert!(!not_modified(None, Some(99), etag, 100));
        assert!(!not_modified(None, None, etag, 100));
    }

    #[test]
    fn opens_only_beneath_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::fs::create_dir_all(dir.path().join("objects/ab")).unwrap();
        std::fs::create_dir_all(dir.path().join("refs/heads")).unwrap();
        std::fs::write(dir.path().join("objects/ab/real"), b"data").unwrap();
        std::fs::write(dir.path().join("refs/heads/main"), b"x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("objects/ab/abs"),
        )
        .unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("objects/ab/rel")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("objects/cd")).unwrap();
        std::os::unix::fs::symlink("main", dir.path().join("refs/heads/alias")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("refs/heads/evil"),
        )
        .unwrap();
        let fd = open_directory(dir.path()).unwrap();
        assert!(open_beneath(&fd, "objects/ab/real", false).is_ok());
        assert!(open_beneath(&fd, "objects/ab/abs", false).is_err());
        assert!(open_beneath(&fd, "objects/ab/rel", false).is_err());
        assert!(open_beneath(&fd, "objects/cd/secret", false).is_err());
        assert!(open_beneath(&fd, "refs/heads/alias", true).is_ok());
        assert!(open_beneath(&fd, "refs/heads/evil", true).is_err());
        assert!(open_beneath(&fd, "../secret", true).is_err());
        let flags = libc::O_RDONLY | libc::O_CLOEXEC;
        assert!(open_without_symlinks(&fd, "objects/ab/real", flags).is_ok());
        assert!(open_without_symlinks(&fd, "objects/ab/abs", flags).is_err());
        assert!(open_without_symlinks(&fd, "objects/cd/secret", flags).is_err());
    }

    #[test]
    fn maps_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let file = File::open(&path).unwrap();
        let bytes = map_file(&file, 100_000).unwrap();
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == 7));
        assert!(map_file(&file, 0).unwrap().is_empty());
    }
}
